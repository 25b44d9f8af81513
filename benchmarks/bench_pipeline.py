"""Benchmark of the whole pipeline (``seglib segment``) against the I/O floor: a pyarrow read of the file.

For each size it generates a synthetic log (``seglib.synthetic.write_dataset``, about 10.3 lines per
customer; cached under ``--cache``, default ``/tmp/seglib-bench``), then, each in its own process:

* the floor: ``pyarrow.csv.read_csv`` of the same file (best of 3), and a ``pandas.read_csv`` with
  ``engine="pyarrow"`` for reference;
* ``seglib segment --data FILE --out DIR --no-progress`` as a user runs it (a fresh process: imports
  included), timed from outside; its peak memory is the child's ``ru_maxrss`` (``os.wait4``);
* the same run in-process with each stage timed (load, clean, features, customer table, SOM, cluster,
  profile; "other" is writing artifacts and the quality figures), by wrapping the functions
  ``seglib.steps`` calls.

It prints, per size, the time of each stage, the total as a ratio to the pyarrow read measured in the
same run, and peak memory against the target "3 x file size + 300 MB". Targets (issue 20): at 1M lines
``seglib segment`` within 10x the pyarrow read and peak memory under 3x the file + 300 MB.

Usage::

    .venv/bin/python benchmarks/bench_pipeline.py                       # 0.1M, 1M lines (~1 minute)
    .venv/bin/python benchmarks/bench_pipeline.py --sizes 100000,1000000,5000000
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _measure import best_time, peak_mb

#: Customers per line asked for: the generator writes about 10.3 lines per customer (1.03M for 100,000).
LINES_PER_CUSTOMER = 10


def dataset(lines: int, cache: Path) -> Path:
    """The generated log of about ``lines`` lines (written once, then reused)."""
    customers = max(100, lines // LINES_PER_CUSTOMER)
    path = cache / f"log-{customers}.csv"
    if not path.is_file():
        from seglib.synthetic import write_dataset

        cache.mkdir(parents=True, exist_ok=True)
        write_dataset(path, n_customers=customers, random_state=7)
    return path


# ----------------------------------------------------------------------------------------- cases


def case_floor(path: str) -> dict:
    import pandas as pd
    import pyarrow.csv as pacsv

    arrow = best_time(lambda: pacsv.read_csv(path), 3)
    pandas_arrow = best_time(lambda: pd.read_csv(path, engine="pyarrow", dtype=str), 1)
    return dict(arrow=arrow, pandas_arrow=pandas_arrow, peak=peak_mb())


#: stage -> (module, attribute) of the function timed; nested calls are not double-counted.
STAGES = {
    "load": ("seglib.load", "load_transactions"),
    "clean": ("seglib.clean", "clean_transactions"),
    "features": ("seglib.features", "FeatureBuilder.fit_transform"),
    "customer table": ("seglib.features", "customer_table"),
    "SOM": ("seglib.som", "SOM.fit"),
    "cluster": ("seglib.steps", "cluster_step"),
    "profile": ("seglib.steps", "profile_step"),
}


def case_stages(path: str) -> dict:
    import importlib

    from seglib import runner

    spent: dict[str, float] = {name: 0.0 for name in STAGES}
    peaks: dict[str, float] = {}  # peak memory of the process at the end of each stage
    active: list[str] = []

    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if active:  # nested in a timed stage: counted there
                return fn(*args, **kwargs)
            active.append(name)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start
                peaks[name] = peak_mb()
                active.pop()
        return wrapper

    for name, (module, attr) in STAGES.items():
        owner = importlib.import_module(module)
        *outer, last = attr.split(".")
        for part in outer:
            owner = getattr(owner, part)
        setattr(owner, last, timed(name, getattr(owner, last)))
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        runner.run_segmentation(path, out, progress=False)
        total = time.perf_counter() - start
    spent["other"] = total - sum(spent.values())
    peaks["other"] = peak_mb()
    return dict(stages=spent, peaks=peaks, total=total, peak=peak_mb())


def case_cli(path: str) -> dict:
    """``seglib segment`` in a fresh process: wall time and the child's own peak memory."""
    seglib = Path(sys.executable).with_name("seglib")
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        proc = subprocess.Popen([str(seglib), "segment", "--data", path, "--out", f"{out}/run",
                                 "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        err = proc.stderr.read().decode()
        proc.stderr.close()
        if status:
            raise RuntimeError(f"seglib segment failed: {err}")
        digests = {}
        for name in ("result.csv", "segments.csv"):
            import hashlib

            digests[name] = hashlib.sha256((Path(out) / "run" / name).read_bytes()).hexdigest()
    return dict(time=seconds, peak=usage.ru_maxrss / 1024, sha256=digests)


CASES = {"floor": case_floor, "stages": case_stages, "cli": case_cli}


# ----------------------------------------------------------------------------------------- driver


def run_case(case: str, path: Path) -> dict:
    cmd = [sys.executable, __file__, "--case", case, "--path", str(path)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(lines: int, path: Path, floor: dict, stages: dict, cli: dict) -> None:
    size_mb = path.stat().st_size / 2**20
    with open(path, "rb") as fh:
        n_lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b"")) - 1
    arrow = floor["arrow"]
    print(f"\n{n_lines:,} lines ({size_mb:.0f} MB CSV, {path.name})")
    print(f"  floor: pyarrow.csv.read_csv {arrow:.2f} s (pandas read_csv engine=pyarrow, text: "
          f"{floor['pandas_arrow']:.2f} s)")
    print(f"  {'stage':16s} {'seconds':>8s} {'x floor':>8s} {'peak MB after':>14s}")
    for name, seconds in stages["stages"].items():
        print(f"  {name:16s} {seconds:8.2f} {seconds / arrow:8.1f} {stages['peaks'].get(name, 0):14.0f}")
    print(f"  {'in-process':16s} {stages['total']:8.2f} {stages['total'] / arrow:8.1f}   "
          f"peak {stages['peak']:.0f} MB")
    target_mb = 3 * size_mb + 300
    print(f"  seglib segment (fresh process): {cli['time']:.2f} s = {cli['time'] / arrow:.1f}x the pyarrow "
          f"read (target <= 10x); peak {cli['peak']:.0f} MB = {cli['peak'] / size_mb:.2f}x the file "
          f"(target 3 x {size_mb:.0f} + 300 = {target_mb:.0f} MB: "
          f"{'met' if cli['peak'] <= target_mb else 'NOT met'})")
    print(f"  result.csv sha256 {cli['sha256']['result.csv'][:16]}, segments.csv "
          f"{cli['sha256']['segments.csv'][:16]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated line counts")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "seglib-bench"),
                        help="folder of the generated logs (kept between runs)")
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:  # a child process: one case, one JSON line
        print(json.dumps(CASES[args.case](args.path)))
        return 0
    import pandas
    import pyarrow

    print(f"pandas {pandas.__version__}, pyarrow {pyarrow.__version__}, {os.cpu_count()} CPUs; "
          "times in seconds; ratios against the pyarrow read of the same file in this run")
    for lines in (int(v) for v in args.sizes.split(",")):
        path = dataset(lines, Path(args.cache))
        floor = run_case("floor", path)
        stages = run_case("stages", path)
        cli = run_case("cli", path)
        report(lines, path, floor, stages, cli)
    return 0


if __name__ == "__main__":
    sys.exit(main())
