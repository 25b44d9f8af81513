"""The one runner of the whole pipeline, whatever the backend: ``seglib segment`` and the app call it.

:func:`run_segmentation` checks the backend and sequences clean -> features + SOM -> cluster -> profile
into a run folder: in this process with :mod:`seglib.steps` (``backend="pandas"``), or on a Dask
cluster with :func:`run_dask` (``backend="dask"``), where :mod:`seglib.distributed` supplies the same
steps from data-parallel primitives and the steps' writers write the same artifacts. The backend
choice and the order of the steps live here only: the Dask module never runs the in-memory pipeline,
and the in-memory path never imports the Dask module.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seglib import params, steps
from seglib._files import background_writes, lean_arrow_memory, release_memory
from seglib.config import Layout
from seglib.errors import InputError, ParameterError, check_int, check_option
from seglib.load import data_files

__all__ = ["BACKENDS", "DASK_OPTIONS", "MAX_COLLECT", "check_backend", "run_segmentation", "run_dask",
           "DaskRun", "overlap"]

logger = logging.getLogger(__name__)

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
    :func:`run_dask`: any number of files, on a local cluster or
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
        the options of :func:`run_dask` (:data:`DASK_OPTIONS`: ``scheduler``,
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

    # the Parquet tables (no later step reads them back) are written in a background thread; leaving
    # the block waits for them, inside lean_arrow_memory (whose pool they allocate from)
    with lean_arrow_memory(), background_writes(enabled=overlap()) as writes:
        step("clean")
        clean = steps.clean_step(files[0], **of("clean"), out_dir=out_dir).clean  # the raw frame is freed
        release_memory()  # ... and given back to the system, below what the next steps allocate
        step("som")
        som = steps.som_step(clean, **of("som"), out_dir=out_dir, progress=progress)
        del clean
        step("cluster")
        clusters = steps.cluster_step(som, **of("cluster"), seed=values["seed"], out_dir=out_dir,
                                      progress=progress)
        if writes is not None:  # a failed table stops the run before result.csv and the model say it is done
            writes.flush()
        step("profile")
        layout = steps.profile_step(clusters, **of("profile"), out_dir=out_dir).layout
    return layout


def overlap() -> bool:
    """Whether a run overlaps work with threads (True unless the environment sets ``SEGLIB_OVERLAP=0``).

    On (the default), the in-memory run writes its Parquet tables in a background thread
    (:func:`seglib._files.background_writes`) and ``seglib segment`` checksums the input while the run
    goes on. The files are the same either way; ``SEGLIB_OVERLAP=0`` does everything in order, in the
    calling thread (for debugging, or to compare).
    """
    return os.environ.get("SEGLIB_OVERLAP", "1").strip() != "0"


#: Default ``max_collect``: up to this many customers, result.csv and the profile are made on the client.
MAX_COLLECT = 1_000_000
#: Customers whose best-unit distances define the saved model's novelty threshold (a seeded sample).
MODEL_SAMPLE = 200_000


@dataclass
class DaskRun:
    """What :func:`run_dask` produced (the files are in ``layout``)."""

    layout: Layout
    report: object  # seglib.clean.CleaningReport
    pipeline: object  # sklearn Pipeline: FeatureBuilder -> FeatureScaler
    som: object  # seglib.som.SOM
    clustering: object  # seglib.cluster.PrototypeClustering
    hits: np.ndarray
    n_customers: int
    parts: list
    result: Path | None
    profile: pd.DataFrame
    quality: dict
    timings: dict = field(default_factory=dict)  # seconds per stage, and som_epochs (the epoch loop)


def run_dask(
    data,
    out_dir,
    *,
    encoding: str | None = None,
    scheduler=None,
    n_workers: int | None = None,
    memory_limit="auto",
    npartitions: int | None = None,
    parts_format: str = "parquet",
    max_collect: int = MAX_COLLECT,
    write_clean: bool = False,
    progress: bool = True,
    **parameters,
) -> DaskRun:
    """The whole pipeline on a Dask cluster, into the run folder ``out_dir``: what a pandas run writes,
    plus ``result/part-NNNNN.parquet`` (one per partition); ``result.csv`` only up to ``max_collect``
    customers, above it a seeded sample of them for notebooks 03-04 (``docs/dask.md``, "What it writes").

    The steps are :mod:`seglib.distributed`'s primitives (clean, customer features, SOM, cut and
    assignment on the workers; what the client collects) and the steps' writers, in the order of the
    in-memory path. At most ``max_collect`` customers, the customer table is collected and
    ``result.csv`` and the profile (``segments.csv``) are exactly the pandas backend's; the run folder
    also gets the tables steps 02-03 write (:func:`seglib.steps.write_tables`), so notebooks 03 and 04
    open it (:func:`seglib.steps.load_clusters`) without cleaning or training again. Above
    ``max_collect`` there is no ``result.csv`` (read the parts); the three tables hold a seeded sample
    of at most ``max_collect`` customers (the one the stability check uses), the profile is the
    sample's with exact segment sizes and revenue shares (:func:`seglib.profile.with_exact_sizes`), and
    ``processed/sample.json`` (:class:`seglib.steps.Sample`) keeps what is exact beside the sample, so
    notebooks 03 and 04 open this run too, on the sample, and say so.

    Parameters
    ----------
    data : str, path or list
        Files, a folder or a glob pattern (:func:`seglib.distributed.clean_dask`).
    encoding, npartitions
        See :func:`seglib.distributed.clean_dask`.
    scheduler, n_workers, memory_limit
        The cluster (:func:`seglib.distributed.dask_client`): None starts a local one;
        ``"tcp://host:8786"`` uses a running one.
    parts_format : {"parquet", "csv"}, default "parquet"
        Format of the result parts (:func:`seglib.distributed.write_parts`).
    max_collect : int, default :data:`MAX_COLLECT`
        Most customers collected on the client, for result.csv, the profile and the stability check:
        plan on about 1.5 KB of client memory each (1M customers peaked at 1.6 GB in the benchmark).
        At least 1.
    write_clean : bool, default False
        Also write the cleaned lines (``interim/transactions/part-NNNNN.parquet``).
    progress : bool, default True
        Progress bars over the files and the SOM epochs.
    **parameters
        Run parameters (:mod:`seglib.params`), checked before any work; ``engine`` must be ``"batch"``.

    Returns
    -------
    DaskRun
        ``timings``: seconds per stage and ``som_epochs`` (the epoch loop alone).
    """
    from seglib import distributed as dk  # the optional extra: imported only for a Dask run
    from seglib.features import descriptor_columns, feature_pipeline
    from seglib.profile import (
        profile_segments,
        result_table,
        segment_effects,
        with_exact_sizes,
        write_result,
        write_segments,
    )
    from seglib.som import map_quality

    values = params.effective(parameters)
    check_option("engine (Dask backend)", values["engine"], ["batch"])
    som = steps.make_som(values, progress=progress)
    som.check_params()  # fail before reading anything
    check_option("parts_format", parts_format, dk.PART_FORMATS)
    check_int("max_collect", max_collect, minimum=1)
    layout = Layout.for_run(out_dir).makedirs()
    seed, timings = values["seed"], {}

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    with dk.dask_client(scheduler, n_workers=n_workers, memory_limit=memory_limit) as client:
        clock = time.perf_counter()
        cleaned = dk.clean_dask(data, client=client, **{n: values[n] for n in params.defaults("clean")},
                                encoding=encoding, npartitions=npartitions, progress=progress,
                                clean_dir=layout.interim / "transactions" if write_clean else None)
        steps.write_cleaning(layout, cleaned.report, backend="dask")
        lap("clean")
        pipe = feature_pipeline("customer", scaler=values["scaler"], bases=values["bases"],
                                weights=values["feature_weights"])
        features = dk.customer_features(cleaned, pipe, client=client)
        cleaned.partials = None  # the customer table is persisted: free the partials
        lap("features")
        som = dk.fit_som(features.X, som, client=client, progress=progress, timings=timings)
        worker_som = copy.copy(som)
        worker_som.n_jobs = 1  # one thread per task: the cluster's workers are the parallelism
        quality = map_quality(worker_som, features.X.reduce)
        lap("som")
        clusters = dk.cluster_dask(som, features, client=client, **values)
        lap("cluster")
        n = features.n_customers
        # every customer (at most max_collect), else a seeded sample: for the stability check and the tables
        table, seg, scaled = dk.collect_customers(features, clusters, max_collect, seed)
        X_kept = scaled.sort_index(kind="mergesort")  # in key order, as in memory
        steps.measure_stability(layout, X_kept, seg["segment"].reindex(X_kept.index), som,
                                clusters.clustering, n_runs=values["n_stability_runs"], seed=seed,
                                progress=progress, assign=values["assign"],
                                sample_size=values["stability_sample"])
        lap("stability")
        parts = dk.write_parts(features, clusters, layout.root / "result", id_column=cleaned.id_column,
                               parts_format=parts_format)
        table.attrs = {"as_of": str(cleaned.as_of), "id_column": cleaned.id_column}
        descriptors = descriptor_columns(features.customers.meta.columns, features.feature_names,
                                         features.pipeline["features"].dropped_)
        steps.write_tables(layout, table, scaled, seg)  # in key order, as the notebooks read them
        effects = segment_effects(table, seg["segment"])  # once: the profile and the cards share them
        profile = profile_segments(table, seg["segment"], descriptors=descriptors,
                                   stability=steps.read_stability(layout), effects=effects)
        if n <= max_collect:
            layout.sample.unlink(missing_ok=True)  # the tables hold every customer
            rows = result_table(table, seg["segment"], seg["som_row"], seg["som_col"],
                                id_column=cleaned.id_column)
            result = write_result(layout.result, rows)
            from seglib.summary import write_summary  # the summary needs every customer: collected runs only

            write_summary(layout, customers=table, labels=seg["segment"], names=profile["name"],
                          stability=profile, descriptors=descriptors, currency=values["currency"],
                          profile=profile, effects=effects)
        else:  # a sample: exact sizes and revenue shares, and sample.json with what is exact beside it
            logger.info("%d customers > max_collect=%d: no result.csv (read %s); profile of a sample", n,
                        max_collect, layout.root / "result")
            result = None
            sums = dk.segment_totals(features, clusters)
            profile = with_exact_sizes(profile, sums["customers"], sums["money"])
            pc, money = clusters.clustering, "monetary" in features.customers.meta
            steps.write_sample(layout, steps.Sample(
                n_customers=n, sample_size=len(table), hits=clusters.hits, unit_sums=clusters.unit_sums,
                cut=steps.cut_settings(pc, "customer" if clusters.segment_means is not None else "unit"),
                unit_labels=np.asarray(pc.unit_labels_), unit_segments=np.asarray(clusters.unit_segments),
                segment_means=clusters.segment_means, segment_customers=sums["customers"].astype("int64"),
                segment_revenue=sums["money"].astype(float) if money else None))
        write_segments(layout.segments_csv, profile)
        lap("write")
        X_sample = dk.sample_rows(features.X, MODEL_SAMPLE, seed, n_rows=n)  # the model's novelty threshold
    steps.write_som(layout, features.pipeline, som, features.customers.meta.columns, quality)
    pc, report = clusters.clustering, cleaned.report
    steps.write_clusters(layout, pc, assign=values["assign"], segment_means=clusters.segment_means,
                         sizes=profile["customers"],
                         segment_names={str(k): str(v) for k, v in profile["name"].items()})
    steps.save_model(layout, features.pipeline, som, clusters.unit_segments, profile["name"], X_sample,
                     columns=_column_mapping(cleaned.files[0], values["columns"]),
                     clean_settings=report.settings, id_column=cleaned.id_column,
                     segment_means=clusters.segment_means)
    return DaskRun(layout=layout, report=report, pipeline=features.pipeline, som=som, clustering=pc,
                   hits=clusters.hits, n_customers=n, parts=parts, result=result, profile=profile,
                   quality=quality, timings=timings)


def _column_mapping(path, columns) -> dict:
    """The role -> column mapping of a file's header, as the saved model records it."""
    from seglib.load import read_header, resolve_columns

    return resolve_columns(read_header(path) or [], columns, source=str(path))


#: Options of the Dask backend only (:func:`run_dask`), not run parameters.
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
