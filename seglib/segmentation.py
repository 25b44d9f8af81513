"""The saved segmentation model: score new customers under the segment definitions of a run.

Segments are defined once and then used for months; new customers must get their segment under the
*same* definitions, not from a fresh clustering whose segment 3 means something else. A
:class:`Segmentation` holds everything the chain needs, as fitted by the pipeline::

    transactions -> load (saved column mapping) -> clean (saved settings) -> FeatureBuilder -> FeatureScaler
                 -> SOM best unit -> segment (nearest segment mean, or the unit's segment), name,
                    distance, novelty flag

It is built at the end of step 04 (:meth:`Segmentation.from_fitted`), saved in the run folder
(``<run>/model/``, :meth:`Segmentation.save`) and read back with :meth:`Segmentation.load`, which never
unpickles and refuses missing, corrupted, tampered or newer files with
:class:`~seglib.errors.ModelFormatError`. :func:`score_file` is what ``seglib score`` runs.
``docs/scoring.md`` describes the files, the output and how differences from training are handled.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from seglib._files import read_npz, write_csv, write_json, write_npz
from seglib.errors import InputError, ModelFormatError, ParameterError, check_option

__all__ = ["Segmentation", "score_file", "FORMAT_VERSION", "OUTPUT_COLUMNS"]

logger = logging.getLogger(__name__)

#: Version of the files written by :meth:`Segmentation.save`; :meth:`Segmentation.load` refuses newer ones.
#: 2 (customer-level segments) added ``"assign"`` and, for ``"customer"``, the segment means in
#: ``model.npz``; a version-1 model (no ``assign``) scores unit -> segment, as it always did.
FORMAT_VERSION = 2
#: How a model gives a customer its segment: its best unit's segment, or the nearest segment mean.
ASSIGN = ("customer", "unit")
MODEL_JSON, MODEL_NPZ, SOM_DIR = "model.json", "model.npz", "som"
#: Files whose SHA-256 ``model.json`` records (it is written last): a folder left half-written by an
#: interrupted save, or an array file replaced by hand, is refused instead of mixing two models.
DIGESTED = (MODEL_NPZ, f"{SOM_DIR}/som.json", f"{SOM_DIR}/som.npz")
_NPZ_ARRAYS = ("unit_labels", "distance_levels", "distance_quantiles")
#: Quantile levels of the training distances that are stored: every percentile, plus 99.5 and 99.9.
DISTANCE_LEVELS = np.unique(np.round(np.concatenate([np.linspace(0.0, 1.0, 101), [0.995, 0.999]]), 6))
#: Columns of :meth:`Segmentation.predict` after the id column (also the CSV of :func:`score_file`).
OUTPUT_COLUMNS = ("segment", "som_row", "som_col", "distance", "novel", "segment_name")
#: Cleaning settings stored with the model, with the cleaner's defaults (see seglib.clean).
CLEAN_SETTINGS = {"min_age": 15.0, "max_age": 99.0, "date_format": None, "dob_format": None,
                  "drop_duplicates": False, "min_date": None, "max_date": None, "max_amount": None}
#: Keys of model.json and their JSON types.
_SCHEMA = {
    "format": str, "format_version": int, "seglib_version": str, "id_column": str,
    "columns": (dict, type(None)), "clean_settings": dict, "features": dict, "feature_names": list,
    "segment_names": dict, "novelty_quantile": (int, float), "training": dict, "files": dict,
}


# ---------------------------------------------------------------------------------------- helpers


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _model_folder(path) -> Path:
    """The model folder: ``path`` itself, or ``path/model`` for a run folder."""
    folder = Path(path).expanduser()
    for candidate in (folder, folder / "model"):
        if (candidate / MODEL_JSON).is_file():
            return candidate
    raise ModelFormatError(
        f"{folder}: no {MODEL_JSON} here or in {folder / 'model'}; a saved segmentation is a folder with "
        f"{MODEL_JSON}, {MODEL_NPZ} and {SOM_DIR}/ (Segmentation.save; a pipeline run saves one in "
        "<run>/model/)"
    )


def _number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_clean_settings(settings) -> dict:
    """The cleaning settings with the cleaner's defaults filled in."""
    if settings is None:
        return dict(CLEAN_SETTINGS)
    if not isinstance(settings, dict):
        raise ParameterError(f"clean_settings must be a dict (CleaningReport.settings), "
                             f"got {type(settings).__name__}")
    unknown = sorted(set(settings) - set(CLEAN_SETTINGS))
    if unknown:
        raise ParameterError(f"clean_settings has unknown key(s) {unknown}; "
                             f"valid keys: {', '.join(CLEAN_SETTINGS)}")
    out = {**CLEAN_SETTINGS, **settings}
    ages = [out["min_age"], out["max_age"]]
    if not all(_number(a) and math.isfinite(a) and a >= 0 for a in ages) or ages[0] > ages[1]:
        raise ParameterError(f"clean_settings: min_age={ages[0]!r}, max_age={ages[1]!r}; expected "
                             "numbers with 0 <= min_age <= max_age")
    for key in ("date_format", "dob_format"):
        if not (out[key] is None or (isinstance(out[key], str) and out[key].strip())):
            raise ParameterError(f"clean_settings: {key}={out[key]!r}; expected a strftime format or "
                                 "None")
    if not isinstance(out["drop_duplicates"], bool):
        raise ParameterError(f"clean_settings: drop_duplicates={out['drop_duplicates']!r}; expected "
                             "true or false")
    if out["max_amount"] is not None and not (_number(out["max_amount"]) and out["max_amount"] > 0):
        raise ParameterError(f"clean_settings: max_amount={out['max_amount']!r}; expected a number > 0 "
                             "or None")
    out["min_age"], out["max_age"] = float(ages[0]), float(ages[1])
    return out


def _check_columns(columns) -> dict | None:
    """Role -> column mapping of the training file (required roles present), or None."""
    from seglib.load import AMOUNT_FROM, REQUIRED_ROLES, ROLES

    if columns is None:
        return None
    if not isinstance(columns, dict):
        raise ParameterError(f"columns must be a dict of role -> column name, got {type(columns).__name__}")
    for role, col in columns.items():
        check_option("columns role", role, ROLES)
        if not isinstance(col, str) or not col.strip():
            raise ParameterError(f"columns[{role!r}]={col!r}; expected a column name")
    derived = all(r in columns for r in AMOUNT_FROM)  # the amount is quantity * unit_price
    missing = [r for r in REQUIRED_ROLES if r not in columns and not (r == "amount" and derived)]
    if missing:
        raise ParameterError(f"columns lacks the required role(s) {missing}; give the mapping the "
                             "training file was read with (load_transactions(...).attrs['columns'])")
    return {r: columns[r] for r in ROLES if r in columns}


def _segment_names(names, k: int) -> dict[int, str]:
    """Names of segments 1..k from a Series / dict / profile DataFrame (``name`` column) or None."""
    if isinstance(names, pd.DataFrame):
        if "name" not in names.columns:
            raise ParameterError("segment_names: a DataFrame must have a 'name' column (the profile table)")
        names = names["name"]
    if names is None:
        names = {}
    if not hasattr(names, "items"):
        raise ParameterError(f"segment_names must map segment -> name (a Series, dict or the profile), "
                             f"got {type(names).__name__}")
    given = {int(s): str(n) for s, n in names.items()}
    outside = sorted(set(given) - set(range(1, k + 1)))
    if outside:
        raise ParameterError(f"segment_names names segment(s) {outside} outside 1..{k}")
    return {s: given.get(s, f"Segment {s}") for s in range(1, k + 1)}


# ---------------------------------------------------------------------------------------- the model


class Segmentation:
    """A fitted segmentation that scores new customers under the saved segment definitions.

    Build one with :meth:`from_fitted` (from the pipeline's fitted objects) or :meth:`load` (from a
    folder written by :meth:`save`); the constructor checks that the parts fit together.

    Parameters
    ----------
    pipeline : sklearn Pipeline
        The fitted feature pipeline (``"features"``: FeatureBuilder, ``"scale"``: FeatureScaler).
    som : seglib.som.SOM
        The fitted map, trained on the pipeline's output.
    unit_labels : array of int, shape (units,)
        Segment 1..k of every unit (``ClusterStep.unit_segments``: its customers' majority segment),
        flat index ``row * cols + col``; what scores a customer when ``segment_means`` is None.
    distance_levels, distance_quantiles : array of float
        Quantiles of the training customers' distance to their best unit, at these levels (0..1).
    segment_names : dict of int to str
        Name of every segment 1..k.
    columns : dict or None
        Role -> column name of the training file (see :meth:`from_fitted`).
    clean_settings : dict or None
        ``min_age``, ``max_age``, ``date_format``, ``dob_format``, ``drop_duplicates`` of the cleaner.
    id_column : str
        Name of the customer id column in the output (the input file's, e.g. ``"customerID"``).
    novelty_quantile : float, default=0.99
        Customers farther from their best unit than this quantile of the training distances are flagged
        ``novel`` ("unlike any segment"). 0.99 flags about 1% of customers like the training ones; raise it
        (0.995, 0.999 are stored exactly) to flag only the most unusual. It may be changed after loading.
    training : dict, optional
        Facts about the training data (``customers``, ``as_of``), for reading only.
    segment_means : array of float of shape (k, n_features), optional
        The segments' means in the scaled space (customer-level segments, ``assign="customer"``): a
        customer gets the nearest (ties to the lowest segment). None: the unit's segment.

    Attributes
    ----------
    n_segments_ : int
    feature_names_ : list of str
        The scaled features the SOM works on, in order.
    novelty_threshold_ : float
        The distance above which a customer is ``novel``.
    """

    def __init__(self, pipeline, som, unit_labels, distance_levels, distance_quantiles, *, segment_names,
                 columns=None, clean_settings=None, id_column="customerID", novelty_quantile=0.99,
                 training=None, segment_means=None):
        self.pipeline_ = pipeline
        self.som_ = som
        self.unit_labels_ = np.asarray(unit_labels)
        self.distance_levels_ = np.asarray(distance_levels)
        self.distance_quantiles_ = np.asarray(distance_quantiles)
        self.segment_names_ = dict(segment_names)
        self.columns = _check_columns(columns)
        self.clean_settings = _check_clean_settings(clean_settings)
        self.id_column = id_column
        self.novelty_quantile = novelty_quantile
        self.training = dict(training or {})
        self.segment_means_ = None if segment_means is None else np.asarray(segment_means)
        self._check()

    def _check(self) -> None:
        """Raise ParameterError unless the parts fit together (load turns it into ModelFormatError)."""
        if not isinstance(self.id_column, str) or not self.id_column or self.id_column in OUTPUT_COLUMNS:
            raise ParameterError(f"id_column={self.id_column!r}; expected a column name other than "
                                 f"{', '.join(OUTPUT_COLUMNS)}")
        builder, scaler = self.pipeline_["features"], self.pipeline_["scale"]
        if builder.level != "customer":
            raise ParameterError(f"the feature pipeline works on level={builder.level!r}; scoring needs "
                                 "level='customer' (segments are sets of customers)")
        names = list(builder.feature_names_)
        if list(scaler.feature_names_in_) != names:
            raise ParameterError(f"the scaler's features {list(scaler.feature_names_in_)} differ from the "
                                 f"builder's {names}")
        rows, cols = self.som_.map_shape_
        if self.som_.n_features_in_ != len(names):
            raise ParameterError(f"the SOM has {self.som_.n_features_in_} features but the feature pipeline "
                                 f"makes {len(names)}: they were not fitted together")
        labels = self.unit_labels_
        if labels.shape != (rows * cols,) or labels.dtype.kind not in "iu":
            raise ParameterError(f"unit_labels: {labels.dtype} array of shape {labels.shape}; expected one "
                                 f"integer segment per unit of the {rows}x{cols} map ({rows * cols},)")
        k = len(self.segment_names_)
        if set(self.segment_names_) != set(range(1, k + 1)):
            raise ParameterError(f"segment_names must name segments 1..{k}, "
                                 f"got {sorted(self.segment_names_)}")
        if labels.min() < 1 or labels.max() > k:
            raise ParameterError(f"unit_labels hold segment numbers {labels.min()}..{labels.max()}, outside "
                                 f"1..{k} (the named segments)")
        lv, qs = self.distance_levels_, self.distance_quantiles_
        ok = lv.ndim == 1 and lv.shape == qs.shape and len(lv) >= 2 and lv.dtype.kind == qs.dtype.kind == "f"
        ok = ok and lv[0] == 0 and lv[-1] == 1 and (np.diff(lv) > 0).all()
        ok = ok and np.isfinite(qs).all() and (qs >= 0).all() and (np.diff(qs) >= 0).all()
        if not ok:
            raise ParameterError("distance quantiles: expected two float arrays of equal length, levels "
                                 "rising from 0 to 1 and finite non-decreasing distances >= 0")
        means = self.segment_means_
        if means is not None and (means.shape != (k, len(names)) or means.dtype.kind != "f"
                                  or not np.isfinite(means).all()):
            raise ParameterError(f"segment_means: {means.dtype} array of shape {means.shape}; expected the "
                                 f"finite mean of each of the {k} segments over the {len(names)} scaled "
                                 "features")
        self.novelty_threshold_  # raises ParameterError for a bad novelty_quantile

    # ------------------------------------------------------------------------------------ fitted facts

    @property
    def assign_(self) -> str:
        """``"customer"``: a customer gets the nearest segment mean; ``"unit"``: its best unit's segment."""
        return "unit" if self.segment_means_ is None else "customer"

    @property
    def n_segments_(self) -> int:
        return len(self.segment_names_)

    @property
    def feature_names_(self) -> list[str]:
        return list(self.pipeline_["features"].feature_names_)

    @property
    def novelty_threshold_(self) -> float:
        q = self.novelty_quantile
        if not (_number(q) and 0 < q < 1):
            raise ParameterError(f"novelty_quantile={q!r} is not valid; expected a number in (0, 1), "
                                 "e.g. 0.99 (about 1% of customers like the training ones are flagged)")
        return float(np.interp(q, self.distance_levels_, self.distance_quantiles_))

    def __repr__(self) -> str:
        rows, cols = self.som_.map_shape_
        return (f"Segmentation({self.n_segments_} segments, {rows}x{cols} SOM, {len(self.feature_names_)} "
                f"features, id column {self.id_column!r})")

    # ------------------------------------------------------------------------------------ building

    @classmethod
    def from_fitted(cls, pipeline, som, unit_labels, segment_names, X_train, *, columns=None,
                    clean_settings=None, id_column="customerID", novelty_quantile=0.99,
                    segment_means=None) -> "Segmentation":
        """Assemble the model from the pipeline's fitted objects (the end of step 04).

        Parameters
        ----------
        pipeline : sklearn Pipeline
            ``SomStep.pipeline``: the fitted FeatureBuilder -> FeatureScaler. It is copied through its
            JSON form, so the model predicts exactly as it will after :meth:`save` / :meth:`load`.
        som : seglib.som.SOM
            ``SomStep.som``.
        unit_labels : array of int
            ``ClusterStep.unit_segments`` (segment 1..k of every unit: its customers' majority).
        segment_names : Series, dict, profile DataFrame or None
            Segment -> name, e.g. ``profile["name"]`` of step 04 (or the profile itself). Segments
            without a name are called ``"Segment <s>"``.
        X_train : array-like of shape (n_customers, n_features)
            The scaled matrix the SOM was trained on (``SomStep.X``): its best-unit distances define
            what "unlike any segment" means.
        columns : dict, optional
            Role -> column name the training file was read with: ``load_transactions(...).attrs["columns"]``
            (``CleanStep.raw.attrs["columns"]``). Scoring reads files with it; roles absent from it stay
            unused even when a new file has them, so features keep their training definitions. None: the
            default mapping resolved on each file (right for files in the original schema).
        clean_settings : dict, optional
            ``CleaningReport.settings`` of the training data: the age range, the date formats *as used*
            (so a new file is never parsed day-first when training was month-first) and
            ``drop_duplicates``. None: the cleaner's defaults, formats detected on each file. The
            reference date is not stored: scoring uses the scored data's own (see :meth:`predict`).
        id_column : str, default="customerID"
            Name of the input's customer id column, used for the output's id column.
        novelty_quantile : float, default=0.99
            See the class parameters.
        segment_means : array of shape (k, n_features), optional
            The segments' means in the scaled space (``ClusterStep.segment_means``) when the segments
            were consolidated customer by customer (``assign="customer"``): a customer then gets the
            nearest mean (ties to the lowest segment), as in training. None: the unit's segment.

        Returns
        -------
        Segmentation
        """
        from seglib.features import pipeline_from_dict, pipeline_to_dict

        pipeline = pipeline_from_dict(pipeline_to_dict(pipeline))
        X = np.asarray(X_train, dtype=float)
        if X.ndim != 2 or len(X) == 0:
            raise InputError(f"X_train: expected the scaled training matrix (customers x features), "
                             f"got shape {X.shape}")
        _, distance = som.predict(X, return_distance=True)
        labels = np.asarray(unit_labels)
        if labels.ndim != 1 or labels.size == 0 or labels.dtype.kind not in "iu":
            raise ParameterError("unit_labels: expected a 1-D integer array (PrototypeClustering."
                                 f"unit_labels_), got {labels.dtype} of shape {labels.shape}")
        k = int(labels.max())
        builder = pipeline["features"]
        training = {"customers": int(len(X)), "as_of": builder.as_of_,
                    "quantization_error": float(np.mean(distance))}
        builder.set_params(as_of=None)  # scoring measures recency from the scored data's date
        return cls(pipeline, som, labels.astype(np.int64), DISTANCE_LEVELS.copy(),
                   np.quantile(distance, DISTANCE_LEVELS), segment_names=_segment_names(segment_names, k),
                   columns=columns, clean_settings=clean_settings, id_column=id_column,
                   novelty_quantile=novelty_quantile, training=training,
                   segment_means=None if segment_means is None else np.asarray(segment_means, dtype=float))

    # ------------------------------------------------------------------------------------ scoring

    def _clean(self, transactions, as_of, progress, notes: list):
        """Cleaned transactions and the cleaning report (None for an already cleaned frame)."""
        from seglib.clean import clean_transactions
        from seglib.load import DEFAULT_COLUMNS, REQUIRED_ROLES, ROLES, load_transactions, read_header

        s = self.clean_settings
        if isinstance(transactions, (str, os.PathLike)):
            path, mapping = Path(transactions).expanduser(), None
            if self.columns is not None:
                found = read_header(path) if path.is_file() else None
                mapping = {}
                for role in ROLES:
                    col = self.columns.get(role)
                    if found is not None and role not in REQUIRED_ROLES:
                        if col is not None and col not in found:
                            notes.append(f"column {col!r} (role {role}) is not in {path}: features built "
                                         "from it are imputed with their training values")
                            col = None
                        elif col is None and DEFAULT_COLUMNS.get(role) in found:
                            notes.append(f"column {DEFAULT_COLUMNS[role]!r} (role {role}) was not used in "
                                         "training: ignored")
                    if col is not None or role not in REQUIRED_ROLES:
                        mapping[role] = col
            raw = load_transactions(path, mapping, date_format=s["date_format"], dob_format=s["dob_format"])
        elif isinstance(transactions, pd.DataFrame) and "customer_key" in transactions.columns:
            return transactions, None
        elif isinstance(transactions, pd.DataFrame):
            raw = transactions
            if self.columns is not None:
                unused = [r for r in ROLES if r in raw.columns and r not in self.columns]
                absent = [r for r in self.columns if r not in raw.columns and r not in REQUIRED_ROLES]
                if unused:
                    notes.append(f"role column(s) {unused} were not used in training: ignored")
                    raw = raw.drop(columns=unused)
                if absent:
                    notes.append(f"role column(s) {absent} are absent: features built from them are imputed "
                                 "with their training values")
        else:
            raise ParameterError(f"transactions must be a file path, a DataFrame from load_transactions or a "
                                 f"cleaned DataFrame; got {type(transactions).__name__}")
        # the training's amount bound holds for new data (same currency, same shop); its date window
        # does not (new data is later): the window of the scored data is derived from its own dates
        return clean_transactions(raw, as_of=as_of, min_age=s["min_age"], max_age=s["max_age"],
                                  date_format=s["date_format"], dob_format=s["dob_format"],
                                  drop_duplicates=s["drop_duplicates"], max_amount=s["max_amount"],
                                  progress=progress)

    def clean(self, transactions, *, as_of=None, progress: bool = False) -> pd.DataFrame:
        """``transactions`` read with the saved column mapping and cleaned with the saved settings.

        What :meth:`predict` does first; call it to clean a file once and score slices of it (e.g. one
        period at a time: ``seglib track``). ``transactions`` and ``as_of`` are as in :meth:`predict`;
        an already cleaned frame is returned as is. ``attrs["differences"]`` lists what differed from
        training (in words).
        """
        notes: list[str] = []
        if as_of is not None:
            from seglib.clean import check_as_of

            as_of = check_as_of(as_of)
        clean, _ = self._clean(transactions, as_of, progress, notes)
        clean.attrs["differences"] = notes
        return clean

    @property
    def training_quantization_error_(self) -> float:
        """Mean distance of the training customers to their best unit (the map's quantization error).

        Read from ``training`` (models saved by this version), else estimated from the stored distance
        quantiles (their mean over the levels).
        """
        value = self.training.get("quantization_error")
        if _number(value):
            return float(value)
        lv, qs = self.distance_levels_, self.distance_quantiles_
        return float(np.sum(np.diff(lv) * (qs[1:] + qs[:-1]) / 2))

    def predict(self, transactions, *, as_of=None, progress: bool = False) -> pd.DataFrame:
        """Segment, best unit, distance and novelty flag of every customer in ``transactions``.

        Parameters
        ----------
        transactions : path, DataFrame
            A transactions file (CSV, gzip CSV, Parquet; read with the saved column mapping), a raw frame
            as returned by :func:`seglib.load.load_transactions` (role-named columns), or an already
            cleaned frame (it has ``customer_key``; used as is). Raw input is cleaned with the saved
            settings.
        as_of : str or date, optional
            Reference date of recency, tenure and ages. None (default): the scored data's own, the day
            after its last transaction (for a cleaned frame, its ``attrs["as_of"]``), as at training.
            Give the date the data was extracted when the last customers bought days before it.
        progress : bool, default=False
            Show a progress bar over the cleaning rules.

        Returns
        -------
        DataFrame
            Index ``customer_key``, one row per customer kept by the cleaner. Columns: the id exactly as
            given (named :attr:`id_column`), ``segment`` (1..k: the nearest saved segment mean, or
            for a model of whole units the saved unit -> segment map), ``som_row``, ``som_col``
            (best unit), ``distance`` (to the best unit, in scaled feature space), ``novel``
            (distance above :attr:`novelty_threshold_`: unlike any segment, its segment is the
            nearest but a poor fit), ``segment_name``. ``attrs`` holds ``as_of``,
            ``cleaning_report`` (``CleaningReport.to_dict()``; None for cleaned input),
            ``differences`` (what differed from training, in words: each also raised as a warning or
            logged), ``imputed`` (feature -> customers whose value was imputed) and
            ``novelty_threshold``. Read ``attrs`` right away: pandas drops them in some operations.

        Raises
        ------
        InputError
            A required column (customer id, date, amount) is missing or has no usable value.
        ParameterError
            An invalid ``as_of``.
        """
        notes: list[str] = []
        if as_of is not None:
            from seglib.clean import check_as_of

            as_of = check_as_of(as_of)
        clean, report = self._clean(transactions, as_of, progress, notes)
        builder = copy.copy(self.pipeline_["features"])
        builder.as_of = as_of
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            matrix = builder.transform(clean)
        for w in caught:  # unseen programmes, absent inputs: reported, then passed on to the caller
            if issubclass(w.category, UserWarning):
                notes.append(str(w.message))
            warnings.warn(w.message, w.category, stacklevel=2)
        for note in notes:
            logger.warning("scoring: %s", note)
        X = self.pipeline_["scale"].transform(matrix)
        if hasattr(self.som_, "feature_names_in_"):
            X = pd.DataFrame(X, columns=self.feature_names_)
        bmu, distance = self.som_.predict(X, return_distance=True)
        rows, cols = np.unravel_index(bmu, self.som_.map_shape_)
        if self.segment_means_ is None:
            segment = self.unit_labels_[bmu].astype(np.int64)
        else:
            from seglib.cluster import nearest_segment

            segment = nearest_segment(np.asarray(X, dtype=np.float64), self.segment_means_)
        threshold = self.novelty_threshold_
        out = pd.DataFrame({
            self.id_column: matrix["customer_id"].to_numpy(), "segment": segment,
            "som_row": rows.astype(np.int64), "som_col": cols.astype(np.int64), "distance": distance,
            "novel": distance > threshold, "segment_name": [self.segment_names_[s] for s in segment],
        }, index=matrix.index)
        out.attrs = {"as_of": matrix.attrs.get("as_of"), "differences": notes,
                     "cleaning_report": None if report is None else report.to_dict(),
                     "imputed": dict(matrix.attrs.get("imputed", {})), "novelty_threshold": threshold}
        logger.info("scored %d customers: %d (%.1f%%) unlike any segment (distance > %.3g)", len(out),
                    int(out["novel"].sum()), 100 * out["novel"].mean() if len(out) else 0.0, threshold)
        return out

    # ------------------------------------------------------------------------------------ files

    def save(self, path) -> Path:
        """Write the model to the folder ``path``: ``model.json``, ``model.npz`` and ``som/``.

        ``model.json`` holds everything but arrays (format and seglib versions, id column, column
        mapping, cleaning settings, the feature pipeline's JSON data, segment names, novelty quantile,
        SHA-256 of the other files); ``model.npz`` the unit -> segment map (each unit's majority
        segment), the segment means (customer-level segments) and the distance quantiles;
        ``som/`` the map as written by :meth:`seglib.som.SOM.save`. No pickle anywhere. Every file is
        written atomically, ``model.json`` last; the same model gives the same bytes. Returns the folder.
        """
        from seglib import __version__
        from seglib.features import pipeline_to_dict

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.som_.save(folder / SOM_DIR)
        arrays = {"unit_labels": self.unit_labels_.astype(np.int64),
                  "distance_levels": self.distance_levels_.astype(np.float64),
                  "distance_quantiles": self.distance_quantiles_.astype(np.float64)}
        if self.segment_means_ is not None:
            arrays["segment_means"] = self.segment_means_.astype(np.float64)
        write_npz(folder / MODEL_NPZ, arrays)
        meta = {
            "format": "seglib.Segmentation", "format_version": FORMAT_VERSION, "seglib_version": __version__,
            "assign": self.assign_,
            "id_column": self.id_column, "columns": self.columns, "clean_settings": self.clean_settings,
            "features": pipeline_to_dict(self.pipeline_), "feature_names": self.feature_names_,
            "segment_names": {str(s): n for s, n in sorted(self.segment_names_.items())},
            "novelty_quantile": float(self.novelty_quantile), "novelty_threshold": self.novelty_threshold_,
            "map_shape": list(self.som_.map_shape_), "training": self.training,
            "files": {name: _sha256(folder / name) for name in DIGESTED},
        }
        write_json(folder / MODEL_JSON, meta)
        logger.info("saved %r to %s", self, folder)
        return folder

    @classmethod
    def load(cls, path) -> "Segmentation":
        """Read a model written by :meth:`save`; ``path`` is the model folder or a run folder holding
        ``model/``.

        Arrays are read with ``allow_pickle=False``: an object array placed in a file is refused, never
        unpickled. Raises :class:`~seglib.errors.ModelFormatError` naming the file and the problem for
        a missing file, invalid JSON, a newer ``format_version``, missing keys or wrong types, a file
        changed since it was saved (SHA-256), arrays of the wrong shape or dtype, segment numbers
        outside 1..k, or parts that do not fit together (a SOM with another feature count).
        """
        from seglib import __version__
        from seglib.features import pipeline_from_dict
        from seglib.som import SOM

        folder = _model_folder(path)
        json_path = folder / MODEL_JSON
        try:
            meta = json.loads(json_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"{json_path}: not valid JSON ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != "seglib.Segmentation":
            raise ModelFormatError(f"{json_path}: not a seglib segmentation model "
                                   "(no \"format\": \"seglib.Segmentation\")")
        version = meta.get("format_version")
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise ModelFormatError(f"{json_path}: format_version {version} was written by a newer seglib "
                                   f"({meta.get('seglib_version')}); this seglib ({__version__}) reads up to "
                                   f"{FORMAT_VERSION}: upgrade seglib")
        for key, types in _SCHEMA.items():
            if key not in meta:
                raise ModelFormatError(f"{json_path}: key {key!r} is missing")
            types = types if isinstance(types, tuple) else (types,)
            if not isinstance(meta[key], types) or isinstance(meta[key], bool):
                raise ModelFormatError(f"{json_path}: {key!r} has type {type(meta[key]).__name__}; expected "
                                       f"{' or '.join(t.__name__ for t in types)}")
        names = meta["segment_names"]
        if not all(isinstance(k, str) and k.isdigit() and isinstance(v, str) for k, v in names.items()):
            raise ModelFormatError(f"{json_path}: 'segment_names' must map segment numbers to names")
        files = meta["files"]
        if sorted(files) != sorted(DIGESTED):
            raise ModelFormatError(f"{json_path}: 'files' must give the SHA-256 of {', '.join(DIGESTED)}")
        for name in DIGESTED:
            if not (folder / name).is_file():
                raise ModelFormatError(f"{folder / name}: missing; a saved segmentation has "
                                       f"{MODEL_JSON}, {MODEL_NPZ} and {SOM_DIR}/som.json, som.npz")
            if _sha256(folder / name) != files[name]:
                raise ModelFormatError(f"{folder / name}: changed since the model was saved (its SHA-256 "
                                       f"differs from {MODEL_JSON}): a replaced file or an interrupted save")
        try:
            pipeline = pipeline_from_dict(meta["features"])
        except ModelFormatError as exc:
            raise ModelFormatError(f"{json_path}: 'features': {exc}") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelFormatError(f"{json_path}: 'features' is malformed ({exc!r})") from exc
        if meta["feature_names"] != list(pipeline["features"].feature_names_):
            raise ModelFormatError(f"{json_path}: 'feature_names' differ from the feature pipeline's")
        som = SOM.load(folder / SOM_DIR)
        npz_path = folder / MODEL_NPZ
        assign = meta.get("assign", "unit")  # format_version 1 has no key: unit -> segment
        if assign not in ASSIGN:
            raise ModelFormatError(f"{json_path}: 'assign' is {assign!r}; expected one of "
                                   f"{', '.join(ASSIGN)}")
        arrays = read_npz(npz_path, _NPZ_ARRAYS + (("segment_means",) if assign == "customer" else ()))
        try:
            return cls(pipeline, som, arrays["unit_labels"], arrays["distance_levels"],
                       arrays["distance_quantiles"], segment_names={int(k): v for k, v in names.items()},
                       columns=meta["columns"], clean_settings=meta["clean_settings"],
                       id_column=meta["id_column"], novelty_quantile=meta["novelty_quantile"],
                       training=meta["training"], segment_means=arrays.get("segment_means"))
        except ParameterError as exc:
            raise ModelFormatError(f"{folder}: {exc}") from exc


def score_file(model_dir, data_path, out_path, *, as_of=None) -> pd.DataFrame:
    """Score a transactions file with a saved model and write the result as CSV (``seglib score``).

    Parameters
    ----------
    model_dir : path
        A run folder holding ``model/`` or the model folder itself.
    data_path : path
        Transactions file (CSV, gzip CSV or Parquet) in the training file's schema.
    out_path : path
        CSV to write, atomically: the customer id as given (column named as in the input), ``segment``,
        ``som_row``, ``som_col``, ``distance``, ``novel``, ``segment_name``; text cells that a
        spreadsheet would run as formulas are neutralised (:func:`seglib.profile.read_result` reads it).
    as_of : str or date, optional
        Reference date, see :meth:`Segmentation.predict`.

    Returns
    -------
    DataFrame
        The scored customers (:meth:`Segmentation.predict`), with its ``attrs``.
    """
    from seglib.profile import FLOAT_FORMAT

    model = Segmentation.load(model_dir)
    scored = model.predict(data_path, as_of=as_of)
    write_csv(out_path, scored[[model.id_column, *OUTPUT_COLUMNS]], index=False, float_format=FLOAT_FORMAT)
    logger.info("wrote %s: %d customers scored with %s", out_path, len(scored), model)
    return scored
