"""The notebooks' steps: missing upstream artifacts are built only in the project's own layout."""

from __future__ import annotations

import logging

import pytest

from seglib import config, notebook, steps
from seglib.errors import InputError
from seglib.synthetic import write_dataset


@pytest.mark.parametrize("load, missing, maker", [
    (steps.load_clean, "interim/transactions.parquet", "notebook 01"),
    (steps.load_som, "interim/transactions.parquet", "notebook 01"),
    (steps.load_clusters, "interim/transactions.parquet", "notebook 01"),
])
def test_a_run_folder_without_its_inputs_is_an_error_naming_the_file_and_its_maker(load, missing, maker,
                                                                                  tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(InputError) as info:
        load(run)
    message = str(info.value)
    assert str(run / missing) in message and maker in message and len(message.splitlines()) == 1
    assert list(run.iterdir()) == []  # nothing built, nothing written


def test_the_error_names_the_first_missing_step(tmp_path):
    """With the cleaned data there, a missing map points at notebook 02, and missing segments at 03."""
    data, _ = write_dataset(tmp_path / "tx.csv", n_customers=150, random_state=5)
    run = tmp_path / "run"
    steps.clean_step(data, out_dir=run)
    with pytest.raises(InputError, match=r"processed/customers\.parquet not found.*notebook 02"):
        steps.load_som(run)
    with pytest.raises(InputError, match=r"processed/customers\.parquet not found.*notebook 02"):
        steps.load_clusters(run)
    steps.som_step(out_dir=run, map_shape=[4, 4], n_epochs=2, progress=False)
    with pytest.raises(InputError, match=r"processed/segments\.parquet not found.*notebook 03"):
        steps.load_clusters(run)


def test_the_project_layout_is_built_with_defaults_and_a_warning(tmp_path, monkeypatch, caplog):
    """A fresh clone: notebook 03 opened first gets the cleaned data and the map built for it."""
    data, _ = write_dataset(tmp_path / "raw" / "transactions.csv", n_customers=300, random_state=6)
    monkeypatch.setattr(config, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(config, "DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(notebook, "DEFAULT_DATA", data)
    with caplog.at_level(logging.WARNING, logger="seglib.steps"):
        clusters = steps.load_clusters(None)
    layout = config.Layout.for_run(None)
    assert layout.interim == tmp_path / "data" / "interim"
    for step in ("clean", "som", "cluster"):
        assert all(p.is_file() for p in steps.artifacts(layout, step)), step
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 3 and all("default parameters" in w for w in warned)
    assert clusters.segments["segment"].nunique() == clusters.clustering.n_clusters_
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="seglib.steps"):
        steps.load_clusters(None)  # now present: read, not rebuilt
    assert not caplog.records
