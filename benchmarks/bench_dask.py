"""Benchmark of the Dask backend against the pandas backend on a large generated transaction log (issue 9).

1. Generate ``--lines`` transaction lines (default 20M) with :func:`seglib.synthetic.write_parts`, in parts
   of ``--customers-per-part`` customers written one after the other (the generator's memory depends on
   the part size only). The data are reused when a previous run left the same ones in ``--data``.
2. pandas backend (``run_segmentation(backend="pandas")``, i.e. ``seglib.steps``) on the first k parts
   concatenated into one file, for k = ``--pandas-parts`` in order, under a ``--memory-limit`` watchdog:
   a run whose process goes over the limit is killed and marked "over the limit"; the series stops there.
3. Dask backend (``run_dask``) on the largest pandas size that fitted, 2 workers: the agreement (adjusted
   Rand index of the customers' segments) with the pandas result.
4. Dask backend on all the parts, LocalCluster with 1 worker, then 2 workers (one thread each), each
   worker limited to ``--memory-limit`` (dask's nanny spills at 60% and restarts a worker at 95%: a
   restart is reported), and the agreement between the two.

Every run is its own process. Memory is sampled every 0.1 s (psutil RSS) for every process of the run:
the pandas process; for Dask the client (it also hosts the scheduler) and each worker. Times are wall
clock. Other work on the cores slows a run, and on a shared virtual machine it may be invisible from
inside (no load, no steal time). So before each run the script times the SOM's ``epoch_stats`` on 100k
rows in one process, then in two at once: "cores" is how many cores' worth of work the two did together
(2.0 = two free cores). Compare speed-ups only between runs with cores near 2.

Targets: ARI >= 0.99 between backends; Dask finishes a log >= 3x the largest that pandas holds within the
limit; 2 workers >= 1.6x faster than 1 on the SOM epochs (data persisted, ``timings["som_epochs"]``).

Usage::

    .venv/bin/python benchmarks/bench_dask.py                 # 20M lines, ~15 minutes on 2 cores
    .venv/bin/python benchmarks/bench_dask.py --quick         # 1M lines, ~2 minutes
    .venv/bin/python benchmarks/bench_dask.py --lines 5e6 --pandas-parts 2,4 --keep
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

#: Lines per customer of the generator (measured: 10.3 with the default archetypes).
LINES_PER_CUSTOMER = 10.3
SEED = 0
RESULT = "RESULT "


# ------------------------------------------------------------------------------------------ child runs


def _child(args) -> None:
    """Run one backend in this process and print its figures as one JSON line."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    from seglib.runner import run_dask, run_segmentation

    if args.child == "probe":
        print(_probe())
        return
    if args.child == "som":
        print(RESULT + json.dumps(_som_epochs(args.workers, args.rows, args.partitions, args.memory_limit)))
        return
    data = json.loads(Path(args.input).read_text()) if args.input.endswith(".json") else args.input
    started = time.perf_counter()
    if args.child == "pandas":
        layout = run_segmentation(data, args.out, seed=SEED, progress=False)
        report = json.loads(layout.cleaning_report.read_text())
        out = {"result": str(layout.result), "rows": report["rows_read"],
               "customers": report["customers_kept"]}
    else:
        run = run_dask(data, args.out, seed=SEED, n_workers=args.workers, memory_limit=args.memory_limit,
                       progress=False)
        out = {"result": str(run.result) if run.result else None, "parts": [str(p) for p in run.parts],
               "timings": run.timings, "customers": run.n_customers, "rows": run.report.rows_read}
    out["seconds"] = time.perf_counter() - started
    print(RESULT + json.dumps(out), flush=True)


def _random_part(i: int, rows: int, n_features: int = 21):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(i)
    centers = np.random.default_rng(0).normal(0, 2, (8, n_features))  # the same 8 clusters everywhere
    return pd.DataFrame(centers[rng.integers(0, 8, rows)] + rng.standard_normal((rows, n_features)))


def _som_epochs(workers: int, rows: int, partitions: int, memory_limit: str, fits: int = 3) -> dict:
    """Seconds of 10 SOM epochs on a persisted (rows x 21) matrix, best of ``fits`` trainings."""
    import pandas as pd

    from seglib.distributed import Partitions, dask_client, fit_som, wait
    from seglib.som import SOM

    per_part = -(-rows // partitions)
    with dask_client(n_workers=workers, memory_limit=memory_limit, dashboard_address=":0") as client:
        futures = client.map(_random_part, range(partitions), rows=per_part)
        wait(futures)
        X = Partitions(futures, pd.DataFrame(columns=range(21), dtype=float))
        seconds = []
        for _ in range(fits):
            timings = {}
            fit_som(X, SOM((15, 15), random_state=0, progress=False), client=client, progress=False,
                    timings=timings)
            seconds.append(timings["som_epochs"])
    return {"seconds": seconds, "rows": per_part * partitions}


def _roles(root, procs) -> dict:
    """pid -> "client" / "worker" / "other" for a run's process tree."""
    roles = {}
    for p in procs:
        try:
            cmd = " ".join(p.cmdline())
        except Exception:  # psutil.Error: the process ended
            continue
        worker = "spawn_main" in cmd  # dask's worker processes (multiprocessing spawn)
        roles[p.pid] = "client" if p.pid == root else "worker" if worker else "other"
    return roles


def _measured(argv, limit: int | None, label: str) -> dict:
    """Run ``argv``; sample the RSS of its processes; kill it when the root process exceeds ``limit``."""
    import psutil

    load, cores = os.getloadavg()[0], _cores(argv[:2])
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks, roles, state = {}, {}, {"killed": False, "total": 0}

    def watch():
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = [root] + root.children(recursive=True)
            except psutil.Error:
                break
            total = 0
            for p in tree:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                peaks[p.pid] = max(peaks.get(p.pid, 0), rss)
                total += rss
            roles.update({k: v for k, v in _roles(proc.pid, tree).items() if k not in roles})
            state["total"] = max(state["total"], total)
            if limit and peaks.get(proc.pid, 0) > limit and not state["killed"]:
                state["killed"] = True
                for p in reversed(tree):
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    watcher.join()
    seconds = time.perf_counter() - started
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT)]
    out = json.loads(lines[-1][len(RESULT):]) if lines else {}
    workers = [peaks[pid] for pid, role in roles.items() if role == "worker"]
    out.update(label=label, wall=seconds, killed=state["killed"], ok=bool(lines) and proc.returncode == 0,
               load=load, cores=cores, peak_client=peaks.get(proc.pid, 0), peak_workers=workers,
               peak_total=state["total"], worker_processes=len(workers))
    if not out["ok"] and not out["killed"]:
        print(stderr[-3000:], file=sys.stderr)
    return out


# ------------------------------------------------------------------------------------------ parent


def _probe(rows: int = 100_000, repeats: int = 25) -> float:
    """Seconds per ``epoch_stats`` call on ``rows`` random rows (one BLAS thread)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from seglib.som import epoch_stats

    X = np.random.default_rng(0).standard_normal((rows, 21))
    W = np.random.default_rng(1).standard_normal((225, 21)).astype(np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        epoch_stats(X, W)
        started = time.perf_counter()
        for _ in range(repeats):
            epoch_stats(X, W)
    return (time.perf_counter() - started) / repeats


def _cores(me) -> float:
    """Cores' worth of work two processes get done at once, from the probe alone and in a pair."""
    alone = float(subprocess.run(me + ["--child", "probe"], capture_output=True, text=True).stdout)
    pair = [subprocess.Popen(me + ["--child", "probe"], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    together = [float(p.communicate()[0]) for p in pair]
    return sum(alone / t for t in together)


def _gb(n) -> str:
    return f"{n / 1e9:.2f}"


def _generate(folder: Path, customers: int, per_part: int) -> list[Path]:
    stamp = folder / "bench.json"
    wanted = {"customers": customers, "per_part": per_part, "seed": SEED}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        print(f"reusing the data in {folder}")
    else:
        from seglib.synthetic import write_parts

        started = time.perf_counter()
        write_parts(folder, customers, customers_per_part=per_part, random_state=SEED, progress=True)
        stamp.write_text(json.dumps(wanted))
        print(f"generated {customers:,} customers in {time.perf_counter() - started:.0f} s")
    return sorted(folder.glob("part-*.csv"))


def _concat(parts, path: Path) -> Path:
    with open(path, "wb") as out:
        for i, part in enumerate(parts):
            with open(part, "rb") as fh:
                if i:
                    fh.readline()
                shutil.copyfileobj(fh, out, 2**24)
    return path


def _segments(run: dict):
    import pandas as pd

    if run.get("result"):
        from seglib.profile import read_result

        table = read_result(run["result"])
    else:
        table = pd.concat(pd.read_parquet(p, columns=["customerID", "segment"]) for p in run["parts"])
    return table[["customerID", "segment"]]


def _ari(a: dict, b: dict) -> tuple[float, int]:
    from sklearn.metrics import adjusted_rand_score

    both = _segments(a).merge(_segments(b), on="customerID")
    return float(adjusted_rand_score(both["segment_x"], both["segment_y"])), len(both)


def _row(run: dict, lines: int) -> str:
    workers = run["peak_workers"]
    t = run.get("timings", {})
    status = "over the limit (killed)" if run["killed"] else "ok" if run["ok"] else "failed"
    stages = " / ".join(f"{t[k]:.0f}" for k in ("clean", "features", "som", "cluster", "write")) if t else ""
    epochs = f"{t['som_epochs']:.2f}" if t else ""
    restarts = max(0, run["worker_processes"] - run.get("n_workers", run["worker_processes"]))
    return (f"| {run['label']} | {lines / 1e6:.1f}M | {status} | {run['wall']:.0f} | {stages} | {epochs} | "
            f"{_gb(run['peak_client'])} | {', '.join(_gb(w) for w in workers) or '-'} | {restarts or '-'} | "
            f"{run['load']:.1f} | {run['cores']:.2f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=float, default=20e6, help="lines to generate (default 20M)")
    parser.add_argument("--customers-per-part", type=int, default=50_000, help="customers per part file")
    parser.add_argument("--data", default="/tmp/seglib-bench-dask", help="folder of the generated data")
    parser.add_argument("--memory-limit", default="4GB", help="per process (pandas) and per worker (Dask)")
    parser.add_argument("--pandas-parts", default="2,4,6,8,10,12",
                        help="part counts tried with pandas, in order, until one goes over the limit")
    parser.add_argument("--skip-one-worker", action="store_true", help="skip the 1-worker Dask run")
    parser.add_argument("--som-rounds", type=int, default=2,
                        help="rounds of the SOM-epoch comparison (1 worker, then 2, per round)")
    parser.add_argument("--quick", action="store_true",
                        help="1M lines in parts of 10,000 customers, pandas on 2, 5, 10 parts")
    parser.add_argument("--keep", action="store_true", help="keep the generated data and outputs")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--child", choices=["pandas", "dask", "probe", "som"], help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--partitions", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    from dask.utils import parse_bytes

    if args.quick:
        args.lines, args.customers_per_part, args.pandas_parts = 1e6, 10_000, "2,5,10"
    limit = parse_bytes(args.memory_limit)
    folder = Path(args.data)
    customers = int(round(args.lines / LINES_PER_CUSTOMER))
    parts = _generate(folder, customers, args.customers_per_part)
    lines_per_part = args.lines / len(parts)
    out = folder / "runs"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    me = [sys.executable, str(Path(__file__).resolve())]
    runs = []

    print(f"\n{len(parts)} parts, ~{args.lines / 1e6:.1f}M lines, {customers:,} customers; limit "
          f"{args.memory_limit}; {os.cpu_count()} cores; lines below are rows read\n")
    header = ("| run | lines | status | wall s | clean / features / som / cluster / write s | SOM epochs s | "
              "peak client GB | peak workers GB | worker restarts | load | cores |\n|" + "---|" * 11)
    print(header)
    fitted = None
    for k in [int(v) for v in args.pandas_parts.split(",") if int(v) <= len(parts)]:
        single = _concat(parts[:k], out / f"pandas-{k}.csv")
        run = _measured(me + ["--child", "pandas", "--input", str(single), "--out", str(out / f"pandas-{k}")],
                        limit, f"pandas, {k} parts")
        single.unlink()
        run.update(parts=k, lines=run.get("rows", k * lines_per_part))
        runs.append(run)
        print(_row(run, run["lines"]), flush=True)
        if not run["ok"]:
            break
        fitted = run

    agreement = {}
    if fitted is not None:
        k = fitted["parts"]
        glob = str(folder / "part-*.csv") if k == len(parts) else [str(p) for p in parts[:k]]
        subset = out / "subset.json"
        subset.write_text(json.dumps(glob))
        run = _measured(me + ["--child", "dask", "--input", str(subset), "--out", str(out / f"dask-{k}"),
                              "--workers", "2", "--memory-limit", args.memory_limit],
                        None, f"dask 2 workers, {k} parts")
        run.update(n_workers=2, lines=run.get("rows", fitted["lines"]))
        runs.append(run)
        print(_row(run, run["lines"]), flush=True)
        if run["ok"]:
            agreement["pandas vs dask (2 workers)"] = _ari(fitted, run)

    full = {}
    for n in ([2] if args.skip_one_worker else [1, 2]):
        child = ["--child", "dask", "--input", str(folder / "part-*.csv"), "--out", str(out / f"all-{n}"),
                 "--workers", str(n), "--memory-limit", args.memory_limit]
        run = _measured(me + child, None, f"dask {n} worker{'s' if n > 1 else ''}, all parts")
        run.update(n_workers=n, lines=run.get("rows", args.lines))
        runs.append(run)
        full[n] = run
        print(_row(run, run["lines"]), flush=True)
    if all(r["ok"] for r in full.values()) and len(full) == 2:
        agreement["dask 1 worker vs 2 workers"] = _ari(full[1], full[2])

    print()
    for name, (ari, n) in agreement.items():
        print(f"adjusted Rand index, {name}: {ari:.4f} ({n:,} customers)")
    if fitted is not None and full.get(2, {}).get("ok"):
        lines = full[2]["lines"]
        print(f"largest log pandas held within {args.memory_limit}: {fitted['lines'] / 1e6:.2f}M lines; Dask "
              f"ran {lines / 1e6:.2f}M = {lines / fitted['lines']:.1f}x under {args.memory_limit} per worker")
    if len(full) == 2 and all(r["ok"] for r in full.values()):
        one, two = full[1]["timings"]["som_epochs"], full[2]["timings"]["som_epochs"]
        print(f"SOM epochs inside the pipeline runs: 1 worker {one:.2f} s, 2 workers {two:.2f} s: "
              f"{one / two:.2f}x")
        print(f"whole pipeline: 1 worker {full[1]['wall']:.0f} s, 2 workers {full[2]['wall']:.0f} s: "
              f"{full[1]['wall'] / full[2]['wall']:.2f}x")

    # the SOM epochs alone, on a persisted matrix of the full run's shape, alternating 1 and 2 workers
    n_rows = full.get(2, {}).get("customers") or customers
    n_parts = max(1, -(-int(n_rows * 1.2) // 200_000))  # the default partitioning (customer, store rows)
    som = {1: [], 2: []}
    print(f"\nSOM, 10 epochs on a persisted {n_rows:,} x 21 matrix in {n_parts} partitions "
          "(best of 3 trainings per cluster):")
    for r in range(args.som_rounds):
        for n in (1, 2):
            child = ["--child", "som", "--workers", str(n), "--rows", str(n_rows),
                     "--partitions", str(n_parts), "--memory-limit", args.memory_limit]
            run = _measured(me + child, None, f"som {n}")
            som[n].append(min(run["seconds"]))
            trainings = ", ".join(f"{v:.2f}" for v in run["seconds"])
            print(f"  round {r + 1}, {n} worker{'s' if n > 1 else ' '}: {som[n][-1]:.2f} s (trainings "
                  f"{trainings}; cores {run['cores']:.2f})", flush=True)
    print(f"SOM epochs, best over the rounds: 1 worker {min(som[1]):.2f} s, 2 workers {min(som[2]):.2f} s: "
          f"{min(som[1]) / min(som[2]):.2f}x")
    runs.append({"label": "som epochs", "seconds": som})
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "agreement": agreement}, indent=1))
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
