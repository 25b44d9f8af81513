"""Atomic writes and spreadsheet-safe CSV (seglib._files)."""

from __future__ import annotations

import pandas as pd
import pytest

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
