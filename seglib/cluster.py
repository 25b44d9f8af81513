"""Step 03: hierarchical clustering of SOM prototypes into customer segments.

A trained SOM summarises the customers by its unit weights (prototypes). This module clusters the
prototypes, cuts the tree into segments and hands every customer the segment of its best-matching
unit (the two-level "SOM, then hierarchical clustering" approach of Vesanto & Alhoniemi, 2000).

The pieces, in the order a notebook uses them:

* :func:`prototype_linkage` builds a scipy linkage matrix of the prototypes (any scipy method, an
  optional hit-count weighting, an optional map-contiguity constraint);
  :class:`PrototypeClustering` wraps it as a scikit-learn style estimator that also makes the cut.
* The cut is made either by distance (``max_d``) or by count (``n_clusters``), never both. Both are
  defined on the *cut heights* (:func:`cut_heights`, the running maximum of the merge heights), so
  a cut is always a prefix of the merge sequence: :func:`n_clusters_for_distance` and
  :func:`distance_range_for_k` translate one into the other, and equivalent cuts give identical
  labels. Segments are numbered 1..k by size (customers), largest first (:func:`number_by_size`).
* :func:`assign_segments` gives each customer its segment through its best-matching unit.
* :func:`k_selection` and :func:`suggest_k` help to choose k; :func:`segment_stability` resamples
  the customers, re-runs the segmentation and measures how much of each kept segment survives.

Unit ``i`` is row ``i`` of ``weights.reshape(-1, n_features)`` (row-major: ``i = row * cols + col``),
the same flat index as ``SOM.predict``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import cophenet, linkage
from scipy.spatial.distance import pdist, squareform
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import adjusted_rand_score, davies_bouldin_score, silhouette_score
from sklearn.metrics.cluster import contingency_matrix
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from seglib.errors import InputError, ParameterError, check_float, check_int, check_option
from seglib.som import TOPOLOGIES
from seglib.som import grid_adjacency as som_grid_adjacency

__all__ = [
    "METHODS",
    "MASS_METHODS",
    "PrototypeClustering",
    "StabilityResult",
    "assign_segments",
    "cophenetic_correlation",
    "cut",
    "cut_heights",
    "distance_range_for_k",
    "grid_adjacency",
    "k_selection",
    "n_clusters_for_distance",
    "number_by_size",
    "prototype_linkage",
    "segment_stability",
    "som_reclusterer",
    "stability_summary",
    "suggest_k",
    "as_hits",
    "as_prototypes",
    "check_k",
    "check_linkage",
]

logger = logging.getLogger(__name__)

#: Linkage methods (scipy's names). "average" is the original analysis' method.
METHODS = ("ward", "average", "complete", "single", "weighted", "centroid", "median")
#: Methods whose merge rule uses cluster sizes, and so can use hit counts as masses.
MASS_METHODS = ("ward", "average", "centroid")


# --------------------------------------------------------------------------------------------------
# input checks


def as_prototypes(weights) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """Return the prototypes as (units, F) and the map shape (None for 2-D input).

    ``weights`` is a SOM's ``weights_`` (rows, cols, F) or a (units, F) array; anything else, or
    non-finite values, raises :class:`~seglib.errors.InputError`. Shared with :mod:`seglib.widgets`.
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim not in (2, 3) or w.shape[-1] < 1 or w.size == 0:
        raise InputError(
            f"weights: expected an array of shape (rows, cols, n_features) or (units, n_features), "
            f"got shape {w.shape}"
        )
    if not np.isfinite(w).all():
        raise InputError("weights: expected finite values, found NaN or inf")
    shape = w.shape[:2] if w.ndim == 3 else None
    return w.reshape(-1, w.shape[-1]), shape


def as_hits(hits, n_units: int) -> np.ndarray | None:
    """Return hit counts as a float vector of length ``n_units`` (None stays None).

    :class:`~seglib.errors.InputError` unless there is one non-negative finite count per unit.
    """
    if hits is None:
        return None
    h = np.asarray(hits, dtype=float)
    if h.size != n_units:
        raise InputError(f"hits: expected one count per unit ({n_units}), got shape {h.shape}")
    h = h.ravel()
    if not np.isfinite(h).all() or (h < 0).any():
        raise InputError("hits: expected non-negative finite counts")
    return h


def check_linkage(Z) -> np.ndarray:
    """Return ``Z`` as a float array; :class:`~seglib.errors.InputError` unless it is a scipy linkage
    matrix of shape (n - 1, 4)."""
    Z = np.asarray(Z, dtype=float)
    if Z.ndim != 2 or Z.shape[1] != 4 or len(Z) < 1:
        raise InputError(f"linkage: expected a scipy linkage matrix of shape (n - 1, 4), got {Z.shape}")
    return Z


def check_k(k, n_units: int, name: str = "n_clusters") -> int:
    """Return ``k`` as an int; :class:`~seglib.errors.ParameterError` unless it is a number of segments
    from 1 to ``n_units`` (a map cannot have more segments than units)."""
    return check_int(name, k, minimum=1, maximum=n_units)


def _check_distance(max_d) -> float:
    return check_float("max_d", max_d, minimum=0)


# --------------------------------------------------------------------------------------------------
# linkage


def grid_adjacency(map_shape: tuple[int, int], topology: str = "rectangular") -> np.ndarray:
    """Boolean (units, units) matrix: True for units sharing an edge of their cells on the map.

    On a rectangular map two units are neighbours when they differ by one in the row or in the column
    index (the 4-neighbourhood); on a hexagonal map, when their hexagons share an edge (6 neighbours,
    :func:`seglib.som.adjacent_units`). A segment built from it is a region of the map drawn without
    jumps, and the segment boundaries drawn by ``plot_segment_map`` enclose it.
    """
    return som_grid_adjacency(map_shape, topology, 4 if topology == "rectangular" else 6)


def _lance_williams(method, d_ik, d_jk, d_ij, m_i, m_j, m_k):
    """Distance from cluster k to the union of i and j (Euclidean-based, scipy's definitions)."""
    if method == "single":
        return np.minimum(d_ik, d_jk)
    if method == "complete":
        return np.maximum(d_ik, d_jk)
    if method == "average":
        return (m_i * d_ik + m_j * d_jk) / (m_i + m_j)
    if method == "weighted":
        return 0.5 * (d_ik + d_jk)
    if method == "centroid":
        t = m_i + m_j
        sq = (m_i * d_ik**2 + m_j * d_jk**2) / t - m_i * m_j * d_ij**2 / t**2
    elif method == "median":
        sq = 0.5 * d_ik**2 + 0.5 * d_jk**2 - 0.25 * d_ij**2
    else:  # ward
        sq = ((m_i + m_k) * d_ik**2 + (m_j + m_k) * d_jk**2 - m_k * d_ij**2) / (m_i + m_j + m_k)
    return np.sqrt(np.maximum(sq, 0.0))


def _generic_linkage(X: np.ndarray, mass: np.ndarray, adjacent: np.ndarray, method: str) -> np.ndarray:
    """Greedy agglomeration with Lance-Williams updates, masses and a merge constraint.

    At each step the closest pair of *allowed* clusters merges (allowed: adjacent, or any pair when
    ``adjacent`` is all True); the merged cluster is adjacent to the neighbours of both parts.
    Ties go to the pair with the smallest slot indices. O(units^3) time, fine for maps of a few
    hundred units; returns merges in merge order (heights may decrease, see :func:`cut_heights`).
    """
    n = len(X)
    D = squareform(pdist(X))
    if method == "ward":  # Ward distance of singletons: sqrt(2 m_i m_j / (m_i + m_j)) * ||x_i - x_j||
        D = D * np.sqrt(2 * np.outer(mass, mass) / np.add.outer(mass, mass))
    A = adjacent.copy()
    np.fill_diagonal(A, False)
    M = np.where(A, D, np.inf)  # candidate distances: only allowed pairs
    mass = mass.astype(float).copy()
    count = np.ones(n)
    node = np.arange(n)
    Z = np.empty((n - 1, 4))
    for step in range(n - 1):
        flat = int(np.argmin(M))
        i, j = divmod(flat, n)
        if not np.isfinite(M[i, j]):
            raise InputError("connectivity: the map graph is not connected; cannot merge all units")
        i, j = min(i, j), max(i, j)
        d_ij = D[i, j]
        a, b = sorted((node[i], node[j]))
        Z[step] = (a, b, d_ij, count[i] + count[j])
        new = _lance_williams(method, D[i], D[j], d_ij, mass[i], mass[j], mass)
        D[i, :] = D[:, i] = new
        D[i, i] = 0.0
        A[i, :] = A[:, i] = A[i] | A[j]
        A[i, i] = False
        A[j, :] = A[:, j] = False
        M[i, :] = M[:, i] = np.where(A[i], D[i], np.inf)
        M[j, :] = M[:, j] = np.inf
        mass[i] += mass[j]
        count[i] += count[j]
        node[i] = n + step
    return Z


def prototype_linkage(
    weights,
    hits=None,
    *,
    method: str = "ward",
    hit_weighting: bool = False,
    connectivity: bool = False,
    topology: str = "rectangular",
) -> np.ndarray:
    """Hierarchical clustering of SOM prototypes as a scipy linkage matrix.

    Parameters
    ----------
    weights : array-like of shape (rows, cols, n_features) or (units, n_features)
        The prototypes (``SOM.weights_``). The map shape is needed for ``connectivity``.
    hits : array-like of shape (rows, cols) or (units,), optional
        Customers won by each unit (``SOM.hit_map(X)``); needed for ``hit_weighting``.
    method : {"ward", "average", "complete", "single", "weighted", "centroid", "median"}, default="ward"
        scipy's linkage methods on Euclidean distances. ``"ward"`` (minimum increase of within-segment
        variance) gives compact segments of similar spread and, with ``hit_weighting``, agreed best
        with planted segments (``docs/clustering.md``); ``"average"`` is the original's method and chains
        into one dominant segment; ``"single"`` chains most; ``"centroid"`` and ``"median"`` can
        merge below an earlier merge (inversions, see :func:`cut_heights`).
    hit_weighting : bool, default=False
        Give each unit a mass proportional to the customers it wins, so that busy units weigh more
        than interpolating ones. Only for ``"ward"``, ``"average"`` and ``"centroid"``, whose merge
        rules use cluster sizes: the mass of unit i is ``(hits_i + 1) / mean(hits + 1)`` (the ``+ 1``
        keeps units without customers in the tree: they join their nearest cluster early at almost
        no cost), and merges use scipy's Lance-Williams formulas with masses in place of counts.
        For Ward that is the increase of the hit-weighted within-segment sum of squares,
        ``height = sqrt(2 m_a m_b / (m_a + m_b)) * ||c_a - c_b||`` with ``c`` the mass-weighted
        centroids. With equal hits the result equals the unweighted method.
    connectivity : bool, default=False
        Allow only merges of clusters that touch on the map (edge-sharing units, see
        :func:`grid_adjacency`), so every segment is one contiguous region of the map, as in
        SOM-Ward tools. Use it when segments are read off the map; it can split a segment whose
        units lie in two places of the map, and merge heights may then decrease.
    topology : {"rectangular", "hexagonal"}, default="rectangular"
        The map's grid (the SOM's ``topology``): which units touch, for ``connectivity``.

    Returns
    -------
    Z : ndarray of shape (units - 1, 4)
        scipy linkage matrix (``[id_a, id_b, height, n_units]`` per merge, in merge order). Leaf
        ``i`` is flat unit index ``i``.
    """
    check_option("method", method, METHODS)
    check_option("topology", topology, TOPOLOGIES)
    X, shape = as_prototypes(weights)
    n = len(X)
    if n < 2:
        raise InputError(f"weights: need at least 2 prototypes to cluster, got {n}")
    h = as_hits(hits, n)
    if hit_weighting:
        if method not in MASS_METHODS:
            raise ParameterError(
                f"hit_weighting=True needs a size-based method; method={method!r} is not valid; "
                f"choose one of: {', '.join(repr(m) for m in MASS_METHODS)}"
            )
        if h is None:
            raise ParameterError("hit_weighting=True needs hits (customers per unit)")
    if connectivity and shape is None:
        raise InputError("weights: connectivity=True needs the map shape; "
                         "pass weights of shape (rows, cols, n_features)")
    if not hit_weighting and not connectivity:
        return linkage(X, method=method, metric="euclidean")
    mass = (h + 1.0) / np.mean(h + 1.0) if hit_weighting else np.ones(n)
    adjacent = grid_adjacency(shape, topology) if connectivity else np.ones((n, n), dtype=bool)
    logger.debug("linkage of %d prototypes: method=%s, hit_weighting=%s, connectivity=%s",
                 n, method, hit_weighting, connectivity)
    return _generic_linkage(X, mass, adjacent, method)


def cophenetic_correlation(Z, weights) -> float:
    """Correlation between the tree's cophenetic distances and the prototypes' distances.

    Close to 1 when the dendrogram is a faithful summary of the prototype distances; the original
    analysis measured 0.85-0.88 (average linkage). Ward usually scores lower, since it optimises
    compactness rather than distance preservation: read it as a check, not as a ranking of methods.
    NaN when every merge happens at the same height (the cophenetic distances are constant).
    """
    X, _ = as_prototypes(weights)
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN when all merges share one height
        return float(cophenet(check_linkage(Z), pdist(X))[0])


# --------------------------------------------------------------------------------------------------
# the cut


def cut_heights(Z) -> np.ndarray:
    """Heights the cut uses: the running maximum of the merge heights, in merge order.

    For monotone trees (single, complete, average, weighted, ward without connectivity) these are
    the merge heights. Centroid, median and connectivity-constrained trees can merge *below* an
    earlier merge (an inversion); such a merge is treated as happening at the height already
    reached, so that a distance cut is always a prefix of the merge sequence: cutting at ``max_d``
    performs every merge whose cut height is ``<= max_d`` (scipy's ``fcluster(..., "distance")``
    rule) and the same cut is reached by count. The dendrograms are drawn with these heights.
    """
    return np.maximum.accumulate(check_linkage(Z)[:, 2])


def n_clusters_for_distance(Z, max_d: float) -> int:
    """Number of segments a cut at distance ``max_d`` gives (merges with cut height <= max_d)."""
    h = cut_heights(Z)
    return len(h) + 1 - int(np.searchsorted(h, _check_distance(max_d), side="right"))


def distance_range_for_k(Z, k: int) -> tuple[float, float] | None:
    """Distances that give exactly ``k`` segments: ``low <= max_d < high``.

    Returns None when no distance gives ``k`` segments, which happens when the merge that would
    leave ``k`` segments and the next one happen at the same (cut) height: a cut by count still
    gives ``k`` segments, breaking the tie in merge order. ``high`` is ``inf`` for ``k = 1``.
    The middle of the range is the most robust ``max_d`` for ``k``; a wide range (a large gap
    between consecutive merge heights) is a sign that ``k`` segments are well separated.
    """
    h = cut_heights(Z)
    n = len(h) + 1
    k = check_k(k, n, "k")
    m = n - k  # merges performed
    low = float(h[m - 1]) if m > 0 else 0.0
    high = float(h[m]) if m < n - 1 else np.inf
    return (low, high) if high > low else None


def _labels_after(Z: np.ndarray, n_merges: int) -> np.ndarray:
    """Cluster (root node id) of each leaf after the first ``n_merges`` merges."""
    n = len(Z) + 1
    parent = np.arange(2 * n - 1)
    ab = Z[:n_merges, :2].astype(int)
    parent[ab[:, 0]] = parent[ab[:, 1]] = n + np.arange(n_merges)
    root = np.arange(n)
    while True:  # pointer jumping to the roots
        up = parent[root]
        if np.array_equal(up, root):
            return root
        root = parent[up]


def number_by_size(labels, hits=None) -> np.ndarray:
    """Renumber unit labels 1..k by segment size, largest first.

    Size is the number of customers (sum of ``hits``), or the number of units when ``hits`` is
    None. Ties are broken by the number of units (more first), then by the smallest unit index in
    the segment, so the numbering is deterministic and does not depend on the input label values.
    """
    labels = np.asarray(labels).ravel()
    _, inverse = np.unique(labels, return_inverse=True)
    h = as_hits(hits, len(labels))
    size = np.bincount(inverse, weights=h) if h is not None else np.bincount(inverse).astype(float)
    n_units = np.bincount(inverse)
    first = np.full(n_units.size, len(labels))
    np.minimum.at(first, inverse, np.arange(len(labels)))
    order = np.lexsort((first, -n_units, -size))  # last key is primary
    rank = np.empty_like(order)
    rank[order] = np.arange(1, order.size + 1)
    return rank[inverse]


def cut(Z, *, n_clusters: int | None = None, max_d: float | None = None, hits=None) -> np.ndarray:
    """Segment (1..k, largest first) of each unit for a cut by count or by distance.

    Parameters
    ----------
    Z : ndarray
        Linkage matrix (:func:`prototype_linkage`).
    n_clusters : int, optional
        Number of segments: the state after ``units - n_clusters`` merges, always exactly that many.
        Prefer it for batch runs: a count means the same whatever the scaling.
    max_d : float, optional
        Cut height: every merge whose cut height (:func:`cut_heights`) is ``<= max_d`` is made.
        Read it off the current dendrogram; it gives :func:`n_clusters_for_distance` segments and
        the same labels as the cut by count for every distance in :func:`distance_range_for_k`.
    hits : array-like, optional
        Customers per unit, to number the segments by customers (see :func:`number_by_size`).

    Exactly one of ``n_clusters`` and ``max_d`` must be given.

    Returns
    -------
    ndarray of int of shape (units,)
    """
    Z = check_linkage(Z)
    n = len(Z) + 1
    if (n_clusters is None) == (max_d is None):
        raise ParameterError("give exactly one of n_clusters (a count) and max_d (a distance)")
    k = check_k(n_clusters, n) if max_d is None else n_clusters_for_distance(Z, max_d)
    return number_by_size(_labels_after(Z, n - k), hits)


# --------------------------------------------------------------------------------------------------
# the estimator


class PrototypeClustering(BaseEstimator):
    """Cluster SOM prototypes into segments numbered by size.

    Parameters
    ----------
    method : str, default="ward"
        Linkage method, see :func:`prototype_linkage` (``"average"`` reproduces the original).
    n_clusters : int or None, default=8
        Number of segments (a cut by count). Set it to None to cut by ``max_d`` instead. The
        original analysis used 8; choose it with :func:`k_selection` / :func:`suggest_k` and
        check it with :func:`segment_stability`.
    max_d : float or None, default=None
        Cut height (a cut by distance), read off the current dendrogram: heights depend on the
        scaling of the features and on the method, so a value from another run means nothing.
        Exactly one of ``n_clusters`` and ``max_d`` must be set (scikit-learn's rule).
    hit_weighting : "auto" or bool, default="auto"
        Weight units by the customers they win (see :func:`prototype_linkage`). ``"auto"`` weights
        whenever ``hits`` are passed to ``fit`` and the method uses cluster sizes (ward, average,
        centroid); True insists (an error without hits or with another method); False never
        weights. Hit-weighted Ward agreed best with planted segments (``docs/clustering.md``).
    connectivity : bool, default=False
        Make every segment a contiguous region of the map.
    topology : {"rectangular", "hexagonal"}, default="rectangular"
        The SOM's grid (``SOM.topology``), which decides which units touch for ``connectivity``.

    Attributes
    ----------
    linkage_ : ndarray of shape (units - 1, 4)
        scipy linkage matrix of the prototypes, in merge order.
    unit_labels_ : ndarray of shape (units,)
        Segment of each unit (flat index), 1..k, 1 the largest by customers. Units that win no
        customer still belong to a segment (they matter when new customers are scored).
    n_clusters_ : int
        Number of segments (given, or implied by ``max_d``).
    max_d_range_ : tuple of float or None
        ``(low, high)``: every ``max_d`` with ``low <= max_d < high`` gives the same segments;
        None when no distance gives exactly ``n_clusters_`` (a tie of merge heights).
    cut_distance_ : float or None
        Height to draw the cut at: ``max_d`` when cutting by distance, else the middle of
        ``max_d_range_`` (None when no distance gives the count).
    cophenetic_corr_ : float
        Cophenetic correlation of the tree with the prototype distances.
    hit_weighting_ : bool
        Whether the tree was hit-weighted.
    segment_sizes_ : ndarray of shape (n_clusters_,)
        Customers (hits) per segment, or units per segment when fitted without hits.
    map_shape_ : tuple of int or None
        (rows, cols) of the map when the weights were 3-D.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([[[0.0], [0.1], [5.0]], [[0.2], [5.1], [5.2]]])  # a 2 x 3 map, one feature
    >>> pc = PrototypeClustering(method="average", n_clusters=2).fit(w, hits=[[1, 1, 5], [1, 5, 5]])
    >>> pc.unit_labels_.tolist()
    [2, 2, 1, 2, 1, 1]
    """

    def __init__(self, method="ward", n_clusters=8, max_d=None, hit_weighting="auto", connectivity=False,
                 topology="rectangular"):
        self.method = method
        self.n_clusters = n_clusters
        self.max_d = max_d
        self.hit_weighting = hit_weighting
        self.connectivity = connectivity
        self.topology = topology

    def fit(self, weights, hits=None, y=None):
        """Build the tree of the prototypes and cut it.

        Parameters
        ----------
        weights : array-like of shape (rows, cols, n_features) or (units, n_features)
            The SOM's prototypes (``SOM.weights_``).
        hits : array-like of shape (rows, cols) or (units,), optional
            Customers per unit (``SOM.hit_map(X)``): used to number segments by customers and for
            ``hit_weighting``. Without it segments are numbered by their number of units.
        y : None
            Ignored.

        Returns
        -------
        self : PrototypeClustering
        """
        if (self.n_clusters is None) == (self.max_d is None):
            raise ParameterError("give exactly one of n_clusters (a count) and max_d (a distance); "
                                 "set n_clusters=None to cut by max_d")
        X, shape = as_prototypes(weights)
        h = as_hits(hits, len(X))
        if self.max_d is None:
            check_k(self.n_clusters, len(X))
        else:
            _check_distance(self.max_d)
        check_option("hit_weighting", self.hit_weighting, ["auto", True, False])
        weighted = self.hit_weighting
        if weighted == "auto":
            weighted = h is not None and self.method in MASS_METHODS
        Z = prototype_linkage(weights, h, method=self.method, hit_weighting=bool(weighted),
                              connectivity=self.connectivity, topology=self.topology)
        self.hit_weighting_ = bool(weighted)
        self.linkage_ = Z
        self.unit_labels_ = cut(Z, n_clusters=self.n_clusters, max_d=self.max_d, hits=h)
        self.n_clusters_ = int(self.unit_labels_.max())
        self.max_d_range_ = distance_range_for_k(Z, self.n_clusters_)
        if self.max_d is not None:
            self.cut_distance_ = float(self.max_d)
        elif self.max_d_range_ is not None:
            self.cut_distance_ = float(np.mean(self.max_d_range_))
        else:
            self.cut_distance_ = None
        self.cophenetic_corr_ = cophenetic_correlation(Z, X)
        w = h if h is not None else np.ones(len(X))
        self.segment_sizes_ = np.bincount(self.unit_labels_ - 1, weights=w, minlength=self.n_clusters_)
        self.map_shape_ = shape
        if self.max_d_range_ is None:
            logger.warning("no distance gives exactly %d segments (tied merge heights); "
                           "the cut by count breaks the tie in merge order", self.n_clusters_)
        logger.info("%d segments (method=%s, hit weighting %s), cophenetic correlation %.3f",
                    self.n_clusters_, self.method, self.hit_weighting_, self.cophenetic_corr_)
        return self

    def assign(self, bmu, *, ids=None):
        """Segment of each customer from its best-matching unit (see :func:`assign_segments`)."""
        check_is_fitted(self, "unit_labels_")
        return assign_segments(bmu, self.unit_labels_, ids=ids)


# --------------------------------------------------------------------------------------------------
# assignment


def _check_bmu(bmu, n_units: int) -> np.ndarray:
    b = np.asarray(bmu)
    if b.ndim != 1 or (b.size and not np.issubdtype(b.dtype, np.integer)):
        raise InputError(f"bmu: expected a 1-D array of integer unit indices, "
                         f"got {b.dtype} of shape {b.shape}")
    if b.size and (b.min() < 0 or b.max() >= n_units):
        raise InputError(f"bmu: unit indices must lie in [0, {n_units - 1}] (units of the map)")
    return b


def assign_segments(bmu, unit_labels, *, ids=None):
    """Segment of each customer, through its best-matching unit.

    Parameters
    ----------
    bmu : array-like of int of shape (n_customers,) or pandas Series
        Flat index of each customer's best-matching unit (``SOM.predict(X)``).
    unit_labels : array-like of shape (units,) or (rows, cols)
        Segment of each unit (``PrototypeClustering.unit_labels_``).
    ids : array-like of shape (n_customers,), optional
        Customer ids, exactly as in the input; they become the index of the result.

    Returns
    -------
    segments : ndarray or pandas Series
        A Series named ``"segment"`` when ``bmu`` is a Series (same index) or ``ids`` is given
        (index ``ids``, named ``"customer_id"``), else an array aligned with ``bmu``.
    """
    labels = np.asarray(unit_labels).ravel()
    index = bmu.index if isinstance(bmu, pd.Series) else None
    b = _check_bmu(bmu, labels.size)
    seg = labels[b]
    if ids is not None:
        ids = pd.Index(ids, name=getattr(ids, "name", None) or "customer_id")
        if len(ids) != len(b):
            raise InputError(f"ids: expected one id per customer ({len(b)}), got {len(ids)}")
        return pd.Series(seg, index=ids, name="segment")
    if index is not None:
        return pd.Series(seg, index=index, name="segment")
    return seg


# --------------------------------------------------------------------------------------------------
# choosing k


def k_selection(
    X,
    bmu,
    Z,
    *,
    k_range: Sequence[int] = range(2, 16),
    sample_size: int | None = 2000,
    random_state=0,
) -> pd.DataFrame:
    """Figures to choose the number of segments, one row per k.

    Parameters
    ----------
    X : array-like of shape (n_customers, n_features)
        The scaled customer features the SOM was trained on.
    bmu : array-like of int of shape (n_customers,)
        Best-matching unit of each customer (``SOM.predict(X)``).
    Z : ndarray
        Linkage of the prototypes (``PrototypeClustering.linkage_``).
    k_range : sequence of int, default=range(2, 16)
        Numbers of segments to evaluate (cuts by count).
    sample_size : int or None, default=2000
        Customers drawn (once, seeded, the same for every k) for the silhouette, whose cost grows
        with the square of the customers; None uses all. 2,000 gives a standard error of about
        0.01. Davies-Bouldin is cheap and always uses every customer.
    random_state : int, RandomState or None, default=0
        Seed of the sample.

    Returns
    -------
    pandas.DataFrame
        Columns ``k``; ``silhouette`` (higher is better, > 0.5 reasonable structure, < 0.25 none
        to speak of); ``davies_bouldin`` (lower is better); ``smallest_share`` / ``largest_share``
        (of customers; a segment of units without customers has share 0); ``low`` / ``high``, the
        distance range that gives k (NaN when none does); ``gap = high - low``, the merge-height
        gap (a wide gap means k is stable under small changes of ``max_d``).
    """
    X = np.asarray(X, dtype=float)
    Z = check_linkage(Z)
    n_units = len(Z) + 1
    b = _check_bmu(bmu, n_units)
    if X.ndim != 2 or len(X) != len(b):
        raise InputError(f"X: expected shape (n_customers, n_features) with {len(b)} rows, got {X.shape}")
    hits = np.bincount(b, minlength=n_units)
    rng = check_random_state(random_state)
    sample = np.arange(len(X))
    if sample_size is not None and sample_size < len(X):
        sample = np.sort(rng.choice(len(X), size=int(sample_size), replace=False))
    D = squareform(pdist(X[sample]))
    rows = []
    for k in k_range:
        k = check_k(k, n_units, "k")
        seg = cut(Z, n_clusters=k, hits=hits)[b]
        share = np.bincount(seg, minlength=k + 1)[1:] / len(b)
        sil = dbi = np.nan
        if 2 <= len(np.unique(seg[sample])) < len(sample):
            sil = silhouette_score(D, seg[sample], metric="precomputed")
        if 2 <= len(np.unique(seg)) < len(b):
            dbi = davies_bouldin_score(X, seg)
        rng_k = distance_range_for_k(Z, k) or (np.nan, np.nan)
        rows.append({"k": k, "silhouette": sil, "davies_bouldin": dbi, "smallest_share": share.min(),
                     "largest_share": share.max(), "low": rng_k[0], "high": rng_k[1]})
    df = pd.DataFrame(rows)
    df["gap"] = (df["high"] - df["low"]).fillna(0.0)
    return df


def suggest_k(table: pd.DataFrame, *, min_share: float = 0.02) -> tuple[int, str]:
    """Suggest a number of segments from :func:`k_selection`, and say why in one paragraph.

    The rule, stated in the sentence it returns: among the k whose smallest segment holds at least
    ``min_share`` of the customers (a segment too small to act on is not a segment), take the
    highest silhouette; then report whether Davies-Bouldin and the widest merge-height gap agree,
    and how strong the silhouette is (Kaufman & Rousseeuw: > 0.5 reasonable, 0.25-0.5 weak,
    < 0.25 no substantial structure). When the figures disagree the sentence says so: the analyst
    decides, ideally with :func:`segment_stability`.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`k_selection`.
    min_share : float, default=0.02
        Smallest acceptable segment, as a share of customers.

    Returns
    -------
    k : int
    reason : str
    """
    t = table.dropna(subset=["silhouette"])
    if t.empty:
        raise InputError("table: no k has a silhouette (fewer than two non-empty segments everywhere)")
    ok = t[t["smallest_share"] >= min_share]
    note = f"among the k whose smallest segment holds at least {min_share:.0%} of customers"
    if ok.empty:
        ok = t
        note = f"no k keeps every segment at {min_share:.0%} of customers or more, so among all k"
    best = ok.loc[ok["silhouette"].idxmax()]
    k = int(best["k"])
    parts = [f"k = {k}: the highest silhouette ({best['silhouette']:.2f}) {note}."]
    db = ok.dropna(subset=["davies_bouldin"])
    if not db.empty:
        k_db = int(db.loc[db["davies_bouldin"].idxmin(), "k"])
        if k_db == k:
            parts.append(f"Davies-Bouldin agrees (lowest, {best['davies_bouldin']:.3f}).")
        else:
            parts.append(f"Davies-Bouldin prefers k = {k_db} "
                         f"({db['davies_bouldin'].min():.3f} vs {best['davies_bouldin']:.3f}).")
    if ok["gap"].max() > 0:
        k_gap = int(ok.loc[ok["gap"].idxmax(), "k"])
        parts.append("The widest merge-height gap is at this k too." if k_gap == k
                     else f"The widest merge-height gap is at k = {k_gap}.")
    s = best["silhouette"]
    strength = ("reasonable" if s > 0.5 else "weak" if s > 0.25 else "not substantial")
    parts.append(f"On Kaufman & Rousseeuw's scale the structure at k = {k} is {strength} (silhouette "
                 f"{s:.2f}); check the segments' stability (segment_stability) before relying on them.")
    return k, " ".join(parts)


# --------------------------------------------------------------------------------------------------
# stability


#: Hennig's (2007) reading of a segment's mean best-match Jaccard over resamples: at least
#: ``STABLE`` a stable segment, at least ``WEAK`` a pattern whose members are doubtful, below it a
#: segment not to trust. A segment *dissolves* in a resample where its Jaccard is below ``DISSOLVED``.
STABLE, WEAK, DISSOLVED = 0.75, 0.6, 0.5
#: Verdicts, from the most to the least stable.
VERDICTS = ("stable", "weak", "unstable")


@dataclass
class StabilityResult:
    """How well each kept segment is found again when the customers are resampled and reclustered.

    Attributes
    ----------
    reference : pandas.Series
        The kept segment (1..k) of every customer: the Jaccard reference.
    labels : pandas.DataFrame
        Segment of each customer (rows, same index) in each reclustering (columns: run 1..n), from
        the segmentation re-run on that run's resample.
    in_sample : pandas.DataFrame
        Booleans of the same shape: whether the customer was drawn into the run's resample (the
        comparisons use only those customers, as Hennig's clusterboot does).
    jaccard : pandas.DataFrame
        For each kept segment (index 1..k) and run (columns), the best Jaccard similarity with a
        segment of that run, among the customers of the resample (NaN for a segment with no customer
        drawn).
    ari : pandas.Series
        Adjusted Rand index of each run with the kept segments, on the customers of the resample.
    random_state : int
        Seed of the resamples.
    """

    reference: pd.Series
    labels: pd.DataFrame
    in_sample: pd.DataFrame
    jaccard: pd.DataFrame
    ari: pd.Series
    random_state: int = 0

    @property
    def n_runs(self) -> int:
        return self.jaccard.shape[1]

    @property
    def mean_ari(self) -> float:
        """Mean adjusted Rand index of the runs with the kept segments (1: always found again)."""
        return float(self.ari.mean()) if len(self.ari) else float("nan")

    def summary(self) -> pd.DataFrame:
        """One row per kept segment: share of customers, mean and min Jaccard, dissolutions, verdict.

        Verdicts follow Hennig (2007): mean Jaccard >= 0.75 ``"stable"``, 0.6-0.75 ``"weak"`` (a
        pattern, but which customers belong is doubtful), < 0.6 ``"unstable"`` (do not trust it);
        ``dissolved`` counts the runs where the segment's best Jaccard is below 0.5.
        """
        share = self.reference.value_counts(normalize=True).reindex(self.jaccard.index, fill_value=0.0)
        mean = self.jaccard.mean(axis=1)
        verdict = np.select([mean >= STABLE, mean >= WEAK], VERDICTS[:2], VERDICTS[2]).astype(object)
        verdict = np.where(mean.isna(), "not measured", verdict)
        return pd.DataFrame({"share": share, "mean_jaccard": mean, "min_jaccard": self.jaccard.min(axis=1),
                             "dissolved": (self.jaccard < DISSOLVED).sum(axis=1).astype(int),
                             "verdict": verdict}, index=self.jaccard.index.rename("segment"))

    def to_dict(self) -> dict:
        """JSON-compatible data: the summary per segment, the Jaccard of every run, the ARIs."""
        table = self.summary()
        return {
            "n_runs": int(self.n_runs), "random_state": int(self.random_state), "mean_ari": self.mean_ari,
            "segments": {str(s): {"share": float(r.share), "mean_jaccard": _float(r.mean_jaccard),
                                  "min_jaccard": _float(r.min_jaccard), "dissolved": int(r.dissolved),
                                  "verdict": str(r.verdict)} for s, r in table.iterrows()},
            "jaccard": [[_float(v) for v in row] for row in self.jaccard.to_numpy()],
            "ari": [float(v) for v in self.ari],
        }


def _float(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def stability_summary(data: dict) -> pd.DataFrame:
    """:meth:`StabilityResult.summary` back from :meth:`StabilityResult.to_dict` data (``stability.json``)."""
    columns = ["share", "mean_jaccard", "min_jaccard", "dissolved", "verdict"]
    try:
        rows = {int(s): v for s, v in data["segments"].items()}
        table = pd.DataFrame.from_dict(rows, orient="index", columns=None if rows else columns)[columns]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"stability data is malformed ({exc!r}); "
                         "expected StabilityResult.to_dict()") from exc
    table.index = pd.Index(table.index.to_numpy(dtype=np.int64), name="segment")
    return table.sort_index().astype({"mean_jaccard": float, "min_jaccard": float})


def _best_jaccard(ref: np.ndarray, other: np.ndarray, k: int) -> np.ndarray:
    """Best Jaccard of each reference segment 1..k against the segments of ``other``."""
    ref_ids, ref_idx = np.unique(ref, return_inverse=True)
    C = contingency_matrix(ref_idx, other).astype(float)
    union = C.sum(axis=1)[:, None] + C.sum(axis=0)[None, :] - C
    best = np.full(k, np.nan)
    best[ref_ids - 1] = (C / union).max(axis=1)
    return best


def segment_stability(labels, recluster, *, n_runs: int = 5, random_state: int = 0,
                      progress: bool = True) -> StabilityResult:
    """Stability of the kept segments, Hennig's clusterboot way: resample, recluster, best Jaccard.

    For each run, draw a bootstrap sample of the customers (with replacement, seeded), re-run the
    whole segmentation on it (``recluster``), and give each *kept* segment its best Jaccard
    similarity with a segment of the run, among the customers drawn. The reference is the
    segmentation you keep and write (``result.csv``), never one of the runs.

    Parameters
    ----------
    labels : array-like of int or pandas.Series, shape (n_customers,)
        The kept segment (1..k) of every customer. A Series keeps its index in the result.
    recluster : callable
        ``recluster(sample, seed) -> labels``: re-run the segmentation on the customers at positions
        ``sample`` (an int array, with repeats: the bootstrap sample) and return a segment for *every*
        customer (length n_customers; only the drawn ones are compared). ``seed`` is the run's own
        seed, for the random parts of the segmentation. :func:`som_reclusterer` builds the one of
        the two-level SOM segmentation; a segmentation formed otherwise (e.g. consolidated by
        k-means) passes its own, so the check follows whatever forms the segments.
    n_runs : int, default=5
        Resamples. Each costs one segmentation; 5 gives a first reading, 20-50 a firmer one
        (Hennig uses 100 for small data).
    random_state : int, default=0
        Seed of the resamples and of the runs' seeds.
    progress : bool, default=True
        Show a progress bar over the runs.

    Returns
    -------
    StabilityResult
    """
    if isinstance(n_runs, bool) or not isinstance(n_runs, (int, np.integer)) or n_runs < 1:
        raise ParameterError(f"n_runs={n_runs!r} is not valid; expected an integer >= 1")
    if not callable(recluster):
        raise ParameterError(f"recluster must be a callable recluster(sample, seed) -> labels, "
                             f"got {type(recluster).__name__}")
    index = labels.index if isinstance(labels, pd.Series) else None
    ref = np.asarray(labels)
    if ref.ndim != 1 or len(ref) < 2 or ref.dtype.kind not in "iu" or ref.min() < 1:
        raise InputError(f"labels: expected the kept segment (integers 1..k) of every customer, "
                         f"got {ref.dtype} of shape {ref.shape}")
    n, k = len(ref), int(ref.max())
    index = pd.RangeIndex(n) if index is None else index
    rng = np.random.default_rng(random_state)
    runs, drawn, jac, ari = {}, {}, {}, {}
    for run in tqdm(range(1, n_runs + 1), desc="stability", disable=not progress):
        sample = rng.integers(0, n, size=n)
        seed = int(rng.integers(0, 2**31 - 1))
        other = np.asarray(recluster(sample, seed))
        if other.shape != (n,):
            raise InputError(f"recluster returned labels of shape {other.shape}; expected one per customer "
                             f"({n},)")
        mask = np.zeros(n, dtype=bool)
        mask[sample] = True
        runs[run], drawn[run] = other, mask
        jac[run] = _best_jaccard(ref[mask], other[mask], k)
        ari[run] = adjusted_rand_score(ref[mask], other[mask])
        logger.info("stability run %d: ARI with the kept segments %.3f", run, ari[run])
    return StabilityResult(
        reference=pd.Series(ref, index=index, name="segment"), labels=pd.DataFrame(runs, index=index),
        in_sample=pd.DataFrame(drawn, index=index),
        jaccard=pd.DataFrame(jac, index=pd.RangeIndex(1, k + 1, name="segment")),
        ari=pd.Series(ari, name="ari"), random_state=int(random_state))


def som_reclusterer(X, som, clustering):
    """The ``recluster`` of :func:`segment_stability` for the two-level SOM segmentation.

    Each call trains a clone of ``som`` (seeded with the run's seed, no progress bar) on the drawn
    customers, clusters its prototypes with a clone of ``clustering`` (hits of the drawn customers,
    as the pipeline uses the hits of its training customers) and gives every customer the segment of
    its best unit.

    Parameters
    ----------
    X : array-like of shape (n_customers, n_features)
        The scaled customer features the kept segmentation was built on.
    som : estimator
        The SOM (fitted or not: only its parameters are used) with ``random_state``, ``fit``,
        ``predict`` (flat best unit) and ``weights_`` (rows, cols, F).
    clustering : PrototypeClustering
        The cut (its parameters are used).
    """
    Xa = np.asarray(X, dtype=float)
    som, clustering = clone(som), clone(clustering)

    def recluster(sample, seed):
        est = clone(som).set_params(random_state=seed)
        if "progress" in est.get_params():
            est.set_params(progress=False)
        est.fit(Xa[sample])
        weights = np.asarray(est.weights_)
        units = int(np.prod(weights.shape[:-1]))
        hits = np.bincount(np.asarray(est.predict(Xa[sample])), minlength=units).reshape(weights.shape[:-1])
        cl = clone(clustering)
        if "topology" in cl.get_params() and hasattr(est, "topology"):
            cl.set_params(topology=est.topology)  # the retrained map's grid decides contiguity
        cl.fit(weights, hits)
        return cl.unit_labels_[np.asarray(est.predict(Xa))]

    return recluster
