"""Customer and transaction features, imputation and scaling (step 02).

A segment is a set of *customers* with a recognisable behaviour, so the default unit is the customer:
the cleaned transactions (one row per line, see DEVELOPERS.md) are aggregated into one row per
customer. Identifiers (customer id, pin code, store, till, transaction number, product, promo code)
describe *where* a line was recorded, not how a customer behaves: they are used only to group lines and
never become features. ``docs/features.md`` defines every feature.

Three objects, each small and JSON-serialisable (no pickle):

* :func:`customer_table` - one row per customer in original units, NaN where unknown (for profiles).
* :class:`FeatureBuilder` - fitted transformer: cleaned transactions -> model matrix (imputed, with
  missing-indicator columns, constant features dropped). ``level`` chooses the unit.
* :class:`FeatureScaler` - fitted transformer: model matrix -> scaled array (signed log1p of heavy
  tailed columns, a standard / minmax / robust scaler, a spread floor so rare flags do not dominate).

:func:`feature_pipeline` chains the two in a scikit-learn :class:`~sklearn.pipeline.Pipeline`;
:func:`pipeline_to_dict` / :func:`pipeline_from_dict` save and restore it as plain JSON data.

Aggregation is written for the Dask backend (:mod:`seglib.distributed`): lines -> transactions ->
(customer, store) partial rows whose columns combine by sum / min / max (:data:`PARTIAL_AGGREGATES`),
so partials computed on chunks can be combined with :func:`combine_partials` and finished with
:func:`finalize_customers`.

Fitting is split the same way, so that both backends share one set of rules: a fit computes a few
statistics per column (:data:`BUILDER_STATS`; :data:`INPUT_STATS` and :data:`SCALER_STATS`), in memory
with pandas / numpy here, by reductions over partitions in :mod:`seglib.distributed`, then
:meth:`FeatureBuilder.fit_from_stats` / :meth:`FeatureScaler.fit_from_stats` turn them into the fitted
attributes (features kept, imputation values, log1p and balanced columns, centers and spreads).
"""

from __future__ import annotations

import logging
import math
import warnings
from functools import partial

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from seglib.errors import InputError, ModelFormatError, ParameterError, check_option
from seglib.load import combined_codes

__all__ = [
    "FeatureBuilder",
    "FeatureScaler",
    "customer_table",
    "customer_partials",
    "combine_partials",
    "finalize_customers",
    "feature_pipeline",
    "pipeline_to_dict",
    "pipeline_from_dict",
    "IDENTIFIERS",
    "PARTIAL_AGGREGATES",
    "COUNT_PREFIXES",
    "DEFAULT_LOG1P",
    "BUILDER_STATS",
    "INPUT_STATS",
    "SCALER_STATS",
    "FEATURE_ROLES",
    "absent_reason",
    "add_indicators",
    "categories",
    "signed_log1p",
    "transaction_key",
    "BASES",
    "DESCRIPTORS",
    "is_descriptor",
    "descriptor_columns",
    "model_frame",
    "column_stats",
    "add_column_stats",
    "order_statistics",
    "exact_medians",
    "exact_percentiles",
    "fit_builder_from_blocks",
    "fit_scaler_from_blocks",
    "scale_block",
    "partials_meta",
    "conform_partials",
    "combine_block",
    "customers_meta",
    "finalize_block",
]

logger = logging.getLogger(__name__)

#: Version of the dictionaries written by ``to_dict``; ``from_dict`` refuses newer ones.
FORMAT_VERSION = 1
LEVELS = ("customer", "transaction", "original")
SCALERS = ("standard", "minmax", "robust")
#: Columns of the cleaned table every level needs.
REQUIRED = ("customer_key", "customer_id", "date", "amount")
#: Cleaned columns that identify something; they group lines and are never features (except in the
#: not-recommended ``level="original"``, which rebuilds the original script's table on purpose).
IDENTIFIERS = ("row", "customer_id", "customer_key", "pincode", "store", "till", "transaction", "product",
               "promo_code")
#: Non-feature columns the builder keeps beside the features (the scaler skips them by name).
NON_FEATURES = ("row", "customer_key", "customer_id")
#: Heavy-tailed money and count features that get a signed log1p by default (``log1p="auto"``).
DEFAULT_LOG1P = ("frequency", "monetary", "avg_basket_value", "items_per_transaction")
#: Spread (std, range, IQR) of a balanced 0/1 flag under each scaler: the least spread of a balanced
#: column (flags, shares, counts; see FeatureScaler), so one step weighs the same whatever its rarity.
BALANCED_SPREAD = {"standard": 0.5, "minmax": 1.0, "robust": 1.0}
#: How each column of :func:`customer_partials` combines across chunks. Columns named
#: ``programme_<P>`` and ``gender_<g>`` (line counts) combine by ``"sum"`` too.
PARTIAL_AGGREGATES = {
    "customer_id": "min",
    "first_date": "min",
    "last_date": "max",
    "transactions": "sum",
    "lines": "sum",
    "amount": "sum",
    "return_lines": "sum",
    "zero_lines": "sum",
    "promo_lines": "sum",
    "age_sum": "sum",
    "age_lines": "sum",
    "items": "sum",
}
#: Prefixes of the one-column-per-value line counts (discount programmes, gender values).
COUNT_PREFIXES = ("programme_", "gender_")
#: Statistics :meth:`FeatureBuilder.fit_from_stats` needs of every candidate column of the model matrix,
#: before imputation: non-missing count, missing count, then min, max and median of the known values.
BUILDER_STATS = ("count", "missing", "min", "max", "median")
#: Statistics :meth:`FeatureScaler.fit_from_stats` needs of every column as given (no missing value),
#: for ``balance="auto"`` and the unit step: min, max, and whether every value is a whole number.
INPUT_STATS = ("min", "max", "whole")
#: Statistics :meth:`FeatureScaler.fit_from_stats` needs, per scaler, of every column after the signed
#: log1p: ``"standard"`` the count, the mean, and the sum and sum of squares of the deviations from
#: that mean (scikit-learn's two-pass variance); ``"minmax"`` min and max; ``"robust"`` the quartiles.
SCALER_STATS = {"standard": ("count", "mean", "dev_sum", "dev_sumsq"), "minmax": ("min", "max"),
                "robust": ("q25", "median", "q75")}
#: Fixed feature names per level (besides one ``programme_<P>`` / ``gender_<g>`` column per value).
CUSTOMER_FEATURES = ("recency_days", "tenure_days", "frequency", "monetary", "avg_basket_value",
                     "items_per_transaction", "promo_share", "return_share", "zero_share", "age", "n_stores")
LINE_FEATURES = ("age", "promo", "log_price", "month_sin", "month_cos", "is_return", "is_zero")
#: The ``bases`` words (see :class:`FeatureBuilder`): the behaviour features only, or every feature.
BASES = ("behaviour", "all")
#: *Descriptors*: who a customer is (age, its missing indicator, and every ``gender_<g>`` column), as
#: opposed to what the customer does. They describe and reach the segments; with ``bases="behaviour"``
#: (the default) they never form them (``docs/features.md``, "Bases and descriptors").
DESCRIPTORS = ("age", "age_missing", "gender_")
#: Customer features that need an optional role, and that role (``programme_`` / ``gender_`` are
#: prefixes); the other features need only the required roles.
FEATURE_ROLES = {"age": "dob", "promo_share": "promo_code", "n_stores": "store", "programme_": "discounts",
                 "gender_": "gender"}
#: What each optional role's column holds, for sentences saying why a feature is absent.
ROLE_WORDS = {"dob": "date-of-birth", "promo_code": "promotion code", "store": "store", "discounts":
              "discount programme", "gender": "gender"}
#: The original script's 13 columns, in its order (``level="original"``).
ORIGINAL_COLUMNS = ("customerID", "Gender", "PinCode", "store_code", "till_no", "transaction_number_by_till",
                    "promo_code", "product_code", "sale_price_after_promo", "discountUsed", "Age", "Week",
                    "Month")
_DAY = pd.Timedelta(days=1)


# ----------------------------------------------------------------------------------------------------
# input checks and small helpers


def absent_reason(feature: str) -> str | None:
    """Why ``feature`` may be absent from a customer table: one sentence, or None for a feature that
    needs only the required roles (an absent one is then a typo or a constant feature dropped at fit).

    >>> absent_reason("age")
    'no age: the data has no date-of-birth column (role dob)'
    """
    for name, role in FEATURE_ROLES.items():
        if feature == name or (name.endswith("_") and str(feature).startswith(name)):
            return f"no {feature}: the data has no {ROLE_WORDS[role]} column (role {role})"
    return None


def _check_clean(clean) -> None:
    """Raise :class:`InputError` unless ``clean`` looks like the cleaned transactions table."""
    if not isinstance(clean, pd.DataFrame):
        raise InputError("expected the cleaned transactions as a pandas DataFrame, "
                         f"got {type(clean).__name__}")
    missing = [c for c in REQUIRED if c not in clean.columns]
    if missing:
        raise InputError(f"cleaned transactions lack required column(s) {missing}; expected the table "
                         f"written by seglib.clean (at least {list(REQUIRED)}), got {list(clean.columns)}")
    if clean.empty:
        raise InputError("cleaned transactions are empty: there is no line to build features from")
    for col in ("customer_key", "date", "amount"):
        n = int(clean[col].isna().sum())
        if n:
            raise InputError(f"column {col!r} of the cleaned transactions has {n} missing value(s); "
                             "expected none (seglib.clean drops such lines)")
    if not pd.api.types.is_datetime64_any_dtype(clean["date"]):
        raise InputError(f"column 'date' must be datetime64, got {clean['date'].dtype}")
    if not pd.api.types.is_numeric_dtype(clean["amount"]):
        raise InputError(f"column 'amount' must be numeric, got {clean['amount'].dtype}")


def _resolve_as_of(as_of, clean: pd.DataFrame) -> pd.Timestamp:
    """The parameter, else ``clean.attrs["as_of"]``, else the day after the last date."""
    if as_of is None:
        as_of = clean.attrs.get("as_of")
    if as_of is None:
        return clean["date"].max().normalize() + _DAY
    try:
        return pd.Timestamp(as_of)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"as_of={as_of!r} is not a date; give an ISO date such as '2017-07-01'") from exc


def is_descriptor(name) -> bool:
    """Whether feature ``name`` is a descriptor: age, ``age_missing`` or ``gender_<g>``."""
    name = str(name)
    return name in DESCRIPTORS[:-1] or name.startswith(DESCRIPTORS[-1])


def descriptor_columns(columns, bases, dropped=()) -> list[str]:
    """Columns of a customer table that describe but did not form the segments.

    Every column that is not one of the map's ``bases`` (an indicator ``<f>_missing`` counts as
    ``f``), nor a feature dropped for being constant: with the default bases, age and the gender
    shares; with an explicit list of bases, every other feature too.

    Parameters
    ----------
    columns : sequence of str
        Columns of the customer table (:func:`customer_table`); ``customer_id`` is skipped.
    bases : sequence of str
        The features the SOM was trained on (``FeatureBuilder.feature_names_``).
    dropped : sequence of str, optional
        Constant features the builder dropped (``FeatureBuilder.dropped_``): neither bases nor
        descriptors.
    """
    used = {str(b)[: -len("_missing")] if str(b).endswith("_missing") else str(b) for b in bases}
    used |= {str(d) for d in dropped}
    return [str(c) for c in columns if str(c) not in NON_FEATURES and str(c) not in used]


def _as_list(names) -> list[str]:
    """A name or a sequence of names as a list (``"age"`` -> ``["age"]``)."""
    return [names] if isinstance(names, str) else list(names or ())


def signed_log1p(x):
    """``sign(x) * log1p(|x|)``: log1p for the positive values, odd-symmetric for returns (x < 0).

    The transform :class:`FeatureScaler` applies to its ``log1p_`` columns (an array or a Series in,
    the same out).
    """
    return np.sign(x) * np.log1p(np.abs(x))


def _whole_years(start: pd.Series, end) -> pd.Series:
    """Completed years from ``start`` to ``end`` (a birthday not yet reached does not count)."""
    end = pd.Series(end, index=start.index) if not isinstance(end, pd.Series) else end
    years = end.dt.year - start.dt.year
    same_month = end.dt.month == start.dt.month
    before = (end.dt.month < start.dt.month) | (same_month & (end.dt.day < start.dt.day))
    return (years - before.astype(int)).astype(float)


def _names_of(value, sep: str | None) -> set[str]:
    """The names in one cell: a gender (NA: "unknown") or a comma-joined set of programmes."""
    if sep is None:
        return {"unknown" if pd.isna(value) else str(value).strip()}
    return set() if pd.isna(value) else {p.strip() for p in str(value).split(sep)} - {""}


def categories(clean: pd.DataFrame) -> tuple[list[str] | None, list[str] | None]:
    """Discount programmes and gender values present in ``clean`` (None when the role is absent).

    Sorted lists: what :class:`FeatureBuilder` fits as ``programmes_`` and ``genders_`` (a Dask
    backend takes the union over partitions).
    """
    return _categories({col: pd.unique(clean[col]) for col in ("discounts", "gender") if col in clean})


def _categories(distinct: dict) -> tuple[list[str] | None, list[str] | None]:
    """:func:`categories` from the distinct values of the ``discounts`` and ``gender`` columns."""
    found = {col: sorted(set().union(*(_names_of(v, sep) for v in distinct[col])))
             for col, sep in (("discounts", ","), ("gender", None)) if col in distinct}
    return found.get("discounts"), found.get("gender")


def _one_hot_codes(values: pd.Series, known: list[str], what: str, *, sep: str | None = None,
                   stacklevel: int = 5, factorized=None) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, table)``: the 0/1 row of the ``known`` names of each distinct value (``table[codes]`` is
    one row per line); unseen names are ignored with a warning. ``factorized``: ``pd.factorize(values,
    use_na_sentinel=False)`` when the caller has it."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False) if factorized is None else factorized
    names = [_names_of(v, sep) for v in uniques]
    unseen = sorted(set().union(*names) - set(known))
    if unseen:
        warnings.warn(f"{what} {unseen} not seen at fit time: ignored (refit the features to use them)",
                      UserWarning, stacklevel=stacklevel)
    table = np.array([[k in n for k in known] for n in names], dtype=float).reshape(len(names), len(known))
    return codes, table


def _one_hot(values: pd.Series, known: list[str], prefix: str, what: str, *, sep: str | None = None):
    """0/1 columns ``prefix + name`` for the ``known`` names; unseen names are ignored with a warning.

    Works on the few distinct values (factorised), so it costs one pass over the lines.
    """
    codes, table = _one_hot_codes(values, known, what, sep=sep)
    return pd.DataFrame(table[codes], index=values.index, columns=[prefix + c for c in known])


# ----------------------------------------------------------------------------------------------------
# customer level: lines -> transactions -> (customer, store) partials -> customers


def _line_values(clean: pd.DataFrame, programmes, genders,
                 factorized=None) -> dict[str, tuple[bool, object]]:
    """Per-line additive values (the first, row-wise stage): name -> (whole, values).

    ``values`` is a function returning the array of one value per line (made when summed, one column
    at a time, so the lines' columns are never all in memory: :func:`_values_array`). ``whole``: the
    values are 0 or 1 (line counts and flags), so their sums are whole numbers, exact in any order of
    addition. ``factorized``: column -> ``pd.factorize(clean[column], use_na_sentinel=False)`` of
    ``discounts`` and ``gender``, when the caller has them.
    """
    amount = clean["amount"].to_numpy(dtype=float)
    v = {"lines": (True, lambda: np.ones(len(clean))), "amount": (False, lambda: amount),
         "return_lines": (True, lambda: (amount < 0).astype(float)),
         "zero_lines": (True, lambda: (amount == 0).astype(float))}
    if "is_promo" in clean:
        v["promo_lines"] = (True, lambda: clean["is_promo"].fillna(False).to_numpy(dtype=float))
    if "quantity" in clean:  # items on the line; a missing quantity counts as one item
        v["items"] = (False, lambda: clean["quantity"].astype(float).fillna(1.0).to_numpy())
    if "age" in clean:
        v["age_sum"] = (False, lambda: clean["age"].astype(float).fillna(0.0).to_numpy())
        v["age_lines"] = (True, lambda: clean["age"].notna().to_numpy(dtype=float))
    for col, known, prefix, what, sep in (
            ("discounts", programmes, "programme_", "discount programme(s)", ","),
            ("gender", genders, "gender_", "gender value(s)", None)):
        if known is not None and col in clean:
            codes, table = _one_hot_codes(clean[col], known, what, sep=sep, stacklevel=4,
                                          factorized=(factorized or {}).get(col))
            v.update({prefix + name: (True, lambda j=j, codes=codes, table=table: table[:, j][codes])
                      for j, name in enumerate(known)})
    return v


def _values_array(values) -> np.ndarray:
    """The array of one of :func:`_line_values`' entries (made now when it is a function)."""
    return values() if callable(values) else values


def _group_ids(codes: list[np.ndarray], sizes: list[int], *, sort: bool) -> np.ndarray:
    """The group number of each row for the combination of its integer codes (``codes[i]`` in
    ``[0, sizes[i])``): groups numbered in order of first appearance, or in sorted order of the codes
    (``sort=True``): the numbers pandas' ``groupby(..., sort=sort)`` gives the groups."""
    return pd.factorize(combined_codes(zip(codes, sizes), sort=sort), sort=sort)[0]


def _first_rows(ids: np.ndarray, n_groups: int) -> np.ndarray:
    """The first row of each group of ``ids``."""
    first = np.full(n_groups, len(ids), dtype=np.int64)
    np.minimum.at(first, ids, np.arange(len(ids), dtype=np.int64))
    return first


def _group_sums(values: dict, ids: np.ndarray, n_groups: int) -> dict[str, tuple[bool, np.ndarray]]:
    """Sums of the ``values`` (:func:`_line_values`) per group: whole values by ``np.bincount``, the others
    by pandas' grouped sum over the same group numbers (so the same additions in the same order as a
    ``groupby().sum()``)."""
    out = {}
    for name, (whole, x) in values.items():
        x = _values_array(x)
        if whole:
            out[name] = (True, np.bincount(ids, weights=x, minlength=n_groups))
        else:
            out[name] = (False, pd.Series(x).groupby(ids).sum().to_numpy())
    return out


def _aggregates(columns) -> dict[str, str]:
    return {c: PARTIAL_AGGREGATES.get(c, "sum") for c in columns
            if c in PARTIAL_AGGREGATES or c.startswith(COUNT_PREFIXES)}


def transaction_key(clean: pd.DataFrame) -> list[str]:
    """Columns defining a transaction: store+till+number+date when present, else customer+date(+store).

    What :class:`FeatureBuilder` fits as ``transaction_key_``.
    """
    if all(c in clean for c in ("store", "till", "transaction")):
        return ["customer_key", "store", "till", "transaction", "date"]
    return ["customer_key", "store", "date"] if "store" in clean else ["customer_key", "date"]


def customer_partials(clean: pd.DataFrame, *, programmes=None, genders=None) -> pd.DataFrame:
    """Per-(customer, store) partial aggregates of cleaned transactions.

    Lines are first grouped into transactions (see ``docs/features.md``), then transactions into one row
    per (customer_key, store) pair. Every column combines across chunks by the function named in
    :data:`PARTIAL_AGGREGATES` (sum, min or max; ``programme_*`` and ``gender_*`` line counts by sum),
    so a Dask backend can compute partials per partition, concatenate them, and call
    :func:`combine_partials` then :func:`finalize_customers`. Partitions must not split a transaction
    (partitioning by customer, store or date never does), otherwise it is counted twice.

    Parameters
    ----------
    clean : DataFrame
        Cleaned transactions (see DEVELOPERS.md).
    programmes, genders : list of str, optional
        Discount programmes and gender values to count (those of a fitted builder). None: the ones
        present in ``clean``.

    Returns
    -------
    DataFrame
        Indexed by (customer_key, store); ``store`` is NA when the role is absent.
    """
    _check_clean(clean)
    # the discount sets and genders are factorised once: for the categories and the one-hot counts
    factorized = {col: pd.factorize(clean[col], use_na_sentinel=False) for col in ("discounts", "gender")
                  if col in clean}
    if programmes is None or genders is None:
        found_programmes, found_genders = _categories({col: u for col, (_, u) in factorized.items()})
        programmes = found_programmes if programmes is None else programmes
        genders = found_genders if genders is None else genders
    values = _line_values(clean, programmes, genders, factorized)
    key = transaction_key(clean)
    # group on integer codes of the text keys: codes in sorted order of the values (NA last) for the
    # columns whose order or minimum counts, so the groups, their order and every sum are those of
    # grouping on the text itself
    uniques, codes, sizes = {}, {}, {}
    store = clean["store"] if "store" in clean else pd.Series(pd.NA, index=clean.index, dtype="string")
    for col, text in (("customer_key", clean["customer_key"]), ("store", store),
                      ("customer_id", clean["customer_id"])):
        c, uniques[col] = pd.factorize(text, sort=True)
        codes[col], sizes[col] = np.where(c < 0, len(uniques[col]), c), len(uniques[col]) + 1
    for col in set(key) - {"customer_key", "store"}:
        c, u = pd.factorize(clean[col])  # NA: -1, one group as with dropna=False
        codes[col], sizes[col] = c + 1, len(u) + 1
    # lines -> transactions (numbered in order of appearance, as groupby(sort=False))
    txn_key = [c for c in key if c != "store"]
    txn_key.insert(1, "store")
    txn = _group_ids([codes[c] for c in txn_key], [sizes[c] for c in txn_key], sort=False)
    n_txn = int(txn.max()) + 1
    first = _first_rows(txn, n_txn)
    txn_id = np.full(n_txn, sizes["customer_id"], dtype=np.int64)
    np.minimum.at(txn_id, txn, codes["customer_id"])
    txn_sums = _group_sums(values, txn, n_txn)
    # transactions -> (customer, store), in sorted order of the codes (groupby(sort=True))
    ck, st = codes["customer_key"][first], codes["store"][first]
    part = _group_ids([ck, st], [sizes["customer_key"], sizes["store"]], sort=True)
    n_part = int(part.max()) + 1
    dates = clean["date"].iloc[first].reset_index(drop=True)
    partial_id = np.full(n_part, sizes["customer_id"], dtype=np.int64)
    np.minimum.at(partial_id, part, txn_id)
    by_part = dates.groupby(part)
    partials = pd.DataFrame({
        "customer_id": _decode(uniques["customer_id"], partial_id),
        "first_date": by_part.min().array,
        "last_date": by_part.max().array,
        "transactions": np.bincount(part, minlength=n_part).astype(float),
        **{name: sums for name, (_, sums) in _group_sums(txn_sums, part, n_part).items()},
    })
    pfirst = _first_rows(part, n_part)
    partials.index = pd.MultiIndex.from_arrays(
        [_decode(uniques["customer_key"], ck[pfirst]), _decode(uniques["store"], st[pfirst])],
        names=["customer_key", "store"])
    return partials


def _decode(uniques: pd.Index, codes: np.ndarray) -> pd.Index:
    """The values of ``codes`` from ``pd.factorize``, where ``len(uniques)`` stands for NA."""
    missing = codes == len(uniques)
    if not missing.any():
        return uniques.take(codes)
    return uniques.take(np.where(missing, -1, codes), allow_fill=True)


def combine_partials(partials: pd.DataFrame) -> pd.DataFrame:
    """Combine concatenated partials of several chunks into one row per (customer_key, store)."""
    return partials.groupby(level=["customer_key", "store"], dropna=False, sort=True).agg(
        _aggregates(partials.columns))


def finalize_customers(partials: pd.DataFrame, as_of) -> pd.DataFrame:
    """Customer table (original units, NaN where unknown) from combined partials.

    Parameters
    ----------
    partials : DataFrame
        Output of :func:`customer_partials` / :func:`combine_partials`.
    as_of : str or Timestamp
        Reference date for recency and tenure.

    Returns
    -------
    DataFrame
        One row per customer_key (sorted), ``customer_id`` then the features in a fixed order.
    """
    as_of = pd.Timestamp(as_of)
    c = partials.groupby(level="customer_key", sort=True).agg(_aggregates(partials.columns))
    t = pd.DataFrame({"customer_id": c["customer_id"]}, index=c.index)
    t["recency_days"] = (as_of - c["last_date"]) / _DAY
    t["tenure_days"] = (as_of - c["first_date"]) / _DAY
    t["frequency"] = c["transactions"]
    t["monetary"] = c["amount"]
    t["avg_basket_value"] = c["amount"] / c["transactions"]
    t["items_per_transaction"] = (c["items"] if "items" in c else c["lines"]) / c["transactions"]
    if "promo_lines" in c:
        t["promo_share"] = c["promo_lines"] / c["lines"]
    for col in [k for k in c.columns if k.startswith("programme_")]:
        t[col] = c[col] / c["lines"]
    t["return_share"] = c["return_lines"] / c["lines"]
    t["zero_share"] = c["zero_lines"] / c["lines"]
    if "age_sum" in c:
        t["age"] = (c["age_sum"] / c["age_lines"]).where(c["age_lines"] > 0)
    for col in [k for k in c.columns if k.startswith("gender_")]:
        t[col] = c[col] / c["lines"]
    stores = partials.index.get_level_values("store")
    if stores.notna().any():
        known = pd.Series(stores.notna(), index=partials.index.get_level_values("customer_key"))
        t["n_stores"] = known.groupby(level=0).sum().astype(float).reindex(t.index).replace(0.0, np.nan)
    t.attrs["as_of"] = as_of.isoformat()
    return t


def customer_table(clean: pd.DataFrame, as_of=None) -> pd.DataFrame:
    """One row per customer in original units (days, money, shares, years); NaN where unknown.

    This is the table profiles are computed on: nothing is imputed, scaled or dropped. Every customer
    (``customer_key``) of ``clean`` appears exactly once.

    Parameters
    ----------
    clean : DataFrame
        Cleaned transactions (output of step 01).
    as_of : str or Timestamp, optional
        Reference date of recency and tenure. None: ``clean.attrs["as_of"]`` (the cleaner's), else the
        day after the last transaction. Use the same date as the cleaner so that ages match.

    Returns
    -------
    DataFrame
        Index ``customer_key``; column ``customer_id`` (the id as given, not a feature) then the features
        whose input roles are present (see ``docs/features.md``). ``attrs["as_of"]`` holds the date.
    """
    _check_clean(clean)
    return finalize_customers(customer_partials(clean), _resolve_as_of(as_of, clean))


# ----------------------------------------------------------------------------------------------------
# transaction level and the original script's table


def _line_table(clean: pd.DataFrame, programmes, genders) -> pd.DataFrame:
    """One row per line: age at transaction, promo and programme flags, log price, cyclic month."""
    t = clean[["customer_key", "customer_id"]].copy()
    if "age" in clean:
        age = clean["age"].astype(float)
        if "dob" in clean:  # age at the transaction date; unknown where the cleaner found it implausible
            age = _whole_years(clean["dob"], clean["date"]).where(age.notna())
        t["age"] = age
    if "is_promo" in clean:
        t["promo"] = clean["is_promo"].fillna(False).astype(float)
    parts = [t]
    if programmes is not None and "discounts" in clean:
        parts.append(_one_hot(clean["discounts"], programmes, "programme_", "discount programme(s)", sep=","))
    if genders is not None and "gender" in clean:
        parts.append(_one_hot(clean["gender"], genders, "gender_", "gender value(s)"))
    amount = clean["amount"].astype(float)
    angle = 2 * np.pi * (clean["date"].dt.month - 1) / 12
    parts.append(pd.DataFrame({"log_price": signed_log1p(amount), "month_sin": np.sin(angle),
                               "month_cos": np.cos(angle), "is_return": (amount < 0).astype(float),
                               "is_zero": (amount == 0).astype(float)}, index=clean.index))
    out = pd.concat(parts, axis=1)
    if "row" in clean:
        out.index = pd.Index(clean["row"].to_numpy(), name="row")
    return out


def _as_number(s: pd.Series) -> pd.Series:
    """Identifier as a number, as the original script did; label codes when it is not numeric."""
    num = pd.to_numeric(s, errors="coerce")
    if (num.isna() & s.notna()).any():  # e.g. store "A": code of the sorted values, like a LabelEncoder
        codes = {v: i for i, v in enumerate(sorted(s.dropna().astype(str).unique()))}
        num = s.astype(str).map(codes).where(s.notna())
    return num.astype(float)


def _codes(s: pd.Series, classes: list[str], what: str) -> pd.Series:
    """LabelEncoder-style codes (position in the sorted classes); unseen values get len(classes)."""
    s = s.astype(str)
    unseen = sorted(set(pd.unique(s)) - set(classes))
    if unseen:
        warnings.warn(f"{what} {unseen} not seen at fit time: coded {len(classes)}", UserWarning,
                      stacklevel=4)
    return s.map({c: i for i, c in enumerate(classes)}).fillna(len(classes)).astype(float)


def _original_classes(clean: pd.DataFrame) -> dict[str, list[str]]:
    classes = {}
    if "gender" in clean:
        classes["Gender"] = sorted(map(str, pd.unique(clean["gender"].fillna("unknown"))))
    if "discounts" in clean:
        classes["discountUsed"] = sorted(map(str, pd.unique(clean["discounts"].fillna(""))))
    return classes


def _original_table(clean: pd.DataFrame, as_of: pd.Timestamp, classes) -> pd.DataFrame:
    """The original script's 13 columns, rebuilt from the cleaned lines (see docs/features.md)."""
    cols = {"customerID": _as_number(clean["customer_key"])}
    if "Gender" in classes:
        cols["Gender"] = _codes(clean["gender"].fillna("unknown"), classes["Gender"], "gender value(s)")
    if "pincode" in clean:  # the cleaner turned the 999999 / 111111 placeholders into NA
        cols["PinCode"] = _as_number(clean["pincode"]).fillna(999999.0)
    for role, name in (("store", "store_code"), ("till", "till_no"),
                       ("transaction", "transaction_number_by_till")):
        if role in clean:
            cols[name] = _as_number(clean[role])
    if "promo_code" in clean or "is_promo" in clean:
        promo = clean["is_promo"].fillna(False).astype(float) if "is_promo" in clean else 0.0
        code = pd.to_numeric(clean["promo_code"], errors="coerce") if "promo_code" in clean else np.nan
        cols["promo_code"] = pd.Series(code, index=clean.index).where(lambda x: x.notna(), promo)
    if "product" in clean:
        cols["product_code"] = _as_number(clean["product"])
    cols["sale_price_after_promo"] = clean["amount"].astype(float)
    if "discountUsed" in classes:
        cols["discountUsed"] = _codes(clean["discounts"].fillna(""), classes["discountUsed"],
                                      "discount set(s)")
    if "dob" in clean:
        cols["Age"] = _whole_years(clean["dob"], pd.Series(as_of, index=clean.index))
    elif "age" in clean:
        cols["Age"] = clean["age"].astype(float)
    cols["Week"] = clean["date"].dt.isocalendar().week.astype(float)
    cols["Month"] = clean["date"].dt.month.astype(float)
    t = pd.DataFrame(cols, index=clean.index)
    keep = t.notna().all(axis=1)
    if not keep.any():
        raise InputError("level='original': every line lacks a value of the original columns (date of birth "
                         f"or identifiers); missing per column: {t.isna().sum()[t.isna().any()].to_dict()}")
    if not keep.all():
        logger.info("level='original': dropped %d of %d lines with a missing value (the original dropped "
                    "rows without DOB / Age)", int((~keep).sum()), len(t))
    out = pd.concat([clean.loc[keep, ["customer_key", "customer_id"]], t[keep]], axis=1)
    if "row" in clean:
        out.index = pd.Index(clean.loc[keep, "row"].to_numpy(), name="row")
    return out


# ----------------------------------------------------------------------------------------------------
# the fitted builder


def add_indicators(raw: pd.DataFrame, names) -> pd.DataFrame:
    """``raw`` with a 0/1 ``<name>_missing`` column per name (1 where the value is missing).

    A name absent from ``raw`` gets 1 everywhere (its input role is missing). Returns a new frame:
    ``raw`` is not changed.
    """
    return raw.assign(**{f"{n}_missing": raw[n].isna().astype(float) if n in raw else 1.0 for n in names})


def _builder_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """:data:`BUILDER_STATS` of every column of ``frame``, in memory (one row per column)."""
    return pd.DataFrame({"count": frame.count(), "missing": frame.isna().sum(), "min": frame.min(),
                         "max": frame.max(), "median": frame.median()}, index=frame.columns)


def _check_stats(stats, needed, what: str) -> None:
    if not isinstance(stats, pd.DataFrame) or not set(needed) <= set(stats.columns):
        got = list(stats.columns) if isinstance(stats, pd.DataFrame) else type(stats).__name__
        raise InputError(f"{what} statistics need a DataFrame with one row per column and the columns "
                         f"{list(needed)}; got {got}")


class FeatureBuilder(TransformerMixin, BaseEstimator):
    """Build the model matrix from cleaned transactions: features, imputation, missing indicators.

    Parameters
    ----------
    level : {"customer", "transaction", "original"}, default="customer"
        Unit of analysis. ``"customer"`` (recommended): one row per customer (recency, frequency,
        monetary, basket, promo and programme shares, age, gender, stores, tenure). ``"transaction"``:
        one row per line with sensible encodings, to compare with the original unit. ``"original"``:
        the original script's 13 columns (identifiers as numbers, label codes, week and month as
        numbers), only for side-by-side comparison: **not recommended**, its clusters are store x
        promo-code artefacts. Pair it with ``FeatureScaler("standard", log1p=None, balance=None)`` (what
        :func:`feature_pipeline` does) to reproduce the original StandardScaler table.
    as_of : str or Timestamp, optional
        Reference date of recency, tenure and (for ``"original"``) age. None: ``clean.attrs["as_of"]``,
        else the day after the last date, resolved again at each ``transform`` so that scoring new
        data measures recency from that data's date. Set it to freeze the date.
    indicators : sequence of str, default=("age",)
        Features that get a ``<name>_missing`` 0/1 column, for values a user wants to see were unknown
        (age: "age unknown" customers may behave differently). An indicator that is constant (nothing
        missing) is dropped like any constant feature.
    exclude : sequence of str, default=()
        Features to leave out (e.g. ``("zero_share",)``). Unknown names raise ParameterError.
    bases : {"behaviour", "all"} or sequence of str, default="behaviour"
        The features that *form* the segments (market-segmentation *bases*, as opposed to the
        *descriptors* that describe and reach them). ``"behaviour"`` (recommended): everything but
        the descriptors age, ``age_missing`` and ``gender_<g>`` (:data:`DESCRIPTORS`), so segments
        are behaviours, not demographic splits; age and gender are still profiled in every segment.
        ``"all"``: every feature (what seglib did before; a segment may then be "the women").
        A list names the features to use (``"gender"`` and ``"programme"`` stand for all their
        columns; an indicator follows its feature); an unknown name raises ParameterError listing
        the valid ones. Ignored at ``level="original"``, which rebuilds the original 13 columns.

    Attributes
    ----------
    feature_names_ : list of str
        The model matrix columns, in order: exactly what the SOM is trained on.
    as_of_ : str
        Reference date used at fit (ISO).
    programmes_, genders_ : list of str or None
        Discount programmes / gender values seen at fit (one column each); None when the role is absent.
    transaction_key_ : list of str
        Columns that defined a transaction at fit.
    medians_ : dict
        Fitted imputation value of every feature (also used when a feature's input is missing later).
    imputed_ : dict
        Number of rows imputed per feature at fit (features with none are left out).
    indicators_ : list of str
        Features whose ``<name>_missing`` indicator is in the model matrix.
    dropped_ : list of str
        Constant features dropped at fit.
    classes_ : dict
        ``level="original"`` only: label-encoder classes of ``Gender`` and ``discountUsed``.

    Examples
    --------
    >>> builder = FeatureBuilder().fit(clean)                       # doctest: +SKIP
    >>> X = builder.transform(clean)    # customer_id + builder.feature_names_, index customer_key
    """

    def __init__(self, level="customer", *, as_of=None, indicators=("age",), exclude=(), bases="behaviour"):
        self.level = level
        self.as_of = as_of
        self.indicators = indicators
        self.exclude = exclude
        self.bases = bases

    # -- building ------------------------------------------------------------------------------------
    def _raw(self, clean: pd.DataFrame, as_of: pd.Timestamp, programmes, genders, classes) -> pd.DataFrame:
        if self.level == "customer":
            partials = customer_partials(clean, programmes=programmes or [], genders=genders or [])
            return finalize_customers(partials, as_of)
        if self.level == "transaction":
            return _line_table(clean, programmes or [], genders or [])
        return _original_table(clean, as_of, classes)

    def set_output(self, *, transform=None):
        """No-op, so ``Pipeline.set_output`` works: the builder always returns a DataFrame."""
        return self

    def _ids(self) -> list[str]:
        return ["customer_id"] if self.level == "customer" else ["customer_key", "customer_id"]

    def fit(self, clean: pd.DataFrame, y=None):
        """Fit categories, imputation values and the list of features on cleaned transactions.

        Parameters
        ----------
        clean : DataFrame
            Cleaned transactions (output of step 01).
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : FeatureBuilder
        """
        self._fit(clean)
        return self

    def fit_transform(self, clean: pd.DataFrame, y=None, *, customers: pd.DataFrame | None = None
                      ) -> pd.DataFrame:
        """Fit, then return the model matrix of ``clean`` (computed once).

        Parameters
        ----------
        clean : DataFrame
            Cleaned transactions (output of step 01).
        y : Ignored
        customers : DataFrame, optional
            ``level="customer"`` only: :func:`customer_table` of ``clean`` at the builder's ``as_of``,
            when the caller has it already (step 02 keeps it for the profiles). The builder then does
            not aggregate the transactions a second time; the result is the same.
        """
        return self._fit(clean, customers)

    def _fit(self, clean: pd.DataFrame, customers: pd.DataFrame | None = None) -> pd.DataFrame:
        check_option("level", self.level, LEVELS)
        _check_clean(clean)
        as_of = _resolve_as_of(self.as_of, clean)
        programmes, genders = categories(clean)
        classes = _original_classes(clean) if self.level == "original" else {}
        if customers is None:
            raw = self._raw(clean, as_of, programmes, genders, classes)
        elif self.level != "customer" or "customer_id" not in customers or \
                customers.attrs.get("as_of") != as_of.isoformat():
            raise ParameterError(
                f"customers: give customer_table(clean, as_of) of the same data and as_of ({as_of.date()}), "
                f"and only with level='customer' (this builder has level={self.level!r})"
            )
        else:
            raw = customers
        features, indicators = self.candidate_features(raw.columns)
        raw = add_indicators(raw, indicators)
        self.fit_from_stats(_builder_stats(raw[features]), as_of=as_of, programmes=programmes,
                            genders=genders, transaction_key=transaction_key(clean), classes=classes)
        out = pd.concat([raw[self._ids()], raw[self.feature_names_].fillna(self.medians_)], axis=1)
        out.attrs.update(as_of=self.as_of_, imputed=dict(self.imputed_))
        return out

    def candidate_features(self, columns) -> tuple[list[str], list[str]]:
        """The columns a fit computes statistics of, for a raw feature table with ``columns``.

        The first step of a fit (see :meth:`fit_from_stats`): identifiers are left out (at
        ``level="original"``, the 13 original columns are kept in their order), then ``exclude``;
        ``exclude`` and ``indicators`` are checked against the level's feature names.

        Parameters
        ----------
        columns : sequence of str
            Columns of the raw feature table: :func:`finalize_customers` output at the customer level.

        Returns
        -------
        features : list of str
            The candidate features, then ``<name>_missing`` for every indicator: the columns of
            ``add_indicators(raw, indicators)[features]``, whose statistics :meth:`fit_from_stats` takes.
        indicators : list of str
            The features that get a missing indicator.

        Raises
        ------
        ParameterError
            An unknown level, or an unknown name in ``exclude`` / ``indicators``.
        """
        check_option("level", self.level, LEVELS)
        columns = [str(c) for c in columns]
        original = self.level == "original"  # rebuilt exactly: no indicator, nothing imputed or dropped
        exclude, wanted = _as_list(self.exclude), [] if original else _as_list(self.indicators)
        features = [c for c in ORIGINAL_COLUMNS if c in columns] if original else \
            [c for c in columns if c not in IDENTIFIERS]
        known = set(features) | set({"customer": CUSTOMER_FEATURES, "transaction": LINE_FEATURES,
                                     "original": ORIGINAL_COLUMNS}[self.level])
        unknown = sorted(n for n in set(exclude + wanted) - known if not n.startswith(COUNT_PREFIXES))
        if unknown:
            raise ParameterError(f"unknown feature name(s) {unknown} in exclude/indicators for "
                                 f"level={self.level!r}; choose among: {', '.join(sorted(known))}")
        features = [f for f in features if f not in exclude]
        if not original:
            features, wanted = self._select_bases(features, wanted)
        indicators = [f for f in wanted if f in features]
        return features + [f"{f}_missing" for f in indicators], indicators

    def _select_bases(self, features: list[str], wanted: list[str]) -> tuple[list[str], list[str]]:
        """The features and indicators ``bases`` keeps (see the class parameters)."""
        bases = self.bases
        if isinstance(bases, str) and bases in BASES:
            if bases == "all":
                return features, wanted
            return [f for f in features if not is_descriptor(f)], \
                [f for f in wanted if not is_descriptor(f) and not is_descriptor(f"{f}_missing")]
        if isinstance(bases, str) or bases is None or not all(isinstance(b, str) for b in bases):
            raise ParameterError(f"bases={bases!r} is not valid; expected 'behaviour', 'all' or a list of "
                                 f"feature names among: {', '.join(features)}")
        groups = {p.rstrip("_"): [f for f in features if f.startswith(p)] for p in COUNT_PREFIXES}
        valid = features + [f"{f}_missing" for f in wanted if f in features]
        valid += [g for g, cols in groups.items() if cols]
        unknown = [b for b in bases if b not in valid]
        if unknown:
            raise ParameterError(f"bases names unknown feature(s) {unknown}; choose among: "
                                 f"{', '.join(valid)} (or bases='behaviour' / 'all')")
        chosen = set()
        for b in bases:  # a group stands for its columns, an indicator for its feature
            chosen.update(groups.get(b) or [b[: -len("_missing")] if b not in features else b])
        return [f for f in features if f in chosen], [f for f in wanted if f in chosen]

    def fit_from_stats(self, stats: pd.DataFrame, *, as_of, programmes=None, genders=None,
                       transaction_key=(), classes=None):
        """Set the fitted attributes from per-column statistics: the last step of every fit.

        :meth:`fit` computes the statistics in memory; :mod:`seglib.distributed` by reductions over
        the partitions of a customer table too large for one machine. Both call this method, so the
        features kept, the imputation values and the imputation report follow the same rules: a
        feature is dropped when it is constant once imputed (no known value, or min == max; never at
        ``level="original"``), and the medians impute.

        Parameters
        ----------
        stats : DataFrame
            One row per candidate feature, in the order of :meth:`candidate_features`; the columns
            :data:`BUILDER_STATS` of the model matrix before imputation (``count`` and ``missing``:
            known and missing values; ``min``, ``max``, ``median``: of the known values, NaN when there
            is none; the median as pandas defines it, the mean of the two middle values for an even
            count). Other columns are ignored.
        as_of : str or Timestamp
            The resolved reference date (``as_of_``).
        programmes, genders : list of str, optional
            Discount programmes and gender values of the data (``programmes_``, ``genders_``; see
            :func:`categories`). None when the role is absent.
        transaction_key : sequence of str
            Columns that defined a transaction (``transaction_key_``; see :func:`transaction_key`).
        classes : dict, optional
            ``level="original"`` only: the label-encoder classes (``classes_``).

        Returns
        -------
        self : FeatureBuilder
        """
        check_option("level", self.level, LEVELS)
        _check_stats(stats, BUILDER_STATS, "feature builder")
        features = [str(f) for f in stats.index]
        count, low, high = (stats[c].to_numpy(dtype=float) for c in ("count", "min", "max"))
        constant = [] if self.level == "original" else \
            [f for f, n, lo, hi in zip(features, count, low, high) if n == 0 or lo == hi]
        if constant:
            logger.info("dropped constant feature(s) (same value for every row, no information): %s",
                        ", ".join(f"{f}={stats.at[f, 'min']}" for f in constant))
        kept = [f for f in features if f not in constant]
        self.as_of_ = pd.Timestamp(as_of).isoformat()
        self.programmes_, self.genders_ = programmes, genders
        self.transaction_key_ = list(transaction_key)
        self.classes_ = dict(classes or {})
        self.feature_names_ = kept
        self.indicators_ = [f for f in _as_list(self.indicators) if f"{f}_missing" in kept]
        self.dropped_ = constant
        self.medians_ = {f: float(stats.at[f, "median"]) for f in kept}
        self.imputed_ = {f: int(stats.at[f, "missing"]) for f in kept if stats.at[f, "missing"]}
        n = int(stats["count"].iloc[0] + stats["missing"].iloc[0]) if len(stats) else 0
        self._log_imputed(self.imputed_, n)
        return self

    def _log_imputed(self, counts: dict, n: int) -> None:
        for f, k in counts.items():
            logger.info("imputed %s for %d of %d rows with the fitted median %s", f, k, n, self.medians_[f])

    def transform(self, clean: pd.DataFrame) -> pd.DataFrame:
        """Model matrix of ``clean`` with the fitted features (new customers can be scored).

        A discount programme or gender value never seen at fit is ignored with a warning naming it. A
        feature whose input column is absent is filled with its fitted median, with a warning; a
        required column missing raises :class:`~seglib.errors.InputError`.

        Returns
        -------
        DataFrame
            Index ``customer_key`` (customer level) or ``row`` (line levels); non-feature columns
            ``customer_id`` (and ``customer_key`` for line levels) then ``feature_names_``, no missing
            value. ``attrs["imputed"]`` counts imputed values per feature; ``attrs["as_of"]`` the date.
        """
        check_is_fitted(self, "feature_names_")
        _check_clean(clean)
        as_of = _resolve_as_of(self.as_of, clean)
        key = transaction_key(clean)
        if self.level != "original" and key != self.transaction_key_:
            logger.warning("transactions are defined by %s here but by %s at fit time", key,
                           self.transaction_key_)
        raw = self._raw(clean, as_of, self.programmes_, self.genders_, self.classes_)
        raw = add_indicators(raw, self.indicators_)
        absent = [f for f in self.feature_names_ if f not in raw]
        if absent:
            if self.level == "original":
                raise InputError(f"level='original' needs the columns it was fitted on; missing {absent}")
            warnings.warn(f"input column(s) of feature(s) {absent} are absent: every row gets the fitted "
                          "median", UserWarning, stacklevel=2)
            raw = raw.assign(**{f: np.nan for f in absent})
        counts = raw[self.feature_names_].isna().sum()
        imputed = {f: int(n) for f, n in counts.items() if n}
        self._log_imputed(imputed, len(raw))
        out = pd.concat([raw[self._ids()], raw[self.feature_names_].fillna(self.medians_)], axis=1)
        out.attrs.update(as_of=as_of.isoformat(), imputed=imputed)
        return out

    # -- JSON ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Parameters and fitted state as JSON-compatible data (``json.dumps`` works on it)."""
        check_is_fitted(self, "feature_names_")
        params = self.get_params()
        params.update(as_of=None if self.as_of is None else pd.Timestamp(self.as_of).isoformat(),
                      indicators=_as_list(self.indicators), exclude=_as_list(self.exclude),
                      bases=self.bases if isinstance(self.bases, str) else _as_list(self.bases))
        return {"format_version": FORMAT_VERSION, "kind": "FeatureBuilder", "params": params,
                "as_of_": self.as_of_, "programmes_": self.programmes_, "genders_": self.genders_,
                "transaction_key_": self.transaction_key_, "classes_": self.classes_,
                "indicators_": self.indicators_, "feature_names_": self.feature_names_,
                "medians_": self.medians_, "imputed_": self.imputed_, "dropped_": self.dropped_}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureBuilder":
        """Rebuild a fitted builder from :meth:`to_dict` output."""
        _check_format(data, "FeatureBuilder")
        try:
            obj = cls(**{"bases": "all", **data["params"]})  # saved before bases existed: every feature
            for name in ("as_of_", "programmes_", "genders_", "transaction_key_", "classes_", "indicators_",
                         "feature_names_", "medians_", "imputed_", "dropped_"):
                setattr(obj, name, data[name])
        except (KeyError, TypeError) as exc:
            raise ModelFormatError(f"feature builder data is incomplete or malformed: {exc!r}") from exc
        missing = sorted(set(obj.feature_names_) - set(obj.medians_))
        if missing:
            raise ModelFormatError(f"feature builder data has no imputation value for {missing}")
        return obj


def _check_format(data, kind: str) -> None:
    if not isinstance(data, dict) or data.get("kind") != kind:
        raise ModelFormatError(f"expected a {kind} dictionary (with kind={kind!r}), got {str(data)[:80]!r}")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFormatError(f"{kind} format_version={version!r} is not supported; this seglib reads up "
                               f"to {FORMAT_VERSION} (upgrade seglib)")


# ----------------------------------------------------------------------------------------------------
# the fitted scaler


def _is_weight(w) -> bool:
    try:
        return math.isfinite(float(w)) and float(w) >= 0
    except (TypeError, ValueError):
        return False


def _scaler_stats(values: np.ndarray, names, scaler: str) -> pd.DataFrame:
    """``SCALER_STATS[scaler]`` of the columns of ``values`` (no missing value), in memory.

    With scikit-learn's operations (StandardScaler's two-pass variance, MinMaxScaler's min and max,
    RobustScaler's nanmedian and nanpercentile), so the in-memory scaler gives its exact results.
    """
    if scaler == "standard":
        n = float(len(values))
        mean = values.sum(axis=0) / n
        dev = values - mean
        stats = {"count": n, "mean": mean, "dev_sum": dev.sum(axis=0)}
        dev **= 2
        stats["dev_sumsq"] = dev.sum(axis=0)
    elif scaler == "minmax":
        stats = {"min": np.nanmin(values, axis=0), "max": np.nanmax(values, axis=0)}
    else:
        q25, q75 = np.transpose([np.nanpercentile(values[:, j], (25.0, 75.0)) for j in range(len(names))])
        stats = {"q25": q25, "median": np.nanmedian(values, axis=0), "q75": q75}
    return pd.DataFrame(stats, index=names)


def _center_scale(scaler: str, stats: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Center and spread per column from ``SCALER_STATS[scaler]``; a constant column's spread is 1.

    StandardScaler's variance ``(dev_sumsq - dev_sum**2 / n) / n`` and near-constant test,
    RobustScaler's IQR below 10 machine epsilons (scikit-learn's rules); minmax: a range of 0.
    """
    eps = np.finfo(np.float64).eps
    if scaler == "standard":
        n, center = stats["count"].to_numpy(dtype=float), stats["mean"].to_numpy(dtype=float)
        var = (stats["dev_sumsq"].to_numpy(dtype=float) - stats["dev_sum"].to_numpy(dtype=float) ** 2 / n) / n
        constant = var <= n * eps * var + (n * center * eps) ** 2
        return center, np.where(constant, 1.0, np.sqrt(var))
    if scaler == "minmax":
        center = stats["min"].to_numpy(dtype=float)
        spread = stats["max"].to_numpy(dtype=float) - center
        return center, np.where(spread == 0, 1.0, spread)
    center = stats["median"].to_numpy(dtype=float)
    spread = stats["q75"].to_numpy(dtype=float) - stats["q25"].to_numpy(dtype=float)
    return center, np.where(spread < 10 * eps, 1.0, spread)


class FeatureScaler(TransformerMixin, BaseEstimator):
    """Scale the model matrix: signed log1p, a scaler, a spread floor for flags and counts, weights.

    Only numeric columns are scaled; text columns and the builder's non-feature columns
    (``customer_id``, ``customer_key``, ``row``, even when numeric) are left out.
    Each column becomes ``(f(x) - center) / scale * weight`` where ``f`` is the signed log1p
    ``sign(x) log1p(|x|)`` for the ``log1p`` columns and the identity otherwise.

    Parameters
    ----------
    scaler : {"standard", "minmax", "robust"}, default="standard"
        ``"standard"``: mean 0, standard deviation 1 (a good default after log1p: every feature counts
        about equally in SOM distances). ``"minmax"``: range 0-1 (bounded, but one outlier squeezes the
        rest of its column). ``"robust"``: median 0, interquartile range 1 (use when outliers remain).
    log1p : "auto", sequence of str or None, default="auto"
        Columns that get a signed log1p before scaling. ``"auto"``: those of :data:`DEFAULT_LOG1P`
        present (spend, basket value, frequency and items are heavy tailed: a few big customers would
        otherwise stretch the axis and squash everyone else together). None: no log.
    balance : "auto", sequence of str or None, default="auto"
        Columns whose spread is at least that of a *balanced* 0/1 flag (0.5 for standard, 1 for minmax
        and robust) over one unit step, ``f(min + 1) - f(min)``, so that a rare value does not dominate.
        Standardised by its own std, a flag held by 0.1% of customers jumps by 1/sqrt(p(1-p)) ~ 32
        units and outweighs every other feature together; balanced, "has it" vs "has it not" is always
        2 standard-deviation units apart (a flag's std is at most 0.5, so flags and shares get exactly
        0.5). The same holds for counts that are nearly constant (stores visited when almost everyone
        used one store): one more store or visit never weighs more than a balanced flag. Columns with a
        real spread are not changed. ``"auto"``: every column whose fitted values lie in [0, 1] (flags,
        indicators, shares) or are all whole numbers (counts). None: plain scaler (the original's).
    weights : dict, optional
        Extra multiplier per column after scaling (e.g. ``{"age": 0.5}`` halves age's influence), for
        analysts who want a feature to count more or less. Default 1 for every column.

    Attributes
    ----------
    feature_names_in_ : ndarray of str
        Scaled columns, in order.
    n_features_in_ : int
    log1p_, balanced_ : list of str
        Columns that got the log1p / the balanced spread floor.
    center_, scale_, weights_ : ndarray of shape (n_features_in_,)
        ``(f(x) - center_) / scale_ * weights_``; a zero spread becomes 1.
    """

    def __init__(self, scaler="standard", *, log1p="auto", balance="auto", weights=None):
        self.scaler = scaler
        self.log1p = log1p
        self.balance = balance
        self.weights = weights

    @staticmethod
    def _frame(X) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            X = np.asarray(X, dtype=float)
            X = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
        X = X.drop(columns=[c for c in X.columns if c in NON_FEATURES])
        X = X.select_dtypes(include=["number", "bool"])
        if X.shape[1] == 0:
            raise InputError("the feature matrix has no numeric column to scale")
        return X

    @staticmethod
    def _values(X: pd.DataFrame) -> np.ndarray:
        values = np.array(X.to_numpy(dtype=float), dtype=float, copy=True)  # pandas may give a read-only view
        bad = ~np.isfinite(values).all(axis=0)
        if bad.any():
            raise InputError(f"feature column(s) {list(X.columns[bad])} hold missing or infinite values; "
                             "impute first (FeatureBuilder does)")
        return values

    @staticmethod
    def _names(param: str, value, names: list[str]) -> list[str]:
        value = [] if value is None else [value] if isinstance(value, str) else list(value)
        unknown = [v for v in value if v not in names]
        if unknown:
            raise ParameterError(f"{param} names unknown column(s) {unknown}; "
                                 f"choose among: {', '.join(names)}")
        return value

    def fit(self, X, y=None):
        """Fit centers, spreads and the log1p / flag columns.

        Parameters
        ----------
        X : DataFrame of shape (n_samples, n_columns)
            Model matrix (``FeatureBuilder.transform`` output); non-numeric columns are ignored.
        y : Ignored
            Not used, present for API consistency by convention.

        Returns
        -------
        self : FeatureScaler
        """
        check_option("scaler", self.scaler, SCALERS)
        X = self._frame(X)
        names = [str(c) for c in X.columns]
        values = self._values(X)
        is_log = np.isin(names, self.check_columns(names))
        inputs = pd.DataFrame({"min": values.min(axis=0), "max": values.max(axis=0),
                               "whole": (values == np.round(values)).all(axis=0)}, index=names)
        values[:, is_log] = signed_log1p(values[:, is_log])
        return self.fit_from_stats(inputs, _scaler_stats(values, names, self.scaler))

    def check_columns(self, names) -> list[str]:
        """Check the parameters against the column names; return the columns that get the log1p.

        The first step of a fit (see :meth:`fit_from_stats`), so that a bad ``scaler``, or a name in
        ``log1p``, ``balance`` or ``weights`` that is not a column, or a bad weight, fails before
        any statistic is computed.

        Raises
        ------
        ParameterError
        """
        return self._resolve(names)[0]

    def _resolve(self, names) -> tuple[list[str], list[str] | None, dict]:
        """The log1p columns, the balanced columns (None for "auto": they need statistics), the weights."""
        check_option("scaler", self.scaler, SCALERS)
        names = list(names)
        if isinstance(self.log1p, str) and self.log1p == "auto":
            log1p = [c for c in DEFAULT_LOG1P if c in names]
        else:
            log1p = self._names("log1p", self.log1p, names)
        auto = isinstance(self.balance, str) and self.balance == "auto"
        balanced = None if auto else self._names("balance", self.balance, names)
        weights = dict(self.weights or {})
        self._names("weights", list(weights), names)
        bad = {k: w for k, w in weights.items() if not _is_weight(w)}
        if bad:
            raise ParameterError(f"weights must be finite numbers >= 0; got {bad}")
        return log1p, balanced, weights

    def fit_from_stats(self, inputs: pd.DataFrame, stats: pd.DataFrame):
        """Set the fitted attributes from per-column statistics: the last step of every fit.

        :meth:`fit` computes the statistics in memory; :mod:`seglib.distributed` by reductions over
        the partitions of a matrix too large for one machine. Both call this method, so the log1p and
        balanced columns, centers, spreads (with scikit-learn's rules for a constant column) and the
        spread floor are the same. The statistics of the columns after the signed log1p depend on
        the log1p columns: get them from :meth:`check_columns` first.

        Parameters
        ----------
        inputs : DataFrame
            One row per column to scale, in order (the index names them), with the columns
            :data:`INPUT_STATS` of the values as given (imputed, before the log1p).
        stats : DataFrame
            Same index; the columns ``SCALER_STATS[scaler]`` of the values after the signed log1p of
            the ``log1p`` columns. For ``"standard"``, ``mean`` is the sum over the count, and
            ``dev_sum`` / ``dev_sumsq`` sum ``x - mean`` and its square (computed in a second pass);
            for ``"robust"`` the quartiles are ``np.percentile``'s (linear interpolation).

        Returns
        -------
        self : FeatureScaler
        """
        check_option("scaler", self.scaler, SCALERS)
        _check_stats(inputs, INPUT_STATS, "feature scaler input")
        _check_stats(stats, SCALER_STATS[self.scaler], f"{self.scaler} scaler")
        names = [str(c) for c in inputs.index]
        log1p, balanced, weights = self._resolve(names)
        low = inputs["min"].to_numpy(dtype=float)
        if balanced is None:
            high, whole = inputs["max"].to_numpy(dtype=float), inputs["whole"].to_numpy(dtype=bool)
            balanced = [n for n, b in zip(names, ((low >= 0) & (high <= 1)) | whole) if b]
        center, scale = _center_scale(self.scaler, stats.loc[inputs.index])
        is_log = np.isin(names, log1p)  # one unit step from the minimum, in the transformed units
        step = np.where(is_log, signed_log1p(low + 1) - signed_log1p(low), 1.0)
        floor = np.where(np.isin(names, balanced), BALANCED_SPREAD[self.scaler] * step, 0.0)
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)
        self.log1p_, self.balanced_ = log1p, balanced
        self.center_ = np.asarray(center, dtype=float)
        self.scale_ = np.asarray(np.maximum(scale, floor), dtype=float)
        self.weights_ = np.array([float(weights.get(n, 1.0)) for n in names])
        logger.info("scaler=%s; log1p on %s; balanced spread floor on %s", self.scaler, log1p or "none",
                    balanced or "none")
        return self

    def transform(self, X) -> np.ndarray:
        """Scaled array of shape (n_samples, n_features_in_), columns in ``feature_names_in_`` order."""
        check_is_fitted(self, "center_")
        names = list(self.feature_names_in_)
        X = self._frame(X) if not isinstance(X, pd.DataFrame) else X
        missing = [n for n in names if n not in X.columns]
        if missing:
            raise InputError(f"the feature matrix lacks column(s) {missing} the scaler was fitted on")
        values = self._values(X[names])
        is_log = np.isin(names, self.log1p_)
        values[:, is_log] = signed_log1p(values[:, is_log])
        return (values - self.center_) / self.scale_ * self.weights_

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the scaled columns (``feature_names_in_``)."""
        check_is_fitted(self, "center_")
        return self.feature_names_in_.copy()

    def to_dict(self) -> dict:
        """Parameters and fitted state as JSON-compatible data; :meth:`from_dict` transforms identically."""
        check_is_fitted(self, "center_")
        params = self.get_params()
        for name in ("log1p", "balance"):
            if params[name] is not None and not isinstance(params[name], str):
                params[name] = list(params[name])
        params["weights"] = None if self.weights is None else {k: float(v) for k, v in self.weights.items()}
        return {"format_version": FORMAT_VERSION, "kind": "FeatureScaler", "params": params,
                "feature_names_in_": list(self.feature_names_in_), "log1p_": list(self.log1p_),
                "balanced_": list(self.balanced_),
                "center_": self.center_.tolist(), "scale_": self.scale_.tolist(),
                "weights_": self.weights_.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureScaler":
        """Rebuild a fitted scaler from :meth:`to_dict` output."""
        _check_format(data, "FeatureScaler")
        try:
            obj = cls(**data["params"])
            obj.feature_names_in_ = np.asarray(data["feature_names_in_"], dtype=object)
            obj.n_features_in_ = len(obj.feature_names_in_)
            obj.log1p_, obj.balanced_ = list(data["log1p_"]), list(data["balanced_"])
            for name in ("center_", "scale_", "weights_"):
                setattr(obj, name, np.asarray(data[name], dtype=float))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"feature scaler data is incomplete or malformed: {exc!r}") from exc
        n = obj.n_features_in_
        if any(getattr(obj, a).shape != (n,) for a in ("center_", "scale_", "weights_")):
            raise ModelFormatError(f"feature scaler data: center_/scale_/weights_ must have {n} values")
        return obj


# ----------------------------------------------------------------------------------------------------
# the two together


def feature_pipeline(level="customer", *, as_of=None, indicators=("age",), exclude=(), bases="behaviour",
                     scaler="standard", log1p="auto", balance="auto", weights=None) -> Pipeline:
    """``Pipeline([("features", FeatureBuilder(...)), ("scale", FeatureScaler(...))])``.

    ``pipe.fit_transform(clean)`` returns the scaled array; ``pipe["features"].feature_names_`` names its
    columns. Parameters are those of :class:`FeatureBuilder` and :class:`FeatureScaler`. With
    ``level="original"`` the scaler is the original's plain StandardScaler (no log1p, no flag spread);
    changing the scaling parameters then raises :class:`~seglib.errors.ParameterError`.
    """
    if level == "original":
        if (scaler, log1p, balance, weights) != ("standard", "auto", "auto", None):
            raise ParameterError("level='original' rebuilds the original table with its plain "
                                 "StandardScaler; scaler, log1p, balance and weights cannot be changed "
                                 "(use level='customer' for other scalings)")
        scale = FeatureScaler("standard", log1p=None, balance=None)
    else:
        scale = FeatureScaler(scaler, log1p=log1p, balance=balance, weights=weights)
    builder = FeatureBuilder(level, as_of=as_of, indicators=indicators, exclude=exclude, bases=bases)
    return Pipeline([("features", builder), ("scale", scale)])


def pipeline_to_dict(pipeline: Pipeline) -> dict:
    """JSON-compatible data of a fitted :func:`feature_pipeline` (builder and scaler)."""
    return {"format_version": FORMAT_VERSION, "kind": "FeaturePipeline",
            "features": pipeline["features"].to_dict(), "scale": pipeline["scale"].to_dict()}


def pipeline_from_dict(data: dict) -> Pipeline:
    """Rebuild the fitted pipeline saved by :func:`pipeline_to_dict`."""
    _check_format(data, "FeaturePipeline")
    if not {"features", "scale"} <= set(data):
        raise ModelFormatError("feature pipeline data needs 'features' and 'scale'")
    return Pipeline([("features", FeatureBuilder.from_dict(data["features"])),
                     ("scale", FeatureScaler.from_dict(data["scale"]))])


# ----------------------------------------------------------------------------------------------------
# fitting from the statistics of blocks of customers (the Dask backend's partitions)
#
# ``reduce(func, **kwargs)`` returns ``[func(block, **kwargs) for block in blocks]`` in a fixed block
# order, as for :func:`seglib.som.reduce_moments`; a block is a part of the customer table
# (:func:`finalize_customers`). The fits end in ``fit_from_stats``, as the in-memory fits do.


def model_frame(customers: pd.DataFrame, indicators, features, medians=None) -> pd.DataFrame:
    """The builder's model matrix of a block of customers (imputed when ``medians`` is given)."""
    frame = add_indicators(customers, indicators)[features]
    return frame if medians is None else frame.fillna(medians)


def _transformed(customers, indicators, features, medians, log1p) -> pd.DataFrame:
    """The model matrix with the scaler's signed log1p applied (what the scaler's statistics are of)."""
    frame = model_frame(customers, indicators, features, medians)
    return frame.assign(**{c: signed_log1p(frame[c]) for c in log1p})


def column_stats(block, prepare, shift=None) -> pd.DataFrame:
    """Per column of ``prepare(block)``: count, missing, min, max, sum (of ``x - shift``), sum of
    squares, whole numbers. Add blocks' with :func:`add_column_stats`."""
    x = prepare(block).astype(float)
    if shift is not None:
        x = x - shift
    return pd.DataFrame({"count": x.count(), "missing": x.isna().sum(), "min": x.min(), "max": x.max(),
                         "sum": x.sum(), "sumsq": (x * x).sum(),
                         "whole": (x.isna() | (x == np.round(x))).all()})


def add_column_stats(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Column statistics of the whole table from the blocks' :func:`column_stats` (added in order)."""
    out = parts[0].copy()
    for s in parts[1:]:
        for c in ("count", "missing", "sum", "sumsq"):
            out[c] = out[c] + s[c]
        out["min"] = np.fmin(out["min"], s["min"])
        out["max"] = np.fmax(out["max"], s["max"])
        out["whole"] = out["whole"] & s["whole"]
    return out


def _refine(block, prepare, histograms, collect, bins):
    """One pass of :func:`order_statistics` over a block."""
    frame = prepare(block)
    hist, values = [], []
    for col, lo, hi in histograms:
        x = frame[col].to_numpy(dtype=float)
        x = x[(x >= lo) & (x <= hi)]
        b = np.minimum(((x - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)
        hist.append(pd.Series(x).groupby(b).agg(["size", "min", "max"]))
    for col, lo, hi in collect:
        x = frame[col].to_numpy(dtype=float)
        values.append(x[(x >= lo) & (x <= hi)])
    return hist, values


def order_statistics(reduce, prepare, requests, stats, *, bins=4096, small=100_000) -> list:
    """Exact order statistics of columns spread over blocks: the ``k``-th smallest (0-based) non-missing
    value of ``prepare(block)[column]`` over all blocks.

    ``requests`` is a list of ``(column, k)``; ``stats`` has each column's ``count``, ``min`` and ``max``
    (:func:`add_column_stats`). Each pass histograms the values of the current interval of every request
    into ``bins`` bins (with each bin's min and max), keeps the bin holding rank ``k`` (bins are
    monotone, so a bin is exactly the values between its min and max), until the interval holds at
    most ``small`` values, which are then collected and sorted, or a single value (ties). A few passes
    over the table, nothing large moved; more ``bins`` means fewer passes and larger results.
    """
    state = [{"col": c, "k": k, "lo": stats.at[c, "min"], "hi": stats.at[c, "max"], "below": 0,
              "n": int(stats.at[c, "count"]), "value": None} for c, k in requests]
    while True:
        for s in state:
            if s["value"] is None and s["lo"] == s["hi"]:
                s["value"] = float(s["lo"])
        todo = [s for s in state if s["value"] is None]
        if not todo:
            return [s["value"] for s in state]
        wide = [s for s in todo if s["n"] > small]
        narrow = [s for s in todo if s["n"] <= small]
        results = reduce(_refine, prepare=prepare, bins=bins,
                         histograms=[(s["col"], s["lo"], s["hi"]) for s in wide],
                         collect=[(s["col"], s["lo"], s["hi"]) for s in narrow])
        for j, s in enumerate(wide):
            h = pd.concat([r[0][j] for r in results]).groupby(level=0).agg(
                {"size": "sum", "min": "min", "max": "max"})
            cum = h["size"].cumsum().to_numpy()
            i = int(np.searchsorted(cum, s["k"] - s["below"], side="right"))
            s["below"] += int(cum[i - 1]) if i else 0
            s["lo"], s["hi"], s["n"] = float(h["min"].iloc[i]), float(h["max"].iloc[i]), int(cum[i] - (
                cum[i - 1] if i else 0))
        for j, s in enumerate(narrow):
            values = np.sort(np.concatenate([r[1][j] for r in results]))
            s["value"] = float(values[s["k"] - s["below"]])


def exact_medians(reduce, prepare, stats) -> dict:
    """Exact medians of every column of ``stats`` (pandas' definition: the mean of the two middle
    values for an even count; NaN without values), by :func:`order_statistics`."""
    requests = []
    for col in stats.index:
        n = int(stats.at[col, "count"])
        requests += [(col, (n - 1) // 2), (col, n // 2)] if n else []
    values = iter(order_statistics(reduce, prepare, requests, stats))
    return {c: ((next(values) + next(values)) / 2 if stats.at[c, "count"] else np.nan) for c in stats.index}


def exact_percentiles(reduce, prepare, stats, q: float) -> dict:
    """Exact ``np.nanpercentile(x, q)`` (linear interpolation) of every column of ``stats``."""
    pos = {c: q / 100 * (int(stats.at[c, "count"]) - 1) for c in stats.index}
    requests = [(c, math.floor(p)) for c, p in pos.items()] + [(c, math.ceil(p)) for c, p in pos.items()]
    values = order_statistics(reduce, prepare, requests, stats)
    n = len(pos)
    out = {}
    for i, (c, p) in enumerate(pos.items()):
        a, b, t = values[i], values[n + i], p - math.floor(p)
        out[c] = b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t  # numpy's _lerp
    return out


def fit_builder_from_blocks(builder: FeatureBuilder, reduce, columns, *, as_of, programmes=None,
                            genders=None, transaction_key=None) -> FeatureBuilder:
    """Fit ``builder`` (``level="customer"``) on a customer table in blocks: :data:`BUILDER_STATS` (exact
    medians) by reductions, then :meth:`FeatureBuilder.fit_from_stats`. ``columns`` are the table's."""
    features, indicators = builder.candidate_features(columns)
    prepare = partial(model_frame, indicators=indicators, features=features)
    stats = add_column_stats(reduce(column_stats, prepare=prepare))
    stats["median"] = pd.Series(exact_medians(reduce, prepare, stats))
    return builder.fit_from_stats(stats, as_of=as_of, programmes=programmes, genders=genders,
                                  transaction_key=transaction_key)


def fit_scaler_from_blocks(scaler: FeatureScaler, reduce, builder: FeatureBuilder) -> FeatureScaler:
    """Fit ``scaler`` on the fitted ``builder``'s model matrix of a customer table in blocks: the
    statistics :meth:`FeatureScaler.fit_from_stats` needs (:data:`INPUT_STATS`, ``SCALER_STATS[scaler]``),
    by reductions. ``"minmax"`` takes one pass; ``"standard"`` two, as scikit-learn's StandardScaler
    (the mean, then the deviations); ``"robust"`` a few more for its exact quartiles. The in-memory
    :meth:`FeatureScaler.fit` computes the same statistics with scikit-learn's operations."""
    names = list(builder.feature_names_)
    state = dict(indicators=builder.indicators_, features=names, medians=builder.medians_)
    prepare = partial(_transformed, **state, log1p=scaler.check_columns(names))  # bad parameters fail first
    inputs = add_column_stats(reduce(column_stats, prepare=partial(model_frame, **state)))
    stats = add_column_stats(reduce(column_stats, prepare=prepare))
    if scaler.scaler == "standard":
        mean = stats["sum"] / stats["count"]
        dev = add_column_stats(reduce(column_stats, prepare=prepare, shift=mean))
        stats = stats.assign(mean=mean, dev_sum=dev["sum"], dev_sumsq=dev["sumsq"])
    elif scaler.scaler == "robust":
        stats["median"] = pd.Series(exact_medians(reduce, prepare, stats))
        for name, q in (("q25", 25.0), ("q75", 75.0)):
            stats[name] = pd.Series(exact_percentiles(reduce, prepare, stats, q))
    return scaler.fit_from_stats(inputs, stats)


def scale_block(customers: pd.DataFrame, builder: FeatureBuilder, scaler: FeatureScaler) -> pd.DataFrame:
    """The scaled features of a block of customers (the fitted pipeline's output, as a frame)."""
    frame = model_frame(customers, builder.indicators_, builder.feature_names_, builder.medians_)
    return pd.DataFrame(scaler.transform(frame), index=customers.index,
                        columns=list(scaler.feature_names_in_))


# ----------------------------------------------------------------------------------------------------
# per-(customer, store) partial aggregates in blocks (the Dask backend: one block per input file, then
# the blocks of a shuffle by customer)


def partials_meta(head: pd.DataFrame, programmes, genders) -> pd.DataFrame:
    """The empty partials frame of every block: the columns of ``head`` (a block's
    :func:`customer_partials` with a ``part`` column, the block's number), with a count column for each
    programme and gender seen in any block, in sorted order."""
    base = [c for c in head.columns if not c.startswith(COUNT_PREFIXES) and c != "part"]
    counts = [f"programme_{p}" for p in programmes or []] + [f"gender_{g}" for g in genders or []]
    meta = head.reindex(columns=base + counts + ["part"])
    return meta.astype({c: "float64" for c in counts} | {"part": "int64"})


def conform_partials(partials, meta: pd.DataFrame) -> pd.DataFrame:
    """A block's partials with the columns of ``meta`` (count columns absent from this block are 0)."""
    if partials is None:
        return meta.copy()
    missing = {c: 0.0 for c in meta.columns if c not in partials.columns}
    return partials.assign(**missing)[list(meta.columns)].astype(meta.dtypes.to_dict())


def combine_block(block: pd.DataFrame) -> pd.DataFrame:
    """One row per (customer_key, store) of a block holding all the partials of its customers
    (:func:`combine_partials`, summed in a fixed order: by key, store, then the ``part`` they came from)."""
    block = block.sort_values(["customer_key", "store", "part"], kind="stable")
    combined = combine_partials(block.drop(columns="part").set_index(["customer_key", "store"]))
    return combined.reset_index()


def customers_meta(combined_meta: pd.DataFrame, as_of, *, has_store: bool) -> pd.DataFrame:
    """The empty customer table (:func:`finalize_customers`) of combined partials with the columns of
    ``combined_meta``, learnt from one made-up row."""
    row = {c: (pd.Timestamp("2000-01-01") if pd.api.types.is_datetime64_any_dtype(t) else
               1.0 if pd.api.types.is_numeric_dtype(t) else "x") for c, t in combined_meta.dtypes.items()}
    row["store"] = "x" if has_store else pd.NA
    sample = pd.DataFrame([row]).astype(combined_meta.dtypes.to_dict())
    return finalize_customers(sample.set_index(["customer_key", "store"]), as_of).iloc[:0]


def finalize_block(block: pd.DataFrame, as_of, meta: pd.DataFrame) -> pd.DataFrame:
    """The customer table of a block of combined partials, with the columns of ``meta``
    (:func:`customers_meta`; ``n_stores`` even when this block knows no store)."""
    if block.empty:
        return meta.copy()
    return finalize_customers(block.set_index(["customer_key", "store"]), as_of).reindex(columns=meta.columns)
