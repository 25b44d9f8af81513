"""What batch-independent best units cost: ``SOM.predict`` with and without the exact near-tie check.

On the planted data of ``bench_som.py`` (12 features, 15x15 map, float32), it times ``SOM.predict`` on N
rows as it is (fast scores, then the rows whose runner-up lies within the rounding bound are settled by
exact float64 distances) against the plain argmin of the same scores (the code before the fix), in the
same process, alternately, on one thread, in CPU time (less sensitive than wall time to a busy machine),
best of 9. It also counts the rows the check recomputes and the rows whose unit it changes, and one
training epoch (which keeps the plain argmin).

Usage::

    .venv/bin/python benchmarks/bench_ties.py            # N = 100,000
    .venv/bin/python benchmarks/bench_ties.py --n 1000000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_som import MAP, N_FEATURES, planted  # noqa: E402

import seglib.som as S  # noqa: E402


def _plain(scores, x, cb, k=1):
    return scores.argmin(axis=1), None


def cpu(f) -> float:
    start = time.process_time()
    f()
    return time.process_time() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="rows")
    args = parser.parse_args(argv)
    X = planted(args.n)
    som = S.SOM(MAP, n_epochs=10, progress=False, random_state=0, n_jobs=1).fit(X)
    W = som.weights_.reshape(-1, N_FEATURES)
    chunks = S._row_chunks(args.n, S._auto_chunk_size(len(W)))
    exact = S._nearest
    times = {"exact": [], "plain": [], "epoch": []}
    try:
        for _ in range(9):
            for name, impl in (("exact", exact), ("plain", _plain)):
                S._nearest = impl
                times[name].append(cpu(lambda: som.predict(X)))
            times["epoch"].append(cpu(lambda: S._batch_epoch(X, W, chunks, map, MAP, 1.0, "gaussian")))
    finally:
        S._nearest = exact
    cb = S._Codebook(W)
    scores = S._scores(X, cb.augmented)
    first = scores.argmin(axis=1)
    flat = scores.reshape(-1)
    at = np.arange(args.n) * scores.shape[1] + first
    top = flat[at].copy()
    flat[at] = np.inf
    runner_up = scores.min(axis=1)
    flat[at] = top
    norm = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    tol = cb.tol_scale * (norm + cb.max_norm) ** 2
    refined = int((runner_up <= top + tol).sum())
    changed = int((S._nearest(scores, X, cb)[0] != first).sum())
    e, p = min(times["exact"]), min(times["plain"])
    print(f"N = {args.n:,}, 15x15 map, {N_FEATURES} features, float32, one thread, CPU time, best of 9")
    print(f"  predict, exact near-ties: {e * 1e3:8.1f} ms")
    print(f"  predict, plain argmin:    {p * 1e3:8.1f} ms   -> the check costs {e / p:.2f}x")
    print(f"  one training epoch (plain argmin, unchanged): {min(times['epoch']) * 1e3:.1f} ms")
    print(f"  rows recomputed exactly: {refined:,} ({refined / args.n:.2%}); unit changed: {changed:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
