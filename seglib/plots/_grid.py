"""Drawing a map's units: square cells (``imshow``) or hexagons (one ``PolyCollection``).

Every map figure (U-matrix, hit map, component planes, segment map, the explorer's map) draws its
cells through :func:`draw_cells` and places markers at :func:`cell_centers`, so a hexagonal map is
drawn the same way everywhere. Unit ``(row r, col c)`` is centred at the position given by
:func:`seglib.som.unit_positions`: ``x = c, y = r`` on a square grid; ``x = c + (r % 2) / 2``,
``y = r sqrt(3)/2`` on a hexagonal one (pointy-top hexagons, odd rows shifted right). Row 0 is at the
top in both.
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection, PolyCollection

from seglib.errors import check_option
from seglib.som import TOPOLOGIES, neighbor_pairs, unit_distances, unit_positions

__all__ = ["map_topology", "cell_centers", "draw_cells", "set_map_limits", "border_segments", "draw_edges"]

#: Circumradius of a hexagon whose neighbours' centres are 1 apart.
HEX_RADIUS = 1.0 / np.sqrt(3.0)
_ANGLES = np.deg2rad(30.0 + 60.0 * np.arange(6))  # pointy-top: vertices at 30, 90, ..., 330 degrees
_HEXAGON = HEX_RADIUS * np.column_stack([np.cos(_ANGLES), np.sin(_ANGLES)])


def map_topology(som_or_weights, topology=None) -> str:
    """The topology to draw: ``topology`` when given, else the SOM's, else ``"rectangular"``."""
    if topology is None:
        topology = getattr(som_or_weights, "topology", None) or "rectangular"
    check_option("topology", topology, TOPOLOGIES)
    return topology


def cell_centers(shape, topology: str = "rectangular") -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of every unit's centre, each of shape ``(rows, cols)``."""
    pos = unit_positions(shape, topology)
    return pos[:, 0].reshape(shape), pos[:, 1].reshape(shape)


def set_map_limits(ax, shape, topology: str = "rectangular") -> None:
    """Axis limits that frame every cell, row 0 at the top, equal aspect."""
    rows, cols = shape
    if topology == "hexagonal":
        x_hi = cols - 0.5 + (0.5 if rows > 1 else 0.0)
        y_hi = (rows - 1) * np.sqrt(3.0) / 2.0 + HEX_RADIUS
        ax.set_xlim(-0.5, x_hi)
        ax.set_ylim(y_hi, -HEX_RADIUS)
    else:
        ax.set_xlim(-0.5, cols - 0.5)
        ax.set_ylim(rows - 0.5, -0.5)
    ax.set_aspect("equal")


def draw_cells(ax, values, topology: str = "rectangular", *, cmap=None, norm=None, vmin=None, vmax=None,
               alpha=None, edgecolor="face", linewidth=0.3, gid="cells", **kwargs):
    """Draw one cell per unit coloured by ``values`` (shape ``(rows, cols)``; masked or NaN cells take the
    colormap's "bad" colour). Returns the mappable (for a colorbar).

    Square grids use ``ax.imshow`` (the look of every map so far; ``kwargs`` go to it); hexagonal grids
    add one :class:`~matplotlib.collections.PolyCollection` of ``rows * cols`` hexagons with
    ``gid="cells"`` (``kwargs`` go to it), and set the axis limits.
    """
    check_option("topology", topology, TOPOLOGIES)
    values = np.ma.masked_invalid(np.ma.asarray(values, dtype=float))
    if topology == "rectangular":
        kwargs.setdefault("interpolation", "nearest")
        return ax.imshow(values, cmap=cmap, norm=norm, vmin=vmin, vmax=vmax, alpha=alpha, **kwargs)
    kwargs.pop("interpolation", None)
    kwargs.pop("origin", None)
    kwargs.pop("extent", None)
    if alpha is not None and alpha < 1:
        linewidth = 0.0  # a see-through edge would be painted twice where two cells meet
    x, y = cell_centers(values.shape, topology)
    centres = np.column_stack([x.ravel(), y.ravel()])
    cells = PolyCollection(centres[:, None, :] + _HEXAGON[None, :, :], array=values.ravel(), cmap=cmap,
                           norm=norm, alpha=alpha, edgecolors=edgecolor, linewidths=linewidth, gid=gid,
                           **kwargs)
    if norm is None:
        cells.set_clim(vmin, vmax)
    ax.add_collection(cells)
    set_map_limits(ax, values.shape, topology)
    return cells


def _shared_edge(pa, pb, topology):
    """End points of the edge shared by the cells centred at ``pa`` and ``pb`` (arrays of (x, y))."""
    mid = (pa + pb) / 2.0
    direction = pb - pa
    direction = direction / np.linalg.norm(direction, axis=1, keepdims=True)
    perp = np.column_stack([-direction[:, 1], direction[:, 0]])
    half = HEX_RADIUS / 2.0 if topology == "hexagonal" else 0.5
    return np.stack([mid - half * perp, mid + half * perp], axis=1)


def border_segments(labels2d, topology: str = "rectangular") -> np.ndarray:
    """Line segments ``(n, 2, 2)`` along the cell edges between neighbouring units of different labels.

    The neighbours are the units sharing an edge (4 on a square grid, 6 on a hexagonal one), so the
    lines enclose each region of equal labels.
    """
    labels2d = np.asarray(labels2d)
    shape = labels2d.shape
    a, b = neighbor_pairs(shape, topology, 4 if topology == "rectangular" else 6)
    flat = labels2d.ravel()
    keep = (a < b) & (flat[a] != flat[b])
    pos = unit_positions(shape, topology)
    return _shared_edge(pos[a[keep]], pos[b[keep]], topology).reshape(-1, 2, 2)


def draw_edges(ax, weights, topology: str = "rectangular", *, cmap=None, norm=None, linewidth=3.0,
               gid="unit_distances"):
    """Draw the distance between the weights of every pair of edge-sharing neighbours on their shared
    edge (the "between-unit" cells of a classic U-matrix), coloured with ``cmap``/``norm``.

    Returns the :class:`~matplotlib.collections.LineCollection` (one segment per pair of neighbours).
    """
    shape = np.asarray(weights).shape[:2]
    a, b, d = unit_distances(weights, topology, 4 if topology == "rectangular" else 6)
    keep = a < b
    pos = unit_positions(shape, topology)
    lines = LineCollection(_shared_edge(pos[a[keep]], pos[b[keep]], topology), array=d[keep], cmap=cmap,
                           norm=norm, linewidths=linewidth, gid=gid, capstyle="butt", zorder=2)
    ax.add_collection(lines)
    return lines
