"""The Dask backend against the pandas backend, on a local cluster of 2 worker processes.

One cluster and one pair of runs (pandas on one file, Dask on the same lines split into 4 files, same
seed) serve the module; the checks compare them: the cleaning report, one row per customer, the
segments (adjusted Rand index), the SOM's weights and the fitted feature pipeline.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed")

from sklearn.metrics import adjusted_rand_score  # noqa: E402

from seglib.distributed import (  # noqa: E402
    Partitions,
    clean_dask,
    cluster_dask,
    collect_customers,
    customer_features,
    dask_client,
    fit_som,
    sample_rows,
    segment_totals,
)
from seglib.errors import InputError, ParameterError  # noqa: E402
from seglib.features import exact_medians, order_statistics  # noqa: E402
from seglib.load import data_files  # noqa: E402
from seglib.profile import read_result  # noqa: E402
from seglib.runner import BACKENDS, check_backend, run_dask, run_segmentation  # noqa: E402
from seglib.som import SOM  # noqa: E402
from seglib.synthetic import write_parts  # noqa: E402

SEED = 3
COMPARED = ("rows_read", "rows_kept", "rows_dropped", "values_changed", "rows_flagged", "missing_values",
            "customers_read", "customers_kept", "as_of", "settings")


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes with 1 thread each, closed after the module."""
    with dask_client(n_workers=2, memory_limit="2GB", dashboard_address=":0") as c:
        yield c


def _append_dirty_lines(part, new_id: str, other_id: str) -> None:
    """Lines every cleaner must drop, plus one malformed line (more fields than the header)."""
    table = pd.read_csv(part, dtype=str, keep_default_na=False)
    bad = pd.concat([table.iloc[[0]]] * 8, ignore_index=True)
    bad.loc[0, "sale_price_after_promo"] = ""  # missing amount
    bad.loc[1, "transactionDate"] = "31/02/2017x"  # unparseable date
    bad.loc[2, "customerID"] = "BBID_"  # only a prefix: no id
    bad.loc[3, ["customerID", "sale_price_after_promo"]] = [new_id, "n/a"]  # a customer with no row kept
    bad.loc[4, ["customerID", "transactionDate"]] = [other_id, ""]  # dropped here, kept in another file
    # implausible values: the bounds are global (derived from every file), the same on both backends
    bad.loc[5, "sale_price_after_promo"] = "1e308"
    bad.loc[6, "transactionDate"] = "2099-05-05"
    bad.loc[7, "transactionDate"] = "1900-01-01"
    bad.to_csv(part, mode="a", header=False, index=False, lineterminator="\n")
    with open(part, "a", encoding="utf-8") as fh:
        fh.write(",".join(table.iloc[1]) + ",extra,fields\n")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """2,400 customers in 4 CSV parts with dirty lines, and the same lines as one file."""
    folder = tmp_path_factory.mktemp("parts")
    parts = write_parts(folder, 2400, customers_per_part=600, random_state=SEED, progress=False)[:-1]
    other = pd.read_csv(parts[0], dtype=str, nrows=1)["customerID"].iloc[0]
    _append_dirty_lines(parts[2], "BBID_999999999", other)
    single = folder / "all.csv"
    with open(single, "w", encoding="utf-8") as out:
        for i, part in enumerate(parts):
            lines = part.read_text(encoding="utf-8").splitlines(keepends=True)
            out.writelines(lines[1:] if i else lines)
    return {"glob": str(folder / "part-*.csv"), "single": single, "parts": parts}


@pytest.fixture(scope="module")
def runs(client, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    pandas_layout = run_segmentation(data["single"], out / "pandas", seed=SEED, progress=False)
    run = run_dask(data["glob"], out / "dask", scheduler=client, seed=SEED, npartitions=4, progress=False)
    return pandas_layout, run


def test_cleaning_report_invariant_and_same_counts_as_pandas(runs):
    pandas_layout, run = runs
    report = run.report
    assert report.rows_read == report.rows_kept + sum(report.rows_dropped.values())
    assert report.customers_read == report.customers_kept + 1  # the customer whose only row was dropped
    assert report.rows_dropped["malformed_line"] == 1
    assert report.rows_dropped["implausible_amount"] == 1 and report.rows_dropped["implausible_date"] == 2
    assert sum(report.rows_dropped.values()) == 9
    assert report.settings["max_date"] < "2099" and report.as_of < "2099"
    expected = json.loads(pandas_layout.cleaning_report.read_text())
    written = json.loads(run.layout.cleaning_report.read_text())
    assert {k: written[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}


def test_one_row_per_customer(runs):
    _, run = runs
    result = read_result(run.result)
    assert result["customerID"].is_unique
    assert len(result) == run.n_customers == run.report.customers_kept
    parts = pd.concat(pd.read_parquet(p) for p in run.parts)
    assert len(parts) == len(result) and set(parts["customerID"]) == set(result["customerID"])
    assert parts["segment"].between(1, run.clustering.n_clusters_).all()


def test_segments_agree_with_pandas(runs):
    pandas_layout, run = runs
    a, b = read_result(pandas_layout.result), read_result(run.result)
    both = a.merge(b, on="customerID", suffixes=("_pandas", "_dask"))
    assert len(both) == len(a) == len(b)
    assert adjusted_rand_score(both["segment_pandas"], both["segment_dask"]) >= 0.99


def test_notebooks_03_and_04_open_a_dask_run_without_cleaning_or_training_again(runs, tmp_path):
    """A Dask run folder (customers collected: max_collect) holds the tables steps 02-03 write, so
    notebooks 03 and 04 open it: they read the map and the customers, recut and profile, and neither
    clean (no cleaned transactions appear) nor train (the map's files keep their bytes)."""
    import papermill as pm

    from seglib.config import Layout
    from seglib.pipeline import NOTEBOOK_DIR
    from seglib.steps import load_som

    pandas_layout, run = runs
    folder = shutil.copytree(run.layout.root, tmp_path / "dask-run")
    layout = Layout.for_run(folder)
    som = load_som(folder)
    assert len(som.X) == len(som.customers) == run.n_customers
    assert som.X.index.equals(pd.read_parquet(pandas_layout.scaled).index)
    digest = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in layout.som_dir.iterdir()}
    assert not layout.clean_transactions.exists()
    for name, parameters in (("03-cluster-prototypes", {"n_stability_runs": 0, "k_max": 6}),
                             ("04-profile-segments", {})):
        pm.execute_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
                            parameters={**parameters, "out_dir": str(folder)}, kernel_name="python3",
                            progress_bar=False, cwd=str(NOTEBOOK_DIR))
    assert not layout.clean_transactions.exists()
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in layout.som_dir.iterdir()} == digest
    result = read_result(layout.result)
    assert len(result) == run.n_customers and result["customerID"].is_unique
    assert (layout.figures / "03-segment-map.png").is_file()


def test_result_and_profile_files_are_the_pandas_ones(runs):
    pandas_layout, run = runs
    assert run.result.read_bytes() == pandas_layout.result.read_bytes()
    assert run.layout.segments_csv.read_bytes() == pandas_layout.segments_csv.read_bytes()
    assert run.layout.stability.read_bytes() == pandas_layout.stability.read_bytes()  # same kept segments
    assert not run.layout.sample.exists()  # every customer collected: the tables are whole
    ours, theirs = (json.loads(p.metrics.read_text()) for p in (run.layout, pandas_layout))
    assert ours["bases"] == theirs["bases"] and ours["descriptors"] == theirs["descriptors"]
    assert "age" in ours["descriptors"] and "age" not in ours["bases"]


@pytest.fixture(scope="module")
def sampled(client, data, tmp_path_factory):
    """A Dask run of 2,400 customers, max_collect=600: result parts, and the notebooks' tables of a sample."""
    return run_dask(data["glob"], tmp_path_factory.mktemp("big") / "run", scheduler=client, seed=SEED,
                    npartitions=4, progress=False, max_collect=600, n_stability_runs=2, bases="all")


def test_above_max_collect_the_run_keeps_a_sample_and_what_is_exact_beside_it(sampled):
    """The tables steps 02-03 write hold a seeded sample with the run's own segments; sample.json keeps
    the exact hits, the run's cut and segment sizes; metrics say it is a sample of how many."""
    from seglib.config import Layout
    from seglib.steps import read_sample

    run, layout = sampled, sampled.layout
    assert run.result is None and not layout.result.exists()
    customers, X, seg = (pd.read_parquet(p) for p in (layout.customers, layout.scaled, layout.segments))
    assert customers.index.equals(X.index) and X.index.equals(seg.index) and X.index.is_monotonic_increasing
    metrics = json.loads(layout.metrics.read_text())
    assert metrics["n_customers"] == run.n_customers and metrics["sample_size"] == len(X)
    assert 0.5 * 600 < len(X) <= 600 < run.n_customers
    sample = read_sample(layout)
    assert sample.n_customers == run.n_customers and sample.sample_size == len(X)
    np.testing.assert_array_equal(sample.hits, run.hits)
    assert sample.hits.sum() == sample.segment_customers.sum() == run.n_customers
    assert sample.segment_customers.to_dict() == run.profile["customers"].to_dict()
    assert sample.unit_sums.shape == (run.hits.size, X.shape[1])
    np.testing.assert_array_equal(sample.unit_labels, run.clustering.unit_labels_)
    # the sampled customers are real ones with the segments the run's parts give them
    parts = pd.concat(pd.read_parquet(p) for p in run.parts).set_index("customerID")
    assert (parts.loc[seg["customer_id"], "segment"].to_numpy() == seg["segment"].to_numpy()).all()
    broken = layout.root.parent / "broken"
    (broken / "processed").mkdir(parents=True)
    (broken / "processed" / "sample.json").write_text('{"n_customers": 5}')
    with pytest.raises(InputError, match=r"broken/processed/sample\.json.*KeyError"):
        read_sample(Layout.for_run(broken))
    # the app's downloads need every customer: it refuses a sample and says where to open it
    from seglib.app import serve

    with pytest.raises(InputError, match="more customers than max_collect.*notebooks 03 and 04"):
        serve(run_dir=layout.root)


def test_notebooks_03_and_04_open_a_run_above_max_collect_on_its_sample(sampled, tmp_path, digests):
    """Steps 03 and 04 as the notebooks call them, on a run whose customers do not fit: the run's cut gives
    the sampled customers exactly the run's segments and the profile the exact sizes; nothing upstream is
    recomputed, and the run's full result (parts, segments.csv, model/) is never overwritten, also after
    a changed cut, for which the note says how to give it to every customer."""
    from seglib import steps
    from seglib.config import Layout
    from seglib.notebook import cluster_summary, profile_note, result_note
    from seglib.segmentation import Segmentation

    folder = shutil.copytree(sampled.layout.root, tmp_path / "run")
    layout = Layout.for_run(folder)
    before = digests(folder)
    written = pd.read_parquet(layout.segments)
    assert steps.load_som(folder).sample is not None

    cut = steps.cluster_step(out_dir=folder, seed=SEED, n_stability_runs=2)  # the run's cut
    assert cut.run_cut and cut.clustering.n_clusters_ == sampled.clustering.n_clusters_
    pd.testing.assert_frame_equal(cut.segments, written, check_dtype=False)
    np.testing.assert_array_equal(cut.hits, sampled.hits)
    np.testing.assert_array_equal(cut.unit_segments, Segmentation.load(folder).unit_labels_)  # the run's map
    text = cluster_summary(cut)
    assert f"of the run's {sampled.n_customers:,} customers" in text and "run's segments" in text
    changed = {k for k in before if digests(folder).get(k) != before[k]}
    assert changed <= {"processed/segments.parquet", "processed/metrics.json"}  # stability.json: the same
    assert not layout.clean_transactions.exists()

    profile = steps.profile_step(out_dir=folder)
    assert not profile.written and not layout.result.exists()
    expected = pd.read_csv(layout.segments_csv, index_col="segment")
    assert profile.profile["customers"].to_dict() == expected["customers"].to_dict()
    np.testing.assert_allclose(profile.profile["revenue_share"], expected["revenue_share"])
    assert len(profile.result) == len(written) < sampled.n_customers
    note = profile_note(profile)
    assert "sample of" in note and "result/part-*" in note and "exact" in note
    assert "not written" in result_note(profile)

    k = 3 if sampled.clustering.n_clusters_ != 3 else 4
    other = steps.cluster_step(out_dir=folder, seed=SEED, n_clusters=k, n_stability_runs=0)
    assert not other.run_cut and other.clustering.n_clusters_ == k
    assert "not the run's" in cluster_summary(other)
    profile = steps.profile_step(out_dir=folder)
    assert not profile.run_cut and profile.profile.index.tolist() == list(range(1, k + 1))
    assert f"seglib segment --backend dask --data DATA -p n_clusters {k}`" in profile_note(profile)
    steps.cluster_step(out_dir=folder, seed=SEED + 1, n_stability_runs=0)  # the run's cut but for the seed
    note = profile_note(steps.profile_step(out_dir=folder))
    assert f"with seed = {SEED}" in note and "-p " not in note  # another seed would train another map
    after = digests(folder)
    full = [k for k in before if k.startswith(("result/", "model/", "processed/som/"))] + [
        "segments.csv", "cleaning_report.json", "processed/features.json", "processed/sample.json"]
    assert {k: after[k] for k in full} == {k: before[k] for k in full}
    assert not layout.result.exists() and not layout.clean_transactions.exists()


def test_stability_on_a_sample_above_max_collect(sampled):
    run = sampled
    assert run.result is None  # above max_collect: parts only
    info = json.loads(run.layout.stability.read_text())
    assert info["n_runs"] == 2 and set(info["segments"]) <= {str(s) for s in run.profile.index}
    assert set(run.profile["stability"]) <= {"stable", "weak", "unstable", "not measured"}
    assert "age" in run.pipeline["features"].feature_names_


def test_saved_model_scores_like_the_run(runs, data, tmp_path):
    """A Dask run saves model/ too; scoring a file with it reproduces that file's segments."""
    from seglib.segmentation import Segmentation

    _, run = runs
    model = Segmentation.load(run.layout.root)
    first = data["parts"][0]
    scored = model.predict(first, as_of=run.report.as_of).set_index("customerID")
    result = read_result(run.result).set_index("customerID")
    only_here = scored.index.difference(pd.concat(
        pd.read_csv(p, dtype=str, usecols=["customerID"]) for p in data["parts"][1:])["customerID"])
    assert len(only_here) > 100  # customers whose every line is in the first part
    assert (scored.loc[only_here, "segment"] == result.loc[only_here, "segment"]).all()
    assert scored["novel"].mean() < 0.05


def test_som_weights_close_to_in_memory(runs):
    pandas_layout, run = runs
    expected = SOM.load(pandas_layout.som_dir)
    assert run.som.weights_.shape == expected.weights_.shape and run.som.weights_.dtype == np.float32
    np.testing.assert_allclose(run.som.weights_, expected.weights_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run.som.history_, expected.history_, rtol=1e-5)


def test_feature_pipeline_matches_in_memory_fit(runs):
    pandas_layout, run = runs
    expected = json.loads(pandas_layout.features_spec.read_text())
    got = json.loads((run.layout.features_spec).read_text())
    for key in ("params", "feature_names_", "medians_", "imputed_", "dropped_", "programmes_", "genders_",
                "as_of_", "indicators_", "transaction_key_"):
        assert got["features"][key] == expected["features"][key], key
    for key in ("feature_names_in_", "log1p_", "balanced_", "params"):
        assert got["scale"][key] == expected["scale"][key], key
    for key in ("center_", "scale_", "weights_"):
        np.testing.assert_allclose(got["scale"][key], expected["scale"][key], rtol=1e-12, atol=1e-12)


def test_steps_are_deterministic_and_hits_match_in_memory(client, data):
    cleaned = clean_dask(data["glob"], client=client, npartitions=3, progress=False)
    features = customer_features(cleaned, client=client)
    a = fit_som(features.X, SOM((6, 5), random_state=0, n_epochs=4), client=client, progress=False)
    b = fit_som(features.X.to_dask(), SOM((6, 5), random_state=0, n_epochs=4), client=client, progress=False)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    X = features.X.compute().to_numpy()
    hits = cluster_dask(a, features, client=client, n_clusters=4, n_stability_runs=0).hits
    np.testing.assert_array_equal(hits, a.hit_map(X))
    assert hits.sum() == features.n_customers == len(X)


def test_what_the_client_collects(client, data):
    """``collect_customers``: every customer up to ``max_collect``, else a seeded sample of at most that
    many in key order, rows aligned across the three tables; ``segment_totals`` and ``sample_rows``
    agree with the collected tables; the epoch loop's seconds reach ``timings``."""
    cleaned = clean_dask(data["glob"], client=client, npartitions=3, progress=False)
    features = customer_features(cleaned, client=client)
    timings = {}
    som = fit_som(features.X, SOM((5, 4), random_state=0, n_epochs=3), client=client, progress=False,
                  timings=timings)
    assert timings["som_epochs"] > 0
    clusters = cluster_dask(som, features, client=client, n_clusters=4, n_stability_runs=0)
    n = features.n_customers
    table, seg, X = collect_customers(features, clusters, n, SEED)
    assert len(table) == len(seg) == len(X) == n and set(X.index) == set(features.X.compute().index)
    totals = segment_totals(features, clusters)
    pd.testing.assert_series_equal(totals["customers"].astype("int64"),
                                   seg["segment"].value_counts().sort_index().astype("int64"),
                                   check_names=False)
    np.testing.assert_allclose(totals["money"].sum(), table["monetary"].fillna(0).sum())
    for size in (50, n // 2):
        t, s, x = collect_customers(features, clusters, size, SEED)
        assert len(x) <= size and x.index.is_monotonic_increasing and x.index.is_unique
        assert t.index.equals(x.index) and s.index.equals(x.index)
        pd.testing.assert_frame_equal(x, X.loc[x.index])
        pd.testing.assert_series_equal(s["segment"], seg.loc[x.index, "segment"])
        assert collect_customers(features, clusters, size, SEED)[2].index.equals(x.index)  # seeded
    assert not collect_customers(features, clusters, 50, SEED + 1)[2].index.equals(
        collect_customers(features, clusters, 50, SEED)[2].index)
    rows = sample_rows(features.X, 10 * n, SEED, n_rows=n)
    assert rows.shape == X.shape
    some = sample_rows(features.X, n // 4, SEED, n_rows=n)
    assert 0 < len(some) < n
    np.testing.assert_array_equal(some, sample_rows(features.X, n // 4, SEED, n_rows=n))  # seeded
    with pytest.raises(ParameterError, match="n_rows"):
        sample_rows(features.X, n // 4, SEED, n_rows=-1)
    with pytest.raises(ParameterError, match="max_collect"):
        collect_customers(features, clusters, 0, SEED)


def test_hexagonal_som_on_dask_is_the_in_memory_one(client, data):
    """The topology reaches the Dask epochs: the same hexagonal map as in memory, unlike a rectangular one."""
    cleaned = clean_dask(data["glob"], client=client, npartitions=3, progress=False)
    features = customer_features(cleaned, client=client)
    X = features.X.compute().to_numpy()
    hexagonal = SOM((6, 5), topology="hexagonal", random_state=0, n_epochs=4)
    got = fit_som(features.X, hexagonal, client=client, progress=False)
    expected = SOM((6, 5), topology="hexagonal", random_state=0, n_epochs=4, progress=False).fit(X)
    assert got.topology == "hexagonal"
    np.testing.assert_allclose(got.weights_, expected.weights_, rtol=1e-4, atol=1e-5)
    square = SOM((6, 5), random_state=0, n_epochs=4, progress=False).fit(X)
    assert np.abs(square.weights_ - expected.weights_).max() > 1e-2


def test_existing_cluster_by_address(client, data):
    address = client.scheduler.address  # what `dask scheduler` prints, e.g. tcp://host:8786
    with dask_client(address) as other:
        assert len(other.scheduler_info()["workers"]) == 2
        cleaned = clean_dask(data["parts"][:2], client=other, npartitions=2, progress=False)
        assert cleaned.report.invariant_holds and cleaned.partials.npartitions == 2
    assert client.scheduler_info()["workers"]  # the cluster outlives the connection
    with pytest.raises(ParameterError, match="local cluster"):
        with dask_client(address, n_workers=2):
            pass


def test_order_statistics_are_exact_over_partitions_on_workers(client):
    """The histogram passes of ``order_statistics`` / ``exact_medians`` through ``Partitions.reduce`` on
    a real client (partitions spread over two workers): the exact values. The algorithm itself, over
    several seeds, is tested in memory (tests/test_features.py::test_exact_order_statistics_of_blocks)."""
    rng = np.random.default_rng(0)
    values = np.round(rng.lognormal(0, 2, 3001), 1)  # heavy tail and many ties
    values[rng.random(values.size) < 0.1] = np.nan
    frames = [pd.DataFrame({"x": chunk, "y": -chunk}) for chunk in np.array_split(values, 5)]
    parts = Partitions(client.scatter(frames), frames[0].iloc[:0])
    low, high = np.nanmin(values), np.nanmax(values)
    stats = pd.DataFrame({"count": [np.isfinite(values).sum()] * 2, "min": [low, -high], "max": [high, -low]},
                         index=["x", "y"])
    ordered = np.sort(values[np.isfinite(values)])
    ranks = [0, 1, 100, len(ordered) // 2, len(ordered) - 1]
    got = order_statistics(parts.reduce, _identity, [("x", k) for k in ranks], stats, bins=8, small=20)
    assert got == [ordered[k] for k in ranks]
    medians = exact_medians(parts.reduce, _identity, stats)
    assert medians == pytest.approx({"x": np.nanmedian(values), "y": -np.nanmedian(values)}, rel=0, abs=0)


def _identity(part):
    return part


def test_bad_parameters_and_inputs(client, data, tmp_path):
    with pytest.raises(ParameterError, match="'pandas', 'dask'"):
        check_backend("spark")
    assert BACKENDS == ("pandas", "dask")
    with pytest.raises(ParameterError, match="backend"):
        run_segmentation(data["single"], tmp_path, backend="spark")
    with pytest.raises(ParameterError, match="backend='dask' only"):
        run_segmentation(data["single"], tmp_path, scheduler="tcp://localhost:8786")
    with pytest.raises(InputError, match="4 files"):
        run_segmentation(data["glob"], tmp_path)
    with pytest.raises(InputError, match="no file"):
        data_files(tmp_path / "nothing-*.csv")
    with pytest.raises(ParameterError, match="scheduler"):
        with dask_client(scheduler=8786):
            pass
    with pytest.raises(ParameterError, match="batch"):
        fit_som(Partitions(client.scatter([pd.DataFrame({"a": [0.0, 1.0]})]), pd.DataFrame({"a": []})),
                SOM(engine="minisom"), client=client)
    for name in ("n_clusters", "min_aeg"):  # another step's parameter, a misspelt one: before reading a file
        with pytest.raises(ParameterError, match=rf"'{name}' not a parameter of the clean step; "
                                                 r"valid ones: columns, .*\bas_of\b.*\bmax_age\b"):
            clean_dask(tmp_path / "nothing-*.csv", client=client, progress=False, **{name: 8})
    odd = pd.read_csv(data["parts"][0], dtype=str, keep_default_na=False).drop(columns="Gender")
    odd.to_csv(tmp_path / "part-00009.csv", index=False)
    with pytest.raises(InputError, match="part-00009.csv.*same columns"):
        clean_dask([data["parts"][0], tmp_path / "part-00009.csv"], client=client, progress=False)


def test_real_sample_agrees_with_pandas(client, real_sample, tmp_path):
    table = pd.read_csv(real_sample, dtype=str, keep_default_na=False)
    half = table["customerID"].map(hash) % 2  # whole customers per file
    files = []
    for i in (0, 1):
        files.append(tmp_path / f"part-{i}.csv")
        table[half == i].to_csv(files[-1], index=False)
    pandas_layout = run_segmentation(real_sample, tmp_path / "pandas", progress=False)
    run = run_dask(files, tmp_path / "dask", scheduler=client, npartitions=2, progress=False)
    expected = json.loads(pandas_layout.cleaning_report.read_text())
    assert {k: run.report.to_dict()[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}
    a, b = read_result(pandas_layout.result), read_result(run.result)
    both = a.merge(b, on="customerID")
    assert len(both) == len(a) == len(b)
    assert adjusted_rand_score(both["segment_x"], both["segment_y"]) >= 0.99
