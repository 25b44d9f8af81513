"""The steps as the notebooks run them: read upstream artifacts, compute, write artifacts.

Each notebook calls one ``*_step`` function for the work that produces its artifacts, then shows
and explains the result. The ``load_*`` functions read a step's artifacts. In the project's own
``data/`` layout (``out_dir=None``), missing artifacts are built first by the upstream steps with
the default parameters, with a WARNING saying so, so every notebook runs on its own on a fresh
clone: a user who opens notebook 03 first gets the cleaned data and the SOM built for them, by the
same functions notebooks 01 and 02 call. A given run folder (``out_dir``) is never filled in
silently: a missing input artifact there is an :class:`~seglib.errors.InputError` naming the file
and the notebook (or command) that makes it.

Where the artifacts go is a :class:`seglib.config.Layout`: the project's ``data/`` and ``reports/``
folders by default (``out_dir=None``), or a batch run's folder.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seglib._files import atomic_path, current_background_writes, write_json
from seglib.config import Layout, display_path
from seglib.errors import InputError
from seglib.notebook import default_data, save_figure  # noqa: F401  save_figure: for older notebook cells
from seglib.params import check_parameter, default, defaults

logger = logging.getLogger(__name__)

__all__ = ["clean_step", "load_clean", "load_som", "load_clusters", "som_step", "cluster_step",
           "profile_step", "record_metrics", "make_som", "write_cleaning", "write_clustering",
           "write_clusters", "write_som", "Sample", "cut_settings", "read_sample", "write_sample", "at_most",
           "write_tables", "save_model"]


# ---------------------------------------------------------------------------------------- helpers


def record_metrics(layout: Layout, **values) -> dict:
    """Merge ``values`` into the run's ``metrics.json`` (read by the batch runner for ``run.json``)."""
    path = layout.metrics
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(values)
    write_json(path, data)
    return data


#: What makes each step's artifacts, for the messages about missing ones.
MAKERS = {
    "clean": "notebook 01 (clean transactions)",
    "som": "notebook 02 (train the SOM)",
    "cluster": "notebook 03 (cluster the prototypes)",
}


def artifacts(layout: Layout, step: str) -> list[Path]:
    """The files step ``step`` (``"clean"``, ``"som"`` or ``"cluster"``) writes and later steps read."""
    return {
        "clean": [layout.clean_transactions, layout.cleaning_report],
        "som": [layout.customers, layout.scaled, layout.features_spec, layout.som_dir / "som.json"],
        "cluster": [layout.segments, layout.clustering],
    }[step]


def _missing(out_dir, step: str) -> bool:
    """True when ``step``'s artifacts are missing and may be built with defaults (the project layout).

    In a given run folder a missing artifact raises :class:`InputError` naming the first missing file
    up to ``step`` and what makes it. In the project's layout it logs a WARNING and returns True.
    """
    layout = Layout.for_run(out_dir)
    absent = [p for p in artifacts(layout, step) if not p.is_file()]
    if not absent:
        return False
    if out_dir is not None:
        steps = list(MAKERS)
        first = next((s for s in steps[:steps.index(step) + 1]
                      if any(not p.is_file() for p in artifacts(layout, s))), step)
        file = next(p for p in artifacts(layout, first) if not p.is_file())
        raise InputError(
            f"{file} not found: the run folder {layout.root} has no output of {MAKERS[first]}; run it "
            f"(and the steps before it) with out_dir={str(layout.root)!r} first, or make a whole run with "
            "`seglib run --out DIR` / `seglib segment --out DIR`")
    logger.warning("%s not found: building it with the default parameters (%s and the steps before it) "
                   "on the default data", display_path(absent[0]), MAKERS[step])
    return True


def write_parquet(df: pd.DataFrame, path: Path, *, index: bool = False) -> Path:
    """Write ``df`` to ``path`` atomically (the artifacts' format; ``df.attrs`` kept).

    Inside a :func:`seglib._files.background_writes` block (the in-memory runner's) the write is queued
    to the block's thread and this returns at once: ``path`` then exists when the block is left. What is
    written is ``df`` as it is now (a copy-on-write snapshot under pandas 3, a copy under pandas 2:
    changing ``df`` afterwards changes nothing).
    """
    writes = current_background_writes()
    if writes is not None:
        writes.submit(_write_parquet, df.copy(deep=not _copy_on_write()), path, index)
        return path
    return _write_parquet(df, path, index)


def _copy_on_write() -> bool:
    """pandas 3 copies on write (a shallow copy is a snapshot); pandas 2 only with its option on, now."""
    return int(pd.__version__.split(".")[0]) >= 3 or pd.get_option("mode.copy_on_write") is True


def _write_parquet(df: pd.DataFrame, path: Path, index: bool) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=index)
    return path


#: The parameters of ``PrototypeClustering`` that define a cut (with ``assign``: :func:`cut_settings`).
CUT_SETTINGS = ("method", "n_clusters", "max_d", "hit_weighting", "connectivity", "consolidate", "k_min",
                "k_max", "random_state")


def cut_settings(clustering, assign: str) -> dict:
    """The settings that define a fitted clustering's segments, as plain JSON values.

    ``assign`` is recorded as it acts: ``"unit"`` when the cut is not consolidated (``assign`` then
    changes nothing). Two cuts of the same map with equal settings give the same segments.
    """
    out = {name: getattr(clustering, name) for name in CUT_SETTINGS}
    out["assign"] = "customer" if assign == "customer" and clustering.consolidate else "unit"
    return json.loads(json.dumps(out, default=lambda v: v.item()))  # numpy scalars -> plain values


@dataclass
class Sample:
    """A run whose customer tables hold a seeded sample of its customers, and what is exact beside it.

    A Dask run above ``max_collect`` customers writes ``customers.parquet``, ``scaled.parquet`` and
    ``segments.parquet`` for a seeded sample of them (the run's own segments) and this, as
    ``processed/sample.json`` (:meth:`to_dict`). Everything after the map needs the customers only
    through its units: the exact ``hits`` and per-unit feature sums ``unit_sums`` (over every
    customer) fit the tree, the cut and its unit-level consolidation exactly as the run did. The
    sample serves what needs single customers: k-selection, the stability check, the
    customer-by-customer consolidation of a *new* cut, medians and means of the profiles.

    ``cut`` (:func:`cut_settings`) and the arrays after it are the run's segments: a cut with the same
    settings (:meth:`is_run_cut`) gives the sampled customers exactly the segments they have in the
    run's ``result/`` parts (:meth:`match`, :meth:`segments_of`), and the profile their exact sizes
    and revenue shares.
    """

    n_customers: int  # every customer of the run
    sample_size: int  # customers in the sampled tables
    hits: np.ndarray  # customers per unit, shape (rows, cols), exact
    unit_sums: np.ndarray  # per-unit sums of the scaled features, shape (units, features), exact
    cut: dict  # the run's cut_settings
    unit_labels: np.ndarray  # the run's PrototypeClustering.unit_labels_ (flat)
    unit_segments: np.ndarray  # each unit's majority segment over every customer (what the map shows)
    segment_means: np.ndarray | None  # the run's segment means (assign="customer"), else None
    segment_customers: pd.Series  # customers per segment, exact (index: segment 1..k)
    segment_revenue: pd.Series | None  # revenue per segment, exact; None without an amount

    def to_dict(self) -> dict:
        series = (lambda s: None if s is None else dict(zip(map(str, s.index), s.tolist())))  # noqa: E731
        return {
            "n_customers": int(self.n_customers), "sample_size": int(self.sample_size),
            "cut": self.cut, "hits": np.asarray(self.hits).tolist(),
            "unit_sums": np.asarray(self.unit_sums, dtype=float).tolist(),
            "unit_labels": np.asarray(self.unit_labels).ravel().tolist(),
            "unit_segments": np.asarray(self.unit_segments).ravel().tolist(),
            "segment_means": None if self.segment_means is None else np.asarray(self.segment_means).tolist(),
            "segment_customers": series(self.segment_customers),
            "segment_revenue": series(self.segment_revenue),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Sample":
        def series(d, dtype):
            return None if d is None else pd.Series({int(k): v for k, v in d.items()}, dtype=dtype)

        means = data["segment_means"]
        return cls(n_customers=int(data["n_customers"]), sample_size=int(data["sample_size"]),
                   hits=np.asarray(data["hits"], dtype=np.int64),
                   unit_sums=np.asarray(data["unit_sums"], dtype=float),
                   cut=data["cut"], unit_labels=np.asarray(data["unit_labels"], dtype=np.int64),
                   unit_segments=np.asarray(data["unit_segments"], dtype=np.int64),
                   segment_means=None if means is None else np.asarray(means, dtype=float),
                   segment_customers=series(data["segment_customers"], "int64"),
                   segment_revenue=series(data["segment_revenue"], "float64"))

    def is_run_cut(self, settings: dict) -> bool:
        """True when ``settings`` (:func:`cut_settings`) are the run's cut."""
        return settings == self.cut

    def match(self, clustering) -> bool:
        """Give ``clustering`` (fitted with the run's settings, hits and unit sums) the run's unit-level
        segments and numbers (:meth:`~seglib.cluster.PrototypeClustering.adopt`); False when its units
        do not form the run's segments (then nothing is changed)."""
        return clustering.adopt(self.unit_labels)

    def segments_of(self, X, bmu, clustering):
        """The run's segment of each customer (rows of ``X``, best units ``bmu``) and the segment means:
        the nearest run mean (``assign="customer"``) or the unit's segment, as the run assigned them."""
        from seglib.cluster import nearest_segment

        if self.segment_means is None:
            return clustering.assign(bmu), None
        return nearest_segment(X, self.segment_means), self.segment_means

    def describe(self) -> str:
        """The words "a seeded sample of n of the run's N customers (p%)", for the notebooks' texts."""
        return (f"a seeded sample of {self.sample_size:,} of the run's {self.n_customers:,} customers "
                f"({self.sample_size / self.n_customers:.1%})")


def read_sample(layout: Layout) -> Sample | None:
    """The run's :class:`Sample` (``processed/sample.json``), or None when its tables hold every customer."""
    if not layout.sample.is_file():
        return None
    try:
        return Sample.from_dict(json.loads(layout.sample.read_text()))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{layout.sample}: not a sample description written by `seglib segment --backend "
                         f"dask` ({type(exc).__name__}: {exc}); run the segmentation again") from None


def at_most(X: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """``X`` sorted by key, cut to ``size`` rows by a seeded draw when it has more: a sample of the
    customers drawn a bit generously (e.g. seeded Bernoulli draws per partition of about ``size`` rows)
    brought to exactly ``size`` at most, the same rows for the same seed."""
    X = X.sort_index(kind="mergesort")
    if len(X) <= size:
        return X
    keep = np.sort(np.random.default_rng([seed, 100_003]).choice(len(X), size, replace=False))
    return X.iloc[keep]


def write_tables(layout: Layout, customers: pd.DataFrame, X: pd.DataFrame, segments: pd.DataFrame) -> None:
    """The customer tables of steps 02-03 as the notebooks read them, every one in key order:
    ``customers.parquet`` (original units), ``scaled.parquet`` (``X``) and ``segments.parquet`` (each
    frame's ``attrs`` kept). For a backend that makes them all at once (the Dask runner)."""
    X = X.sort_index(kind="mergesort")
    for frame, path in ((customers, layout.customers), (X, layout.scaled), (segments, layout.segments)):
        ordered = frame.reindex(X.index)
        ordered.attrs = frame.attrs
        write_parquet(ordered, path, index=True)


def save_model(layout: Layout, pipeline, som, unit_segments, names, X, *, columns=None, clean_settings=None,
               id_column: str = "customerID", segment_means=None):
    """``model/``: the fitted segmentation (:meth:`seglib.segmentation.Segmentation.from_fitted`, whose
    parameters these are; ``X``: the scaled training rows, or a sample of them, that set the novelty
    threshold), as both backends save it. Returns the model."""
    from seglib.segmentation import Segmentation

    model = Segmentation.from_fitted(pipeline, som, unit_segments, names, X, columns=columns,
                                     clean_settings=clean_settings or None, id_column=id_column,
                                     segment_means=segment_means)
    model.save(layout.model_dir)
    return model


def write_sample(layout: Layout, sample: Sample) -> Path:
    """Write ``processed/sample.json`` and record ``n_customers`` and ``sample_size`` in the metrics."""
    record_metrics(layout, n_customers=int(sample.n_customers), sample_size=int(sample.sample_size))
    return write_json(layout.sample, sample.to_dict())


def _unit_stats(som_step, X: np.ndarray, bmu: np.ndarray):
    """Customers per unit and per-unit feature sums: exact from the :class:`Sample` when the tables are a
    sample, else counted on ``X`` and its best units ``bmu`` (``som.predict(X)``: the hit map of ``X``)."""
    from seglib.cluster import unit_sums

    if som_step.sample is not None:
        return som_step.sample.hits, som_step.sample.unit_sums
    shape = tuple(som_step.som.map_shape_)
    hits = np.bincount(bmu, minlength=int(np.prod(shape))).reshape(shape)
    return hits, unit_sums(X, bmu, hits.size)


# ---------------------------------------------------------------------------------------- step 01


@dataclass
class CleanStep:
    """What step 01 produced."""

    raw: pd.DataFrame
    clean: pd.DataFrame
    report: object  # seglib.clean.CleaningReport
    layout: Layout


def clean_step(
    data_path: str | os.PathLike | None = None,
    *,
    columns: dict | None = default("columns"),
    date_format: str | None = default("date_format"),
    dob_format: str | None = default("dob_format"),
    as_of=default("as_of"),
    min_age: int = default("min_age"),
    max_age: int = default("max_age"),
    min_date=default("min_date"),
    max_date=default("max_date"),
    max_amount: float | None = default("max_amount"),
    out_dir: str | os.PathLike | None = None,
) -> CleanStep:
    """Load and clean ``data_path``; write the cleaned table and ``cleaning_report.json``.

    Parameters are those of :func:`seglib.load.load_transactions` and
    :func:`seglib.clean.clean_transactions`; ``out_dir`` selects the :class:`Layout`.
    """
    from seglib.clean import clean_transactions
    from seglib.load import DEFAULT_COLUMNS, load_transactions

    layout = Layout.for_run(out_dir).makedirs()
    path = default_data(data_path)
    raw = load_transactions(path, columns=columns, date_format=date_format, dob_format=dob_format)
    clean, report = clean_transactions(raw, as_of=as_of, min_age=min_age, max_age=max_age, min_date=min_date,
                                       max_date=max_date, max_amount=max_amount)
    # project files by their relative path, so reports do not depend on where the checkout lives
    report.source = display_path(path)
    mapping = raw.attrs.get("columns") or {}
    clean.attrs["id_column"] = mapping.get("customer_id", DEFAULT_COLUMNS["customer_id"])
    clean.attrs["source"] = report.source
    write_parquet(clean, layout.clean_transactions)
    write_cleaning(layout, report, columns=mapping)
    logger.info("cleaned %s: %d of %d rows kept", path, report.rows_kept, report.rows_read)
    return CleanStep(raw=raw, clean=clean, report=report, layout=layout)


def write_cleaning(layout: Layout, report, **metrics) -> None:
    """Step 01's records, as both backends write them: ``cleaning_report.json`` and, in
    ``metrics.json``, the rows read and kept, the customers kept, ``as_of`` and any other ``metrics``."""
    report.to_json(layout.cleaning_report)
    record_metrics(layout, rows_read=report.rows_read, rows_kept=report.rows_kept,
                   customers_kept=report.customers_kept, as_of=str(report.as_of), **metrics)


def load_clean(out_dir: str | os.PathLike | None = None):
    """The cleaned transactions and their report.

    When they are missing: in the project layout (``out_dir=None``) :func:`clean_step` makes them with
    the default parameters (WARNING logged); in a run folder, :class:`~seglib.errors.InputError`.
    """
    from seglib.clean import CleaningReport

    layout = Layout.for_run(out_dir)
    if _missing(out_dir, "clean"):
        step = clean_step(out_dir=out_dir)
        return step.clean, step.report
    clean = pd.read_parquet(layout.clean_transactions)
    return clean, CleaningReport.from_json(layout.cleaning_report)


# ---------------------------------------------------------------------------------------- step 02


@dataclass
class SomStep:
    """What step 02 produced: customers in original units, the scaled matrix, the features, the map."""

    customers: pd.DataFrame  # one row per customer, original units (index customer_key)
    X: pd.DataFrame  # scaled features the SOM was trained on (same index)
    pipeline: object  # sklearn Pipeline: FeatureBuilder -> FeatureScaler
    som: object  # seglib.som.SOM
    layout: Layout
    sample: Sample | None = None  # customers and X are a sample (a Dask run above max_collect)

    @property
    def feature_names(self) -> list[str]:
        return list(self.X.columns)

    def original_som(self):
        """The original analysis's map (:meth:`seglib.som.SOM.original`) on the same customers."""
        from seglib.som import SOM

        return SOM.original(random_state=self.som.random_state, progress=False).fit(self.X.to_numpy())


def make_som(parameters: dict, *, progress: bool = True):
    """The unfitted :class:`~seglib.som.SOM` of run parameters (``engine``, ``map_shape``, ``n_epochs``,
    ``sigma``, ``sigma_end``, ``seed``, ``topology``; the registry's defaults for those absent), as both
    backends train it."""
    from seglib.som import SOM

    p = {**defaults("som"), **parameters}
    if p["engine"] == "original":
        return SOM.original(random_state=p["seed"], progress=progress, topology=p["topology"])
    shape = None if p["map_shape"] is None else tuple(int(v) for v in p["map_shape"])
    return SOM(shape, engine=p["engine"], n_epochs=p["n_epochs"], sigma=p["sigma"], sigma_end=p["sigma_end"],
               topology=p["topology"], random_state=p["seed"], progress=progress)


def som_step(
    clean: pd.DataFrame | None = None,
    *,
    scaler: str = default("scaler"),
    map_shape=default("map_shape"),
    engine: str = default("engine"),
    n_epochs: int = default("n_epochs"),
    sigma: float | None = default("sigma"),
    sigma_end: float = default("sigma_end"),
    seed: int = default("seed"),
    topology: str = default("topology"),
    bases=default("bases"),
    feature_weights: dict | None = default("feature_weights"),
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> SomStep:
    """Build one row of features per customer, scale them, train the SOM; write the artifacts.

    ``engine="original"`` trains the original analysis's MiniSom (:meth:`seglib.som.SOM.original`,
    not recommended: it is kept to reproduce the original). ``bases`` chooses the features that form
    the segments (``"behaviour"``: all but age and gender, which then only describe the segments;
    ``"all"``; or a list, see :class:`seglib.features.FeatureBuilder`); ``feature_weights`` multiplies
    scaled features (:class:`seglib.features.FeatureScaler` ``weights``). Writes ``customers.parquet``
    (original units, every feature: bases and descriptors), ``scaled.parquet`` (the bases),
    ``features.json`` and ``som/``; records the quality figures, the bases and the descriptors.
    """
    from seglib.features import customer_table, feature_pipeline
    from seglib.som import map_quality

    layout = Layout.for_run(out_dir).makedirs()
    if clean is None:
        clean, _ = load_clean(out_dir)
    as_of = clean.attrs.get("as_of")
    pipe = feature_pipeline("customer", as_of=as_of, scaler=scaler, bases=bases, weights=feature_weights)
    customers = customer_table(clean, as_of=as_of)  # aggregated once: the features start from it
    matrix = pipe["features"].fit_transform(clean, customers=customers)
    scaled = pipe["scale"].fit_transform(matrix)
    names = list(pipe["features"].feature_names_)
    X = pd.DataFrame(scaled, index=matrix.index, columns=names)
    customers = customers.reindex(matrix.index)
    customers.attrs = {"as_of": str(as_of), "id_column": clean.attrs.get("id_column", "customerID")}
    settings = dict(engine=engine, map_shape=map_shape, n_epochs=n_epochs, sigma=sigma, sigma_end=sigma_end,
                    seed=seed, topology=topology)
    som = make_som(settings, progress=progress).fit(X.to_numpy())

    write_parquet(customers, layout.customers, index=True)
    write_parquet(X, layout.scaled, index=True)
    layout.sample.unlink(missing_ok=True)  # the tables hold every customer
    Xa = X.to_numpy()
    write_som(layout, pipe, som, customers.columns, map_quality(som, lambda func, **kw: [func(Xa, **kw)]))
    return SomStep(customers=customers, X=X, pipeline=pipe, som=som, layout=layout)


def write_som(layout: Layout, pipeline, som, customer_columns, quality: dict) -> None:
    """Step 02's model artifacts, as both backends write them: ``features.json`` (the fitted feature
    pipeline), ``som/`` and, in ``metrics.json``, the bases, the descriptors (the columns of the
    customer table that only describe the segments), the map's shape and its ``quality``
    (:func:`seglib.som.map_quality`)."""
    from seglib.features import descriptor_columns, pipeline_to_dict

    names = list(pipeline["features"].feature_names_)
    write_json(layout.features_spec, pipeline_to_dict(pipeline))
    som.save(layout.som_dir)
    record_metrics(layout, features=names, bases=names,
                   descriptors=descriptor_columns(customer_columns, names, pipeline["features"].dropped_),
                   map_shape=list(som.map_shape_), **{k: float(v) for k, v in quality.items()})


def load_som(out_dir: str | os.PathLike | None = None) -> SomStep:
    """Step 02's artifacts.

    When they are missing: in the project layout (``out_dir=None``) steps 01-02 make them with the
    default parameters (WARNING logged); in a run folder, :class:`~seglib.errors.InputError`.
    """
    from seglib.features import pipeline_from_dict
    from seglib.som import SOM

    layout = Layout.for_run(out_dir)
    if _missing(out_dir, "som"):
        return som_step(out_dir=out_dir)
    pipe = pipeline_from_dict(json.loads(layout.features_spec.read_text()))
    return SomStep(
        customers=pd.read_parquet(layout.customers), X=pd.read_parquet(layout.scaled),
        pipeline=pipe, som=SOM.load(layout.som_dir), layout=layout, sample=read_sample(layout),
    )


# ---------------------------------------------------------------------------------------- step 03


@dataclass
class ClusterStep:
    """What step 03 produced: the prototype clustering and every customer's segment."""

    som_step: SomStep
    clustering: object  # seglib.cluster.PrototypeClustering
    segments: pd.DataFrame  # index customer_key: customer_id, bmu, som_row, som_col, segment
    hits: np.ndarray  # customers per unit, shape (rows, cols)
    layout: Layout
    stability: object = None  # seglib.cluster.StabilityResult (None: not measured or read back)
    #: the segment means (k, n_features; scaled space) of customer-level segments (``assign="customer"``),
    #: what the saved model scores with; None when segments are whole units
    segment_means: np.ndarray | None = None
    #: the tables are a sample (``som_step.sample``) and the cut is the run's: its segments are exact
    run_cut: bool = False

    @property
    def unit_segments(self) -> np.ndarray:
        """Segment of each unit (flat): its customers' majority segment (the map shows it).

        With ``assign="unit"`` it is ``clustering.unit_labels_``; with ``"customer"`` a unit's customers
        may fall in several segments (:func:`seglib.cluster.unit_majority`).
        """
        from seglib.cluster import unit_majority

        if self.run_cut:  # the run's, over every customer
            return self.som_step.sample.unit_segments
        if self.segment_means is None:
            return np.asarray(self.clustering.unit_labels_)
        return unit_majority(self.segments["bmu"].to_numpy(), self.segments["segment"].to_numpy(),
                             self.clustering.unit_labels_)

    def stability_table(self) -> pd.DataFrame:
        """Per-segment stability (``StabilityResult.summary()``, or ``stability.json``; no row if absent)."""
        if self.stability is not None:
            return self.stability.summary()
        return read_stability(self.layout)

    def summary(self) -> str:
        """One paragraph (Markdown) about the cut: :func:`seglib.notebook.cluster_summary`."""
        from seglib.notebook import cluster_summary

        return cluster_summary(self)


def _silhouette(X: np.ndarray, labels: np.ndarray, *, sample_size: int = 2000, seed: int = 0) -> float | None:
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2 or len(labels) < 3:
        return None
    n = min(sample_size, len(labels))
    return float(silhouette_score(X, labels, sample_size=n, random_state=seed))


def cluster_step(
    som_step: SomStep | None = None,
    *,
    method: str = default("method"),
    n_clusters: int | str | None = default("n_clusters"),
    max_d: float | None = default("max_d"),
    hit_weighting=default("hit_weighting"),
    connectivity: bool = default("connectivity"),
    consolidate: bool = default("consolidate"),
    assign: str = default("assign"),
    k_min: int = default("k_min"),
    k_max: int = default("k_max"),
    seed: int = default("seed"),
    n_stability_runs: int = default("n_stability_runs"),
    stability_sample: int = default("stability_sample"),
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> ClusterStep:
    """Cluster the SOM's prototypes, cut into segments, assign every customer; write the artifacts.

    Give ``max_d`` to cut by distance (``n_clusters`` is then ignored), else ``n_clusters`` cuts by
    count (``"auto"``: chosen within ``k_min..k_max``, see :func:`seglib.cluster.select_k`);
    ``consolidate`` refines the cut by k-means iterations on the customers, unit by unit, and then
    (``assign="customer"``) customer by customer from every unit-level start, the most compact result
    kept (:func:`seglib.cluster.customer_means`; ``ClusterStep.segment_means`` holds the means the saved
    model scores with). Then measures the stability of the kept segments over ``n_stability_runs``
    resamples of at most ``stability_sample`` customers each (:func:`measure_stability`; 0 runs skips
    it). Writes ``segments.parquet``, ``clustering.json`` and ``stability.json``; records the
    cophenetic correlation, the silhouette of the customers, the segment sizes and each segment's
    mean Jaccard.

    When the tables are a sample (``som_step.sample``: a Dask run above ``max_collect``), the tree
    and the cut use the exact hits and unit sums of every customer; the run's own cut gives the
    sampled customers the run's segments (``ClusterStep.run_cut``), another cut is consolidated
    customer by customer on the sample; k-selection and stability work on the sample.
    """
    from seglib.cluster import customer_segments, fit_cut, segments_frame

    assign = check_parameter("assign", assign)
    layout = Layout.for_run(out_dir).makedirs()
    if som_step is None:
        som_step = load_som(out_dir)
    som, X = som_step.som, som_step.X.to_numpy()
    bmu = som.predict(X)
    hits, sums = _unit_stats(som_step, X, bmu)
    pc = fit_cut(som.weights_, hits, sums, topology=som.topology, random_state=seed, method=method,
                 n_clusters=n_clusters, max_d=max_d, hit_weighting=hit_weighting, connectivity=connectivity,
                 consolidate=consolidate, k_min=k_min, k_max=k_max)
    run_cut = _is_run_cut(som_step.sample, pc, assign)
    if run_cut:
        labels, means = som_step.sample.segments_of(X, bmu, pc)
    else:
        labels, means = customer_segments(X, bmu, pc, assign)
    segments = segments_frame(som_step.customers["customer_id"], bmu, som.weights_.shape[:2], pc.unit_labels_,
                              som_step.X.index, segment=labels)
    write_parquet(segments, layout.segments, index=True)
    sizes = segments["segment"].value_counts().sort_index()
    if run_cut:
        sizes = som_step.sample.segment_customers  # exact
    elif som_step.sample is not None:
        sizes = None  # a new cut's sizes on the sample are not the run's: not recorded
    write_clusters(layout, pc, assign=assign, segment_means=means, sizes=sizes,
                   silhouette=_silhouette(X, segments["segment"].to_numpy(), seed=seed))
    stability = measure_stability(layout, som_step.X, segments["segment"], som, pc, n_runs=n_stability_runs,
                                  seed=seed, progress=progress, assign=assign, sample_size=stability_sample)
    return ClusterStep(som_step=som_step, clustering=pc, segments=segments, hits=hits, layout=layout,
                       stability=stability, segment_means=means, run_cut=run_cut)


def _is_run_cut(sample: Sample | None, clustering, assign: str) -> bool:
    """True when the tables are a sample and ``clustering`` is the run's cut, numbered as the run's."""
    if sample is None or not sample.is_run_cut(cut_settings(clustering, assign)):
        return False
    if sample.match(clustering):
        return True
    logger.warning("the cut has the run's settings but not its segments (the map's files changed?): "
                   "segments consolidated again on the sample")
    return False


def measure_stability(layout: Layout, X, kept, som, clustering, *, n_runs: int, seed: int = 0,
                      progress: bool = False, assign: str = default("assign"),
                      sample_size: int = default("stability_sample")):
    """Stability of the kept segments (:func:`seglib.cluster.segment_stability`); ``stability.json``.

    The reference is ``kept``, the segment of every customer as written to ``result.csv``; each of
    the ``n_runs`` resamples re-runs the segmentation (:func:`seglib.cluster.som_reclusterer`: the
    SOM with the same parameters, then the same cut and the same ``assign``). Records ``stability``
    (segment -> mean Jaccard) in the metrics. ``n_runs=0`` measures nothing, removes a stale
    ``stability.json`` and returns None. Each resample draws at most ``sample_size`` customers
    (``stability_sample``; an m-out-of-n bootstrap above it). Both backends call it on the same
    customers in the same order (sorted by key), so they write the same file.
    """
    from seglib.cluster import segment_stability, som_reclusterer

    n_runs = check_parameter("n_stability_runs", n_runs)
    sample_size = check_parameter("stability_sample", sample_size)
    if n_runs == 0:
        layout.stability.unlink(missing_ok=True)
        record_metrics(layout, stability=None)
        return None
    result = segment_stability(kept, som_reclusterer(X, som, clustering, assign=assign), n_runs=n_runs,
                               random_state=seed, progress=progress, sample_size=sample_size)
    data = result.to_dict()
    write_json(layout.stability, data)
    record_metrics(layout, stability={s: v["mean_jaccard"] for s, v in data["segments"].items()})
    return result


def read_stability(layout: Layout) -> pd.DataFrame:
    """The per-segment stability table written by :func:`measure_stability`.

    Without ``stability.json`` (``n_stability_runs=0``) the table has no row: profiles then read
    ``"not measured"`` for every segment.
    """
    from seglib.cluster import stability_summary

    if not layout.stability.is_file():
        return stability_summary({"segments": {}})
    return stability_summary(json.loads(layout.stability.read_text()))


def write_clusters(layout: Layout, clustering, *, assign: str, segment_means, sizes, **metrics) -> None:
    """Step 03's records, as both backends write them: ``clustering.json`` (:func:`write_clustering`)
    and, in ``metrics.json``, the number of segments, the cophenetic correlation, ``sizes`` (customers
    per segment, a Series indexed by segment) and any other ``metrics`` (e.g. ``silhouette``).
    ``sizes=None`` (a new cut on a sample: its sizes are not the run's) clears the sizes and the segment
    names recorded before, which belonged to another cut."""
    write_clustering(layout, clustering, assign=assign, segment_means=segment_means)
    if sizes is None:
        metrics["segment_sizes"] = None
        metrics.setdefault("segment_names", None)
    else:
        metrics["segment_sizes"] = {str(k): int(v) for k, v in sizes.items()}
    record_metrics(layout, n_segments=int(clustering.n_clusters_),
                   cophenetic_correlation=float(clustering.cophenetic_corr_), **metrics)


def write_clustering(layout: Layout, clustering, *, assign: str = "unit", segment_means=None) -> Path:
    """``clustering.json``: the parameters of the cut and the fitted tree, unit labels and ranges, and
    (``assign="customer"``) the segment means (``segment_means_``, segment 1 first)."""
    pc = clustering
    lo, hi = pc.max_d_range_ if pc.max_d_range_ is not None else (None, None)
    return write_json(layout.clustering, {
        "method": pc.method, "n_clusters": pc.n_clusters, "max_d": pc.max_d,
        "hit_weighting": pc.hit_weighting, "connectivity": pc.connectivity, "topology": pc.topology,
        "consolidate": pc.consolidate, "k_min": pc.k_min, "k_max": pc.k_max, "random_state": pc.random_state,
        "n_clusters_": int(pc.n_clusters_), "k_reason_": pc.k_reason_,
        "cut_labels_": [int(v) for v in pc.cut_labels_],
        "max_d_range_": [lo, hi], "cophenetic_corr_": float(pc.cophenetic_corr_),
        "unit_labels_": [int(v) for v in pc.unit_labels_], "linkage_": pc.linkage_.tolist(),
        "assign": assign,
        "segment_means_": None if segment_means is None else np.asarray(segment_means, dtype=float).tolist(),
    })


def load_clusters(out_dir: str | os.PathLike | None = None) -> ClusterStep:
    """Step 03's artifacts.

    When they are missing: in the project layout (``out_dir=None``) steps 01-03 make them with the
    default parameters (WARNING logged); in a run folder, :class:`~seglib.errors.InputError`.
    """
    from seglib.cluster import PrototypeClustering

    layout = Layout.for_run(out_dir)
    if _missing(out_dir, "cluster"):
        return cluster_step(out_dir=out_dir)
    som_step = load_som(out_dir)
    info = json.loads(layout.clustering.read_text())
    X = som_step.X.to_numpy()
    bmu = som_step.som.predict(X)
    hits, sums = _unit_stats(som_step, X, bmu)
    # the clustering of a few hundred prototypes is deterministic and takes a fraction of a second: refit it
    settings = {name: info[name] for name in PrototypeClustering().get_params() if name in info}
    pc = PrototypeClustering(**{**settings, "topology": som_step.som.topology})
    pc.fit(som_step.som.weights_, hits, unit_sums=sums)
    if "unit_labels_" in info and not pc.adopt(info["unit_labels_"]):
        logger.warning("%s: the recorded segments are not those of a refit on the map's files (did the "
                       "map change?): the tree and the map show the refit's", layout.clustering)
    means = info.get("segment_means_")  # absent in older runs: whole units
    assign = info.get("assign") or ("unit" if means is None else "customer")
    run_cut = _is_run_cut(som_step.sample, pc, assign)
    return ClusterStep(som_step=som_step, clustering=pc, segments=pd.read_parquet(layout.segments),
                       hits=hits, layout=layout, segment_means=None if means is None else np.asarray(means),
                       run_cut=run_cut)


# ---------------------------------------------------------------------------------------- step 04


@dataclass
class ProfileStep:
    """What step 04 produced: the profiles and the result table (both also written as CSV)."""

    profile: pd.DataFrame
    result: pd.DataFrame
    layout: Layout
    model: object = None  # seglib.segmentation.Segmentation
    cards: list | None = None  # seglib.summary.segment_cards, as written to summary.html
    #: the customers are a sample (a Dask run above max_collect): nothing was written, see ``written``
    sample: Sample | None = None
    run_cut: bool = False  # with a sample: the cut is the run's (sizes and revenue shares exact)
    cut: dict | None = None  # the cut profiled (cut_settings)

    @property
    def written(self) -> bool:
        """True when this step wrote ``result.csv``, ``segments.csv``, ``summary.html`` and ``model/``;
        False on a sample, where the run's own files are the full result and stay as they are."""
        return self.sample is None


def segment_profile(cluster_step: ClusterStep, *, stability=None, effects=None) -> pd.DataFrame:
    """The segments' profile as step 04 writes it: names and descriptions from the bases only.

    Age and gender (the descriptors, when the map did not use them) describe the segments in a
    ``who`` column but never name them, so notebook 03's map legend and notebook 04's tables give a
    segment the same name. ``effects``: the :func:`seglib.profile.segment_effects` of the step's
    customers and segments when the caller has them (see :func:`profile_segments`).
    """
    from seglib.features import descriptor_columns
    from seglib.profile import profile_segments

    som_step = cluster_step.som_step
    customers = som_step.customers
    descriptors = descriptor_columns(customers.columns, som_step.feature_names,
                                     som_step.pipeline["features"].dropped_)
    return profile_segments(customers, cluster_step.segments["segment"], descriptors=descriptors,
                            stability=stability, effects=effects)


def profile_step(cluster_step: ClusterStep | None = None, *, out_dir: str | os.PathLike | None = None,
                 currency: str | None = default("currency"), stability=None) -> ProfileStep:
    """Profile the segments in original units; write ``result.csv``, ``segments.csv``, ``summary.html``
    and ``model/``.

    ``currency`` (a symbol or code such as ``"EUR"``) is written before amounts in the summary;
    ``stability`` (per segment, see :func:`seglib.summary.segment_cards`) gives the cards their
    stability verdict ("not measured" without it).

    ``model/`` is the fitted segmentation (:class:`seglib.segmentation.Segmentation`): loading and
    cleaning settings, features and scaling, the SOM, the unit -> segment map and the segment names,
    so new customers can be scored under the same definitions (``seglib score``).

    When the customers are a sample (a Dask run above ``max_collect``, ``ProfileStep.sample``), the
    profile and the cards are the sample's (with the run's cut, the profile's sizes and revenue shares
    are the exact ones of every customer) and **nothing is written**: the run's ``result/`` parts,
    ``segments.csv`` and ``model/`` are the full result (``ProfileStep.written`` is False;
    :func:`seglib.notebook.profile_note` says where it is, or how to apply a changed cut to every
    customer).
    """
    from seglib.clean import CleaningReport
    from seglib.features import descriptor_columns
    from seglib.profile import result_table, segment_effects, with_exact_sizes, write_result, write_segments
    from seglib.segmentation import Segmentation
    from seglib.summary import segment_cards, write_summary

    layout = Layout.for_run(out_dir).makedirs()
    if cluster_step is None:
        cluster_step = load_clusters(out_dir)

    customers = cluster_step.som_step.customers
    seg = cluster_step.segments
    som_step = cluster_step.som_step
    effects = segment_effects(customers, seg["segment"])  # once: the profile and the cards share them
    profile = segment_profile(cluster_step, stability=read_stability(layout), effects=effects)
    cards_profile = profile  # the cards take names, descriptions and features from it (before exact sizes)
    descriptors = descriptor_columns(customers.columns, som_step.feature_names,
                                     som_step.pipeline["features"].dropped_)
    id_column = customers.attrs.get("id_column") or "customerID"
    result = result_table(customers, seg["segment"], seg["som_row"], seg["som_col"], id_column=id_column)
    sample = som_step.sample
    if sample is not None and cluster_step.run_cut:
        profile = with_exact_sizes(profile, sample.segment_customers, sample.segment_revenue)
    if stability is None and {"stability", "mean_jaccard", "jaccard"} & set(profile.columns):
        stability = profile  # the per-segment stability the profile carries (segments.csv columns)
    cards = segment_cards(customers, seg["segment"], names=profile["name"], stability=stability,
                          currency=currency, descriptors=descriptors, profile=cards_profile, effects=effects)
    if sample is not None:
        model = Segmentation.load(layout.root) if (layout.model_dir / "model.json").is_file() else None
        info = json.loads(layout.clustering.read_text()) if layout.clustering.is_file() else {}
        cut = cut_settings(cluster_step.clustering, info.get("assign") or "unit")
        logger.info("profiled %s; the run's files are the full result: nothing written", sample.describe())
        return ProfileStep(profile=profile, result=result, layout=layout, model=model, cards=cards,
                           sample=sample, run_cut=cluster_step.run_cut, cut=cut)
    write_result(layout.result, result)
    write_segments(layout.segments_csv, profile)
    write_summary(layout, cards)
    metrics = record_metrics(layout, segment_names={str(k): str(v) for k, v in profile["name"].items()})
    settings = (CleaningReport.from_json(layout.cleaning_report).settings
                if layout.cleaning_report.is_file() else None)
    model = save_model(layout, som_step.pipeline, som_step.som, cluster_step.unit_segments, profile["name"],
                       som_step.X, columns=metrics.get("columns"), clean_settings=settings,
                       id_column=id_column, segment_means=cluster_step.segment_means)
    return ProfileStep(profile=profile, result=result, layout=layout, model=model, cards=cards)
