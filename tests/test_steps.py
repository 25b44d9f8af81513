"""The notebooks' steps: missing upstream artifacts are built only in the project's own layout."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
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
        again = steps.load_clusters(None)  # now present: read, not rebuilt
    assert not caplog.records
    # read back, the tree and the map have the segments step 03 kept (the start that won), not a refit's
    for name in ("unit_labels_", "cut_labels_", "segment_sizes_"):
        np.testing.assert_array_equal(getattr(again.clustering, name), getattr(clusters.clustering, name))


def test_the_sample_holds_at_most_max_collect_customers_in_key_order():
    keys = [f"k{i:03d}" for i in np.random.default_rng(1).permutation(50)]
    frame = pd.DataFrame({"x": np.arange(50.0)}, index=keys)
    for limit in (10, 49, 50, 80):
        got = steps.at_most(frame, limit, 3)
        assert len(got) == min(limit, 50) and got.index.is_monotonic_increasing and got.index.is_unique
        assert set(got.index) <= set(frame.index) and (got["x"] == frame.loc[got.index, "x"]).all()
        pd.testing.assert_frame_equal(got, steps.at_most(frame, limit, 3))  # seeded
    assert not steps.at_most(frame, 10, 3).index.equals(steps.at_most(frame, 10, 3 + 1).index)


def test_write_tables_writes_the_three_tables_in_key_order(tmp_path):
    """The tables a backend makes at once (the Dask runner) are written as the notebooks read them."""
    keys = [f"k{i:02d}" for i in np.random.default_rng(2).permutation(20)]
    customers = pd.DataFrame({"customer_id": keys, "spend": np.arange(20.0)}, index=keys)
    customers.attrs = {"as_of": "2017-01-01", "id_column": "customerID"}
    X = pd.DataFrame({"a": np.arange(20.0) / 2}, index=keys)
    segments = pd.DataFrame({"segment": np.arange(20) % 3 + 1}, index=keys[::-1])
    layout = config.Layout.for_run(tmp_path / "run").makedirs()
    steps.write_tables(layout, customers, X, segments)
    got = [pd.read_parquet(p) for p in (layout.customers, layout.scaled, layout.segments)]
    for frame, original in zip(got, (customers, X, segments)):
        assert list(frame.index) == sorted(keys)
        pd.testing.assert_frame_equal(frame, original.loc[sorted(keys)], check_names=False)
    assert got[0].attrs == customers.attrs


def test_a_cut_without_sizes_clears_the_sizes_and_names_of_the_cut_before(tmp_path):
    """A new cut on a Dask run's sample records no sizes (they would be the sample's): metrics.json must
    not keep the run's sizes and names beside the new cut's number of segments."""
    import json

    from seglib.cluster import PrototypeClustering

    layout = config.Layout.for_run(tmp_path).makedirs()
    weights = np.random.default_rng(0).normal(size=(4, 5, 3))
    run = PrototypeClustering(n_clusters=4, consolidate=False).fit(weights)
    steps.write_clusters(layout, run, assign="unit", segment_means=None,
                         sizes=pd.Series({1: 5, 2: 3, 3: 2, 4: 1}),
                         segment_names={"1": "a", "2": "b", "3": "c", "4": "d"})
    new = PrototypeClustering(n_clusters=3, consolidate=False).fit(weights)
    steps.write_clusters(layout, new, assign="unit", segment_means=None, sizes=None)
    metrics = json.loads(layout.metrics.read_text())
    assert metrics["n_segments"] == 3
    assert metrics["segment_sizes"] is None and metrics["segment_names"] is None


def test_the_cluster_step_counts_the_hits_of_its_customers_from_their_best_units(tmp_path):
    # the hits come from the best units the step computes anyway (one search, not two): the hit map
    write_dataset(tmp_path / "log.csv", n_customers=300, random_state=3)
    out = tmp_path / "run"
    clean = steps.clean_step(tmp_path / "log.csv", out_dir=out)
    som = steps.som_step(clean.clean, map_shape=[6, 5], out_dir=out, progress=False)
    clusters = steps.cluster_step(som, n_clusters=3, n_stability_runs=1, out_dir=out)
    X = som.X.to_numpy()
    assert clusters.hits.shape == (6, 5)
    assert np.array_equal(clusters.hits, som.som.hit_map(X)) and clusters.hits.sum() == len(X)
    assert np.array_equal(steps.load_clusters(out).hits, clusters.hits)
