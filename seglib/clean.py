"""Cleaning transactions: named rules applied in order, every row and change accounted for (step 01).

The cleaner turns the text frame of :func:`seglib.load.load_transactions` into the typed table of
the "Cleaned transactions" contract (``DEVELOPERS.md``). It is a sequence of small rules
(:data:`RULES`), each with a name, a kind and a one-line description, each counted in the
:class:`CleaningReport`:

* ``drop`` rules remove rows missing a required field; the report counts the rows per reason;
* ``change`` rules rewrite values (a placeholder becomes missing, a set is made canonical); the
  report counts the kept rows whose value changed;
* ``flag`` rules mark rows that are kept but must not be mixed in silently (duplicates, zero-price
  lines, returns); the report counts them.

The invariant ``rows_read == rows_kept + sum(rows_dropped.values())`` holds for every input.

Ages are computed at a reference date ``as_of``, never against today: by default the day after the
last valid transaction, so the same file always gives the same table. The work on rows is a function
of one partition and a few global inputs (:func:`clean_partition`); :func:`clean_transactions`
computes the global inputs (``as_of``, date formats), then cleans the whole frame as one partition.
A distributed backend cleans each partition and adds the reports (``report_a + report_b``).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from seglib._files import write_json
from seglib.errors import InputError, ParameterError, check_bool, check_float, check_int, check_option
from seglib.load import (
    AMOUNT_FROM,
    REQUIRED_ROLES,
    ROLES,
    about_source,
    as_text,
    by_value,
    check_date_format,
    combined_codes,
    detect_date_format,
    load_transactions,
    parse_dates,
)
from seglib.params import default

__all__ = [
    "Rule",
    "RULES",
    "CleaningReport",
    "clean_transactions",
    "clean_partition",
    "clean_file",
    "default_as_of",
    "customer_key",
    "parse_amounts",
    "rules_table",
    "plausibility_stats",
    "combine_plausibility_stats",
    "plausible_bounds",
    "reference_bounds",
    "file_plausibility_stats",
    "Plausible",
    "DEFAULT_MIN_AGE",
    "DEFAULT_MAX_AGE",
    "check_ages",
    "check_as_of",
    "check_bounds",
    "check_date",
    "AMOUNT_DECADES",
    "MAX_AMOUNT_CAP",
    "MAX_GAP_DAYS",
]

logger = logging.getLogger(__name__)

#: Youngest plausible customer age in whole years; younger ages become missing (from :mod:`seglib.params`).
DEFAULT_MIN_AGE = default("min_age")
#: Oldest plausible customer age in whole years; older ages become missing (from :mod:`seglib.params`).
DEFAULT_MAX_AGE = default("max_age")
#: Default bound on line amounts: this many orders of magnitude above the median amount (see
#: :func:`plausible_bounds`). 6 keeps a line a million times the typical one, drops 1e308 typos.
AMOUNT_DECADES = 6
#: No amount beyond this magnitude is ever kept (sums of a million such lines stay finite in float64).
MAX_AMOUNT_CAP = 1e15
#: Default date window: the dates are cut where no transaction happened for more than this many days,
#: and the stretch holding the most rows is kept (see :func:`plausible_bounds`).
MAX_GAP_DAYS = 365
#: A customer-id prefix of letters and an underscore, such as ``BBID_``.
ID_PREFIX = re.compile(r"^[A-Za-z]+_")
#: Text placeholders meaning "no value" (compared after trimming, case-insensitively).
MISSING_TOKENS = frozenset({"NANA", "NA", "N/A", "NAN", "NULL", "NONE", "NIL", "-", "--", "?"})
#: Promo-code values meaning "no promotion" (plus empty cells and :data:`MISSING_TOKENS`).
NO_PROMO_TOKENS = frozenset({"NONPROMO"}) | MISSING_TOKENS
#: A valid pin code: six digits, not starting with 0, not one digit repeated (999999, 111111).
PINCODE = re.compile(r"^(?!(\d)\1{5}$)[1-9]\d{5}$", re.ASCII)

KINDS = ("drop", "change", "flag")
#: Reasons for dropped rows that are not rules (lines the loader could not split into fields).
EXTRA_REASONS = {
    "malformed_line": "lines with more fields than the header: not read (see load_transactions)",
}
#: Optional columns whose missing values the report counts (NA there means "unknown").
MISSING_COUNTED = ("dob", "age", "pincode", "store", "till", "transaction", "product", "quantity",
                   "unit_price")


# ---------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    """One cleaning rule.

    Attributes
    ----------
    name : str
        Key of the rule in the report (a drop reason, a change or a flag).
    kind : {"drop", "change", "flag"}
        What the count means: rows dropped, kept rows whose value changed, rows flagged.
    description : str
        One line saying what the rule does.
    role : str or None
        The role the rule works on; the rule is skipped when the role is not mapped.
    func : callable
        ``func(df, settings) -> (df, count)``.
    keep : callable or None
        Drop rules only: ``keep(df, settings) -> (mask, values)``, the rows the rule keeps (a boolean
        array over ``df``) and the columns it parses (name -> Series over all of ``df``). The cleaner
        evaluates every drop rule on the whole frame and filters once; ``func`` is the same rule
        applied to a frame on its own.
    """

    name: str
    kind: str
    description: str
    role: str | None
    func: Callable = field(repr=False)
    keep: Callable | None = field(default=None, repr=False)


_REGISTRY: list[Rule] = []


def _rule(name: str, kind: str, description: str, role: str | None = None):
    check_option("kind", kind, KINDS)

    def register(func):
        _REGISTRY.append(Rule(name, kind, description, role, func))
        return func

    return register


def _drop_rule(name: str, description: str, role: str | None = None):
    """Register a drop rule from its ``keep(df, settings) -> (mask, values)`` function."""

    def register(keep):
        def func(df, s):
            mask, values = keep(df, s)
            mask = np.asarray(mask, dtype=bool)
            out = df[mask]
            if values:
                out = out.assign(**{k: v[mask] for k, v in values.items()})
            return out, int((~mask).sum())

        _REGISTRY.append(Rule(name, "drop", description, role, func, keep))
        return keep

    return register


@dataclass(frozen=True)
class _Settings:
    as_of: pd.Timestamp
    min_age: float
    max_age: float
    date_format: str | None
    dob_format: str | None
    drop_duplicates: bool
    min_date: pd.Timestamp | None = None
    max_date: pd.Timestamp | None = None
    max_amount: float = MAX_AMOUNT_CAP


def _upper(s: pd.Series) -> pd.Series:
    return s.str.strip().str.upper()


def _key(u: pd.Series) -> pd.Series:
    # the pattern as text: pandas runs a compiled pattern through Python's re, value by value
    return u.str.strip().str.replace(ID_PREFIX.pattern, "", regex=True).str.strip()


def customer_key(ids: pd.Series) -> pd.Series:
    """Normalised customer ids: trimmed, a ``BBID_`` style prefix (letters + ``_``) removed."""
    return by_value(as_text(ids), _key)


#: Hidden column of the frame being cleaned: the code of each row's customer id (see :class:`_Ids`).
_ID_CODE = "\x00id_code"


@dataclass(frozen=True)
class _Ids:
    """The customer ids of a frame factorised once: what every rule and count on ids shares.

    ``codes`` numbers the distinct ids (as text, ``unique_ids``) in order of appearance,
    ``unique_keys`` holds the key of each distinct id (:func:`customer_key` of the uniques).
    """

    codes: np.ndarray
    unique_ids: pd.Series
    unique_keys: pd.Series

    @classmethod
    def of(cls, ids: pd.Series) -> "_Ids":
        text = as_text(ids)
        codes, uniques = pd.factorize(text, use_na_sentinel=False)
        unique_ids = pd.Series(uniques, dtype=text.dtype)
        return cls(codes, unique_ids, _key(unique_ids))

    def has_key(self) -> np.ndarray:
        """Whether each row has a non-empty key."""
        return (self.unique_keys != "").to_numpy(dtype=bool)[self.codes]

    def key_set(self, codes=None) -> frozenset:
        """The distinct non-empty keys (of the rows whose id codes are ``codes``; all rows by default)."""
        keys = self.unique_keys
        if codes is not None:
            present = np.zeros(len(keys), dtype=bool)
            present[codes] = True
            keys = keys[present]
        return frozenset(keys.tolist()) - {""}


def _take(values: pd.Series, codes: np.ndarray) -> pd.Series:
    """``values`` at positions ``codes`` (same dtype), indexed 0..n-1."""
    return values.iloc[codes].reset_index(drop=True)


def _distinct(column: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """``(values, codes)``: the distinct values of ``column`` and the number of each row's value
    (``values[codes]`` is the column), so a rule works once per distinct value.

    The cleaner keeps the text columns of the frame it works on as categoricals (:func:`_coded`):
    their categories (plus a missing value when some rows have none) and codes are used as they are;
    any other column is factorised.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        values = pd.Series(column.cat.categories)
        if len(codes) and codes.min() < 0:
            values = values.reindex(range(len(values) + 1))  # missing: one more value
            codes = np.where(codes < 0, len(values) - 1, codes)
        return values, codes
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    return pd.Series(uniques, dtype=column.dtype), codes


def _as_column(like: pd.Series, values: pd.Series, codes: np.ndarray) -> pd.Series:
    """A rule's result per distinct value (``values``, numbered as :func:`_distinct` numbered ``like``)
    as a column over ``like``'s rows: a categorical when ``like`` is one (the values, which may now
    repeat, are factorised again), else the values taken row by row."""
    if isinstance(like.dtype, pd.CategoricalDtype):
        vcodes, categories = pd.factorize(values)  # missing: -1
        return pd.Series(pd.Categorical.from_codes(vcodes[codes], categories=categories, validate=False),
                         index=like.index)
    return _take(values, codes).set_axis(like.index)


def _per_row(values, codes: np.ndarray, index) -> pd.Series:
    """Numbers or dates per distinct value as a plain column (numpy dtype) over ``index``."""
    return pd.Series(np.asarray(values)[codes], index=index)


def _rows_where(flags: pd.Series, codes: np.ndarray) -> int:
    """How many rows have a value whose flag is set."""
    return int(np.bincount(codes, minlength=len(flags))[flags.to_numpy(dtype=bool)].sum())


#: Identifier columns no rule changes: the cleaner keeps them as text (only duplicates compare them, on
#: the few candidate rows).
_KEPT_AS_TEXT = ("store", "till", "transaction", "product")


def _coded(work: pd.DataFrame, ids: _Ids) -> pd.DataFrame:
    """The frame the cleaner works on: every text column a rule reads factorised once into a categorical
    (the ids with ``ids``' numbering), and the ids' codes as :data:`_ID_CODE`; each rule then works
    once per distinct value (:func:`_distinct`)."""
    out = {}
    for col in work.columns:
        if col in ("row", *_KEPT_AS_TEXT) or not pd.api.types.is_string_dtype(work[col].dtype):
            out[col] = work[col]
        elif col == "customer_id":
            out[col] = pd.Categorical.from_codes(ids.codes, categories=pd.Index(ids.unique_ids),
                                                 validate=False)
        else:
            codes, uniques = pd.factorize(work[col], use_na_sentinel=False)
            out[col] = pd.Categorical.from_codes(codes, categories=pd.Index(uniques), validate=False)
    kcodes, kuniques = pd.factorize(ids.unique_keys)
    out["customer_key"] = pd.Categorical.from_codes(kcodes[ids.codes], categories=kuniques, validate=False)
    out[_ID_CODE] = ids.codes
    return pd.DataFrame(out, index=work.index)


def _amount(u: pd.Series) -> pd.Series:
    x = pd.to_numeric(u.str.strip(), errors="coerce").astype("float64")
    return x.where(np.isfinite(x)) + 0.0


def parse_amounts(values: pd.Series) -> pd.Series:
    """Parse amounts to float64; empty, non-numeric and non-finite values are NaN; -0 becomes 0."""
    return by_value(as_text(values), _amount)


@_rule(
    "duplicate_row",
    "flag",
    "rows equal to an earlier row in every mapped column: counted among rows read and kept "
    "(dropped with drop_duplicates=True)",
)
def _duplicate_row(df, s):
    if _ID_CODE in df:  # the codes stand for the ids, one to one, and the keys derive from them
        cols = [c for c in df.columns if c not in ("row", "customer_id", "customer_key")]
    else:
        cols = [c for c in df.columns if c != "row"]
    dup = pd.Series(_duplicated(df, cols), index=df.index)
    return (df[~dup] if s.drop_duplicates else df), int(dup.sum())


#: Columns that tell most lines apart, compared first when looking for duplicate rows.
_DISTINCT_FIRST = (_ID_CODE, "customer_id", "date", "amount", "product", "transaction")


def _duplicated(df: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """``df[cols].duplicated(keep="first")``, comparing every column only on the candidate rows.

    Two equal rows are equal on any subset of the columns: the rows that have a twin on a few
    discriminating columns are the only candidates, and duplicates among them are duplicates overall.
    Rows are compared by the numbers of their values (:func:`_distinct`), combined into one integer.
    """
    def numbers(col, rows):
        """The codes of a column's values (of these rows only for a text column) and their count."""
        column = df[col]
        if col == _ID_CODE or isinstance(column.dtype, pd.CategoricalDtype):
            x = column.to_numpy() if col == _ID_CODE else _distinct(column)[1]
            x = x if rows is None else x[rows]
            return x.astype(np.int64), int(x.max()) + 1 if len(x) else 1
        values, x = _distinct(column if rows is None else column.iloc[rows])
        return x.astype(np.int64), max(len(values), 1)

    def combined(columns, rows=None):
        return pd.Series(combined_codes(numbers(col, rows) for col in columns))

    first = [c for c in _DISTINCT_FIRST if c in cols][:3]
    if not first or len(first) == len(cols):
        return combined(cols).duplicated(keep="first").to_numpy()
    candidates = combined(first).duplicated(keep=False).to_numpy()
    dup = np.zeros(len(df), dtype=bool)
    if candidates.any():
        rows = np.flatnonzero(candidates)
        dup[rows] = combined(cols, rows).duplicated(keep="first").to_numpy()
    return dup


def _keys_of(df) -> pd.Series:
    """The customer keys of a frame being cleaned: its ``customer_key`` column when computed already."""
    return df["customer_key"] if "customer_key" in df else customer_key(df["customer_id"])


@_drop_rule("missing_customer_id", "drop rows whose customer id is empty (or only a prefix like 'BBID_')")
def _missing_customer_id(df, s):
    return (_keys_of(df) != "").to_numpy(dtype=bool), {}


def _required_value_rules(column: str, what: str, parse, how: str):
    """Register the two drop rules of a required value (``date``, ``amount``): empty, then unparseable.

    ``parse(values, settings)`` returns the parsed Series, missing where the text does not parse.
    """

    def missing(df, s):
        values, codes = _distinct(df[column])
        return (values.str.strip() != "").to_numpy(dtype=bool)[codes], {}

    def unparseable(df, s):
        values, codes = _distinct(df[column])
        parsed = _per_row(parse(values, s), codes, df.index)
        return parsed.notna().to_numpy(), {column: parsed}

    _drop_rule(f"missing_{column}", f"drop rows with an empty {what}")(missing)
    _drop_rule(f"unparseable_{column}", how)(unparseable)


_required_value_rules(
    "date", "transaction date", lambda values, s: parse_dates(values, s.date_format),
    "parse the transaction date with the detected or given format; drop rows where it fails",
)
_required_value_rules("amount", "amount", lambda values, s: parse_amounts(values),
                      "parse the amount as a number; drop rows where it is not a finite number")


@_drop_rule(
    "implausible_date",
    "drop rows whose date is outside the plausible window [min_date, max_date] (default: the stretch "
    "of dates with no gap over a year that holds the most rows)",
)
def _implausible_date(df, s):
    keep = np.ones(len(df), dtype=bool)
    if s.min_date is not None:
        keep &= (df["date"] >= s.min_date).to_numpy(dtype=bool)
    if s.max_date is not None:
        keep &= (df["date"] < s.max_date + pd.Timedelta(days=1)).to_numpy(dtype=bool)
    return keep, {}


@_drop_rule(
    "implausible_amount",
    "drop rows whose amount is larger in magnitude than max_amount (default: a million times the "
    "order of magnitude of the median amount)",
)
def _implausible_amount(df, s):
    return (df["amount"].abs() <= s.max_amount).to_numpy(dtype=bool), {}


def _number_rule(column: str, what: str, plural: str):
    """Register the change rule that parses an optional numeric column (``quantity``, ``unit_price``)."""

    def parse(df, s):
        text, codes = _distinct(df[column])
        values = parse_amounts(text)
        failed = values.isna() & (text.str.strip() != "")
        return df.assign(**{column: _per_row(values, codes, df.index)}), _rows_where(failed, codes)

    _rule(f"{column}_unparseable", "change",
          f"parse the {what} as a number; empty or non-numeric {plural} become missing", role=column)(parse)


_number_rule("quantity", "quantity", "quantities")
_number_rule("unit_price", "unit price", "prices")


@_rule(
    "strip_id_prefix",
    "change",
    "customer_key = the id trimmed and without its 'BBID_' style prefix; customer_id keeps the original",
)
def _strip_id_prefix(df, s):
    key = _keys_of(df)
    ids, id_codes = _distinct(df["customer_id"])
    keys, key_codes = _distinct(key)
    key_of_id = np.zeros(len(ids), dtype=np.intp)
    key_of_id[id_codes] = key_codes  # one key per id: every row of an id writes the same code
    changed = pd.Series(_take(keys, key_of_id).to_numpy() != ids.to_numpy())
    return df.assign(customer_key=key), _rows_where(changed, id_codes)


@_rule("dob_placeholder", "change", "DOB placeholders ('NANA', 'NULL', ...) become missing", role="dob")
def _dob_placeholder(df, s):
    text, codes = _distinct(df["dob"])
    placeholder = _upper(text).isin(MISSING_TOKENS)
    return df.assign(dob=_as_column(df["dob"], text.where(~placeholder, ""), codes)), \
        _rows_where(placeholder, codes)


@_rule(
    "dob_unparseable",
    "change",
    "parse the DOB with the detected or given format; other non-empty values become missing",
    role="dob",
)
def _dob_unparseable(df, s):
    text, codes = _distinct(df["dob"])
    parsed = parse_dates(text, s.dob_format)
    failed = parsed.isna() & (text.str.strip() != "")
    return df.assign(dob=_as_column(df["dob"], parsed, codes)), _rows_where(failed, codes)


@_rule(
    "age_out_of_range",
    "change",
    "age in whole years at as_of; ages outside [min_age, max_age] become missing (the DOB is kept)",
    role="dob",
)
def _age_out_of_range(df, s):
    (dob, codes), a = _distinct(df["dob"]), s.as_of  # once per distinct date of birth
    before_birthday = (dob.dt.month > a.month) | ((dob.dt.month == a.month) & (dob.dt.day > a.day))
    age = (a.year - dob.dt.year - before_birthday.astype(float)).where(dob.notna())
    bad = age.notna() & ((age < s.min_age) | (age > s.max_age))
    age = _per_row(age.where(~bad).astype("float64"), codes, df.index)
    return df.assign(age=age), _rows_where(bad, codes)


@_rule(
    "gender",
    "change",
    "gender trimmed and lower-cased; empty or placeholder values become 'unknown'",
    role="gender",
)
def _gender(df, s):
    raw, codes = _distinct(df["gender"])
    out = raw.str.strip().str.lower()
    out = out.where(~((out == "") | out.str.upper().isin(MISSING_TOKENS)), "unknown")
    return df.assign(gender=_as_column(df["gender"], out, codes)), _rows_where(out != raw, codes)


@_rule(
    "pincode_placeholder",
    "change",
    "pin codes that are placeholders (999999, 111111, ...) or not 6 digits become missing",
    role="pincode",
)
def _pincode_placeholder(df, s):
    raw, codes = _distinct(df["pincode"])
    text = raw.str.strip()
    valid = text.map(lambda v: bool(PINCODE.match(v))).astype(bool)
    return df.assign(pincode=_as_column(df["pincode"], text.where(valid), codes)), \
        _rows_where(~valid & (text != ""), codes)


@_rule(
    "nonpromo",
    "change",
    "'NONPROMO' (or a placeholder) means no promotion: code missing, is_promo False; "
    "'LOCALPROMO' and any code mean a promotion, kept as text with leading zeros",
    role="promo_code",
)
def _nonpromo(df, s):
    raw, codes = _distinct(df["promo_code"])
    text = raw.str.strip()
    none = _upper(text).isin(NO_PROMO_TOKENS)
    code = text.where(~none & (text != ""))
    return df.assign(promo_code=_as_column(df["promo_code"], code, codes),
                     is_promo=_per_row(code.notna(), codes, df.index)), _rows_where(none, codes)


def _canonical_set(value: str) -> str:
    parts = {p.strip() for p in value.split(",")}
    return ",".join(sorted(p for p in parts if p and p.upper() not in MISSING_TOKENS))


@_rule(
    "discount_set",
    "change",
    "discount programmes as a set: trimmed, de-duplicated, sorted, comma-joined ('' for none)",
    role="discounts",
)
def _discount_set(df, s):
    raw, codes = _distinct(df["discounts"])
    out = raw.map(_canonical_set).astype(raw.dtype)
    return df.assign(discounts=_as_column(df["discounts"], out, codes)), _rows_where(out != raw, codes)


#: The values of ``line_type``.
LINE_TYPES = ("sale", "zero", "return")


@_rule("zero_price_line", "flag", "lines with amount 0: kept as line_type 'zero', not spend")
def _zero_price_line(df, s):
    zero = (df["amount"] == 0).to_numpy()
    line_type = pd.Categorical.from_codes(zero.astype(np.int8), categories=LINE_TYPES)
    return df.assign(line_type=pd.Series(line_type, index=df.index)), int(zero.sum())


@_rule("return_line", "flag", "lines with a negative amount: kept as line_type 'return', not spend")
def _return_line(df, s):
    ret = (df["amount"] < 0).to_numpy()
    before = df["line_type"].astype(pd.CategoricalDtype(LINE_TYPES)).cat.codes.to_numpy()
    codes = np.where(ret, LINE_TYPES.index("return"), before).astype(np.int8)
    return df.assign(line_type=pd.Series(pd.Categorical.from_codes(codes, categories=LINE_TYPES),
                                         index=df.index)), int(ret.sum())


#: The cleaning rules, in the order they are applied.
RULES: tuple[Rule, ...] = tuple(_REGISTRY)
_DESCRIPTIONS = {r.name: r.description for r in RULES} | EXTRA_REASONS


def rules_table() -> pd.DataFrame:
    """The rules as a table (order, name, kind, role, description), for documentation and notebooks."""
    return pd.DataFrame(
        [(i, r.name, r.kind, r.role or "", r.description) for i, r in enumerate(RULES, 1)],
        columns=["order", "name", "kind", "role", "description"],
    )


# ---------------------------------------------------------------------------------- report
def _add_counts(a: dict, b: dict) -> dict:
    return {k: int(a.get(k, 0)) + int(b.get(k, 0)) for k in list(a) + [k for k in b if k not in a]}


def _same(a, b):
    return a if a == b else None


@dataclass
class CleaningReport:
    """What the cleaner read, kept, dropped, changed and flagged.

    Attributes
    ----------
    rows_read, rows_kept : int
        Data rows in the input (including malformed lines) and rows in the cleaned table.
    rows_dropped : dict of str to int
        Reason (a drop rule, ``malformed_line``, or ``duplicate_row`` with drop_duplicates) -> rows.
    values_changed : dict of str to int
        Change rule -> kept rows whose value the rule changed.
    rows_flagged : dict of str to int
        Flag rule -> rows flagged (``duplicate_row`` counts among rows read; the others among
        rows kept).
    missing_values : dict of str to int
        Optional output column -> kept rows where it is missing (e.g. empty DOBs).
    customers_read, customers_kept : int or None
        Distinct customer keys among the rows read (with a non-empty id) and in the cleaned table.
        None when unknown (see Notes).
    input_encoding, source, as_of : str or None
        Encoding the file was decoded with, its path, the reference date of ages (ISO).
    settings : dict
        The parameters used: ``min_age``, ``max_age``, ``date_format``, ``dob_format``,
        ``drop_duplicates``, and the plausibility bounds applied, given or derived from the data
        (:func:`plausible_bounds`): ``min_date``, ``max_date`` (ISO) and ``max_amount``.
    derived : dict of str to str
        Columns the cleaner computed because the file lacks them: ``{"amount": "quantity *
        unit_price"}`` for a log with quantity and unit price but no line amount.

    Notes
    -----
    Reports add up: ``a + b`` (and ``sum(reports)``) sums every count, so the report of a file
    cleaned in partitions is the sum of the partition reports. Distinct customer counts cannot be
    summed (a customer may appear in two partitions): a report made by the cleaner keeps its sets of
    customer keys in memory, and the sum unions them. A report rebuilt with :meth:`from_dict` has
    no key sets; adding it gives ``customers_read = customers_kept = None`` (count them on the
    cleaned table instead). Text fields are kept when both sides agree, else None; settings
    likewise, else ``{}``.
    """

    rows_read: int = 0
    rows_kept: int = 0
    rows_dropped: dict = field(default_factory=dict)
    values_changed: dict = field(default_factory=dict)
    rows_flagged: dict = field(default_factory=dict)
    missing_values: dict = field(default_factory=dict)
    customers_read: int | None = 0
    customers_kept: int | None = 0
    input_encoding: str | None = None
    source: str | None = None
    as_of: str | None = None
    settings: dict = field(default_factory=dict)
    derived: dict = field(default_factory=dict)
    keys_read: frozenset | None = field(default=frozenset(), repr=False, compare=False)
    keys_kept: frozenset | None = field(default=frozenset(), repr=False, compare=False)

    @property
    def duplicate_rows(self) -> int:
        """Rows equal to an earlier row in every mapped column."""
        return int(self.rows_flagged.get("duplicate_row", 0))

    @property
    def invariant_holds(self) -> bool:
        """``rows_read == rows_kept + sum(rows_dropped)``."""
        return self.rows_read == self.rows_kept + sum(self.rows_dropped.values())

    def check(self) -> "CleaningReport":
        """Raise :class:`~seglib.errors.InputError` unless every row is accounted for; returns self."""
        if not self.invariant_holds:
            raise InputError(
                f"cleaning report of {self.source}: rows_read={self.rows_read} != rows_kept="
                f"{self.rows_kept} + dropped {sum(self.rows_dropped.values())} ({self.rows_dropped})"
            )
        return self

    def __add__(self, other):
        if not isinstance(other, CleaningReport):
            return NotImplemented
        keys = {}
        for name in ("keys_read", "keys_kept"):
            a, b = getattr(self, name), getattr(other, name)
            keys[name] = None if a is None or b is None else a | b
        return CleaningReport(
            rows_read=self.rows_read + other.rows_read,
            rows_kept=self.rows_kept + other.rows_kept,
            rows_dropped=_add_counts(self.rows_dropped, other.rows_dropped),
            values_changed=_add_counts(self.values_changed, other.values_changed),
            rows_flagged=_add_counts(self.rows_flagged, other.rows_flagged),
            missing_values=_add_counts(self.missing_values, other.missing_values),
            customers_read=None if keys["keys_read"] is None else len(keys["keys_read"]),
            customers_kept=None if keys["keys_kept"] is None else len(keys["keys_kept"]),
            input_encoding=_same(self.input_encoding, other.input_encoding),
            source=_same(self.source, other.source),
            as_of=_same(self.as_of, other.as_of),
            settings=self.settings if self.settings == other.settings else {},
            derived=self.derived if self.derived == other.derived else {},
            **keys,
        )

    def __radd__(self, other):
        if other == 0:  # sum(reports) starts from 0
            return self
        return NotImplemented

    def to_dict(self) -> dict:
        """JSON-ready dict (no key sets); ``duplicate_rows`` is added for readers of the file."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("keys_")}
        d = json.loads(json.dumps(d))  # plain copies of the nested dicts
        d["duplicate_rows"] = self.duplicate_rows
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CleaningReport":
        """Rebuild a report from :meth:`to_dict` output (without customer key sets).

        Raises :class:`~seglib.errors.InputError` when counts are missing, not integers, or do not
        add up. Keys it does not know (such as ``duplicate_rows``) are ignored.
        """
        if not isinstance(d, dict) or not all(isinstance(d.get(k), int) for k in ("rows_read", "rows_kept")):
            raise InputError("cleaning report: expected a dict with integer 'rows_read' and 'rows_kept'")
        for name in ("rows_dropped", "values_changed", "rows_flagged", "missing_values"):
            counts = d.get(name, {})
            if not isinstance(counts, dict) or not all(isinstance(v, int) for v in counts.values()):
                raise InputError(f"cleaning report: {name!r} must map names to integer counts")
        names = {f.name for f in fields(cls)} - {"keys_read", "keys_kept"}
        report = cls(**{k: v for k, v in d.items() if k in names}, keys_read=None, keys_kept=None)
        return report.check()

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON, atomically (``cleaning_report.json`` in a run folder)."""
        return write_json(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "CleaningReport":
        """Read a report written by :meth:`to_json`."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read the cleaning report ({exc})") from None
        return cls.from_dict(d)

    def to_frame(self) -> pd.DataFrame:
        """A tidy table: section, name, count, share of rows read, description."""
        n = self.rows_read
        rows = [
            ("rows", "read", n, "data rows in the input"),
            ("rows", "kept", self.rows_kept, "rows in the cleaned table"),
        ]
        sections = [
            ("dropped", self.rows_dropped),
            ("changed", self.values_changed),
            ("flagged", self.rows_flagged),
        ]
        for section, counts in sections:
            rows += [(section, k, v, _DESCRIPTIONS.get(k, "")) for k, v in counts.items()]
        rows += [("missing", k, v, f"kept rows with no {k}") for k, v in self.missing_values.items()]
        rows += [("derived", k, self.rows_kept, f"{k} = {how} (the file has no {k} column)")
                 for k, how in self.derived.items()]
        rows += [
            ("customers", "read", self.customers_read, "distinct customer keys in the input"),
            ("customers", "kept", self.customers_kept, "distinct customer keys in the cleaned table"),
        ]
        out = pd.DataFrame(rows, columns=["section", "name", "count", "description"])
        out["count"] = out["count"].astype("Int64")
        share = out["count"].astype("Float64") / n if n else pd.NA
        out.insert(3, "share", share)
        out.loc[out["section"] == "customers", "share"] = pd.NA
        return out


# ---------------------------------------------------------------------------------- parameters
def check_as_of(as_of) -> pd.Timestamp:
    """Return the reference date ``as_of`` as a midnight, timezone-naive Timestamp.

    Accepts a date, a datetime, a ``numpy.datetime64`` or a string such as ``"2017-07-01"``; anything
    else (``"today"`` included: a run must not depend on the day it runs) raises
    :class:`~seglib.errors.ParameterError`. Shared by the Dask backend and the scoring of new customers.
    """
    return check_date("as_of", as_of)


def check_date(name: str, value) -> pd.Timestamp:
    """A date parameter ``name`` (``as_of``, ``min_date``, ``max_date``) checked as :func:`check_as_of`."""
    ok = isinstance(value, (date, np.datetime64)) or (isinstance(value, str) and re.search(r"\d", value))
    ts = None
    if ok:
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            ts = None
    if ts is None or pd.isna(ts):
        raise ParameterError(f"{name}={value!r} is not a date; give one such as '2017-07-01' (never 'today')")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.normalize()


def check_ages(min_age, max_age) -> tuple[float, float]:
    """Return ``(min_age, max_age)`` as floats; :class:`~seglib.errors.ParameterError` unless both are
    numbers of years >= 0 with ``min_age <= max_age``."""
    min_age = check_float("min_age", min_age, minimum=0)
    max_age = check_float("max_age", max_age, minimum=0)
    if min_age > max_age:
        raise ParameterError(f"min_age={min_age!r} > max_age={max_age!r}; the range must not be empty")
    return float(min_age), float(max_age)


def check_bounds(min_date, max_date, max_amount):
    """Checked plausibility bounds: (Timestamp or None, Timestamp or None, float or None)."""
    lo = None if min_date is None else check_date("min_date", min_date)
    hi = None if max_date is None else check_date("max_date", max_date)
    if lo is not None and hi is not None and lo > hi:
        raise ParameterError(f"min_date={min_date!r} > max_date={max_date!r}; the window must not be empty")
    if max_amount is not None:
        if isinstance(max_amount, (bool, np.bool_)) or not isinstance(max_amount, (int, float, np.integer,
                                                                                   np.floating)) \
                or not 0 < max_amount <= MAX_AMOUNT_CAP:
            raise ParameterError(
                f"max_amount={max_amount!r} is not valid; give a number in (0, {MAX_AMOUNT_CAP:g}], larger "
                "than any real line amount, or None to derive it from the data"
            )
        max_amount = float(max_amount)
    return lo, hi, max_amount


def _check_raw(raw, source: str) -> pd.DataFrame:
    if not isinstance(raw, pd.DataFrame):
        raise ParameterError(
            f"raw must be a pandas DataFrame (see load_transactions); got {type(raw).__name__}"
        )
    derive = "amount" not in raw.columns and all(r in raw.columns for r in AMOUNT_FROM)
    missing = [r for r in REQUIRED_ROLES if r not in raw.columns and not (r == "amount" and derive)]
    if missing:
        found = ", ".join(repr(str(c)) for c in raw.columns[:40])
        raise InputError(
            f"{source}: required role column(s) missing: {', '.join(missing)}; columns found: {found}. "
            "Read files with load_transactions, which maps file columns to roles"
        )
    roles = [r for r in ROLES if r in raw.columns]
    repeated = sorted({str(c) for c in raw.columns[raw.columns.duplicated()]} & set(roles))
    if repeated:
        raise InputError(f"{source}: role column(s) given more than once: {', '.join(repeated)}")
    work = pd.DataFrame({r: as_text(raw[r]).reset_index(drop=True) for r in roles})
    if derive:
        work.insert(2, "amount", _derived_amount(work["quantity"], work["unit_price"]))
    if raw.index.name == "row" and pd.api.types.is_integer_dtype(raw.index.dtype):
        work.insert(0, "row", raw.index.to_numpy(dtype="int64"))
    else:
        work.insert(0, "row", np.arange(1, len(raw) + 1, dtype="int64"))
    return work


def _derived_amount(quantity: pd.Series, unit_price: pd.Series) -> pd.Series:
    """The line amount as text: quantity * unit price; empty when either is empty, else the product
    (``"nan"`` / ``"inf"`` when one is not a finite number, so the amount rules drop it with a reason).
    """
    empty = (quantity.str.strip() == "") | (unit_price.str.strip() == "")
    product = parse_amounts(quantity) * parse_amounts(unit_price)
    text = product.map(lambda v: repr(float(v) + 0.0) if np.isfinite(v) else "nan").astype(str)
    return text.where(~empty, "")


def _source(raw) -> str:
    attrs = raw.attrs if isinstance(raw, pd.DataFrame) else {}
    return str(attrs.get("source") or "input frame")


# ---------------------------------------------------------------------------------- cleaning
def _stats(has_key: np.ndarray, dates: tuple[pd.Series, np.ndarray],
           amounts: tuple[pd.Series, np.ndarray]) -> dict:
    """:func:`plausibility_stats` of rows with these customer keys (``has_key``: a non-empty one), and
    parsed dates and amounts given per distinct text (``(parsed values, codes)``, :func:`_distinct`).

    Computed per (distinct date, distinct amount) pair of the rows: rows counted, smallest magnitudes
    and decades, all exact whatever the order.
    """
    (day_values, day_codes), (amount_values, amount_codes) = dates, amounts
    ok = has_key & day_values.notna().to_numpy()[day_codes] & amount_values.notna().to_numpy()[amount_codes]
    day_codes, amount_codes = day_codes[ok], amount_codes[ok]
    magnitude = amount_values.abs().to_numpy(dtype=float)
    n_days = len(day_values)
    rows = np.bincount(day_codes, minlength=n_days).astype(np.int64)
    smallest = np.full(n_days, np.inf)
    np.minimum.at(smallest, day_codes, magnitude[amount_codes])
    seen = rows > 0
    by_day = pd.DataFrame({"rows": rows[seen], "min_abs_amount": smallest[seen]},
                          index=pd.DatetimeIndex(day_values[seen].dt.normalize().to_numpy(), name="day"))
    counts = np.bincount(amount_codes, minlength=len(amount_values))
    nonzero = (magnitude > 0) & (counts > 0)
    decades = pd.Series(counts[nonzero], index=np.floor(np.log10(magnitude[nonzero])).astype(np.int64))
    return combine_plausibility_stats([{"days": by_day, "decades": decades.groupby(level=0).sum()}])


def plausibility_stats(raw: pd.DataFrame, date_format: str | None = None) -> dict:
    """What :func:`plausible_bounds` needs of a file or partition: small tables that add up exactly.

    Computed on the rows with a customer id, a parseable date and a finite amount.

    Returns
    -------
    dict
        ``"days"``: per day, the rows (``rows``) and the smallest absolute amount (``min_abs_amount``);
        ``"decades"``: rows per order of magnitude ``floor(log10 |amount|)`` of the non-zero amounts.
        Combine the stats of partitions with :func:`combine_plausibility_stats`.
    """
    work = _check_raw(raw, _source(raw))
    fmt = date_format or raw.attrs.get("date_format") or detect_date_format(work["date"])
    dates = _parsed(work["date"], lambda u: parse_dates(u, fmt))
    return _stats(_Ids.of(work["customer_id"]).has_key(), dates, _parsed(work["amount"], parse_amounts))


def _parsed(column: pd.Series, parse) -> tuple[pd.Series, np.ndarray]:
    """``(parse(distinct values), codes)`` of a text column (see :func:`_distinct`)."""
    values, codes = _distinct(column)
    return parse(values), codes


def combine_plausibility_stats(stats) -> dict:
    """Add up :func:`plausibility_stats` of partitions (rows summed, smallest amounts min-ed)."""
    stats = list(stats)
    days = pd.concat([s["days"] for s in stats])
    days = days.groupby(level=0, sort=True).agg({"rows": "sum", "min_abs_amount": "min"})
    days.index = pd.DatetimeIndex(days.index, name="day").astype("datetime64[ns]")
    decades = pd.concat([s["decades"] for s in stats]).groupby(level=0, sort=True).sum().astype(np.int64)
    return {"days": days.astype({"rows": np.int64, "min_abs_amount": float}), "decades": decades}


@dataclass(frozen=True)
class Plausible:
    """Bounds of plausible values (see :func:`plausible_bounds`) and the ``as_of`` they imply."""

    min_date: pd.Timestamp | None
    max_date: pd.Timestamp | None
    max_amount: float
    as_of: pd.Timestamp | None

    def settings(self) -> dict:
        """The bounds as JSON-ready report settings."""
        iso = (lambda d: None if d is None else d.date().isoformat())  # noqa: E731
        return {"min_date": iso(self.min_date), "max_date": iso(self.max_date), "max_amount": self.max_amount}


def _stretch(days: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last day of the stretch (no gap over MAX_GAP_DAYS) holding the most rows (ties: later)."""
    # whole days since 1970 by integer division: differences of ns would overflow over 292 years
    day_numbers = pd.DatetimeIndex(days.index).asi8 // 86_400_000_000_000
    gaps = np.diff(day_numbers) > MAX_GAP_DAYS
    stretch = np.concatenate([[0], np.cumsum(gaps)])
    rows = days["rows"].groupby(stretch).sum()
    best = max(rows.index, key=lambda i: (int(rows[i]), i))
    chosen = days.index[stretch == best]
    return chosen.min(), chosen.max()


def _between(index: pd.DatetimeIndex, lo, hi) -> np.ndarray:
    keep = np.ones(len(index), dtype=bool)
    if lo is not None:
        keep &= np.asarray(index >= lo)
    if hi is not None:
        keep &= np.asarray(index <= hi)
    return keep


def plausible_bounds(stats: dict, *, min_date=None, max_date=None, max_amount=None) -> Plausible:
    """The plausible window of dates and bound on amounts, given or derived from the data's stats.

    Parameters
    ----------
    stats : dict
        :func:`plausibility_stats` of the whole input (or the combined stats of its partitions: both
        backends derive the same bounds).
    min_date, max_date : str or date-like, optional
        The plausible window, inclusive. None derives the bound: the distinct transaction days are
        sorted and cut wherever no transaction happened for more than :data:`MAX_GAP_DAYS` days
        (365); the stretch holding the most rows is kept (ties: the later). Placeholder dates
        (1900-01-01, 1970-01-01) and typos (2099) fall outside it; a log that really pauses for over
        a year keeps only its bigger part: give ``min_date`` to keep the older one too.
    max_amount : float, optional
        Largest plausible absolute line amount. None: ``10 ** (d + 6)`` where ``10 ** d`` is the
        order of magnitude of the median non-zero amount (an amount a million times the typical one
        is a typo in any currency), at most :data:`MAX_AMOUNT_CAP`. Give it when a few lines are
        truly that large (business customers), or lower it to drop obvious test lines.

    Returns
    -------
    Plausible
        The bounds, and ``as_of``: the day after the last day with a row inside both bounds (None
        when no row is).
    """
    days = stats["days"]
    if max_amount is None:
        decades = stats["decades"]
        total = int(decades.sum())
        if total:
            median = int(decades.index[np.searchsorted(decades.cumsum().to_numpy(), total / 2)])
            max_amount = min(10.0 ** (median + AMOUNT_DECADES), MAX_AMOUNT_CAP)
        else:
            max_amount = MAX_AMOUNT_CAP
    max_amount = float(max_amount)
    lo = None if min_date is None else check_date("min_date", min_date)
    hi = None if max_date is None else check_date("max_date", max_date)
    inside = days[_between(days.index, lo, hi)]
    if (lo is None or hi is None) and len(inside):
        first, last = _stretch(inside)
        lo, hi = (first if lo is None else lo), (last if hi is None else hi)
    kept = days[_between(days.index, lo, hi) & (days["min_abs_amount"] <= max_amount).to_numpy()]
    as_of = kept.index.max() + pd.Timedelta(days=1) if len(kept) else None
    return Plausible(lo, hi, max_amount, as_of)


def reference_bounds(stats: dict, source: str, *, as_of=None, min_date=None, max_date=None,
                     max_amount=None) -> tuple[pd.Timestamp, Plausible]:
    """``as_of`` and the plausible bounds of an input, from its :func:`plausibility_stats` (of the whole
    input, or its files' combined with :func:`combine_plausibility_stats`): what both backends clean
    with. A given ``as_of`` or bound is kept; None derives it (:func:`plausible_bounds`). Raises
    :class:`InputError` naming ``source`` when no row can be kept (then no ``as_of`` can be derived), and
    :class:`~seglib.errors.ParameterError` when a given ``as_of`` is not a date (:func:`check_as_of`, which
    also makes it a Timestamp)."""
    as_of = None if as_of is None else check_as_of(as_of)
    bounds = plausible_bounds(stats, min_date=min_date, max_date=max_date, max_amount=max_amount)
    if as_of is None:
        if bounds.as_of is None:
            raise InputError(f"{source}: no row has a customer id, a parseable date and a numeric amount "
                             f"within the plausible bounds ({bounds.settings()})")
        as_of = bounds.as_of
        logger.info("as_of = %s (the day after the last kept transaction of %s)", as_of.date(), source)
    return as_of, bounds


def file_plausibility_stats(path, columns=None, *, date_format: str | None = None,
                            encoding: str | None = None) -> dict:
    """:func:`plausibility_stats` of a file, reading only the roles they need (the required ones and
    those an amount may be derived from): what the Dask backend sums over the files before cleaning."""
    columns = dict(columns or {})
    light = {r: (columns.get(r) if r in REQUIRED_ROLES else None)
             for r in ROLES if r not in REQUIRED_ROLES + AMOUNT_FROM or r in columns}
    for role in AMOUNT_FROM:
        if role in columns:
            light[role] = columns[role]
    raw = load_transactions(path, light, date_format=date_format, encoding=encoding)
    return plausibility_stats(raw, date_format)


def default_as_of(raw: pd.DataFrame, date_format: str | None = None) -> pd.Timestamp | None:
    """The day after the last transaction among rows that will be kept, with the default bounds.

    Never today: the same file always gives the same date. For a frame in partitions, combine the
    partitions' :func:`plausibility_stats` and call :func:`plausible_bounds`. None when no row is valid.
    """
    return plausible_bounds(plausibility_stats(raw, date_format)).as_of


def _column(raw, role: str) -> str:
    """How a role's column is called in the source, for messages."""
    col = (raw.attrs.get("columns") or {}).get(role)
    return f"column {col!r} (role {role})" if col else f"column {role!r}"


def _require_values(raw, work: pd.DataFrame, date_format, source: str, has_key, dates, amounts) -> None:
    """Raise when a required column has no usable value at all (the file cannot be cleaned).

    ``has_key``: whether each row of ``work`` has a customer key; ``dates``, ``amounts``: the parsed
    distinct dates and amounts of ``work`` (each occurs in some row).
    """
    if not has_key.any():
        raise InputError(f"{source}: {_column(raw, 'customer_id')} has no non-empty customer id")
    if not dates.notna().any():
        examples = ", ".join(repr(v) for v in pd.unique(work["date"])[:3])
        how = f"date_format={date_format!r}" if date_format else "any known date format"
        raise InputError(
            f"{source}: {_column(raw, 'date')} has no date parseable with {how} "
            f"(values such as {examples}); give date_format, e.g. '%d/%m/%Y'"
        )
    if not amounts.notna().any():
        examples = ", ".join(repr(v) for v in pd.unique(work["amount"])[:3])
        raise InputError(
            f"{source}: {_column(raw, 'amount')} has no numeric amount (values such as {examples}); "
            "amounts must be plain numbers like 72 or -12.5"
        )


def clean_partition(
    raw_part: pd.DataFrame,
    as_of,
    *,
    min_age: float = DEFAULT_MIN_AGE,
    max_age: float = DEFAULT_MAX_AGE,
    date_format: str | None = None,
    dob_format: str | None = None,
    drop_duplicates: bool = False,
    malformed_rows: int = 0,
    min_date=None,
    max_date=None,
    max_amount: float | None = None,
    progress: bool = False,
) -> tuple[pd.DataFrame, CleaningReport]:
    """Clean one partition of raw transactions, given the global inputs.

    Parameters
    ----------
    raw_part : pandas.DataFrame
        Role-named columns (as from :func:`~seglib.load.load_transactions`); any dtype is turned
        into text first. The ``row`` numbers are taken from the index when it is named ``row``,
        else they are 1..n.
    as_of : str or date-like
        Reference date of ages, the same for every partition (see :func:`default_as_of`).
    min_age, max_age, drop_duplicates, progress
        See :func:`clean_transactions`.
    date_format, dob_format : str, optional
        The formats of the whole file. None uses ``raw_part.attrs`` or detects them on this
        partition, which may differ between partitions: pass them when partitioning.
    malformed_rows : int, default 0
        Lines of this partition's source that the loader could not split (not in ``raw_part``):
        counted in ``rows_read`` and dropped with reason ``malformed_line``. Pass
        ``len(raw.attrs["malformed_rows"])`` of a :func:`~seglib.load.load_transactions` result.
    min_date, max_date, max_amount : optional
        The plausibility bounds of the whole input (:func:`plausible_bounds` of the combined
        :func:`plausibility_stats`), the same for every partition. None: no date bound on that
        side; amounts up to :data:`MAX_AMOUNT_CAP`.

    Returns
    -------
    clean : pandas.DataFrame
        The cleaned rows (the "Cleaned transactions" contract); ``clean.attrs["as_of"]`` is set.
    report : CleaningReport
        Counts for this partition; add the partitions' reports for the whole file. Duplicates are
        found within the partition only.
    """
    return _clean(raw_part, as_of, min_age=min_age, max_age=max_age, date_format=date_format,
                  dob_format=dob_format, drop_duplicates=drop_duplicates, malformed_rows=malformed_rows,
                  min_date=min_date, max_date=max_date, max_amount=max_amount, progress=progress)


def _clean(raw_part, as_of, *, min_age, max_age, date_format, dob_format, drop_duplicates, malformed_rows,
           min_date, max_date, max_amount, progress, work=None, ids=None, coded=None):
    """:func:`clean_partition`; ``work`` (``_check_raw(raw_part)``), ``ids`` (``_Ids`` of its
    ``customer_id``) and ``coded`` (``_coded(work, ids)``) when the caller has them already."""
    source = _source(raw_part)
    with about_source(raw_part.attrs.get("source") if isinstance(raw_part, pd.DataFrame) else None):
        as_of = check_as_of(as_of)
        min_age, max_age = check_ages(min_age, max_age)
        check_date_format("date_format", date_format)
        check_date_format("dob_format", dob_format)
        check_bool("drop_duplicates", drop_duplicates)
        check_int("malformed_rows", malformed_rows, minimum=0)
        min_date, max_date, max_amount = check_bounds(min_date, max_date, max_amount)
    bounds = Plausible(min_date, max_date, MAX_AMOUNT_CAP if max_amount is None else max_amount, None)
    if work is None:
        work = _check_raw(raw_part, source)
    date_format = date_format or raw_part.attrs.get("date_format") or detect_date_format(work["date"])
    if "dob" in work:
        dob_format = dob_format or raw_part.attrs.get("dob_format") or detect_date_format(work["dob"])
    settings = _Settings(as_of, min_age, max_age, date_format, dob_format if "dob" in work else None,
                         bool(drop_duplicates), bounds.min_date, bounds.max_date,
                         bounds.max_amount)  # fmt: skip
    if ids is None:
        ids = _Ids.of(work["customer_id"])
    report = CleaningReport(
        rows_read=len(work) + int(malformed_rows),
        input_encoding=raw_part.attrs.get("input_encoding"),
        source=raw_part.attrs.get("source"),
        as_of=as_of.date().isoformat(),
        settings={
            "min_age": min_age,
            "max_age": max_age,
            "date_format": settings.date_format,
            "dob_format": settings.dob_format,
            "drop_duplicates": settings.drop_duplicates,
            **bounds.settings(),
        },
        derived={"amount": "quantity * unit_price"} if _derives_amount(raw_part) else {},
        keys_read=ids.key_set(),
    )
    # the text columns are factorised once and the keys computed once per id (the rules work on the
    # distinct values); the codes follow the rows kept
    df = _coded(work, ids) if coded is None else coded
    chunks = {col: _chunk_lengths(work[col]) for col in _INPUT_CHUNKS if col in work}
    rules = [r for r in RULES if r.role is None or r.role in work.columns]
    alive = None  # rows kept by the drop rules so far; the frame is filtered once, after the last one
    for rule in tqdm(rules, desc="cleaning", disable=not progress, leave=False):
        if rule.keep is not None:
            keep, values = rule.keep(df, settings)
            keep = np.asarray(keep, dtype=bool)
            dropped = ~keep if alive is None else alive & ~keep
            report.rows_dropped[rule.name] = int(dropped.sum())
            alive = keep if alive is None else alive & keep
            if values:
                df = df.assign(**values)
            continue
        if alive is not None:
            df, alive = (df if alive.all() else df[alive]), None
        n_before = len(df)
        df, count = rule.func(df, settings)
        if rule.kind == "drop" or len(df) != n_before:
            report.rows_dropped[rule.name] = n_before - len(df)
        if rule.kind == "change":
            report.values_changed[rule.name] = count
        elif rule.kind == "flag":
            report.rows_flagged[rule.name] = count
    if alive is not None and not alive.all():
        df = df[alive]
    if malformed_rows:
        report.rows_dropped["malformed_line"] = int(malformed_rows)
    clean = _assemble(df, work.columns, chunks, work["customer_id"])
    clean.attrs["as_of"] = report.as_of
    report.rows_kept = len(clean)
    report.keys_kept = ids.key_set(df[_ID_CODE].to_numpy())
    report.customers_read, report.customers_kept = len(report.keys_read), len(report.keys_kept)
    report.missing_values = {c: int(clean[c].isna().sum()) for c in MISSING_COUNTED if c in clean}
    return clean, report.check()


def _derives_amount(raw) -> bool:
    return "amount" not in raw.columns and all(r in raw.columns for r in AMOUNT_FROM)


def _astype(column: pd.Series, dtype, *, empty_is_missing: bool = False) -> pd.Series:
    """``column.astype(dtype)`` (with ``""`` made missing when ``empty_is_missing``), converted once per
    distinct value of a categorical column (:func:`_coded`) and taken row by row."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        out = column.astype(dtype)
        return out.replace("", pd.NA) if empty_is_missing else out
    values, codes = _distinct(column)
    values = values.astype(dtype)
    if empty_is_missing:
        values = values.replace("", pd.NA)
    return _take(values, codes).set_axis(column.index)


#: Output text columns that keep the Arrow chunks of their input column when no row is dropped, and are
#: one chunk when some are, as when every rule worked on the text itself (``df[alive]`` made one chunk):
#: the Parquet writer falls back from dictionary to plain encoding at a point that depends on the chunks
#: (a column of many distinct values, such as the ids), so the written file stays byte for byte the same.
_INPUT_CHUNKS = ("customer_id", "gender", "pincode", "store", "till", "transaction", "product", "promo_code")


def _chunk_lengths(column: pd.Series) -> list[int] | None:
    """The lengths of the Arrow chunks of a text column (None when it is not Arrow-backed)."""
    data = column.array.__arrow_array__() if hasattr(column.array, "__arrow_array__") else None
    return None if data is None else [len(chunk) for chunk in getattr(data, "chunks", [data])]


def _rechunk(column: pd.Series, lengths) -> pd.Series:
    """``column`` (Arrow-backed text) with its data cut into chunks of these lengths (no copy)."""
    import pyarrow as pa

    data = column.array.__arrow_array__()
    data = data.chunk(0) if data.num_chunks == 1 else data.combine_chunks()
    offsets = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    pieces = [data.slice(a, b - a) for a, b in zip(offsets[:-1], offsets[1:])]
    chunked = pa.chunked_array(pieces, type=data.type)
    return pd.Series(pd.arrays.ArrowStringArray(chunked, dtype=column.dtype), index=column.index,
                     name=column.name)


def _assemble(df: pd.DataFrame, roles, chunks=None, ids=None) -> pd.DataFrame:
    """The output columns of the contract, in order, with their dtypes.

    ``chunks``: column -> the chunk lengths of its input text for :data:`_INPUT_CHUNKS` (used when no
    row was dropped; else the column is one chunk). ``ids``: the input's customer ids (text), whose
    kept rows are the output's ``customer_id`` (no rule changes them).
    """
    string = pd.StringDtype()
    if ids is not None:
        mask = np.zeros(len(ids), dtype=bool)
        mask[df.index.to_numpy()] = True
        customer_id = ids[mask].set_axis(df.index).astype(string)
        if len(df) < len(ids) and _chunk_lengths(customer_id) is not None:  # as df[alive] gave: one chunk
            customer_id = _rechunk(customer_id, [len(df)])
    else:
        customer_id = _astype(df["customer_id"], string)
    out = {
        "row": df["row"].astype("int64"),
        "customer_id": customer_id,
        "customer_key": _astype(df["customer_key"], string),
        "date": df["date"].astype("datetime64[ns]"),
        "amount": df["amount"].astype("float64"),
        "line_type": _astype(df["line_type"], string),
    }
    if "dob" in roles:
        out["dob"] = _astype(df["dob"], "datetime64[ns]")
        out["age"] = df["age"].astype("float64")
    if "gender" in roles:
        out["gender"] = _astype(df["gender"], string)
    if "pincode" in roles:
        out["pincode"] = _astype(df["pincode"], string)
    for role in ("store", "till", "transaction", "product"):
        if role in roles:
            out[role] = _astype(df[role], string, empty_is_missing=True)
    if "promo_code" in roles:
        out["promo_code"] = _astype(df["promo_code"], string)
        out["is_promo"] = df["is_promo"].astype(bool)
    if "discounts" in roles:
        out["discounts"] = _astype(df["discounts"], string)
    for role in AMOUNT_FROM:
        if role in roles:
            out[role] = df[role].astype("float64")
    for col, lengths in (chunks or {}).items():  # no row dropped: the input's chunks, as before
        if (col in out and lengths is not None and len(lengths) > 1 and sum(lengths) == len(df)
                and _chunk_lengths(out[col]) == [len(df)]):
            out[col] = _rechunk(out[col], lengths)
    return pd.DataFrame(out).reset_index(drop=True)


def clean_transactions(
    raw: pd.DataFrame,
    *,
    as_of=None,
    min_age: float = DEFAULT_MIN_AGE,
    max_age: float = DEFAULT_MAX_AGE,
    date_format: str | None = None,
    dob_format: str | None = None,
    drop_duplicates: bool = False,
    min_date=None,
    max_date=None,
    max_amount: float | None = None,
    progress: bool = False,
) -> tuple[pd.DataFrame, CleaningReport]:
    """Clean raw transactions with :data:`RULES`; every row is kept, or dropped with a reason.

    Parameters
    ----------
    raw : pandas.DataFrame
        Role-named columns, as returned by :func:`~seglib.load.load_transactions` (its ``attrs``
        give the source, encoding, date formats and malformed lines).
    as_of : str or date-like, optional
        Reference date of ages. None (default) uses the day after the last transaction that is
        kept (dates outside the plausible window do not count), so a file always gives the same
        ages. Give a date to compare files cut at different times on the same footing.
    min_age, max_age : float, default 15 and 99
        Plausible age range in whole years, inclusive; ages outside it become missing (the DOB is
        kept). Lower ``min_age`` only for data where children hold loyalty cards.
    date_format, dob_format : str, optional
        strftime formats; None uses ``raw.attrs`` (set by the loader) or detects them.
    drop_duplicates : bool, default False
        Exact duplicates are always counted (``report.duplicate_rows``); True also drops them
        (reason ``duplicate_row``). Leave False when identical lines can be genuine (two packs of
        the same product bought in one transaction).
    min_date, max_date : str or date-like, optional
        Plausible window of transaction dates, inclusive; rows outside are dropped
        (``implausible_date``). None derives each side from the data (see :func:`plausible_bounds`:
        the longest-running stretch of dates without a gap of over a year).
    max_amount : float, optional
        Largest plausible absolute line amount; rows beyond are dropped (``implausible_amount``).
        None: a million times the order of magnitude of the median amount (see
        :func:`plausible_bounds`).
    progress : bool, default False
        Show a progress bar over the rules.

    Returns
    -------
    clean : pandas.DataFrame
        The "Cleaned transactions" table of ``DEVELOPERS.md``; ``clean.attrs["as_of"]`` is set.
    report : CleaningReport

    Raises
    ------
    InputError
        A required column is absent or has no usable value at all (no parseable date, no numeric
        amount, no customer id). Rows where only *some* values are bad are dropped and counted.
    ParameterError
        An invalid ``as_of``, age range, format or flag.
    """
    source = _source(raw)
    with about_source(raw.attrs.get("source") if isinstance(raw, pd.DataFrame) else None):
        check_date_format("date_format", date_format)
        if as_of is not None:
            check_as_of(as_of)
        check_ages(min_age, max_age)
        min_date, max_date, max_amount = check_bounds(min_date, max_date, max_amount)
    work = _check_raw(raw, source)
    if len(work) == 0:
        raise InputError(f"{source}: no data rows to clean")
    date_format = date_format or raw.attrs.get("date_format") or detect_date_format(work["date"])
    ids = _Ids.of(work["customer_id"])
    coded = _coded(work, ids)
    dates = _parsed(coded["date"], lambda u: parse_dates(u, date_format))
    amounts = _parsed(coded["amount"], parse_amounts)
    has_key = ids.has_key()
    _require_values(raw, work, date_format, source, has_key, dates[0], amounts[0])
    as_of, bounds = reference_bounds(_stats(has_key, dates, amounts), source, as_of=as_of,
                                     min_date=min_date, max_date=max_date, max_amount=max_amount)
    del dates, amounts
    clean, report = _clean(
        raw,
        as_of,
        min_age=min_age,
        max_age=max_age,
        date_format=date_format,
        dob_format=dob_format,
        drop_duplicates=drop_duplicates,
        malformed_rows=len(raw.attrs.get("malformed_rows") or []),
        min_date=bounds.min_date,
        max_date=bounds.max_date,
        max_amount=bounds.max_amount,
        progress=progress,
        work=work,
        ids=ids,
        coded=coded,
    )
    dropped = {k: v for k, v in report.rows_dropped.items() if v}
    logger.info(
        "cleaned %s: %d rows read, %d kept, dropped %s",
        source,
        report.rows_read,
        report.rows_kept,
        dropped or "none",
    )
    return clean, report.check()


def clean_file(
    path: str | os.PathLike,
    columns=None,
    *,
    date_format: str | None = None,
    dob_format: str | None = None,
    encoding: str | None = None,
    **options,
) -> tuple[pd.DataFrame, CleaningReport]:
    """Load a file and clean it: :func:`~seglib.load.load_transactions`, then :func:`clean_transactions`.

    Parameters
    ----------
    path, columns, date_format, dob_format, encoding
        See :func:`~seglib.load.load_transactions` (the formats are detected when None).
    **options
        ``as_of``, ``min_age``, ``max_age``, ``drop_duplicates``, ``min_date``, ``max_date``,
        ``max_amount``, ``progress``: see :func:`clean_transactions` (an unknown name is a TypeError
        there, before the file is read).

    Returns
    -------
    clean : pandas.DataFrame
    report : CleaningReport
        Its ``source`` and ``input_encoding`` come from the file; ``malformed_line`` counts the lines
        the loader could not split.
    """
    inspect.signature(clean_transactions).bind(None, **options)  # a misspelt option fails before any work
    raw = load_transactions(path, columns, date_format=date_format, dob_format=dob_format, encoding=encoding)
    return clean_transactions(raw, **options)

