"""The in-memory runner's overlapping work (seglib.runner): background writes."""

from __future__ import annotations

import threading

import pytest

from seglib import runner


def _writer_threads(monkeypatch, fail: str | None = None) -> list:
    """Record the thread of every Parquet write (and make the write of ``fail`` fail)."""
    from seglib import steps
    real, threads = steps._write_parquet, []

    def write(df, path, index):
        threads.append(threading.current_thread().name)
        if path.name == fail:
            raise OSError(28, "No space left on device", str(path))
        return real(df, path, index)

    monkeypatch.setattr(steps, "_write_parquet", write)
    return threads


def test_segment_writes_the_same_bytes_with_or_without_background_writes(small_data, tmp_path, monkeypatch,
                                                                         digests):
    runs = {}
    threads = _writer_threads(monkeypatch)
    for switch in ("0", "1"):
        monkeypatch.setenv("SEGLIB_OVERLAP", switch)
        threads.clear()
        layout = runner.run_segmentation(small_data, tmp_path / switch, n_stability_runs=0, progress=False)
        runs[switch] = digests(layout.root)
        expected = "seglib-write" if switch == "1" else "MainThread"
        assert len(threads) == 4 and all(t.startswith(expected) for t in threads)
    assert "interim/transactions.parquet" in runs["1"] and "processed/segments.parquet" in runs["1"]
    assert runs["0"] == runs["1"]


@pytest.mark.parametrize("table", ["transactions.parquet", "segments.parquet"])
def test_segment_fails_with_the_error_of_a_failed_background_write(small_data, tmp_path, monkeypatch, table):
    # the run stops before the files that say it is done, as when writing in order
    threads = _writer_threads(monkeypatch, fail=table)
    monkeypatch.setenv("SEGLIB_OVERLAP", "1")
    with pytest.raises(OSError, match="No space left on device"):
        runner.run_segmentation(small_data, tmp_path / "run", n_stability_runs=0, progress=False)
    assert threads and all(t.startswith("seglib-write") for t in threads)
    for done in ("result.csv", "segments.csv", "summary.html", "model/model.json"):
        assert not (tmp_path / "run" / done).exists()
