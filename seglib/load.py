"""Reading transaction files into a frame of role-named text columns (step 01).

seglib does not care what a file calls its columns: it works with *roles*. Three are required
(``customer_id``, ``date``, ``amount``); the others are optional and the features that need them are
simply not built when they are absent. A file without a line amount but with ``quantity`` and
``unit_price`` is accepted too: the cleaner derives the amount as their product.
``columns={"customer_id": "cust", ...}`` maps roles to a file's column names; roles not given fall
back to :data:`DEFAULT_COLUMNS` (the original schema) when the file has that column, and a role
mapped to ``None`` is disabled.

:func:`load_transactions` reads CSV (plain or gzip, by suffix or magic bytes) and Parquet. Every
value is kept as text, exactly as in the file (``NANA``, ``NONPROMO`` and the leading zeros of promo
codes survive); :mod:`seglib.clean` turns the text into typed columns, one named rule at a time.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import glob
import gzip
import io
import logging
import math
import os
import warnings
import zlib
from collections.abc import Mapping
from contextlib import contextmanager
from datetime import date, datetime, time
from pathlib import Path

import numpy as np
import pandas as pd

from seglib._files import release_memory
from seglib.errors import InputError, ParameterError, check_option

__all__ = [
    "read_header",
    "ROLES",
    "REQUIRED_ROLES",
    "AMOUNT_FROM",
    "DEFAULT_COLUMNS",
    "DATE_FORMATS",
    "load_transactions",
    "resolve_columns",
    "guess_columns",
    "detect_date_format",
    "distinct_counts",
    "parse_dates",
    "by_value",
    "combined_codes",
    "about_source",
    "as_text",
    "check_columns",
    "check_date_format",
]

logger = logging.getLogger(__name__)

#: Every role seglib knows, in the order of the cleaned table.
ROLES = (
    "customer_id",
    "date",
    "amount",
    "dob",
    "gender",
    "pincode",
    "store",
    "till",
    "transaction",
    "promo_code",
    "product",
    "discounts",
    "quantity",
    "unit_price",
)
#: Roles a file must provide; a row lacking one of them is dropped by the cleaner. ``amount`` may be
#: replaced by the pair :data:`AMOUNT_FROM` (the amount is then their product).
REQUIRED_ROLES = ("customer_id", "date", "amount")
#: Roles whose product is the line amount when a file has no ``amount`` column.
AMOUNT_FROM = ("quantity", "unit_price")
#: Role -> column name of the original schema (the default mapping). ``quantity`` and ``unit_price``
#: are not in it: map them explicitly.
DEFAULT_COLUMNS = {
    "customer_id": "customerID",
    "date": "transactionDate",
    "amount": "sale_price_after_promo",
    "dob": "DOB",
    "gender": "Gender",
    "pincode": "PinCode",
    "store": "store_code",
    "till": "till_no",
    "transaction": "transaction_number_by_till",
    "promo_code": "promo_code",
    "product": "product_code",
    "discounts": "discountUsed",
}

#: Candidate date formats, in tie-break order: ISO first, then day-first, then month-first.
DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M:%S",
    "%d/%m/%Y",
    "%d-%m-%Y",
    "%d.%m.%Y",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d-%m-%Y %H:%M:%S",
    "%d-%m-%Y %H:%M",
    "%d.%m.%Y %H:%M",
    "%m/%d/%Y",
    "%m-%d-%Y",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m-%d-%Y %H:%M:%S",
    "%Y%m%d",
)
#: Distinct values looked at when detecting a date format (the first ones, in file order).
DETECT_SAMPLE = 10_000
#: Column separators recognised in the header line; ties go to the comma.
DELIMITERS = (",", ";", "\t", "|")

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_ZIP_MAGIC = b"PK\x03\x04"
_ENCODINGS = ("utf-8-sig", "latin-1")
#: File suffixes read when ``data`` is a folder (:func:`data_files`).
DATA_SUFFIXES = (".csv", ".gz", ".parquet", ".pq")
# the datetime64[ns] range: dates outside it count as unparseable
_TS_MIN, _TS_MAX = pd.Timestamp.min.ceil("D"), pd.Timestamp.max.floor("D")


def data_files(data) -> list[Path]:
    """The input files of ``data``: a file, a folder, a glob pattern, or a list of files.

    A folder gives its files with a data suffix (:data:`DATA_SUFFIXES`, hidden files skipped), so it
    must hold transaction files only (``seglib.synthetic.write_parts`` also writes ``truth.csv``: use a
    glob such as ``"parts/part-*.csv"`` there). Files are sorted by name; the first one sets the date
    formats and the columns every other file must have.

    Raises
    ------
    InputError
        Nothing matches, a listed file is missing, or a folder holds no data file.
    """
    if isinstance(data, (list, tuple)):
        files = [Path(p).expanduser() for p in data]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise InputError(f"file(s) not found: {', '.join(missing[:5])}")
    elif isinstance(data, (str, os.PathLike)):
        path = Path(data).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir()
                           if p.is_file() and not p.name.startswith((".", "_")) and p.suffix in DATA_SUFFIXES)
            if not files:
                raise InputError(f"{path}: the folder holds no data file ({', '.join(DATA_SUFFIXES)})")
        elif path.is_file():
            files = [path]
        else:
            files = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
            if not files:
                raise InputError(f"{data}: no file or folder of that name, and no file matches it as a "
                                 "glob pattern (e.g. 'logs/part-*.csv')")
    else:
        raise ParameterError(f"data={data!r} is not valid; give a file, a folder, a glob pattern or a list "
                             "of files")
    if not files:
        raise InputError("data: the list of files is empty")
    return files


@contextmanager
def about_source(source):
    """Context manager: prefix the message of a :class:`ParameterError` raised inside with ``source``.

    ``source`` is a file name (nothing is prefixed when it is empty), so a bad setting met while
    reading a file names the file: ``with about_source("tx.csv"): ...``. Shared by :mod:`seglib.clean`.
    """
    try:
        yield
    except ParameterError as exc:
        if not source:
            raise
        raise ParameterError(f"{source}: {exc}") from None


# ---------------------------------------------------------------------------------- roles
def check_columns(columns) -> dict:
    """Validate ``columns`` (role -> column name, or None to disable an optional role); return a plain dict.

    :class:`ParameterError` names the unknown role (listing the valid ones) or the bad column name.
    ``None`` gives ``{}`` (the original schema). The runner calls it before any work.
    """
    if columns is None:
        return {}
    if not isinstance(columns, Mapping):
        raise ParameterError(
            f"columns must be a mapping of role -> column name, e.g. {{'customer_id': 'cust'}}; "
            f"got {type(columns).__name__}"
        )
    out = {}
    for role, col in columns.items():
        check_option("columns role", role, ROLES)
        if col is None:
            if role in REQUIRED_ROLES:
                raise ParameterError(
                    f"columns[{role!r}]=None: the role {role!r} is required and cannot be disabled; "
                    f"required roles: {', '.join(REQUIRED_ROLES)}"
                )
        elif not isinstance(col, str) or not col.strip():
            raise ParameterError(
                f"columns[{role!r}]={col!r} is not valid; give a column name (str) or None to disable"
            )
        out[role] = None if col is None else col.strip()
    return out


def _suggest(name: str, found: list[str]) -> str:
    lower = {c.lower(): c for c in found}
    close = difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(lower[c]) for c in close)}?)" if close else ""


def resolve_columns(found, columns=None, *, source: str = "input") -> dict[str, str]:
    """Map roles to the columns of a file.

    Parameters
    ----------
    found : list of str
        Column names present in the file.
    columns : mapping of str to str or None, optional
        Role -> column name. Overrides :data:`DEFAULT_COLUMNS` for the roles it names; ``None``
        disables an optional role. Roles not named use their default column when the file has it.
    source : str
        Name of the file, for error messages.

    Returns
    -------
    dict
        Role -> column name, for every enabled role present in the file, in :data:`ROLES` order.
        ``amount`` may be absent when ``quantity`` and ``unit_price`` are both present.

    Raises
    ------
    ParameterError
        An unknown role name, a required role mapped to None, a non-string column name.
    InputError
        A required role's column, or an explicitly mapped column, is not in the file. The message
        lists the columns found and suggests close matches.
    """
    found = [str(c) for c in found]
    columns = check_columns(columns)
    mapping, problems = {}, []
    for role in ROLES:
        explicit = role in columns
        col = columns[role] if explicit else DEFAULT_COLUMNS.get(role)
        if col is None:
            continue
        if col in found:
            mapping[role] = col
        elif explicit or role in REQUIRED_ROLES:
            problems.append((role, f"column {col!r} for role {role!r} not found{_suggest(col, found)}"))
    if "amount" not in columns and all(r in mapping for r in AMOUNT_FROM):
        # no amount column, but quantity and unit price: the cleaner derives the amount
        problems = [(r, p) for r, p in problems if r != "amount"]
    elif "amount" not in mapping and any(r == "amount" for r, _ in problems):
        problems = [(r, p + (" (or map both quantity and unit_price: the amount is then their product)"
                             if r == "amount" else "")) for r, p in problems]
    problems = [p for _, p in problems]
    if problems:
        shown = ", ".join(repr(c) for c in found[:40]) + (", ..." if len(found) > 40 else "")
        hint = ""
        if len(found) == 1 and any(d in found[0] for d in ";\t|,"):
            hint = "; the header has a single column: is the separator unusual or the header quoted?"
        raise InputError(
            f"{source}: {'; '.join(problems)}. Columns found: {shown}{hint}. "
            f"Map your columns with columns={{role: column}}, roles: {', '.join(ROLES)}"
        )
    return mapping


#: Other usual names of a role's column (compared without case, spaces, ``_`` or ``-``), for
#: :func:`guess_columns`. The default column of each role is always tried first.
ROLE_SYNONYMS = {
    "customer_id": ("customer", "customer id", "customer_no", "cust_id", "client_id", "member_id",
                    "loyalty_id", "card_id"),
    "date": ("date", "transaction_date", "order_date", "invoice_date", "purchase_date", "sale_date",
             "timestamp"),
    "amount": ("amount", "sales", "sale_amount", "revenue", "total", "line_total", "net_amount",
               "spend", "value", "sale_price"),
    "dob": ("date_of_birth", "birth_date", "birthdate", "birthday"),
    "gender": ("sex",),
    "pincode": ("pin", "postcode", "post_code", "postal_code", "zip", "zipcode", "zip_code"),
    "store": ("store", "store_id", "shop", "shop_id", "branch"),
    "till": ("till", "register", "pos", "checkout"),
    "transaction": ("transaction", "transaction_id", "receipt", "receipt_id", "invoice", "invoice_no",
                    "order_id", "basket_id"),
    "promo_code": ("promo", "promotion", "coupon", "coupon_code"),
    "product": ("product", "product_id", "sku", "item", "item_id", "stockcode", "article"),
    "discounts": ("discount", "discounts", "discount_used", "programme", "program"),
    "quantity": ("quantity", "qty", "units", "item_count", "number_of_items"),
    "unit_price": ("unit_price", "unitprice", "price_per_unit", "price", "item_price"),
}


def _key(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def guess_columns(found) -> dict[str, str | None]:
    """seglib's guess of the column of each role, for a person to confirm (the app's drop-downs).

    Each role takes, in this order: its default column (:data:`DEFAULT_COLUMNS`) when the file has
    it; else the first column whose name equals the default or one of :data:`ROLE_SYNONYMS` once
    case, spaces, ``_`` and ``-`` are ignored. A column serves one role at most; roles are guessed
    in :data:`ROLES` order. The guess is a suggestion: pass the confirmed mapping as ``columns=``
    to :func:`load_transactions`, which checks it.

    Parameters
    ----------
    found : list of str
        Column names of the file (:func:`read_header`).

    Returns
    -------
    dict
        Role -> column name, or None when no column looks like the role; every role of :data:`ROLES`.
    """
    found = [str(c) for c in found]
    by_key: dict[str, str] = {}
    for col in found:
        by_key.setdefault(_key(col), col)
    guess: dict[str, str | None] = {}
    used: set[str] = set()
    for role in ROLES:
        default = DEFAULT_COLUMNS.get(role)
        choice = default if default in found else None
        if choice is None:
            for name in (default or "", role, *ROLE_SYNONYMS.get(role, ())):
                col = by_key.get(_key(name))
                if name and col is not None and col not in used:
                    choice = col
                    break
        if choice in used:
            choice = None
        guess[role] = choice
        if choice is not None:
            used.add(choice)
    return guess


# ---------------------------------------------------------------------------------- dates
def check_date_format(name: str, fmt) -> None:
    """Raise :class:`ParameterError` unless ``fmt`` is None or a usable strftime format (``"%d/%m/%Y"``).

    ``name`` is the parameter (``date_format`` or ``dob_format``) named in the message.
    """
    if fmt is None:
        return
    if not isinstance(fmt, str) or not fmt.strip():
        raise ParameterError(f"{name}={fmt!r} is not valid; give a strftime format such as '%d/%m/%Y'")
    try:
        pd.to_datetime(pd.Series(["2000-01-02"]), format=fmt, errors="coerce")
    except (ValueError, TypeError) as exc:
        raise ParameterError(
            f"{name}={fmt!r} is not a valid strftime format ({exc}); e.g. '%Y-%m-%d' or '%d/%m/%Y'"
        ) from None


def by_value(values: pd.Series, func):
    """``func(values)`` computed once per distinct value: fast when values repeat (ids, dates, codes).

    ``func`` takes and returns a Series (of the distinct values); the result has ``values``' index.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    per_value = func(pd.Series(uniques, dtype=values.dtype))
    return pd.Series(per_value.to_numpy()[codes], index=values.index, dtype=per_value.dtype,
                     name=values.name)


def combined_codes(pairs, *, sort: bool = False) -> np.ndarray:
    """One int64 number per row for the combination of its integer codes: ``pairs`` yields
    ``(codes, size)`` per column, codes in ``[0, size)`` (a generator keeps one column in memory at a
    time). Equal numbers for equal combinations and, with ``sort=True``, numbers in the lexicographic
    order of the codes. Combinations are renumbered (``pd.factorize``) before a number would reach
    2**62, so any number of columns fits."""
    key, span = None, 1
    for c, m in pairs:
        c, m = np.asarray(c, dtype=np.int64), max(int(m), 1)
        if key is None:
            key, span = c, m
            continue
        if span * m >= 2**62:  # renumber the combinations so far (one to one, order kept if sort)
            key, uniques = pd.factorize(key, sort=sort)
            span = len(uniques)
        key, span = key * m + c, span * m
    if key is None:
        raise ValueError("combined_codes: no column")
    return key


def _digits_only(text: pd.Series) -> pd.Series:
    """Trimmed text; values without a digit become NA (never parsed)."""
    text = text.str.strip()
    return text.where(text.str.contains(r"\d", regex=True))


def _to_datetime(text: pd.Series, fmt: str) -> pd.Series:
    parsed = pd.to_datetime(text, format=fmt, errors="coerce")
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.where((parsed >= _TS_MIN) & (parsed <= _TS_MAX)).astype("datetime64[ns]")


def parse_dates(values: pd.Series, fmt: str | None) -> pd.Series:
    """Parse text to ``datetime64[ns]``; anything that does not match ``fmt`` becomes NaT.

    Values without a digit are never parsed (so ``"now"`` or ``"today"`` can never become the
    current date), and dates outside the ``datetime64[ns]`` range (1677-2262) are NaT. With
    ``fmt=None`` every value is NaT.
    """
    text = as_text(values)
    if fmt is None or len(text) == 0:
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    return by_value(text, lambda u: _to_datetime(_digits_only(u), fmt))


def distinct_counts(values: pd.Series) -> pd.Series:
    """How many rows hold each distinct non-empty trimmed value, in order of first appearance.

    ``text[text != ""].value_counts(sort=False)`` of the trimmed text of ``values``, computed on the
    distinct values: each is trimmed once, and values that differ only by surrounding spaces are
    counted together (at the first one's place). The index holds the values (text), the counts are
    int64.
    """
    text = as_text(values)
    codes, uniques = pd.factorize(text, use_na_sentinel=False)
    counts = np.bincount(codes, minlength=len(uniques)).astype(np.int64)
    trimmed = pd.Series(uniques, dtype=text.dtype).str.strip()
    # the distinct values are in order of first appearance, so the first one trimming to a value is
    # that value's first appearance
    tcodes, tuniques = pd.factorize(trimmed, use_na_sentinel=False)
    totals = np.zeros(len(tuniques), dtype=np.int64)
    np.add.at(totals, tcodes, counts)
    out = pd.Series(totals, index=pd.Index(tuniques, dtype=text.dtype), name="count")
    return out[out.index != ""]


#: Distinct values parsed first when trying a format (then this many times more, and so on): a format
#: that cannot win any more is abandoned after its first values.
_DETECT_STEP = 64


def detect_date_format(values: pd.Series, formats=DATE_FORMATS) -> str | None:
    """Return the format of ``formats`` that parses the most non-empty values, or None.

    Only the first :data:`DETECT_SAMPLE` distinct values (in order of appearance) are tried, each
    weighted by how often it occurs. Ties go to the earlier format (ISO, then day-first, then
    month-first), so ``01/02/2016`` alone reads as 1 February. Pass the format explicitly when a
    file is month-first and has no day above 12.

    Each format parses the sample in growing slices and stops as soon as even parsing every value
    left could not beat the best format so far: the choice is that of parsing everything (a value
    parses or not on its own), at the cost of about one full parse when one format fits.
    """
    counts = distinct_counts(values).iloc[:DETECT_SAMPLE]
    if counts.empty:
        return None
    sample = _digits_only(pd.Series(counts.index, dtype=counts.index.dtype))
    weights = counts.to_numpy()
    ends, end = [], _DETECT_STEP
    while end < len(sample):
        ends.append(end)
        end *= 16
    ends.append(len(sample))
    best, best_n = None, 0
    for fmt in formats:
        n, left, start = 0, int(weights.sum()), 0
        for end in ends:
            w = weights[start:end]
            n += int(w[_to_datetime(sample.iloc[start:end], fmt).notna().to_numpy()].sum())
            left -= int(w.sum())
            start = end
            if n + left <= best_n:
                break  # cannot parse more than the best format: it would lose the tie
        if n > best_n:
            best, best_n = fmt, n
    return best


# ---------------------------------------------------------------------------------- text
def _value_text(v) -> str:
    """One cell as text: missing -> "", integral floats without ".0", dates in ISO."""
    if v is None or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return ""
        return str(int(v)) if v.is_integer() and abs(v) < 2**63 else repr(v)
    if isinstance(v, np.datetime64):
        text = "" if np.isnat(v) else np.datetime_as_string(v, unit="s").replace("T", " ")
        return text.removesuffix(" 00:00:00")
    if isinstance(v, datetime):
        midnight = v.time() == time(0) and v.tzinfo is None
        return v.date().isoformat() if midnight else v.isoformat(sep=" ")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return str(v)


def as_text(s: pd.Series) -> pd.Series:
    """A column as text (pandas ``str``), missing cells as ``""``; any dtype is accepted.

    Dates become ``YYYY-MM-DD`` (with the time when any value has one); numbers their shortest text.
    Used by the cleaning rules on columns that a Parquet file may hold typed.
    """
    if pd.api.types.is_string_dtype(s.dtype) and not pd.api.types.is_object_dtype(s.dtype):
        return s.fillna("").astype(str)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        fmt = "%Y-%m-%d" if bool((s.dropna() == s.dropna().dt.normalize()).all()) else "%Y-%m-%d %H:%M:%S"
        return s.dt.strftime(fmt).fillna("").astype(str)
    return s.astype(object).map(_value_text).astype(str)


# ---------------------------------------------------------------------------------- reading
def _check_encoding(encoding) -> str | None:
    if encoding is None:
        return None
    if not isinstance(encoding, str):
        raise ParameterError(f"encoding={encoding!r} is not valid; give a codec name such as 'utf-8'")
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ParameterError(
            f"encoding={encoding!r} is not a known codec; e.g. 'utf-8', 'latin-1', 'cp1252', 'utf-16'"
        ) from None


def _file_kind(path: Path, head: bytes) -> str:
    suffix = path.suffix.lower()
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    if suffix in (".parquet", ".pq"):
        raise InputError(f"{path}: not a Parquet file (no 'PAR1' magic bytes)")
    if suffix == ".gz":
        raise InputError(f"{path}: not a gzip file (no gzip magic bytes)")
    if head.startswith(_ZIP_MAGIC):
        raise InputError(
            f"{path}: is a zip archive (an Excel .xlsx?); seglib reads CSV, gzip CSV and Parquet: "
            "export or unzip it to CSV"
        )
    return "csv"


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
    except Exception:  # unreadable: pandas below says why
        names = []
    _check_unique_header(path, names)
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types (ArrowInvalid, OSError, ...)
        raise InputError(f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})") from None
    if len(df.columns) == 0:
        raise InputError(f"{path}: the file is empty (no columns)")
    df.columns = [str(c) for c in df.columns]
    return df.reset_index(drop=True)  # values become text once the roles are known


def _head_text(path: Path, compression: str | None, encoding: str, nbytes: int = 65536) -> tuple[bytes, str]:
    opener = gzip.open if compression == "gzip" else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(nbytes)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read the file ({exc})") from None
    return head, head.decode(encoding, errors="replace")


def _check_unique_header(path, names) -> None:
    """Raise :class:`InputError` naming the first column name the header has more than once.

    pandas would rename the second ``amount`` to ``amount.1`` silently; which one holds the data
    the user means cannot be guessed.
    """
    stripped = [str(c).strip().lstrip("\ufeff") for c in names]
    seen: dict[str, int] = {}
    for pos, name in enumerate(stripped, 1):
        if name in seen:
            raise InputError(
                f"{path}: the header has the column name {name!r} more than once (columns {seen[name]} "
                f"and {pos}); rename one of them so that every column name is unique"
            )
        seen[name] = pos


def _sniff_delimiter(text: str) -> str:
    header = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: (counts[d], d == ","))
    return best if counts[best] > 0 else ","


def _read_csv(path: Path, compression: str | None, encoding: str | None, request=None):
    """Read a CSV as text; returns (frame, encoding used, malformed data-row numbers, separator).

    ``request`` (checked ``columns``): when given, the fast reader converts only the columns it maps
    (the others are parsed, never held); the frame may then lack unmapped columns.
    """
    head, text = _head_text(path, compression, encoding or "utf-8")
    if not text.strip().strip("\ufeff"):
        raise InputError(f"{path}: the file is empty")
    if encoding is None and b"\x00" in head:
        bom16 = head.startswith((b"\xff\xfe", b"\xfe\xff"))
        why = "it starts with a UTF-16 byte-order mark" if bom16 else "it has NUL bytes: binary or UTF-16/32?"
        raise InputError(
            f"{path}: unreadable encoding: not UTF-8 or Latin-1 text ({why}); "
            "pass encoding='utf-16' (or the right codec) if it is text"
        )
    sep = _sniff_delimiter(text)
    try:
        header = next(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), delimiter=sep), [])
    except csv.Error:
        header = []  # not a readable CSV: parsing says why
    _check_unique_header(path, header)
    keep = None
    if request is not None:
        try:
            keep = set(resolve_columns([c.strip().lstrip("\ufeff") for c in header], request).values())
        except InputError:
            keep = None  # load_transactions says what is missing, on the columns read
    tried = [encoding] if encoding else list(_ENCODINGS)
    for enc in tried:
        try:
            df, malformed = _parse_csv(path, compression, enc, sep, keep)
        except UnicodeError:
            logger.info("%s is not %s; trying the next encoding", path, enc)
            continue
        used = "utf-8" if enc == "utf-8-sig" else enc
        if used != "utf-8":
            logger.info("%s decoded as %s", path, used)
        return df, used, malformed, sep
    raise InputError(f"{path}: unreadable encoding: cannot be decoded as {' or '.join(tried)}")


def _has_byte(path: Path, compression, byte: bytes, block: int = 1 << 24) -> bool:
    """Whether the (decompressed) file contains ``byte``, read in blocks (no copy of the file)."""
    opener = gzip.open if compression == "gzip" else open
    with opener(path, "rb") as fh:
        return any(byte in chunk for chunk in iter(lambda: fh.read(block), b""))


def _parse_csv_arrow(path: Path, compression, enc: str, sep: str, keep=None) -> pd.DataFrame | None:
    """The fast path of :func:`_parse_csv`: pyarrow's multi-threaded reader, every column as text.

    Returns the frame pandas' reader would give (same names, values and ``str`` dtype), or None when
    the file needs pandas' rules: a header that is quoted, has empty or repeated names, or any line
    pyarrow refuses (a wrong number of fields, undecodable bytes). The caller then reads it with pandas.
    ``keep``: the (stripped) column names to convert, None for all; every line is still parsed and
    checked.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    head, text = _head_text(path, compression, enc)
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or '"' in lines[0] or len(head) == 65536 and len(lines) < 2:
        return None
    names = lines[0].split(sep)
    if any(not n for n in names) or len(set(names)) != len(names):
        return None
    string = pd.StringDtype("pyarrow", na_value=np.nan)  # what read_csv(dtype=str) gives
    try:
        # without quotes no value can hold a line break: the reader may then split the file anywhere
        quoted = compression == "gzip" or _has_byte(path, compression, b'"')
        source = pa.input_stream(str(path), compression="gzip" if compression == "gzip" else None)
        table = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, encoding=enc.replace("-sig", "")),
            parse_options=pacsv.ParseOptions(delimiter=sep, quote_char='"', double_quote=True,
                                             escape_char=False, newlines_in_values=quoted,
                                             ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.large_string() for n in names},
                                                 null_values=[], strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False,
                                                 include_columns=None if keep is None else [
                                                     n for n in names if n.strip().lstrip("\ufeff") in keep]),
        )
    except (pa.ArrowException, OSError, ValueError, LookupError, UnicodeError) as exc:
        logger.debug("%s: read by pandas (%s)", path, exc)
        return None
    frame = table.to_pandas(types_mapper=lambda t: string if t in (pa.string(), pa.large_string()) else None)
    del table
    release_memory()  # the reader's buffers, kept by Arrow's pool: about twice the file
    return frame


def _parse_csv(path: Path, compression, enc: str, sep: str, keep=None):
    fast = _parse_csv_arrow(path, compression, enc, sep, keep)
    if fast is not None:
        return fast, []
    kw = dict(
        sep=sep,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        index_col=False,
        compression=compression,
        encoding=enc,
        skipinitialspace=False,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, engine="c", **kw), []
    except UnicodeError:
        raise  # the caller tries the next encoding
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty") from None
    except (pd.errors.ParserWarning, pd.errors.ParserError) as exc:
        if "Expected" not in str(exc) and "Length of header" not in str(exc):
            raise InputError(f"{path}: not a readable CSV file ({str(exc).strip()})") from None
        logger.warning("%s: some lines have the wrong number of fields; they are dropped and counted", path)
    except (OSError, EOFError, zlib.error, csv.Error, ValueError) as exc:
        raise InputError(f"{path}: cannot read the file ({exc})") from None

    return _parse_csv_slow(path, compression, enc, sep)


def _parse_csv_slow(path: Path, compression, enc: str, sep: str):
    """Read record by record with the csv module: a line with the wrong number of fields is marked.

    Missing trailing fields are empty; extra trailing fields that are all empty (a delimiter at the
    end of the line) are ignored; any other line with extra fields is malformed.
    """
    opener = gzip.open if compression == "gzip" else open
    try:
        with opener(path, "rt", encoding=enc, newline="") as fh:
            reader = csv.reader(fh, delimiter=sep)
            header = next(reader, [])
            n = len(header)
            records, bad = [], []
            for rec in reader:
                if not rec or (len(rec) == 1 and not rec[0].strip() and n > 1):
                    continue  # blank line, skipped as pandas does
                if len(rec) > n and not any(f.strip() for f in rec[n:]):
                    rec = rec[:n]
                bad.append(len(rec) > n)
                records.append(rec[:n] + [""] * (n - len(rec)))
    except (OSError, EOFError, zlib.error, csv.Error) as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None
    seen: dict[str, int] = {}
    names = []
    for h in header:  # de-duplicate like pandas: a, a.1, a.2
        names.append(h if h not in seen else f"{h}.{seen[h]}")
        seen[h] = seen.get(h, 0) + 1
    df = pd.DataFrame(records, columns=names, dtype=str) if names else pd.DataFrame(index=range(len(records)))
    bad = np.asarray(bad, dtype=bool)
    return df.assign(**{"\x00bad": bad}), (np.flatnonzero(bad) + 1).tolist()


def load_transactions(
    path: str | os.PathLike,
    columns: Mapping[str, str | None] | None = None,
    *,
    date_format: str | None = None,
    dob_format: str | None = None,
    encoding: str | None = None,
) -> pd.DataFrame:
    """Read a transactions file into a frame of role-named text columns.

    Parameters
    ----------
    path : str or path-like
        CSV file (comma, semicolon, tab or pipe separated, detected from the header line), gzip
        CSV (``.gz`` suffix or gzip magic bytes) or Parquet (``.parquet`` / ``.pq`` or ``PAR1``).
    columns : mapping of str to str or None, optional
        Role -> your column name, e.g. ``{"customer_id": "cust", "date": "order_date",
        "amount": "revenue"}``. Roles not given use :data:`DEFAULT_COLUMNS` when the file has that
        column; ``None`` disables an optional role (e.g. ``{"pincode": None}`` to ignore a column
        you do not trust). Only ``customer_id``, ``date`` and ``amount`` are required.
    date_format, dob_format : str, optional
        strftime formats of the transaction date and the date of birth. Leave None to detect them
        (see :func:`detect_date_format`); give them when a file is month-first with no day above
        12, or when detection picks the wrong one (the chosen formats are in ``df.attrs``).
    encoding : str, optional
        Text encoding of a CSV. None tries UTF-8 (with or without BOM), then Latin-1, which reads
        any byte; give it for other encodings (``"cp1252"``, ``"utf-16"``).

    Returns
    -------
    pandas.DataFrame
        One column per enabled role present in the file (in :data:`ROLES` order), every value a
        string exactly as in the file (missing cells are ``""``). The index is the 1-based data
        row number in the file, named ``row``. ``df.attrs`` holds ``source``, ``input_encoding``,
        ``columns`` (role -> column), ``delimiter``, ``date_format``, ``dob_format`` (detected or
        given; None when no value parses) and ``malformed_rows`` (data-row numbers of lines with
        the wrong number of fields: they are not in the frame; the cleaner counts them as
        dropped).

    Raises
    ------
    InputError
        Missing, empty, header-only, unreadable or mis-encoded file; a required column absent.
    ParameterError
        An unknown role in ``columns``, an invalid format or encoding.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ParameterError(f"path={path!r} is not valid; give a file path (str or pathlib.Path)")
    path = Path(path).expanduser()
    with about_source(path):
        request = check_columns(columns)
        check_date_format("date_format", date_format)
        check_date_format("dob_format", dob_format)
        encoding = _check_encoding(encoding)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file (a directory?)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if not head:
        raise InputError(f"{path}: the file is empty (0 bytes)")
    kind = _file_kind(path, head)

    malformed, delimiter = [], None
    if kind == "parquet":
        table, used = _read_parquet(path), "utf-8"  # Parquet strings are UTF-8 by specification
    else:
        table, used, malformed, delimiter = _read_csv(path, "gzip" if kind == "gzip" else None, encoding,
                                                      request)
    table.index = pd.RangeIndex(1, len(table) + 1, name="row")
    if "\x00bad" in table.columns:
        table = table[~table.pop("\x00bad").to_numpy(dtype=bool)]
    table.columns = [str(c).strip().lstrip("\ufeff") for c in table.columns]  # unique: checked on reading

    with about_source(path):
        mapping = resolve_columns(list(table.columns), request, source=str(path))
    if len(table) == 0:
        if malformed:
            raise InputError(
                f"{path}: no readable rows: all {len(malformed)} data lines have a different number "
                "of fields than the header"
            )
        raise InputError(f"{path}: the file has a header but no data rows")
    df = pd.DataFrame({role: as_text(table[col]) for role, col in mapping.items()}, index=table.index)

    date_format = date_format or detect_date_format(df["date"])
    if "dob" in df and dob_format is None:
        dob_format = detect_date_format(df["dob"])
    df.attrs.update(
        source=str(path),
        input_encoding=used,
        columns=dict(mapping),
        delimiter=delimiter,
        date_format=date_format,
        dob_format=dob_format if "dob" in df else None,
        malformed_rows=malformed,
    )
    logger.info(
        "read %s: %d rows, %d roles (%s), encoding %s, date format %s",
        path,
        len(df),
        len(mapping),
        ", ".join(mapping),
        used,
        date_format,
    )
    return df


def read_header(path: str | os.PathLike) -> list[str] | None:
    """Column names of a CSV / gzip CSV / Parquet file without reading its rows.

    Read the way :func:`load_transactions` reads the file (encoding, delimiter); None when the file
    cannot be read (:func:`load_transactions` then says why).
    """
    path = Path(path)

    try:
        with open(path, "rb") as fh:
            kind = _file_kind(path, fh.read(8))
        if kind == "parquet":
            import pyarrow.parquet as pq

            return [str(c).strip() for c in pq.read_schema(path).names]
        _, text = _head_text(path, "gzip" if kind == "gzip" else None, "utf-8-sig")
    except (OSError, InputError, ValueError):
        return None
    lines = text.lstrip("\ufeff").splitlines()
    header = next(csv.reader(lines[:1], delimiter=_sniff_delimiter(text)), []) if lines else []
    return [c.strip().lstrip("\ufeff") for c in header]
