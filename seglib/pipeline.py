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
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from seglib import params
from seglib.config import DEFAULT_DATA, PROJECT_ROOT, Layout, display_path, resolve
from seglib.errors import InputError, ParameterError, PipelineError

logger = logging.getLogger(__name__)

__all__ = ["NOTEBOOKS", "TRACK_NOTEBOOK", "RunResult", "check_parameters", "declared_parameters",
           "load_params_file", "run", "segment", "track", "track_step", "valid_parameters"]

#: The pipeline, in order.
NOTEBOOKS = (
    "01-clean-transactions.ipynb",
    "02-train-som.ipynb",
    "03-cluster-prototypes.ipynb",
    "04-profile-segments.ipynb",
)
#: Segments over time: run after the four by ``seglib run --track``, or on its own.
TRACK_NOTEBOOK = "05-track-segments.ipynb"
#: Every notebook whose parameters ``seglib run`` accepts.
ALL_NOTEBOOKS = (*NOTEBOOKS, TRACK_NOTEBOOK)
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
#: The dashboard ``seglib app`` serves with Voila (not part of the pipeline: it only calls seglib.app).
APP_NOTEBOOK = NOTEBOOK_DIR / "app.ipynb"
#: Runs go to ``REPORTS_DIR / "runs"``; ``REPORTS_DIR / "latest"`` points at the newest of them.
REPORTS_DIR = PROJECT_ROOT / "reports"
#: Notebook parameters the runner sets itself from ``--data`` and ``--out`` (not in the registry).
#: ``data_path`` may also be given in a parameters file, as ``--data``; ``out_dir`` may not.
RUNNER_PARAMETERS = ("data_path", "out_dir")
#: Options of ``seglib segment`` (not parameters: they choose where the work runs, not its result).
SEGMENT_OPTIONS = ("backend", "scheduler", "n_workers", "memory_limit")
#: Packages whose versions go into run.json.
VERSIONED_PACKAGES = (
    "seglib", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "minisom", "matplotlib",
    "papermill", "ipywidgets", "dask", "distributed",
)
KERNEL_NAME = "python3"
#: What a kernel runs while it waits for its notebook (``{modules}``: the modules the notebook imports):
#: :func:`run` starts the next notebook's kernel while the current notebook executes, so kernel start-up
#: and the heavy imports (~3-5 s a notebook) overlap with work. Importing modules changes no notebook
#: output (each notebook imports what it uses); run silently, it adds no execution count, output or name.
WARM_UP = """def _seglib_warm_up():
    import importlib
    for name in {modules!r}:
        try:
            importlib.import_module(name)
        except Exception:
            pass
_seglib_warm_up()
del _seglib_warm_up
"""


@dataclass
class RunResult:
    """What a batch run produced."""

    run_dir: Path
    parameters: dict
    timings: dict = field(default_factory=dict)


def declared_parameters(notebooks_dir: str | os.PathLike | None = None) -> dict[str, dict[str, dict]]:
    """Parameters each notebook declares: ``{notebook: {name: {"default", "type", "help"}}}``."""
    pm = _papermill()

    nb_dir = Path(notebooks_dir) if notebooks_dir else NOTEBOOK_DIR
    out = {}
    for name in ALL_NOTEBOOKS:
        path = nb_dir / name
        if not path.is_file():
            raise InputError(f"notebook {path} not found: the pipeline needs {', '.join(ALL_NOTEBOOKS)}")
        params = pm.inspect_notebook(str(path))
        out[name] = {
            p: {"default": v.get("default"), "type": v.get("inferred_type_name"), "help": v.get("help")}
            for p, v in params.items()
        }
    return out


def valid_parameters(declared: dict[str, dict[str, dict]] | None = None) -> list[str]:
    """The parameter names ``seglib run`` and ``seglib segment`` accept: the registry's, in pipeline order.

    ``declared`` is ignored (kept for callers of the former notebook-based list).
    """
    return params.names()


def check_parameters(given: dict, command: str = "run") -> dict:
    """Check the names and values of ``given`` against :mod:`seglib.params`; return them normalised.

    The same check for ``seglib run`` and ``seglib segment``, made before any work (before the run
    folder exists). Raises :class:`ParameterError` with one line naming the parameter, the value and
    what is expected; an unknown name lists the valid ones. ``data_path`` must have been taken out
    (see :func:`_take_data`).
    """
    for name in given:
        if name == "out_dir":
            raise ParameterError("parameter 'out_dir' is set by the runner; use --out instead")
        if name in SEGMENT_OPTIONS:
            if command == "run":
                raise ParameterError(f"{name!r}: the notebooks run in memory; for Dask use "
                                     "`seglib segment --backend dask [--scheduler ADDRESS]`")
            option = name.replace("n_workers", "workers").replace("_", "-")
            raise ParameterError(f"{name!r} is an option, not a parameter: use --{option}")
    values = params.check_parameters(given)
    # what the registry's kinds cannot say: roles, strftime formats (the steps' own checks, run early;
    # seglib.load, and with it pandas, only when there is something to check: the runner needs neither)
    formats = [name for name in ("date_format", "dob_format") if values.get(name) is not None]
    if values.get("columns") is not None or formats:
        from seglib.load import check_columns, check_date_format

        if values.get("columns") is not None:
            check_columns(values["columns"])
        for name in formats:
            check_date_format(name, values[name])
    return values


def _check_tracking(values: dict, track: bool, command: str) -> None:
    """A tracking parameter (step "track") set to another value than its default without ``--track``
    would be silently unused: refuse it. Defaults pass (a ``parameters.yaml`` lists every parameter)."""
    if track:
        return
    own = [name for name, value in values.items()
           if params.by_name(name).step == "track" and value != params.default(name)]
    if own:
        raise ParameterError(f"parameter {own[0]!r} is a tracking parameter (segments over time): add "
                             f"--track to `seglib {command}` (or use `seglib track`)")


def _gather(parameters: dict | None, params_file) -> dict:
    given = dict(load_params_file(params_file)) if params_file else {}
    given.update(parameters or {})
    return given


def _take_data(given: dict, data):
    """The input: ``data`` (``--data``), else ``data_path`` from the parameters (removed from ``given``)."""
    path = given.pop("data_path", None)
    if data is None and path is not None:
        if not isinstance(path, str):
            raise ParameterError(f"parameter data_path={path!r} is not valid: expected a path")
        data = path
    return data


def load_params_file(path: str | os.PathLike) -> dict:
    """Read a YAML (or JSON) file of ``name: value`` parameters."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"parameters file {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"parameters file {path} is not valid YAML: {_yaml_problem(exc)}") from None
    except ValueError as exc:  # a date-like value that is no date (2020-13-45): YAML's date constructor
        raise InputError(f"parameters file {path}: a date-like value is not a valid date ({exc}); "
                         "write it as YYYY-MM-DD, or quote it") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(
            f"parameters file {path} must hold a mapping of name: value, got {type(data).__name__}"
        )
    return data


def _yaml_problem(exc: Exception) -> str:
    """One line from a YAML error: what and where (line, column), without the caret diagram."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or type(exc).__name__
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())


def parse_value(text: str):
    """A ``-p NAME VALUE`` value: a YAML scalar or list (``8``, ``null``, ``[15, 10]``), else the string."""
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError):  # ValueError: a date-like scalar that is no date, e.g. 2020-13-45
        return text


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    buffer = bytearray(1 << 20)  # one buffer, read into: no allocation per block (the run's peak memory)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buffer):
            h.update(view[:n])
    return h.hexdigest()


class _Checksums:
    """The sha256 of input files, ``{display path: checksum}`` in name order, for ``run.json``.

    ``background=True`` reads them in a thread while the run goes on (hashlib releases the GIL: about
    0.2 s per 170 MB hidden), else :meth:`result` reads them; it waits for the thread and raises what
    reading a file raised.
    """

    def __init__(self, inputs, *, background: bool = True):
        self._paths = sorted((Path(p) for p in inputs), key=str)
        self._sums, self._error = None, None
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._compute, name="seglib-checksum", daemon=True)
            self._thread.start()

    def _compute(self) -> None:
        try:
            self._sums = {display_path(p): _sha256(p) for p in self._paths}
        except Exception as exc:  # raised in the caller's thread by result()
            self._error = exc

    def result(self) -> dict:
        if self._thread is not None:
            self._thread.join()
        elif self._sums is None and self._error is None:
            self._compute()  # not in the background: read now
        if self._error is not None:
            raise self._error
        return self._sums


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


def _per_notebook(declared, values: dict, data, run_dir) -> dict:
    """Per-notebook parameters: each notebook gets the values of the names it declares."""
    per_nb = {}
    for nb, declared_params in declared.items():
        given = {name: values[name] for name in declared_params if name in values}
        if "data_path" in declared_params and data is not None:
            given["data_path"] = str(data)
        if "out_dir" in declared_params:
            given["out_dir"] = str(run_dir)
        per_nb[nb] = given
    return per_nb


def _failure_message(nb: str, exc, out_path: Path) -> str:
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    count = getattr(exc, "exec_count", None)
    where = f" in cell [{count}]" if count is not None else ""
    first = str(evalue).strip().splitlines()[0] if str(evalue).strip() else ""
    kept = f" (executed notebook kept at {out_path})" if out_path.is_file() else ""
    return f"notebook {nb} failed{where}: {ename}: {first}{kept}"


def _papermill():
    """``papermill``, imported without ``rfc3987_syntax`` when that is what makes it slow.

    papermill validates notebooks with nbformat, which imports jsonschema; jsonschema imports the
    optional ``rfc3987_syntax`` (installed by the Jupyter packages) for its ``iri`` formats, and that
    compiles 38 Lark grammars on import: ~1 s of CPU, about as long as the rest of papermill's imports.
    No notebook schema uses those formats, so when jsonschema is not imported yet it is imported here
    without them (a later ``import rfc3987_syntax`` works as usual).
    """
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        import papermill

        return papermill
    sys.modules["rfc3987_syntax"] = None  # an ImportError for jsonschema's optional import
    try:
        import papermill
    finally:
        if sys.modules.get("rfc3987_syntax", False) is None:
            del sys.modules["rfc3987_syntax"]
    return papermill


def run(
    data: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    parameters: dict | None = None,
    params_file: str | os.PathLike | None = None,
    *,
    notebooks_dir: str | os.PathLike | None = None,
    progress: bool = True,
    html: bool = True,
    track: bool = False,
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
        ``name -> value`` of :mod:`seglib.params` (see ``seglib run --list-parameters``); checked before
        any work. An unknown name is an error listing the valid ones. ``data_path`` stands for ``data``.
    params_file : path, optional
        YAML file of parameters; ``parameters`` override it.
    progress : bool
        Show progress bars.
    html : bool
        Also write ``report.html``.
    track : bool
        Also run notebook 05 (segments over time: ``seglib run --track``) after 04, on the run's data
        and model, into ``<run>/tracking/``. The tracking parameters (``period``, ``window``, ...) are
        only accepted with it.

    Returns
    -------
    RunResult
    """
    given = _gather(parameters, params_file)
    data = _take_data(given, data)
    checked = check_parameters(given, "run")
    _check_tracking(checked, track, "run")
    effective = params.effective(checked)
    if data is not None:
        data = resolve(data)
        if not Path(data).exists():
            raise InputError(f"input data {data} not found")
    nb_dir = Path(notebooks_dir) if notebooks_dir else NOTEBOOK_DIR
    notebooks = (*NOTEBOOKS, TRACK_NOTEBOOK) if track else NOTEBOOKS
    for nb in notebooks:
        if not (nb_dir / nb).is_file():
            raise InputError(f"notebook {nb_dir / nb} not found: the pipeline needs {', '.join(notebooks)}")

    timings = {}
    bar = None
    # the kernels' own log (start-up and shutdown notes, e.g. "KeyboardInterrupt caught in kernel" when
    # the runner stops a kernel) only when this module's INFO lines are shown (seglib -v); a failing
    # cell is reported from the notebook whatever the level
    kernel_arguments = [] if logger.isEnabledFor(logging.INFO) else ["--IPKernelApp.log_level=CRITICAL"]
    kernels: list = []  # (manager, warm-up client) per notebook, started one notebook ahead
    stopping: list[threading.Thread] = []  # a used kernel shuts down while the next notebook runs
    with tempfile.TemporaryDirectory(prefix="seglib-kernel-") as sockets:
        def config(k):  # each kernel its own socket names: two may be starting at once
            return _kernel_config(Path(sockets), f"kernel{k}")

        def start(k):
            return _start_kernel(kernel_name, nb_dir, nb_dir / notebooks[k], config(k), kernel_arguments)

        # the first kernel starts (and imports what notebook 01 imports) while the runner imports
        # papermill, reads the notebooks' parameters and creates the run folder
        kernels.append(start(0))
        try:
            pm = _papermill()
            declared = {nb: spec for nb, spec in declared_parameters(nb_dir).items() if nb in notebooks}
            run_dir = _new_run_dir(out)
            per_nb = _per_notebook(declared, effective, data, run_dir)
            logger.info("run folder: %s", run_dir)
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(notebooks), desc="seglib run", unit="notebook")
            if html:  # nbconvert's imports and templates load while the notebooks run (~1.5 s of CPU)
                warming = threading.Thread(target=_warm_report, name="seglib-report", daemon=True)
                warming.start()
            for i, nb in enumerate(notebooks):
                out_path = run_dir / nb
                t0 = time.perf_counter()
                logger.info("executing %s", nb)
                if bar is not None:
                    bar.set_postfix_str(Path(nb).stem)
                km = _kernel_ready(kernels[i])
                if i + 1 < len(notebooks):  # the next notebook's kernel starts while this one runs
                    kernels.append(start(i + 1))
                # the inner bar: the notebook's cells, removed when it is done
                cells = {"desc": f"  {Path(nb).stem}", "leave": False, "position": 1} if progress else False
                # the executed notebook is written once at the end (and when a cell fails), not twice per
                # cell: each write serialises and validates the whole notebook, figures included
                try:
                    pm.execute_notebook(
                        str(nb_dir / nb), str(out_path), parameters=per_nb[nb], kernel_name=kernel_name,
                        progress_bar=cells, cwd=str(nb_dir), log_output=False, km=km, config=config(i),
                        extra_arguments=kernel_arguments, request_save_on_cell_execute=False,
                    )
                except pm.PapermillExecutionError as exc:
                    raise PipelineError(_failure_message(nb, exc, out_path)) from None
                except Exception as exc:  # kernel died, notebook unreadable, ...
                    raise PipelineError(_failure_message(nb, exc, out_path)) from None
                finally:
                    stopping.append(threading.Thread(target=_stop_kernel, args=(km,), daemon=True,
                                                     name=f"seglib-stop-{i}"))
                    stopping[-1].start()
                timings[nb] = round(time.perf_counter() - t0, 3)
                if bar is not None:
                    bar.update(1)
        finally:  # kernels started but never used (a notebook failed); then wait for every shutdown
            for km, kc in kernels[len(stopping):]:
                kc.stop_channels()
                _stop_kernel(km)
            for thread in stopping:
                thread.join()
            if bar is not None:
                bar.close()

    input_path = Path(data) if data is not None else DEFAULT_DATA
    write_run_json(run_dir, effective, [input_path], timings, notebook_parameters=per_nb, track=track)
    if html:
        warming.join()
        write_report_html(run_dir, [run_dir / nb for nb in notebooks])
    _point_latest(run_dir)
    return RunResult(run_dir=run_dir, parameters=effective, timings=timings)


def _kernel_config(sockets: Path, name: str = "kernel"):
    """Kernels talk to the runner over local IPC sockets in ``sockets`` (a private temporary folder).

    Over TCP every kernel warns that its traffic is unencrypted; IPC sockets are files only this user
    can reach, so the warning does not apply and is not printed. ``name`` prefixes the socket files:
    kernels started at the same time need different ones.
    """
    from traitlets.config import Config

    return Config({"KernelManager": {"transport": "ipc", "ip": str(sockets / name)}})


def _imported_modules(notebook: Path) -> list[str]:
    """Modules a notebook's code cells import (``from a import b`` gives ``a`` and ``a.b``), in order.

    The notebook is read as plain JSON (nbformat, with its schema validation, costs ~1 s of imports
    before the first kernel could start).
    """
    import ast

    names: list[str] = []
    for cell in json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]:
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        try:
            tree = ast.parse("".join(source) if isinstance(source, list) else source)
        except SyntaxError:  # IPython magics: not ours to parse
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return list(dict.fromkeys(names))


def _start_kernel(kernel_name: str, cwd: Path, notebook: Path, config=None, arguments=()):
    """Start a kernel in ``cwd`` and send it :data:`WARM_UP`; returns (manager, client) at once.

    The message waits in the client's queue until the kernel listens; the notebook's own requests
    queue behind it in the kernel, so the notebook starts once the imports are done.
    """
    from jupyter_client.manager import KernelManager

    class Manager(KernelManager):  # remembers its clients, so that they are closed with the kernel
        def client(self, **kwargs):
            kc = super().client(**kwargs)
            self.__dict__.setdefault("seglib_clients", []).append(kc)
            return kc

    km = Manager(kernel_name=kernel_name, config=config)
    km.start_kernel(cwd=str(cwd), extra_arguments=list(arguments))
    kc = km.client()
    kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    code = WARM_UP.format(modules=tuple(_imported_modules(notebook)))
    kc.execute(code, silent=True, store_history=False, allow_stdin=False)
    return km, kc


def _kernel_ready(started):
    """The kernel manager of a :func:`_start_kernel` pair, its warm-up client closed."""
    km, kc = started
    kc.stop_channels()
    return km


def _stop_kernel(km) -> None:
    """Shut the kernel down and close its clients (papermill leaves its own open when given a manager)."""
    try:
        km.shutdown_kernel(now=False)
    except Exception as exc:  # already dead: nothing to stop
        logger.debug("kernel shutdown: %s", exc)
    for kc in km.__dict__.get("seglib_clients", []):
        try:
            kc.stop_channels()
            kc.context.destroy(linger=0)
        except Exception as exc:
            logger.debug("kernel client: %s", exc)


def write_run_json(run_dir: Path, parameters: dict, inputs, timings: dict, **extra) -> Path:
    """``run.json``: parameters, seed, input checksum(s), versions, timings and what the steps recorded.

    The steps' ``metrics.json`` provides ``features``, ``bases`` (the features that formed the
    segments: the map's), ``descriptors`` (the customer-table columns that only describe them, such
    as age and gender), ``segment_sizes`` and the quality figures (``metrics``, with ``stability``:
    each segment's mean Jaccard over resamples). With one input file ``input_sha256`` is its
    checksum; with several (a Dask run over a folder of parts) it is the checksum of the files'
    checksums in name order, listed in ``inputs``. ``inputs``: the input paths (read here), or their
    :class:`_Checksums` started earlier.
    """
    from seglib._files import write_json

    layout = Layout.for_run(run_dir)
    metrics = json.loads(layout.metrics.read_text()) if layout.metrics.is_file() else {}
    sums = (inputs if isinstance(inputs, _Checksums) else _Checksums(inputs, background=False)).result()
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
        "bases": metrics.pop("bases", []),
        "descriptors": metrics.pop("descriptors", []),
        "segment_sizes": metrics.pop("segment_sizes", None) or {},
        "metrics": metrics,
    }
    return write_json(run_dir / "run.json", info)


def segment(
    data: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    parameters: dict | None = None,
    params_file: str | os.PathLike | None = None,
    *,
    backend: str = "pandas",
    progress: bool = True,
    on_step=None,
    track: bool = False,
    **dask_options,
) -> RunResult:
    """The whole pipeline without notebooks, in one process or on Dask, into a new run folder.

    The same steps as :func:`run` (:func:`seglib.runner.run_segmentation`: ``seglib.steps``, or their Dask
    versions in :mod:`seglib.distributed`) with the same parameter names, for logs too big for the
    notebooks: ``data`` may be a glob or a folder of CSV / Parquet parts with ``backend="dask"``. Writes
    ``result.csv`` (or ``result/`` parts above ``max_collect`` customers), ``segments.csv``,
    ``cleaning_report.json``, ``model/`` and ``run.json``; no notebooks, no ``report.html``.

    Parameters
    ----------
    data : path, glob or folder
        The input; ``None``: ``data_path`` from ``parameters`` / ``params_file``.
    parameters, params_file
        As :func:`run`: the same names (:mod:`seglib.params`), checked the same way before any work.
        ``run.json`` records every parameter, defaults included.
    backend : {"pandas", "dask"}
    on_step : callable, optional
        ``on_step(name)`` before each step (see :func:`seglib.runner.run_segmentation`).
    track : bool
        Then track the segments over time (``seglib segment --track``): the run's model scores every
        period of ``data`` (one file), in memory, into ``<run>/tracking/`` (see :func:`track_step`).
    **dask_options
        ``scheduler`` (None: a local cluster; or ``"tcp://host:8786"``), ``n_workers``,
        ``memory_limit``, ... (see :func:`seglib.runner.run_dask`).
    """
    from seglib import runner
    from seglib.load import data_files

    runner.check_backend(backend)
    given = _gather(parameters, params_file)
    data = _take_data(given, data)
    checked = check_parameters(given, "segment")
    _check_tracking(checked, track, "segment")
    effective = params.effective(checked)
    runner.check_backend(backend, engine=effective["engine"])
    if data is None:
        raise InputError("no input data: give --data (or data_path in the parameters file)")
    files = data_files(data)
    if track and len(files) != 1:
        raise ParameterError(f"--track reads one transactions file; {data} has {len(files)}: track each "
                             "extract with `seglib track --model RUN_DIR`")
    run_dir = _new_run_dir(out)
    checksums = _Checksums(files, background=runner.overlap())  # read beside the run, for run.json
    t0 = time.perf_counter()
    segmentation = {k: v for k, v in effective.items() if params.by_name(k).step != "track"}
    runner.run_segmentation(data, run_dir, backend=backend, progress=progress, on_step=on_step,
                            **segmentation, **dask_options)
    timings = {"total": round(time.perf_counter() - t0, 3)}
    if track:  # segments over time, scored with the model just saved (in memory)
        t1 = time.perf_counter()
        tracking = {k: v for k, v in effective.items() if params.by_name(k).step == "track"}
        track_step(files[0], out_dir=run_dir, progress=progress, **tracking)
        timings["track"] = round(time.perf_counter() - t1, 3)
    write_run_json(run_dir, {**effective, "backend": backend}, checksums, timings, track=track)
    _point_latest(run_dir)
    return RunResult(run_dir=run_dir, parameters=effective, timings=timings)


def _warm_report() -> None:
    """Import nbconvert (and the summary module, for its block) and render an empty page once, so
    :func:`write_report_html` starts warm."""
    try:
        import nbformat
        from nbconvert import HTMLExporter

        import seglib.summary  # noqa: F401  (imports the segmentation steps: ~1 s)

        HTMLExporter(exclude_input=True).from_notebook_node(nbformat.v4.new_notebook())
    except Exception as exc:  # the real export reports any problem
        logger.debug("report warm-up: %s", exc)


def write_report_html(run_dir: Path, notebooks: list[Path]) -> Path:
    """One standalone HTML page from the executed notebooks, code hidden, figures embedded.

    The segment summary (``summary.html``'s block, when the run wrote one) comes first. Interactive
    widget outputs are dropped (they need a live kernel); every notebook shows its default-state
    figures as static images too, so nothing is lost in the report. Every image gets alternative text
    naming the notebook section it illustrates.
    """
    import nbformat
    from nbconvert import HTMLExporter

    from seglib._files import atomic_write_text
    from seglib.summary import SUMMARY_FILE, read_fragment

    merged = nbformat.v4.new_notebook()
    fragment = read_fragment(run_dir / SUMMARY_FILE)
    if fragment:
        cell = nbformat.v4.new_code_cell(source="", execution_count=None)
        cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": fragment})]
        cell["id"] = "summary"
        merged.cells.append(cell)
    for k, path in enumerate(notebooks):
        nb = nbformat.read(str(path), as_version=4)
        title, section = path.stem, ""
        for j, cell in enumerate(nb.cells):
            cell["id"] = f"nb{k + 1}-cell{j}"  # ids are unique per notebook only
            if cell.cell_type == "markdown":
                title, section = _headings(cell.source, title, section)
            tags = cell.get("metadata", {}).get("tags", [])
            if "parameters" in tags or "injected-parameters" in tags or "remove-from-report" in tags:
                continue
            if cell.cell_type == "code":
                cell.outputs = [
                    _with_alt_text(o, title, section) for o in cell.get("outputs", [])
                    if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})
                    and o.get("output_type") != "stream"
                ]
            merged.cells.append(cell)
    merged.metadata = {"kernelspec": {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"},
                       "language_info": {"name": "python"}}
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(merged)
    return atomic_write_text(run_dir / "report.html", body)


def _headings(markdown: str, title: str, section: str) -> tuple[str, str]:
    """The notebook title (``# ...``) and current section (``## ...``) after a markdown cell."""
    for line in markdown.splitlines():
        if line.startswith("# "):
            title, section = line[2:].strip(), ""
        elif line.startswith("## "):
            section = line[3:].strip()
    return title, section


def _with_alt_text(output, title: str, section: str):
    """A PNG output as an ``<img>`` with alternative text (nbconvert's template writes none)."""
    import html

    data = output.get("data", {})
    if "image/png" not in data:
        return output
    alt = f"Figure: {section} ({title})" if section else f"Figure of {title}"
    png = "".join(data["image/png"]) if isinstance(data["image/png"], list) else data["image/png"]
    tag = f'<img src="data:image/png;base64,{png.strip()}" alt="{html.escape(alt)}" style="max-width:100%">'
    new = dict(output)
    new["data"] = {"text/html": tag}
    new["metadata"] = {}
    return new


# ---------------------------------------------------------------------------------------- tracking

#: Training parameters ``seglib track --train-periods N`` accepts (the notebooks' names).
TRAIN_PARAMETERS = ("map_shape", "n_clusters", "method", "seed", "scaler", "n_epochs", "topology", "bases",
                    "feature_weights")
#: Tracking parameters (``seglib.params``, step "track") that :func:`track_step` takes.
TRACK_PARAMETERS = ("period", "window", "train_periods", "retrain_novel_share", "retrain_error_ratio")


def track_step(data_path=None, *, model_dir=params.default("model_dir"),
               period: str = params.default("period"), window: int = params.default("window"),
               train_periods: int | None = params.default("train_periods"),
               retrain_novel_share: float = params.default("retrain_novel_share"),
               retrain_error_ratio: float = params.default("retrain_error_ratio"),
               out_dir=None, tracking_dir=None, client=None, progress: bool = False, **train):
    """Segments over time as notebook 05 and ``seglib track`` run it; writes into ``tracking_dir``.

    Parameters
    ----------
    data_path : path, optional
        Transactions; None: the bundled default data (generated when missing).
    model_dir : path, optional
        A run folder or model folder. None (and no ``train_periods``): the model of ``out_dir``'s
        layout (``<run>/model`` or the project's ``reports/model``), built with default parameters by
        steps 01-04 when missing.
    period, window, train_periods, retrain_novel_share, retrain_error_ratio
        See :func:`seglib.track.track_segments` (defaults: ``seglib.params``).
    out_dir : path, optional
        The run whose model is tracked (None: the project's layout).
    tracking_dir : path, optional
        Where the outputs go; None: ``tracking/`` in the run (``reports/tracking`` by default). A
        model trained here is saved in ``<tracking_dir>/model/``.
    client : distributed.Client, optional
        Score the periods on Dask.
    **train
        Training parameters with ``train_periods`` (``map_shape``, ``n_clusters``, ``seed``, ...).

    Returns
    -------
    seglib.track.Tracking
    """
    from seglib import steps
    from seglib.notebook import default_data
    from seglib.track import track_segments, write_tracking

    layout = Layout.for_run(out_dir)
    data = default_data(data_path)
    model = None
    if train_periods is None:
        model = resolve(model_dir) if model_dir is not None else layout.model_dir
        if model_dir is None and not (model / "model.json").is_file():
            logger.info("no saved segmentation in %s: running steps 01-04 with default parameters", model)
            steps.profile_step(out_dir=out_dir)
    elif model_dir is not None:
        raise ParameterError("give either model_dir (a saved segmentation, used as it is) or train_periods "
                             "(train a new one on the first periods), not both")
    tracking = track_segments(data, model, period=period, window=window, train_periods=train_periods,
                              retrain_novel_share=retrain_novel_share,
                              retrain_error_ratio=retrain_error_ratio, client=client, progress=progress,
                              **train)
    dest = resolve(tracking_dir) if tracking_dir is not None else layout.root / "tracking"
    write_tracking(tracking, dest)
    if tracking.trained_on:
        tracking.model.save(dest / "model")
    tracking.out_dir = dest
    return tracking


def track(data=None, out=None, *, model=None, parameters: dict | None = None, params_file=None,
          backend: str = "pandas", progress: bool = True, **dask_options):
    """``seglib track``: :func:`track_step` with checked parameters, in memory or on Dask.

    ``parameters`` (and ``params_file``, which they override) hold tracking parameters
    (``period``, ``window``, ``train_periods``, ``retrain_novel_share``, ``retrain_error_ratio``) and,
    with ``train_periods``, training ones (``map_shape``, ``n_clusters``, ``method``, ``seed``,
    ``scaler``, ``n_epochs``, ``topology``). ``backend="dask"`` scores the periods in parallel on a
    Dask cluster (``dask_options``: ``scheduler``, ``n_workers``, ``memory_limit``).
    """
    from seglib import runner
    from seglib.params import check_parameters

    runner.check_backend(backend)
    given = dict(load_params_file(params_file)) if params_file else {}
    given.update(parameters or {})
    valid = (*TRACK_PARAMETERS, *TRAIN_PARAMETERS)
    for name in given:
        if name not in valid:
            raise ParameterError(f"unknown parameter {name!r}; valid parameters: {', '.join(valid)}")
    given = check_parameters(given)
    train = {k: given.pop(k) for k in TRAIN_PARAMETERS if k in given}
    if train and given.get("train_periods") is None:
        raise ParameterError(f"training parameter(s) {sorted(train)} need --train-periods N (a saved model "
                             "is used as it is)")
    if model is None and given.get("train_periods") is None:
        raise ParameterError("give --model RUN_DIR (a saved segmentation) or --train-periods N (train one on "
                             "the first N periods)")
    if data is not None and not Path(resolve(data)).exists():
        raise InputError(f"input data {resolve(data)} not found")
    out = resolve(out) if out is not None else Layout.for_run(None).root / "tracking"
    kwargs = dict(model_dir=model, tracking_dir=out, progress=progress, **given, **train)
    if backend == "dask":
        from seglib import distributed

        with distributed.dask_client(**dask_options) as client:
            return track_step(data, client=client, **kwargs)
    return track_step(data, **kwargs)
