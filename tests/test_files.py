"""Atomic writes and spreadsheet-safe CSV (seglib._files)."""

from __future__ import annotations

import csv

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
    bare_cr = any("\r" in v for v in df.get("t", []) if isinstance(v, str))  # write_csv then quotes text
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
