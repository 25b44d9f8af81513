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
from seglib.som import best_units as som_best_units
from seglib.som import exact_sq_distances as som_exact_sq_distances
from seglib.som import grid_adjacency as som_grid_adjacency
from seglib.som import one_blas_thread as som_one_blas_thread

__all__ = [
    "METHODS",
    "MASS_METHODS",
    "PrototypeClustering",
    "fit_cut",
    "StabilityResult",
    "assign_segments",
    "segments_frame",
    "consolidate",
    "consolidate_by_customer",
    "nearest_segment",
    "customer_segments",
    "unit_majority",
    "unit_segment_counts",
    "majority_of",
    "off_majority_share",
    "segment_stats",
    "add_segment_stats",
    "update_centres",
    "best_of_starts",
    "customer_means",
    "starts_stats",
    "add_starts_stats",
    "unit_start_centres",
    "refine_units",
    "starts_for",
    "SegmentStats",
    "cophenetic_correlation",
    "cut",
    "cut_heights",
    "cut_match",
    "cut_vs_segments",
    "distance_range_for_k",
    "grid_adjacency",
    "k_selection",
    "moved_units",
    "n_clusters_for_distance",
    "number_like",
    "number_by_size",
    "prototype_linkage",
    "segment_centres",
    "segment_stability",
    "som_reclusterer",
    "stability_summary",
    "select_k",
    "suggest_k",
    "as_hits",
    "as_prototypes",
    "check_k",
    "check_linkage",
    "unit_silhouette",
    "unit_sums",
    "weighted_ari",
    "within_ss",
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
    n_clusters : "auto", int or None, default="auto"
        Number of segments. ``"auto"`` chooses it within ``k_min..k_max`` by :func:`select_k` (fit
        and stability; ``k_reason_`` says why); an integer cuts by count (the original analysis
        used 8); None cuts by ``max_d`` instead.
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
    consolidate : bool, default=True
        Consolidate the cut by k-means iterations on the customers (:func:`consolidate`): segments
        as compact as k-means', and as reproducible across samples of customers, still unions of
        map units. Needs ``unit_sums`` in ``fit`` to use the customers (else the prototypes stand
        for them). False keeps the plain cut of the tree.
    k_min, k_max : int, default=3, 10
        The range of ``n_clusters="auto"``. Marketing wants a handful of segments: never 2.
    n_init : int, default=10
        Consolidation's extra k-means++ starts besides the cut (:func:`consolidate`); the start with
        the smallest within-segment sum of squares wins, and every distinct result is a start of the
        customer-level consolidation (:func:`customer_means`). 0 consolidates the cut only.
    random_state : int, default=0
        Seed of the extra starts and of the bootstrap samples of ``n_clusters="auto"``.

    Attributes
    ----------
    linkage_ : ndarray of shape (units - 1, 4)
        scipy linkage matrix of the prototypes, in merge order.
    unit_labels_ : ndarray of shape (units,)
        Segment of each unit (flat index), 1..k, 1 the largest by customers. Units that win no
        customer still belong to a segment (they matter when new customers are scored).
    cut_labels_ : ndarray of shape (units,)
        The plain cut of the tree into ``n_clusters_`` segments, each numbered as the final segment it
        became (:func:`number_like`), so the dendrogram drawn with it has the map's colours; equal to
        ``unit_labels_`` without consolidation. ``unit_labels_`` is this cut consolidated.
    unit_starts_ : list of ndarray of shape (units,)
        The distinct unit-level consolidations of the cut and of the ``n_init`` k-means++ starts (each
        numbered by size; the cut's first, then by within-segment sum of squares): the starts of the
        customer-level consolidation (:func:`customer_means`). ``[cut]`` without consolidation.
    unit_hits_ : ndarray of shape (units,)
        Customers per unit, as passed to ``fit`` (one per unit when fitted without hits).
    unit_means_ : ndarray of shape (units, n_features)
        Mean of each unit's customers (the prototype for a unit without customers).
    k_table_ : pandas.DataFrame or None
        With ``n_clusters="auto"``: the fit and stability of every k (:func:`select_k`).
    k_reason_ : str
        Why this number of segments, in words.
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

    def __init__(self, method="ward", n_clusters="auto", max_d=None, hit_weighting="auto", connectivity=False,
                 topology="rectangular", consolidate=True, k_min=3, k_max=10, n_init=10, random_state=0):
        self.method = method
        self.n_clusters = n_clusters
        self.max_d = max_d
        self.hit_weighting = hit_weighting
        self.connectivity = connectivity
        self.topology = topology
        self.consolidate = consolidate
        self.k_min = k_min
        self.k_max = k_max
        self.n_init = n_init
        self.random_state = random_state

    def fit(self, weights, hits=None, y=None, *, unit_sums=None):
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
        unit_sums : array-like of shape (units, n_features), optional
            Sum of the customers' scaled features per unit (:func:`unit_sums`), for consolidation
            and the automatic k. Without it the prototypes stand for their customers.

        Returns
        -------
        self : PrototypeClustering
        """
        if (self.n_clusters is None) == (self.max_d is None):
            raise ParameterError("give exactly one of n_clusters (a count) and max_d (a distance); "
                                 "set n_clusters=None to cut by max_d")
        X, shape = as_prototypes(weights)
        h = as_hits(hits, len(X))
        auto = isinstance(self.n_clusters, str)
        if auto:
            check_option("n_clusters", self.n_clusters, ["auto"])
            k_min = check_k(self.k_min, len(X), "k_min")
            k_max = check_k(self.k_max, len(X), "k_max")
            if k_min > k_max:
                raise ParameterError(f"k_min={k_min} > k_max={k_max}; choose k_min <= k_max")
        elif self.max_d is None:
            check_k(self.n_clusters, len(X))
        else:
            _check_distance(self.max_d)
        check_option("hit_weighting", self.hit_weighting, ["auto", True, False])
        check_option("consolidate", self.consolidate, [True, False])
        weighted = self.hit_weighting
        if weighted == "auto":
            weighted = h is not None and self.method in MASS_METHODS
        Z = prototype_linkage(weights, h, method=self.method, hit_weighting=bool(weighted),
                              connectivity=self.connectivity, topology=self.topology)
        self.hit_weighting_ = bool(weighted)
        self.linkage_ = Z
        self.unit_hits_ = h if h is not None else np.ones(len(X))  # without hits: one per unit
        self.unit_means_ = _unit_means(X, self.unit_hits_, unit_sums)
        self.k_table_ = None
        if auto:
            hu = self.unit_hits_
            k, self.k_table_, self.k_reason_ = select_k(
                weights, hu, self.unit_means_ * hu[:, None], method=self.method, hit_weighting=bool(weighted),
                connectivity=self.connectivity, topology=self.topology, k_range=range(k_min, k_max + 1),
                consolidate_cut=self.consolidate, n_init=self.n_init, random_state=self.random_state, Z=Z)
            self.cut_labels_ = cut(Z, n_clusters=k, hits=h)
        else:
            self.cut_labels_ = cut(Z, n_clusters=self.n_clusters, max_d=self.max_d, hits=h)
            how = f"max_d = {self.max_d:g}" if self.max_d is not None else f"n_clusters = {self.n_clusters}"
            self.k_reason_ = f"k = {int(self.cut_labels_.max())}: set by {how}."
        self.unit_labels_, self.unit_starts_ = self.segments_for(self.cut_labels_, return_starts=True)
        self.cut_labels_ = number_like(self.cut_labels_, self.unit_labels_, self.unit_hits_)
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

    def segments_for(self, cut_labels, *, return_starts: bool = False):
        """Final segments of units for a cut of this tree: consolidated when ``consolidate``, else as is.

        What the sliders of :class:`seglib.widgets.ClusterExplorer` show for any cut, and what
        :meth:`fit` keeps for its own cut. With ``return_starts``, also every distinct unit-level result
        of the consolidation (:func:`consolidate`; ``[labels]`` without consolidation).
        """
        check_is_fitted(self, "linkage_")
        labels = np.asarray(cut_labels).ravel()
        if not self.consolidate:
            return (labels, [labels]) if return_starts else labels
        h = self.unit_hits_
        return consolidate(labels, self.unit_means_, h, self.unit_means_ * h[:, None], n_init=self.n_init,
                           random_state=self.random_state, return_starts=return_starts)

    def renumber_segments(self, order) -> "PrototypeClustering":
        """Renumber the fitted segments: new segment ``j + 1`` is old segment ``order[j] + 1``.

        :meth:`use_start` calls it when the start that won the customer-level consolidation is the
        unit-level segments renumbered, so the tree, the cut and the map keep the numbers (and colours)
        of the segments the customers get. Returns self.
        """
        check_is_fitted(self, "unit_labels_")
        order = np.asarray(order, dtype=np.int64)
        k = self.n_clusters_
        if sorted(order.tolist()) != list(range(k)):
            raise ParameterError(f"order: expected a permutation of 0..{k - 1}, got {order.tolist()}")
        if (order == np.arange(k)).all():
            return self
        new = np.empty(k, dtype=np.int64)
        new[order] = np.arange(1, k + 1)
        self.unit_labels_ = new[self.unit_labels_ - 1]
        cut = np.asarray(self.cut_labels_)
        # a cut segment numbered above k was emptied by consolidation: it keeps its number
        self.cut_labels_ = np.where(cut <= k, new[np.minimum(cut, k) - 1], cut)
        self.segment_sizes_ = self.segment_sizes_[order]
        return self

    def use_start(self, unit_labels, order) -> "PrototypeClustering":
        """Make ``unit_labels`` (1..k per unit, one of ``unit_starts_``) the unit-level segments, numbered
        as the final segments grown from them: new segment ``j + 1`` is start segment ``order[j] + 1``.

        :func:`customer_means` calls it with the start whose customer-level consolidation won, so the
        tree, the cut and the map keep the numbers (and colours) of the segments the customers get
        (:meth:`renumber_segments` when that start is already ``unit_labels_``). Returns self.
        """
        check_is_fitted(self, "unit_labels_")
        labels = np.asarray(unit_labels).ravel().astype(np.int64)
        k = self.n_clusters_
        order = np.asarray(order, dtype=np.int64)
        if labels.shape != self.unit_labels_.shape or labels.min() < 1 or labels.max() > k:
            raise InputError(f"unit_labels: expected one segment 1..{k} per unit ({self.unit_labels_.size})")
        if sorted(order.tolist()) != list(range(k)):
            raise ParameterError(f"order: expected a permutation of 0..{k - 1}, got {order.tolist()}")
        new = np.empty(k, dtype=np.int64)
        new[order] = np.arange(1, k + 1)
        relabelled = new[labels - 1]
        if np.array_equal(relabelled, self.unit_labels_):
            return self
        if adjusted_rand_score(labels, self.unit_labels_) == 1.0:  # the same segments, renumbered
            perm = np.empty(k, dtype=np.int64)
            perm[relabelled - 1] = self.unit_labels_ - 1
            return self.renumber_segments(perm)
        self.unit_labels_ = relabelled
        self.cut_labels_ = number_like(self.cut_labels_, relabelled, self.unit_hits_)
        self.segment_sizes_ = np.bincount(relabelled - 1, weights=self.unit_hits_, minlength=k)
        return self

    def adopt(self, unit_labels) -> bool:
        """Take the unit-level segments a run recorded (``clustering.json``, ``sample.json``), when they
        are one of this clustering's starts (``unit_starts_``, up to numbering); returns whether it did.

        A clustering refitted with a run's settings, hits and unit sums finds the same starts, but its
        ``unit_labels_`` is the unit-level winner, while the run kept the start whose customer-level
        consolidation won (:func:`customer_means`, :meth:`use_start`): adopting the recorded labels gives
        the tree, the cut and the map the run's segments and numbers. False (nothing changed) when the
        labels are none of the starts: the map or its customers are not the run's.
        """
        check_is_fitted(self, "unit_labels_")
        run = np.asarray(unit_labels).ravel().astype(np.int64)
        if run.shape != self.unit_labels_.shape or run.min() < 1 or run.max() != self.n_clusters_:
            return False
        if not any(adjusted_rand_score(np.ravel(start), run) == 1.0 for start in self.unit_starts_):
            return False
        self.use_start(run, np.arange(self.n_clusters_))
        return bool(np.array_equal(self.unit_labels_, run))

    def assign(self, bmu, *, ids=None):
        """Segment of each customer from its best-matching unit (see :func:`assign_segments`)."""
        check_is_fitted(self, "unit_labels_")
        return assign_segments(bmu, self.unit_labels_, ids=ids)


def fit_cut(weights, hits, unit_sums, *, topology: str = "rectangular", random_state=0,
            **settings) -> PrototypeClustering:
    """The step-03 cut of both backends: a :class:`PrototypeClustering` of the step's settings, fitted.

    ``settings`` are the cluster step's run parameters (``method``, ``n_clusters``, ``max_d``,
    ``hit_weighting``, ``connectivity``, ``consolidate``, ``k_min``, ``k_max``; others, such as
    ``assign`` or ``n_stability_runs``, are ignored here). A given ``max_d`` wins: the tree is then cut
    by distance and ``n_clusters`` is ignored, so a user who reads a height off the dendrogram need
    not also clear ``n_clusters``. ``hits`` and ``unit_sums`` (:func:`unit_sums`, summed over
    partitions on Dask) are those of all the customers; ``topology`` is the map's.
    """
    names = set(PrototypeClustering().get_params()) - {"topology", "random_state"}
    chosen = {k: v for k, v in settings.items() if k in names}
    if chosen.get("max_d") is not None:
        chosen["n_clusters"] = None
    pc = PrototypeClustering(**chosen, topology=topology, random_state=random_state)
    return pc.fit(weights, hits, unit_sums=unit_sums)


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


def segments_frame(customer_id, bmu, map_shape, unit_labels, index, *, segment=None) -> pd.DataFrame:
    """The segments table (``processed/segments.parquet``): ``customer_id``, ``bmu``, ``som_row``,
    ``som_col`` and ``segment`` of each customer, on ``index`` (the customer keys). Both backends build
    it with this function (the Dask one per partition). ``segment``: each customer's own segment
    (customer-level segments, :func:`customer_segments`); None: its unit's, from ``unit_labels``."""
    rows, cols = np.unravel_index(np.asarray(bmu), tuple(map_shape))
    if segment is None:
        seg = assign_segments(np.asarray(bmu), unit_labels)
    else:
        seg = np.asarray(segment, dtype=np.int64)
    return pd.DataFrame({"customer_id": np.asarray(customer_id), "bmu": bmu, "som_row": rows, "som_col": cols,
                         "segment": seg}, index=index)


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
# consolidation: k-means iterations on the customers, unit by unit


def unit_sums(X, bmu, n_units: int) -> np.ndarray:
    """Sum of the customers' scaled features per unit, shape ``(units, n_features)``.

    With the hits (customers per unit) it is all consolidation and the automatic k need from the
    customers: the mean of unit i's customers is ``sums[i] / hits[i]``. Sums over blocks of
    customers add up, so the Dask backend computes it per partition with this same function.
    """
    X = np.asarray(X, dtype=float)
    b = _check_bmu(bmu, n_units)
    if X.ndim != 2 or len(X) != len(b):
        raise InputError(f"X: expected shape (n_customers, n_features) with {len(b)} rows, got {X.shape}")
    return np.stack([np.bincount(b, weights=X[:, j], minlength=n_units) for j in range(X.shape[1])], axis=1)


def _unit_means(prototypes: np.ndarray, hits: np.ndarray, sums) -> np.ndarray:
    """Mean of each unit's customers; the prototype for a unit without customers (or without sums)."""
    if sums is None:
        return prototypes.copy()
    sums = np.asarray(sums, dtype=float)
    if sums.shape != prototypes.shape:
        raise InputError(f"unit_sums: expected shape {prototypes.shape} (units, n_features), "
                         f"got {sums.shape}")
    means = prototypes.copy()
    won = hits > 0
    means[won] = sums[won] / hits[won, None]
    return means


def segment_centres(labels: np.ndarray, means: np.ndarray, hits: np.ndarray, k: int):
    """The k-means update step: customer-weighted mean of each segment, and its customers.

    ``labels`` are 1..k per unit. A segment without customers gets a NaN centre. This is the one
    update step of consolidation, for both backends (the Dask backend reduces the unit sums first).
    """
    member = np.zeros((len(labels), k))
    member[np.arange(len(labels)), labels - 1] = hits
    mass = member.sum(axis=0)
    total = member.T @ means
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / mass[:, None], mass


def within_ss(labels, means, hits) -> float:
    """Between-unit part of the within-segment sum of squares of the customers.

    The customers' within-segment sum of squares is this plus the within-unit part, which does not
    depend on the segments; so comparing two labellings by this figure compares their customer SSE.
    """
    labels = np.asarray(labels).ravel()
    k = int(labels.max())
    centres, _ = segment_centres(labels, means, hits, k)
    d = ((means - np.nan_to_num(centres[labels - 1])) ** 2).sum(axis=1)
    return float((hits * d).sum())


def _lloyd(starts: np.ndarray, means: np.ndarray, h: np.ndarray, k: int, max_iter: int) -> np.ndarray:
    """Lloyd iterations over units (see :func:`consolidate`) from every row of ``starts`` (labels 1..k per
    unit), all at once; returns the settled labels of each start (not renumbered).

    Each start iterates exactly as it would alone (the same operations on each start's slice of the
    stacked arrays: the same products, sums and ties, so the same bits) until no unit moves; a settled
    start leaves the stack, so the pass costs the Python overhead of one start for all of them.
    """
    labels = np.array(starts, dtype=np.int64, ndmin=2)  # a copy
    won = h > 0
    n_units = labels.shape[1]
    sq = (means**2).sum(axis=1)
    active = np.arange(len(labels))
    unit = np.arange(n_units)
    for it in range(max_iter):
        lab = labels[active]
        at = (np.arange(len(active))[:, None] * n_units + unit) * k + (lab - 1)  # flat (start, unit, segment)
        member = np.zeros((len(active), n_units, k))
        member.reshape(-1)[at] = h
        mass = member.sum(axis=1)  # each start's slice: the sums and product of segment_centres, bit for bit
        with np.errstate(invalid="ignore", divide="ignore"):
            centres = (member.transpose(0, 2, 1) @ means) / mass[:, :, None]
        for j in np.flatnonzero((mass == 0).any(axis=1)):  # re-seed an empty segment at the costliest unit
            own_labels, own_centres = lab[j], centres[j]
            for s in np.flatnonzero(mass[j] == 0):
                own = np.nan_to_num(own_centres[own_labels - 1], nan=0.0)
                cost = np.where(won, h * ((means - own) ** 2).sum(axis=1), -1.0)
                cost[own_labels == s + 1] = -1.0
                u = int(np.argmax(cost))
                if cost[u] <= 0:
                    break
                own_centres[s] = means[u]
                own_labels[u] = s + 1
            at[j] = (j * n_units + unit) * k + (own_labels - 1)  # the re-seeded labels' flat positions
        empty = np.isnan(centres).any(axis=2)
        c = np.where(empty[:, :, None], 0.0, centres) if empty.any() else centres
        d = sq[None, :, None] - 2.0 * (means @ c.transpose(0, 2, 1)) + (c**2).sum(axis=2)[:, None, :]
        if empty.any():
            d[np.broadcast_to(empty[:, None, :], d.shape)] = np.inf
        best = np.argmin(d, axis=2)
        flat = d.reshape(-1)
        keep = flat[at] <= flat[at - (lab - 1) + best]
        new = np.where(keep, lab, best + 1)
        moved = (new != lab).any(axis=1)
        labels[active] = np.where(moved[:, None], new, lab)  # a settled start keeps its (re-seeded) labels
        for j in active[~moved]:
            logger.debug("consolidation of start %d settled after %d iterations", j, it + 1)
        active = active[moved]
        if not active.size:
            return labels
    for _ in active:
        logger.warning("consolidation did not settle in %d iterations", max_iter)
    return labels


def consolidate(unit_labels, prototypes, hits, sums=None, *, n_init: int = 0, random_state=0,
                max_iter: int = 100, return_starts: bool = False):
    """Consolidate a cut by k-means (Lloyd) iterations on the customers, unit by unit.

    Starting from the segments of ``unit_labels`` (FactoMineR's HCPC consolidation of a ward cut),
    each iteration computes the customer-weighted mean of every segment (:func:`segment_centres`)
    and moves every unit, with all its customers, to the segment whose mean is closest to the mean
    of its customers (that choice minimises the squared distances of those customers). The
    within-segment sum of squares of the customers never increases; iterations stop when no unit
    moves. All customers of a unit stay together, so segments remain unions of map units: the map,
    the saved model (unit -> segment) and scoring stay exact.

    With ``n_init`` > 0, k-means also starts ``n_init`` times from k-means++ seeds (on the units'
    customer means, weighted by customers), and the result with the smallest within-segment sum
    of squares wins (the cut's on a tie). On data with clear groups the cut's start already wins;
    on data without (real customers often), a cut is one arbitrary local optimum among many and
    changes with every sample of customers, while the best of several starts comes back alike.

    Units without customers follow their prototype's nearest segment mean. A segment left without
    customers is re-seeded, deterministically, at the unit that contributes most to the sum of
    squares. A unit keeps its segment on a tie, so the iteration cannot cycle.

    Parameters
    ----------
    unit_labels : array-like of shape (units,) or (rows, cols)
        The cut, segments 1..k (:func:`cut`).
    prototypes : array-like of shape (rows, cols, n_features) or (units, n_features)
        The SOM's prototypes.
    hits : array-like of shape (units,) or (rows, cols)
        Customers per unit.
    sums : array-like of shape (units, n_features), optional
        Sum of the customers' scaled features per unit (:func:`unit_sums`). Without it the
        prototypes stand for their customers (k-means on the hit-weighted prototypes, less
        faithful to the customers).
    n_init : int, default=0
        Extra k-means++ starts (0: the cut's start only). 10, as scikit-learn's KMeans, costs a few
        milliseconds on a 15 x 15 map.
    random_state : int, default=0
        Seed of the extra starts.
    max_iter : int, default=100
        Most iterations per start; on SOM units consolidation usually settles in fewer than 20.
    return_starts : bool, default=False
        Also return every distinct unit-level result (the starts of :func:`customer_means`).

    Returns
    -------
    labels : ndarray of int of shape (units,)
        Segments 1..k, numbered by customers, largest first (:func:`number_by_size`).
    starts : list of ndarray of int of shape (units,)
        Only with ``return_starts``: the distinct results of all starts, each numbered by size; the
        cut's first, then the others by their within-segment sum of squares (smallest first; the
        earlier start on a tie). ``labels`` is one of them.
    """
    P, _ = as_prototypes(prototypes)
    h = as_hits(hits, len(P))
    if h is None:
        raise InputError("hits: consolidation needs the customers per unit")
    labels = np.asarray(unit_labels).ravel().astype(np.int64)
    if labels.size != len(P) or labels.min() < 1:
        raise InputError(f"unit_labels: expected one segment 1..k per unit ({len(P)})")
    return _consolidate(labels, _Units(_unit_means(P, h, sums), h), n_init=n_init, random_state=random_state,
                        max_iter=max_iter, return_starts=return_starts)


def _consolidate(labels: np.ndarray, units: _Units, *, n_init: int, random_state, max_iter: int,
                 return_starts: bool):
    """:func:`consolidate` of the cut ``labels`` (int64, 1..k per unit) on checked ``units``."""
    means, h = units.means, units.hits
    k = int(labels.max())
    starts = [labels]
    if n_init and 1 < k <= units.won.size:
        rng = np.random.default_rng(random_state)
        starts += [_kmeans_plus_plus(units, k, rng) for _ in range(int(n_init))]
    results = [(within_ss(lab, means, h), lab) for lab in _lloyd(np.stack(starts), means, h, k, max_iter)]
    best_ss, best = results[0]
    for ss, other in results[1:]:
        if ss < best_ss * (1 - 1e-9):
            best, best_ss = other, ss
    best = number_by_size(best, h)
    if not return_starts:
        return best
    starts = []
    for i in [0] + sorted(range(1, len(results)), key=lambda i: results[i][0]):  # stable: earlier on a tie
        lab = number_by_size(results[i][1], h)
        if not any(np.array_equal(lab, other) for other in starts):
            starts.append(lab)
    return best, starts


class _Units:
    """The units of a consolidation: their customers' means and customers, the units with customers, and
    the squared distances from every unit to a unit with customers, each computed once (k-means++
    seeding asks for the same seeds again and again: in every start, and for every k of a tree)."""

    def __init__(self, means: np.ndarray, hits: np.ndarray):
        self.means, self.hits = means, hits
        self.won = np.flatnonzero(hits > 0)
        self.won_hits = hits[self.won]
        self._to: dict[int, np.ndarray] = {}

    def to(self, i: int) -> np.ndarray:
        """Squared distance of every unit to the ``i``-th unit with customers (summed as k-means++ sums)."""
        d = self._to.get(i)
        if d is None:
            d = self._to[i] = ((self.means - self.means[self.won[i]]) ** 2).sum(axis=1)
        return d


def _kmeans_plus_plus(units: _Units, k: int, rng) -> np.ndarray:
    """Labels 1..k of the units after k-means++ seeding (Arthur & Vassilvitskii), customers as weights."""
    won, n = units.won, units.won.size
    seeds = [int(rng.choice(n, p=units.won_hits / units.won_hits.sum()))]
    d = units.to(seeds[0])[won]
    for _ in range(k - 1):
        w = units.won_hits * d
        i = int(rng.choice(n, p=w / w.sum())) if w.sum() > 0 else int(rng.integers(n))
        seeds.append(i)
        d = np.minimum(d, units.to(i)[won])
    return np.argmin(np.stack([units.to(i) for i in seeds], axis=1), axis=1).astype(np.int64) + 1


# --------------------------------------------------------------------------------------------------
# customer-level consolidation: k-means (Lloyd) iterations customer by customer


def nearest_segment(X, centres) -> np.ndarray:
    """Segment 1..k of every customer: the nearest segment mean (ties to the lowest segment).

    Exact and batch-independent, the answer of :func:`seglib.som.best_units`: a customer gets the
    same segment scored alone or with a million others, so the saved model reproduces ``result.csv``.
    (Where squared distances are subnormal, data around 1e-162, it stays the exact argmin while
    ``best_units``' bound, without a floor, may not.)
    """
    X, C = _customers_and_means(X, centres)
    if len(X) == 0:
        return np.zeros(0, dtype=np.int64)
    return _nearest(X, C, _row_norms(X)) + 1


def _customers_and_means(X, centres) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=float)
    C = np.asarray(centres, dtype=float)
    if X.ndim != 2 or C.ndim != 2 or X.shape[1] != C.shape[1]:
        raise InputError(f"X: expected shape (n_customers, {C.shape[-1]}) to match the segment means, "
                         f"got {X.shape}")
    return X, C


#: Scores (segment means x rows) one block of the nearest-mean search holds at most (16 MB).
NEAREST_BLOCK = 2**21


def _row_norms(X: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row (for the near-tie bound of :func:`_nearest`, which needs no exactness)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.sqrt(np.einsum("ij,ij->i", X, X))


def _nearest(X: np.ndarray, C: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """Nearest row of ``C`` (0-based) for every row of ``X`` (float64 both; ``norms``: :func:`_row_norms`).

    The answer of :func:`seglib.som.best_units` for a few means, in a fraction of its time: the exact
    argmin of the squared distances summed feature by feature in float64, ties to the lowest index.
    Fast scores ``||c||^2 - 2 x.c`` (a BLAS product, means x rows, so every step runs over long rows)
    settle every row whose best score beats all others by more than ``8 (F + 4) eps (||x|| +
    max ||c||)^2``, twice ``best_units``' bound and over four times the scores' rounding error;
    the other rows (near-ties, a few in a thousand) are settled by their exact distances to every
    mean, and a row whose bound is not finite (or means that are not) by ``best_units`` itself,
    which is batch-independent.
    """
    n, n_features = X.shape
    k = len(C)
    out = np.zeros(n, dtype=np.int64)
    if k == 1:
        return out
    if k == 0 or not np.isfinite(C).all():
        return np.asarray(som_best_units(X, C), dtype=np.int64)
    csq = np.einsum("ij,ij->i", C, C)
    tol_scale = 8.0 * (n_features + 4) * np.finfo(np.float64).eps
    tol_floor = 8.0 * (n_features + 4) * np.finfo(np.float64).smallest_subnormal  # subnormal distances
    max_norm = float(np.sqrt(csq.max()))
    small = np.int8 if k < 128 else np.int64  # counts and indexes of candidates (wrap-around is harmless)
    index = np.arange(k, dtype=small)[:, None]
    step = max(1, NEAREST_BLOCK // k)
    cols = X.T
    with som_one_blas_thread():
        for a in range(0, n, step):
            scores = C @ cols[:, a:a + step]
            scores *= -2.0
            scores += csq[:, None]
            with np.errstate(over="ignore", invalid="ignore"):  # a row with inf or NaN: odd, below
                tol = tol_scale * (norms[a:a + step] + max_norm) ** 2 + tol_floor
                cand = (scores <= scores.min(axis=0) + tol).view(np.int8)
            unit = (cand * index).sum(axis=0, dtype=small).astype(np.int64)  # right where one candidate
            odd = ~np.isfinite(tol)
            need = np.flatnonzero((cand.sum(axis=0, dtype=small) != 1) & ~odd)
            if need.size:
                unit[need] = som_exact_sq_distances(X[a + need], C).argmin(axis=1)  # ties: lowest
            if odd.any():
                with np.errstate(over="ignore", invalid="ignore"):
                    unit[odd] = som_best_units(X[a + np.flatnonzero(odd)], C)
            out[a:a + len(unit)] = unit
    return out


@dataclass(frozen=True)
class SegmentStats:
    """What one Lloyd iteration needs from a block of customers (sums add up over blocks).

    ``sums`` (k, F) and ``counts`` (k,) are the customers' scaled features and numbers per nearest
    segment; ``far`` is (squared distance to its own mean, global row) of the customer farthest from its mean,
    where an empty segment is re-seeded; ``sse`` is the customers' sum of squared distances to their
    nearest mean (the within-segment sum of squares once the means are their customers' means).
    """

    sums: np.ndarray
    counts: np.ndarray
    far: tuple[float, int]
    sse: float = 0.0


def segment_stats(X, centres, *, offset: int = 0) -> SegmentStats:
    """:class:`SegmentStats` of the customers ``X`` (rows ``offset..``) under the means ``centres``.

    One Lloyd iteration's map step on a block of customers (:func:`starts_stats` applies it to every
    start; blocks add up with :func:`add_segment_stats`).
    """
    return starts_stats(X, [centres], offset=offset)[0]


def _segment_stats(X: np.ndarray, C: np.ndarray, norms: np.ndarray, offset: int) -> SegmentStats:
    k = len(C)
    lab = _nearest(X, C, norms) if len(X) else np.zeros(0, dtype=np.int64)
    sums, counts = _label_sums(X, lab, k)
    far, sse = (-1.0, -1), 0.0
    if len(X):
        diff = np.take(C, lab, axis=0)  # C-ordered: summed per row as ((X - C[lab]) ** 2).sum(axis=1) is
        np.subtract(X, diff, out=diff)
        np.square(diff, out=diff)
        d = diff.sum(axis=1)
        i = int(np.argmax(d))
        far, sse = (float(d[i]), offset + i), float(d.sum())
    return SegmentStats(sums, counts, far, sse)


def add_segment_stats(parts) -> SegmentStats:
    """The :class:`SegmentStats` of all customers from those of blocks in row order (the reduce step)."""
    parts = list(parts)
    far = (-1.0, -1)
    for p in parts:
        if p.far[0] > far[0]:  # strictly: the first (lowest) row wins a tie
            far = p.far
    return SegmentStats(sum(p.sums for p in parts), sum(p.counts for p in parts), far,
                        float(sum(p.sse for p in parts)))


def starts_stats(X, starts, *, offset: int = 0) -> list[SegmentStats]:
    """:func:`segment_stats` of the customers ``X`` under each of several sets of means (``starts``).

    The map step of :func:`best_of_starts`: all starts in one pass over a block of customers (the
    Dask backend calls it on every partition and adds the results with :func:`add_starts_stats`).
    """
    X = np.asarray(X, dtype=float)
    norms = _row_norms(X)
    return [_segment_stats(*_customers_and_means(X, C), norms, offset) for C in starts]


def add_starts_stats(parts) -> list[SegmentStats]:
    """The :func:`starts_stats` of all customers from those of blocks in row order (the reduce step)."""
    return [add_segment_stats(per_start) for per_start in zip(*list(parts))]


def update_centres(stats: SegmentStats, centres, row) -> np.ndarray:
    """The update step of the Lloyd iterations (:func:`best_of_starts`), shared by both backends.

    Each segment's new mean is the mean of the customers nearest to it. A segment left without
    customers is re-seeded at the customer farthest from its own mean (``row(i)`` returns the scaled
    features of customer ``i``; deterministic: the lowest row on a tie); it keeps its old mean when
    no customer can be taken.
    """
    C = np.asarray(centres, dtype=float).copy()
    won = stats.counts > 0
    C[won] = stats.sums[won] / stats.counts[won, None]
    empty = np.flatnonzero(~won)
    if empty.size and stats.far[1] >= 0 and stats.far[0] > 0:
        C[empty[0]] = np.asarray(row(stats.far[1]), dtype=float)  # one per iteration: the next moves on
    return C


def consolidate_by_customer(X, labels, *, max_iter: int = 100):
    """Continue consolidation customer by customer: k-means on the customers from given segments.

    The unit-level consolidation (:func:`consolidate`) keeps every map unit whole; with few
    customers per unit that cannot reach k-means' optimum and its segments change from one sample to
    the next. Starting from the means of ``labels`` (the unit-level segments of every customer),
    Lloyd iterations move customers one by one (:func:`best_of_starts` with this one start); the
    customers' within-segment sum of squares never increases. Deterministic (no random start).

    Parameters
    ----------
    X : array-like of shape (n_customers, n_features)
        The scaled customer features.
    labels : array-like of int of shape (n_customers,)
        Start segments 1..k (``unit_labels_[bmu]``).
    max_iter : int, default=100
        Most iterations; customers usually settle in fewer than 30.

    Returns
    -------
    labels : ndarray of int of shape (n_customers,)
        Segments 1..k, numbered by customers, largest first; each customer's nearest mean.
    centres : ndarray of shape (k, n_features)
        The segment means (``centres[s - 1]`` for segment s), what a saved model scores with.
    """
    X = np.asarray(X, dtype=float)
    lab = np.asarray(labels).ravel().astype(np.int64)
    if X.ndim != 2 or len(lab) != len(X) or len(X) == 0 or lab.min() < 1:
        raise InputError(f"labels: expected one segment 1..k per customer ({len(X)}), got {lab.shape}")
    C = best_of_starts(lambda starts: starts_stats(X, starts), [start_centres(X, lab)], row=lambda i: X[i],
                       max_iter=max_iter)[0]
    return nearest_segment(X, C), C


#: Within-segment sums of squares closer than this (relative) count as equal in :func:`best_of_starts`:
#: the same fixed point summed in another order (pandas vs Dask partitions) must not change the winner.
SSE_RTOL = 1e-9


#: A start whose sum of squares is more than this (relative) above the lowest of the same pass stops
#: (:func:`best_of_starts`): Lloyd iterations from a unit-level optimum improve it by far less.
START_PRUNE = 0.01


def best_of_starts(stats_of, starts, *, row, max_iter: int = 100, prune: float | None = None):
    """Lloyd iterations on the customers from several starts at once; the smallest within-SS wins.

    ``stats_of(list_of_means)`` gives the :class:`SegmentStats` of all customers under each set of
    means (in memory: :func:`starts_stats` of X; Dask: the sum over partitions, one pass for all
    starts); ``row(i)`` returns customer i's scaled features (to re-seed an empty segment). Each start
    iterates (:func:`update_centres`) until its means reproduce themselves (no customer changes
    its nearest mean); a start whose means become exactly those of an earlier start stops there (it
    would reach the same fixed point), so starts that meet cost nothing more. Then the start whose
    fixed point has the smallest sum of squared distances of the customers to their nearest mean wins;
    sums within :data:`SSE_RTOL` count as equal and the earlier start wins (the first: the cut's).
    Deterministic. The number of passes over the customers is that of the slowest start, plus one.

    Returns
    -------
    means : ndarray of shape (k, n_features)
        The winner's means, ordered by their customers, largest first.
    order : ndarray of int
        Segment ``j + 1`` grew from the winner's start segment ``order[j] + 1``.
    winner : int
        Index of the winning start in ``starts``.
    sse : ndarray of shape (len(starts),)
        Each start's sum of squares at its fixed point (NaN for a start that met an earlier one).
    """
    C = [np.asarray(c, dtype=float) for c in starts]
    if not C:
        raise InputError("starts: expected at least one set of segment means")
    final: dict[int, SegmentStats] = {}
    active = list(range(len(C)))
    dropped = 0
    for it in range(max_iter + 1):
        stats = stats_of([C[i] for i in active])
        if prune is not None:  # a start far above the best sum of squares so far cannot catch up
            lead = min(st.sse for st in stats)
            keep = [j for j, st in enumerate(stats) if st.sse <= lead * (1 + prune)]
            dropped += len(stats) - len(keep)
            active, stats = [active[j] for j in keep], [stats[j] for j in keep]
        moving = []
        for i, st in zip(active, stats):
            new = update_centres(st, C[i], row)
            if it == max_iter or ((st.counts > 0).all() and np.array_equal(new, C[i])):
                final[i] = st
                if it == max_iter:
                    logger.warning("customer consolidation of start %d did not settle in %d iterations",
                                   i, max_iter)
                continue
            C[i] = new
            moving.append(i)
        active = []
        for i in moving:  # a start that meets an earlier one (the same means, in any order) follows it
            if not any(_same_rows(C[i], C[j]) for j in range(i) if j in final or j in active):
                active.append(i)
        if not active:
            break
    sse = np.full(len(C), np.nan)
    for i, st in final.items():
        sse[i] = st.sse
    winner = min(final)
    for i in sorted(final):
        if sse[i] < sse[winner] * (1 - SSE_RTOL):
            winner = i
    logger.debug("customer consolidation: %d starts, %d distinct fixed points, start %d wins after %d passes",
                 len(C), len(final), winner, it + 1)
    counts = final[winner].counts
    order = np.lexsort((np.arange(len(counts)), -counts))  # largest first, then the earlier segment
    return C[winner][order], order, winner, sse


def _same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two sets of means are the same rows in some order (exactly)."""
    return np.array_equal(a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])])


def customer_means(stats_of, clustering, *, row, max_iter: int = 100) -> np.ndarray:
    """The customer-level consolidation of a fitted :class:`PrototypeClustering`, for both backends.

    Starts from the means of each of its unit-level results (``unit_starts_``: the cut's
    consolidation, then the k-means++ starts'), runs :func:`best_of_starts` (``stats_of`` and ``row``
    as there) and keeps the fixed point with the smallest within-segment sum of squares of the
    customers (the cut's on a tie). The clustering's unit-level segments become the winning start,
    numbered as the final segments (:meth:`PrototypeClustering.use_start`). Returns the segment means,
    largest segment first; every customer's segment is :func:`nearest_segment` of them.
    """
    starts = getattr(clustering, "unit_starts_", None) or [clustering.unit_labels_]
    centres = [unit_start_centres(clustering, s) for s in starts]
    means, order, winner, _ = best_of_starts(stats_of, centres, row=row, max_iter=max_iter, prune=START_PRUNE)
    clustering.use_start(starts[winner], order)
    return means


def unit_start_centres(clustering, unit_labels=None) -> np.ndarray:
    """The means of the unit-level segments of a fitted :class:`PrototypeClustering` (from its unit
    sums, so both backends start alike); a segment without customers starts at 0 and is re-seeded.
    ``unit_labels`` (1..k per unit, e.g. ``segments_for`` of another cut): those segments' means."""
    labels = np.asarray(clustering.unit_labels_ if unit_labels is None else unit_labels).ravel()
    centres, _ = segment_centres(labels, clustering.unit_means_, clustering.unit_hits_, int(labels.max()))
    return np.nan_to_num(centres, nan=0.0)


def starts_for(clustering, unit_labels) -> list[np.ndarray]:
    """The unit-level starts of the customer-level consolidation for segments ``unit_labels`` of a fitted
    :class:`PrototypeClustering`: when they are its consolidation of the tree's cut at their k
    (:meth:`PrototypeClustering.segments_for`), every distinct unit-level result of that consolidation,
    as ``unit_starts_`` holds them for the fitted cut; otherwise ``[unit_labels]`` alone."""
    labels = np.asarray(unit_labels).ravel()
    if not clustering.consolidate:
        return [labels]
    tree_cut = cut(clustering.linkage_, n_clusters=int(labels.max()), hits=clustering.unit_hits_)
    best, starts = clustering.segments_for(tree_cut, return_starts=True)
    return starts if np.array_equal(best, labels) else [labels]


def refine_units(X, unit_labels, clustering):
    """Customer-level segments from unit-level ones (1..k per unit) of a fitted clustering, as
    :func:`customer_segments` makes them (from every start of :func:`starts_for`), without changing the
    clustering: ``(labels, means, order)``, labels numbered by size; ``order`` refers to the segments of
    the winning start. What the app previews for a cut other than the kept one."""
    X = np.asarray(X, dtype=float)
    centres = [unit_start_centres(clustering, s) for s in starts_for(clustering, unit_labels)]
    C, order, _, _ = best_of_starts(lambda cs: starts_stats(X, cs), centres, row=lambda i: X[i],
                                    prune=START_PRUNE)
    return nearest_segment(X, C), C, order


def start_centres(X, labels) -> np.ndarray:
    """Mean of each start segment 1..k of the customers (the first means of the Lloyd iterations)."""
    X = np.asarray(X, dtype=float)
    lab = np.asarray(labels).ravel().astype(np.int64)
    k = int(lab.max())
    return update_centres(SegmentStats(*_label_sums(X, lab - 1, k), (-1.0, -1)),
                          np.zeros((k, X.shape[1])), lambda i: X[i])


ASSIGN = ("customer", "unit")


def customer_segments(X, bmu, clustering, assign: str = "customer"):
    """Every customer's segment under a fitted :class:`PrototypeClustering`, and the segment means.

    ``assign="customer"`` with a consolidating clustering continues the consolidation customer by
    customer from every distinct unit-level result (``unit_starts_``), keeps the one with the smallest
    within-segment sum of squares of the customers (:func:`customer_means`; the cut's on a tie), makes
    its start the clustering's ``unit_labels_`` and returns ``(labels, means)``; otherwise (``"unit"``,
    or ``consolidate=False``: the plain cut) every customer gets its unit's segment and the means are
    None. How to choose: ``"customer"`` (the default) makes segments as compact and as reproducible
    as k-means' (``docs/clustering.md``); ``"unit"`` keeps every map unit whole, so the segment map
    is exact, at the price of reproducibility on data with few customers per unit.
    """
    check_option("assign", assign, ASSIGN)
    unit_level = clustering.assign(bmu)
    if assign == "unit" or not clustering.consolidate:
        return unit_level, None
    X = np.asfortranarray(X, dtype=float)  # the passes sum the customers feature by feature
    C = customer_means(lambda starts: starts_stats(X, starts), clustering, row=lambda i: X[i])
    return nearest_segment(X, C), C


def unit_segment_counts(bmu, labels, n_units: int, k: int) -> np.ndarray:
    """Customers of each unit (rows) in each segment (column s for segment s; column 0 unused).

    Counts over blocks of customers add up (the Dask backend adds those of its partitions)."""
    counts = np.zeros((int(n_units), int(k) + 1), dtype=np.int64)
    b = np.asarray(bmu).ravel().astype(np.int64)
    np.add.at(counts, (b, np.asarray(labels).ravel().astype(np.int64)), 1)
    return counts


def majority_of(counts, default) -> np.ndarray:
    """Each unit's majority segment from :func:`unit_segment_counts` (ties to the lowest segment);
    ``default`` (per unit) for a unit without customers."""
    counts = np.asarray(counts)
    out = np.asarray(default).ravel().astype(np.int64).copy()
    won = counts.sum(axis=1) > 0
    out[won] = np.argmax(counts[won], axis=1)  # argmax: the lowest segment on a tie
    return out


def unit_majority(bmu, labels, default) -> np.ndarray:
    """Each unit's majority segment among its customers (ties to the lowest segment); ``default`` (per
    unit) for a unit without customers. What the map shows when a unit's customers fall in several
    segments."""
    lab = np.asarray(labels).ravel().astype(np.int64)
    default = np.asarray(default).ravel().astype(np.int64)
    k = int(max(lab.max(initial=0), default.max(initial=0)))
    return majority_of(unit_segment_counts(bmu, lab, default.size, k), default)


def off_majority_share(bmu, labels) -> float:
    """Share of customers whose segment differs from their unit's majority segment."""
    b = np.asarray(bmu).ravel().astype(np.int64)
    lab = np.asarray(labels).ravel().astype(np.int64)
    if lab.size == 0:
        return 0.0
    major = unit_majority(b, lab, np.ones(int(b.max()) + 1, dtype=np.int64))
    return float((major[b] != lab).mean())


def _label_sums(X, lab0, k):
    """Sum of the rows of ``X`` per segment 0..k-1 (``lab0``) and their number: ``(sums (k, F), counts)``.

    One ``np.bincount`` per feature: each sum adds its rows in row order, as ``np.add.at`` did, so the
    bits are the same, in a fraction of the time."""
    cols = X.T  # a column of a Fortran-ordered X (a DataFrame's values) is contiguous
    sums = np.empty((k, X.shape[1]))
    for j in range(X.shape[1]):
        sums[:, j] = np.bincount(lab0, weights=cols[j], minlength=k)
    return sums, np.bincount(lab0, minlength=k).astype(float)


def cut_vs_segments(cut_labels, unit_labels, hits=None) -> pd.DataFrame:
    """Customers of each cut segment (rows) in each final segment (columns), after consolidation.

    With hits None, units are counted instead of customers.
    """
    a, b = np.asarray(cut_labels).ravel(), np.asarray(unit_labels).ravel()
    w = np.ones(a.size) if hits is None else as_hits(hits, a.size)
    table = pd.crosstab(pd.Series(a, name="cut segment"), pd.Series(b, name="segment"), values=w,
                        aggfunc="sum").fillna(0.0)
    return table.astype(np.int64) if np.allclose(w, np.round(w)) else table


def cut_match(cut_labels, unit_labels, hits=None) -> np.ndarray:
    """The final segment each cut segment became: ``match[s]`` for cut segment s (``match[0]`` unused).

    Cut segments are matched one-to-one to final segments by the largest overlap in customers (units
    when hits is None; Hungarian method), since consolidation renumbers the segments by size.
    """
    from scipy.optimize import linear_sum_assignment

    a, b = np.asarray(cut_labels).ravel(), np.asarray(unit_labels).ravel()
    w = np.ones(a.size) if hits is None else as_hits(hits, a.size)
    C = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(C, (a, b), w + 1e-9)  # units without customers still break ties
    rows, cols = linear_sum_assignment(-C)
    match = np.zeros(a.max() + 1, dtype=np.int64)
    match[rows] = cols
    return match


def number_like(cut_labels, unit_labels, hits=None) -> np.ndarray:
    """The cut, each segment numbered as the final segment it became (:func:`cut_match`).

    So the dendrogram, drawn with these labels, has the colours of the final segments on the map.
    A cut segment that matches no final segment (consolidation emptied it) gets a number after k.
    """
    a = np.asarray(cut_labels).ravel()
    match = cut_match(a, unit_labels, hits)
    lost = np.flatnonzero(match[1:] == 0) + 1
    match[lost] = np.asarray(unit_labels).max() + 1 + np.arange(lost.size)
    return match[a]


def moved_units(cut_labels, unit_labels, hits=None) -> np.ndarray:
    """Boolean mask of the units whose final segment is not the one their cut segment became
    (:func:`cut_match`): the units consolidation moved."""
    a, b = np.asarray(cut_labels).ravel(), np.asarray(unit_labels).ravel()
    return cut_match(a, b, hits)[a] != b

def weighted_ari(a, b, weights) -> float:
    """Adjusted Rand index of two labellings of units, each unit counted ``weights`` times (customers)."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    w = np.asarray(weights, dtype=float).ravel()
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    C = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(C, (ai, bi), w)
    n = C.sum()

    def pairs(x):
        return (x * (x - 1) / 2).sum()

    index, rows, cols = pairs(C), pairs(C.sum(axis=1)), pairs(C.sum(axis=0))
    expected = rows * cols / pairs(np.array([n]))
    top = 0.5 * (rows + cols)
    return 1.0 if top == expected else float((index - expected) / (top - expected))


def unit_silhouette(labels, means, hits) -> float:
    """Silhouette of the customers with each customer at the mean of its unit's customers.

    The customer-weighted silhouette of the units: for a customer of unit u in segment s, ``a`` is
    the mean distance to the other customers of s and ``b`` the smallest mean distance to the
    customers of another segment (distances between unit means; customers of the same unit are at
    distance 0). It ignores the spread inside units, so it reads higher than the silhouette of the
    customers, but it ranks the k alike and needs only the unit sums (the same on both backends).
    NaN with fewer than two segments with customers.
    """
    labels = np.asarray(labels).ravel()
    h = np.asarray(hits, dtype=float).ravel()
    won = h > 0
    lab, m, w = labels[won], means[won], h[won]
    segs = np.unique(lab)
    if len(segs) < 2:
        return float("nan")
    D = squareform(pdist(m))
    member = (lab[:, None] == segs[None, :]).astype(float)  # units x segments
    size = w @ member
    to_seg = D @ (member * w[:, None])  # sum of distances to each segment's customers
    own = np.searchsorted(segs, lab)
    idx = np.arange(len(lab))
    with np.errstate(invalid="ignore", divide="ignore"):
        a = to_seg[idx, own] / (size[own] - 1)
        mean_to = to_seg / size[None, :]
    mean_to[idx, own] = np.inf
    b = mean_to.min(axis=1)
    s = np.where(size[own] > 1, (b - a) / np.maximum(a, b), 0.0)
    s = np.nan_to_num(s, nan=0.0)
    return float((w * s).sum() / w.sum())


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
    consolidate_with=None,
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
    consolidate_with : PrototypeClustering, optional
        A fitted clustering of this tree: its :meth:`PrototypeClustering.segments_for` turns each cut
        into the segments the user gets (consolidated when it consolidates), so the figures measure
        those. Without it the figures measure the plain cuts.

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
        unit_seg = cut(Z, n_clusters=k, hits=hits)
        if consolidate_with is not None:
            unit_seg = consolidate_with.segments_for(unit_seg)
        seg = unit_seg[b]
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


#: Bootstrap samples of the automatic choice of k (:func:`select_k`).
AUTO_BOOTSTRAPS = 10
#: Smallest mean bootstrap ARI for a k to count as stable in :func:`select_k`.
MIN_STABILITY = 0.8
#: Silhouettes closer than this count as equal in :func:`select_k` (the smaller k wins).
SILHOUETTE_TOLERANCE = 0.02


def select_k(
    prototypes,
    hits,
    sums=None,
    *,
    method: str = "ward",
    hit_weighting: bool = True,
    connectivity: bool = False,
    topology: str = "rectangular",
    k_range: Sequence[int] = range(3, 11),
    consolidate_cut: bool = True,
    n_init: int = 10,
    n_boot: int = AUTO_BOOTSTRAPS,
    min_share: float = 0.02,
    min_stability: float = MIN_STABILITY,
    random_state=0,
    Z=None,
) -> tuple[int, pd.DataFrame, str]:
    """Choose the number of segments from fit and stability; say why in one paragraph.

    For every k of ``k_range`` the segments are made as the estimator makes them (the cut by count,
    then :func:`consolidate` when ``consolidate_cut``) and measured by

    * ``silhouette``: fit, :func:`unit_silhouette` (higher is better);
    * ``stability``: the mean adjusted Rand index, counted over customers, between these segments
      and those of ``n_boot`` bootstrap samples of the customers (each redraws the customers per
      unit, rebuilds the tree and the segments). A k that cuts a real group in two arbitrary halves
      moves under resampling; a k that follows real structure does not (Hennig's clusterboot,
      without retraining the map so that it stays cheap);
    * ``smallest_share``: the smallest segment's share of customers.

    The rule: among the k whose smallest segment holds at least ``min_share`` of the customers and
    whose stability is at least ``min_stability``, take the highest silhouette; silhouettes within
    :data:`SILHOUETTE_TOLERANCE` (0.02, about the noise of the figure) of the highest count as equal,
    and then the smallest k wins (fewer segments are easier to act on). When no k is that stable,
    take the most stable k (the data then have little structure: the sentence says so).

    Parameters
    ----------
    prototypes, hits, sums
        As for :func:`consolidate`; ``connectivity`` needs the prototypes of shape (rows, cols, n_features).
    method, hit_weighting, connectivity, topology
        The tree, as :func:`prototype_linkage`.
    k_range : sequence of int, default=range(3, 11)
        The candidate k (``k_min..k_max`` of :class:`PrototypeClustering`). Marketing wants a handful
        of segments: start at 3.
    consolidate_cut : bool, default=True
        Consolidate each cut (as ``PrototypeClustering(consolidate=True)``).
    n_init : int, default=10
        Extra k-means++ starts of the consolidation (:func:`consolidate`).
    n_boot : int, default=10
        Bootstrap samples. 10 keeps the choice under a second on a 15 x 15 map; the standard error of
        a mean ARI is then about 0.01-0.03.
    min_share : float, default=0.02
        Smallest acceptable segment, as a share of customers.
    min_stability : float, default=0.8
        Mean bootstrap ARI from which a k counts as stable.
    random_state : int, default=0
        Seed of the bootstrap samples and of the consolidation's starts.
    Z : ndarray, optional
        The tree of the full data, when already built.

    Returns
    -------
    k : int
    table : pandas.DataFrame
        One row per k: ``k``, ``silhouette``, ``stability``, ``smallest_share``, ``chosen``.
    reason : str
    """
    P, _ = as_prototypes(prototypes)
    h = as_hits(hits, len(P))
    if h is None or h.sum() < 2:
        raise InputError("hits: choosing k needs the customers per unit")
    ks = [check_k(k, len(P), "k") for k in k_range]
    if not ks:
        raise ParameterError("k_range is empty; choose k_min <= k_max")
    means = _unit_means(P, h, sums)
    if Z is None:
        Z = prototype_linkage(prototypes, h, method=method, hit_weighting=hit_weighting,
                              connectivity=connectivity, topology=topology)

    def segments(tree, hits_):
        # consolidate(lab, P, hits_, means * hits_[:, None], ...) for every k, its units prepared once
        units = _Units(_unit_means(P, hits_, means * hits_[:, None]), hits_) if consolidate_cut else None
        out = {}
        for k in ks:
            lab = cut(tree, n_clusters=k, hits=hits_)
            if consolidate_cut:
                lab = _consolidate(np.asarray(lab, dtype=np.int64), units, n_init=n_init,
                                   random_state=random_state, max_iter=100, return_starts=False)
            out[k] = lab
        return out

    ref = segments(Z, h)
    rng = np.random.default_rng(random_state)
    n = int(round(h.sum()))
    agree = {k: [] for k in ks}
    for _ in range(n_boot):
        hb = rng.multinomial(n, h / h.sum()).astype(float)
        Zb = prototype_linkage(prototypes, hb, method=method, hit_weighting=hit_weighting,  # 3-D: the map
                               connectivity=connectivity, topology=topology)  # shape, for connectivity
        for k, lab in segments(Zb, hb).items():
            agree[k].append(weighted_ari(ref[k], lab, h))
    rows = []
    for k in ks:
        share = np.bincount(ref[k] - 1, weights=h, minlength=k) / h.sum()
        rows.append({"k": k, "silhouette": unit_silhouette(ref[k], means, h),
                     "stability": float(np.mean(agree[k])) if agree[k] else np.nan,
                     "smallest_share": float(share.min())})
    table = pd.DataFrame(rows)
    big = table[table["smallest_share"] >= min_share]
    note = f"whose smallest segment holds at least {min_share:.0%} of the customers"
    if big.empty:
        big, note = table, f"(no k keeps every segment at {min_share:.0%} of the customers or more)"
    stable = big[big["stability"] >= min_stability].dropna(subset=["silhouette"])
    if not stable.empty:
        top = stable["silhouette"].max()
        best = stable[stable["silhouette"] >= top - SILHOUETTE_TOLERANCE].iloc[0]  # the smallest such k
        k = int(best["k"])
        sil = f"silhouette {best['silhouette']:.2f}"
        if best["silhouette"] < top:
            sil += f", within {SILHOUETTE_TOLERANCE} of the best {top:.2f}: the fewest segments win"
        reason = (f"k = {k} (chosen from {ks[0]}..{ks[-1]}): the best fit ({sil}) among the k {note} and "
                  f"stable under resampling of the customers (mean bootstrap ARI >= {min_stability:.2f}; "
                  f"{best['stability']:.2f} at k = {k}).")
        others = stable[stable["k"] != k]["k"].astype(int).tolist()
        reason += (f" Also stable: k = {', '.join(map(str, others))}." if others
                   else " No other k is that stable.")
    else:
        best = big.loc[big["stability"].idxmax()]
        k = int(best["k"])
        reason = (f"k = {k} (chosen from {ks[0]}..{ks[-1]}): no k {note} reaches a mean bootstrap ARI of "
                  f"{min_stability:.2f}, so the most stable one ({best['stability']:.2f}); the segments are "
                  f"a convenient partition more than natural groups: read them with the stability check.")
    table["chosen"] = table["k"] == k
    return k, table, reason


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
                      progress: bool = True, sample_size: int | None = None) -> StabilityResult:
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
    sample_size : int, optional
        Customers drawn per run (with replacement), at most; None or a number >= n_customers draws n,
        the classic bootstrap. On large data an m-out-of-n bootstrap (Bickel, Götze & van Zwet 1997)
        of, say, 20,000 customers costs a fraction of a full one: each run trains on fewer
        customers, so its segments, if anything, vary more than a full run's (a stricter check).
        As in a full bootstrap, runs are compared with the kept segments on the customers drawn.

    Returns
    -------
    StabilityResult
    """
    if sample_size is not None:
        check_int("sample_size", sample_size, minimum=2)
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
    size = n if sample_size is None else min(n, int(sample_size))
    for run in tqdm(range(1, n_runs + 1), desc="stability", disable=not progress):
        sample = rng.integers(0, n, size=size)
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


def som_reclusterer(X, som, clustering, *, assign: str = "unit"):
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
        The cut (its parameters are used; consolidated as it is, from the drawn customers' unit sums).
        A fitted clustering with ``n_clusters="auto"`` is cut at the k it chose in every run.
    assign : {"unit", "customer"}, default="unit"
        As the kept segmentation (:func:`customer_segments`): ``"customer"`` continues each run's
        consolidation customer by customer on the drawn customers, and every customer gets the
        nearest of that run's segment means.
    """
    check_option("assign", assign, ASSIGN)
    Xa = np.asarray(X, dtype=float)
    chosen = getattr(clustering, "n_clusters_", None)  # a fitted n_clusters="auto" keeps its k
    som, clustering = clone(som), clone(clustering)

    def recluster(sample, seed):
        est = clone(som).set_params(random_state=seed)
        if "progress" in est.get_params():
            est.set_params(progress=False)
        drawn_X = Xa[sample]
        est.fit(drawn_X)
        weights = np.asarray(est.weights_)
        units = int(np.prod(weights.shape[:-1]))
        drawn = np.asarray(est.predict(drawn_X))  # once: the hits and the unit sums of the drawn customers
        hits = np.bincount(drawn, minlength=units).reshape(weights.shape[:-1])
        cl = clone(clustering)
        if "topology" in cl.get_params() and hasattr(est, "topology"):
            cl.set_params(topology=est.topology)  # the retrained map's grid decides contiguity
        if cl.n_clusters == "auto" and chosen is not None:
            cl.set_params(n_clusters=chosen)  # the same k in every run
        cl.fit(weights, hits, unit_sums=unit_sums(drawn_X, drawn, units))
        _, means = customer_segments(drawn_X, drawn, cl, assign)
        if means is not None:
            return nearest_segment(Xa, means)
        return cl.unit_labels_[np.asarray(est.predict(Xa))]

    return recluster
