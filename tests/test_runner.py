"""The in-memory runner's overlapping work (seglib.runner): background writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from seglib import runner
from seglib.synthetic import write_dataset


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    path, _ = write_dataset(tmp_path_factory.mktemp("data") / "tx.csv", n_customers=600, random_state=3)
    return path


def _digests(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_segment_writes_the_same_bytes_with_or_without_background_writes(small_data, tmp_path, monkeypatch):
    runs = {}
    for switch in ("0", "1"):
        monkeypatch.setenv("SEGLIB_OVERLAP", switch)
        layout = runner.run_segmentation(small_data, tmp_path / switch, n_stability_runs=0, progress=False)
        runs[switch] = _digests(layout.root)
    assert "interim/transactions.parquet" in runs["1"] and "processed/segments.parquet" in runs["1"]
    assert runs["0"] == runs["1"]


def test_segment_fails_with_the_error_of_a_failed_background_write(small_data, tmp_path, monkeypatch):
    from seglib import steps
    real = steps._write_parquet

    def failing(df, path, index):
        if path.name == "transactions.parquet":
            raise OSError(28, "No space left on device", str(path))
        return real(df, path, index)

    monkeypatch.setattr(steps, "_write_parquet", failing)
    monkeypatch.setenv("SEGLIB_OVERLAP", "1")
    with pytest.raises(OSError, match="No space left on device"):
        runner.run_segmentation(small_data, tmp_path / "run", n_stability_runs=0, progress=False)
