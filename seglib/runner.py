"""The one runner of the whole pipeline, whatever the backend: ``seglib segment`` and the app call it.

:func:`run_segmentation` checks the backend and sequences clean -> features + SOM -> cluster -> profile
into a run folder: in this process with :mod:`seglib.steps` (``backend="pandas"``), or on a Dask
cluster with :func:`seglib.distributed.run_dask` (``backend="dask"``), which supplies the same steps
from data-parallel primitives and writes the same artifacts. The backend choice lives here only: the
Dask module never runs the in-memory pipeline, and the in-memory path never imports the Dask module.
"""

from __future__ import annotations

import inspect

from seglib import params, steps
from seglib._files import lean_arrow_memory, release_memory
from seglib.config import Layout
from seglib.errors import InputError, ParameterError, check_option
from seglib.load import data_files

__all__ = ["BACKENDS", "DASK_OPTIONS", "check_backend", "run_segmentation"]

#: Values of the ``backend`` parameter: in memory (one process) or on a Dask cluster.
BACKENDS = ("pandas", "dask")


def check_backend(backend, *, engine: str | None = None) -> str:
    """Return ``backend`` if it is one of :data:`BACKENDS`, else raise :class:`ParameterError`.

    With ``engine``, also check that the backend can train that SOM engine: the Dask backend trains
    the batch engine only (``engine="batch"``, the default).
    """
    check_option("backend", backend, BACKENDS)
    if backend == "dask" and engine is not None and engine != "batch":
        raise ParameterError(f"parameter engine={engine!r} is not valid with backend='dask': the Dask "
                             "backend trains the batch engine only (engine: batch)")
    return backend


def run_segmentation(data, out_dir, *, backend: str = "pandas", progress: bool = True, on_step=None,
                     **parameters) -> Layout:
    """The whole pipeline into ``out_dir`` with either backend; returns the run folder's layout.

    ``backend="pandas"`` (default) runs :mod:`seglib.steps` in this process: one input file, which must
    fit in memory with room to spare (about 10x its size on disk). ``backend="dask"`` runs
    :func:`seglib.distributed.run_dask`: any number of files, on a local cluster or
    ``scheduler="tcp://host:8786"``. Both write the same files (``result.csv``, ``segments.csv``,
    ``cleaning_report.json``, the model under ``processed/``) and give the same segments for the same
    data and seed.

    Parameters
    ----------
    backend : {"pandas", "dask"}, default "pandas"
        Choose "dask" when the log does not fit in memory or is split in many files.
    on_step : callable, optional
        Called as ``on_step(name)`` before each step (``"clean"``, ``"som"``, ``"cluster"``,
        ``"profile"``) of the pandas backend, and once with ``"dask"`` before a Dask run: for a
        progress display (the app's bar). Its return value is ignored.
    **parameters
        The run parameters of :mod:`seglib.params` (every step's but the tracking ones), with its
        defaults (the signature lists them), checked before any work; and, with ``backend="dask"``,
        the options of :func:`seglib.distributed.run_dask` (:data:`DASK_OPTIONS`: ``scheduler``,
        ``n_workers``, ``memory_limit``, ``npartitions``, ``parts_format``, ``max_collect``,
        ``write_clean``, ``encoding``).
    """
    options = {k: parameters.pop(k) for k in list(parameters) if k in DASK_OPTIONS}
    unknown = sorted(set(parameters) - set(_NAMES))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(_NAMES)} "
                             f"and, with backend='dask', {', '.join(DASK_OPTIONS)}")
    values = params.effective(parameters)
    check_backend(backend, engine=values["engine"])
    step = on_step if on_step is not None else (lambda name: None)
    if backend == "dask":
        from seglib.distributed import run_dask

        step("dask")
        return run_dask(data, out_dir, progress=progress, **options,
                        **{n: values[n] for n in _NAMES}).layout
    if options:
        raise ParameterError(f"{', '.join(sorted(options))}: option(s) of backend='dask' only")
    files = data_files(data)
    if len(files) != 1:
        raise InputError(f"{data}: {len(files)} files; backend='pandas' reads one file: use backend='dask' "
                         "for a log in several files")

    def of(name):
        return {n: values[n] for n in params.defaults(name)}

    with lean_arrow_memory():
        step("clean")
        clean = steps.clean_step(files[0], **of("clean"), out_dir=out_dir).clean  # the raw frame is freed
        release_memory()  # ... and given back to the system, below what the next steps allocate
        step("som")
        som = steps.som_step(clean, **of("som"), out_dir=out_dir, progress=progress)
        del clean
        step("cluster")
        clusters = steps.cluster_step(som, **of("cluster"), seed=values["seed"], out_dir=out_dir,
                                      progress=progress)
        step("profile")
        return steps.profile_step(clusters, **of("profile"), out_dir=out_dir).layout


#: Options of the Dask backend only (:func:`seglib.distributed.run_dask`), not run parameters.
DASK_OPTIONS = ("scheduler", "n_workers", "memory_limit", "npartitions", "parts_format", "max_collect",
                "write_clean", "encoding")
#: The run parameters :func:`run_segmentation` takes: every step's but the tracking ones.
_NAMES = [n for n in params.names() if params.by_name(n).step != "track"]
# the signature lists the parameters with the registry's defaults (help(), IDEs, the app)
run_segmentation.__signature__ = inspect.signature(run_segmentation).replace(parameters=[
    *list(inspect.signature(run_segmentation).parameters.values())[:5],
    *(inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=params.default(n)) for n in _NAMES),
    inspect.Parameter("dask_options", inspect.Parameter.VAR_KEYWORD),
])
