"""Atomic writes and spreadsheet-safe CSV (seglib._files)."""

from __future__ import annotations

import csv
import threading

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seglib._files import atomic_path, neutralize_formulas, write_csv, write_json


def test_neutralize_prefixes_text_cells_only():
    df = pd.DataFrame({"id": ["=SUM(A1)", "+1", "-2", "@x", "ok", None], "n": [-1, 2, 3, 4, 5, 6]})
    out = neutralize_formulas(df)
    assert out["id"].tolist()[:5] == ["'=SUM(A1)", "'+1", "'-2", "'@x", "ok"]
    assert pd.isna(out["id"].iloc[5])
    assert out["n"].tolist() == df["n"].tolist()  # numbers untouched
    assert df["id"].iloc[0] == "=SUM(A1)"  # input not modified


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "result.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new fi")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


def test_write_csv_round_trips_awkward_text(tmp_path):
    df = pd.DataFrame({"id": ["a,b", 'q"uote', "line\nbreak", "cr\ronly", "x"], "v": [1.5, 2, 3, 4, 5]})
    path = write_csv(tmp_path / "t.csv", df)
    back = pd.read_csv(path, dtype={"id": str})
    assert back["id"].tolist() == df["id"].tolist()
    assert len(back) == len(df)


def test_write_json_is_deterministic(tmp_path):
    a = write_json(tmp_path / "a.json", {"b": 1, "a": [1, 2]}).read_bytes()
    b = write_json(tmp_path / "b.json", {"a": [1, 2], "b": 1}).read_bytes()
    assert a == b


def test_atomic_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    path = write_json(tmp_path / "p.json", {})
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("fmt", ["%.12g", "%.3f"])
def test_write_csv_formats_floats_as_pandas_does(tmp_path, fmt):
    # write_csv formats float columns itself (fast path); the bytes must be pandas' own
    import numpy as np

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal(500) * 10.0 ** rng.integers(-12, 16, 500),
                             [np.nan, np.inf, -np.inf, -0.0, 0.0, 0.1 + 0.2, 1e300, 5e-324, 2.0]])
    values = np.concatenate([values, values[::-3], [-0.0, 0.0, -0.0]])  # repeats: formatted once each
    df = pd.DataFrame({"id": [f"c{i}" for i in range(len(values))], "x": values,
                       "n": np.arange(len(values)), "f32": np.clip(values, -3e38, 3e38).astype(np.float32),
                       "y": values[::-1].copy()})
    df.loc[3, "id"] = "=cmd"
    path = write_csv(tmp_path / "out.csv", df, float_format=fmt)
    expected = neutralize_formulas(df).to_csv(index=False, lineterminator="\n", float_format=fmt)
    assert path.read_text() == expected
    assert df["x"].dtype == np.float64  # the input is not modified


def test_lean_arrow_memory_switches_the_pool_for_the_block_only():
    import pyarrow as pa

    from seglib._files import lean_arrow_memory, release_memory

    before = pa.default_memory_pool().backend_name
    try:
        pa.jemalloc_memory_pool()
        expected = "jemalloc"
    except (NotImplementedError, pa.ArrowNotImplementedError):
        expected = before  # no jemalloc in this build: nothing changes
    with lean_arrow_memory():
        assert pa.default_memory_pool().backend_name == expected
        table = pa.table({"x": pa.array([str(i) for i in range(10_000)], pa.large_string())})
        del table
        release_memory()
    assert pa.default_memory_pool().backend_name == before
    with pytest.raises(ZeroDivisionError), lean_arrow_memory():
        1 / 0  # an error inside restores the pool too
    assert pa.default_memory_pool().backend_name == before


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(-10**12, 10**12),
                          st.one_of(st.none(), st.text(st.characters(codec="utf-8"), max_size=5)),
                          st.sampled_from([0.5, -0.0, float("nan"), 1e300, 3.0])), max_size=20),
       st.integers(1, 3), st.sampled_from(["text", "object", "names"]))
def test_write_csv_bytes_are_pandas_whichever_writer_writes_them(tmp_path_factory, rows, n_columns, kind):
    """Arrow writes the simple frames (ints, text, formatted floats), pandas the rest: the same bytes."""
    import numpy as np

    df = pd.DataFrame({"n": np.array([r[0] for r in rows], dtype=np.int64),
                       "t": pd.Series([r[1] for r in rows], dtype="str" if kind == "text" else object),
                       "x": np.array([r[2] for r in rows], dtype=float)}).iloc[:, :n_columns]
    if kind == "object" and len(df):
        df["o"] = [1] + ["a"] * (len(df) - 1)  # a number in a text column: pandas writes it
    if kind == "names":
        df.columns = [f"c,{i}" if i == 0 else f"c{i}" for i in range(df.shape[1])]  # a name needs quotes
    path = write_csv(tmp_path_factory.mktemp("csv") / "t.csv", df, float_format="%.12g")
    text = [v for c in range(df.shape[1]) for v in df.iloc[:, c] if isinstance(v, str)]
    bare_cr = any("\r" in v for v in text)  # write_csv then quotes the text
    expected = neutralize_formulas(df).to_csv(index=False, lineterminator="\n", float_format="%.12g",
                                              quoting=csv.QUOTE_NONNUMERIC if bare_cr else csv.QUOTE_MINIMAL)
    assert path.read_bytes().decode("utf-8") == expected  # read_text would turn a \r into \n


def test_simple_frames_are_written_by_arrow_with_pandas_bytes(tmp_path, monkeypatch):
    import numpy as np

    df = pd.DataFrame({"id": ["a", "=b", None, "é"], "n": np.arange(4), "x": [0.1 + 0.2, np.nan, -0.0, 1e20]})
    expected = neutralize_formulas(df).to_csv(index=False, lineterminator="\n", float_format="%.12g")
    monkeypatch.setattr(pd.DataFrame, "to_csv", lambda *a, **k: pytest.fail("pandas wrote it"))
    assert write_csv(tmp_path / "t.csv", df, float_format="%.12g").read_text(encoding="utf-8") == expected

@pytest.mark.parametrize("cell", [b"x1", bytearray(b"x1"), 7, True])
def test_an_object_column_of_non_text_is_left_to_pandas(tmp_path, cell):
    """Arrow would decode bytes as text (``x1``); pandas writes their ``str()`` (``b'x1'``)."""
    df = pd.DataFrame({"id": pd.Series([cell, "y"], dtype=object), "n": [1, 2]})
    expected = neutralize_formulas(df).to_csv(index=False, lineterminator="\n")
    assert write_csv(tmp_path / "t.csv", df).read_bytes().decode("utf-8") == expected


# ------------------------------------------------------------------ background writes (seglib._files)


def _frame(n=2_000, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"id": [f"c{i}" for i in range(n)], "x": rng.normal(size=n)})
    df.attrs = {"as_of": "2017-07-01"}
    return df


def test_background_parquet_writes_give_the_same_bytes_and_exist_when_the_block_ends(tmp_path):
    from seglib._files import background_writes
    from seglib.steps import write_parquet

    df = _frame()
    write_parquet(df, tmp_path / "now.parquet")
    with background_writes() as writes:
        assert writes is not None
        paths = [write_parquet(df, tmp_path / f"later{i}.parquet") for i in range(3)]
    for path in paths:
        assert path.read_bytes() == (tmp_path / "now.parquet").read_bytes()
    back = pd.read_parquet(paths[0])
    pd.testing.assert_frame_equal(back, df)
    assert back.attrs == df.attrs


def test_a_background_write_writes_the_frame_as_it_was_when_queued(tmp_path):
    import threading

    from seglib._files import background_writes
    from seglib.steps import write_parquet

    df, expected = _frame(), _frame()
    gate = threading.Event()
    with background_writes() as writes:
        writes.submit(gate.wait)  # hold the writer until the frame has been changed
        write_parquet(df, tmp_path / "t.parquet")
        df["x"] = 0.0
        df.loc[0, "id"] = "changed"
        df["extra"] = 1
        df.attrs["as_of"] = "changed"
        gate.set()
    back = pd.read_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(back, expected)
    assert back.attrs == expected.attrs


def test_disabled_or_nested_background_writes_write_at_once(tmp_path):
    from seglib._files import background_writes, current_background_writes
    from seglib.steps import write_parquet

    assert current_background_writes() is None
    with background_writes(enabled=False) as writes:
        assert writes is None and current_background_writes() is None
        write_parquet(_frame(), tmp_path / "a.parquet")
        assert (tmp_path / "a.parquet").is_file()
    with background_writes() as outer:
        with background_writes() as inner:
            assert inner is None and current_background_writes() is outer  # the outer block waits
    assert current_background_writes() is None


def test_a_failed_background_write_fails_the_block_with_its_own_error(tmp_path):
    from seglib._files import background_writes
    from seglib.steps import write_parquet

    (tmp_path / "file").write_text("not a folder")
    bad = tmp_path / "file" / "t.parquet"  # its folder cannot be made
    with pytest.raises(OSError) as at_once:
        write_parquet(_frame(), bad)
    with pytest.raises(OSError) as later:
        with background_writes():
            write_parquet(_frame(), bad)
            for i in range(3):  # queued behind the failure (or refused at once once it is known)
                write_parquet(_frame(), tmp_path / f"after{i}.parquet")
    assert type(later.value) is type(at_once.value) and str(later.value) == str(at_once.value)
    # nothing writes after the block: no writer thread left, no half-written file, whatever was written whole
    assert not [t for t in threading.enumerate() if t.name.startswith("seglib-write")]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".parquet")) == ["file"]
    for written in tmp_path.glob("after*.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(written), _frame())


def test_a_failed_background_write_stops_the_next_write(tmp_path):
    from seglib._files import background_writes

    def fail():
        raise ValueError("disk full")

    with pytest.raises(ValueError, match="disk full"):
        with background_writes() as writes:
            writes.submit(fail).exception()  # wait until it has failed
            writes.submit(lambda: None)  # raises at once: the run does not go on
            pytest.fail("submit did not raise")


def test_an_error_in_the_block_wins_and_every_write_is_waited_for(tmp_path, caplog):
    import threading

    from seglib._files import background_writes

    done = threading.Event()

    def slow_fail():
        done.wait(0.2)
        done.set()
        raise ValueError("disk full")

    with pytest.raises(KeyError, match="the step's own error"):
        with background_writes() as writes:
            writes.submit(slow_fail)
            raise KeyError("the step's own error")
    assert done.is_set()  # waited for before the error propagated
    assert "disk full" in caplog.text  # the write's failure is logged, not lost


def _slow_first_write(monkeypatch, fail: str | None = None) -> threading.Event:
    """Hold the first Parquet write until the returned event is set (and make the write of ``fail``
    fail), so that later writes are still queued when the block ends."""
    from seglib import steps

    real, gate, first = steps._write_parquet, threading.Event(), []

    def write(df, path, index):
        if not first:
            first.append(path)
            gate.wait(5)
        if path.name == fail:
            raise OSError(28, "No space left on device", str(path))
        return real(df, path, index)

    monkeypatch.setattr(steps, "_write_parquet", write)
    return gate


def test_an_error_in_the_block_still_writes_every_queued_table(tmp_path, monkeypatch):
    # a later step fails (not a write): the earlier steps' tables are whole, as when written in order
    from seglib._files import background_writes
    from seglib.steps import write_parquet

    gate = _slow_first_write(monkeypatch)
    with pytest.raises(ValueError, match="step 03 failed"):
        with background_writes():
            for name in ("customers", "scaled", "segments"):
                write_parquet(_frame(), tmp_path / f"{name}.parquet")
            gate.set()
            raise ValueError("step 03 failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["customers.parquet", "scaled.parquet",
                                                         "segments.parquet"]


def test_the_writes_queued_behind_a_failed_write_are_cancelled(tmp_path, monkeypatch):
    from seglib._files import background_writes
    from seglib.steps import write_parquet

    gate = _slow_first_write(monkeypatch, fail="a.parquet")
    with pytest.raises(OSError, match="No space left on device"):
        with background_writes():
            for name in ("a", "b", "c"):
                write_parquet(_frame(), tmp_path / f"{name}.parquet")
            gate.set()
    assert list(tmp_path.iterdir()) == []  # as writing in order: nothing after the failed write
