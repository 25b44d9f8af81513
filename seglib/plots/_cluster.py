"""Plots of step 03: dendrograms, the segment map, k-selection and stability figures.

Segment ``s`` is drawn in ``segment_colors(k)[s - 1]`` everywhere: dendrogram links inside a
segment, leaf labels, map markers, stability bars. Links above the cut are ``ABOVE_CUT_COLOR``.
Dendrograms are drawn with the cut heights (:func:`seglib.cluster.cut_heights`), so the ``max_d``
line separates exactly the merges the cut performs.
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from scipy.cluster.hierarchy import dendrogram

from seglib.cluster import cut, cut_heights, n_clusters_for_distance
from seglib.errors import InputError, ParameterError, check_option
from seglib.plots._colors import ABOVE_CUT_COLOR, EMPTY_COLOR, segment_colors, segment_label
from seglib.plots._grid import border_segments, cell_centers, draw_cells, map_topology, set_map_limits

__all__ = [
    "plot_consolidation",
    "plot_dendrogram",
    "plot_fancy_dendrogram",
    "plot_k_selection",
    "plot_segment_map",
    "plot_stability",
]


def _new_ax(ax, figsize=(8, 4.5)):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _node_stats(Z: np.ndarray, unit_labels, hits):
    """Per tree node (leaves then merges): segment (0 when mixed), units, customers."""
    n = len(Z) + 1
    ab = Z[:, :2].astype(int)
    seg = np.zeros(2 * n - 1, dtype=int)
    cust = np.zeros(2 * n - 1)
    if unit_labels is not None:
        seg[:n] = np.asarray(unit_labels).ravel()
    if hits is not None:
        cust[:n] = np.asarray(hits, dtype=float).ravel()
    for m, (a, b) in enumerate(ab):
        seg[n + m] = seg[a] if seg[a] == seg[b] else 0
        cust[n + m] = cust[a] + cust[b]
    units = np.concatenate([np.ones(n), Z[:, 3]])
    return seg, units, cust


def _draw_dendrogram(Z, *, unit_labels, hits, max_d, truncate_mode, p, annotate_above, leaf_labels,
                     ax, **kwargs):
    Z = np.asarray(Z, dtype=float)
    n = len(Z) + 1
    Zc = Z.copy()
    Zc[:, 2] = cut_heights(Z)
    if unit_labels is None and max_d is not None:
        unit_labels = cut(Z, max_d=max_d, hits=hits)
    if unit_labels is not None and np.asarray(unit_labels).size != n:
        got = np.asarray(unit_labels).size
        raise InputError(f"unit_labels: expected one segment per unit ({n}), got {got}")
    if hits is not None and np.asarray(hits).size != n:
        raise InputError(f"hits: expected one count per unit ({n}), got {np.asarray(hits).size}")
    seg, units, cust = _node_stats(Z, unit_labels, hits)
    colors = segment_colors(int(seg.max())) if unit_labels is not None else []

    def link_color(node):
        return colors[seg[node] - 1] if seg[node] > 0 else ABOVE_CUT_COLOR

    def leaf_label(node):
        size = int(units[node])
        text = f"{int(cust[node]):,} cust. / {size} u" if hits is not None else f"({size})"
        return f"S{seg[node]}: {text}" if seg[node] > 0 else text

    ax = _new_ax(ax)
    kwargs.setdefault("no_labels", not leaf_labels)
    ddata = dendrogram(Zc, truncate_mode=truncate_mode, p=p, ax=ax, link_color_func=link_color,
                       above_threshold_color=ABOVE_CUT_COLOR,
                       leaf_label_func=leaf_label if leaf_labels else None, **kwargs)
    if leaf_labels and not kwargs["no_labels"]:
        for tick, node in zip(ax.get_xticklabels(), ddata["leaves"]):
            if seg[node] > 0:
                tick.set_color(colors[seg[node] - 1])
    if annotate_above is not None:
        for i, d, c in zip(ddata["icoord"], ddata["dcoord"], ddata["color_list"]):
            x, y = 0.5 * (i[1] + i[2]), d[1]
            if y > annotate_above:
                ax.plot(x, y, "o", color=c, ms=3)
                ax.annotate(f"{y:.3g}", (x, y), xytext=(0, -4), textcoords="offset points",
                            va="top", ha="center", fontsize=7)
    if max_d is not None:
        k = n_clusters_for_distance(Z, max_d)
        ax.axhline(max_d, color="k", ls="--", lw=1, gid="max_d")
        ax.annotate(f"max_d = {max_d:.3g}: {k} segments", (0, max_d), xycoords=("axes fraction", "data"),
                    xytext=(2, 3), textcoords="offset points", ha="left", va="bottom", fontsize=8,
                    bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
        top = max(ax.get_ylim()[1], 1.05 * max_d)
        ax.set_ylim(0, top)
    ax.set_ylabel("merge height (cut height)")
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def plot_dendrogram(Z, *, unit_labels=None, hits=None, max_d=None, ax=None, **kwargs):
    """Full dendrogram of the prototypes, links coloured by segment.

    Parameters
    ----------
    Z : ndarray
        Linkage matrix (``PrototypeClustering.linkage_``).
    unit_labels : array-like of shape (units,), optional
        Segment of each unit; links inside a segment take its colour. Derived from ``max_d`` when
        only ``max_d`` is given.
    hits : array-like of shape (units,) or (rows, cols), optional
        Customers per unit: used to number the segments of a ``max_d`` cut by size.
    max_d : float, optional
        Draw the cut line at this height.
    ax : matplotlib Axes, optional
    **kwargs
        Passed to :func:`scipy.cluster.hierarchy.dendrogram` (e.g. ``no_labels=False`` to show the
        unit index of each leaf; hidden by default since a 15 x 15 map has 225 leaves).

    Returns
    -------
    matplotlib Axes
    """
    kwargs.setdefault("no_labels", True)
    ax = _draw_dendrogram(Z, unit_labels=unit_labels, hits=hits, max_d=max_d, truncate_mode=None, p=30,
                          annotate_above=None, leaf_labels=False, ax=ax, **kwargs)
    ax.set_title("Dendrogram of the SOM prototypes")
    ax.set_xlabel("units")
    return ax


def plot_fancy_dendrogram(Z, *, truncate_mode="lastp", p=12, annotate_above=0.0, max_d=None, unit_labels=None,
                          hits=None, ax=None, **kwargs):
    """Truncated dendrogram with annotated merge heights, a ``max_d`` line and sized leaves.

    The original analysis' ``fancy_dendrogram``, improved: colours match the segment map, leaf
    labels give the segment and the size of each contracted cluster (customers and units), the
    ``max_d`` line says how many segments it gives, and the heights are cut heights.

    Parameters
    ----------
    Z : ndarray
        Linkage matrix.
    truncate_mode : {"lastp", "level", None}, default="lastp"
        scipy's truncation; ``"lastp"`` shows the last ``p`` merged clusters as leaves.
    p : int, default=12
        Leaves to show with ``"lastp"``; choose it a little above the number of segments so the
        merges just below the cut are visible.
    annotate_above : float or None, default=0.0
        Annotate merge heights above this value (None: no annotation). Raise it to declutter.
    max_d : float, optional
        Draw the cut line at this height (and colour the segments it gives).
    unit_labels : array-like of shape (units,), optional
        Segment of each unit, to colour links and leaf labels (``PrototypeClustering.unit_labels_``).
    hits : array-like, optional
        Customers per unit, for leaf sizes and the numbering of a ``max_d`` cut.
    ax : matplotlib Axes, optional
    **kwargs
        Passed to :func:`scipy.cluster.hierarchy.dendrogram`.

    Returns
    -------
    matplotlib Axes
    """
    if truncate_mode is not None:
        check_option("truncate_mode", truncate_mode, ["lastp", "level", None])
    kwargs.setdefault("leaf_rotation", 90)
    kwargs.setdefault("leaf_font_size", 8)
    ax = _draw_dendrogram(Z, unit_labels=unit_labels, hits=hits, max_d=max_d, truncate_mode=truncate_mode,
                          p=p, annotate_above=annotate_above, leaf_labels=True, ax=ax, **kwargs)
    ax.set_title("Dendrogram of the SOM prototypes (truncated)")
    ax.set_xlabel("segment: cluster size" if unit_labels is not None or max_d is not None else "cluster size")
    return ax


def _map_inputs(weights, unit_labels, hits):
    w = getattr(weights, "weights_", weights)
    w = np.asarray(w, dtype=float) if w is not None else None
    labels = np.asarray(unit_labels)
    if w is not None and w.ndim == 3:
        shape = w.shape[:2]
    elif labels.ndim == 2:
        shape = labels.shape
    else:
        raise InputError("weights: expected the SOM or its weights of shape (rows, cols, n_features)")
    if labels.size != shape[0] * shape[1]:
        raise InputError(f"unit_labels: expected {shape[0] * shape[1]} units for a {shape} map, "
                         f"got {labels.size}")
    h = None
    if hits is not None:
        h = np.asarray(hits, dtype=float)
        if h.size != labels.size:
            raise InputError(f"hits: expected {labels.size} counts for a {shape} map, got {h.size}")
        h = h.reshape(shape)
    return w, labels.reshape(shape).astype(int), h


def _segment_boundaries(labels2d: np.ndarray, topology: str = "rectangular") -> np.ndarray:
    """Line segments ``[(x0, y0), (x1, y1)]`` along the cell edges between neighbouring units of different
    segments (see :func:`seglib.plots._grid.border_segments`).

    Unit (row r, col c) is the square centred at x = c, y = r (the ``imshow`` layout), or the hexagon
    centred at :func:`seglib.som.unit_positions` on a hexagonal map.
    """
    return border_segments(labels2d, topology)


def plot_segment_map(weights, unit_labels, hits=None, *, background="umatrix", umatrix=None, legend=True,
                     colorbar=True, topology=None, names=None, ax=None, **kwargs):
    """The map with segment colours, segment boundaries, and empty units shown as empty.

    Each unit is a marker of its segment's colour (area growing with its customers when ``hits``
    is given; a hollow ring for a unit that wins no customer: it belongs to the segment, which
    matters for new customers, but holds nobody). Black lines separate units of different
    segments, along the edges of the cells (squares, or hexagons on a hexagonal map). Unit (row r,
    col c) is drawn at x = c, y = r on a square map, at :func:`seglib.som.unit_positions` on a
    hexagonal one; row 0 at the top.

    Parameters
    ----------
    weights : SOM or array-like of shape (rows, cols, n_features)
        The fitted SOM or its weights (for the map shape and the U-matrix). May be None when
        ``unit_labels`` is 2-D and the background is not the U-matrix.
    unit_labels : array-like of shape (units,) or (rows, cols)
        Segment (1..k) of each unit.
    hits : array-like of shape (rows, cols) or (units,), optional
        Customers per unit.
    background : {"umatrix", "hits", None}, default="umatrix"
        Grey background: the U-matrix (mean distance of a unit's weights to its neighbours'; dark
        ridges separate groups of units, and good segment boundaries follow them), the hit counts,
        or nothing.
    umatrix : array-like of shape (rows, cols), optional
        Precomputed U-matrix; computed with ``seglib.som.u_matrix(weights)`` when omitted.
    legend, colorbar : bool, default=True
        The legend (below the map) names each segment with its number, name and customers.
    topology : {"rectangular", "hexagonal"} or None
        The map's grid; None: the SOM's when ``weights`` is a fitted SOM, else ``"rectangular"``. Pass
        ``som.topology`` with bare weights of a hexagonal map.
    names : mapping or Series of segment -> str, optional
        Segment names for the legend (``profile["name"]``); numbers only when None.
    ax : matplotlib Axes, optional
    **kwargs
        Passed to the marker ``scatter`` call.

    Returns
    -------
    matplotlib Axes
    """
    check_option("background", background, ["umatrix", "hits", None])
    topology = map_topology(weights, topology)
    w, labels, h = _map_inputs(weights, unit_labels, hits)
    rows, cols = labels.shape
    ax = _new_ax(ax, figsize=(6, 5))
    if background == "umatrix":
        if umatrix is None:
            if w is None:
                raise InputError("weights: the U-matrix background needs the SOM weights")
            from seglib.som import u_matrix

            umatrix = u_matrix(w, topology)
        bg, bg_label = np.asarray(umatrix, dtype=float).reshape(rows, cols), "U-matrix distance"
    elif background == "hits":
        if h is None:
            raise ParameterError("background='hits' needs hits (customers per unit)")
        bg, bg_label = h, "customers per unit"
    if background is not None:
        im = draw_cells(ax, bg, topology, cmap="Greys", alpha=0.6, origin="upper",
                        extent=(-0.5, cols - 0.5, rows - 0.5, -0.5))
        if colorbar:
            ax.figure.colorbar(im, ax=ax, shrink=0.8, label=bg_label)
    k = int(labels.max())
    colors = np.array(segment_colors(k))
    x, y = (v.ravel() for v in cell_centers((rows, cols), topology))
    seg = labels.ravel()
    if h is None:
        size = np.full(rows * cols, 60.0)
        empty = np.zeros(rows * cols, dtype=bool)
    else:
        size = 15 + 150 * np.sqrt(h.ravel() / max(h.max(), 1))
        empty = h.ravel() == 0
    kwargs.setdefault("linewidths", 1.2)
    ax.scatter(x[~empty], y[~empty], s=size[~empty], c=colors[seg[~empty] - 1], edgecolors="white",
               zorder=3, gid="units", **kwargs)
    if empty.any():
        ax.scatter(x[empty], y[empty], s=40, facecolors=EMPTY_COLOR, edgecolors=colors[seg[empty] - 1],
                   zorder=3, gid="empty_units", **kwargs)
    ax.add_collection(LineCollection(_segment_boundaries(labels, topology), colors="k", linewidths=2,
                                     zorder=4, gid="boundaries"))
    set_map_limits(ax, (rows, cols), topology)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{k} segments on the map")
    if legend:
        names = {} if names is None else {int(s): n for s, n in dict(names).items()}
        customers = (np.bincount(seg, weights=h.ravel(), minlength=k + 1) if h is not None else None)
        handles = []
        for s in range(1, k + 1):
            text = segment_label(s, names.get(s)) if names else f"segment {s}"
            if customers is not None:
                text += f" ({int(customers[s]):,} customers)"
            handles.append(Line2D([], [], marker="o", ls="", color=colors[s - 1], label=text))
        if empty.any():
            handles.append(Line2D([], [], marker="o", ls="", markerfacecolor=EMPTY_COLOR,
                                  markeredgecolor="k", label="unit without customers"))
        ncol = 1 if names else min(len(handles), 4)  # named entries are long: one per line
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol,
                  fontsize=8, frameon=False, handletextpad=0.2, columnspacing=1.0)
    return ax


def plot_consolidation(weights, cut_labels, unit_labels, hits=None, *, umatrix=None, topology=None, ax=None,
                       **kwargs):
    """How consolidation changed the cut: the final segments on the map, moved units ringed.

    Each unit is drawn in the colour of its final segment (as :func:`plot_segment_map`); a unit that
    consolidation moved (:func:`seglib.cluster.moved_units`) gets a ring in the colour of the
    segment its cut segment became, so the ring says where the tree put it and the dot where the
    customers' means put it.

    Parameters
    ----------
    weights : SOM or array-like of shape (rows, cols, n_features)
        The fitted SOM or its prototypes (``SOM.weights_``).
    cut_labels, unit_labels : array-like of shape (units,)
        ``PrototypeClustering.cut_labels_`` and ``unit_labels_``.
    hits : array-like of shape (rows, cols), optional
        Customers per unit.
    umatrix : array-like of shape (rows, cols), optional
        Background (computed from the weights when omitted).
    topology : {"rectangular", "hexagonal"} or None
        The map's grid; None: the SOM's (rectangular for bare weights).
    ax : matplotlib Axes, optional
    **kwargs
        Passed to :func:`plot_segment_map`.

    Returns
    -------
    matplotlib Axes
    """
    from seglib.cluster import cut_match

    topology = map_topology(weights, topology)
    w, labels, h = _map_inputs(weights, unit_labels, hits)
    cut_ = np.asarray(cut_labels).ravel()
    if cut_.size != labels.size:
        raise InputError(f"cut_labels: expected one segment per unit ({labels.size}), got {cut_.size}")
    ax = plot_segment_map(weights, unit_labels, hits, umatrix=umatrix, topology=topology, ax=ax, **kwargs)
    became = cut_match(cut_, labels.ravel(), None if h is None else h.ravel())[cut_]
    moved = became != labels.ravel()
    c, r = (v.ravel() for v in cell_centers(labels.shape, topology))
    colors = np.array(segment_colors(int(labels.max())))
    if moved.any():
        was = became[moved]
        ax.scatter(c[moved], r[moved], s=260, facecolors="none", edgecolors=colors[was - 1], linewidths=2.2,
                   zorder=5, gid="moved_units")
    customers = 0 if h is None else int(h.ravel()[moved].sum())
    share = f", {customers / h.sum():.1%} of the customers" if h is not None and h.sum() else ""
    ax.set_title(f"{int(labels.max())} segments: consolidation moved {int(moved.sum())} of {labels.size} "
                 f"units{share}\n(ring: the segment the cut gave)", fontsize=10)
    return ax


def plot_k_selection(table, *, suggested=None, min_share=0.02, axes=None):
    """The k-selection figures side by side: silhouette, Davies-Bouldin, smallest share, gap.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`seglib.cluster.k_selection`.
    suggested : int, optional
        Mark this k (e.g. from :func:`seglib.cluster.suggest_k`) in every panel.
    min_share : float, default=0.02
        Draw the smallest acceptable segment share (the one ``suggest_k`` used).
    axes : sequence of 4 matplotlib Axes, optional
        Where to draw; a new 1 x 4 figure when omitted.

    Returns
    -------
    ndarray of 4 matplotlib Axes
    """
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 4, figsize=(13, 3), sharex=True, layout="constrained")
    axes = np.asarray(axes).ravel()
    if axes.size != 4:
        raise ParameterError(f"axes: expected 4 Axes, got {axes.size}")
    panels = [("silhouette", "silhouette (higher is better)"),
              ("davies_bouldin", "Davies-Bouldin (lower is better)"),
              ("smallest_share", "smallest segment's share"),
              ("gap", "merge-height gap (wider is clearer)")]
    for ax, (col, title) in zip(axes, panels):
        ax.plot(table["k"], table[col], "o-", color="C0", ms=4)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("number of segments k")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if suggested is not None:
            ax.axvline(suggested, color="C3", ls=":", lw=1.5, gid="suggested")
        ax.spines[["top", "right"]].set_visible(False)
    axes[2].axhline(min_share, color="grey", ls="--", lw=1)
    axes[2].yaxis.set_major_formatter("{x:.0%}")
    return axes


def plot_stability(result, *, ax=None):
    """Per-segment Jaccard stability of the kept segments over resamples (bars: mean; whiskers: min to max).

    Lines mark Hennig's (2007) thresholds: a mean of 0.75 or more is a stable segment, 0.6-0.75 a
    weak one, below 0.6 one not to trust (dotted: 0.5, below which a segment dissolves in a run).
    The title gives the mean adjusted Rand index of the runs with the kept segments.

    Parameters
    ----------
    result : seglib.cluster.StabilityResult or None
        None (stability not measured, ``n_stability_runs=0``) draws an empty panel saying so.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    ax = _new_ax(ax, figsize=(6, 3.5))
    if result is None:
        ax.text(0.5, 0.5, "stability not measured (n_stability_runs = 0)", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    jac = result.jaccard
    seg = jac.index.to_numpy()
    mean = jac.mean(axis=1).to_numpy()
    lo, hi = jac.min(axis=1).to_numpy(), jac.max(axis=1).to_numpy()
    colors = segment_colors(len(seg))
    ax.bar(seg, np.nan_to_num(mean), color=colors, yerr=np.nan_to_num([mean - lo, hi - mean]), capsize=3,
           gid="jaccard")
    ax.axhline(0.75, color="grey", ls="--", lw=1)
    ax.axhline(0.6, color="grey", ls="-.", lw=1)
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_ylim(0, 1.05)
    ax.set_xticks(seg, [str(s) for s in seg])
    ax.set_xlabel("segment")
    ax.set_ylabel("best-match Jaccard")
    ax.set_title(f"Kept segments over {result.n_runs} resamples: mean ARI {result.mean_ari:.2f}",
                 fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return ax
