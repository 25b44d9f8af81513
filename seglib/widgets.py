"""Interactive cut explorer for notebook 03 (ipywidgets).

:class:`ClusterExplorer` shows the fancy dendrogram with its ``max_d`` line, the segment map and
the segment sizes, with two linked sliders: the number of segments and the cut height. Moving one
moves the other to match (a distance implies a count; a count implies the middle of its distance
range). The handlers are plain methods, so the logic is tested without a browser::

    ex = ClusterExplorer.from_clustering(pc, som.weights_, hits)
    ex.on_k_change({"new": 5})     # what the count slider calls
    ex.d_slider.value, ex.unit_labels, ex.figure

The figure is rendered to a PNG inside an ``Output`` widget (never through pyplot), so it shows the
same in JupyterLab, under papermill and under nbval, where only the initial state is drawn. The cut
used downstream must come from the notebook's parameters, not from the sliders: an explorer is for
looking.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from contextlib import contextmanager

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from seglib.cluster import (
    as_hits,
    as_prototypes,
    check_k,
    check_linkage,
    cut,
    cut_heights,
    distance_range_for_k,
    n_clusters_for_distance,
    number_like,
)
from seglib.errors import ParameterError
from seglib.plots import map_topology, plot_fancy_dendrogram, plot_segment_map, segment_colors

__all__ = ["ClusterExplorer"]

logger = logging.getLogger(__name__)


class ClusterExplorer:
    """Linked sliders for the cut of a prototype dendrogram, with the figures they imply.

    Parameters
    ----------
    Z : ndarray
        Linkage of the prototypes (``PrototypeClustering.linkage_``).
    weights : array-like of shape (rows, cols, n_features)
        The SOM's prototypes (``SOM.weights_``), for the map.
    hits : array-like of shape (rows, cols), optional
        Customers per unit: segment sizes, numbering by size, empty units.
    umatrix : array-like of shape (rows, cols), optional
        Background of the map; computed with ``seglib.som.u_matrix`` when omitted and
        ``background="umatrix"``.
    n_clusters : int or None, default=8
        Initial number of segments. Set it to None to start from ``max_d`` instead (exactly one
        of the two, as in :class:`~seglib.cluster.PrototypeClustering`).
    max_d : float or None, default=None
        Initial cut height.
    k_max : int, default=15
        Largest number of segments on the count slider; the distance slider spans the distances
        giving 1..k_max segments.
    p : int, default=12
        Leaves of the truncated dendrogram (raised to k when more segments are shown).
    background : {"umatrix", "hits", None}, default="umatrix"
        Background of the segment map.
    topology : {"rectangular", "hexagonal"} or None, default=None
        The map's grid (``SOM.topology``): the map is drawn in squares or hexagons. None: the SOM's
        when ``weights`` is a fitted SOM, else ``"rectangular"``.
    dpi : int, default=80
        Resolution of the drawn figure.
    segments_for : callable, optional
        Turns a cut (segment of each unit) into the segments the user gets; with a consolidating
        clustering, :meth:`~seglib.cluster.PrototypeClustering.segments_for` (what
        :meth:`from_clustering` passes), so the map and the sizes show the consolidated segments
        for every position of the sliders. None: the plain cut.
    kept_segments : array-like of shape (units,), optional
        The segments the run kept, per unit (``ClusterStep.unit_segments``: each unit's majority
        segment when customers were assigned one by one). At their number of segments the map and
        the sizes show them rather than a preview, so the explorer agrees with ``result.csv``; other
        positions of the sliders preview cuts (consolidated unit by unit).

    Attributes
    ----------
    n_clusters, max_d : int, float
        The current cut. ``max_d`` lies in the range that gives ``n_clusters`` segments, except
        when no distance gives exactly that many (tied merge heights): then it is the tied height.
    cut_labels : ndarray of shape (units,)
        Current cut of the tree, each segment numbered as the segment it became (the dendrogram's
        colours, those of the map).
    unit_labels : ndarray of shape (units,)
        Current segment of each unit, 1..k by size: the cut, consolidated by ``segments_for``.
    figure : matplotlib Figure
        The figure last drawn (dendrogram axes first, then the map).
    k_slider, d_slider, output, sizes, box : ipywidgets
        The widgets; ``box`` holds them all.
    """

    def __init__(self, Z, weights, hits=None, *, umatrix=None, n_clusters=8, max_d=None, k_max=15, p=12,
                 background="umatrix", topology=None, dpi=80, segments_for=None, kept_segments=None):
        self.Z = check_linkage(Z)
        self.topology = map_topology(weights, topology)
        weights = getattr(weights, "weights_", weights)
        X, shape = as_prototypes(weights)
        n = len(self.Z) + 1
        if len(X) != n or shape is None:
            raise ParameterError(f"weights: expected the {n} prototypes of the map "
                                 f"as (rows, cols, n_features)")
        self.weights = np.asarray(weights, dtype=float)
        self.hits = None if hits is None else as_hits(hits, n).reshape(shape)
        if (n_clusters is None) == (max_d is None):
            raise ParameterError("give exactly one of n_clusters (a count) and max_d (a distance)")
        if umatrix is None and background == "umatrix":
            from seglib.som import u_matrix

            umatrix = u_matrix(self.weights, self.topology)
        self.umatrix = umatrix
        self.background, self.p, self.dpi = background, int(p), int(dpi)
        self.segments_for = segments_for
        self.kept_segments = None if kept_segments is None else np.asarray(kept_segments).ravel()
        self._syncing = False
        self.n_redraws = 0

        k_max = check_k(k_max, n, "k_max")
        if n_clusters is not None:
            k_max = max(k_max, check_k(n_clusters, n))
        h = cut_heights(self.Z)
        reachable = [k for k in range(k_max, 0, -1) if distance_range_for_k(self.Z, k) is not None]
        d_min = distance_range_for_k(self.Z, reachable[0])[0] if reachable else 0.0
        d_max = float(h[-1]) * 1.05 if h[-1] > 0 else 1.0
        if max_d is not None:
            d_min, d_max = min(d_min, float(max_d)), max(d_max, float(max_d))
        self.k_slider = widgets.IntSlider(value=1, min=1, max=k_max, description="segments",
                                          continuous_update=False)
        self.d_slider = widgets.FloatSlider(value=d_max, min=d_min, max=d_max, step=(d_max - d_min) / 1000,
                                            description="max_d", readout_format=".4g",
                                            continuous_update=False)
        self.output = widgets.Output()
        self.sizes = widgets.HTML()
        self.box = widgets.VBox([widgets.HBox([self.k_slider, self.d_slider]), self.output, self.sizes])
        self.k_slider.observe(self.on_k_change, names="value")
        self.d_slider.observe(self.on_d_change, names="value")
        if max_d is not None:
            self.set_max_d(max_d)
        else:
            self.set_k(n_clusters)

    @classmethod
    def from_clustering(cls, clustering, weights, hits=None, **kwargs):
        """Explorer starting at a fitted :class:`~seglib.cluster.PrototypeClustering`'s cut (its
        ``max_d`` when it was cut by distance, else its number of segments). The map is drawn in the
        clustering's ``topology`` unless ``topology`` is given; with a consolidating clustering it shows
        the consolidated segments at every cut. Pass ``kept_segments`` (``ClusterStep.unit_segments``)
        to show, at the kept number of segments, the segments the customers got."""
        if getattr(weights, "topology", None) is None:
            kwargs.setdefault("topology", getattr(clustering, "topology", None))
        if getattr(clustering, "consolidate", False):
            kwargs.setdefault("segments_for", clustering.segments_for)
        if clustering.max_d is not None:
            return cls(clustering.linkage_, weights, hits, n_clusters=None, max_d=clustering.max_d, **kwargs)
        return cls(clustering.linkage_, weights, hits, n_clusters=clustering.n_clusters_, **kwargs)

    # ---- state changes (what the sliders call) ------------------------------------------------

    @contextmanager
    def _quiet(self):
        """Set the other slider without its handler running (no callback loops)."""
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def on_k_change(self, change):
        """Handler of the count slider: ``change["new"]`` is the new number of segments."""
        if not self._syncing:
            self.set_k(change["new"])

    def on_d_change(self, change):
        """Handler of the distance slider: ``change["new"]`` is the new cut height."""
        if not self._syncing:
            self.set_max_d(change["new"])

    def set_k(self, k):
        """Cut into ``k`` segments; the distance slider moves to the middle of k's distance range."""
        k = check_k(k, len(self.Z) + 1)
        rng = distance_range_for_k(self.Z, k)
        if rng is None:  # no distance gives exactly k: show the tied height
            self.max_d = float(cut_heights(self.Z)[len(self.Z) - k])
        else:
            self.max_d = self._distance_in(*rng)
        self.n_clusters = k
        self._set_labels(cut(self.Z, n_clusters=k, hits=self.hits))
        with self._quiet():
            self._show(self.n_clusters, self.max_d)
        self._refresh(tied=rng is None)

    def set_max_d(self, max_d):
        """Cut at height ``max_d``; the count slider moves to the number of segments it gives."""
        self.max_d = float(max_d)
        self.n_clusters = n_clusters_for_distance(self.Z, self.max_d)
        self._set_labels(cut(self.Z, max_d=self.max_d, hits=self.hits))
        with self._quiet():
            self._show(self.n_clusters, self.max_d)
        self._refresh()

    def _set_labels(self, cut_labels):
        kept = self.kept_segments
        if kept is not None and int(np.max(cut_labels)) == int(kept.max()):
            self.unit_labels = kept  # the kept k: the segments the customers get, as the run made them
        else:
            self.unit_labels = cut_labels if self.segments_for is None else self.segments_for(cut_labels)
        self.cut_labels = number_like(cut_labels, self.unit_labels, self.hits)

    def _show(self, k, max_d):
        """Put both sliders on (k, max_d), widening their ranges if needed (handlers muted)."""
        self.k_slider.max = max(self.k_slider.max, k)
        self.d_slider.min = min(self.d_slider.min, max_d)
        self.d_slider.max = max(self.d_slider.max, max_d)
        self.k_slider.value = k
        self.d_slider.value = max_d

    def _distance_in(self, low, high):
        """A distance in [low, high): the middle, snapped to the slider's step when that stays inside."""
        if not np.isfinite(high):
            high = max(self.d_slider.max, low * 1.05 + 1e-12)
        mid = 0.5 * (low + high)
        step, origin = self.d_slider.step, self.d_slider.min
        snapped = origin + round((mid - origin) / step) * step if step > 0 else mid
        return float(snapped if low <= snapped < high else mid)

    # ---- drawing ------------------------------------------------------------------------------

    def draw(self) -> Figure:
        """Draw the current state: fancy dendrogram with the ``max_d`` line, and the segment map."""
        fig = Figure(figsize=(12, 4.6), layout="constrained")
        ax_tree, ax_map = fig.subplots(1, 2, width_ratios=[1.5, 1])
        plot_fancy_dendrogram(self.Z, p=max(self.p, self.n_clusters), max_d=self.max_d,
                              unit_labels=self.cut_labels, hits=self.hits, ax=ax_tree)
        plot_segment_map(self.weights, self.unit_labels, self.hits, background=self.background,
                         umatrix=self.umatrix, topology=self.topology, ax=ax_map)
        self.figure = fig
        return fig

    def sizes_table(self) -> list[dict]:
        """Rows (segment, units, empty units, customers, share) of the current segments."""
        seg = self.unit_labels
        hits = self.hits.ravel() if self.hits is not None else np.zeros(seg.size)
        total = hits.sum()
        rows = []
        for s in range(1, int(self.unit_labels.max()) + 1):
            in_s = seg == s
            cust = hits[in_s].sum()
            empty = int((in_s & (hits == 0)).sum())
            rows.append({"segment": s, "units": int(in_s.sum()), "empty_units": empty,
                         "customers": int(cust), "share": cust / total if total else np.nan})
        return rows

    def _sizes_html(self, tied: bool) -> str:
        colors = segment_colors(int(self.unit_labels.max()))
        head = "".join(f"<th style='padding:0 8px'>{c}</th>" for c in
                       ("segment", "units", "of which empty", "customers", "share"))
        body = ""
        for r in self.sizes_table():
            swatch = f"<span style='color:{colors[r['segment'] - 1]}'>&#9632;</span>"
            share = "" if np.isnan(r["share"]) else f"{r['share']:.1%}"
            body += (f"<tr><td>{swatch} S{r['segment']}</td><td>{r['units']}</td><td>{r['empty_units']}</td>"
                     f"<td>{r['customers']:,}</td><td>{share}</td></tr>")
        note = (f"<p>No distance gives exactly {self.n_clusters} segments (two merges at height "
                f"{self.max_d:.4g}); the cut by count breaks the tie.</p>" if tied else "")
        caption = html.escape(f"{self.n_clusters} segments, max_d = {self.max_d:.4g}")
        return f"<b>{caption}</b>{note}<table><tr>{head}</tr>{body}</table>"

    def _refresh(self, tied: bool = False):
        fig = self.draw()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=self.dpi)
        png = base64.b64encode(buf.getvalue()).decode("ascii")
        text = f"<segment explorer: {self.n_clusters} segments, max_d = {self.max_d:.4g}>"
        self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {"image/png": png, "text/plain": text}},)
        self.sizes.value = self._sizes_html(tied)
        self.n_redraws += 1
        logger.debug("explorer redrawn: k=%d, max_d=%.4g", self.n_clusters, self.max_d)

    # ---- display ------------------------------------------------------------------------------

    def display(self):
        """Show the widgets (sliders, figure, sizes) in the notebook."""
        from IPython.display import display

        display(self.box)

    def _ipython_display_(self):
        self.display()
