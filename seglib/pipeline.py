"""The batch run: the four notebooks in order, with papermill, into a run folder of their own.

``seglib run`` (and :func:`run`) executes ``notebooks/01-...`` to ``04-...`` with the parameters each
notebook declares in its ``parameters`` cell, into ``reports/runs/<timestamp>/`` (or ``--out``):

* the executed notebooks (the provenance: papermill records the parameters in them);
* what the notebooks write: ``cleaning_report.json``, ``result.csv``, ``segments.csv``,
  ``figures/``, ``model/``, ``interim/`` and ``processed/``;
* ``report.html``: the four notebooks as one page, code hidden, figures embedded;
* ``run.json``: parameters, seed, input checksum, package versions, per-notebook timings, features,
  quality figures and segment sizes.

``reports/latest`` points at the newest run. Earlier runs are never touched: a run only ever
writes into a new folder.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from seglib._files import atomic_write_text, write_json
from seglib.config import DEFAULT_DATA, PROJECT_ROOT, Layout, display_path, resolve
from seglib.errors import InputError, ParameterError, PipelineError

logger = logging.getLogger(__name__)

__all__ = ["NOTEBOOKS", "RunResult", "declared_parameters", "load_params_file", "run", "valid_parameters"]

#: The pipeline, in order.
NOTEBOOKS = (
    "01-clean-transactions.ipynb",
    "02-train-som.ipynb",
    "03-cluster-prototypes.ipynb",
    "04-profile-segments.ipynb",
)
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
#: Runs go to ``REPORTS_DIR / "runs"``; ``REPORTS_DIR / "latest"`` points at the newest of them.
REPORTS_DIR = PROJECT_ROOT / "reports"
#: Parameters the runner sets itself (not user parameters).
RUNNER_PARAMETERS = ("out_dir",)
#: Packages whose versions go into run.json.
VERSIONED_PACKAGES = (
    "seglib", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "minisom", "matplotlib",
    "papermill", "ipywidgets", "dask", "distributed",
)
KERNEL_NAME = "python3"


@dataclass
class RunResult:
    """What a batch run produced."""

    run_dir: Path
    parameters: dict
    timings: dict = field(default_factory=dict)


def declared_parameters(notebooks_dir: str | os.PathLike | None = None) -> dict[str, dict[str, dict]]:
    """Parameters each notebook declares: ``{notebook: {name: {"default", "type", "help"}}}``."""
    import papermill as pm

    nb_dir = Path(notebooks_dir) if notebooks_dir else NOTEBOOK_DIR
    out = {}
    for name in NOTEBOOKS:
        path = nb_dir / name
        if not path.is_file():
            raise InputError(f"notebook {path} not found: the pipeline needs {', '.join(NOTEBOOKS)}")
        params = pm.inspect_notebook(str(path))
        out[name] = {
            p: {"default": v.get("default"), "type": v.get("inferred_type_name"), "help": v.get("help")}
            for p, v in params.items()
        }
    return out


def valid_parameters(declared: dict[str, dict[str, dict]]) -> list[str]:
    """User-settable parameter names across the notebooks, sorted."""
    names = {p for params in declared.values() for p in params}
    return sorted(names - set(RUNNER_PARAMETERS))


def load_params_file(path: str | os.PathLike) -> dict:
    """Read a YAML (or JSON) file of ``name: value`` parameters."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"parameters file {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"parameters file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(
            f"parameters file {path} must hold a mapping of name: value, got {type(data).__name__}"
        )
    return data


def parse_value(text: str):
    """A ``-p NAME VALUE`` value: a YAML scalar or list (``8``, ``null``, ``[15, 10]``), else the string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in VERSIONED_PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _new_run_dir(out: str | os.PathLike | None) -> Path:
    if out is not None:
        run_dir = resolve(out)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise InputError(
                f"output folder {run_dir} is not empty; a run never overwrites another: choose a new folder"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    runs = REPORTS_DIR / "runs"
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        run_dir = runs / (stamp if i == 0 else f"{stamp}-{i + 1}")
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
            return run_dir
        except FileExistsError:
            continue
    raise PipelineError(f"could not create a new run folder under {runs}")


def _point_latest(run_dir: Path) -> None:
    """Make ``reports/latest`` a symlink to ``run_dir`` (replaced atomically).

    Only runs inside ``reports/`` count: a run written elsewhere with ``--out`` leaves it alone.
    """
    reports = REPORTS_DIR
    if not run_dir.resolve().is_relative_to(reports.resolve()):
        return
    latest = reports / "latest"
    try:
        target = os.path.relpath(run_dir, reports)
    except ValueError:  # another drive
        target = str(run_dir)
    tmp = reports / f".latest.{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, latest)
    except OSError as exc:  # e.g. no symlinks on this file system
        logger.warning("could not point %s at %s: %s", latest, run_dir, exc)


def _merge(declared, given, data, run_dir):
    """Per-notebook parameters: each notebook gets the given values of the names it declares."""
    per_nb, effective = {}, {}
    for nb, params in declared.items():
        values = {name: given[name] for name in params if name in given}
        if "data_path" in params and data is not None:
            values["data_path"] = str(data)
        if "out_dir" in params:
            values["out_dir"] = str(run_dir)
        per_nb[nb] = values
        for name, spec in params.items():
            if name in RUNNER_PARAMETERS:
                continue
            effective[name] = values.get(name, _literal(spec["default"]))
    return per_nb, effective


def _literal(default: str | None):
    """A parameter cell's default, as papermill's inspection gives it (source text), as a value."""
    if default is None:
        return None
    try:
        import ast

        return ast.literal_eval(default)
    except (ValueError, SyntaxError):
        return default


def _failure_message(nb: str, exc, out_path: Path) -> str:
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    count = getattr(exc, "exec_count", None)
    where = f" in cell [{count}]" if count is not None else ""
    first = str(evalue).strip().splitlines()[0] if str(evalue).strip() else ""
    return f"notebook {nb} failed{where}: {ename}: {first} (executed notebook kept at {out_path})"


def run(
    data: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    parameters: dict | None = None,
    params_file: str | os.PathLike | None = None,
    *,
    notebooks_dir: str | os.PathLike | None = None,
    progress: bool = True,
    html: bool = True,
    kernel_name: str = KERNEL_NAME,
) -> RunResult:
    """Run the four notebooks in order into a new run folder.

    Parameters
    ----------
    data : path, optional
        Input transactions (CSV, gzip CSV or Parquet). Default: the bundled default data set
        ``data/raw/transactions.csv`` (generated when missing).
    out : path, optional
        Run folder; must be new or empty. Default: ``reports/runs/<timestamp>/``.
    parameters : dict, optional
        ``name -> value`` for the notebooks' parameters (see ``seglib run --list-parameters``).
        An unknown name is an error listing the valid ones.
    params_file : path, optional
        YAML file of parameters; ``parameters`` override it.
    progress : bool
        Show progress bars.
    html : bool
        Also write ``report.html``.

    Returns
    -------
    RunResult
    """
    import papermill as pm

    nb_dir = Path(notebooks_dir) if notebooks_dir else NOTEBOOK_DIR
    declared = declared_parameters(nb_dir)
    given = dict(load_params_file(params_file)) if params_file else {}
    given.update(parameters or {})
    valid = valid_parameters(declared)
    for name in given:
        if name in RUNNER_PARAMETERS:
            raise ParameterError(f"parameter {name!r} is set by the runner; use --out instead")
        if name in ("backend", "scheduler"):
            raise ParameterError(f"{name!r}: the notebooks run in memory; for Dask use "
                                 "`seglib segment --backend dask [--scheduler ADDRESS]`")
        if name not in valid:
            raise ParameterError(f"unknown parameter {name!r}; valid parameters: {', '.join(valid)}")
    if "data_path" in given and data is None:
        data = given.pop("data_path")
    if data is not None:
        data = resolve(data)
        if not Path(data).exists():
            raise InputError(f"input data {data} not found")

    run_dir = _new_run_dir(out)
    per_nb, effective = _merge(declared, given, data, run_dir)
    logger.info("run folder: %s", run_dir)

    timings = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(NOTEBOOKS), desc="seglib run", unit="notebook")
    try:
        for nb in NOTEBOOKS:
            out_path = run_dir / nb
            t0 = time.perf_counter()
            logger.info("executing %s", nb)
            try:
                pm.execute_notebook(
                    str(nb_dir / nb), str(out_path), parameters=per_nb[nb], kernel_name=kernel_name,
                    progress_bar=False, cwd=str(nb_dir), log_output=False,
                )
            except pm.PapermillExecutionError as exc:
                raise PipelineError(_failure_message(nb, exc, out_path)) from None
            except Exception as exc:  # kernel died, notebook unreadable, ...
                raise PipelineError(_failure_message(nb, exc, out_path)) from None
            timings[nb] = round(time.perf_counter() - t0, 3)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    input_path = Path(data) if data is not None else DEFAULT_DATA
    write_run_json(run_dir, effective, [input_path], timings, notebook_parameters=per_nb)
    if html:
        write_report_html(run_dir, [run_dir / nb for nb in NOTEBOOKS])
    _point_latest(run_dir)
    return RunResult(run_dir=run_dir, parameters=effective, timings=timings)


def write_run_json(run_dir: Path, parameters: dict, inputs: list[Path], timings: dict, **extra) -> Path:
    """``run.json``: parameters, seed, input checksum(s), versions, timings and what the steps recorded.

    The steps' ``metrics.json`` provides ``features``, ``segment_sizes`` and the quality figures
    (``metrics``). With one input file ``input_sha256`` is its checksum; with several (a Dask run over a
    folder of parts) it is the checksum of the files' checksums in name order, listed in ``inputs``.
    """
    layout = Layout.for_run(run_dir)
    metrics = json.loads(layout.metrics.read_text()) if layout.metrics.is_file() else {}
    sums = {display_path(p): _sha256(Path(p)) for p in sorted(inputs, key=str)}
    if len(sums) == 1:
        checksum = next(iter(sums.values()))
    else:
        checksum = hashlib.sha256("".join(f"{d}  {n}\n" for n, d in sums.items()).encode()).hexdigest()
    info = {
        "run_id": run_dir.name,
        "parameters": parameters,
        **extra,
        "seed": parameters.get("seed"),
        "input": ", ".join(sums) if len(sums) < 4 else f"{len(sums)} files",
        "inputs": sums,
        "input_sha256": checksum,
        "versions": _versions(),
        "timings": timings,
        "features": metrics.pop("features", []),
        "segment_sizes": metrics.pop("segment_sizes", {}),
        "metrics": metrics,
    }
    return write_json(run_dir / "run.json", info)


def segment(
    data: str | os.PathLike,
    out: str | os.PathLike | None = None,
    parameters: dict | None = None,
    params_file: str | os.PathLike | None = None,
    *,
    backend: str = "pandas",
    progress: bool = True,
    **dask_options,
) -> RunResult:
    """The whole pipeline without notebooks, in one process or on Dask, into a new run folder.

    The same steps as :func:`run` (``seglib.steps``, or their Dask versions in
    :mod:`seglib.distributed`) with the same parameter names, for logs too big for the notebooks:
    ``data`` may be a glob or a folder of CSV / Parquet parts with ``backend="dask"``. Writes
    ``result.csv`` (or ``result/`` parts above ``max_collect`` customers), ``segments.csv``,
    ``cleaning_report.json``, ``model/`` and ``run.json``; no notebooks, no ``report.html``.

    Parameters
    ----------
    backend : {"pandas", "dask"}
    **dask_options
        ``scheduler`` (None: a local cluster; or ``"tcp://host:8786"``), ``n_workers``,
        ``memory_limit``, ... (see :func:`seglib.distributed.run_dask`).
    """
    import inspect

    from seglib import distributed

    distributed.check_backend(backend)
    given = dict(load_params_file(params_file)) if params_file else {}
    given.update(parameters or {})
    valid = sorted(n for n, p in inspect.signature(distributed.run_segmentation).parameters.items()
                   if p.kind is p.KEYWORD_ONLY and n not in ("backend", "progress"))
    for name in given:
        if name not in valid:
            raise ParameterError(f"unknown parameter {name!r}; valid parameters: {', '.join(valid)}")
    files = distributed.data_files(data)
    run_dir = _new_run_dir(out)
    t0 = time.perf_counter()
    distributed.run_segmentation(data, run_dir, backend=backend, progress=progress, **given, **dask_options)
    timings = {"total": round(time.perf_counter() - t0, 3)}
    write_run_json(run_dir, {**given, "backend": backend}, [Path(f) for f in files], timings)
    _point_latest(run_dir)
    return RunResult(run_dir=run_dir, parameters=given, timings=timings)


def write_report_html(run_dir: Path, notebooks: list[Path]) -> Path:
    """One standalone HTML page from the executed notebooks, code hidden, figures embedded.

    Interactive widget outputs are dropped (they need a live kernel); every notebook shows its
    default-state figures as static images too, so nothing is lost in the report.
    """
    import nbformat
    from nbconvert import HTMLExporter

    merged = nbformat.v4.new_notebook()
    for k, path in enumerate(notebooks):
        nb = nbformat.read(str(path), as_version=4)
        for j, cell in enumerate(nb.cells):
            cell["id"] = f"nb{k + 1}-cell{j}"  # ids are unique per notebook only
            tags = cell.get("metadata", {}).get("tags", [])
            if "parameters" in tags or "injected-parameters" in tags or "remove-from-report" in tags:
                continue
            if cell.cell_type == "code":
                cell.outputs = [
                    o for o in cell.get("outputs", [])
                    if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})
                    and o.get("output_type") != "stream"
                ]
            merged.cells.append(cell)
    merged.metadata = {"kernelspec": {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"},
                       "language_info": {"name": "python"}}
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(merged)
    return atomic_write_text(run_dir / "report.html", body)
