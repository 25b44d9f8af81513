"""Plots of a trained SOM: U-matrix with hit markers, hit map, component planes, training curve.

A rectangular map is drawn as a matrix: unit ``(row, col)`` is the cell centred at ``x = col, y = row``,
row 0 at the top (``imshow``'s convention). A hexagonal map is drawn as hexagons centred at
:func:`seglib.som.unit_positions` (odd rows shifted right by half a unit), also row 0 at the top. Every
function takes ``topology=None``: the SOM's own when a fitted SOM is passed, else ``"rectangular"``.
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import PercentFormatter

from seglib.errors import ParameterError
from seglib.plots._colors import EMPTY_COLOR
from seglib.plots._grid import border_segments, cell_centers, draw_cells, draw_edges, map_topology
from seglib.som import best_units, u_matrix

__all__ = ["plot_u_matrix", "plot_hit_map", "plot_component_planes", "plot_training_curve"]


def _weights(som_or_weights) -> np.ndarray:
    w = getattr(som_or_weights, "weights_", som_or_weights)
    w = np.asarray(w)
    if w.ndim != 3:
        raise ParameterError(f"expected a fitted SOM or weights (rows, cols, n_features), got {w.shape}")
    return w


def _hits(weights, X, hits) -> np.ndarray | None:
    shape = weights.shape[:2]
    if hits is not None:
        hits = np.asarray(hits)
        if hits.shape != shape:
            raise ParameterError(f"hits must have the map's shape {shape}, got {hits.shape}")
        return hits
    if X is None:
        return None
    return np.bincount(best_units(np.asarray(X), weights), minlength=shape[0] * shape[1]).reshape(shape)


def _map_axes(ax, shape, topology="rectangular"):
    if topology == "hexagonal":  # rows and columns are not straight lines of the picture
        ax.set_xticks([])
        ax.set_yticks([])
        return
    ax.set_xticks(np.arange(shape[1]))
    ax.set_yticks(np.arange(shape[0]))
    ax.tick_params(labelsize="x-small", length=0)
    if max(shape) > 20:  # keep about 10 tick labels per side
        ax.set_xticks(np.arange(0, shape[1], int(np.ceil(shape[1] / 10))))
        ax.set_yticks(np.arange(0, shape[0], int(np.ceil(shape[0] / 10))))
    ax.set_xlabel("column")
    ax.set_ylabel("row")


def plot_u_matrix(som_or_weights, X=None, *, hits=None, ax=None, cmap="bone_r", marker_size=200.0,
                  marker_color="tab:red", colorbar=True, topology=None, edges=None, **kwargs):
    """The U-matrix (mean distance of each unit to its neighbours) with a marker per unit sized by its hits.

    Light cells are units close to their neighbours (inside a group), dark cells separate groups. One
    marker per unit (area proportional to the rows it wins; a small grey cross for empty units) keeps
    the picture readable for any number of customers, unlike one marker per customer in the original.

    Parameters
    ----------
    som_or_weights : SOM or array of shape (rows, cols, n_features)
    X : array-like, optional
        Rows to count per unit (e.g. the training customers); ignored when ``hits`` is given.
    hits : array of shape (rows, cols), optional
        Precomputed counts (``som.hit_map(X)``). Neither ``X`` nor ``hits``: no markers.
    marker_size : float
        Marker area (points^2) of the unit with the most hits; areas are proportional to the hits, with
        a floor of 4 so that units winning a few rows stay visible.
    topology : {"rectangular", "hexagonal"} or None
        Grid to draw; None: the SOM's (``"rectangular"`` for bare weights).
    edges : bool or None
        Also draw the distance between each pair of neighbouring units on their shared edge, in the
        same colours (the between-unit cells of a classic U-matrix: a ridge is a line of dark edges).
        None: on hexagonal maps only (square maps keep their look).
    **kwargs
        Passed to ``ax.imshow`` (square cells) or to the hexagons' ``PolyCollection``.

    Returns
    -------
    matplotlib.axes.Axes
    """
    w = _weights(som_or_weights)
    topology = map_topology(som_or_weights, topology)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5.2))
    image = draw_cells(ax, u_matrix(w, topology), topology, cmap=cmap, **kwargs)
    if edges if edges is not None else topology == "hexagonal":
        draw_edges(ax, w, topology, cmap=image.get_cmap(), norm=image.norm,
                   linewidth=3.0 if max(w.shape[:2]) <= 20 else 1.5)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="mean distance to neighbouring units")
    counts = _hits(w, X, hits)
    x, y = cell_centers(w.shape[:2], topology)
    if counts is not None:
        full = counts > 0
        sizes = np.maximum(marker_size * counts[full] / max(counts.max(), 1), 4.0)
        ax.scatter(x[full], y[full], s=sizes, c=marker_color, alpha=0.75, linewidths=0,
                   label="customers per unit", zorder=3)
        if (~full).any():
            ax.scatter(x[~full], y[~full], marker="x", s=12, c="0.5", linewidths=0.8, label="empty unit",
                       zorder=3)
        ax.set_title("U-matrix (marker area: customers per unit)")
    else:
        ax.set_title("U-matrix")
    _map_axes(ax, w.shape[:2], topology)
    return ax


def plot_hit_map(som_or_weights, X=None, *, hits=None, ax=None, cmap="Blues", annotate=None, colorbar=True,
                 topology=None, **kwargs):
    """Customers (rows of ``X``) won by each unit, as a heat map; empty units in the neutral ``EMPTY_COLOR``.

    ``annotate`` writes the counts in the cells (default: when the map has at most 400 units).
    ``X`` or ``hits`` is required. ``topology`` as in :func:`plot_u_matrix`. Returns the Axes.
    """
    w = _weights(som_or_weights)
    topology = map_topology(som_or_weights, topology)
    counts = _hits(w, X, hits)
    if counts is None:
        raise ParameterError("plot_hit_map needs X (rows to count) or hits (counts per unit)")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5.2))
    colormap = plt.get_cmap(cmap).with_extremes(bad=EMPTY_COLOR)
    image = draw_cells(ax, np.ma.masked_equal(counts, 0), topology, cmap=colormap, **kwargs)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="customers per unit")
    if annotate is None:
        annotate = counts.size <= 400
    if annotate:
        threshold = counts.max() * 0.6
        x, y = cell_centers(counts.shape, topology)
        for (r, c), v in np.ndenumerate(counts):
            ax.text(x[r, c], y[r, c], str(int(v)), ha="center", va="center", fontsize="xx-small",
                    color="white" if v > threshold else "black")
    empty = int((counts == 0).sum())
    ax.set_title(f"Hit map: {int(counts.sum()):,} customers, {empty} of {counts.size} units empty")
    _map_axes(ax, counts.shape, topology)
    return ax


def plot_component_planes(som_or_weights, feature_names=None, *, customers=None, bmu=None, unit_labels=None,
                          currency=None, axes=None, ncols=4, cmap="viridis", topology=None, **kwargs):
    """One small map per feature: the feature's value in each unit.

    Comparing planes shows which features go together (similar patterns) and where on the map each
    segment's traits lie. With ``customers`` and ``bmu`` each unit shows the median (the mean for
    shares and flags), in the feature's own unit (days, money, percent), of the customers it wins
    (units without customers in ``EMPTY_COLOR``); without them, the prototype's value on the scale the
    SOM was trained on (standardised, typically). Titles are the readable labels of
    :mod:`seglib.labels`.

    Parameters
    ----------
    feature_names : list of str, optional
        Features; default the SOM's ``feature_names_in_`` or ``feature 0, 1, ...``.
    customers : DataFrame, optional
        Customer table in original units with a column per feature (row i is the customer of
        ``bmu[i]``). Recommended: a reader understands "41 days", not "-0.6". A feature the table
        lacks (an engineered flag such as ``age_missing``) stays on the SOM's scale.
    bmu : array-like of int, optional
        Best unit (flat index) of each row of ``customers`` (``som.predict(X)``).
    unit_labels : array-like of shape (units,) or (rows, cols), optional
        Segment of each unit: black lines are drawn between segments on every plane.
    currency : str, optional
        Unit of money features in the titles.
    axes : array of Axes, optional
        At least one per feature; default a new figure with ``ncols`` columns.
    topology : {"rectangular", "hexagonal"} or None
        Grid to draw; None: the SOM's (``"rectangular"`` for bare weights).
    **kwargs
        Passed to every ``ax.imshow`` (square cells) or hexagons' ``PolyCollection``.

    Returns
    -------
    numpy.ndarray of Axes
        The axes used, flattened, one per feature (extra axes of a new figure are hidden).
    """
    from matplotlib.collections import LineCollection

    from seglib.labels import feature_info, label

    w = _weights(som_or_weights)
    topology = map_topology(som_or_weights, topology)
    shape, n_features = w.shape[:2], w.shape[2]
    if feature_names is None:
        feature_names = getattr(som_or_weights, "feature_names_in_", None)
    if feature_names is None:
        feature_names = [f"feature {i}" for i in range(n_features)]
    feature_names = [str(f) for f in feature_names]
    if len(feature_names) != n_features:
        raise ParameterError(f"{len(feature_names)} feature_names for {n_features} features")
    if (customers is None) != (bmu is None):
        raise ParameterError("plot_component_planes: give both customers and bmu (or neither)")
    planes, original, empty = w.astype(float), np.zeros(n_features, dtype=bool), None
    if customers is not None:
        bmu = np.asarray(bmu).ravel()
        if len(bmu) != len(customers):
            raise ParameterError(f"bmu has {len(bmu)} values for {len(customers)} customers")
        # features the customer table lacks (an engineered flag such as age_missing) stay scaled
        original = np.array([f in customers.columns for f in feature_names])
        cols = [f for f, o in zip(feature_names, original) if o]
        by_unit = customers[cols].astype(float).groupby(bmu)
        medians, means = by_unit.median(), by_unit.mean()
        rates = [c for c in cols if feature_info(c).kind in ("share", "flag")]  # a median share is 0 or 1
        medians[rates] = means[rates]
        medians = medians.reindex(range(shape[0] * shape[1]))
        planes = planes.copy()
        planes[:, :, original] = medians.to_numpy().reshape(shape[0], shape[1], len(cols))
        empty = (np.bincount(bmu, minlength=shape[0] * shape[1]) == 0).reshape(shape)
    borders = border_segments(np.asarray(unit_labels).reshape(shape), topology) if unit_labels is not None \
        else None
    if axes is None:
        ncols = max(1, min(ncols, n_features))
        nrows = int(np.ceil(n_features / ncols))
        fig, grid = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.9 * nrows), squeeze=False,
                                 layout="constrained")
        grid = grid.ravel()
        for extra in grid[n_features:]:
            extra.set_visible(False)
    else:
        grid = np.asarray(axes, dtype=object).ravel()
        if len(grid) < n_features:
            raise ParameterError(f"{len(grid)} axes for {n_features} features")
    colormap = plt.get_cmap(cmap).with_extremes(bad=EMPTY_COLOR)
    for i, ax in enumerate(grid[:n_features]):
        name = feature_names[i]
        plane = planes[:, :, i]
        if empty is not None and not original[i]:
            plane = np.where(empty, np.nan, plane)
        image = draw_cells(ax, plane, topology, cmap=colormap, **kwargs)
        bar = ax.figure.colorbar(image, ax=ax, shrink=0.8)
        if original[i] and feature_info(name).kind in ("share", "flag"):
            bar.ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        if borders is not None:
            ax.add_collection(LineCollection(borders, colors="k", linewidths=1, gid="boundaries"))
        scaled = f"{label(name, unit=False)} (scaled)"
        title = label(name, currency=currency) if original[i] else scaled
        ax.set_title(textwrap.fill(title, 30), fontsize="small")  # long programme names on two lines
        ax.set_xticks([])
        ax.set_yticks([])
    return grid[:n_features]


def plot_training_curve(som, *, ax=None, **kwargs):
    """Quantization error before training and after each epoch, with the neighbourhood radius.

    The error first rises or stalls while sigma is large (the map is being ordered, not fitted) and
    falls as sigma shrinks; a curve still falling steeply at the end suggests more epochs.
    ``kwargs`` go to the error line's ``ax.plot``. Returns the Axes of the error curve.
    """
    history = np.asarray(som.history_)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    kwargs.setdefault("marker", "o")
    ax.plot(np.arange(len(history)), history, label="quantization error", **kwargs)
    ax.set_xlabel("epoch (0 = start)")
    ax.set_ylabel("quantization error")
    sigmas = np.asarray(getattr(som, "sigmas_", []))
    if len(sigmas):
        twin = ax.twinx()
        twin.stairs(sigmas, np.arange(len(sigmas) + 1), color="0.5", linestyle="--", label="sigma")
        twin.set_ylabel("sigma (neighbourhood radius)", color="0.4")
        twin.set_ylim(bottom=0)
    ax.set_title("Training curve")
    return ax
