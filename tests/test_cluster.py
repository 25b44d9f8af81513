"""Tests of seglib.cluster (linkage, cut, k-selection, stability, assignment) and its plots."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.ndimage import label as connected_regions
from sklearn.base import BaseEstimator, clone
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from seglib.cluster import (
    MASS_METHODS,
    METHODS,
    PrototypeClustering,
    StabilityResult,
    _best_jaccard,
    _generic_linkage,
    assign_segments,
    cut,
    cut_heights,
    distance_range_for_k,
    k_selection,
    n_clusters_for_distance,
    nearest_segment,
    number_by_size,
    prototype_linkage,
    segment_stability,
    som_reclusterer,
    stability_summary,
    suggest_k,
)
from seglib.errors import InputError, ParameterError
from seglib.plots._cluster import (
    plot_dendrogram,
    plot_fancy_dendrogram,
    plot_k_selection,
    plot_segment_map,
    plot_stability,
)
from seglib.plots._colors import ABOVE_CUT_COLOR, segment_colors

ROWS, COLS, F = 8, 10, 4


@pytest.fixture
def planted():
    """A map whose four quadrants hold four well separated prototype groups, and its customers."""
    rng = np.random.default_rng(7)
    centres = rng.normal(0, 6, size=(4, F))
    r, c = np.mgrid[0:ROWS, 0:COLS]
    quadrant = (r >= ROWS // 2) * 2 + (c >= COLS // 2)
    weights = centres[quadrant] + rng.normal(0, 0.3, size=(ROWS, COLS, F))
    protos = weights.reshape(-1, F)
    unit = rng.integers(0, ROWS * COLS, size=1200)
    X = protos[unit] + rng.normal(0, 0.3, size=(1200, F))
    bmu = np.argmin(((X[:, None, :] - protos[None]) ** 2).sum(-1), axis=1)
    hits = np.bincount(bmu, minlength=ROWS * COLS).reshape(ROWS, COLS)
    return {"weights": weights, "X": X, "bmu": bmu, "hits": hits, "truth": quadrant.ravel()}


# ---- linkage ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_generic_linkage_equals_scipy(method):
    X = np.random.default_rng(0).normal(size=(30, 3))
    ours = _generic_linkage(X, np.ones(30), np.ones((30, 30), dtype=bool), method)
    ref = linkage(X, method=method)
    np.testing.assert_allclose(np.sort(ours[:, 2]), np.sort(ref[:, 2]))
    for k in range(1, 31):
        assert np.array_equal(cut(ours, n_clusters=k), cut(ref, n_clusters=k))


@pytest.mark.parametrize("method", MASS_METHODS)
def test_hit_weighting_equals_linkage_of_repeated_prototypes(method):
    # mass (hits + 1) is the same tree as the prototypes repeated hits + 1 times
    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, 2))
    hits = rng.integers(0, 5, size=12)
    ours = prototype_linkage(X, hits, method=method, hit_weighting=True)
    ref = linkage(np.repeat(X, hits + 1, axis=0), method=method)
    ref_heights = np.sort(ref[:, 2])[-11:]  # the duplicates merge first, at height 0
    scale = np.sqrt(np.mean(hits + 1.0)) if method == "ward" else 1.0  # masses are normalised to mean 1
    np.testing.assert_allclose(np.sort(ours[:, 2]) * scale, ref_heights, rtol=1e-9)


@pytest.mark.parametrize("method", MASS_METHODS)
def test_equal_hits_weighting_is_the_unweighted_method(method):
    X = np.random.default_rng(2).normal(size=(20, 3))
    weighted = prototype_linkage(X, np.full(20, 9), method=method, hit_weighting=True)
    np.testing.assert_allclose(np.sort(weighted[:, 2]), np.sort(linkage(X, method=method)[:, 2]))


def test_empty_unit_joins_its_neighbour_first_under_hit_weighting():
    # a=0 and b=1 are busy, c=2.1 wins nobody: unweighted Ward merges a+b first, weighted b+c
    X = np.array([[0.0], [1.0], [2.1]])
    hits = np.array([99, 99, 0])
    assert set(linkage(X, "ward")[0, :2].astype(int)) == {0, 1}
    Z = prototype_linkage(X, hits, method="ward", hit_weighting=True)
    assert set(Z[0, :2].astype(int)) == {1, 2}
    m = (hits + 1) / np.mean(hits + 1)
    np.testing.assert_allclose(Z[0, 2], np.sqrt(2 * m[1] * m[2] / (m[1] + m[2])) * 1.1)


@pytest.mark.parametrize("method", ["ward", "average", "complete", "single", "centroid", "median"])
def test_connectivity_gives_contiguous_segments(planted, method):
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(6, 7, 3))  # no structure: contiguity must come from the constraint
    Z = prototype_linkage(weights, method=method, connectivity=True)
    for k in range(1, 15):
        lab = cut(Z, n_clusters=k).reshape(6, 7)
        for s in range(1, k + 1):
            assert connected_regions(lab == s)[1] == 1, f"segment {s} of k={k} is split"


def test_connectivity_with_the_automatic_k_cuts_the_contiguous_tree(planted):
    # n_clusters="auto" bootstraps the tree: with connectivity every bootstrap tree needs the map's shape
    pc = PrototypeClustering(n_clusters="auto", connectivity=True, consolidate=False, k_min=2, k_max=6)
    pc.fit(planted["weights"], planted["hits"])
    assert 2 <= pc.n_clusters_ <= 6 and pc.k_table_["k"].tolist() == list(range(2, 7))
    labels = pc.unit_labels_.reshape(ROWS, COLS)
    for s in range(1, pc.n_clusters_ + 1):
        assert connected_regions(labels == s)[1] == 1, f"segment {s} is split"


def _hex_regions(labels_flat, shape):
    """Number of connected regions of each label on the hexagonal grid."""
    from scipy.sparse.csgraph import connected_components

    from seglib.som import grid_adjacency

    A = grid_adjacency(shape, "hexagonal")
    same = A & (labels_flat[:, None] == labels_flat[None, :])
    n, comp = connected_components(same, directed=False)
    return {s: len(np.unique(comp[labels_flat == s])) for s in np.unique(labels_flat)}


@pytest.mark.parametrize("method", ["ward", "average", "single"])
def test_connectivity_follows_hexagonal_adjacency(method):
    rng = np.random.default_rng(4)
    weights = rng.normal(size=(6, 7, 3))
    Z = prototype_linkage(weights, method=method, connectivity=True, topology="hexagonal")
    rect = prototype_linkage(weights, method=method, connectivity=True)
    assert not np.array_equal(Z[:, :2], rect[:, :2])  # another graph, another tree
    for k in range(1, 15):
        regions = _hex_regions(cut(Z, n_clusters=k), (6, 7))
        assert set(regions.values()) == {1}, f"k={k}: a segment is split on the hexagonal map"
    # merges of two single units join hexagon neighbours only
    from seglib.som import adjacent_units

    leaves = Z[(Z[:, 0] < 42) & (Z[:, 1] < 42), :2].astype(int)
    assert len(leaves) and adjacent_units(leaves[:, 0], leaves[:, 1], (6, 7), "hexagonal").all()
    pc = PrototypeClustering(method=method, n_clusters=5, connectivity=True, topology="hexagonal")
    np.testing.assert_array_equal(pc.fit(weights).linkage_, Z)
    with pytest.raises(ParameterError, match="topology='torus'"):
        prototype_linkage(weights, connectivity=True, topology="torus")


def test_stability_uses_the_maps_topology(planted):
    from seglib.som import SOM

    X = planted["X"]
    som = SOM(map_shape=(5, 6), n_epochs=4, n_jobs=1, topology="hexagonal")
    recluster = som_reclusterer(X, som, PrototypeClustering(n_clusters=4, connectivity=True))
    sample = np.random.default_rng(0).integers(0, len(X), size=len(X))
    labels = recluster(sample, 7)
    fitted = clone(som).set_params(random_state=7, progress=False).fit(X[sample])
    hits = np.bincount(fitted.predict(X[sample]), minlength=30)
    pc = PrototypeClustering(n_clusters=4, connectivity=True, topology="hexagonal").fit(fitted.weights_, hits)
    np.testing.assert_array_equal(labels, pc.unit_labels_[fitted.predict(X)])


def test_linkage_rejects_bad_parameters_and_data():
    w = np.zeros((3, 3, 2))
    with pytest.raises(ParameterError, match="'ward'"):
        prototype_linkage(w, method="kmeans")
    with pytest.raises(ParameterError, match="hit_weighting"):
        prototype_linkage(w, np.ones((3, 3)), method="single", hit_weighting=True)
    with pytest.raises(ParameterError, match="hits"):
        prototype_linkage(w, method="ward", hit_weighting=True)
    with pytest.raises(InputError, match="map shape"):
        prototype_linkage(w.reshape(9, 2), connectivity=True)
    with pytest.raises(InputError, match="hits"):
        prototype_linkage(w, np.ones(5), method="ward", hit_weighting=True)
    with pytest.raises(InputError, match="finite"):
        prototype_linkage(np.full((3, 3, 2), np.nan))


# ---- the cut ---------------------------------------------------------------------------------


CUT_CASES = [("ward", False), ("average", False), ("centroid", False), ("median", False),
             ("ward", True), ("average", True)]


@pytest.mark.parametrize(("method", "connectivity"), CUT_CASES)
def test_equivalent_distance_and_count_cuts_give_identical_labels(method, connectivity):
    weights = np.random.default_rng(4).normal(size=(6, 6, 3))
    hits = np.random.default_rng(5).poisson(4, size=(6, 6))
    Z = prototype_linkage(weights, method=method, connectivity=connectivity)
    zc = Z.copy()
    zc[:, 2] = cut_heights(Z)
    for k in range(1, 37):
        by_count = cut(Z, n_clusters=k, hits=hits)
        assert by_count.max() == k
        rng = distance_range_for_k(Z, k)
        if rng is None:
            continue
        low, high = rng
        mid = low + 0.5 * (min(high, low + 1.0) - low)
        for d in (low, mid):
            assert n_clusters_for_distance(Z, d) == k
            assert np.array_equal(cut(Z, max_d=d, hits=hits), by_count)
            # the same partition as scipy's fcluster on the cut heights
            assert adjusted_rand_score(fcluster(zc, d, criterion="distance"), by_count) == 1.0
        if np.isfinite(high):
            assert n_clusters_for_distance(Z, high) < k


def test_centroid_inversion_behaviour():
    # a and b merge at 1.0; their centroid (0.5, 0) is 0.9 from c: the second merge is lower
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.9]])
    Z = prototype_linkage(X, method="centroid")
    np.testing.assert_allclose(Z[:, 2], [1.0, 0.9])
    np.testing.assert_allclose(cut_heights(Z), [1.0, 1.0])
    assert distance_range_for_k(Z, 2) is None  # no distance leaves a+b apart from c
    assert n_clusters_for_distance(Z, 0.95) == 3
    assert n_clusters_for_distance(Z, 1.0) == 1
    assert cut(Z, n_clusters=2).tolist() == [1, 1, 2]  # the count cut follows the merge order


def test_tied_merge_heights():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])  # three merges at height 1 (single linkage)
    Z = prototype_linkage(X, method="single")
    assert distance_range_for_k(Z, 4) == (0.0, 1.0)
    assert distance_range_for_k(Z, 2) is None and distance_range_for_k(Z, 3) is None
    assert distance_range_for_k(Z, 1) == (1.0, np.inf)
    assert n_clusters_for_distance(Z, 1.0) == 1
    assert cut(Z, n_clusters=2).max() == 2


def test_cut_needs_exactly_one_of_count_and_distance():
    Z = linkage(np.arange(5.0)[:, None])
    with pytest.raises(ParameterError, match="exactly one"):
        cut(Z)
    with pytest.raises(ParameterError, match="exactly one"):
        cut(Z, n_clusters=2, max_d=1.0)
    with pytest.raises(ParameterError, match="1 to 5"):
        cut(Z, n_clusters=6)
    with pytest.raises(ParameterError, match="max_d"):
        cut(Z, max_d=-1.0)


def test_number_by_size_orders_by_customers_then_units_then_first_unit():
    labels = np.array([9, 3, 3, 3, 7, 7, 5])
    hits = np.array([3, 1, 1, 1, 10, 10, 3])
    # customers: 7 -> 20; then three segments of 3: label 3 has 3 units, label 9 one unit (first
    # unit 0), label 5 one unit (first unit 6): more units beat an earlier first unit
    assert number_by_size(labels, hits).tolist() == [3, 2, 2, 2, 1, 1, 4]
    # by units when there are no hits; the label values themselves never matter
    assert number_by_size(labels).tolist() == [3, 1, 1, 1, 2, 2, 4]
    relabelled = np.array([0, 1, 1, 1, 2, 2, 3])
    assert np.array_equal(number_by_size(relabelled, hits), number_by_size(labels, hits))


# ---- the estimator ---------------------------------------------------------------------------


def test_estimator_recovers_planted_segments(planted):
    pc = PrototypeClustering(n_clusters=4).fit(planted["weights"], planted["hits"])
    assert adjusted_rand_score(planted["truth"], pc.unit_labels_) == 1.0
    assert pc.n_clusters_ == 4
    assert set(pc.unit_labels_) == {1, 2, 3, 4}
    assert np.all(np.diff(pc.segment_sizes_) <= 0)  # numbered largest first
    assert pc.segment_sizes_.sum() == planted["hits"].sum()
    low, high = pc.max_d_range_
    assert n_clusters_for_distance(pc.linkage_, low) == 4
    assert 0 < pc.cophenetic_corr_ <= 1


def test_estimator_distance_cut_matches_count_cut(planted):
    by_k = PrototypeClustering(method="average", n_clusters=4).fit(planted["weights"], planted["hits"])
    d = by_k.cut_distance_
    low, high = by_k.max_d_range_
    assert low <= d < high
    by_d = PrototypeClustering(method="average", n_clusters=None, max_d=d).fit(
        planted["weights"], planted["hits"])
    assert by_d.n_clusters_ == 4
    assert np.array_equal(by_d.unit_labels_, by_k.unit_labels_)
    assert by_d.max_d_range_ == by_k.max_d_range_
    assert by_d.cut_distance_ == d


def test_estimator_parameters_are_checked_in_fit(planted):
    w = planted["weights"]
    for params in ({"n_clusters": None}, {"n_clusters": 3, "max_d": 1.0}):
        est = PrototypeClustering(**params)  # __init__ only stores
        with pytest.raises(ParameterError, match="exactly one"):
            est.fit(w)
    with pytest.raises(ParameterError, match="'average'"):
        PrototypeClustering(method="kmeans").fit(w)
    with pytest.raises(ParameterError, match="n_clusters"):
        PrototypeClustering(n_clusters=ROWS * COLS + 1).fit(w)
    assert clone(PrototypeClustering(method="single", n_clusters=3)).get_params()["method"] == "single"


def test_hit_weighting_auto(planted):
    w, hits = planted["weights"], planted["hits"]
    assert PrototypeClustering(n_clusters=4).fit(w, hits).hit_weighting_
    assert not PrototypeClustering(n_clusters=4).fit(w).hit_weighting_  # no hits: nothing to weigh
    assert not PrototypeClustering("complete", n_clusters=4).fit(w, hits).hit_weighting_
    auto = PrototypeClustering(n_clusters=4).fit(w, hits)
    explicit = PrototypeClustering(n_clusters=4, hit_weighting=True).fit(w, hits)
    np.testing.assert_array_equal(auto.linkage_, explicit.linkage_)
    with pytest.raises(ParameterError, match="hit_weighting"):
        PrototypeClustering("complete", n_clusters=4, hit_weighting=True).fit(w, hits)
    with pytest.raises(ParameterError, match="'auto'"):
        PrototypeClustering(n_clusters=4, hit_weighting="yes").fit(w, hits)


def test_empty_units_still_get_a_segment(planted):
    hits = planted["hits"].copy()
    hits[0, :] = 0
    pc = PrototypeClustering(n_clusters=4, hit_weighting=True).fit(planted["weights"], hits)
    assert pc.unit_labels_.min() == 1 and pc.unit_labels_.max() == 4


def test_tie_warning_and_deterministic_fit(caplog):
    w = np.array([[[0.0], [1.0], [2.0], [3.0]]])
    with caplog.at_level(logging.WARNING, logger="seglib.cluster"):
        pc = PrototypeClustering(method="single", n_clusters=2).fit(w)
    assert pc.max_d_range_ is None
    assert "tied merge heights" in caplog.text
    again = PrototypeClustering(method="single", n_clusters=2).fit(w)
    assert np.array_equal(pc.unit_labels_, again.unit_labels_)


# ---- assignment ------------------------------------------------------------------------------


def test_assign_segments_keeps_ids_as_given():
    unit_labels = np.array([[2, 1], [1, 3]])
    ids = pd.Index(["BBID_0042", "007", "x"], name="customerID")
    seg = assign_segments(np.array([0, 3, 1]), unit_labels, ids=ids)
    assert seg.tolist() == [2, 3, 1]
    assert seg.index.equals(ids) and seg.name == "segment"
    bmu = pd.Series([1, 1, 2], index=["c", "a", "b"])
    assert assign_segments(bmu, unit_labels).to_dict() == {"c": 1, "a": 1, "b": 1}
    assert assign_segments([3, 0], unit_labels).tolist() == [3, 2]


def test_assign_segments_rejects_bad_units():
    with pytest.raises(InputError, match=r"\[0, 3\]"):
        assign_segments([4], np.ones(4, dtype=int))
    with pytest.raises(InputError, match="integer"):
        assign_segments([0.5], np.ones(4, dtype=int))
    with pytest.raises(InputError, match="one id per customer"):
        assign_segments([0, 1], np.ones(4, dtype=int), ids=["a"])


# ---- choosing k ------------------------------------------------------------------------------


def test_k_selection_and_suggestion_find_the_planted_k(planted):
    pc = PrototypeClustering(n_clusters=4).fit(planted["weights"], planted["hits"])
    table = k_selection(planted["X"], planted["bmu"], pc.linkage_, k_range=range(2, 9), sample_size=500)
    assert table["k"].tolist() == list(range(2, 9))
    assert {"silhouette", "davies_bouldin", "smallest_share", "largest_share", "gap"} <= set(table)
    assert (table["smallest_share"] <= table["largest_share"]).all()
    assert table["smallest_share"].is_monotonic_decreasing  # splitting never grows the smallest
    k, reason = suggest_k(table)
    assert k == 4
    assert "k = 4" in reason and "silhouette" in reason
    again = k_selection(planted["X"], planted["bmu"], pc.linkage_, k_range=range(2, 9), sample_size=500)
    pd.testing.assert_frame_equal(table, again)


def test_suggest_k_states_disagreements_and_applies_the_share_rule():
    table = pd.DataFrame({
        "k": [2, 3, 4, 5],
        "silhouette": [0.30, 0.55, 0.60, 0.20],
        "davies_bouldin": [0.9, 0.7, 0.8, 1.2],
        "smallest_share": [0.40, 0.20, 0.01, 0.01],  # k=4 has a 1% segment: excluded
        "largest_share": [0.6, 0.5, 0.5, 0.5],
        "gap": [2.0, 0.5, 0.1, 0.1],
    })
    k, reason = suggest_k(table, min_share=0.02)
    assert k == 3
    assert "reasonable" in reason and "Davies-Bouldin agrees" in reason
    assert "widest merge-height gap is at k = 2" in reason
    k, reason = suggest_k(table, min_share=0.5)  # no k qualifies: said, then all k are used
    assert k == 4 and "no k keeps every segment" in reason


# ---- stability -------------------------------------------------------------------------------


class KMeansSOM(BaseEstimator):
    """Stand-in for seglib.som.SOM with the same interface (prototypes from k-means)."""

    def __init__(self, map_shape=(ROWS, COLS), random_state=None, progress=True):
        self.map_shape = map_shape
        self.random_state = random_state
        self.progress = progress

    def fit(self, X):
        self.km_ = KMeans(int(np.prod(self.map_shape)), n_init=1, random_state=self.random_state).fit(X)
        self.weights_ = self.km_.cluster_centers_.reshape(*self.map_shape, -1)
        return self

    def predict(self, X):
        return self.km_.predict(X)


def test_best_jaccard_by_hand():
    ref = np.array([1, 1, 2, 2])
    other = np.array([5, 5, 5, 6])
    # segment 1 = {0,1} vs {0,1,2}: 2/3; segment 2 = {2,3}: vs {0,1,2} 1/4, vs {3} 1/2
    np.testing.assert_allclose(_best_jaccard(ref, other, 3), [2 / 3, 1 / 2, np.nan])


def _kept(X, som, clustering):
    """The kept segmentation of X (the reference), as the pipeline forms it."""
    som = clone(som).fit(X)
    bmu = som.predict(X)
    hits = np.bincount(bmu, minlength=int(np.prod(som.weights_.shape[:-1]))).reshape(som.weights_.shape[:-1])
    return clone(clustering).fit(som.weights_, hits).unit_labels_[bmu]


def test_stability_of_planted_segments(planted):
    X = pd.DataFrame(planted["X"], index=[f"C{i}" for i in range(len(planted["X"]))])
    som, clustering = KMeansSOM(map_shape=(3, 4), random_state=0), PrototypeClustering(n_clusters=4)
    kept = pd.Series(_kept(X.to_numpy(), som, clustering), index=X.index)
    res = segment_stability(kept, som_reclusterer(X, som, clustering), n_runs=3, progress=False)
    assert res.reference.equals(kept.rename("segment")) and res.n_runs == 3
    assert res.labels.index.equals(X.index) and list(res.labels.columns) == [1, 2, 3]
    assert res.in_sample.any(axis=None) and not res.in_sample.all(axis=None)  # bootstrap: ~63% drawn
    assert res.mean_ari > 0.95
    summary = res.summary()
    assert (summary["verdict"] == "stable").all() and (summary["dissolved"] == 0).all()
    assert summary["share"].sum() == pytest.approx(1.0)


def test_the_reference_is_the_kept_segmentation_not_a_run():
    """Runs that agree with each other perfectly do not make a kept segmentation they contradict stable."""
    rng = np.random.default_rng(1)
    truth = np.repeat([1, 2, 3], 100)
    runs = []

    def recluster(sample, seed):  # every re-run finds the same segments: the truth
        runs.append(seed)
        return truth.copy()

    good = segment_stability(truth, recluster, n_runs=4, random_state=3, progress=False)
    assert (good.summary()["verdict"] == "stable").all() and good.mean_ari == pytest.approx(1.0)
    shuffled = rng.permutation(truth)  # a kept segmentation the runs never reproduce
    bad = segment_stability(shuffled, recluster, n_runs=4, random_state=3, progress=False)
    assert (bad.summary()["verdict"] == "unstable").all() and bad.mean_ari < 0.1
    assert (bad.summary()["dissolved"] == 4).all()
    assert len(set(runs)) == 4  # seeded runs: each run has its own seed, the same for both calls


def test_only_the_drawn_customers_are_compared():
    kept = np.repeat([1, 2], 50)
    rng = np.random.default_rng(0)

    def recluster(sample, seed):  # right on the drawn customers, garbage on the others
        out = rng.integers(1, 3, size=len(kept))
        out[sample] = kept[sample]
        return out

    res = segment_stability(kept, recluster, n_runs=3, progress=False)
    assert (res.jaccard == 1.0).all(axis=None)
    for run in res.labels.columns:
        drawn = res.in_sample[run].to_numpy()
        np.testing.assert_array_equal(res.labels[run].to_numpy()[drawn], kept[drawn])


def test_stability_detects_unstable_segments():
    X = np.random.default_rng(0).normal(size=(400, 2))  # no structure: 6 segments are arbitrary
    som, clustering = KMeansSOM(map_shape=(4, 4), random_state=0), PrototypeClustering(n_clusters=6)
    res = segment_stability(_kept(X, som, clustering), som_reclusterer(X, som, clustering), n_runs=3,
                            progress=False)
    assert res.mean_ari < 0.9
    assert res.jaccard.shape == (6, 3)
    assert ((res.jaccard >= 0) & (res.jaccard <= 1)).all().all()
    assert (res.summary()["verdict"] != "stable").any()


def test_stability_is_seeded():
    X = np.random.default_rng(0).normal(size=(300, 2))
    som, clustering = KMeansSOM(map_shape=(3, 4), random_state=0), PrototypeClustering(n_clusters=5)
    kept = _kept(X, som, clustering)
    a, b, c = (segment_stability(kept, som_reclusterer(X, som, clustering), n_runs=2, random_state=seed,
                                 progress=False) for seed in (4, 4, 5))
    pd.testing.assert_frame_equal(a.labels, b.labels)
    pd.testing.assert_frame_equal(a.jaccard, b.jaccard)
    assert not a.in_sample.equals(c.in_sample)


def test_stability_sample_size_bounds_each_draw():
    """sample_size draws at most that many customers per run (an m-out-of-n bootstrap); at or above n
    it is the full bootstrap, to the bit."""
    X = np.random.default_rng(1).normal(size=(300, 2))
    som, clustering = KMeansSOM(map_shape=(3, 4), random_state=0), PrototypeClustering(n_clusters=4)
    kept = _kept(X, som, clustering)
    sizes = []
    inner = som_reclusterer(X, som, clustering)

    def recluster(sample, seed):
        sizes.append(len(sample))
        return inner(sample, seed)

    small = segment_stability(kept, recluster, n_runs=3, random_state=2, progress=False, sample_size=120)
    assert sizes == [120, 120, 120]
    assert (small.in_sample.sum() <= 120).all()
    full = segment_stability(kept, inner, n_runs=2, random_state=2, progress=False)
    same = segment_stability(kept, inner, n_runs=2, random_state=2, progress=False, sample_size=10_000)
    pd.testing.assert_frame_equal(full.jaccard, same.jaccard)
    pd.testing.assert_frame_equal(full.in_sample, same.in_sample)
    with pytest.raises(ParameterError, match="sample_size"):
        segment_stability(kept, inner, sample_size=1, progress=False)


def test_verdicts_follow_hennig_and_round_trip():
    jaccard = pd.DataFrame({1: [0.8, 0.7, 0.55, np.nan], 2: [0.9, 0.7, 0.4, np.nan]},
                           index=pd.RangeIndex(1, 5, name="segment"))
    res = StabilityResult(reference=pd.Series([1, 1, 2, 3]), labels=pd.DataFrame(), in_sample=pd.DataFrame(),
                          jaccard=jaccard, ari=pd.Series([0.5, 0.7]))
    summary = res.summary()
    assert list(summary["verdict"]) == ["stable", "weak", "unstable", "not measured"]
    assert list(summary["dissolved"]) == [0, 0, 1, 0]
    assert summary.loc[1, "mean_jaccard"] == pytest.approx(0.85)
    back = stability_summary(json.loads(json.dumps(res.to_dict())))
    pd.testing.assert_frame_equal(back[["mean_jaccard", "verdict"]], summary[["mean_jaccard", "verdict"]],
                                  check_dtype=False)
    with pytest.raises(InputError, match="stability"):
        stability_summary({"segments": 3})


def test_stability_bad_arguments():
    kept = np.repeat([1, 2], 5)
    with pytest.raises(ParameterError, match="n_runs"):
        segment_stability(kept, lambda s, seed: kept, n_runs=0)
    with pytest.raises(ParameterError, match="recluster"):
        segment_stability(kept, "kmeans")
    with pytest.raises(InputError, match="one per customer"):
        segment_stability(kept, lambda s, seed: kept[:3], progress=False)
    with pytest.raises(InputError, match="labels"):
        segment_stability(kept - 1, lambda s, seed: kept, progress=False)


# ---- plots -----------------------------------------------------------------------------------


def _line_colors(ax):
    from matplotlib.collections import LineCollection
    from matplotlib.colors import to_hex

    return {to_hex(c) for coll in ax.collections if isinstance(coll, LineCollection)
            for c in coll.get_colors()}


def test_fancy_dendrogram_colours_line_and_labels(planted):
    pc = PrototypeClustering(n_clusters=4).fit(planted["weights"], planted["hits"])
    d = float(np.mean(pc.max_d_range_))
    ax = plot_fancy_dendrogram(pc.linkage_, p=8, max_d=d, hits=planted["hits"])
    assert _line_colors(ax) == set(segment_colors(4)) | {ABOVE_CUT_COLOR}
    (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == "max_d"]
    assert line.get_ydata()[0] == d
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels) == 8 and all(t.startswith("S") for t in labels)
    assert {t.split(":")[0] for t in labels} == {"S1", "S2", "S3", "S4"}
    customers = sum(int(t.split(": ")[1].split(" cust")[0].replace(",", "")) for t in labels)
    assert customers == planted["hits"].sum()
    assert len([t for t in ax.texts if t.get_text()[0].isdigit()]) == 7  # p - 1 merge heights


def test_full_dendrogram_and_given_labels():
    Z = linkage(np.random.default_rng(0).normal(size=(20, 2)), "ward")
    labels = cut(Z, n_clusters=3)
    ax = plot_dendrogram(Z, unit_labels=labels)
    assert _line_colors(ax) == set(segment_colors(3)) | {ABOVE_CUT_COLOR}
    with pytest.raises(InputError, match="unit_labels"):
        plot_dendrogram(Z, unit_labels=labels[:5])


def test_segment_map_boundaries_and_empty_units():
    labels = np.array([[1, 1, 2], [3, 2, 2]])
    hits = np.array([[4, 0, 2], [1, 3, 0]])
    ax = plot_segment_map(None, labels, hits, background="hits")
    (bounds,) = [c for c in ax.collections if c.get_gid() == "boundaries"]
    # different neighbours: (0,1)|(0,2), (1,0)|(1,1), (0,0)/(1,0), (0,1)/(1,1) -> 4 unit edges
    assert len(bounds.get_segments()) == 4
    (empty,) = [c for c in ax.collections if c.get_gid() == "empty_units"]
    assert len(empty.get_offsets()) == 2
    (units,) = [c for c in ax.collections if c.get_gid() == "units"]
    assert len(units.get_offsets()) == 4
    with pytest.raises(ParameterError, match="'umatrix'"):
        plot_segment_map(None, labels, hits, background="pca")
    with pytest.raises(ParameterError, match="hits"):
        plot_segment_map(None, labels, background="hits")
    ax = plot_segment_map(np.zeros((2, 3, 2)), labels.ravel(), umatrix=np.ones((2, 3)))
    assert ax.get_title() == "3 segments on the map"


def test_hexagonal_segment_map_draws_hexagons_and_their_edges():
    labels = np.array([[1, 1, 2], [3, 2, 2]])
    hits = np.array([[4, 0, 2], [1, 3, 0]])
    ax = plot_segment_map(None, labels, hits, background="hits", topology="hexagonal")
    (cells,) = [c for c in ax.collections if c.get_gid() == "cells"]
    assert len(cells.get_paths()) == 6 and not ax.images
    np.testing.assert_array_equal(cells.get_array(), hits.ravel())
    (bounds,) = [c for c in ax.collections if c.get_gid() == "boundaries"]
    # row 1 is shifted right: (0,1)|(0,2), (1,0)|(1,1), (0,0)/(1,0), (0,1)/(1,0), (0,1)/(1,1) -> 5 edges
    segments = np.asarray(bounds.get_segments())
    assert len(segments) == 5
    np.testing.assert_allclose(np.linalg.norm(segments[:, 1] - segments[:, 0], axis=1), 1 / np.sqrt(3))
    # every end point is a corner of a drawn hexagon
    corners = np.concatenate([p.vertices for p in cells.get_paths()])
    for point in segments.reshape(-1, 2):
        assert np.isclose(np.linalg.norm(corners - point, axis=1), 0, atol=1e-9).any()
    (units,) = [c for c in ax.collections if c.get_gid() == "units"]
    np.testing.assert_allclose(units.get_offsets()[2], [0.5, np.sqrt(3) / 2])  # unit (1, 0), non-empty
    # a fitted hexagonal SOM brings its own topology; the U-matrix background is the hexagonal one
    from seglib.som import SOM, u_matrix

    X = np.random.default_rng(0).normal(size=(300, 3))
    som = SOM((4, 5), topology="hexagonal", n_epochs=2, progress=False).fit(X)
    ax = plot_segment_map(som, np.arange(20) % 3 + 1, som.hit_map(X))
    (cells,) = [c for c in ax.collections if c.get_gid() == "cells"]
    assert len(cells.get_paths()) == 20
    np.testing.assert_allclose(cells.get_array(), u_matrix(som.weights_, "hexagonal").ravel())


def test_k_selection_and_stability_plots():
    table = pd.DataFrame({"k": [2, 3], "silhouette": [0.4, 0.5], "davies_bouldin": [0.8, 0.7],
                          "smallest_share": [0.3, 0.2], "gap": [1.0, 2.0]})
    axes = plot_k_selection(table, suggested=3)
    assert len(axes) == 4
    assert all(any(ln.get_gid() == "suggested" for ln in ax.get_lines()) for ax in axes)
    X = np.random.default_rng(0).normal(size=(200, 2))
    som, clustering = KMeansSOM(map_shape=(2, 3), random_state=0), PrototypeClustering(n_clusters=3)
    res = segment_stability(_kept(X, som, clustering), som_reclusterer(X, som, clustering), n_runs=2,
                            progress=False)
    ax = plot_stability(res)
    from matplotlib.container import BarContainer

    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 3
    assert "not measured" in plot_stability(None).texts[0].get_text()


# ---- with the real SOM -----------------------------------------------------------------------


def test_pipeline_with_seglib_som(planted):
    from seglib.som import SOM

    X = planted["X"]
    som = SOM(map_shape=(5, 6), n_epochs=5, progress=False, n_jobs=1, random_state=0).fit(X)
    hits = som.hit_map(X)
    pc = PrototypeClustering(n_clusters=4, hit_weighting=True).fit(som.weights_, hits)
    customers = pc.assign(som.predict(X))
    true_customers = planted["truth"][planted["bmu"]]
    assert adjusted_rand_score(true_customers, customers) > 0.95
    assert np.array_equal(np.bincount(customers)[1:], pc.segment_sizes_)
    ax = plot_segment_map(som, pc.unit_labels_, hits)  # U-matrix background from seglib.som
    assert ax.images and ax.images[0].get_array().shape == (5, 6)
    res = segment_stability(customers, som_reclusterer(X, som, pc), n_runs=2, progress=False)
    assert res.mean_ari > 0.95


def test_real_sample_chain(real_sample):
    from seglib.clean import clean_file
    from seglib.features import feature_pipeline
    from seglib.som import SOM

    clean, _ = clean_file(real_sample)
    pipe = feature_pipeline()
    X = pipe.fit_transform(clean)
    ids = pipe["features"].transform(clean)["customer_id"]
    som = SOM(map_shape=(8, 8), n_epochs=5, progress=False, n_jobs=1).fit(X)
    bmu, hits = som.predict(X), som.hit_map(X)
    pc = PrototypeClustering(n_clusters=8).fit(som.weights_, hits)
    segments = pc.assign(bmu, ids=ids)
    assert segments.index.equals(pd.Index(ids)) and segments.index.is_unique  # one row per customer
    assert np.array_equal(np.bincount(segments, minlength=9)[1:], pc.segment_sizes_)
    table = k_selection(X, bmu, pc.linkage_, k_range=range(2, 10), sample_size=800)
    k, reason = suggest_k(table)
    assert 2 <= k <= 9 and f"k = {k}" in reason


# ---- customer-level consolidation from several starts ------------------------------------------------


def _overlapping(seed, k=6, rows=8, cols=9, n=1500):
    """Overlapping groups (several k-means optima) on a random 'map' of customers, and a fitted clustering."""
    from seglib.cluster import unit_sums

    rng = np.random.default_rng(seed)
    X = rng.normal(0, 2.0, size=(k, 4))[rng.integers(0, k, size=n)] + rng.normal(0, 1.3, size=(n, 4))
    protos = X[rng.choice(n, size=rows * cols, replace=False)]
    bmu = np.argmin(((X[:, None, :] - protos[None]) ** 2).sum(-1), axis=1)
    hits = np.bincount(bmu, minlength=rows * cols)
    pc = PrototypeClustering(n_clusters=k, random_state=seed).fit(
        protos.reshape(rows, cols, F), hits, unit_sums=unit_sums(X, bmu, rows * cols))
    pc.test_weights = protos.reshape(rows, cols, F)  # for refitting at another k
    return X, bmu, pc


def _within_ss(X, labels):
    return sum(((X[labels == s] - X[labels == s].mean(axis=0)) ** 2).sum() for s in np.unique(labels))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_kept_start_has_the_lowest_customer_level_within_ss_of_the_starts(seed):
    from seglib.cluster import best_of_starts, consolidate_by_customer, starts_stats, unit_start_centres

    X, bmu, pc = _overlapping(seed)
    assert len(pc.unit_starts_) > 1  # the k-means++ starts found other unit-level optima
    assert any(np.array_equal(pc.unit_labels_, s) for s in pc.unit_starts_)
    starts = [unit_start_centres(pc, s) for s in pc.unit_starts_]
    means, order, winner, sse = best_of_starts(lambda c: starts_stats(X, c), starts, row=lambda i: X[i])
    labels = nearest_segment(X, means)
    assert np.isclose(_within_ss(X, labels), sse[winner], rtol=1e-9)
    # every start, consolidated on its own, ends no better than the kept one
    alone = [_within_ss(X, consolidate_by_customer(X, s[bmu])[0]) for s in pc.unit_starts_]
    assert sse[winner] <= min(alone) * (1 + 1e-9)
    for i in np.flatnonzero(np.isfinite(sse)):  # the figure of each start is its own fixed point's
        assert np.isclose(sse[i], alone[i], rtol=1e-9)
    sizes = np.bincount(labels)[1:]
    assert (np.diff(sizes) <= 0).all() and sizes.size == pc.n_clusters_


def test_several_starts_are_deterministic_and_the_first_start_wins_ties():
    from seglib.cluster import best_of_starts, customer_segments, starts_stats, unit_start_centres

    X, bmu, pc = _overlapping(2)
    starts = [unit_start_centres(pc, s) for s in pc.unit_starts_]
    run = lambda cs: best_of_starts(lambda c: starts_stats(X, c), cs, row=lambda i: X[i])  # noqa: E731
    a, b = run(starts), run([s.copy() for s in starts])
    assert np.array_equal(a[0], b[0]) and a[2] == b[2]
    # the same start twice (its segments in another order): a tie, the first wins; the copy stops early
    w = a[2]
    tie = run([starts[w], starts[w][::-1]])
    assert tie[2] == 0 and np.isnan(tie[3][1])
    np.testing.assert_array_equal(tie[0], a[0])
    # a worse start first does not win; the better one, wherever it stands, does
    worst = int(np.nanargmax(a[3]))
    assert a[3][worst] > a[3][w] * (1 + 1e-6)  # the data have a clearly worse start
    assert run([starts[worst], starts[w]])[2] == 1
    assert run([starts[w], starts[worst]])[2] == 0
    # the whole path is deterministic too
    X1, bmu1, pc1 = _overlapping(2)
    l1, m1 = customer_segments(X1, bmu1, pc1)
    l2, m2 = customer_segments(X, bmu, pc)
    assert np.array_equal(l1, l2) and np.array_equal(m1, m2)
    assert np.array_equal(pc1.unit_labels_, pc.unit_labels_)
    assert np.array_equal(pc1.cut_labels_, pc.cut_labels_)


def test_customer_level_consolidation_is_never_worse_than_from_the_unit_level_winner_alone():
    from seglib.cluster import consolidate_by_customer, customer_segments

    for seed in (1, 2, 3, 4):
        X, bmu, pc = _overlapping(seed)
        single, _ = consolidate_by_customer(X, pc.unit_labels_[bmu])  # the previous default: one start
        labels, means = customer_segments(X, bmu, pc)
        assert _within_ss(X, labels) <= _within_ss(X, single) * (1 + 1e-9)
        # the clustering now holds the winning start, numbered like the final segments
        assert any(adjusted_rand_score(pc.unit_labels_, s) == 1.0 for s in pc.unit_starts_)
        assert pc.segment_sizes_.sum() == pytest.approx(pc.unit_hits_.sum())


def test_stats_of_blocks_add_up_to_those_of_all_customers():
    from seglib.cluster import add_starts_stats, starts_stats

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 3))
    starts = [rng.normal(size=(4, 3)), rng.normal(size=(4, 3))]
    whole = starts_stats(X, starts)
    parts = add_starts_stats([starts_stats(X[i:i + 120], starts, offset=i) for i in range(0, 500, 120)])
    for a, b in zip(whole, parts):
        np.testing.assert_allclose(a.sums, b.sums)
        assert np.array_equal(a.counts, b.counts) and a.far[1] == b.far[1]
        assert a.sse == pytest.approx(b.sse, rel=1e-12)


def test_the_app_preview_of_a_cut_is_what_a_run_at_that_k_keeps():
    from seglib.cluster import customer_segments, refine_units, starts_for

    X, bmu, pc = _overlapping(3)
    for k in (4, 6):
        other = clone(pc).set_params(n_clusters=k)
        other.fit(pc.test_weights, pc.unit_hits_, unit_sums=pc.unit_means_ * pc.unit_hits_[:, None])
        preview = pc.segments_for(cut(pc.linkage_, n_clusters=k, hits=pc.unit_hits_))
        assert len(starts_for(pc, preview)) == len(other.unit_starts_)
        labels, means, _ = refine_units(X, preview, pc)
        kept, kept_means = customer_segments(X, bmu, other)
        assert np.array_equal(labels, kept)
        np.testing.assert_array_equal(means, kept_means)
    assert len(starts_for(pc, np.roll(pc.unit_labels_, 1))) == 1  # not the tree's consolidation: as given


def test_fit_cut_lets_a_given_max_d_win_and_ignores_the_steps_other_settings(planted):
    """The one cut rule of both backends (seglib.cluster.fit_cut)."""
    from seglib.cluster import fit_cut, unit_sums

    sums = unit_sums(planted["X"], planted["bmu"], ROWS * COLS)
    by_k = fit_cut(planted["weights"], planted["hits"], sums, random_state=0, n_clusters=4, assign="customer",
                   n_stability_runs=3)
    assert by_k.n_clusters_ == 4 and by_k.max_d is None
    height = float(np.mean(by_k.max_d_range_))
    by_d = fit_cut(planted["weights"], planted["hits"], sums, random_state=0, n_clusters=9, max_d=height)
    assert by_d.n_clusters is None and by_d.max_d == height  # n_clusters ignored
    assert by_d.n_clusters_ == 4
    assert adjusted_rand_score(by_d.unit_labels_, by_k.unit_labels_) == 1.0
    hexagonal = fit_cut(planted["weights"], planted["hits"], sums, topology="hexagonal", n_clusters=4)
    assert hexagonal.topology == "hexagonal"


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_refit_adopts_the_recorded_segments_of_the_start_that_won(seed):
    """The run keeps the start whose customer-level consolidation won, which need not be the refit's
    unit-level winner: adopting the recorded labels gives the refit the run's units, cut and numbers."""
    from seglib.cluster import customer_segments, unit_sums

    X, bmu, pc = _overlapping(seed)
    customer_segments(X, bmu, pc, "customer")  # the run: unit_labels_ now the winning start
    hits = np.bincount(bmu, minlength=pc.unit_labels_.size)
    refit = clone(pc).fit(pc.test_weights, hits, unit_sums=unit_sums(X, bmu, hits.size))
    assert not np.array_equal(refit.unit_labels_, pc.unit_labels_)  # the case: another start won
    assert refit.adopt(pc.unit_labels_)
    np.testing.assert_array_equal(refit.unit_labels_, pc.unit_labels_)
    np.testing.assert_array_equal(refit.cut_labels_, pc.cut_labels_)
    np.testing.assert_array_equal(refit.segment_sizes_, pc.segment_sizes_)


def test_a_refit_refuses_segments_that_are_none_of_its_starts():
    from seglib.cluster import unit_sums

    X, bmu, pc = _overlapping(1)
    hits = np.bincount(bmu, minlength=pc.unit_labels_.size)
    refit = clone(pc).fit(pc.test_weights, hits, unit_sums=unit_sums(X, bmu, hits.size))
    before = refit.unit_labels_.copy()
    other = np.roll(before, 1)  # the same sizes in labels, other units: no start has them
    assert not any(adjusted_rand_score(np.ravel(s), other) == 1.0 for s in refit.unit_starts_)
    assert not refit.adopt(other)
    assert not refit.adopt(before[:-1])  # wrong length
    np.testing.assert_array_equal(refit.unit_labels_, before)
