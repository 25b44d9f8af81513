"""Timing and memory helpers the benchmarks share (run them as scripts: ``benchmarks/`` is on sys.path)."""

from __future__ import annotations

import resource
import time


def peak_mb() -> float:
    """This process's peak resident memory so far, in MB (``ru_maxrss``, KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_time(fn, repeats: int) -> float:
    """The fastest of ``repeats`` calls of ``fn()``, in seconds (the least disturbed by other work)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
