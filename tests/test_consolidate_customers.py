"""Consolidation customer by customer: Lloyd iterations on the customers from the unit-level segments."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from seglib.cluster import (
    PrototypeClustering,
    SegmentStats,
    add_segment_stats,
    best_of_starts,
    consolidate_by_customer,
    customer_segments,
    nearest_segment,
    off_majority_share,
    segment_stats,
    starts_stats,
    unit_majority,
    unit_start_centres,
    unit_sums,
)
from seglib.errors import InputError, ParameterError


def _sse(X, labels):
    return sum(((X[labels == s] - X[labels == s].mean(axis=0)) ** 2).sum() for s in np.unique(labels))


def _map(seed, k=5, rows=8, cols=9, n=1200, spread=1.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, size=(k, 4))
    X = centres[rng.integers(0, k, size=n)] + rng.normal(0, spread, size=(n, 4))
    protos = X[rng.choice(n, size=rows * cols, replace=False)]
    bmu = np.argmin(((X[:, None, :] - protos[None]) ** 2).sum(-1), axis=1)
    hits = np.bincount(bmu, minlength=rows * cols)
    pc = PrototypeClustering(n_clusters=k, random_state=seed).fit(protos.reshape(rows, cols, 4), hits,
                                                                    unit_sums=unit_sums(X, bmu, rows * cols))
    return X, pc.assign(bmu)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_customer_level_never_increases_the_sum_of_squares_of_unit_level(seed):
    X, unit_level = _map(seed)
    labels, centres = consolidate_by_customer(X, unit_level)
    assert _sse(X, labels) <= _sse(X, unit_level) + 1e-9
    assert set(np.unique(labels)) == set(range(1, int(unit_level.max()) + 1))
    sizes = np.bincount(labels)[1:]
    assert (np.diff(sizes) <= 0).all()  # numbered by size, largest first
    # a fixed point of Lloyd: each mean is its customers' mean, each customer is at its nearest mean
    means = np.stack([X[labels == s].mean(axis=0) for s in range(1, len(sizes) + 1)])
    np.testing.assert_allclose(centres, means, atol=1e-12)
    assert np.array_equal(nearest_segment(X, centres), labels)
    again, centres2 = consolidate_by_customer(X, labels)
    assert adjusted_rand_score(again, labels) == 1.0 and np.array_equal(again, labels)
    np.testing.assert_allclose(centres2, centres, atol=1e-12)


def test_it_is_deterministic():
    X, unit_level = _map(7)
    a = consolidate_by_customer(X, unit_level)
    b = consolidate_by_customer(X.copy(), unit_level.copy())
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_an_empty_start_segment_is_reseeded_and_every_segment_ends_with_customers():
    X, unit_level = _map(5)
    start = np.where(unit_level == 2, 1, unit_level)  # segment 2 starts empty
    labels, centres = consolidate_by_customer(X, start)
    k = int(unit_level.max())
    assert np.isfinite(centres).all()
    assert (np.bincount(labels, minlength=k + 1)[1:] > 0).all()


def test_nearest_segment_is_batch_independent_with_ties_to_the_lowest_segment():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 6))
    C = rng.normal(size=(6, 6))
    whole = nearest_segment(X, C)
    one_by_one = np.concatenate([nearest_segment(X[i:i + 1], C) for i in range(0, 3000, 7)])
    assert np.array_equal(whole[::7], one_by_one)
    assert np.array_equal(np.concatenate([nearest_segment(b, C) for b in np.array_split(X, 13)]), whole)
    twin = np.vstack([C[3], C[3], C[1]])  # segments 1 and 2 share a mean: the tie goes to 1
    assert set(nearest_segment(X, twin)) <= {1, 3}


@pytest.mark.parametrize("seed", range(6))
def test_nearest_segment_is_the_answer_of_best_units_even_on_near_ties(seed):
    # the fast search settles clear rows by scores and the rest by exact distances: it must give
    # exactly som.best_units' answer (the exact argmin, ties to the lowest), also on ties, on rows that
    # sit on a mean, at any scale, with one mean, with inf or NaN in a row, in any memory layout
    from seglib.som import best_units

    rng = np.random.default_rng(seed)
    n, F, k = int(rng.integers(50, 2000)), int(rng.integers(1, 20)), int(rng.integers(2, 12))
    scale = 10.0 ** rng.integers(-6, 7)
    C = rng.normal(size=(k, F)) * scale
    C[-1] = C[0]  # twin means: a tie for every row nearest to them
    X = rng.normal(size=(n, F)) * scale
    X[: n // 3] = (C[0] + C[1]) / 2  # equidistant from two means
    X[n // 3: n // 2] = C[rng.integers(0, k, n // 2 - n // 3)] * (1 + 1e-14)  # on a mean, within rounding
    X[-1, 0], X[-2, -1] = np.nan, np.inf
    for layout in (X, np.asfortranarray(X), X[::-1]):
        with np.errstate(invalid="ignore", over="ignore"):
            expected = best_units(layout, C) + 1
        assert np.array_equal(nearest_segment(layout, C), expected)
    assert np.array_equal(nearest_segment(X, C[:1]), np.ones(n, dtype=np.int64))  # one segment
    assert nearest_segment(X[:1], C).tolist() == (best_units(X[:1], C) + 1).tolist()  # one customer
    assert nearest_segment(X[:0], C).shape == (0,)


@pytest.mark.parametrize("seed", range(4))
def test_nearest_segment_is_the_exact_argmin_where_squared_distances_are_subnormal(seed):
    # around 1e-162 the squared distances fall below the smallest normal float: rounding errors no
    # longer shrink with them, so the near-tie bound has a floor and such rows are settled exactly
    from seglib.som import exact_sq_distances

    rng = np.random.default_rng(seed)
    C = rng.normal(size=(int(rng.integers(2, 8)), int(rng.integers(1, 6)))) * 1e-162
    X = rng.normal(size=(300, C.shape[1])) * 1e-162
    X[:50] = C[rng.integers(0, len(C), 50)]  # on a mean
    expected = exact_sq_distances(X, C).argmin(axis=1) + 1  # ties to the lowest
    assert np.array_equal(nearest_segment(X, C), expected)


def test_nearest_segment_in_many_threads_gives_the_blas_threads_back():
    # the search runs BLAS on one thread while any thread searches; the last one out restores the setting
    import threading

    from threadpoolctl import threadpool_info

    def blas_threads():
        return sorted((i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas")

    rng = np.random.default_rng(4)
    X, C = rng.normal(size=(20000, 8)), rng.normal(size=(5, 8))
    before, expected = blas_threads(), nearest_segment(X, C)
    results = []
    threads = [threading.Thread(target=lambda: results.extend(nearest_segment(X, C) for _ in range(10)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 40 and all(np.array_equal(r, expected) for r in results)
    assert blas_threads() == before


def test_block_statistics_add_up_to_those_of_all_customers():
    X, unit_level = _map(2)
    C = np.stack([X[unit_level == s].mean(axis=0) for s in range(1, int(unit_level.max()) + 1)])
    whole = segment_stats(X, C)
    cuts = [0, 100, 555, 900, len(X)]
    parts = add_segment_stats(segment_stats(X[a:b], C, offset=a) for a, b in zip(cuts, cuts[1:]))
    np.testing.assert_allclose(parts.sums, whole.sums, atol=1e-9)
    assert np.array_equal(parts.counts, whole.counts) and parts.far == whole.far
    assert isinstance(whole, SegmentStats)

    # the loop fed by blocks finds the same means as the loop fed by all customers
    def blocks(starts):
        return [add_segment_stats(segment_stats(X[a:b], c, offset=a) for a, b in zip(cuts, cuts[1:]))
                for c in starts]

    by_blocks = best_of_starts(blocks, [C], row=lambda i: X[i])[0]
    in_memory = best_of_starts(lambda starts: starts_stats(X, starts), [C], row=lambda i: X[i])[0]
    assert np.array_equal(nearest_segment(X, by_blocks), nearest_segment(X, in_memory))


@pytest.mark.parametrize("order", ["C", "F"])
def test_segment_sums_are_the_bits_of_adding_the_rows_in_row_order(order):
    # the sums per segment add every row in row order (as np.add.at does), whatever the memory layout,
    # so both backends and earlier runs get the same bits; a segment without customers sums to 0
    rng = np.random.default_rng(11)
    X = np.asarray(rng.normal(size=(5000, 7)) * rng.lognormal(size=7), order=order)
    C = rng.normal(size=(5, 7))
    C[4] = 1e6  # nobody is nearest to it
    stats = segment_stats(X, C)
    lab = nearest_segment(X, C) - 1
    expected = np.zeros((5, 7))
    np.add.at(expected, lab, X)
    assert stats.sums.tobytes() == expected.tobytes()
    assert stats.counts.tolist() == np.bincount(lab, minlength=5).astype(float).tolist()
    assert stats.counts[4] == 0 and (stats.sums[4] == 0).all()
    empty = segment_stats(X[:0], C)
    assert (empty.sums == 0).all() and (empty.counts == 0).all() and empty.far == (-1.0, -1)


def test_bad_labels_are_refused():
    X = np.zeros((4, 2))
    with pytest.raises(InputError, match="labels"):
        consolidate_by_customer(X, [1, 2, 0, 1])
    with pytest.raises(InputError, match="labels"):
        consolidate_by_customer(X, [1, 2])


def test_unit_majority_and_the_share_off_it():
    bmu = np.array([0, 0, 0, 1, 1, 2, 2])
    labels = np.array([2, 2, 1, 3, 1, 1, 2])  # unit 1: a tie of 3 and 1 -> 1; unit 3 has no customers
    major = unit_majority(bmu, labels, default=[1, 1, 1, 3])
    assert major.tolist() == [2, 1, 1, 3]
    assert off_majority_share(bmu, labels) == pytest.approx(3 / 7)


def test_customer_segments_keep_the_tree_numbered_like_the_final_segments():
    for seed in (1, 2, 3):
        X, _ = _map(seed)
        rng = np.random.default_rng(seed)
        protos = X[rng.choice(len(X), size=72, replace=False)]
        bmu = np.argmin(((X[:, None, :] - protos[None]) ** 2).sum(-1), axis=1)
        hits = np.bincount(bmu, minlength=72)
        pc = PrototypeClustering(n_clusters=5, random_state=seed).fit(
            protos.reshape(8, 9, 4), hits, unit_sums=unit_sums(X, bmu, 72))
        unit_level = pc.assign(bmu)
        labels, means = customer_segments(X, bmu, pc, "customer")
        sizes = np.bincount(labels)[1:]
        assert (np.diff(sizes) <= 0).all() and means.shape == (5, 4)
        assert _sse(X, labels) <= _sse(X, unit_level) + 1e-9
        # the unit-level segments are the winning start, numbered as the final segments grown from them:
        # consolidating from them again gives the same means in the same order
        assert any(adjusted_rand_score(pc.unit_labels_, start) == 1.0 for start in pc.unit_starts_)
        again, order, winner, _ = best_of_starts(lambda starts: starts_stats(X, starts),
                                                 [unit_start_centres(pc)], row=lambda i: X[i])
        assert order.tolist() == list(range(5)) and winner == 0
        np.testing.assert_allclose(again, means, atol=1e-9)
        # the cut drawn on the tree carries the final numbers: it matches the unit-level segments
        # (cut segment s <-> final segment s is a one-to-one matching of largest customer overlap)
        from scipy.optimize import linear_sum_assignment

        k = pc.n_clusters_
        overlap = np.zeros((k + 1, k + 1))
        np.add.at(overlap, (pc.cut_labels_, pc.unit_labels_), pc.unit_hits_)
        rows, cols = linear_sum_assignment(-overlap[1:, 1:])
        assert np.trace(overlap[1:, 1:]) == pytest.approx(overlap[1:, 1:][rows, cols].sum())
        # "unit" (or the plain cut) leaves customers with their unit's segment
        assert np.array_equal(customer_segments(X, bmu, pc, "unit")[0], pc.assign(bmu))
        assert customer_segments(X, bmu, pc, "unit")[1] is None


def test_an_unknown_assign_is_a_parameter_error():
    X, unit_level = _map(1)
    with pytest.raises(ParameterError, match="assign"):
        customer_segments(X, np.zeros(len(X), dtype=int), None, "segment")
