"""Segments over time: score every period with a saved segmentation, count who moved, watch for drift.

Segments are defined once and used for months. This step answers what comes next: which customers
moved from one segment to another this quarter, which segments grow, and is the map still a good
description of today's customers? It uses nothing new: a :class:`~seglib.segmentation.Segmentation`
(saved by step 04, or trained here on the first periods of the file) scores each period with
:meth:`~seglib.segmentation.Segmentation.predict`, the code ``seglib score`` runs::

    transactions -> clean once -> for each period P: customers who bought in P
                 -> their features as of P's end, over the last `window` periods -> segment, distance, novel

and the per-period tables become transitions, sizes and drift (:func:`track_segments`), written by
:func:`write_tracking` as ``by_period.csv``, ``transitions.csv``, ``sizes.csv``, ``drift.csv``,
figures and ``tracking.html``. Period labels are pandas ``Period`` strings (``2016Q3``, ``2016-07``,
``2016``). ``docs/tracking.md`` explains the choices.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seglib import params
from seglib._files import atomic_write_text, write_csv
from seglib.errors import InputError, ParameterError, check_option

__all__ = ["PERIODS", "Tracking", "period_labels", "read_transactions", "train_segmentation",
           "score_periods", "transition_table", "size_table", "drift_table", "track_segments",
           "write_tracking"]

logger = logging.getLogger(__name__)

#: Period lengths and their pandas frequencies.
PERIODS = {"month": "M", "quarter": "Q", "year": "Y"}
#: Labels of the pseudo-segments of customers who were not active in one of two periods.
NEW, INACTIVE = "new", "inactive"
#: Numbers in the CSVs: 12 significant digits, so the same run gives the same bytes on any machine.
FLOAT_FORMAT = "%.12g"


def _freq(period: str) -> str:
    check_option("period", period, tuple(PERIODS))
    return PERIODS[period]


def period_labels(dates: pd.Series, period: str = "quarter") -> pd.Series:
    """The period of every date (a ``Period`` Series: ``2016Q3`` for ``period="quarter"``)."""
    return pd.Series(pd.DatetimeIndex(dates).to_period(_freq(period)), index=dates.index)


# ---------------------------------------------------------------------------------------- input


#: Optional roles the customer features are built from (age, gender, programmes, promotions, stores,
#: transactions); ``pincode`` and ``product`` are identifiers only, and the required roles are checked
#: by the loader.
FEATURE_ROLES = ("dob", "gender", "discounts", "promo_code", "store", "till", "transaction")


def _check_roles(found, columns, source: str) -> None:
    """InputError naming every feature role of ``columns`` (role -> column) whose column ``found`` lacks."""
    if not columns or found is None:
        return
    missing = {role: col for role, col in columns.items() if role in FEATURE_ROLES and col not in found}
    if missing:
        listed = ", ".join(f"{role} (column {col!r})" for role, col in missing.items())
        raise InputError(f"{source}: the model's features need the role(s) {listed}, missing from the file; "
                         "track with a model trained on this file's columns (or --train-periods N)")


def read_transactions(data, model=None, *, columns=None, progress: bool = False) -> pd.DataFrame:
    """The transactions, cleaned once for every period.

    Parameters
    ----------
    data : path or DataFrame
        A transactions file (CSV, gzip CSV, Parquet), a raw frame from
        :func:`seglib.load.load_transactions`, or a cleaned frame (used as is).
    model : Segmentation, optional
        Read and clean with its column mapping and cleaning settings. Every role its features were
        built from (:data:`FEATURE_ROLES`) must be in the file: a missing one is an
        :class:`~seglib.errors.InputError` naming it (tracking imputes no whole column: every period
        would drift).
    columns : dict, optional
        Without a model: role -> column mapping (see :func:`seglib.load.load_transactions`).

    Returns
    -------
    DataFrame
        Cleaned transactions (:mod:`seglib.clean`); ``attrs`` holds ``columns`` (the mapping used),
        ``clean_settings`` and ``id_column``.
    """
    from seglib.clean import clean_transactions
    from seglib.load import DEFAULT_COLUMNS, load_transactions, read_header

    trained = None if model is None else model.columns
    if isinstance(data, (str, os.PathLike)):
        path = Path(data).expanduser()
        if not path.exists():
            raise InputError(f"input data {path} not found")
        _check_roles(read_header(path), trained, str(path))
    elif isinstance(data, pd.DataFrame):
        if "customer_key" not in data.columns:  # a raw frame has role-named columns
            _check_roles(list(data.columns), trained and {r: r for r in trained}, "data")
    else:
        raise ParameterError(f"data must be a file path or a DataFrame, got {type(data).__name__}")
    if model is not None:
        clean = model.clean(data, progress=progress)
        mapping, settings, id_column = model.columns, model.clean_settings, model.id_column
    elif isinstance(data, pd.DataFrame) and "customer_key" in data.columns:
        clean, mapping, settings = data, data.attrs.get("columns"), data.attrs.get("clean_settings")
        id_column = data.attrs.get("id_column") or DEFAULT_COLUMNS["customer_id"]
    else:
        raw = load_transactions(data, columns) if not isinstance(data, pd.DataFrame) else data
        clean, report = clean_transactions(raw, progress=progress)
        mapping, settings = raw.attrs.get("columns"), dict(report.settings)
        id_column = (mapping or DEFAULT_COLUMNS).get("customer_id", DEFAULT_COLUMNS["customer_id"])
    if len(clean) == 0:
        raise InputError(f"{data if not isinstance(data, pd.DataFrame) else 'data'}: no transaction is "
                         "left after cleaning: nothing to track")
    clean.attrs.update(columns=mapping, clean_settings=settings, id_column=id_column)
    return clean


# ---------------------------------------------------------------------------------------- training


def train_segmentation(clean: pd.DataFrame, *, as_of=None, map_shape=None, n_clusters=None, method=None,
                       seed=None, scaler=None, n_epochs=None, topology=None, bases=None, feature_weights=None,
                       progress: bool = False):
    """Train a segmentation on cleaned transactions, as steps 02-04 do with their defaults.

    Parameters
    ----------
    clean : DataFrame
        Cleaned transactions (:func:`read_transactions`) of the training periods.
    as_of : date, optional
        Reference date of recency and tenure: the end of the last training period.
    map_shape, n_clusters, method, seed, scaler, n_epochs, topology, bases, feature_weights
        As in notebooks 02-03 (None: their defaults, ``seglib.params``). A map of about
        5 * sqrt(customers) units suits the data; fewer segments are easier to follow over time.

    Returns
    -------
    Segmentation
        With segment names from the profiles of the training customers.
    """
    from seglib.cluster import PrototypeClustering
    from seglib.features import customer_table, descriptor_columns, feature_pipeline
    from seglib.profile import profile_segments
    from seglib.segmentation import Segmentation
    from seglib.som import SOM

    value = {"map_shape": map_shape, "n_clusters": n_clusters, "method": method, "seed": seed,
             "scaler": scaler, "n_epochs": n_epochs, "topology": topology, "bases": bases}
    value = {k: params.default(k) if v is None else params.check_parameter(k, v) for k, v in value.items()}
    weights = params.default("feature_weights") if feature_weights is None else params.check_parameter(
        "feature_weights", feature_weights)
    as_of = clean.attrs.get("as_of") if as_of is None else as_of
    pipe = feature_pipeline("customer", as_of=as_of, scaler=value["scaler"], bases=value["bases"],
                            weights=weights)
    matrix = pipe["features"].fit_transform(clean)
    X = pipe["scale"].fit_transform(matrix)
    som = SOM(tuple(value["map_shape"]), n_epochs=value["n_epochs"], topology=value["topology"],
              random_state=value["seed"], progress=progress).fit(X)
    pc = PrototypeClustering(method=value["method"], n_clusters=value["n_clusters"], topology=som.topology)
    pc.fit(som.weights_, som.hit_map(X))
    segments = pd.Series(pc.assign(som.predict(X)), index=matrix.index)
    customers = customer_table(clean, as_of=pipe["features"].as_of_).reindex(matrix.index)
    descriptors = descriptor_columns(customers.columns, list(pipe["features"].feature_names_),
                                     pipe["features"].dropped_)
    profile = profile_segments(customers, segments, descriptors=descriptors)
    return Segmentation.from_fitted(pipe, som, pc.unit_labels_, profile["name"], X,
                                    columns=clean.attrs.get("columns"),
                                    clean_settings=clean.attrs.get("clean_settings") or None,
                                    id_column=clean.attrs.get("id_column") or "customerID")


# ---------------------------------------------------------------------------------------- scoring


def _predict(model, frame: pd.DataFrame, as_of: str) -> pd.DataFrame:
    """One period's scores (module level: Dask ships it to the workers)."""
    scored = model.predict(frame, as_of=as_of)
    return scored[[model.id_column, "segment", "segment_name", "distance", "novel"]]


def score_periods(model, clean: pd.DataFrame, *, period: str = "quarter", window: int = 1, first=None,
                  client=None, progress: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Score the customers of every period from ``first`` on.

    Parameters
    ----------
    model : Segmentation
    clean : DataFrame
        Cleaned transactions (:func:`read_transactions`).
    period : {"month", "quarter", "year"}
    window : int, default 1
        Each period's features are computed over this many periods ending with it (1: the period
        alone), as of the period's end, for the customers who bought in the period. A window as long as
        the training data makes the features comparable to the training ones; 1 reacts fastest.
    first : Period or str, optional
        First period to score (None: the first of the data).
    client : distributed.Client, optional
        Score the periods in parallel on Dask (one task per period); None: one after the other.

    Returns
    -------
    by_period : DataFrame
        Index ``customer_key``; the id (named as in the input), ``period`` (label), ``segment``,
        ``segment_name``, ``distance``, ``novel``; periods in order, customers by key in a period.
    skipped : list of str
        Periods without any customer (reported, not scored).
    """
    freq = _freq(period)
    window = params.check_parameter("window", window)
    labels = period_labels(clean["date"], period)
    periods = pd.period_range(labels.min(), labels.max(), freq=freq)
    if first is not None:
        periods = periods[periods >= pd.Period(first, freq=freq)]
    jobs, names, skipped = [], [], []
    for p in periods:
        keys = clean.loc[labels == p, "customer_key"].unique()
        if len(keys) == 0:
            logger.warning("period %s has no customers: skipped", p)
            skipped.append(str(p))
            continue
        rows = (labels > p - window) & (labels <= p) & clean["customer_key"].isin(keys)
        frame = clean.loc[rows]
        frame.attrs = dict(clean.attrs)
        jobs.append((frame, (p + 1).start_time.date().isoformat()))
        names.append(str(p))
    if client is None:
        from tqdm.auto import tqdm

        results = [_predict(model, f, a) for f, a in tqdm(jobs, desc="periods", disable=not progress)]
    else:
        remote = client.scatter(model, broadcast=True)
        frames = client.scatter([f for f, _ in jobs])  # one partition per period, sent once
        futures = client.map(_predict, [remote] * len(jobs), frames, [a for _, a in jobs], pure=False)
        results = client.gather(futures)
    parts = []
    for name, scored in zip(names, results):
        scored = scored.sort_index()
        scored.insert(1, "period", name)
        parts.append(scored)
    if not parts:
        raise InputError("no period has customers to score: nothing to track")
    by_period = pd.concat(parts)
    by_period.index.name = "customer_key"
    by_period.attrs = {"periods": names, "skipped": skipped}
    return by_period, skipped


# ---------------------------------------------------------------------------------------- tables


def _segment_order(value: str) -> tuple:
    return (0, int(value), "") if str(value).isdigit() else (1, 0 if value == NEW else 1, str(value))


def transition_table(by_period: pd.DataFrame, periods=None) -> pd.DataFrame:
    """Customers per (segment in one period, segment in the next) for every pair of consecutive periods.

    Customers active in both count under their two segments; those active only in the first go to
    ``inactive``, those active only in the second come from ``new``. Segments are written as text
    (``"3"``) so the pseudo-segments fit in the same column. For every pair, the counts of the
    ``segment_from`` values add up to the first period's customers and those of ``segment_to`` to the
    second's.
    """
    if periods is None:
        periods = list(by_period.attrs.get("periods") or by_period["period"].unique())
    rows = []
    for a, b in zip(periods, periods[1:]):
        sa = by_period.loc[by_period["period"] == a, "segment"].astype(str)
        sb = by_period.loc[by_period["period"] == b, "segment"].astype(str)
        pair = pd.concat([sa.rename("segment_from"), sb.rename("segment_to")], axis=1)
        pair = pair.fillna({"segment_from": NEW, "segment_to": INACTIVE})
        counts = pair.groupby(["segment_from", "segment_to"]).size().rename("customers").reset_index()
        counts.insert(0, "period_to", b)
        counts.insert(0, "period_from", a)
        rows.append(counts)
    columns = ["period_from", "period_to", "segment_from", "segment_to", "customers"]
    if not rows:
        return pd.DataFrame(columns=columns)
    out = pd.concat(rows, ignore_index=True)
    order = {p: i for i, p in enumerate(periods)}
    key = out.apply(lambda r: (order[r["period_from"]], _segment_order(r["segment_from"]),
                               _segment_order(r["segment_to"])), axis=1)
    out = out.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)
    out["customers"] = out["customers"].astype(np.int64)
    return out[columns]


def changed_share(by_period: pd.DataFrame, periods=None) -> pd.DataFrame:
    """Per pair of consecutive periods: customers active in both and the share whose segment changed."""
    trans = transition_table(by_period, periods)
    both = trans[(trans["segment_from"] != NEW) & (trans["segment_to"] != INACTIVE)]
    moved = both["customers"].where(both["segment_from"] != both["segment_to"], 0)
    out = (pd.DataFrame({"period_from": both["period_from"], "period_to": both["period_to"],
                         "customers": both["customers"], "changed": moved})
           .groupby(["period_from", "period_to"], sort=False).sum().reset_index())
    out["changed_share"] = out["changed"] / out["customers"].where(out["customers"] > 0)
    return out


def size_table(by_period: pd.DataFrame, clean: pd.DataFrame, *, period: str = "quarter",
               n_segments: int | None = None) -> pd.DataFrame:
    """Customers, their share and their share of the period's revenue, per period and segment.

    Revenue is the sum of ``amount`` (returns included) of the period's own transactions (not the
    window's) of the period's scored customers. Every segment 1..k has a row in every period.
    """
    k = int(n_segments or by_period["segment"].max())
    labels = period_labels(clean["date"], period).astype(str)
    revenue = clean.groupby([labels.rename("period"), clean["customer_key"]])["amount"].sum()
    rows = []
    for name, part in by_period.groupby("period", sort=False):
        money = revenue.loc[name].reindex(part.index).fillna(0.0)
        count = part.groupby("segment").size().reindex(range(1, k + 1), fill_value=0)
        spend = money.groupby(part["segment"]).sum().reindex(range(1, k + 1), fill_value=0.0)
        total = float(spend.sum())
        rows.append(pd.DataFrame({
            "period": name, "segment": np.arange(1, k + 1), "customers": count.to_numpy(np.int64),
            "share": count.to_numpy() / len(part),
            "revenue_share": spend.to_numpy() / total if total != 0 else np.nan,
        }))
    return pd.concat(rows, ignore_index=True)


def drift_table(by_period: pd.DataFrame, model, *, retrain_novel_share=None,
                retrain_error_ratio=None) -> pd.DataFrame:
    """Per period: share of novel customers and quantization error against training; a recommendation.

    ``novel_share`` is the share of the period's customers farther from their best unit than the
    model's novelty threshold (``1 - novelty_quantile`` of training customers are: ``novel_expected``).
    ``quantization_error`` is their mean distance to the best unit, ``error_ratio`` its ratio to the
    training customers' (:attr:`Segmentation.training_quantization_error_`). ``retrain`` is true when
    ``novel_share > retrain_novel_share`` or ``error_ratio > retrain_error_ratio`` (defaults in
    ``seglib.params``: 0.05, five times the 1% expected, and 1.25); ``recommendation`` says why.
    """
    novel_max = params.check_parameter(
        "retrain_novel_share",
        params.default("retrain_novel_share") if retrain_novel_share is None else retrain_novel_share)
    ratio_max = params.check_parameter(
        "retrain_error_ratio",
        params.default("retrain_error_ratio") if retrain_error_ratio is None else retrain_error_ratio)
    train_qe = model.training_quantization_error_
    grouped = by_period.groupby("period", sort=False)
    out = pd.DataFrame({
        "customers": grouped.size(),
        "novel_share": grouped["novel"].mean(),
        "novel_expected": 1 - float(model.novelty_quantile),
        "quantization_error": grouped["distance"].mean(),
        "training_quantization_error": train_qe,
    }).reset_index()
    out["error_ratio"] = out["quantization_error"] / train_qe if train_qe > 0 else np.inf
    too_novel = out["novel_share"] > novel_max
    too_far = out["error_ratio"] > ratio_max
    out["retrain"] = too_novel | too_far
    reasons = []
    for novel, far, row in zip(too_novel, too_far, out.itertuples()):
        why = []
        if novel:
            why.append(f"{row.novel_share:.1%} novel customers > {novel_max:.0%}")
        if far:
            why.append(f"quantization error {row.error_ratio:.2f}x training > {ratio_max:g}x")
        reasons.append("retrain: " + "; ".join(why) if why else "keep: the map describes these customers")
    out["recommendation"] = reasons
    out["customers"] = out["customers"].astype(np.int64)
    return out


# ---------------------------------------------------------------------------------------- the step


@dataclass
class Tracking:
    """What tracking produced (written by :func:`write_tracking`)."""

    by_period: pd.DataFrame  # index customer_key
    transitions: pd.DataFrame
    sizes: pd.DataFrame
    drift: pd.DataFrame
    model: object  # seglib.segmentation.Segmentation
    period: str
    window: int
    periods: list = field(default_factory=list)  # scored, in order
    skipped: list = field(default_factory=list)  # without customers
    trained_on: list = field(default_factory=list)  # periods of a model trained here
    out_dir: Path | None = None  # where write_tracking wrote it (set by the caller)

    @property
    def id_column(self) -> str:
        return self.model.id_column

    def changed(self) -> pd.DataFrame:
        """Per pair of consecutive periods: customers in both, how many changed segment, the share."""
        return changed_share(self.by_period, self.periods)

    def summary(self) -> str:
        """A paragraph (Markdown): periods, movement, growth, the drift recommendation."""
        ch = self.changed()
        text = (f"**{len(self.periods)} {self.period}s** tracked ({self.periods[0]} to {self.periods[-1]}) "
                f"with a window of {self.window} {self.period}(s)")
        text += (f", after training on {', '.join(self.trained_on)}. " if self.trained_on else ". ")
        if self.skipped:
            text += f"Skipped without customers: {', '.join(self.skipped)}. "
        if len(ch):
            text += (f"Between consecutive {self.period}s, {ch['changed_share'].min():.0%} to "
                     f"{ch['changed_share'].max():.0%} of the customers active in both changed segment. ")
            s = self.sizes.pivot(index="segment", columns="period", values="share")
            growth = (s[self.periods[-1]] - s[self.periods[0]]).sort_values()
            names = self.model.segment_names_
            text += (f"Fastest growing: {growth.index[-1]} ({names[growth.index[-1]]}, "
                     f"{100 * growth.iloc[-1]:+.1f} percentage points); fastest shrinking: {growth.index[0]} "
                     f"({names[growth.index[0]]}, {100 * growth.iloc[0]:+.1f} points). ")
        flagged = self.drift.loc[self.drift["retrain"], "period"].tolist()
        last = self.drift.iloc[-1]
        if last["retrain"]:
            why = last["recommendation"].removeprefix("retrain: ")
            text += f"**Retrain recommended**: in the latest {self.period}, {last['period']}, {why}."
        else:
            text += (f"The latest {self.period}, {last['period']}, is within the drift thresholds: "
                     "keep the model")
            text += (f" (earlier {self.period}s past a threshold: {', '.join(flagged)})." if flagged else ".")
        return text


def track_segments(data, model=None, *, period: str | None = None, window: int | None = None,
                   train_periods: int | None = None, retrain_novel_share=None, retrain_error_ratio=None,
                   columns=None, client=None, progress: bool = False, **train) -> Tracking:
    """Score every period of ``data`` with a segmentation; transitions, sizes and drift.

    Parameters
    ----------
    data : path or DataFrame
        Transactions (see :func:`read_transactions`).
    model : Segmentation, path or None
        The segmentation, used as it is (a path is a run folder or model folder). None: train one on
        the first ``train_periods`` periods.
    period : {"month", "quarter", "year"}, default "quarter"
        Length of a period. Segments describe habits that change over months: quarters give enough
        purchases per customer; months show faster moves with noisier assignments.
    window : int, default 1
        Periods behind each period's features (see :func:`score_periods`).
    train_periods : int, optional
        With no ``model``: periods to train on; the later ones are tracked. The data must have at
        least ``train_periods + 1`` periods.
    retrain_novel_share, retrain_error_ratio : float, optional
        Thresholds of the retrain recommendation (see :func:`drift_table`).
    columns : dict, optional
        Role -> column mapping when training (a saved model brings its own).
    client : distributed.Client, optional
        Score the periods on Dask.
    **train
        ``map_shape``, ``n_clusters``, ``method``, ``seed``, ``scaler``, ``n_epochs``, ``topology``,
        ``bases``, ``feature_weights`` of the training (see :func:`train_segmentation`).
    """
    from seglib.segmentation import Segmentation

    period = params.check_parameter("period", params.default("period") if period is None else period)
    window = params.check_parameter("window", params.default("window") if window is None else window)
    if train_periods is not None:
        train_periods = params.check_parameter("train_periods", train_periods)
    valid = ("map_shape", "n_clusters", "method", "seed", "scaler", "n_epochs", "topology", "bases",
             "feature_weights")
    unknown = sorted(set(train) - set(valid))
    if unknown:
        raise ParameterError(f"unknown training parameter(s) {unknown}; valid: {', '.join(valid)}")
    if model is not None and train_periods is not None:
        raise ParameterError("give either a model (used as it is) or train_periods (train a new one), "
                             "not both")
    if model is None and train_periods is None:
        raise ParameterError("no model to track with: give a saved model (--model RUN_DIR) or "
                             "train_periods N (train on the first N periods)")
    if model is not None and not isinstance(model, Segmentation):
        model = Segmentation.load(model)
    clean = read_transactions(data, model, columns=columns, progress=progress)
    labels = period_labels(clean["date"], period)
    freq = _freq(period)
    all_periods = pd.period_range(labels.min(), labels.max(), freq=freq)
    trained_on, first = [], None
    if model is None:
        if len(all_periods) < train_periods + 1:
            raise ParameterError(
                f"train_periods={train_periods}: the data spans {len(all_periods)} {period}(s) "
                f"({all_periods[0]} to {all_periods[-1]}); tracking needs at least train_periods + 1")
        first = all_periods[train_periods]
        train_clean = clean.loc[labels < first]
        train_clean.attrs = dict(clean.attrs)
        trained_on = [str(p) for p in all_periods[:train_periods]]
        logger.info("training a segmentation on %s to %s", trained_on[0], trained_on[-1])
        model = train_segmentation(train_clean, as_of=first.start_time.date().isoformat(), progress=progress,
                                   **train)
    by_period, skipped = score_periods(model, clean, period=period, window=window, first=first, client=client,
                                       progress=progress)
    periods = by_period.attrs["periods"]
    transitions = transition_table(by_period, periods)
    sizes = size_table(by_period, clean, period=period, n_segments=model.n_segments_)
    drift = drift_table(by_period, model, retrain_novel_share=retrain_novel_share,
                        retrain_error_ratio=retrain_error_ratio)
    return Tracking(by_period=by_period, transitions=transitions, sizes=sizes, drift=drift, model=model,
                    period=period, window=window, periods=periods, skipped=skipped, trained_on=trained_on)


# ---------------------------------------------------------------------------------------- files

#: Figures of a tracking run: file stem -> title.
FIGURES = {"track_flows": "Segment flows between consecutive periods",
           "track_sizes": "Segment sizes over time",
           "track_transitions": "Transitions between segments (share of the row's customers)"}


def tracking_figures(tracking: Tracking) -> dict:
    """The three figures (name -> matplotlib Figure); close them after use."""
    import matplotlib.pyplot as plt

    from seglib.plots import plot_segment_flows, plot_sizes_over_time, plot_transition_heatmap

    names = tracking.model.segment_names_
    figs = {}
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(tracking.periods)), 4.8))
    plot_segment_flows(tracking.transitions, n_segments=tracking.model.n_segments_, names=names, ax=ax)
    figs["track_flows"] = fig
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    plot_sizes_over_time(tracking.sizes, names=names, ax=ax)
    figs["track_sizes"] = fig
    fig, ax = plt.subplots(figsize=(7.0, 5.5))
    plot_transition_heatmap(tracking.transitions, ax=ax)
    figs["track_transitions"] = fig
    return figs


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, bbox_inches="tight", format="png", metadata={"Software": None})
    return buf.getvalue()


def write_tracking(tracking: Tracking, out_dir, *, figures: bool = True) -> list[Path]:
    """Write ``by_period.csv``, ``transitions.csv``, ``sizes.csv``, ``drift.csv``, ``figures/track_*.png``
    and ``tracking.html`` (self-contained: figures embedded) into ``out_dir``; every file atomically,
    text cells a spreadsheet would run as formulas neutralised. Returns the paths."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    id_column = tracking.id_column
    by_period = tracking.by_period[[id_column, "period", "segment", "segment_name", "distance", "novel"]]
    paths = [
        write_csv(out / "by_period.csv", by_period, float_format=FLOAT_FORMAT),
        write_csv(out / "transitions.csv", tracking.transitions, float_format=FLOAT_FORMAT),
        write_csv(out / "sizes.csv", tracking.sizes, float_format=FLOAT_FORMAT),
        write_csv(out / "drift.csv", tracking.drift, float_format=FLOAT_FORMAT),
    ]
    images = {}
    if figures:
        (out / "figures").mkdir(exist_ok=True)
        for name, fig in tracking_figures(tracking).items():
            images[name] = _png(fig)
            plt.close(fig)
            path = out / "figures" / f"{name}.png"
            from seglib._files import atomic_path

            with atomic_path(path) as tmp:
                Path(tmp).write_bytes(images[name])
            paths.append(path)
    paths.append(atomic_write_text(out / "tracking.html", tracking_html(tracking, images)))
    logger.info("wrote the tracking of %d periods to %s", len(tracking.periods), out)
    return paths


def tracking_html(tracking: Tracking, images: dict) -> str:
    """One standalone page: summary, drift table and recommendation, figures (embedded), sizes."""
    names = tracking.model.segment_names_
    sizes = tracking.sizes.assign(segment=lambda d: d["segment"].map(lambda s: f"{s} {names[s]}"))
    share = sizes.pivot(index="segment", columns="period", values="share")[tracking.periods]
    drift = tracking.drift.copy()
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Segments over time</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}img{max-width:100%}</style></head><body>",
        "<h1>Segments over time</h1>",
        f"<p>{html.escape(tracking.summary().replace('**', ''))}</p>",
        "<h2>Is the map still a good description? (drift)</h2>",
        drift.to_html(index=False, float_format=lambda v: f"{v:.3g}"),
    ]
    for name, title in FIGURES.items():
        if name in images:
            data = base64.b64encode(images[name]).decode("ascii")
            parts += [f"<h2>{html.escape(title)}</h2>",
                      f"<img alt='{name}' src='data:image/png;base64,{data}'>"]
    parts += ["<h2>Share of customers per segment</h2>",
              share.to_html(float_format=lambda v: f"{v:.1%}"), "</body></html>"]
    return "\n".join(parts) + "\n"
