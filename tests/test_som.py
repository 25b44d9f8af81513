"""Tests of seglib.som (the SOM estimator, its building blocks, model files) and seglib.plots._som.

MiniSom is the reference for the quality figures: the tests give a MiniSom the very same weights and
compare. Data are seeded planted blobs, small enough for the whole file to run in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile

import matplotlib.pyplot as plt
import numba
import numpy as np
import pandas as pd
import pytest
from minisom import MiniSom
from sklearn.datasets import make_blobs
from sklearn.utils.estimator_checks import parametrize_with_checks

import seglib.som as som_module
from seglib.errors import InputError, ModelFormatError, ParameterError
from seglib.plots._som import plot_component_planes, plot_hit_map, plot_training_curve, plot_u_matrix
from seglib.som import (
    FORMAT_VERSION,
    SOM,
    _minisom,
    adjacent_units,
    best_units,
    data_moments,
    default_map_shape,
    epoch_stats,
    grid_adjacency,
    initial_weights,
    neighbor_pairs,
    neighborhood_matrix,
    quality_table,
    sigma_schedule,
    u_matrix,
    unit_distances,
    unit_positions,
    update_weights,
)


def blobs(n=1500, n_features=6, centers=5, seed=0, dtype=np.float64):
    X, _ = make_blobs(n, n_features, centers=centers, cluster_std=1.0, random_state=seed)
    return ((X - X.mean(0)) / X.std(0)).astype(dtype)


@pytest.fixture(scope="module")
def X():
    return blobs()


@pytest.fixture(scope="module")
def fitted(X):
    return SOM((8, 8), dtype="float64", progress=False).fit(X)


def minisom_with(weights):
    """A MiniSom holding exactly ``weights`` (float64), for reference figures."""
    rows, cols, n_features = weights.shape
    ref = MiniSom(rows, cols, n_features, random_seed=0)
    ref._weights = np.asarray(weights, dtype=np.float64).copy()
    return ref


# ---------------------------------------------------------------------------------- scikit-learn


@parametrize_with_checks(
    [
        SOM(),  # the defaults, as users get them (issue 13: subset invariance failed on ties)
        SOM(engine="minisom"),
        SOM(map_shape=(3, 3), n_epochs=3, progress=False),
        SOM(map_shape=(3, 3), engine="minisom", n_epochs=2, progress=False, random_state=0),
    ]
)
def test_sklearn_compatible(estimator, check):
    # no check is marked as expected to fail
    check(estimator)


# ---------------------------------------------------------------------------------- batch independence


def _tied_som(seed: int, dtype=np.float32):
    """A fitted SOM whose codebook holds duplicated units and units mirrored around the data's rows."""
    rng = np.random.default_rng(seed)
    som = SOM((4, 5), dtype=np.dtype(dtype).name, progress=False, n_jobs=1).fit(rng.normal(size=(60, 3)))
    w = rng.normal(size=(20, 3)).round(1).astype(dtype)
    w[10:15] = w[0:5]  # exact duplicates: units 10..14 tie with units 0..4
    w[15:20] = -w[0:5]  # mirrored: a row at the origin between unit u and unit u + 15 is a tie
    som.weights_ = w.reshape(4, 5, 3)
    centre = ((w[0:5] + w[10:15]) / 2).astype(np.float64)
    X = np.vstack([centre, np.zeros((3, 3)), rng.normal(size=(200, 3)),
                   rng.normal(size=(40, 3)) * 1e-4 + w[rng.integers(0, 20, 40)]]).astype(dtype)
    return som, X


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_row_gets_the_same_unit_alone_or_in_any_batch(seed, dtype):
    som, X = _tied_som(seed, dtype)
    batch = som.predict(X)
    alone = np.array([som.predict(X[i : i + 1])[0] for i in range(len(X))])
    np.testing.assert_array_equal(alone, batch)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    np.testing.assert_array_equal(som.predict(X[order]), batch[order])
    for size in (1, 7, 64):
        np.testing.assert_array_equal(best_units(X, som.weights_, chunk_size=size, n_jobs=2), batch)
    D = som.transform(X)
    assert np.array_equal(np.vstack([som.transform(X[i : i + 1]) for i in range(len(X))]), D)  # same bits
    np.testing.assert_array_equal(D.argmin(axis=1), batch)  # argmin: the lowest unit on exact ties
    _, dist = som.predict(X, return_distance=True)
    assert np.array_equal(dist, D.min(axis=1))


def test_exact_ties_go_to_the_lowest_unit():
    som, X = _tied_som(0)
    bmu = som.predict(X[:5])  # each row sits exactly on unit u and on its duplicate u + 10
    np.testing.assert_array_equal(bmu, np.arange(5))
    D = som.transform(X[:5])
    np.testing.assert_array_equal(D[np.arange(5), np.arange(5)], D[np.arange(5), np.arange(10, 15)])


def test_exact_epoch_counts_are_the_hit_map():
    som, X = _tied_som(1)
    for size in (1, 5, 300):
        _, counts, _ = epoch_stats(X, som.weights_, chunk_size=size, exact=True)
        np.testing.assert_array_equal(counts.reshape(som.map_shape_), som.hit_map(X))


# ---------------------------------------------------------------------------------- building blocks


def test_sigma_schedule():
    np.testing.assert_allclose(sigma_schedule(7.0, 1.0, 4, decay="linear"), [7.0, 5.0, 3.0, 1.0])
    # inverse: 7 / (1 + t * (7 / 1 - 1) / 3) = 7 / (1 + 2 t)
    np.testing.assert_allclose(sigma_schedule(7.0, 1.0, 4), [7.0, 7 / 3, 7 / 5, 1.0])
    np.testing.assert_allclose(sigma_schedule(7.0, 1.0, 1), [1.0])
    # MiniSom's asymptotic decay: sigma / (1 + t / (T / 2))
    np.testing.assert_allclose(sigma_schedule(3.0, 1.0, 2, decay="asymptotic"), [3.0, 1.5])


def test_neighborhood_matrix_by_hand():
    H = neighborhood_matrix((2, 2), sigma=1.0)
    # units (0,0) (0,1) (1,0) (1,1): squared grid distances 0, 1, 1, 2 from unit 0
    np.testing.assert_allclose(H[0], np.exp(-np.array([0.0, 1.0, 1.0, 2.0]) / 2.0))
    np.testing.assert_allclose(H, H.T)


def test_epoch_stats_and_update_by_hand():
    W = np.array([[[0.0, 0.0], [10.0, 0.0]]])  # a 1x2 map
    X = np.array([[1.0, 0.0], [-1.0, 2.0], [9.0, 0.0]])
    sums, counts, sum_dist = epoch_stats(X, W, chunk_size=2)
    np.testing.assert_array_equal(counts, [2, 1])
    np.testing.assert_allclose(sums, [[0.0, 2.0], [9.0, 0.0]])
    np.testing.assert_allclose(sum_dist, 1.0 + np.sqrt(5.0) + 1.0)
    # H = identity: each unit becomes the mean of its rows (k-means step)
    new = update_weights(W, sums, counts, np.eye(2))
    np.testing.assert_allclose(new, [[[0.0, 1.0], [9.0, 0.0]]])
    # a unit with no row in its neighbourhood keeps its weights
    new = update_weights(W, sums, np.array([2, 0]), np.eye(2))
    np.testing.assert_allclose(new[0, 1], W[0, 1])


def test_epoch_stats_add_up_over_blocks(X):
    W = initial_weights(*data_moments(X)[:2], (5, 4))
    whole = epoch_stats(X, W)
    parts = [epoch_stats(X[s], W, chunk_size=37) for s in (slice(0, 700), slice(700, None))]
    np.testing.assert_allclose(whole[0], parts[0][0] + parts[1][0])
    np.testing.assert_array_equal(whole[1], parts[0][1] + parts[1][1])
    assert whole[2] == pytest.approx(parts[0][2] + parts[1][2])


def test_data_moments_match_numpy(X):
    mean, cov, n = data_moments(X, chunk_size=100)
    np.testing.assert_allclose(mean, X.mean(0), atol=1e-12)
    np.testing.assert_allclose(cov, np.cov(X, rowvar=False), atol=1e-12)
    assert n == len(X)


def test_pca_init_spans_one_std_along_the_main_components():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4000, 3)) * [3.0, 1.0, 0.1] + [5.0, 0.0, -1.0]
    mean, cov, _ = data_moments(X)
    W = initial_weights(mean, cov, (5, 3))
    assert W.shape == (5, 3, 3)
    np.testing.assert_allclose(W[2, 1], mean)  # the centre unit sits on the mean
    # the longer side (rows) runs along the first component, +-1 standard deviation
    np.testing.assert_allclose(np.abs(W[4, 1] - W[0, 1]), [6.0, 0.0, 0.0], atol=0.25)
    np.testing.assert_allclose(np.abs(W[2, 2] - W[2, 0]), [0.0, 2.0, 0.0], atol=0.1)
    # deterministic, and independent of random_state
    np.testing.assert_array_equal(W, initial_weights(mean, cov, (5, 3), "pca", random_state=7))


def test_random_init_follows_the_data_distribution():
    mean, cov = np.array([1.0, -2.0]), np.array([[4.0, 1.0], [1.0, 1.0]])
    W = initial_weights(mean, cov, (60, 60), "random", random_state=0).reshape(-1, 2)
    np.testing.assert_allclose(W.mean(0), mean, atol=0.1)
    np.testing.assert_allclose(np.cov(W, rowvar=False), cov, atol=0.2)


def test_default_map_shape_follows_the_heuristic():
    rows, cols = default_map_shape(10_000, np.diag([4.0, 1.0, 0.5]))
    assert rows * cols == pytest.approx(5 * np.sqrt(10_000), rel=0.1)
    assert rows / cols == pytest.approx(2.0, rel=0.15)  # sqrt(4 / 1)
    rows, cols = default_map_shape(900, np.eye(4))
    assert rows == cols == 12  # 150 units, square
    assert SOM(map_shape=None, progress=False).fit(blobs(400)).map_shape_ == default_map_shape(
        400, data_moments(blobs(400))[1]
    )


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-5)])
def test_fit_is_the_building_blocks(X, dtype, tol):
    """The contract the Dask backend relies on: fit = initial weights, then per epoch the summed
    epoch_stats of any partition of the rows and update_weights."""
    som = SOM((6, 5), n_epochs=4, dtype=dtype, progress=False).fit(X)
    mean, cov, _ = data_moments(X)
    W = initial_weights(mean, cov, (6, 5)).astype(dtype)
    for sigma in sigma_schedule(3.0, 1.0, 4):
        parts = [epoch_stats(X[s], W) for s in (slice(0, 333), slice(333, 1000), slice(1000, None))]
        sums, counts = sum(p[0] for p in parts), sum(p[1] for p in parts)
        W = update_weights(W, sums, counts, neighborhood_matrix((6, 5), sigma)).astype(dtype)
    assert W.dtype == som.weights_.dtype
    np.testing.assert_allclose(som.weights_, W, rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------- training


def test_same_seed_same_weights_different_seeds_differ(X):
    for engine, extra in (("batch", {}), ("minisom", {"n_epochs": 1})):
        params = dict(engine=engine, init="random", progress=False, **extra)
        a, b, c = (SOM((5, 5), random_state=seed, **params).fit(X) for seed in (3, 3, 4))
        np.testing.assert_array_equal(a.weights_, b.weights_)
        assert not np.allclose(a.weights_, c.weights_)


def test_pca_init_needs_no_seed(X):
    a = SOM((5, 5), progress=False, random_state=1).fit(X)
    b = SOM((5, 5), progress=False, random_state=2).fit(X)
    np.testing.assert_array_equal(a.weights_, b.weights_)


def test_batch_map_is_ordered_and_as_good_as_minisom_online():
    """Planted blobs: low topographic error, and QE within 3% of MiniSom online training with a
    comparable schedule (sigma from half the map down to 1, the same final sigma)."""
    X = blobs(1500, seed=1)
    batch = SOM((8, 8), progress=False).fit(X)
    online = SOM((8, 8), engine="minisom", n_epochs=5, progress=False, random_state=0).fit(X)
    assert batch.topographic_error(X) <= 0.05
    assert batch.quantization_error(X) <= 1.03 * online.quantization_error(X)
    assert batch.history_[-1] < batch.history_[0]
    assert len(batch.history_) == batch.n_epochs + 1
    # the original setting leaves the map unordered
    original = SOM.original(map_shape=(8, 8), random_state=0, progress=False).fit(X)
    assert original.topographic_error(X) > 3 * batch.topographic_error(X)


def test_chunk_size_and_threads_do_not_change_the_result(X):
    ref = SOM((6, 6), progress=False, n_jobs=1).fit(X)
    threads = SOM((6, 6), progress=False, n_jobs=2).fit(X)
    np.testing.assert_array_equal(ref.weights_, threads.weights_)  # same chunks, same summing order
    # chunks much smaller than N: no N x units matrix, same map up to float rounding
    small = SOM((6, 6), progress=False, chunk_size=64, n_jobs=2).fit(X)
    np.testing.assert_allclose(small.weights_, ref.weights_, rtol=1e-5, atol=1e-5)
    assert (small.predict(X) == ref.predict(X)).mean() > 0.999


def test_float32_and_float64_agree(X):
    a = SOM((6, 6), progress=False).fit(X)
    b = SOM((6, 6), dtype="float64", progress=False).fit(X)
    assert a.weights_.dtype == np.float32 and b.weights_.dtype == np.float64
    np.testing.assert_allclose(a.weights_, b.weights_, atol=1e-4)
    assert (a.predict(X) == b.predict(X)).mean() > 0.999


def test_minisom_engine_is_minisom_training(X):
    """engine='minisom' runs MiniSom's own update/winner loop: with the same start and order it is
    exactly MiniSom.train."""
    from seglib.som import _minisom_updates

    W0 = initial_weights(*data_moments(X)[:2], (4, 4))
    ref = minisom_with(W0)
    ref.train(X, 300)  # rows 0..299 in order, decay over 300 steps
    ours = minisom_with(W0)

    class Bar:
        def update(self, n):
            pass

    _minisom_updates(ours, X, np.arange(300), 0, 300, Bar())
    np.testing.assert_array_equal(ours._weights, ref._weights)


def test_original_preset():
    som = SOM.original(random_state=0)
    assert (som.engine, som.sigma, som.learning_rate, som.n_iterations) == ("minisom", 1.0, 0.5, 10_000)
    assert (som.map_shape, som.init, som.decay) == ((15, 15), "random", "asymptotic")
    X = blobs(300)
    fitted = SOM.original(random_state=0, map_shape=(4, 4), n_iterations=500, progress=False).fit(X)
    assert len(fitted.history_) == 3  # start, after 300 updates, after 500


def test_progress_bar_can_be_turned_off(X, capsys):
    SOM((4, 4), n_epochs=2, progress=False).fit(X)
    assert capsys.readouterr().err == ""
    SOM((4, 4), n_epochs=2, progress=True).fit(X)
    assert "SOM epochs" in capsys.readouterr().err


def test_fit_logs_a_summary(X, caplog):
    with caplog.at_level("INFO", logger="seglib.som"):
        SOM((4, 4), n_epochs=2, progress=False).fit(X)
    assert "quantization error" in caplog.text


# ---------------------------------------------------------------------------------- mapping and quality


def test_predict_and_transform_shapes(fitted, X):
    bmu = fitted.predict(X)
    assert bmu.shape == (len(X),) and bmu.min() >= 0 and bmu.max() < 64
    D = fitted.transform(X[:50])
    assert D.shape == (50, 64) and D.dtype == np.float64
    np.testing.assert_array_equal(D.argmin(axis=1), bmu[:50])
    bmu2, dist = fitted.predict(X[:50], return_distance=True)
    np.testing.assert_allclose(dist, D.min(axis=1), atol=1e-9)
    np.testing.assert_array_equal(best_units(X, fitted.weights_, chunk_size=100, n_jobs=2), bmu)
    rows, cols = fitted.unit_coords(bmu)
    np.testing.assert_array_equal(rows * 8 + cols, bmu)
    assert fitted.component_planes().shape == (6, 8, 8)
    assert fitted.get_feature_names_out()[0] == "som0"


def test_metrics_match_minisom(fitted, X):
    ref = minisom_with(fitted.weights_)
    assert fitted.quantization_error(X) == pytest.approx(ref.quantization_error(X), rel=1e-12)
    assert fitted.topographic_error(X) == pytest.approx(ref.topographic_error(X))
    np.testing.assert_array_equal(fitted.hit_map(X), ref.activation_response(X))
    np.testing.assert_allclose(fitted.transform(X), ref._distance_from_weights(X), atol=1e-9)
    # MiniSom's distance map divides by its maximum; seglib keeps the distances
    U = fitted.u_matrix()
    np.testing.assert_allclose(U / U.max(), ref.distance_map(scaling="mean"), rtol=1e-12)
    winners = np.array([np.ravel_multi_index(ref.winner(x), (8, 8)) for x in X[:200]])
    np.testing.assert_array_equal(fitted.predict(X[:200]), winners)


def test_metrics_match_minisom_with_float32_weights():
    X = blobs(600, seed=3)
    som = SOM((5, 7), progress=False).fit(X)
    ref = minisom_with(som.weights_)
    assert som.quantization_error(X) == pytest.approx(ref.quantization_error(X), rel=1e-9)
    assert som.topographic_error(X) == pytest.approx(ref.topographic_error(X), abs=2 / len(X))
    assert np.abs(som.hit_map(X) - ref.activation_response(X)).sum() <= 2


def test_topographic_error_by_hand():
    som = SOM((3, 3), progress=False).fit(blobs(50, n_features=2))
    # weights on a grid: unit (r, c) at (r, c); choose rows whose two best units are known
    som.weights_ = np.stack(np.meshgrid(np.arange(3.0), np.arange(3.0), indexing="ij"), axis=-1)
    # best and second-best units: (0,0)-(0,1); (0,0)-(0,1) or (1,0); (1,1)-(1,2); (1,1)-(0,1) or (1,0)
    X = np.array([[0.0, 0.4], [0.45, 0.45], [1.4, 1.45], [0.6, 0.6]])
    assert som.topographic_error(X) == 0.0
    # a map folded on purpose: unit (0,1) and (2,2) swapped
    som.weights_[0, 1], som.weights_[2, 2] = [2.0, 2.0], [0.0, 1.0]
    X = np.array([[0.0, 0.9]])  # best (2,2) holding [0, 1]; second (0,0) [0,0]: not neighbours
    assert som.topographic_error(X) == 1.0
    # diagonal neighbours: an error only with 4-neighbour adjacency
    som.weights_ = np.array([[[0.0, 0.0], [5.0, 5.0]], [[6.0, 6.0], [0.1, 0.1]]])
    som.map_shape_ = (2, 2)
    X = np.array([[0.04, 0.04]])  # best (0,0), second (1,1): diagonal
    assert som.topographic_error(X) == 0.0
    assert som.topographic_error(X, neighbors=4) == 1.0
    with pytest.raises(ParameterError, match="8, 4"):
        som.topographic_error(X, neighbors=6)


def test_u_matrix_by_hand():
    W = np.zeros((2, 3, 1))
    W[:, 2, 0] = 3.0  # the right column is 3 away from the middle, 3 from the left only diagonally
    U = u_matrix(W)
    # unit (0,0): neighbours (0,1)=0, (1,0)=0, (1,1)=0 -> 0
    # unit (0,1): neighbours (0,0) 0, (0,2) 3, (1,0) 0, (1,1) 0, (1,2) 3 -> 6/5
    # unit (0,2): neighbours (0,1) 3, (1,1) 3, (1,2) 0 -> 2
    np.testing.assert_allclose(U, [[0.0, 1.2, 2.0], [0.0, 1.2, 2.0]])


def test_empty_unit_share_and_explained_variance(fitted, X):
    hits = fitted.hit_map(X)
    assert hits.sum() == len(X)
    assert fitted.empty_unit_share(X) == pytest.approx((hits == 0).mean())
    _, dist = fitted.predict(X, return_distance=True)
    expected = 1 - (dist**2).sum() / ((X - X.mean(0)) ** 2).sum()
    assert fitted.explained_variance(X) == pytest.approx(expected)
    assert 0.5 < fitted.explained_variance(X) < 1.0


def test_quality_table(fitted, X):
    other = SOM((4, 4), n_epochs=2, progress=False).fit(X)
    table = quality_table({"8x8": fitted, "4x4": other}, X)
    assert list(table.columns) == ["8x8", "4x4"]
    assert table.loc["quantization error", "8x8"] == pytest.approx(fitted.quantization_error(X))
    assert table.loc["topographic error", "4x4"] == pytest.approx(other.topographic_error(X))
    assert table.loc["units without customers", "8x8"] == pytest.approx(fitted.empty_unit_share(X))


def test_dataframe_feature_names(X):
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    som = SOM((4, 4), n_epochs=2, progress=False).fit(df)
    assert list(som.feature_names_in_) == list(df.columns)
    with pytest.warns(UserWarning, match="feature names"):
        np.testing.assert_array_equal(som.predict(df), som.predict(X))


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "params, match",
    [
        ({"engine": "kohonen"}, "engine='kohonen' is not valid; choose one of: 'batch', 'minisom'"),
        ({"init": "zeros"}, "choose one of: 'pca', 'random'"),
        ({"neighborhood": "bubble"}, "choose one of: 'gaussian'"),
        ({"topology": "torus"}, "choose one of: 'rectangular', 'hexagonal'"),
        ({"decay": "exponential"}, "choose one of: 'inverse', 'linear', 'asymptotic'"),
        ({"dtype": "float16"}, "choose one of: 'float32', 'float64'"),
        ({"map_shape": (15,)}, "map_shape"),
        ({"map_shape": (0, 5)}, "map_shape"),
        ({"map_shape": (1, 1)}, "at least 2 units"),
        ({"sigma": -1.0}, "sigma=-1.0"),
        ({"sigma_end": 0}, "sigma_end=0"),
        ({"n_epochs": 0}, "n_epochs=0"),
        ({"n_epochs": 2.5}, "n_epochs=2.5"),
        ({"chunk_size": 0}, "chunk_size=0"),
        ({"n_jobs": 0}, "n_jobs=0"),
        ({"n_iterations": 1000}, "engine='minisom' only"),
        ({"engine": "minisom", "sigma_end": 0.5}, "ends at sigma 1"),
        ({"engine": "minisom", "sigma_end": 0.5, "decay": "linear"}, "linear decay always ends at sigma 1"),
    ],
)
def test_bad_parameters(params, match, X):
    with pytest.raises(ParameterError, match=match):
        SOM(progress=False, **params).fit(X)


def test_bad_data(X, fitted):
    bad = X.copy()
    bad[7, 2] = np.nan
    with pytest.raises(InputError, match=r"NaN or inf in 1 row\(s\) \(first at row 7, column 2\)"):
        SOM((3, 3), progress=False).fit(bad)
    with pytest.raises(InputError, match="1 sample"):
        SOM((3, 3), progress=False).fit(X[:1])
    with pytest.raises(InputError, match="X has 5 features, but SOM is expecting 6"):
        fitted.predict(X[:, :5])
    with pytest.raises(InputError):
        fitted.predict(X[0])  # 1-D
    with pytest.warns(UserWarning, match="more units"):
        SOM((5, 5), n_epochs=1, progress=False).fit(X[:10])


# ---------------------------------------------------------------------------------- files


def test_save_load_round_trip(fitted, X, tmp_path):
    folder = fitted.save(tmp_path / "model")
    loaded = SOM.load(folder)
    np.testing.assert_array_equal(loaded.weights_, fitted.weights_)
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    np.testing.assert_array_equal(loaded.history_, fitted.history_)
    assert loaded.get_params() == fitted.get_params()
    meta = json.loads((folder / "som.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["map_shape"] == [8, 8]
    # same model -> same bytes
    again = fitted.save(tmp_path / "again")
    for name in ("som.json", "som.npz"):
        assert (folder / name).read_bytes() == (again / name).read_bytes()


def test_load_rejects_bad_files(fitted, tmp_path):
    good = fitted.save(tmp_path / "good")

    def copy(name):
        target = tmp_path / name
        shutil.copytree(good, target)
        return target

    missing = copy("missing")
    (missing / "som.npz").unlink()
    with pytest.raises(ModelFormatError, match="som.npz: missing"):
        SOM.load(missing)

    newer = copy("newer")
    meta = json.loads((newer / "som.json").read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (newer / "som.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="newer seglib"):
        SOM.load(newer)

    broken = copy("broken")
    (broken / "som.json").write_text('{"format": "seglib.SOM", ')
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        SOM.load(broken)

    tampered = copy("tampered")
    meta = json.loads((tampered / "som.json").read_text())
    meta["params"]["engine"] = "evil"
    (tampered / "som.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="engine='evil'"):
        SOM.load(tampered)

    shape = copy("shape")
    np.savez(shape / "som.npz", weights=np.zeros((8, 7, 6)), history=fitted.history_, sigmas=fitted.sigmas_)
    with pytest.raises(ModelFormatError, match="weights have shape"):
        SOM.load(shape)

    pickled = copy("pickled")
    np.savez(pickled / "som.npz", weights=np.array([{"x": 1}], dtype=object), history=fitted.history_,
             sigmas=fitted.sigmas_)
    with pytest.raises(ModelFormatError, match="cannot be read"):
        SOM.load(pickled)

    corrupt = copy("corrupt")
    (corrupt / "som.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelFormatError, match="cannot be read"):
        SOM.load(corrupt)
    assert zipfile.is_zipfile(good / "som.npz")


# ---------------------------------------------------------------------------------- plots


def test_plot_u_matrix_marks_units_by_hits(fitted, X):
    ax = plot_u_matrix(fitted, X)
    hits = fitted.hit_map(X)
    markers, empties = ax.collections[0], ax.collections[1]
    assert len(markers.get_offsets()) == (hits > 0).sum()
    assert len(empties.get_offsets()) == (hits == 0).sum()
    sizes = markers.get_sizes()
    assert sizes.max() == pytest.approx(200.0)
    # the same from raw weights and precomputed hits, on a given axes
    _, ax2 = plt.subplots()
    assert plot_u_matrix(fitted.weights_, hits=hits, ax=ax2) is ax2
    np.testing.assert_array_equal(ax2.collections[0].get_offsets(), markers.get_offsets())
    np.testing.assert_allclose(ax.images[0].get_array(), fitted.u_matrix())


def test_plot_hit_map(fitted, X):
    ax = plot_hit_map(fitted, X)
    np.testing.assert_array_equal(ax.images[0].get_array().filled(0), fitted.hit_map(X))
    assert len(ax.texts) == 64
    with pytest.raises(ParameterError, match="needs X"):
        plot_hit_map(fitted)


def test_plot_component_planes(fitted):
    axes = plot_component_planes(fitted, [f"f{i}" for i in range(6)], ncols=4)
    assert len(axes) == 6 and [a.get_title() for a in axes][:2] == ["f0 (scaled)", "f1 (scaled)"]
    np.testing.assert_allclose(axes[3].images[0].get_array(), fitted.weights_[:, :, 3])
    _, grid = plt.subplots(2, 3)
    assert plot_component_planes(fitted, axes=grid)[5] is grid[1, 2]
    with pytest.raises(ParameterError, match="3 feature_names for 6 features"):
        plot_component_planes(fitted, ["a", "b", "c"])


def test_plot_training_curve(fitted):
    ax = plot_training_curve(fitted)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), fitted.history_)


# ---------------------------------------------------------------------------------- hexagonal maps


def hex_minisom_with(weights):
    """MiniSom's own hexagonal map holding ``weights`` (rows, cols, F), transposed: MiniSom shifts
    alternate columns where seglib shifts alternate rows; with an odd number of rows the two lattices
    coincide up to a translation."""
    rows, cols, n_features = weights.shape
    ref = MiniSom(cols, rows, n_features, topology="hexagonal", random_seed=0)
    ref._weights = np.asarray(weights, dtype=np.float64).transpose(1, 0, 2).copy()
    return ref


def flat_transposed(index, rows, cols):
    """seglib's flat unit of MiniSom's flat unit ``index`` of the transposed (cols x rows) map."""
    c, r = np.divmod(np.asarray(index), rows)
    return r * cols + c


@pytest.fixture(scope="module")
def hex_fitted(X):
    return SOM((7, 8), topology="hexagonal", dtype="float64", progress=False).fit(X)


def test_hexagonal_positions_are_minisoms_lattice():
    rows, cols = 7, 6
    pos = unit_positions((rows, cols), "hexagonal")
    ref = hex_minisom_with(np.zeros((rows, cols, 1)))
    xx, yy = ref.get_euclidean_coordinates()  # (cols, rows): unit (c, r) of the transposed map
    ref_pos = np.column_stack([xx.T.ravel(), yy.T.ravel()])
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    np.testing.assert_allclose(dist, np.linalg.norm(ref_pos[:, None] - ref_pos[None], axis=-1), atol=1e-12)
    # six neighbours at distance 1, the next ring further away; adjacency = distance 1
    np.testing.assert_array_equal(grid_adjacency((rows, cols), "hexagonal"), np.isclose(dist, 1.0))
    inner = grid_adjacency((rows, cols), "hexagonal").sum(axis=1).reshape(rows, cols)[1:-1, 1:-1]
    assert (inner == 6).all()
    assert np.isclose(np.sort(dist[2 * cols + 2])[7], np.sqrt(3.0))


@pytest.mark.parametrize("shape", [(6, 5), (7, 4)])
def test_minisom_engine_trains_on_the_batch_engines_lattice(shape):
    """Whatever the parity of rows and columns, the MiniSom engine's neighbourhood is seglib's."""
    som = _minisom(shape, 2, "hexagonal", sigma=1.7)
    H = neighborhood_matrix(shape, 1.7, topology="hexagonal")
    for unit in range(shape[0] * shape[1]):
        got = som._gaussian(np.unravel_index(unit, shape), 1.7).ravel()
        np.testing.assert_allclose(got, H[unit], rtol=1e-12)


def test_hexagonal_metrics_match_minisom(hex_fitted, X):
    """QE, TE, hits, winners and the U-matrix agree with MiniSom's hexagonal map on identical weights."""
    som, rows, cols = hex_fitted, 7, 8
    ref = hex_minisom_with(som.weights_)
    assert som.quantization_error(X) == pytest.approx(ref.quantization_error(X), rel=1e-12)
    te = som.topographic_error(X)
    assert te == pytest.approx(ref.topographic_error(X), abs=1e-12)
    assert 0 < te < 0.2  # an ordered map, and not trivially so
    np.testing.assert_array_equal(som.hit_map(X), ref.activation_response(X).T)
    winners = [flat_transposed(np.ravel_multi_index(ref.winner(x), (cols, rows)), rows, cols)
               for x in X[:200]]
    np.testing.assert_array_equal(som.predict(X[:200]), winners)
    U = som.u_matrix()
    np.testing.assert_allclose(U / U.max(), ref.distance_map(scaling="mean").T, rtol=1e-12)
    # the MiniSom engine's own map (seglib's lattice set into MiniSom) gives the same TE
    ours = _minisom((rows, cols), X.shape[1], "hexagonal")
    ours._weights = som.weights_.copy()
    assert ours.topographic_error(X) == pytest.approx(te, abs=1e-12)


@pytest.mark.parametrize("shape", [(6, 6), (5, 7)])
def test_hexagonal_engines_agree(X, shape):
    """Both engines train ordered hexagonal maps of similar quality; on identical weights every figure
    is the same whichever engine made the map."""
    batch = SOM(shape, topology="hexagonal", dtype="float64", progress=False).fit(X)
    online = SOM(shape, topology="hexagonal", engine="minisom", n_epochs=3, progress=False,
                 random_state=0).fit(X)
    for som in (batch, online):
        assert som.topographic_error(X) < 0.15
    assert online.quantization_error(X) == pytest.approx(batch.quantization_error(X), rel=0.15)
    online.weights_ = batch.weights_.copy()
    for figure in ("quantization_error", "topographic_error", "hit_map"):
        np.testing.assert_array_equal(getattr(online, figure)(X), getattr(batch, figure)(X))
    ref = _minisom(shape, X.shape[1], "hexagonal")
    ref._weights = batch.weights_.astype(np.float64)
    assert batch.topographic_error(X) == pytest.approx(ref.topographic_error(X), abs=1e-12)
    np.testing.assert_array_equal(batch.hit_map(X), ref.activation_response(X))


def test_hexagonal_adjacency_by_hand():
    shape = (3, 3)
    # row 0 (even): diagonal neighbours in rows 1 are columns c-1 and c; row 1 (odd): c and c+1
    assert adjacent_units(4, np.array([0, 1, 2, 3, 5, 6, 7, 8]), shape, "hexagonal").tolist() == [
        False, True, True, True, True, False, True, True]
    assert adjacent_units(3, np.array([0, 1, 2, 4, 5, 6, 7, 8]), shape, "hexagonal").tolist() == [
        True, True, False, True, False, True, True, False]
    assert adjacent_units(np.array([0, 0]), np.array([4, 8]), shape).tolist() == [True, False]  # 8-neigh.
    a, b = neighbor_pairs(shape, "hexagonal")
    np.testing.assert_array_equal(np.bincount(a, minlength=9), grid_adjacency(shape, "hexagonal").sum(1))
    assert len(a) == 2 * (3 * 2 + 2 * 5)  # 6 pairs within rows, 5 between each two rows
    with pytest.raises(ParameterError, match="choose one of: 6"):
        adjacent_units(0, 1, shape, "hexagonal", neighbors=8)


def test_hexagonal_topographic_error_by_hand():
    som = SOM((2, 2), topology="hexagonal", progress=False).fit(blobs(50, n_features=2))
    # units (0,0) (0,1) (1,0) (1,1); row 1 is shifted right: (0,0)-(1,1) are not neighbours, (0,1)-(1,0) are
    som.weights_ = np.array([[[0.0, 0.0], [5.0, 5.0]], [[6.0, 6.0], [0.1, 0.1]]])
    assert som.topographic_error(np.array([[0.04, 0.04]])) == 1.0  # best (0,0), second (1,1)
    som.weights_ = np.array([[[5.0, 5.0], [0.0, 0.0]], [[0.1, 0.1], [6.0, 6.0]]])
    assert som.topographic_error(np.array([[0.04, 0.04]])) == 0.0  # best (0,1), second (1,0)
    with pytest.raises(ParameterError, match="neighbors=4 is not valid; choose one of: 6"):
        som.topographic_error(np.zeros((1, 2)), neighbors=4)


def test_hexagonal_u_matrix_by_hand():
    W = np.zeros((2, 3, 1))
    W[1, :, 0] = 2.0  # the lower row is 2 away from the upper one
    U = u_matrix(W, "hexagonal")
    # (0,0): (0,1) 0, (1,0) 2 -> 1; (0,1): (0,0) (0,2) 0, (1,0) (1,1) 2 -> 1; (0,2): (0,1) 0, (1,1) (1,2) 2
    # (1,0): (1,1) 0, (0,0) (0,1) 2 -> 4/3; (1,1): (1,0) (1,2) 0, (0,1) (0,2) 2 -> 1; (1,2): (1,1) 0, (0,2) 2
    np.testing.assert_allclose(U, [[1.0, 1.0, 4 / 3], [4 / 3, 1.0, 1.0]])
    a, b, d = unit_distances(W, "hexagonal")
    assert len(d) == 2 * (2 * 2 + 5) and set(np.round(d, 12)) == {0.0, 2.0}  # 2 pairs per row, 5 between


def test_fit_is_the_building_blocks_hexagonal(X):
    som = SOM((6, 5), n_epochs=3, topology="hexagonal", dtype="float64", progress=False).fit(X)
    mean, cov, _ = data_moments(X)
    W = initial_weights(mean, cov, (6, 5))
    for sigma in sigma_schedule(3.0, 1.0, 3):
        sums, counts, _ = epoch_stats(X, W)
        W = update_weights(W, sums, counts, neighborhood_matrix((6, 5), sigma, topology="hexagonal"))
    np.testing.assert_allclose(som.weights_, W, rtol=1e-10, atol=1e-10)
    rect = SOM((6, 5), n_epochs=3, dtype="float64", progress=False).fit(X)
    assert not np.allclose(rect.weights_, som.weights_)  # the topology does change training


def test_hexagonal_model_files(hex_fitted, X, tmp_path):
    folder = hex_fitted.save(tmp_path / "hex")
    meta = json.loads((folder / "som.json").read_text())
    assert meta["params"]["topology"] == "hexagonal"
    loaded = SOM.load(folder)
    assert loaded.topology == "hexagonal"
    np.testing.assert_array_equal(loaded.predict(X), hex_fitted.predict(X))
    assert loaded.topographic_error(X) == hex_fitted.topographic_error(X)
    np.testing.assert_array_equal(loaded.u_matrix(), hex_fitted.u_matrix())
    # a file written before topologies existed has no "topology": it is a rectangular map
    del meta["params"]["topology"]
    (folder / "som.json").write_text(json.dumps(meta))
    assert SOM.load(folder).topology == "rectangular"


def _cells(ax):
    (cells,) = [c for c in ax.collections if c.get_gid() == "cells"]
    return cells


def test_hexagonal_plots_draw_one_hexagon_per_unit(hex_fitted, X):
    units = 7 * 8
    ax = plot_u_matrix(hex_fitted, X)
    cells = _cells(ax)
    assert not ax.images and len(cells.get_paths()) == units
    assert all(len(p.vertices) >= 6 for p in cells.get_paths())
    np.testing.assert_allclose(cells.get_array(), hex_fitted.u_matrix().ravel())
    (edges,) = [c for c in ax.collections if c.get_gid() == "unit_distances"]
    a, b, d = unit_distances(hex_fitted.weights_, "hexagonal")
    assert len(edges.get_segments()) == (a < b).sum()
    np.testing.assert_allclose(edges.get_array(), d[a < b])
    hits = hex_fitted.hit_map(X)
    markers = ax.collections[[c.get_gid() for c in ax.collections].index("cells") + 2]
    np.testing.assert_allclose(markers.get_offsets(), unit_positions((7, 8), "hexagonal")[hits.ravel() > 0])

    ax = plot_hit_map(hex_fitted, X)
    assert len(_cells(ax).get_paths()) == units and len(ax.texts) == units
    np.testing.assert_array_equal(_cells(ax).get_array().filled(0), hits.ravel())
    axes = plot_component_planes(hex_fitted)
    assert all(len(_cells(a).get_paths()) == units for a in axes)
    np.testing.assert_allclose(_cells(axes[2]).get_array(), hex_fitted.weights_[:, :, 2].ravel())
    # bare weights: square cells unless the topology is given
    assert plot_u_matrix(hex_fitted.weights_).images
    assert len(_cells(plot_u_matrix(hex_fitted.weights_, topology="hexagonal")).get_paths()) == units
    # square maps draw the between-unit distances only when asked: one per pair of edge-sharing units
    ax = plot_u_matrix(hex_fitted.weights_, edges=True)
    (edges,) = [c for c in ax.collections if c.get_gid() == "unit_distances"]
    assert len(edges.get_segments()) == 7 * 7 + 6 * 8


def test_real_sample_smoke(real_sample):
    """The real sample's numeric columns, standardised: the batch map trains and is ordered."""
    df = pd.read_csv(real_sample)
    num = df[["sale_price_after_promo"]].assign(
        week=pd.to_datetime(df["transactionDate"], errors="coerce").dt.isocalendar().week.astype(float)
    ).dropna()
    X = ((num - num.mean()) / num.std()).to_numpy()
    som = SOM((6, 6), progress=False).fit(X)
    assert som.topographic_error(X) < 0.2
    assert np.isfinite(som.weights_).all()


# ---- fit_stats: the batch map from statistics supplied by a backend ---------------------------------


def test_fit_stats_from_blocks_of_rows_gives_the_map_fit_gives(X, fitted):
    """A backend that holds the rows in blocks (here 7 uneven ones) and adds their ``epoch_stats`` in
    block order trains the same map as ``fit`` on the whole matrix, with no training loop of its own."""
    blocks = np.array_split(X, [100, 101, 400, 900, 901, 1300])
    calls = []

    def totals(weights, exact=False):
        calls.append(weights.shape)
        parts = [epoch_stats(b, weights, exact=exact) for b in blocks]
        return (sum(p[0] for p in parts), sum(p[1] for p in parts), sum(p[2] for p in parts))

    mean, cov, n = data_moments(X)
    som = SOM((8, 8), dtype="float64", progress=False).fit_stats(totals, mean, cov, n)
    assert len(calls) == fitted.n_epochs + 1 and set(calls) == {(64, X.shape[1])}
    np.testing.assert_allclose(som.weights_, fitted.weights_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(som.history_, fitted.history_, rtol=1e-9)
    assert som.map_shape_ == fitted.map_shape_ and som.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(som.predict(X), fitted.predict(X))


def test_fit_stats_default_shape_and_bad_input(X):
    mean, cov, n = data_moments(X)

    def totals(weights, exact=False):
        return epoch_stats(X, weights, exact=exact)

    som = SOM(map_shape=None, n_epochs=3, progress=False).fit_stats(totals, mean, cov, n)
    assert som.map_shape_ == default_map_shape(n, cov)
    with pytest.raises(InputError, match="at least 2 rows"):
        SOM(progress=False).fit_stats(totals, mean, cov, 1)
    with pytest.raises(ParameterError, match="engine.*batch"):
        SOM(engine="minisom", progress=False).fit_stats(totals, mean, cov, n)


@pytest.mark.parametrize("n_blocks", [1, 4])
def test_map_quality_from_blocks_matches_the_estimators_figures(X, fitted, n_blocks):
    """What both backends record in step 02: the SOM's own figures, however the rows are split."""
    from seglib.som import map_quality

    blocks = np.array_split(X, n_blocks)
    quality = map_quality(fitted, lambda func, **kw: [func(b, **kw) for b in blocks])
    assert quality["quantization_error"] == pytest.approx(fitted.quantization_error(X), rel=1e-9)
    assert quality["topographic_error"] == pytest.approx(fitted.topographic_error(X), rel=1e-9)
    assert quality["empty_unit_share"] == fitted.empty_unit_share(X)
    assert quality["explained_variance"] == pytest.approx(fitted.explained_variance(X), rel=1e-9)
    assert 0 <= quality["topographic_error"] <= 1 and quality["explained_variance"] < 1


# ---------------------------------------------------------------------------------- the compiled kernel

@pytest.fixture
def kernel(monkeypatch):
    """Every epoch and best-unit search through the numba kernel (its row threshold set to 0; a
    ``SEGLIB_NUMBA`` in the environment must not turn it off)."""
    monkeypatch.setattr(som_module, "KERNEL_MIN_ROWS", 0)
    monkeypatch.delenv("SEGLIB_NUMBA", raising=False)
    fn = som_module._kernel()
    assert fn is not None, "numba is installed: the kernel must build"
    return fn


def _numpy(fn):
    """``fn()`` with the kernel off (numpy path): ``SEGLIB_NUMBA=0``, which wins over the row threshold
    (``SEGLIB_NUMBA=1`` would use the kernel at any size, whatever ``KERNEL_MIN_ROWS``)."""
    with som_module.kernel_switch(False):
        return fn()


def _trained(dtype="float32", seed=0, n=3000, n_features=7):
    X = blobs(n, n_features, centers=6, seed=seed, dtype=np.float32)
    return SOM((9, 7), dtype=dtype, n_epochs=3, progress=False, random_state=0).fit(X), X


@pytest.mark.parametrize("wdtype", ["float32", "float64"])
@pytest.mark.parametrize("xdtype", [np.float32, np.float64])
def test_kernel_best_units_are_numpys(kernel, wdtype, xdtype):
    som, X = _trained(wdtype, seed=1)
    X = X.astype(xdtype)
    expected = _numpy(lambda: som.predict(X))
    np.testing.assert_array_equal(som.predict(X), expected)
    for size in (1, 5, 64, 5000):
        np.testing.assert_array_equal(best_units(X, som.weights_, chunk_size=size, n_jobs=2), expected)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_settles_crafted_ties_as_numpy_does(kernel, seed, dtype):
    som, X = _tied_som(seed, dtype)
    expected = _numpy(lambda: som.predict(X))
    np.testing.assert_array_equal(som.predict(X), expected)
    np.testing.assert_array_equal(som.predict(X[:5]), np.arange(5))  # exact ties: the lowest unit
    np.testing.assert_array_equal(som.predict(X), som.transform(X).argmin(axis=1))
    for size in (1, 7, 64):
        _, counts, _ = epoch_stats(X, som.weights_, chunk_size=size)
        np.testing.assert_array_equal(counts.reshape(som.map_shape_), _numpy(lambda: som.hit_map(X)))


@pytest.mark.parametrize("wdtype", ["float32", "float64"])
def test_kernel_epoch_stats_are_numpys_exact_ones_bit_for_bit(kernel, wdtype):
    som, X = _trained(wdtype, seed=2)
    for size in (None, 7, 1000):
        sums, counts, dist = epoch_stats(X, som.weights_, chunk_size=size)
        sums0, counts0, dist0 = _numpy(lambda: epoch_stats(X, som.weights_, chunk_size=size, exact=True))
        assert sums.dtype == sums0.dtype == np.float64 and counts.dtype == counts0.dtype == np.int64
        assert np.array_equal(sums, sums0) and np.array_equal(counts, counts0)
        # the kernel sums exact float64 distances; numpy the expanded form in the weights' dtype
        assert dist == pytest.approx(dist0, rel=1e-5)
        exact = np.sqrt(((X.astype(np.float64) - som.weights_.reshape(-1, X.shape[1])[som.predict(X)]) ** 2)
                        .sum(axis=1)).sum()
        assert dist == pytest.approx(exact, rel=1e-12)


def test_kernel_fit_is_the_numpy_fit_with_exact_best_units(kernel):
    """With the kernel, a training epoch's best units are the exact ones: ``fit`` trains the map that
    numpy's ``epoch_stats(exact=True)`` trains, to the bit (the quantization errors agree to rounding)."""
    X = blobs(2000, 5, centers=4, seed=3, dtype=np.float32)
    som = SOM((6, 6), n_epochs=5, progress=False, random_state=0).fit(X)

    def totals(weights, exact=False):
        return _numpy(lambda: epoch_stats(X, weights, exact=True))

    mean, cov, n = data_moments(X)
    reference = SOM((6, 6), n_epochs=5, progress=False, random_state=0).fit_stats(totals, mean, cov, n)
    assert np.array_equal(som.weights_, reference.weights_)
    np.testing.assert_allclose(som.history_, reference.history_, rtol=1e-5)


def test_kernel_results_do_not_depend_on_threads_or_runs(kernel):
    som, X = _trained(seed=4, n=20_000)
    W = som.weights_.reshape(-1, X.shape[1])
    chunks = som_module._row_chunks(len(X), 500)
    runs = [som_module._kernel_totals(X, W, chunks, threads) for threads in (1, 2, 2, 1, 8)]
    for sums, counts, dist in runs[1:]:
        assert np.array_equal(sums, runs[0][0]) and np.array_equal(counts, runs[0][1]) and dist == runs[0][2]
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        two = som_module._kernel_totals(X, W, chunks, 2)
        assert numba.get_num_threads() == 1  # the kernel gives the caller back its thread count
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(two[0], runs[0][0])
    fits = [SOM((9, 7), n_epochs=3, progress=False, n_jobs=jobs).fit(X) for jobs in (1, 2)]
    assert np.array_equal(fits[0].weights_, fits[1].weights_)
    assert np.array_equal(fits[0].history_, fits[1].history_)


def test_kernel_switch_forces_the_path_and_restores_the_setting(monkeypatch):
    monkeypatch.delenv("SEGLIB_NUMBA", raising=False)
    with som_module.kernel_switch(True):
        assert som_module._use_kernel(10) is True  # at any size
    with som_module.kernel_switch(False):
        assert som_module._use_kernel(10**9) is False
    assert "SEGLIB_NUMBA" not in os.environ
    monkeypatch.setenv("SEGLIB_NUMBA", "0")
    with som_module.kernel_switch(True):
        assert os.environ["SEGLIB_NUMBA"] == "1"
    assert os.environ["SEGLIB_NUMBA"] == "0"


def test_without_numba_or_with_a_failing_kernel_numpy_computes(monkeypatch, caplog):
    som, X = _trained(seed=5)
    expected = _numpy(lambda: epoch_stats(X, som.weights_))
    monkeypatch.setattr(som_module, "KERNEL_MIN_ROWS", 0)
    monkeypatch.delitem(som_module._kernel_state, "fn", raising=False)
    monkeypatch.setenv("SEGLIB_NUMBA", "0")
    assert som_module._use_kernel(10**9) is False
    got = epoch_stats(X, som.weights_)
    assert "fn" not in som_module._kernel_state  # off: the kernel is not even built
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))

    def broken(*args):
        raise numba.core.errors.TypingError("a kernel that does not compile")

    monkeypatch.delenv("SEGLIB_NUMBA")
    monkeypatch.setitem(som_module._kernel_state, "fn", broken)
    caplog.clear()
    with caplog.at_level("DEBUG", logger="seglib.som"):
        got = epoch_stats(X, som.weights_)
        best = som.predict(X)
    assert "the SOM kernel failed" in caplog.text and som_module._kernel() is None
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    np.testing.assert_array_equal(best, _numpy(lambda: som.predict(X)))


def test_a_read_only_install_compiles_the_kernel_without_a_cache(monkeypatch, caplog):
    """No writable cache location (numba's locators all refuse): the kernel is built uncached."""
    from numba.core import caching

    def read_only(self):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(caching._CacheLocator, "ensure_cache_path", read_only)
    monkeypatch.setattr(som_module, "_kernel_scores", som_module._kernel_scores)  # restored afterwards
    monkeypatch.delitem(som_module._kernel_state, "fn", raising=False)
    with caplog.at_level("DEBUG", logger="seglib.som"):
        fn = som_module._kernel()
    assert "cannot cache the SOM kernel" in caplog.text
    assert fn is not None and isinstance(fn._cache, caching.NullCache)


def test_small_data_never_imports_numba():
    """Below KERNEL_MIN_ROWS (the default data: thousands of customers) numba is not even imported."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from seglib.som import SOM\n"
            "X = np.random.default_rng(0).normal(size=(3000, 6))\n"
            "som = SOM(progress=False).fit(X); som.predict(X); som.topographic_error(X)\n"
            "print('numba' in sys.modules)")
    env = {key: value for key, value in os.environ.items() if key != "SEGLIB_NUMBA"}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "False"


def test_kernel_sums_in_groups_of_chunks_are_the_same_bits(kernel, monkeypatch):
    """Many tiny chunks go to the kernel in groups (bounded memory); the sums keep numpy's order."""
    som, X = _trained(seed=6)
    expected = _numpy(lambda: epoch_stats(X, som.weights_, chunk_size=3, exact=True))
    monkeypatch.setattr(som_module, "_KERNEL_PARTS_BYTES", 8 * 63 * 7 * 10)  # 10 chunks per group
    got = epoch_stats(X, som.weights_, chunk_size=3)
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


def test_one_blas_thread_limits_inside_and_restores_after_an_error():
    from threadpoolctl import threadpool_info

    from seglib.som import one_blas_thread

    def blas():
        return sorted((i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas")

    before = blas()
    guard = one_blas_thread()
    assert one_blas_thread() is guard  # one guard per process
    with pytest.raises(ZeroDivisionError), guard:
        with guard:  # re-entrant: the inner exit does not restore under the outer
            pass
        assert all(n == 1 for _, n in blas())
        1 / 0
    assert blas() == before
