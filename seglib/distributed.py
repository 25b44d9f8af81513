"""The Dask backend: data-parallel plumbing around the steps' public building blocks.

The data stay on the workers, in partitions (:class:`Partitions`); this module maps the step modules'
functions over them (:func:`~seglib.clean.clean_partition`, :func:`~seglib.features.customer_partials`,
:func:`~seglib.features.finalize_customers`, :func:`~seglib.som.epoch_stats`, ...), reduces their
small results in partition order and hands them to the same fits as the in-memory path
(``fit_from_stats``, :meth:`~seglib.som.SOM.fit_stats`, :func:`~seglib.cluster.fit_cut`), so both
backends give the same results. :func:`seglib.runner.run_dask` sequences the steps into a run folder with
these primitives (and :func:`~seglib.som.map_quality` over :meth:`Partitions.reduce`) and the steps'
writers, and :func:`seglib.runner.run_segmentation` chooses the backend. More: ``docs/dask.md``.

Needs the optional extra ``dask`` (``pip install "seglib[dask]"``: dask[dataframe], distributed).
"""

from __future__ import annotations

import logging
import math
import operator
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from tqdm.auto import tqdm

from seglib._files import atomic_path
from seglib.clean import (
    CleaningReport,
    check_ages,
    check_bounds,
    clean_partition,
    combine_plausibility_stats,
    file_plausibility_stats,
    reference_bounds,
)
from seglib.cluster import (
    PrototypeClustering,
    add_starts_stats,
    customer_means,
    fit_cut,
    majority_of,
    nearest_segment,
    segments_frame,
    starts_stats,
    unit_segment_counts,
    unit_sums,
)
from seglib.errors import InputError, ParameterError, check_bool, check_int, check_option
from seglib.features import (
    categories,
    combine_block,
    conform_partials,
    customer_partials,
    customers_meta,
    feature_pipeline,
    finalize_block,
    fit_builder_from_blocks,
    fit_scaler_from_blocks,
    partials_meta,
    scale_block,
    transaction_key,
)
from seglib.load import data_files, load_transactions
from seglib.params import defaults, effective
from seglib.som import SOM, best_units, epoch_stats, one_blas_thread, reduce_moments

try:
    import dask
    import dask.dataframe as dd
    from distributed import Client, LocalCluster, as_completed, futures_of, get_client, wait
except ImportError:  # the optional extra is not installed; _require_dask says how to get it
    dd = None

__all__ = ["Partitions", "DaskClean", "DaskFeatures", "DaskClusters", "dask_client", "clean_dask",
           "customer_features", "fit_som", "cluster_dask", "write_parts", "collect_customers",
           "segment_totals", "sample_rows"]

logger = logging.getLogger(__name__)

#: Formats of the per-partition result files.
PART_FORMATS = ("parquet", "csv")
#: (customer, store) rows per partition of the customer tables aimed at when ``npartitions=None``.
CUSTOMERS_PER_PARTITION = 200_000
#: glibc's mmap and trim thresholds in local workers: Dask's default made ``epoch_stats`` 1.5-4x slower in
#: a worker than in a plain process (``docs/dask.md``, "An existing cluster").
MALLOC_THRESHOLD = 16 * 2**20
_PART = re.compile(r"part-\d{5}\.(parquet|csv)")


def _require_dask() -> None:
    if dd is None:
        raise ImportError('the Dask backend needs dask and distributed: pip install "seglib[dask]" '
                          "(or: pip install 'dask[dataframe]' distributed)")


# ----------------------------------------------------------------------------------------------------
# input files and the cluster


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextmanager
def dask_client(scheduler=None, *, n_workers: int | None = None, memory_limit="auto",
                dashboard_address: str = ":8787"):
    """A Dask client for the duration of a ``with`` block; the dashboard link is logged.

    Parameters
    ----------
    scheduler : None, str or distributed.Client
        None: a ``LocalCluster`` of single-threaded worker processes (the SOM's matrix products use the
        cores best so), closed at the end. ``"tcp://host:8786"``: a running scheduler, left running. A
        ``Client``: used as is and left open.
    n_workers : int, optional
        Workers of the local cluster; None: one per core.
    memory_limit : str or int, default "auto"
        Per local worker (e.g. ``"4GB"``); "auto" shares the machine's memory. Give each at least 2 GB
        and 5x the size of one input file (sizing: ``docs/dask.md``).
    dashboard_address : str, default ":8787"
        Of the local cluster (":0" picks a free port).
    """
    _require_dask()
    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler is not None and not isinstance(scheduler, str):
        raise ParameterError(f"scheduler={scheduler!r} is not valid; give None (a local cluster), an address "
                             "such as 'tcp://host:8786', or a distributed.Client")
    if scheduler is not None and (n_workers is not None or memory_limit != "auto"):
        raise ParameterError("n_workers and memory_limit size a local cluster (scheduler=None); an existing "
                             "cluster is sized by the `dask worker` commands that started it")
    cluster = None
    if scheduler is None:
        n = _cores() if n_workers is None else check_int("n_workers", n_workers, minimum=1)
        environ = "distributed.nanny.pre-spawn-environ."
        with dask.config.set({environ + "MALLOC_MMAP_THRESHOLD_": MALLOC_THRESHOLD,
                              environ + "MALLOC_TRIM_THRESHOLD_": MALLOC_THRESHOLD}):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   memory_limit=memory_limit, dashboard_address=dashboard_address,
                                   silence_logs=logging.WARNING)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ParameterError(f"scheduler={scheduler!r}: cannot connect ({exc}); give the address of a "
                                 "running scheduler such as 'tcp://host:8786', or None for a local cluster"
                                 ) from None
    try:
        workers = client.scheduler_info()["workers"]
        logger.info("Dask dashboard: %s (%d workers, %d threads)", client.dashboard_link, len(workers),
                    sum(w["nthreads"] for w in workers.values()))
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _client(client):
    """The given client, or the current default one."""
    _require_dask()
    if client is not None:
        return client
    try:
        return get_client()
    except ValueError:
        raise ParameterError("no Dask client: run inside `with dask_client(scheduler) as client:` or pass "
                             "client=...") from None


# ----------------------------------------------------------------------------------------------------
# a distributed table: futures of pandas partitions, in order


@dataclass
class Partitions:
    """A table spread over the workers: one future per pandas partition, in order, held in memory there.

    ``meta`` is an empty frame with the columns and dtypes. :meth:`to_dask` gives a ``dask.dataframe``
    over the same partitions (nothing is recomputed); :meth:`compute` collects the whole table: only
    for small tables.
    """

    futures: list
    meta: pd.DataFrame

    @property
    def npartitions(self) -> int:
        return len(self.futures)

    def to_dask(self):
        """The table as a ``dask.dataframe.DataFrame`` (lazy view of the persisted partitions)."""
        return dd.from_delayed(self.futures, meta=self.meta, verify_meta=False)

    def compute(self) -> pd.DataFrame:
        """Collect every partition into one pandas frame (mind the size)."""
        parts = self.futures[0].client.gather(self.futures)
        return pd.concat(parts) if parts else self.meta.copy()

    def map(self, func, *others, **kwargs) -> list:
        """Futures of ``func(part, *others_i, **kwargs)`` per partition ``i``.

        ``others`` are other :class:`Partitions` (aligned partition by partition) or lists of one value
        per partition; ``kwargs`` go to every call.
        """
        iterables = [o.futures if isinstance(o, Partitions) else list(o) for o in others]
        return self.futures[0].client.map(func, self.futures, *iterables, **kwargs)

    def reduce(self, func, *others, **kwargs) -> list:
        """``func`` of every partition (see :meth:`map`), gathered in partition order."""
        futures = self.map(func, *others, **kwargs)
        return self.futures[0].client.gather(futures)


def _partitions_of(client, frame) -> list:
    """Futures of a dask DataFrame's partitions, persisted, in partition order."""
    frame = client.persist(frame)
    futures = futures_of(frame)
    return sorted(futures, key=lambda f: f.key[1])


def _as_partitions(client, data) -> Partitions:
    if isinstance(data, Partitions):
        return data
    if dd is not None and isinstance(data, dd.DataFrame):
        return Partitions(_partitions_of(client, data), data._meta)
    raise ParameterError(f"expected Partitions or a dask DataFrame, got {type(data).__name__}")


# ----------------------------------------------------------------------------------------------------
# step 01: read and clean, one task per file; per-customer partial aggregates


@dataclass
class DaskClean:
    """What the cleaning step produced: the summed report and per-(customer, store) partial aggregates
    (:func:`~seglib.features.customer_partials` of each file, combined after a shuffle by customer)."""

    partials: Partitions  # columns customer_key, store, then PARTIAL_AGGREGATES / count columns
    report: CleaningReport
    as_of: str  # ISO date
    programmes: list | None
    genders: list | None
    transaction_key: list
    id_column: str
    files: list


def _file_info(path, columns, date_format, dob_format, encoding) -> dict:
    raw = load_transactions(path, columns, date_format=date_format, dob_format=dob_format, encoding=encoding)
    attrs = raw.attrs
    return {"roles": list(raw.columns), "mapping": attrs["columns"], "date_format": attrs["date_format"],
            "dob_format": attrs["dob_format"]}


def _clean_file(path, part, *, roles, columns, as_of, date_format, dob_format, encoding, min_age, max_age,
                drop_duplicates, clean_dir, min_date=None, max_date=None, max_amount=None):
    """Load, clean and aggregate one file (one task).

    Returns the file's per-(customer, store) partials (None when no line is kept) and the small things
    the client collects: the report, the customer keys all of whose rows were dropped, the discount
    programmes and genders seen, and the columns that define a transaction.
    """
    raw = load_transactions(path, columns, date_format=date_format, dob_format=dob_format, encoding=encoding)
    if list(raw.columns) != roles:
        raise InputError(f"{path}: has the roles {list(raw.columns)} but the first file has {roles}; every "
                         "file of a data set must have the same columns")
    clean, report = clean_partition(raw, as_of, min_age=min_age, max_age=max_age, date_format=date_format,
                                    dob_format=dob_format, drop_duplicates=drop_duplicates,
                                    malformed_rows=len(raw.attrs.get("malformed_rows") or []),
                                    min_date=min_date, max_date=max_date, max_amount=max_amount)
    dropped = sorted(report.keys_read - report.keys_kept)
    report.keys_read = report.keys_kept = None  # distinct customers are counted on the combined table
    report.customers_read = report.customers_kept = None
    if clean_dir is not None:
        with atomic_path(Path(clean_dir) / f"part-{part:05d}.parquet") as tmp:
            clean.to_parquet(tmp, index=False)
    partials = None
    if len(clean):
        partials = customer_partials(clean).reset_index()
        partials["part"] = part
    found = categories(clean) if len(clean) else (None, None)
    return partials, (report, dropped, found, transaction_key(clean))


def _distinct_customers(part: pd.DataFrame, dropped) -> tuple[int, int]:
    keys = pd.unique(part["customer_key"])
    return len(keys), int(np.isin(dropped, np.asarray(keys, dtype=object)).sum())


def clean_dask(data, *, client=None, encoding: str | None = None, drop_duplicates: bool = False,
               npartitions: int | None = None, clean_dir: str | os.PathLike | None = None,
               progress: bool = True, **parameters) -> DaskClean:
    """Read and clean every file on the workers (the rules of :mod:`seglib.clean`), one task per file.

    Parameters
    ----------
    data : str, path or list
        Files (:func:`~seglib.load.data_files`) of 50-500 MB each (one file is one task). A transaction
        must not span two files (files cut by date, store or customer never split one).
    client : distributed.Client, optional
        Default: the current client (see :func:`dask_client`).
    encoding, drop_duplicates
        See :func:`~seglib.clean.clean_file` (duplicates are found within a file).
    npartitions : int, optional
        Partitions of the customer tables. None: about :data:`CUSTOMERS_PER_PARTITION` customers each,
        so the same data give the same bits on any cluster; else at least two per worker thread.
    clean_dir : str or path, optional
        Also write each file's cleaned lines as ``<clean_dir>/part-NNNNN.parquet``.
    progress : bool, default True
        A progress bar over the files.
    **parameters
        The clean step's run parameters (:mod:`seglib.params`), as :func:`seglib.steps.clean_step` (any
        other name is a ParameterError listing them). The formats are detected on the first file.
        ``as_of`` and the plausibility bounds, when not given, come from every file's
        :func:`~seglib.clean.plausibility_stats` (a first pass), as in memory.
    """
    step = defaults("clean")
    if set(parameters) - set(step):
        raise ParameterError(f"clean_dask: {', '.join(repr(n) for n in parameters if n not in step)} not a "
                             f"parameter of the clean step; valid ones: {', '.join(step)}")
    values = effective(parameters)
    columns, date_format, dob_format = values["columns"], values["date_format"], values["dob_format"]
    client = _client(client)
    files = data_files(data)
    as_of = values["as_of"]  # checked by effective; a Timestamp from reference_bounds or clean_partition
    min_age, max_age = check_ages(values["min_age"], values["max_age"])
    min_date, max_date, max_amount = check_bounds(values["min_date"], values["max_date"],
                                                  values["max_amount"])
    drop_duplicates = check_bool("drop_duplicates", drop_duplicates)
    check_int("npartitions", npartitions, minimum=1, allow_none=True)
    info = client.submit(_file_info, files[0], columns, date_format, dob_format, encoding).result()
    date_format, dob_format = info["date_format"], info["dob_format"]
    if as_of is None or min_date is None or max_date is None or max_amount is None:
        stats = client.gather(client.map(file_plausibility_stats, files, columns=columns,
                                         date_format=date_format, encoding=encoding))
        as_of, bounds = reference_bounds(combine_plausibility_stats(stats), str(data), as_of=as_of,
                                         min_date=min_date, max_date=max_date, max_amount=max_amount)
        min_date, max_date, max_amount = bounds.min_date, bounds.max_date, bounds.max_amount
    if clean_dir is not None:
        Path(clean_dir).mkdir(parents=True, exist_ok=True)
    futures = client.map(_clean_file, files, range(len(files)), roles=info["roles"], columns=columns,
                         as_of=as_of, date_format=date_format, dob_format=dob_format, encoding=encoding,
                         min_age=min_age, max_age=max_age, drop_duplicates=drop_duplicates,
                         clean_dir=None if clean_dir is None else str(clean_dir), min_date=min_date,
                         max_date=max_date, max_amount=max_amount)
    for _ in tqdm(as_completed(futures), total=len(futures), desc="cleaning files", unit="file",
                  disable=not progress):
        pass
    small = client.gather(client.map(operator.itemgetter(1), futures))
    partial_futures = client.map(operator.itemgetter(0), futures)
    del futures
    report = sum(s[0] for s in small)
    if report.rows_kept == 0:
        raise InputError(f"{data}: no row is left after cleaning ({report.rows_dropped})")
    programmes, genders = (_union(s[2][i] for s in small) for i in (0, 1))
    first = next(f for f, s in zip(partial_futures, small) if s[0].rows_kept)
    meta = partials_meta(client.submit(lambda p: p.iloc[:0], first).result(), programmes, genders)
    conformed = client.map(conform_partials, partial_futures, meta=meta)
    n_rows = sum(client.gather(client.map(len, conformed)))
    n_parts = npartitions or max(1, math.ceil(n_rows / CUSTOMERS_PER_PARTITION))
    frame = dd.from_delayed(conformed, meta=meta, verify_meta=False).shuffle(on="customer_key",
                                                                             npartitions=n_parts)
    combined_meta = combine_block(meta)
    partials = Partitions(_partitions_of(client, frame.map_partitions(combine_block, meta=combined_meta)),
                          combined_meta)
    del conformed, partial_futures, frame
    # customers read = those kept + those whose rows were all dropped in a file and who are kept in none
    dropped = np.array(sorted(set().union(*(s[1] for s in small))), dtype=object)
    counts = partials.reduce(_distinct_customers, dropped=client.scatter(dropped, broadcast=True))
    kept = sum(c[0] for c in counts)
    report.customers_kept, report.customers_read = kept, kept + len(dropped) - sum(c[1] for c in counts)
    report.source = str(data) if isinstance(data, (str, os.PathLike)) else f"{len(files)} files"
    tkey = next(s[3] for s in small if s[0].rows_kept)  # one is: rows_kept == 0 raised above
    logger.info("cleaned %d files: %d rows read, %d kept, %d customers; dropped %s", len(files),
                report.rows_read, report.rows_kept, kept, {k: v for k, v in report.rows_dropped.items() if v}
                or "none")
    return DaskClean(partials=partials, report=report.check(), as_of=report.as_of, programmes=programmes,
                     genders=genders, transaction_key=tkey,
                     id_column=info["mapping"].get("customer_id", "customerID"), files=files)


def _union(lists) -> list | None:
    lists = [x for x in lists if x is not None]
    return sorted(set().union(*lists)) if lists else None


# ----------------------------------------------------------------------------------------------------
# step 02: customer table, feature builder and scaler from reductions, the scaled matrix


@dataclass
class DaskFeatures:
    """What the features step produced, mirroring :class:`seglib.steps.SomStep` without the SOM."""

    customers: Partitions  # index customer_key: customer_id + features in original units
    X: Partitions  # the scaled features (float64), same partitions and index
    pipeline: Pipeline  # fitted FeatureBuilder -> FeatureScaler, as the pandas backend's
    n_customers: int

    @property
    def feature_names(self) -> list[str]:
        return list(self.X.meta.columns)


def customer_features(cleaned: DaskClean, pipeline: Pipeline | None = None, *, client=None) -> DaskFeatures:
    """Customer table, fitted feature pipeline and scaled matrix, all on the workers (persisted).

    ``pipeline`` is the unfitted :func:`seglib.features.feature_pipeline` (``level="customer"``; default
    its defaults), fitted as in memory but from reductions over the partitions
    (:func:`~seglib.features.fit_builder_from_blocks`, :func:`~seglib.features.fit_scaler_from_blocks`:
    medians and quartiles exact). ``client``: default, the current one.
    """
    client = _client(client)
    partials = cleaned.partials
    meta = customers_meta(partials.meta, cleaned.as_of, has_store="store" in cleaned.transaction_key)
    customers = Partitions(partials.map(finalize_block, as_of=cleaned.as_of, meta=meta), meta)
    n_customers = sum(customers.reduce(len))
    pipe = feature_pipeline("customer", as_of=cleaned.as_of) if pipeline is None else pipeline
    builder = fit_builder_from_blocks(pipe["features"].set_params(as_of=cleaned.as_of), customers.reduce,
                                      meta.columns, as_of=cleaned.as_of, programmes=cleaned.programmes,
                                      genders=cleaned.genders, transaction_key=cleaned.transaction_key)
    fitted = fit_scaler_from_blocks(pipe["scale"], customers.reduce, builder)
    X = Partitions(customers.map(scale_block, builder=builder, scaler=fitted),
                   pd.DataFrame(columns=builder.feature_names_, dtype=float, index=meta.index[:0]))
    wait(X.futures)
    logger.info("%d customers, %d features: %s", n_customers, len(builder.feature_names_),
                ", ".join(builder.feature_names_))
    return DaskFeatures(customers=customers, X=X, pipeline=pipe, n_customers=n_customers)


# ----------------------------------------------------------------------------------------------------
# step 02: the batch SOM, one map + reduce per epoch


def _epoch(parts, weights) -> list:
    """``epoch_stats`` of each partition of a group (BLAS runs one thread in a dask worker: its nanny sets
    OPENBLAS_NUM_THREADS=1 and the like)."""
    return [epoch_stats(part.to_numpy(), weights) for part in parts]


def _local_groups(X: Partitions) -> list[tuple[str | None, list[int]]]:
    """Partition indexes grouped by the worker holding them, one group per worker thread.

    An epoch is one task per group instead of one per partition: on 2 cores, 12 tasks of 7 ms per epoch
    spent as much time being sent and collected as computing (2 workers were 1.35x faster than one);
    one task per worker made it 1.75x.
    """
    client = X.futures[0].client
    wait(X.futures)
    where = client.who_has(X.futures)
    threads = {w: info["nthreads"] for w, info in client.scheduler_info()["workers"].items()}
    by_worker: dict = {}
    for i, f in enumerate(X.futures):
        by_worker.setdefault((where.get(f.key) or [None])[0], []).append(i)
    groups = []
    for worker, indexes in by_worker.items():
        n = max(1, min(threads.get(worker, 1), len(indexes)))
        groups += [(worker, indexes[j::n]) for j in range(n)]
    logger.debug("%d partitions in %d groups: %s", X.npartitions, len(groups), [len(g[1]) for g in groups])
    return groups


def _epoch_totals(X: Partitions, weights, groups=None):
    """``epoch_stats`` of the whole table: the partitions' results added in partition order (so the sums
    do not depend on which worker computed what)."""
    client = X.futures[0].client
    groups = _local_groups(X) if groups is None else groups
    tasks = [client.submit(_epoch, [X.futures[i] for i in indexes], weights,
                           workers=worker and [worker], allow_other_workers=True)
             for worker, indexes in groups]
    stats = {}
    for (_, indexes), results in zip(groups, client.gather(tasks)):
        stats.update(zip(indexes, results))
    units, n_features = weights.shape
    sums, counts, sum_dist = np.zeros((units, n_features)), np.zeros(units, dtype=np.int64), 0.0
    for i in range(X.npartitions):
        sums += stats[i][0]
        counts += stats[i][1]
        sum_dist += stats[i][2]
    return sums, counts, sum_dist


def fit_som(X, som: SOM | None = None, *, client=None, progress: bool | None = None,
            timings: dict | None = None) -> SOM:
    """Train a batch SOM (default ``SOM()``, fitted in place) on a distributed matrix (:class:`Partitions`
    or a dask DataFrame, persisted first): :meth:`~seglib.som.SOM.fit_stats` with moments and epoch
    statistics reduced over the partitions in partition order, so the map is ``SOM.fit``'s and does not
    depend on the workers. ``progress``: a bar over the epochs (None: ``som.progress``). ``timings``: a
    dict that gets the seconds of the epoch loop as ``"som_epochs"``. BLAS is pinned to one thread in the
    client: idle OpenBLAS threads spinning after each ``update_weights`` took a core from the workers."""
    client = _client(client)
    X = _as_partitions(client, X)
    som = SOM() if som is None else som
    check_option("engine (Dask backend)", som.engine, ["batch"])
    if progress is not None:
        som.progress = progress
    with one_blas_thread():
        mean, cov, n = reduce_moments(X.reduce)
        groups = _local_groups(X)
        started = time.perf_counter()
        som.fit_stats(partial(_epoch_totals, X, groups=groups), mean, cov, n)
        seconds = time.perf_counter() - started
    if timings is not None:
        timings["som_epochs"] = seconds
    logger.info("SOM %dx%d (batch on Dask, %s) trained on %d x %d: %d epochs in %.2f s, "
                "quantization error %.4f -> %.4f", *som.map_shape_, som.weights_.dtype, n, len(mean),
                len(som.sigmas_), seconds, som.history_[0], som.history_[-1])
    return som


# ----------------------------------------------------------------------------------------------------
# step 03: prototype clustering and segment assignment


@dataclass
class DaskClusters:
    """What the cluster step produced, mirroring :class:`seglib.steps.ClusterStep`."""

    clustering: PrototypeClustering
    segments: Partitions  # index customer_key: customer_id, bmu, som_row, som_col, segment
    hits: np.ndarray  # customers per unit, shape (rows, cols)
    segment_means: np.ndarray | None = None  # customer-level segments' means (assign="customer")
    unit_segments: np.ndarray | None = None  # each unit's majority segment (what the map and model keep)
    unit_sums: np.ndarray | None = None  # per-unit sums of the scaled features (units, features), exact


def _assign(customers, X, weights, unit_labels, map_shape, means=None) -> pd.DataFrame:
    segment = None if means is None else nearest_segment(X.to_numpy(), means)
    return segments_frame(customers["customer_id"], best_units(X.to_numpy(), weights), map_shape, unit_labels,
                          X.index, segment=segment)


def _starts_stats(part, offset, starts):
    return starts_stats(part.to_numpy(), starts, offset=offset)


def _row_at(part, offset, i):
    return part.to_numpy()[i - offset] if offset <= i < offset + len(part) else None


def _unit_segment_counts(segments, units, k) -> np.ndarray:
    return unit_segment_counts(segments["bmu"].to_numpy(), segments["segment"].to_numpy(), units, k)


def _customer_means(X, pc: PrototypeClustering) -> np.ndarray:
    """Consolidation customer by customer (:func:`seglib.cluster.customer_segments`) as reductions:
    each iteration adds the partitions' :class:`~seglib.cluster.SegmentStats` of every start; the loop,
    the update step and the choice of the start are the in-memory path's
    (:func:`seglib.cluster.customer_means`). Renumbers ``pc`` alike."""
    offsets = list(np.cumsum([0] + X.reduce(len))[:-1])

    def stats_of(starts):
        return add_starts_stats(X.reduce(_starts_stats, offsets, starts=starts))

    def row(i):
        return next(r for r in X.reduce(_row_at, offsets, i=i) if r is not None)

    return customer_means(stats_of, pc, row=row)


def _unit_stats(part, weights) -> tuple[np.ndarray, np.ndarray]:
    """A partition's customers and summed features per unit (:func:`seglib.cluster.unit_sums`)."""
    x = part.to_numpy()
    bmu = best_units(x, weights)
    return np.bincount(bmu, minlength=len(weights)), unit_sums(x, bmu, len(weights))


def cluster_dask(som: SOM, features: DaskFeatures, *, client=None, **parameters) -> DaskClusters:
    """Cluster the prototypes on the client (:func:`seglib.cluster.fit_cut`) with hits and unit sums
    from reductions; assign every customer on the workers (``segments``, in the partitions of
    ``features``). ``parameters``: run parameters (:mod:`seglib.params`), as
    :func:`seglib.steps.cluster_step`; with ``assign="customer"`` each consolidation iteration is one
    more reduction."""
    values = effective(parameters)
    client = _client(client)
    X = features.X
    codebook = som.weights_.reshape(-1, som.n_features_in_)
    hits, sums = np.zeros(len(codebook), dtype=np.int64), np.zeros(codebook.shape)
    for part_hits, part_sums in X.reduce(_unit_stats, weights=codebook):  # added in partition order
        hits, sums = hits + part_hits, sums + part_sums
    hits = hits.reshape(som.map_shape_)
    pc = fit_cut(som.weights_, hits, sums, topology=som.topology, random_state=values["seed"],
                 **{n: values[n] for n in defaults("cluster")})
    means = _customer_means(X, pc) if values["assign"] == "customer" and pc.consolidate else None
    ints = {c: pd.Series(dtype="int64") for c in ("bmu", "som_row", "som_col", "segment")}
    meta = pd.DataFrame({"customer_id": features.customers.meta["customer_id"], **ints}, index=X.meta.index)
    segments = Partitions(features.customers.map(_assign, X, weights=codebook, unit_labels=pc.unit_labels_,
                                                 map_shape=som.map_shape_, means=means), meta)
    unit_segments = np.asarray(pc.unit_labels_)
    if means is not None:  # each unit's majority segment, as seglib.cluster.unit_majority
        counts = sum(segments.reduce(_unit_segment_counts, units=len(codebook), k=int(pc.n_clusters_)))
        unit_segments = majority_of(counts, unit_segments)
    return DaskClusters(clustering=pc, segments=segments, hits=hits, segment_means=means,
                        unit_segments=unit_segments, unit_sums=sums)


# ----------------------------------------------------------------------------------------------------
# step 04: result parts, and the customers the client collects


def _write_part(customers, segments, path, id_column, fmt) -> int:
    from seglib.profile import result_table, write_result

    table = result_table(customers, segments["segment"], segments["som_row"], segments["som_col"],
                         id_column=id_column)
    if fmt == "csv":
        write_result(path, table)
    else:
        with atomic_path(path) as tmp:
            table.to_parquet(tmp, index=False)
    return len(table)


def write_parts(features: DaskFeatures, clusters: DaskClusters, folder, *, id_column: str = "customerID",
                parts_format: str = "parquet") -> list[Path]:
    """Write ``<folder>/part-NNNNN.<fmt>``, one per partition, each the
    :func:`~seglib.profile.result_table` of its customers (the columns of ``result.csv``); older parts
    in ``folder`` are removed. ``parts_format``: ``"parquet"`` (smaller, keeps dtypes) or ``"csv"``
    (as ``result.csv``). Returns the paths, in partition order."""
    check_option("parts_format", parts_format, PART_FORMATS)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if _PART.fullmatch(old.name):
            old.unlink()
    paths = [folder / f"part-{i:05d}.{parts_format}" for i in range(features.customers.npartitions)]
    features.customers.reduce(_write_part, clusters.segments, [str(p) for p in paths], id_column=id_column,
                              fmt=parts_format)
    return paths


def _sample(part, seed, *others, frac) -> list:
    """A seeded sample of a partition's rows: those of ``part`` and of the aligned ``others`` (the
    customer table, the segments, ``X``) that a draw of probability ``frac`` per row keeps."""
    keep = np.random.default_rng(seed).random(len(part)) < frac
    return [frame[keep] for frame in (part, *others)]


def _seeds(X: Partitions, seed: int) -> list[int]:
    """One seed per partition, derived from the run's ``seed``."""
    return [seed * 100_003 + i for i in range(X.npartitions)]


def collect_customers(features: DaskFeatures, clusters: DaskClusters, max_collect: int, seed: int
                      ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The customer table, the segments and the scaled features collected on the client.

    Every customer (partition order) when there are at most ``max_collect`` (plan on about 1.5 KB of
    client memory each); else a seeded sample of at most ``max_collect`` in key order
    (:func:`seglib.steps.at_most` of the partitions' seeded draws): the same seed gives the same sample
    on any cluster of the same partitions.
    """
    from seglib.steps import at_most

    check_int("max_collect", max_collect, minimum=1)
    customers, segments, X = features.customers, clusters.segments, features.X
    if features.n_customers <= max_collect:
        return customers.compute(), segments.compute(), X.compute()
    parts = customers.reduce(_sample, _seeds(X, seed), segments, X, frac=max_collect / features.n_customers)
    scaled = at_most(pd.concat([p[2] for p in parts]), max_collect, seed)
    return (pd.concat([p[0] for p in parts]).reindex(scaled.index),
            pd.concat([p[1] for p in parts]).reindex(scaled.index), scaled)


def _segment_sums(customers, segments, money):
    spend = customers[money].astype(float).fillna(0.0) if money in customers else 0.0 * segments["segment"]
    return pd.DataFrame({"customers": segments["segment"].value_counts(),
                         "money": spend.groupby(segments["segment"]).sum()}).fillna(0)


def segment_totals(features: DaskFeatures, clusters: DaskClusters, money: str = "monetary") -> pd.DataFrame:
    """Exact customers and summed ``money`` per segment over every customer (index: segment), a reduction
    (for :func:`seglib.profile.with_exact_sizes` when the client holds a sample)."""
    parts = features.customers.reduce(_segment_sums, clusters.segments, money=money)
    return pd.concat(parts).groupby(level=0).sum()


def sample_rows(X: Partitions, size: int, seed: int, *, n_rows: int) -> np.ndarray:
    """About ``size`` rows of ``X`` (all when it has fewer) as one array, a seeded draw per partition
    (the training distances of the saved model's novelty threshold). ``n_rows``: the rows of ``X``
    (``DaskFeatures.n_customers``), which set the share drawn."""
    n_rows = check_int("n_rows", n_rows, minimum=0)
    parts = X.reduce(_sample, _seeds(X, seed), frac=min(1.0, size / max(n_rows, 1)))
    return np.concatenate([p[0].to_numpy(dtype=float) for p in parts])
