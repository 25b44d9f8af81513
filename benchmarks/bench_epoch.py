"""One batch-SOM epoch at scale against the floor of one large matrix product, numpy and numba kernel.

On the planted data of ``bench_som.py`` (1M rows x 15 features by default, standardised float32) and a
15x15 map (weights trained for 3 epochs on the first 100k rows, so near-ties are realistic), it
measures in one process, alternately, best of ``--repeats``:

* **floor**: one ``X @ W.T`` of the same shapes (N x units float32, written into a preallocated
  array; BLAS with its default threads): the matrix product an epoch cannot avoid;
* **flop floor**: the epoch's ``2 N units F`` flops at the rate of a large square float32 product
  (3072 x 3072, BLAS default threads), measured in the same rounds: the strict floor
  (``bench_som.py``'s "matmul floor"); the N x units product above is bound by writing its output;
* **chunked product**: the numpy engine's own scoring product, ``[x, 1] @ [-2 W, ||w||^2].T`` in row
  chunks of the engine's size (each chunk's output fits in cache; BLAS pinned to one thread, chunks
  over the engine's Python threads), without the argmin: the part of a numpy epoch BLAS does;
* **epoch, numpy**: ``epoch_stats`` of all rows as ``SOM.fit`` computes it (``_epoch_totals``: best
  units by a chunked BLAS product + argmin, per-unit sums and counts), numba kernel off;
* **epoch, kernel**: the same statistics by the compiled kernel (best units with exact near-ties);
* **predict**, numpy and kernel: ``SOM.predict`` of every row (exact near-ties on both paths).

It checks that the kernel's best units equal numpy's ``SOM.predict`` and that its sums and counts equal
numpy's ``epoch_stats(..., exact=True)`` bit for bit, and prints the ratios. ``--compile`` also times,
each in a fresh process: ``import numba``, the first call with an empty kernel cache (compilation), and
the first call with the cache filled (what every later process pays). ``--fresh 100000,200000`` times
the SOM as a run uses it, in a fresh process per size and path (imports included, data generated
before the clock starts): ``SOM().fit(X)``, ``predict``, ``quantization_error``, with ``SEGLIB_NUMBA=0``
(numpy) and ``SEGLIB_NUMBA=1`` (kernel, cache filled), alternately: where the kernel starts to pay.

Usage::

    .venv/bin/python benchmarks/bench_epoch.py                    # 1M rows (~1 minute)
    .venv/bin/python benchmarks/bench_epoch.py --n 100000 --repeats 3
    .venv/bin/python benchmarks/bench_epoch.py --compile          # and the compile / cache-load costs
    .venv/bin/python benchmarks/bench_epoch.py --n 0 --fresh 50000,100000,200000,500000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_som import planted  # noqa: E402

import seglib.som as S  # noqa: E402

MAP = (15, 15)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def first_call(cache_dir: str | None) -> dict:
    """Seconds of ``import numba`` and of the kernel's first call in a fresh process."""
    code = (
        "import time; t = time.perf_counter(); import numba; imported = time.perf_counter() - t\n"
        "import numpy as np, seglib.som as S\n"
        "X = np.random.default_rng(0).standard_normal((1000, 15)).astype(np.float32)\n"
        "t = time.perf_counter(); S.epoch_stats(X, X[:225]); first = time.perf_counter() - t\n"
        "assert S._kernel() is not None\n"
        "print(imported, first)\n"
    )
    env = dict(os.environ, SEGLIB_NUMBA="1")  # the kernel at any size
    if cache_dir:
        env["NUMBA_CACHE_DIR"] = cache_dir
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    imported, first = (float(v) for v in out.stdout.split())
    return {"import": imported, "first": first}


def fresh_som(n: int, path: str) -> float:
    """Seconds of a SOM fit + predict + quantization error on ``n`` planted rows in a fresh process."""
    code = (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from bench_som import planted; X = planted(%d, 15)\n"
        "t = time.perf_counter()\n"
        "from seglib.som import SOM\n"
        "som = SOM(progress=False, random_state=0).fit(X); som.predict(X); som.quantization_error(X)\n"
        "print(time.perf_counter() - t)\n"
    ) % (str(Path(__file__).resolve().parent), n)
    env = dict(os.environ, SEGLIB_NUMBA=path)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    return float(out.stdout.split()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="rows")
    parser.add_argument("--features", type=int, default=15, help="columns")
    parser.add_argument("--repeats", type=int, default=7, help="rounds; each time is the best of them")
    parser.add_argument("--compile", action="store_true", help="also time numba's import, compile and cache")
    parser.add_argument("--fresh", default="", help="comma-separated N: SOM fits in fresh processes")
    args = parser.parse_args(argv)
    if args.fresh:
        fresh_som(1000, "1")  # fills the kernel cache
        print("SOM fit (10 epochs) + predict + quantization error, fresh process, imports included, "
              "best of 3:")
        for size in (int(v) for v in args.fresh.split(",")):
            runs = {"0": [], "1": []}
            for _ in range(3):
                for path in runs:
                    runs[path].append(fresh_som(size, path))
            numpy_s, kernel_s = min(runs["0"]), min(runs["1"])
            print(f"  N = {size:>9,}: numpy {numpy_s:6.2f} s, kernel {kernel_s:6.2f} s "
                  f"-> {kernel_s / numpy_s:.2f}x")
    if args.n <= 0:
        return 0
    n, n_features = args.n, args.features
    X = planted(n, n_features)
    som = S.SOM(MAP, n_epochs=3, progress=False, random_state=0).fit(X[:100_000])
    W = som.weights_.reshape(-1, n_features)
    units = len(W)
    chunks = S._row_chunks(n, S._auto_chunk_size(units))
    threads = S._n_threads(-1)
    blas = [i.get("internal_api") for i in threadpool_info() if i.get("user_api") == "blas"]
    print(f"N = {n:,} x {n_features} float32, {MAP[0]}x{MAP[1]} map, {threads} threads, numpy "
          f"{np.__version__} ({blas}), load average {os.getloadavg()[0]:.1f}")

    full = np.empty((n, units), dtype=np.float32)
    full.fill(0.0)  # pages touched once: the floor times the product, not the page faults
    WT = np.ascontiguousarray(W.T)
    augmented = S._Codebook(W).augmented

    def chunked_product():
        with S._chunk_mapper(min(threads, len(chunks))) as mapper:
            list(mapper(lambda s: S._scores(X[s], augmented), chunks))

    def epoch():
        with S._chunk_mapper(min(threads, len(chunks))) as mapper:
            return S._epoch_totals(X, W, chunks=chunks, mapper=mapper, n_threads=threads)

    def with_kernel(on: bool, fn):
        """``fn()`` with the kernel on or off, by ``SEGLIB_NUMBA`` (which wins over the row threshold)."""
        with S.kernel_switch(on):
            return fn()

    if S._kernel() is None:
        print("numba is not available: nothing to compare")
        return 1
    # warm-up and checks: the kernel's best units and statistics against numpy's exact ones
    best_np = with_kernel(False, lambda: som.predict(X))
    best_k = with_kernel(True, lambda: som.predict(X))
    stats_np = with_kernel(False, lambda: S.epoch_stats(X, W, exact=True))
    stats_k = with_kernel(True, epoch)
    plain_np = with_kernel(False, epoch)
    same_sums = np.array_equal(stats_k[0], stats_np[0]) and np.array_equal(stats_k[1], stats_np[1])
    print(f"kernel best units == numpy predict: {np.array_equal(best_k, best_np)}; kernel sums and counts "
          f"== numpy exact epoch_stats, bit for bit: {same_sums}; training epoch's plain argmin differs on "
          f"{int(np.abs(plain_np[1] - stats_np[1]).sum()) // 2} row(s) (near-ties)")

    side = 3072
    A = np.random.default_rng(0).standard_normal((side, side), dtype=np.float32)
    AB = np.empty_like(A)
    cases = {
        "square product": lambda: np.matmul(A, A, out=AB),
        "floor: one X @ W.T": lambda: np.matmul(X, WT, out=full),
        "chunked X @ W.T": chunked_product,
        "epoch, numpy": lambda: with_kernel(False, epoch),
        "epoch, kernel": lambda: with_kernel(True, epoch),
        "predict, numpy": lambda: with_kernel(False, lambda: som.predict(X)),
        "predict, kernel": lambda: with_kernel(True, lambda: som.predict(X)),
    }
    times = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            times[name].append(timed(fn))
    best = {name: min(v) for name, v in times.items()}
    gflops = 2 * side**3 / best.pop("square product") / 1e9
    best["flop floor"] = 2 * n * units * n_features / (gflops * 1e9)
    floor, flops = best["floor: one X @ W.T"], best["flop floor"]
    print(f"\n  {'':22s} {'ms':>8s} {'x X @ W.T':>9s} {'x flop floor':>12s}")
    for name, seconds in best.items():
        print(f"  {name:22s} {seconds * 1e3:8.1f} {seconds / floor:9.2f} {seconds / flops:12.2f}")
    rate = 2 * n * units * n_features / floor / 1e9
    print(f"  (best of {args.repeats}; X @ W.T ran at {rate:.0f} GFLOP/s, "
          f"the square product at {gflops:.0f})")

    if args.compile:
        with tempfile.TemporaryDirectory() as empty:
            cold = first_call(empty)
            warm = first_call(empty)
        print(f"\nfresh process: import numba {cold['import']:.2f} s; first kernel call with an empty cache "
              f"(compiles) {cold['first']:.2f} s; with the cache filled {warm['first']:.2f} s "
              f"(import {warm['import']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
