"""Benchmark of SOM training: seglib's batch engine against MiniSom, and against the hardware.

On planted data (12 features, 8 blobs of different sizes and spreads, standardised, float32) and a 15x15
map, for each N it measures:

* seglib batch, 10 epochs (defaults: sigma 7.5 -> 1 with the inverse decay, PCA start, float32), and the
  time of one epoch (its own code path, `_batch_epoch`);
* MiniSom ``train_random`` 10,000 iterations, the original analysis's setting (sigma 1.0, lr 0.5,
  MiniSom's random start from data rows);
* MiniSom online training at equal data passes (N x 10 single-row updates, random order, the same
  schedule as seglib: sigma 7.5 -> 1 by ``inverse_decay_to_one``, learning rate 0.5 by
  ``inverse_decay_to_zero``, seglib's PCA start): run in full when it fits the time budget, otherwise a
  shorter run whose time is extrapolated (marked ``*``; its QE / TE are the shorter run's);
* MiniSom ``train_batch_offline`` 10 passes (sigma 7.5 -> 1 by ``inverse_decay_to_one``, its default
  learning rate 0.5 with ``asymptotic_decay``, seglib's PCA start), extrapolated the same way;
* the roofline reference: one chunked ``X @ W.T`` plus ``argmin`` over the same X with the engine's
  threading (timed alternately with the epoch, best of 7 each), and the matrix-product floor: one
  epoch's 2 N units F flops at the GFLOP/s of a large float32 matrix product measured in the same run.

QE (mean distance to the best unit) and TE (share of rows whose two best units are not 8-neighbours)
are computed with seglib's metrics for every engine (they equal MiniSom's, see tests/test_som.py).
Each case runs in its own process, so its peak memory (``ru_maxrss``) is its own; "extra" is the peak
minus the process's memory after imports (X included). Times are the best of the repeats.

Usage::

    .venv/bin/python benchmarks/bench_som.py                      # N = 10k, 100k, 1M (~4 minutes)
    .venv/bin/python benchmarks/bench_som.py --sizes 10000,100000 --budget 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from _measure import best_time, peak_mb

from seglib.som import data_moments

N_FEATURES = 12
MAP = (15, 15)
EPOCHS = 10
SIGMA = 7.5


def planted(n: int, n_features: int = N_FEATURES, n_blobs: int = 8, seed: int = 0) -> np.ndarray:
    """Standardised float32 blobs of unequal sizes and spreads, generated in chunks (no float64 copy)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 3.0, (n_blobs, n_features))
    spreads = rng.uniform(0.5, 1.5, n_blobs)
    shares = rng.dirichlet(np.full(n_blobs, 2.0))
    X = np.empty((n, n_features), dtype=np.float32)
    for a in range(0, n, 100_000):
        b = min(a + 100_000, n)
        blob = rng.choice(n_blobs, size=b - a, p=shares)
        X[a:b] = centers[blob] + rng.standard_normal((b - a, n_features)) * spreads[blob, None]
    mean, cov, _ = data_moments(X)  # chunked: no float64 copy of X
    X -= mean.astype(np.float32)
    X /= np.sqrt(np.diag(cov)).astype(np.float32)
    return X


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def quality(weights, X) -> tuple[float, float]:
    from seglib.som import SOM

    som = SOM(map_shape=weights.shape[:2], progress=False)
    som.weights_, som.map_shape_, som.n_features_in_ = weights, weights.shape[:2], weights.shape[2]
    return som.quantization_error(X), som.topographic_error(X)


def pca_start(X):
    from seglib.som import data_moments, initial_weights

    mean, cov, _ = data_moments(X)
    return initial_weights(mean, cov, MAP, "pca")


# ----------------------------------------------------------------------------------------- cases


def case_seglib(n: int, budget: float) -> dict:
    from seglib.som import SOM, _auto_chunk_size, _batch_epoch, _chunk_mapper, _n_threads, _row_chunks

    base = rss_mb()
    X = planted(n)
    SOM(MAP, n_epochs=1, progress=False).fit(X[:5000])  # warm-up (thread pools, caches)
    repeats = 3 if n <= 100_000 else 2
    som = SOM(MAP, n_epochs=EPOCHS, progress=False, random_state=0)
    seconds = best_time(lambda: som.fit(X), repeats)
    peak = peak_mb()
    qe, te = quality(som.weights_, X)
    # predict: the best unit of every row (exact on near-ties, so independent of the batch), timed
    # alternately with the plain chunked X @ W.T + argmin it refines
    predicts, argmins = [], []
    W0 = som.weights_.reshape(-1, N_FEATURES)
    with _chunk_mapper(min(_n_threads(-1), 64)) as mapper:
        chunks0 = _row_chunks(n, _auto_chunk_size(len(W0)))
        for _ in range(5):
            predicts.append(best_time(lambda: som.predict(X), 1))
            argmins.append(best_time(lambda: list(mapper(lambda s: (X[s] @ W0.T).argmin(axis=1), chunks0)),
                                     1))

    # one epoch of fit (same function, chunks and threads) against the roofline reference: one
    # chunked X @ W.T + argmin over the same X; timed alternately so that load affects both alike
    W = som.weights_.reshape(-1, N_FEATURES)
    chunks = _row_chunks(n, _auto_chunk_size(len(W)))
    epochs, roofs = [], []
    with _chunk_mapper(min(_n_threads(-1), len(chunks))) as mapper:
        for _ in range(7):
            epochs.append(best_time(lambda: _batch_epoch(X, W, chunks, mapper, MAP, 1.0, "gaussian"), 1))
            roofs.append(best_time(lambda: list(mapper(lambda s: (X[s] @ W.T).argmin(axis=1), chunks)), 1))
    return dict(time=seconds, epoch=min(epochs), roofline=min(roofs), predict=min(predicts),
                predict_roofline=min(argmins), qe=qe, te=te, peak=peak, base=base, x_mb=X.nbytes / 2**20)


def case_matmul_floor(n: int, budget: float) -> dict:
    size = 3072
    rng = np.random.default_rng(0)
    A = rng.standard_normal((size, size), dtype=np.float32)
    B = rng.standard_normal((size, size), dtype=np.float32)
    A @ B
    seconds = best_time(lambda: A @ B, 5)
    return dict(gflops=2 * size**3 / seconds / 1e9)


def case_minisom_random(n: int, budget: float) -> dict:
    from minisom import MiniSom

    X = planted(n)
    X64 = X.astype(np.float64)

    def run():
        som = MiniSom(*MAP, N_FEATURES, sigma=1.0, learning_rate=0.5, random_seed=0)
        som.random_weights_init(X64)
        som.train_random(X64, 10_000)
        return som

    start = time.perf_counter()
    som = run()
    seconds = time.perf_counter() - start
    qe, te = quality(som.get_weights(), X)
    return dict(time=seconds, qe=qe, te=te, peak=peak_mb())


def _minisom(sigma_decay="inverse_decay_to_one", decay="inverse_decay_to_zero"):
    from minisom import MiniSom

    return MiniSom(*MAP, N_FEATURES, sigma=SIGMA, learning_rate=0.5, decay_function=decay,
                   sigma_decay_function=sigma_decay, random_seed=0)


def case_minisom_online(n: int, budget: float) -> dict:
    X = planted(n)
    X64 = X.astype(np.float64)
    start = pca_start(X)
    probe = _minisom()
    probe._weights = start.copy()
    per_update = best_time(lambda: probe.train(X64[:2000], 2000, random_order=True), 1) / 2000
    total = EPOCHS * n
    passes = EPOCHS if per_update * total <= budget else max(1, int(budget // (per_update * n)))
    som = _minisom()
    som._weights = start.copy()
    began = time.perf_counter()
    som.train(X64, passes * n, random_order=True)  # each row `passes` times, shuffled
    seconds = (time.perf_counter() - began) * EPOCHS / passes
    qe, te = quality(som.get_weights(), X)
    return dict(time=seconds, qe=qe, te=te, peak=peak_mb(), passes=passes)


def case_minisom_offline(n: int, budget: float) -> dict:
    X = planted(n)
    X64 = X.astype(np.float64)
    start = pca_start(X)
    probe = _minisom(decay="asymptotic_decay")
    probe._weights = start.copy()
    per_pass_row = best_time(lambda: probe.train_batch_offline(X64[:2000], 1), 1) / 2000
    passes = EPOCHS if per_pass_row * n * EPOCHS <= budget else max(1, int(budget // (per_pass_row * n)))
    som = _minisom(decay="asymptotic_decay")
    som._weights = start.copy()
    began = time.perf_counter()
    som.train_batch_offline(X64, passes)
    seconds = (time.perf_counter() - began) * EPOCHS / passes
    qe, te = quality(som.get_weights(), X)
    return dict(time=seconds, qe=qe, te=te, peak=peak_mb(), passes=passes)


CASES = {
    "seglib": case_seglib,
    "floor": case_matmul_floor,
    "minisom_random": case_minisom_random,
    "minisom_online": case_minisom_online,
    "minisom_offline": case_minisom_offline,
}


# ----------------------------------------------------------------------------------------- driver


def run_case(case: str, n: int, budget: float) -> dict:
    cmd = [sys.executable, __file__, "--case", case, "--n", str(n), "--budget", str(budget)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(n: int, r: dict, floor_gflops: float) -> None:
    s, units = r["seglib"], MAP[0] * MAP[1]
    floor = 2 * n * units * N_FEATURES / (floor_gflops * 1e9)
    print(f"\nN = {n:,}   (X = {s['x_mb']:.0f} MB float32, 15x15 map, {N_FEATURES} features)")
    print(f"  {'engine':42s} {'time':>9s} {'QE':>7s} {'TE':>7s} {'peak MB':>8s}  vs seglib")
    rows = [
        ("seglib batch, 10 epochs", s, ""),
        ("MiniSom train_random 10,000 (original)", r["minisom_random"], ""),
        ("MiniSom online, 10 passes", r["minisom_online"], "passes"),
        ("MiniSom train_batch_offline, 10 passes", r["minisom_offline"], "passes"),
    ]
    for name, v, key in rows:
        mark = ""
        if key and v.get(key, EPOCHS) < EPOCHS:
            mark = f" *from {v[key]} pass{'es' if v[key] > 1 else ''}"
        ratio = v["time"] / s["time"]
        print(f"  {name:42s} {v['time']:8.2f}s {v['qe']:7.4f} {v['te']:7.4f} {v['peak']:8.0f}  "
              f"{ratio:8.1f}x{mark}")
    online = r["minisom_online"]
    ratio = s["predict"] / s["predict_roofline"]
    print(f"  predict (best unit of every row, batch-independent): {s['predict'] * 1e3:.1f} ms; chunked "
          f"X.W^T + argmin: {s['predict_roofline'] * 1e3:.1f} ms -> {ratio:.2f}x")
    print(f"  one seglib epoch: {s['epoch'] * 1e3:.1f} ms; roofline (chunked X.W^T + argmin): "
          f"{s['roofline'] * 1e3:.1f} ms -> {s['epoch'] / s['roofline']:.2f}x; matmul floor "
          f"({floor_gflops:.0f} GFLOP/s): {floor * 1e3:.1f} ms -> {s['epoch'] / floor:.2f}x")
    print(f"  vs MiniSom online at equal passes: {online['time'] / s['time']:.0f}x faster, "
          f"QE {100 * (s['qe'] / online['qe'] - 1):+.1f}%, TE {s['te']:.3f} (MiniSom {online['te']:.3f})")
    print(f"  seglib memory: peak RSS {s['peak']:.0f} MB in total = interpreter with libraries "
          f"{s['base']:.0f} MB + X {s['x_mb']:.0f} MB + {s['peak'] - s['base'] - s['x_mb']:.0f} MB; "
          f"2 X + 200 MB = {2 * s['x_mb'] + 200:.0f} MB")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated N values")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds a MiniSom run may take before it is extrapolated from a shorter one")
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:  # a child process: one case, one JSON line
        print(json.dumps(CASES[args.case](args.n, args.budget)))
        return 0
    import numpy
    import threadpoolctl

    blas = [i.get("internal_api") for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    print(f"numpy {numpy.__version__}, BLAS {blas}, {os.cpu_count()} CPUs; budget {args.budget:.0f} s per "
          "MiniSom run; times are the best of 2-3 runs (MiniSom: 1)")
    floor = run_case("floor", 0, args.budget)["gflops"]
    print(f"large float32 matmul: {floor:.0f} GFLOP/s")
    for n in (int(v) for v in args.sizes.split(",")):
        results = {case: run_case(case, n, args.budget) for case in CASES if case != "floor"}
        report(n, results, floor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
