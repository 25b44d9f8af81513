"""The one runner of the whole pipeline, whatever the backend: ``seglib segment`` and the app call it.

:func:`run_segmentation` checks the backend and sequences clean -> features + SOM -> cluster -> profile
into a run folder: in this process with :mod:`seglib.steps` (``backend="pandas"``), or on a Dask
cluster with :func:`seglib.distributed.run_dask` (``backend="dask"``), which supplies the same steps
from data-parallel primitives and writes the same artifacts. The backend choice lives here only: the
Dask module never runs the in-memory pipeline, and the in-memory path never imports the Dask module.
"""

from __future__ import annotations

from seglib import steps
from seglib._files import lean_arrow_memory, release_memory
from seglib.config import Layout
from seglib.errors import InputError, ParameterError, check_option
from seglib.load import data_files
from seglib.params import default

__all__ = ["BACKENDS", "check_backend", "run_segmentation"]

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


def run_segmentation(
    data,
    out_dir,
    *,
    backend: str = "pandas",
    columns: dict | None = default("columns"),
    date_format: str | None = default("date_format"),
    dob_format: str | None = default("dob_format"),
    as_of=default("as_of"),
    min_age: int = default("min_age"),
    max_age: int = default("max_age"),
    min_date=default("min_date"),
    max_date=default("max_date"),
    max_amount: float | None = default("max_amount"),
    scaler: str = default("scaler"),
    engine: str = default("engine"),
    map_shape=default("map_shape"),
    n_epochs: int = default("n_epochs"),
    sigma: float | None = default("sigma"),
    sigma_end: float = default("sigma_end"),
    seed: int = default("seed"),
    topology: str = default("topology"),
    bases=default("bases"),
    feature_weights: dict | None = default("feature_weights"),
    method: str = default("method"),
    n_clusters: int | str | None = default("n_clusters"),
    max_d: float | None = default("max_d"),
    hit_weighting=default("hit_weighting"),
    connectivity: bool = default("connectivity"),
    consolidate: bool = default("consolidate"),
    assign: str = default("assign"),
    k_min: int = default("k_min"),
    k_max: int = default("k_max"),
    n_stability_runs: int = default("n_stability_runs"),
    currency: str | None = default("currency"),
    progress: bool = True,
    on_step=None,
    **dask_options,
) -> Layout:
    """The whole pipeline into ``out_dir`` with either backend; returns the run folder's layout.

    ``backend="pandas"`` (default) runs :mod:`seglib.steps` in this process: one input file, which must
    fit in memory with room to spare (about 10x its size on disk). ``backend="dask"`` runs
    :func:`seglib.distributed.run_dask`: any number of files, on a local cluster or
    ``scheduler="tcp://host:8786"``. Both
    write the same files (``result.csv``, ``segments.csv``, ``cleaning_report.json``, the model under
    ``processed/``) and give the same segments for the same data and seed.

    Parameters
    ----------
    backend : {"pandas", "dask"}, default "pandas"
        Choose "dask" when the log does not fit in memory or is split in many files.
    n_stability_runs
        Resamples of the stability check of the kept segments (``stability.json`` and the
        ``stability`` column of ``segments.csv``), as :func:`seglib.steps.cluster_step`.
    currency
        Written before amounts in ``summary.html`` (written when the customers are collected).
    on_step : callable, optional
        Called as ``on_step(name)`` before each step (``"clean"``, ``"som"``, ``"cluster"``,
        ``"profile"``) of the pandas backend, and once with ``"dask"`` before a Dask run: for a
        progress display (the app's bar). Its return value is ignored.
    **dask_options
        Options of :func:`seglib.distributed.run_dask` only (``scheduler``, ``n_workers``,
        ``memory_limit``,
        ``npartitions``, ``parts_format``, ``max_collect``, ``write_clean``, ``encoding``).
    Other parameters
        As :func:`seglib.distributed.run_dask` and the steps of :mod:`seglib.steps`; the keyword
        parameters are those of :mod:`seglib.params`, with its defaults.
    """
    check_backend(backend, engine=engine)
    step = on_step if on_step is not None else (lambda name: None)
    common = dict(columns=columns, date_format=date_format, dob_format=dob_format, as_of=as_of,
                  min_age=min_age, max_age=max_age, min_date=min_date, max_date=max_date,
                  max_amount=max_amount)
    model = dict(map_shape=map_shape, n_epochs=n_epochs, sigma=sigma, sigma_end=sigma_end, seed=seed,
                 topology=topology, bases=bases, feature_weights=feature_weights)
    cut = dict(method=method, n_clusters=n_clusters, max_d=max_d, hit_weighting=hit_weighting,
               connectivity=connectivity, consolidate=consolidate, assign=assign, k_min=k_min, k_max=k_max,
               n_stability_runs=n_stability_runs)
    if backend == "dask":
        from seglib.distributed import run_dask

        step("dask")
        return run_dask(data, out_dir, **common, scaler=scaler, engine=engine, **model, **cut,
                        currency=currency, progress=progress, **dask_options).layout
    if dask_options:
        raise ParameterError(f"{', '.join(sorted(dask_options))}: option(s) of backend='dask' only")
    files = data_files(data)
    if len(files) != 1:
        raise InputError(f"{data}: {len(files)} files; backend='pandas' reads one file: use backend='dask' "
                         "for a log in several files")
    with lean_arrow_memory():
        step("clean")
        clean = steps.clean_step(files[0], **common, out_dir=out_dir).clean  # the raw text frame is freed
        release_memory()  # ... and given back to the system, below what the next steps allocate
        step("som")
        som = steps.som_step(clean, scaler=scaler, engine=engine, **model, out_dir=out_dir,
                             progress=progress)
        del clean
        step("cluster")
        clusters = steps.cluster_step(som, **cut, seed=seed, out_dir=out_dir, progress=progress)
        step("profile")
        return steps.profile_step(clusters, out_dir=out_dir, currency=currency).layout
