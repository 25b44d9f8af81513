"""The in-memory runner's overlapping work (seglib.runner): background writes and preloaded imports."""

from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
import sys
import textwrap
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


def test_preloading_imports_modules_in_a_thread_and_skips_loaded_ones(tmp_path, monkeypatch):
    (tmp_path / "seglib_fake_step.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "seglib_fake_step", raising=False)
    thread = runner._preload(("seglib_fake_step",))
    assert thread is not None
    thread.join()
    assert sys.modules["seglib_fake_step"].VALUE == 42
    assert runner._preload(("seglib_fake_step", "json")) is None  # everything loaded: no thread


def test_a_failed_preload_leaves_the_import_to_fail_with_its_own_message(tmp_path, monkeypatch):
    (tmp_path / "seglib_broken_step.py").write_text("raise ImportError('needs the optional extra foo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    runner._preload(("seglib_broken_step",)).join()
    assert "seglib_broken_step" not in sys.modules
    with pytest.raises(ImportError, match="needs the optional extra foo"):
        importlib.import_module("seglib_broken_step")


def _fresh(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (as the CLI starts) after what the runner imports before
    preloading; it prints one JSON line, returned."""
    prelude = textwrap.dedent("""
        import importlib, json, sys, tempfile, warnings
        from seglib import runner, steps
        import seglib.clean, seglib.load
        for name in runner.PRELOAD_FIRST:
            importlib.import_module(name)
        filters, before = list(warnings.filters), set(sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_the_preloaded_modules_change_nothing_that_cleaning_uses(small_data, tmp_path):
    """Importing PRELOAD (after PRELOAD_FIRST) sets no warning filter (warnings.catch_warnings is not
    thread-safe) and imports no module that cleaning imports: the two threads share no import."""
    preload = _fresh("""
        for name in runner.PRELOAD:
            importlib.import_module(name)
        new = sorted(set(sys.modules) - before)
        print(json.dumps({"filters_changed": warnings.filters != filters, "new": new}))
    """)
    cleaning = _fresh(f"""
        steps.clean_step({str(small_data)!r}, out_dir={str(tmp_path)!r})
        print(json.dumps({{"new": sorted(set(sys.modules) - before)}}))
    """)
    assert not preload["filters_changed"]
    assert set(runner.PRELOAD) <= set(preload["new"]) and cleaning["new"]
    assert not set(preload["new"]) & set(cleaning["new"])
