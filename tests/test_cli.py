"""The command line: entry points, one-line errors with exit status 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from seglib import params
from seglib.cli import main


def _seglib(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "seglib", *args], capture_output=True, text=True, cwd=cwd)


def test_python_dash_m_seglib_shows_the_commands():
    out = _seglib("--help")
    assert out.returncode == 0
    for command in ("make-data", "run", "score"):
        assert command in out.stdout


@pytest.mark.parametrize("args, words", [
    (["run", "--data", "no/such/file.csv", "--no-progress"], ["no/such/file.csv", "not found"]),
    (["score", "--model", "no/such/run", "--data", "x.csv", "--out", "y.csv"], ["no/such/run"]),
    (["make-data", "--out", "x.csv", "--segments", "99"], ["n_segments"]),
    (["run", "-p", "n_clusterz", "4"], ["n_clusterz", "valid parameters", "n_clusters"]),
])
def test_user_errors_are_one_line_with_status_2(tmp_path, args, words):
    out = _seglib(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if not line.startswith(("INFO", "WARNING"))]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    for word in words:
        assert word in lines[0]


def test_main_returns_the_status_instead_of_exiting(tmp_path, capsys):
    assert main(["make-data", "--out", str(tmp_path / "d.csv"), "--customers", "50", "--seed", "2"]) == 0
    assert (tmp_path / "d_truth.csv").is_file()
    assert main(["score", "--model", str(tmp_path / "nothing"), "--data", "x", "--out", "y"]) == 2
    assert "error" in capsys.readouterr().err


def test_segment_runs_the_pipeline_without_notebooks(tmp_path):
    data = tmp_path / "tx.csv"
    assert main(["make-data", "--out", str(data), "--customers", "400", "--seed", "4"]) == 0
    out = tmp_path / "run"
    assert main(["-q", "segment", "--data", str(data), "--out", str(out), "-p", "n_clusters", "6",
                 "--no-progress"]) == 0
    for name in ("result.csv", "segments.csv", "cleaning_report.json", "run.json", "model/model.json"):
        assert (out / name).is_file(), name
    info = json.loads((out / "run.json").read_text())
    assert info["parameters"] == {**params.defaults(), "n_clusters": 6, "backend": "pandas"}
    assert len(info["input_sha256"]) == 64 and sum(info["segment_sizes"].values()) == 400
    assert main(["segment", "--data", str(data), "--out", str(tmp_path / "x"), "-p", "n_cluster", "6"]) == 2
    assert not (tmp_path / "x").exists()
