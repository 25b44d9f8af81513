"""Consolidation of the cut (k-means iterations on the customers, unit by unit) and n_clusters='auto'."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from seglib.cluster import (
    PrototypeClustering,
    consolidate,
    cut,
    select_k,
    unit_silhouette,
    unit_sums,
    weighted_ari,
    within_ss,
)
from seglib.errors import InputError, ParameterError


def _customers_sse(X, labels):
    return sum(((X[labels == s] - X[labels == s].mean(axis=0)) ** 2).sum() for s in np.unique(labels))


def _map(seed, k=5, rows=9, cols=10, n=1500, spread=1.2, separated=False):
    """Customers from k blobs (overlapping, or on the corners of a simplex), a crude 'map' of units
    drawn among the customers, their best units and sums."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * np.eye(k) if separated else rng.normal(0, 2.0, size=(k, 3))
    f = centres.shape[1]
    truth = rng.integers(0, k, size=n)
    X = centres[truth] + rng.normal(0, spread, size=(n, f))
    protos = X[rng.choice(n, size=rows * cols, replace=False)] + rng.normal(0, 0.1, size=(rows * cols, f))
    bmu = np.argmin(((X[:, None, :] - protos[None]) ** 2).sum(-1), axis=1)
    hits = np.bincount(bmu, minlength=rows * cols)
    return X, truth, protos.reshape(rows, cols, f), bmu, hits, unit_sums(X, bmu, rows * cols)


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
@pytest.mark.parametrize("method", ["ward", "average"])
def test_consolidation_never_increases_the_customers_sum_of_squares(seed, method):
    X, _, w, bmu, hits, sums = _map(seed)
    plain = PrototypeClustering(method, n_clusters=5, consolidate=False).fit(w, hits, unit_sums=sums)
    cons = PrototypeClustering(method, n_clusters=5).fit(w, hits, unit_sums=sums)
    assert adjusted_rand_score(plain.unit_labels_, cons.cut_labels_) == 1.0  # the same cut, renumbered
    assert _customers_sse(X, cons.assign(bmu)) <= _customers_sse(X, plain.assign(bmu)) + 1e-9
    # the figure consolidation minimises is the customers' SSE up to a constant
    means = cons.unit_means_
    gap = _customers_sse(X, cons.assign(bmu)) - within_ss(cons.unit_labels_, means, hits)
    plain_gap = _customers_sse(X, plain.assign(bmu)) - within_ss(plain.unit_labels_, means, hits)
    assert gap == pytest.approx(plain_gap)


def test_consolidated_segments_are_a_fixed_point_of_lloyd():
    X, _, w, bmu, hits, sums = _map(8)
    pc = PrototypeClustering(n_clusters=5).fit(w, hits, unit_sums=sums)
    seg = pc.assign(bmu)
    centres = np.stack([X[seg == s].mean(axis=0) for s in range(1, 6)])
    means = sums[hits > 0] / hits[hits > 0, None]
    nearest = np.argmin(((means[:, None] - centres[None]) ** 2).sum(-1), axis=1) + 1
    assert np.array_equal(nearest, pc.unit_labels_[hits > 0])  # no unit wants to move
    assert np.array_equal(np.bincount(seg, minlength=6)[1:], pc.segment_sizes_)
    assert np.all(np.diff(pc.segment_sizes_) <= 0)  # still numbered by size


def test_consolidation_brings_the_cut_closer_to_planted_blobs():
    gains = []
    for seed in (11, 12, 13):
        X, truth, w, bmu, hits, sums = _map(seed, spread=1.4)
        plain = PrototypeClustering("average", n_clusters=5, consolidate=False).fit(w, hits, unit_sums=sums)
        cons = PrototypeClustering("average", n_clusters=5).fit(w, hits, unit_sums=sums)
        gains.append(adjusted_rand_score(truth, cons.assign(bmu))
                     - adjusted_rand_score(truth, plain.assign(bmu)))
    assert np.mean(gains) > 0


def test_empty_segment_is_reseeded_and_bad_input_named():
    means = np.array([[0.0], [0.1], [5.0], [5.1], [10.0]])
    hits = np.array([10, 10, 10, 10, 10])
    labels = np.array([1, 1, 2, 2, 3])  # a bad start: segment 3 is far, fine; relabel to make one empty
    out = consolidate(np.array([1, 1, 1, 1, 2]), means, hits, means * hits[:, None])
    assert out.max() == 2
    three = consolidate(labels, means, hits, means * hits[:, None])
    assert sorted(np.bincount(three)[1:]) == [1, 2, 2]
    # a segment of units without customers gets re-seeded rather than lost
    reseeded = consolidate(np.array([1, 1, 1, 1, 2]), means, np.array([10, 10, 10, 10, 0]),
                           means * np.array([10, 10, 10, 10, 0])[:, None])
    assert reseeded.max() == 2
    with pytest.raises(InputError, match="unit_sums"):
        consolidate(labels, means, hits, np.zeros((4, 1)))
    with pytest.raises(InputError, match="unit_labels"):
        consolidate(labels[:3], means, hits)


def test_unit_sums_add_up_over_blocks_of_customers():
    X, _, w, bmu, hits, sums = _map(21)
    halves = unit_sums(X[:700], bmu[:700], hits.size) + unit_sums(X[700:], bmu[700:], hits.size)
    np.testing.assert_allclose(halves, sums, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sums[bmu[0]], X[bmu == bmu[0]].sum(axis=0))
    with pytest.raises(InputError, match="X"):
        unit_sums(X[:10], bmu, hits.size)


def test_weighted_ari_equals_the_ari_of_repeated_units():
    rng = np.random.default_rng(2)
    a, b = rng.integers(1, 4, size=30), rng.integers(1, 5, size=30)
    w = rng.integers(0, 6, size=30)
    assert weighted_ari(a, b, w) == pytest.approx(adjusted_rand_score(np.repeat(a, w), np.repeat(b, w)))
    assert weighted_ari(a, a, w) == pytest.approx(1.0)


def test_unit_silhouette_prefers_the_planted_split():
    X, truth, w, bmu, hits, sums = _map(31, k=3, spread=0.5)
    means = np.where(hits[:, None] > 0, sums / np.maximum(hits, 1)[:, None], w.reshape(-1, 3))
    majority = np.array([np.bincount(truth[bmu == u], minlength=3).argmax() + 1 if hits[u] else 1
                         for u in range(hits.size)])
    shuffled = np.random.default_rng(0).permutation(majority)
    assert unit_silhouette(majority, means, hits) > 0.4 > unit_silhouette(shuffled, means, hits)
    assert np.isnan(unit_silhouette(np.ones(hits.size, dtype=int), means, hits))


@pytest.mark.parametrize("k", [3, 4, 6, 8])
def test_auto_finds_the_planted_number_of_blobs(k):
    X, truth, w, bmu, hits, sums = _map(40 + k, k=k, rows=10, cols=12, n=2400, spread=0.7, separated=True)
    pc = PrototypeClustering().fit(w, hits, unit_sums=sums)
    assert pc.n_clusters == "auto" and pc.n_clusters_ == k
    assert f"k = {k}" in pc.k_reason_ and "stable" in pc.k_reason_
    table = pc.k_table_
    assert list(table["k"]) == list(range(3, 11)) and table["chosen"].sum() == 1
    assert table.loc[table["chosen"], "k"].item() == k
    kmeans = KMeans(k, n_init=10, random_state=0).fit_predict(X)  # the blobs overlap: k-means is the bar
    assert adjusted_rand_score(truth, pc.assign(bmu)) >= adjusted_rand_score(truth, kmeans) - 0.03


def test_auto_respects_k_min_and_k_max():
    X, truth, w, bmu, hits, sums = _map(44, k=4, rows=10, cols=12, n=2400, spread=0.45)
    pc = PrototypeClustering(k_min=5, k_max=7).fit(w, hits, unit_sums=sums)
    assert 5 <= pc.n_clusters_ <= 7 and list(pc.k_table_["k"]) == [5, 6, 7]
    with pytest.raises(ParameterError, match="k_min"):
        PrototypeClustering(k_min=6, k_max=4).fit(w, hits, unit_sums=sums)
    with pytest.raises(ParameterError, match="'auto'"):
        PrototypeClustering(n_clusters="many").fit(w, hits, unit_sums=sums)
    with pytest.raises(ParameterError, match="consolidate"):
        PrototypeClustering(consolidate="yes").fit(w, hits, unit_sums=sums)


def test_an_integer_or_max_d_still_wins_over_auto():
    X, truth, w, bmu, hits, sums = _map(44, k=4, rows=10, cols=12, n=2400, spread=0.45)
    by_k = PrototypeClustering(n_clusters=7).fit(w, hits, unit_sums=sums)
    assert by_k.n_clusters_ == 7 and by_k.k_table_ is None and "n_clusters = 7" in by_k.k_reason_
    low, high = by_k.max_d_range_
    by_d = PrototypeClustering(n_clusters=None, max_d=(low + high) / 2).fit(w, hits, unit_sums=sums)
    assert by_d.n_clusters_ == 7 and np.array_equal(by_d.unit_labels_, by_k.unit_labels_)


def test_without_structure_auto_says_so():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 2))  # one blob: no k is natural
    protos = np.stack(np.meshgrid(np.linspace(-2, 2, 10), np.linspace(-2, 2, 10)), -1).reshape(-1, 2)
    bmu = np.argmin(((X[:, None] - protos[None]) ** 2).sum(-1), axis=1)
    hits = np.bincount(bmu, minlength=100)
    k, table, reason = select_k(protos, hits, unit_sums(X, bmu, 100), k_range=range(3, 8))
    assert k in range(3, 8) and f"k = {k}" in reason
    if not (table["stability"] >= 0.8).any():
        assert "most stable" in reason


def test_select_k_is_deterministic():
    X, truth, w, bmu, hits, sums = _map(50, k=5)
    a = select_k(w, hits, sums, random_state=1)
    b = select_k(w, hits, sums, random_state=1)
    assert a[0] == b[0] and a[2] == b[2]
    pd.testing.assert_frame_equal(a[1], b[1])


def test_fit_without_hits_treats_every_unit_as_one_customer():
    w = np.array([[[0.0], [0.1], [5.0]], [[0.2], [5.1], [5.2]]])
    pc = PrototypeClustering(n_clusters=2).fit(w)
    assert sorted(np.bincount(pc.unit_labels_)[1:]) == [3, 3]
    assert np.array_equal(pc.segments_for(cut(pc.linkage_, n_clusters=2)), pc.unit_labels_)


def test_auto_finds_the_planted_segments_of_the_generator(tmp_path):
    """The whole chain on generated transactions with 5 planted segments (seed unused by the benchmark)."""
    from seglib import steps
    from seglib.synthetic import write_dataset

    data, truth_csv = write_dataset(tmp_path / "t.csv", n_customers=2000, n_segments=5, random_state=77)
    clean = steps.clean_step(data, out_dir=tmp_path / "run")
    som = steps.som_step(clean.clean, map_shape=(12, 12), out_dir=tmp_path / "run", progress=False)
    step = steps.cluster_step(som, out_dir=tmp_path / "run")
    assert step.clustering.n_clusters_ == 5, step.clustering.k_reason_
    truth = pd.read_csv(truth_csv, dtype=str).set_index("customerID")["segment"]
    got = adjusted_rand_score(truth.reindex(step.segments["customer_id"]), step.segments["segment"])
    kmeans = KMeans(5, n_init=10, random_state=0).fit_predict(som.X.to_numpy())
    assert got >= adjusted_rand_score(truth.reindex(step.segments["customer_id"]), kmeans) - 0.03


def test_moved_units_and_the_crosstab_relate_the_cut_to_the_segments():
    from seglib.cluster import cut_match, cut_vs_segments, moved_units

    cut_ = np.array([1, 1, 1, 2, 2, 3])
    final = np.array([2, 2, 1, 1, 1, 3])  # renumbered by size, and unit 2 moved from cut 1 to final 1
    hits = np.array([5, 5, 1, 4, 4, 3])
    assert cut_match(cut_, final, hits)[1:].tolist() == [2, 1, 3]
    assert moved_units(cut_, final, hits).tolist() == [False, False, True, False, False, False]
    table = cut_vs_segments(cut_, final, hits)
    assert table.loc[1, 2] == 10 and table.loc[1, 1] == 1 and table.to_numpy().sum() == hits.sum()


def test_plot_consolidation_rings_the_moved_units():
    from matplotlib.figure import Figure

    from seglib.cluster import moved_units
    from seglib.plots import plot_consolidation

    X, _, w, bmu, hits, sums = _map(3)
    pc = PrototypeClustering("average", n_clusters=5).fit(w, hits, unit_sums=sums)
    moved = moved_units(pc.cut_labels_, pc.unit_labels_, hits)
    assert moved.any()
    ax = plot_consolidation(w, pc.cut_labels_, pc.unit_labels_, hits.reshape(w.shape[:2]),
                            ax=Figure().subplots())
    (rings,) = [c for c in ax.collections if c.get_gid() == "moved_units"]
    assert len(rings.get_offsets()) == moved.sum()
    assert f"moved {moved.sum()} of {hits.size} units" in ax.get_title()
    with pytest.raises(InputError, match="cut_labels"):
        plot_consolidation(w, pc.cut_labels_[:5], pc.unit_labels_, hits.reshape(w.shape[:2]))


def test_the_dendrogram_labels_differ_from_the_segments_only_on_moved_units():
    """cut_labels_ (drawn on the dendrograms) carry the final segments' numbers, hence their colours."""
    from seglib.cluster import moved_units

    for seed in (3, 4, 5):
        X, _, w, bmu, hits, sums = _map(seed)
        pc = PrototypeClustering("average", n_clusters=5).fit(w, hits, unit_sums=sums)
        moved = moved_units(pc.cut_labels_, pc.unit_labels_, hits)
        assert np.array_equal(pc.cut_labels_ != pc.unit_labels_, moved)
        assert moved.sum() < hits.size / 2


def test_extra_starts_never_do_worse_than_the_cut_alone():
    for seed in (60, 61, 62):
        X, _, w, bmu, hits, sums = _map(seed, k=6, spread=2.0)  # little structure: starts matter
        only_cut = PrototypeClustering(n_clusters=6, n_init=0).fit(w, hits, unit_sums=sums)
        starts = PrototypeClustering(n_clusters=6, n_init=10, random_state=seed).fit(w, hits, unit_sums=sums)
        means = starts.unit_means_
        assert within_ss(starts.unit_labels_, means, hits) <= within_ss(only_cut.unit_labels_, means, hits)
        again = PrototypeClustering(n_clusters=6, n_init=10, random_state=seed).fit(w, hits, unit_sums=sums)
        assert np.array_equal(again.unit_labels_, starts.unit_labels_)  # seeded: the same segments


def test_plot_consolidation_on_a_hexagonal_map():
    from matplotlib.figure import Figure

    from seglib.plots import plot_consolidation
    from seglib.plots._grid import cell_centers

    X, _, w, bmu, hits, sums = _map(3)
    pc = PrototypeClustering("average", n_clusters=5, topology="hexagonal").fit(w, hits, unit_sums=sums)
    ax = plot_consolidation(w, pc.cut_labels_, pc.unit_labels_, hits.reshape(w.shape[:2]),
                            topology="hexagonal", ax=Figure().subplots())
    (rings,) = [c for c in ax.collections if c.get_gid() == "moved_units"]
    x, y = (v.ravel() for v in cell_centers(w.shape[:2], "hexagonal"))
    moved = pc.cut_labels_ != pc.unit_labels_
    np.testing.assert_allclose(rings.get_offsets(), np.column_stack([x[moved], y[moved]]))


def _one_start_lloyd(labels, means, h, k, max_iter=100):
    """The Lloyd iterations of one start, one at a time: the reference the stacked starts must match."""
    from seglib.cluster import segment_centres

    labels = labels.copy()
    won = h > 0
    idx = np.arange(len(labels))
    sq = (means**2).sum(axis=1)
    for _ in range(max_iter):
        centres, mass = segment_centres(labels, means, h, k)
        for s in np.flatnonzero(mass == 0):
            own = np.nan_to_num(centres[labels - 1], nan=0.0)
            cost = np.where(won, h * ((means - own) ** 2).sum(axis=1), -1.0)
            cost[labels == s + 1] = -1.0
            u = int(np.argmax(cost))
            if cost[u] <= 0:
                break
            centres[s] = means[u]
            labels[u] = s + 1
        empty = np.isnan(centres).any(axis=1)
        c = np.where(empty[:, None], 0.0, centres)
        d = sq[:, None] - 2.0 * (means @ c.T) + (c**2).sum(axis=1)[None, :]
        d[:, empty] = np.inf
        best = np.argmin(d, axis=1) + 1
        new = np.where(d[idx, labels - 1] <= d[idx, best - 1], labels, best)
        if np.array_equal(new, labels):
            return labels
        labels = new
    return labels


def _one_start_seeding(means, h, k, rng):
    """k-means++ seeding with its distances computed afresh: the reference of the cached distances."""
    won = np.flatnonzero(h > 0)
    p = h[won] / h[won].sum()
    centres = [means[won[rng.choice(won.size, p=p)]]]
    d = ((means[won] - centres[0]) ** 2).sum(axis=1)
    for _ in range(k - 1):
        w = h[won] * d
        i = rng.choice(won.size, p=w / w.sum()) if w.sum() > 0 else int(rng.integers(won.size))
        centres.append(means[won[i]])
        d = np.minimum(d, ((means[won] - centres[-1]) ** 2).sum(axis=1))
    C = np.asarray(centres)
    return np.argmin(((means[:, None, :] - C[None]) ** 2).sum(axis=2), axis=1).astype(np.int64) + 1


def _one_start_at_a_time(labels, means, h, n_init, seed):
    """consolidate() as it ran start after start: the cut's Lloyd, then each k-means++ start's."""
    from seglib.cluster import number_by_size

    k = int(labels.max())
    results = [_one_start_lloyd(labels, means, h, k)]
    if n_init and 1 < k <= int((h > 0).sum()):
        rng = np.random.default_rng(seed)
        seeds = [_one_start_seeding(means, h, k, rng) for _ in range(n_init)]
        results += [_one_start_lloyd(start, means, h, k) for start in seeds]
    ss = [within_ss(r, means, h) for r in results]
    best, best_ss = results[0], ss[0]
    for s, r in zip(ss[1:], results[1:]):
        if s < best_ss * (1 - 1e-9):
            best, best_ss = r, s
    return number_by_size(best, h)


@pytest.mark.parametrize("seed", range(8))
def test_consolidation_of_stacked_starts_is_bit_for_bit_that_of_one_start_at_a_time(seed):
    # all starts iterate together and k-means++ reuses its distances: the result must be exactly the
    # one of running each start alone (same products, sums and ties), with units without customers,
    # empty start segments (re-seeded), one segment and no extra start among the cases
    rng = np.random.default_rng(seed)
    n_units, f = int(rng.integers(4, 120)), int(rng.integers(1, 20))
    means = rng.normal(size=(n_units, f)) * 10.0 ** rng.integers(-2, 3)
    h = np.round(rng.lognormal(1, 1.5, n_units)) * (rng.random(n_units) > 0.15)
    h[0] = max(h[0], 1.0)
    for k in (1, 2, int(rng.integers(3, min(12, n_units) + 1))):
        labels = rng.integers(1, k + 1, n_units)
        if k > 2:
            labels[labels == 2] = 1  # segment 2 starts empty
            labels[0] = k  # ... and k keeps a unit
        for n_init in (0, 10):
            got = consolidate(labels, means, h, n_init=n_init, random_state=seed)  # the prototypes as means
            assert got.tobytes() == _one_start_at_a_time(labels, means, h, n_init, seed).tobytes()


@pytest.mark.parametrize("seed", range(6))
def test_stacked_starts_equal_one_start_at_a_time_with_coincident_means(seed):
    # a re-seeded empty segment next to a coincident mean: the labels it moved must be the ones the
    # keep-or-move comparison reads (a stale position lost a segment: k=3 asked, 2 returned)
    cut, means, h = np.array([1, 1, 2, 3]), np.array([[0.0], [4.0], [0.0], [1.0]]), np.array([1.0, 1, 1, 0])
    got = consolidate(cut, means, h)
    assert got.tobytes() == _one_start_at_a_time(cut, means, h, 0, 0).tobytes() and len(set(got)) == 3
    rng = np.random.default_rng(seed)
    for _ in range(40):  # integer prototypes: many duplicates and exact ties
        n_units = int(rng.integers(4, 11))
        means = rng.integers(-2, 3, (n_units, 1)).astype(float)
        h = rng.integers(0, 3, n_units).astype(float)
        h[0] = max(h[0], 1.0)
        k = int(rng.integers(2, min(5, n_units) + 1))
        labels = rng.integers(1, k + 1, n_units)
        for n_init in (0, 3):
            got = consolidate(labels, means, h, n_init=n_init, random_state=seed)
            assert got.tobytes() == _one_start_at_a_time(labels, means, h, n_init, seed).tobytes()
