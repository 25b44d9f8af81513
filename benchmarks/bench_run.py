"""Benchmark of the notebooks' batch run (``seglib run``, what ``make run`` calls): where the time goes.

Each repetition runs, each in a fresh process (imports included, as a user runs them):

* the **baseline, a bare kernel**: start a ``python3`` kernel, wait until it answers, shut it down
  (what every notebook pays before its first cell, imports excluded);
* the **baseline, the same work without notebooks**: ``seglib segment`` on the same data (the steps,
  their artifacts and the quality figures, in one process);
* **``seglib run``** on the same data into a new folder (``pipeline.run``, no progress bars), with
  the runner process's own CPU time and its children's (the kernels) measured apart.

From ``run.json`` (the runner's wall time per notebook) and the executed notebooks (papermill records
every cell's duration) it prints, per notebook, the time in cells that draw figures (a cell calling
``save_figure`` or ``plt.``), in the other cells, and the rest: the **overhead** (waiting for the
kernel and its imports, papermill, shutting the kernel down); then what the runner does before and
after the notebooks (checking parameters, importing papermill, ``run.json``, ``report.html``), and
the ratios of the whole run to the two baselines measured in the same repetition.

Usage::

    .venv/bin/python benchmarks/bench_run.py                  # the default data, 1 repetition
    .venv/bin/python benchmarks/bench_run.py --repeat 3       # 3 repetitions (the best is summarised)
    # against another checkout (e.g. a worktree of main), alternating, with the same virtualenv:
    .venv/bin/python benchmarks/bench_run.py --against /path/to/checkout --repeat 3

The wall times depend on what else runs on the machine; CPU times (user + sys) much less. On an idle
machine with 2 cores, the runner starts the next kernel while a notebook runs, so the wall time can
be below the CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The child that runs ``seglib run`` and reports its own CPU and its kernels' (children's) CPU.
RUN_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from seglib import pipeline
t_import = time.perf_counter() - t0
result = pipeline.run(data=sys.argv[1], out=sys.argv[2], progress=False)
wall = time.perf_counter() - t0
me = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps(dict(wall=wall, import_pipeline=t_import, timings=result.timings,
                      runner_cpu=me.ru_utime + me.ru_stime, kernels_cpu=kids.ru_utime + kids.ru_stime)))
"""

#: The child that starts a bare kernel, waits for it and shuts it down.
KERNEL_CHILD = """
import json, resource, time
from jupyter_client.manager import KernelManager
t0 = time.perf_counter()
km = KernelManager(kernel_name="python3")
km.start_kernel(extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=120)
ready = time.perf_counter() - t0
kc.stop_channels()
km.shutdown_kernel(now=False)
wall = time.perf_counter() - t0
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps(dict(ready=ready, wall=wall, kernel_cpu=kids.ru_utime + kids.ru_stime)))
"""


def child_json(code: str, *args: str, env=None, cwd=None) -> tuple[dict, float]:
    """Run ``code`` in a fresh interpreter; its last stdout line (JSON) and the wall time from outside."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          cwd=cwd)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def timed_command(argv: list[str], env=None) -> tuple[float, float]:
    """Wall time and CPU (user + sys, the process and its children) of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{proc.stderr.read().decode()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def is_figure_cell(source: str) -> bool:
    return "save_figure" in source or "plt." in source


def cell_times(notebook: Path) -> dict:
    """Seconds of the figure cells and the other cells of an executed notebook (papermill's durations)."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    out = {"figures": 0.0, "compute": 0.0}
    for cell in nb["cells"]:
        duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if cell["cell_type"] != "code" or duration is None:
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        out["figures" if is_figure_cell(source) else "compute"] += duration
    return out


def repetition(data: Path, work: Path, name: str, checkout: Path | None = None) -> dict:
    """One measurement; ``checkout``: run another checkout's seglib and notebooks (on ``PYTHONPATH``)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if checkout is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(checkout), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    kernel, _ = child_json(KERNEL_CHILD, env=env, cwd=work)
    seglib_exe = str(Path(sys.executable).with_name("seglib"))
    segment = [seglib_exe, "segment", "--data", str(data), "--out", str(work / f"segment-{name}"),
               "--no-progress"]
    segment_wall, segment_cpu = timed_command(segment, env=env)
    run_dir = work / f"run-{name}"
    run, outside = child_json(RUN_CHILD, str(data), str(run_dir), env=env, cwd=work)
    notebooks = {}
    for nb, seconds in run["timings"].items():
        cells = cell_times(run_dir / nb)
        notebooks[nb] = dict(wall=seconds, **cells, overhead=seconds - cells["figures"] - cells["compute"])
    return dict(kernel=kernel, segment_wall=segment_wall, segment_cpu=segment_cpu, run=run, outside=outside,
                notebooks=notebooks)


def cpu(rep: dict) -> float:
    return rep["run"]["runner_cpu"] + rep["run"]["kernels_cpu"]


def report(rep: dict, title: str) -> None:
    run, kernel = rep["run"], rep["kernel"]
    total = rep["outside"]
    print(f"\n{title}: seglib run {total:.1f} s wall (process start to exit), "
          f"CPU {run['runner_cpu'] + run['kernels_cpu']:.1f} s (runner {run['runner_cpu']:.1f} s, "
          f"kernels {run['kernels_cpu']:.1f} s)")
    print(f"{'notebook':<30} {'wall s':>7} {'figures':>8} {'compute':>8} {'overhead':>9} {'overhead %':>10}")
    sums = {"wall": 0.0, "figures": 0.0, "compute": 0.0, "overhead": 0.0}
    for nb, row in rep["notebooks"].items():
        print(f"{nb:<30} {row['wall']:7.2f} {row['figures']:8.2f} {row['compute']:8.2f} "
              f"{row['overhead']:9.2f} {row['overhead'] / row['wall']:10.0%}")
        for key in sums:
            sums[key] += row[key]
    print(f"{'notebooks':<30} {sums['wall']:7.2f} {sums['figures']:8.2f} {sums['compute']:8.2f} "
          f"{sums['overhead']:9.2f} {sums['overhead'] / sums['wall']:10.0%}")
    other = total - sums["wall"]
    print(f"{'runner before/after notebooks':<30} {other:7.2f}   (process start, imports, checks, run.json, "
          f"report.html; importing seglib.pipeline {run['import_pipeline']:.2f} s)")
    print(f"shares of the wall time: figures {sums['figures'] / total:.0%}, "
          f"compute {sums['compute'] / total:.0%}, "
          f"kernel and papermill overhead {sums['overhead'] / total:.0%}, "
          f"runner before/after {other / total:.0%}")
    n = len(rep["notebooks"])
    print(f"baseline, bare kernel: ready in {kernel['ready']:.2f} s, start + shutdown {kernel['wall']:.2f} s "
          f"(kernel CPU {kernel['kernel_cpu']:.2f} s); overhead per notebook {sums['overhead'] / n:.2f} s = "
          f"{sums['overhead'] / n / kernel['wall']:.1f}x a bare kernel's start + shutdown")
    print(f"baseline, seglib segment (same steps, no notebooks): {rep['segment_wall']:.1f} s wall, "
          f"{rep['segment_cpu']:.1f} s CPU; seglib run = {total / rep['segment_wall']:.1f}x its wall, "
          f"{(run['runner_cpu'] + run['kernels_cpu']) / rep['segment_cpu']:.1f}x its CPU")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="input (default: the bundled data/raw/transactions.csv, generated "
                                       "when missing)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--against", type=Path,
                        help="another checkout (its seglib/ and notebooks/), measured alternately")
    parser.add_argument("--keep", action="store_true", help="keep the run folders (printed)")
    args = parser.parse_args(argv)

    from seglib import __file__ as seglib_file
    from seglib.notebook import default_data

    data = Path(args.data).resolve() if args.data else default_data()
    print(f"seglib from {Path(seglib_file).parent}; data {data}; load average {os.getloadavg()[0]:.1f}")
    work = Path(tempfile.mkdtemp(prefix="seglib-bench-run-"))
    reps, others = [], []
    for k in range(args.repeat):
        if args.against is not None and k % 2 == 1:  # alternate which goes first
            others.append(repetition(data, work, f"against-{k}", args.against.resolve()))
            report(others[-1], f"repetition {k + 1}, {args.against}")
        reps.append(repetition(data, work, str(k)))
        report(reps[-1], f"repetition {k + 1}, this checkout")
        if args.against is not None and k % 2 == 0:
            others.append(repetition(data, work, f"against-{k}", args.against.resolve()))
            report(others[-1], f"repetition {k + 1}, {args.against}")
        if others:
            wall = reps[-1]["outside"] / others[-1]["outside"]
            print(f"repetition {k + 1}: this checkout / {args.against}: wall {wall:.2f}, "
                  f"CPU {cpu(reps[-1]) / cpu(others[-1]):.2f}")
    if args.repeat > 1:
        for label, group in (("this checkout", reps), (str(args.against), others)):
            if group:
                print(f"\n{label}, best of {args.repeat}: {min(r['outside'] for r in group):.1f} s wall, "
                      f"{min(cpu(r) for r in group):.1f} s CPU")
    print(f"load average now {os.getloadavg()[0]:.1f}")
    if args.keep:
        print(f"run folders in {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
