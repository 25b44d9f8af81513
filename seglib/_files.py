"""Writing files safely: atomically (temporary file, then rename) and spreadsheet-safe CSV."""

from __future__ import annotations

import contextvars
import csv
import json
import logging
import os
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["atomic_path", "atomic_write_text", "write_json", "write_csv", "neutralize_formulas",
           "write_npz", "read_npz", "BackgroundWrites", "background_writes", "current_background_writes"]

logger = logging.getLogger(__name__)

_UMASK = os.umask(0)
os.umask(_UMASK)

#: Leading characters that make a spreadsheet treat a text cell as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@")


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    An exception (or an interrupted process) leaves ``path`` untouched: readers see the old file
    or the complete new one, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        # newline="" keeps "\n" on every platform, so the bytes do not depend on the OS
        with open(tmp, "w", encoding=encoding, newline="") as fh:
            fh.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, data, **kwargs) -> Path:
    """Write ``data`` as indented, key-sorted JSON, atomically."""
    kwargs.setdefault("indent", 2)
    kwargs.setdefault("sort_keys", True)
    kwargs.setdefault("ensure_ascii", False)
    return atomic_write_text(path, json.dumps(data, **kwargs) + "\n")


def neutralize_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy where text cells starting with ``= + - @`` are prefixed with ``'``.

    Only text (object / string) columns are touched: a negative *number* stays a number. The
    apostrophe is the spreadsheet convention for "this is text", so ``=SUM(A1)`` shows as typed
    instead of being evaluated when the CSV is opened in Excel or LibreOffice.
    """
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if not (pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)):
            continue
        text = s.astype("string")
        mask = text.str.startswith(FORMULA_PREFIXES, na=False)
        if mask.any():
            out[col] = s.astype(object).where(~mask, "'" + text[mask].astype(object))
    return out


def _has_bare_cr(df: pd.DataFrame) -> bool:
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
            if s.astype("string").str.contains("\r", regex=False, na=False).any():
                return True
    return False


def write_csv(path: str | os.PathLike, df: pd.DataFrame, *, index: bool = False, **kwargs) -> Path:
    """Write ``df`` as CSV atomically, with a header, formula cells neutralised, ``\\n`` line ends."""
    kwargs.setdefault("lineterminator", "\n")
    safe = neutralize_formulas(df)
    if "quoting" not in kwargs and _has_bare_cr(safe):
        # the csv module does not quote a lone "\r" when lines end in "\n"; readers would split there
        kwargs["quoting"] = csv.QUOTE_NONNUMERIC
    minimal = kwargs.get("quoting", csv.QUOTE_MINIMAL) == csv.QUOTE_MINIMAL
    if isinstance(kwargs.get("float_format"), str) and minimal:
        # pandas formats floats one Python call (and one NA test) per cell: ~8 us each; a list
        # comprehension per column writes the same bytes (``float_format % value``, "" for NaN) 20x faster
        safe = _formatted_floats(safe, kwargs.pop("float_format"))
    text = _arrow_csv(safe) if not index and kwargs == {"lineterminator": "\n"} else None
    if text is None:
        text = safe.to_csv(index=index, **kwargs)
    return atomic_write_text(path, text)


def _arrow_csv(df: pd.DataFrame) -> str | None:
    """``df.to_csv(index=False, lineterminator="\n")`` written by Arrow (10x faster), or None.

    Only for what gives pandas' bytes: at least two columns with distinct text names, each of numpy
    integers or of text (missing: empty cell), no cell or name that would need quotes (a delimiter, a
    quote, a line break: Arrow refuses them unquoted, and pandas then writes the file).
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    names = list(df.columns)
    if len(names) < 2 or len(set(names)) < len(names) or not all(isinstance(n, str) for n in names):
        return None  # one column: the csv module writes an empty cell as ""
    columns = []
    for i, dtype in enumerate(df.dtypes):
        values = df.iloc[:, i]
        if isinstance(dtype, np.dtype) and dtype.kind in "iu":
            columns.append(pa.array(values.to_numpy()))
        elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            if pd.api.types.is_object_dtype(dtype) and pd.api.types.infer_dtype(values, skipna=True) not in (
                "string", "empty"
            ):  # bytes, numbers, bools in an object column: pandas writes their str(); Arrow would not
                return None
            try:  # text only: an object column holding numbers or bools is pandas' to write
                columns.append(pa.array(values, type=pa.large_string(), from_pandas=True))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                return None
        else:
            return None
    sink = pa.BufferOutputStream()
    try:
        pa_csv.write_csv(pa.Table.from_arrays(columns, names=names), sink,
                         pa_csv.WriteOptions(quoting_style="none", quoting_header="none"))
    except pa.ArrowInvalid:  # a cell or name needs quotes
        return None
    return sink.getvalue().to_pybytes().decode("utf-8")


def _formatted_floats(df: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """``df`` with every numpy float column as text ``fmt % value`` (NaN: empty), as ``to_csv`` writes it."""
    out = None
    for i, dtype in enumerate(df.dtypes):
        if not (isinstance(dtype, np.dtype) and dtype.kind == "f"):
            continue
        values = df.iloc[:, i].to_numpy()
        # each distinct value (by its bits: 0.0 and -0.0 print differently; found by hashing) is
        # formatted once
        codes, bits = pd.factorize(values.astype(np.float64).view(np.int64))
        distinct = np.array([fmt % v for v in bits.view(np.float64).tolist()], dtype=object)
        text = distinct[codes]
        text[np.isnan(values)] = ""
        out = df.copy(deep=False) if out is None else out
        out.isetitem(i, text)
    return df if out is None else out


def release_memory() -> None:
    """Return memory the process freed but its allocators keep to the system (lowers the peak after).

    Arrow's pool keeps what a large read freed (the CSV reader's buffers: about twice the file), and
    glibc's ``malloc`` keeps freed heap; neither is reused by the other, so later work would grow the
    process on top. Cheap (milliseconds): call it after freeing a large frame. Does nothing where the
    allocators do not offer it.
    """
    import sys

    if "pyarrow" in sys.modules:
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


@contextmanager
def lean_arrow_memory():
    """Context manager: Arrow allocates from jemalloc, which gives freed memory back at once.

    Arrow's default pool (mimalloc) keeps what a large CSV read or a cleaned frame freed, so the
    process's peak grows by it; jemalloc with a decay time of 0 returns it as it is freed (measured on
    a 170 MB log: 150 MB less resident memory after the read and after cleaning). The previous pool is
    restored on exit; nothing changes where pyarrow has no jemalloc.
    """
    import pyarrow as pa

    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)
    except (NotImplementedError, pa.ArrowNotImplementedError):
        yield
        return
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


class BackgroundWrites:
    """Writes run one after another in one background thread, while the caller goes on.

    For artifacts nothing reads back before :meth:`wait`: Arrow's Parquet writer releases the GIL, so
    on a second core a large write costs the caller next to nothing. :meth:`submit` re-raises a failure
    of an earlier write (the run stops at the next write, not at the end); :meth:`wait` waits for the
    writes and re-raises the first failure, in submission order, as it was raised (same type, same
    message); the writes queued behind a failure are cancelled.
    """

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seglib-write")
        self._futures = []
        self._failed = False

    def submit(self, func, *args, **kwargs):
        """Run ``func(*args, **kwargs)`` after the writes submitted before (skipped, returning None, once
        one of them failed: as writing in order would have stopped there); returns its future."""
        self.check()
        future = self._pool.submit(self._unless_failed, func, *args, **kwargs)
        self._futures.append(future)
        return future

    def _unless_failed(self, func, *args, **kwargs):
        if self._failed:  # one thread runs the writes in order: an earlier one failed
            return None
        try:
            return func(*args, **kwargs)
        except BaseException:
            self._failed = True
            raise

    def check(self) -> None:
        """Re-raise the first failure among the writes done so far (does not wait)."""
        for future in self._futures:
            if future.done() and future.exception() is not None:
                raise future.exception()

    def flush(self) -> None:
        """Wait for the writes submitted so far and re-raise the first failure; later writes still queue.

        The runner flushes before the steps whose files say a run is done (``result.csv``, the model):
        a failed table write then stops the run before them, as writing in order would.
        """
        for future in list(self._futures):
            future.result()

    def wait(self) -> None:
        """Wait for every write; re-raise the first failure (later ones are logged). Nothing runs in the
        background after it."""
        try:
            self.flush()
        except BaseException as exc:
            self.abandon(exc)
            raise
        self._pool.shutdown(wait=True)

    def abandon(self, error: BaseException | None = None) -> None:
        """Wait for the writes while the caller fails with ``error``; other failures are logged.

        Every queued write is still done (the files of the steps that succeeded are whole, as when
        writing in order), unless a write failed or the user interrupts: the writes queued behind are
        then cancelled, as writing in order would have stopped there.
        """
        self._pool.shutdown(wait=True, cancel_futures=self._failed or isinstance(error, KeyboardInterrupt))
        for future in self._futures:
            if not future.cancelled() and future.exception() is not None and future.exception() is not error:
                logger.error("a background write failed too: %s", future.exception())


_BACKGROUND: contextvars.ContextVar[BackgroundWrites | None] = contextvars.ContextVar(
    "seglib_background_writes", default=None)


def current_background_writes() -> BackgroundWrites | None:
    """The :class:`BackgroundWrites` of this thread's enclosing :func:`background_writes` block, or None."""
    return _BACKGROUND.get()


@contextmanager
def background_writes(enabled: bool = True):
    """Context manager: writers that offer it (:func:`seglib.steps.write_parquet`) write in a background
    thread inside the block; the block's exit waits for every write.

    On leaving the block normally, the first failed write is raised (as :meth:`BackgroundWrites.wait`).
    When the block raises, the writes are still waited for (no thread writes into the folder after it;
    see :meth:`BackgroundWrites.abandon` for which are cancelled) and the block's own exception
    propagates. Yields the :class:`BackgroundWrites`, or None when
    already inside such a block (the outer block decides and waits) or when ``enabled`` is False outside
    one (everything is then written at once). Use it only where nothing reads the files back inside
    the block: a file exists once the block is left.
    """
    if not enabled or _BACKGROUND.get() is not None:
        yield None
        return
    writes = BackgroundWrites()
    token = _BACKGROUND.set(writes)
    try:
        yield writes
    except BaseException as exc:
        _BACKGROUND.reset(token)
        writes.abandon(exc)
        raise
    _BACKGROUND.reset(token)
    writes.wait()


def write_npz(path: str | os.PathLike, arrays: dict) -> Path:
    """Plain arrays as an ``.npz`` with fixed zip timestamps (same arrays, same bytes), atomically.

    Object arrays are refused (``allow_pickle=False``): model files hold numbers and fixed-width text only.
    """
    path = Path(path)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w") as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
    return path


def read_npz(path: str | os.PathLike, names, *, what: str = "plain arrays") -> dict:
    """The arrays ``names`` of an ``.npz``, never unpickling anything.

    Raises :class:`seglib.errors.ModelFormatError` naming the file when it is missing or unreadable,
    an array is missing, or an array would need unpickling (an object array, a pickle).
    """
    from seglib.errors import ModelFormatError

    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in names}
    except KeyError as exc:
        raise ModelFormatError(f"{path}: array {exc} missing") from exc
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelFormatError(f"{path}: cannot be read as {what} ({exc})") from exc
