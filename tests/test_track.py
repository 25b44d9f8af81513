"""Segments over time (seglib.track, seglib track): recovery of planted migration, tables, files, errors."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from seglib import params, pipeline
from seglib.cli import main
from seglib.errors import InputError, ParameterError
from seglib.plots import plot_segment_flows, plot_sizes_over_time, plot_transition_heatmap
from seglib.synthetic import make_transactions, write_dataset
from seglib.track import (
    INACTIVE,
    NEW,
    drift_table,
    period_labels,
    read_transactions,
    score_periods,
    track_segments,
    transition_table,
    write_tracking,
)

SEED = 2
#: A small map and as many segments as planted archetypes: customers x quarters stay fast.
TRAIN = {"map_shape": [8, 8], "n_clusters": 6, "seed": 0}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """1,000 customers over 5 quarters, 10% moving between archetypes from quarter to quarter."""
    path = tmp_path_factory.mktemp("track") / "tx.csv"
    data, truth = write_dataset(path, 1000, 6, SEED, periods=5, migration=0.1)
    return {"data": data, "truth": pd.read_csv(truth, dtype=str)}


@pytest.fixture(scope="module")
def tracked(planted, tmp_path_factory):
    """Trained on the first two quarters, the last three tracked with features over two quarters."""
    tracking = track_segments(planted["data"], train_periods=2, window=2, **TRAIN)
    out = tmp_path_factory.mktemp("out")
    write_tracking(tracking, out)
    tracking.model.save(out / "model")
    tracking.out_dir = out
    return tracking


def _planted_changes(truth: pd.DataFrame, a: str, b: str) -> float:
    wide = truth.pivot(index="customerID", columns="period", values="segment")
    both = wide[[a, b]].dropna()
    return float((both[a] != both[b]).mean())


# ---------------------------------------------------------------------------------------- generator


def test_planted_truth_has_one_row_per_customer_and_active_quarter(planted):
    tx = pd.read_csv(planted["data"], dtype=str, keep_default_na=False)
    truth = planted["truth"]
    assert list(truth.columns) == ["customerID", "period", "segment"]
    assert not truth.duplicated(["customerID", "period"]).any()
    quarters = pd.PeriodIndex(pd.to_datetime(tx["transactionDate"]), freq="Q").astype(str)
    active = set(zip(tx["customerID"], quarters))
    assert active == set(zip(truth["customerID"], truth["period"]))
    assert sorted(truth["period"].unique()) == ["2016Q2", "2016Q3", "2016Q4", "2017Q1", "2017Q2"]


@pytest.mark.parametrize("rate", [0.05, 0.2])
def test_planted_migration_rate(rate):
    _, truth = make_transactions(2000, 6, 0, periods=4, migration=rate)
    quarters = sorted(truth["period"].unique())
    moved = [_planted_changes(truth, a, b) for a, b in zip(quarters, quarters[1:])]
    assert np.allclose(moved, rate, atol=0.03), moved
    counts = truth.groupby("period").size()
    first_seen = truth.groupby("customerID")["period"].min().value_counts()
    assert first_seen.drop(quarters[0]).sum() > 0, "new customers join in later quarters"
    last_seen = truth.groupby("customerID")["period"].max()
    assert (last_seen < quarters[-1]).any(), "some customers lapse"
    assert counts.min() > 0


def test_generator_periods_parameters_are_checked():
    with pytest.raises(ParameterError, match="periods"):
        make_transactions(50, 6, 0, periods=9)
    with pytest.raises(ParameterError, match="migration"):
        make_transactions(50, 6, 0, periods=2, migration=1.5)


def test_without_periods_the_generator_is_unchanged(tmp_path):
    plain = write_dataset(tmp_path / "a.csv", 300, 6, 5)
    named = write_dataset(tmp_path / "b.csv", 300, 6, 5, periods=None, migration=0.3)
    assert [p.read_bytes() for p in plain] == [p.read_bytes() for p in named]
    assert list(pd.read_csv(plain[1]).columns) == ["customerID", "segment"]


# ---------------------------------------------------------------------------------------- recovery


def test_found_migration_matches_planted(tracked, planted):
    """The share of customers whose segment changed between consecutive quarters, planted vs found."""
    changed = tracked.changed()
    assert len(changed) == 2
    for row in changed.itertuples():
        planted_share = _planted_changes(planted["truth"], row.period_from, row.period_to)
        assert abs(row.changed_share - planted_share) <= 0.05, (row, planted_share)


def test_transition_counts_add_up(tracked):
    bp, trans = tracked.by_period, tracked.transitions
    for (a, b), part in trans.groupby(["period_from", "period_to"]):
        in_a = set(bp.index[bp["period"] == a])
        in_b = set(bp.index[bp["period"] == b])
        both = part[(part["segment_from"] != NEW) & (part["segment_to"] != INACTIVE)]
        assert both["customers"].sum() == len(in_a & in_b)
        assert part.loc[part["segment_from"] != NEW, "customers"].sum() == len(in_a)
        assert part.loc[part["segment_to"] != INACTIVE, "customers"].sum() == len(in_b)
        assert part.loc[part["segment_to"] == INACTIVE, "customers"].sum() == len(in_a - in_b)
        assert part.loc[part["segment_from"] == NEW, "customers"].sum() == len(in_b - in_a)
        assert (part["customers"] > 0).all()


def test_tracking_scores_only_periods_after_training(tracked, planted):
    assert tracked.trained_on == ["2016Q2", "2016Q3"]
    assert tracked.periods == ["2016Q4", "2017Q1", "2017Q2"]
    truth = planted["truth"]
    for period in tracked.periods:  # every customer active in the period, and only those
        scored = set(tracked.by_period.loc[tracked.by_period["period"] == period, "customerID"])
        assert scored == set(truth.loc[truth["period"] == period, "customerID"])


def test_sizes_and_drift(tracked):
    sizes = tracked.sizes
    k = tracked.model.n_segments_
    assert len(sizes) == k * len(tracked.periods)
    per = sizes.groupby("period")
    assert np.allclose(per["share"].sum(), 1) and np.allclose(per["revenue_share"].sum(), 1)
    counts = tracked.by_period.groupby("period").size()
    assert (per["customers"].sum() == counts.reindex(per["customers"].sum().index)).all()
    drift = tracked.drift
    assert list(drift["period"]) == tracked.periods
    assert ((drift["novel_share"] >= 0) & (drift["novel_share"] <= 1)).all()
    # like the training customers: few novel, about the same quantization error, no retraining
    assert (drift["novel_share"] < 0.05).all() and (drift["error_ratio"] < 1.25).all()
    assert not drift["retrain"].any()
    strict = drift_table(tracked.by_period, tracked.model, retrain_novel_share=0.0, retrain_error_ratio=1.0)
    assert strict["retrain"].any() and strict["recommendation"].str.startswith("retrain").any()


def test_drift_flags_customers_unlike_the_training_ones(tracked, planted):
    """Multiplying every amount by 8 makes the customers unlike any segment: retraining is recommended."""
    clean = read_transactions(planted["data"], tracked.model)
    clean["amount"] = clean["amount"] * 8
    by_period, _ = score_periods(tracked.model, clean, window=2, first="2016Q4")
    drift = drift_table(by_period, tracked.model)
    assert drift["retrain"].all()
    assert (drift["novel_share"] > tracked.drift["novel_share"].max()).all()


# ---------------------------------------------------------------------------------------- files


def test_files_and_columns(tracked):
    out = tracked.out_dir
    by_period = pd.read_csv(out / "by_period.csv", dtype={"customerID": str, "period": str})
    assert list(by_period.columns) == ["customerID", "period", "segment", "segment_name", "distance", "novel"]
    assert list(pd.read_csv(out / "transitions.csv").columns) == [
        "period_from", "period_to", "segment_from", "segment_to", "customers"]
    assert list(pd.read_csv(out / "sizes.csv").columns) == ["period", "segment", "customers", "share",
                                                           "revenue_share"]
    drift = pd.read_csv(out / "drift.csv")
    assert {"novel_share", "quantization_error", "training_quantization_error", "retrain",
            "recommendation"} <= set(drift.columns)
    for name in ("track_flows", "track_sizes", "track_transitions"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "tracking.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "src='http" not in page


def test_same_inputs_give_the_same_bytes(tracked, planted, tmp_path):
    again = track_segments(planted["data"], tracked.out_dir / "model", window=2)
    write_tracking(again, tmp_path, figures=False)
    first = again.periods.index("2016Q4")
    assert again.periods[first:] == tracked.periods
    one = pd.read_csv(tmp_path / "by_period.csv", dtype=str)
    two = pd.read_csv(tracked.out_dir / "by_period.csv", dtype=str)
    one = one[one["period"].isin(tracked.periods)].reset_index(drop=True)
    pd.testing.assert_frame_equal(one, two)
    repeat = track_segments(planted["data"], tracked.out_dir / "model", window=2)
    write_tracking(repeat, tmp_path / "again", figures=False)
    for name in ("by_period.csv", "transitions.csv", "sizes.csv", "drift.csv"):
        assert (tmp_path / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


@pytest.mark.parametrize("period, label", [("month", "2016-10"), ("quarter", "2016Q4"), ("year", "2016")])
def test_period_labels_are_pandas_period_strings(tracked, planted, period, label):
    tracking = track_segments(planted["data"], tracked.model, period=period)
    assert label in tracking.periods
    assert all(str(pd.Period(p, freq=period_labels(pd.Series(pd.to_datetime(["2016-10-05"])), period)
                              .iloc[0].freqstr)) == p for p in tracking.periods)


# ---------------------------------------------------------------------------------------- bad input


def test_a_period_without_customers_is_reported_and_skipped(tracked, planted, tmp_path, caplog):
    tx = pd.read_csv(planted["data"], dtype=str, keep_default_na=False)
    quarter = pd.PeriodIndex(pd.to_datetime(tx["transactionDate"]), freq="Q").astype(str)
    gap = tmp_path / "gap.csv"
    tx[quarter != "2017Q1"].to_csv(gap, index=False)
    tracking = track_segments(gap, tracked.model)
    assert tracking.skipped == ["2017Q1"] and "2017Q1" not in tracking.periods
    assert "2017Q1 has no customers" in caplog.text
    pairs = set(zip(tracking.transitions["period_from"], tracking.transitions["period_to"]))
    assert ("2016Q4", "2017Q2") in pairs


def test_missing_roles_are_one_clear_error(tracked, planted, tmp_path):
    tx = pd.read_csv(planted["data"], dtype=str, keep_default_na=False)
    path = tmp_path / "fewer.csv"
    tx.drop(columns=["DOB", "discountUsed"]).to_csv(path, index=False)
    model = tracked.model
    assert model.columns is not None
    with pytest.raises(InputError, match=r"dob \(column 'DOB'\).*discounts \(column 'discountUsed'\)"):
        track_segments(path, model)
    tx.drop(columns=["product_code", "PinCode"]).to_csv(path, index=False)  # identifiers, not features
    assert track_segments(path, model).periods


def test_too_few_periods_for_training(planted):
    with pytest.raises(ParameterError, match="train_periods=5.*5 quarter"):
        track_segments(planted["data"], train_periods=5, **TRAIN)


@pytest.mark.parametrize("kwargs, match", [
    ({"period": "week"}, "period"), ({"window": 0}, "window"), ({"train_periods": 0}, "train_periods"),
])
def test_bad_parameters(tracked, planted, kwargs, match):
    model = None if "train_periods" in kwargs else tracked.model
    with pytest.raises(ParameterError, match=match):
        track_segments(planted["data"], model, **kwargs)


def test_model_or_training_not_both(tracked, planted):
    with pytest.raises(ParameterError, match="not both"):
        track_segments(planted["data"], tracked.model, train_periods=2)
    with pytest.raises(ParameterError, match="no model"):
        track_segments(planted["data"])


# ---------------------------------------------------------------------------------------- command line


def test_cli_track_with_a_saved_model(tracked, planted, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["-q", "track", "--data", str(planted["data"]), "--model", str(tracked.out_dir), "--window",
                 "2", "--out", str(out), "--no-progress"])
    assert code == 0
    assert "quarters tracked" in capsys.readouterr().out
    assert not (out / "model").exists(), "a saved model is used as it is"
    assert set(pd.read_csv(out / "by_period.csv", dtype=str)["period"]) >= set(tracked.periods)


def test_cli_track_errors_are_one_line(planted, tmp_path, capsys):
    args = ["track", "--data", str(planted["data"]), "--train-periods", "2", "--out", str(tmp_path),
            "-p", "n_clusters", "6", "-p", "colour", "red"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'colour'" in err and "Traceback" not in err
    assert main(["track", "--data", str(planted["data"]), "--model", str(tmp_path), "-p", "n_clusters",
                 "4"]) == 2
    assert "--train-periods" in capsys.readouterr().err


def test_cli_make_data_with_periods(tmp_path):
    assert main(["-q", "make-data", "--out", str(tmp_path / "q.csv"), "--customers", "100", "--periods",
                 "3", "--migration", "0.2", "--seed", "1"]) == 0
    truth = pd.read_csv(tmp_path / "q_truth.csv", dtype=str)
    assert list(truth.columns) == ["customerID", "period", "segment"]
    assert set(truth["period"]) == {"2016Q4", "2017Q1", "2017Q2"}


@pytest.mark.parametrize("command", ["run", "segment"])
def test_tracking_parameters_need_track(command, planted, tmp_path, capsys):
    args = [command, "--data", str(planted["data"]), "--out", str(tmp_path / "run"), "-p", "period", "month"]
    assert main(args) == 2
    assert "--track" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    # a parameters.yaml lists every parameter: the tracking defaults need no --track
    defaults = tmp_path / "parameters.yaml"
    defaults.write_text("".join(f"{n}: {params.as_yaml(v)}\n" for n, v in params.defaults("track").items()))
    missing = tmp_path / "no-such.csv"
    args = [command, "--data", str(missing), "--params-file", str(defaults), "--out", str(tmp_path / "r")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no-such.csv" in err and "--track" not in err


# ---------------------------------------------------------------------------------------- Dask


def test_dask_scores_the_same(tracked, planted, tmp_path):
    pytest.importorskip("distributed")
    from seglib.distributed import dask_client

    with dask_client(n_workers=1, memory_limit="1GB", dashboard_address=":0") as client:
        on_dask = pipeline.track(planted["data"], tmp_path / "dask", model=tracked.out_dir,
                                 parameters={"window": 2}, backend="dask", scheduler=client, progress=False)
    in_memory = track_segments(planted["data"], tracked.model, window=2)
    pd.testing.assert_frame_equal(on_dask.by_period, in_memory.by_period)
    assert (tmp_path / "dask" / "transitions.csv").is_file()


# ---------------------------------------------------------------------------------------- plots


def test_plots_return_axes(tracked):
    names = tracked.model.segment_names_
    ax = plot_segment_flows(tracked.transitions, n_segments=tracked.model.n_segments_, names=names)
    assert ax.get_xticklabels()[0].get_text() == tracked.periods[0]
    bands = ax.collections[0]  # one polygon per (segment, next segment) pair with customers
    moves = tracked.transitions[~tracked.transitions["segment_from"].isin([NEW]) &
                                ~tracked.transitions["segment_to"].isin([INACTIVE])]
    assert len(bands.get_paths()) == len(moves)
    _, ax2 = plt.subplots()
    assert plot_sizes_over_time(tracked.sizes, value="customers", ax=ax2) is ax2
    assert len(ax2.lines) == tracked.model.n_segments_
    ax3 = plot_transition_heatmap(tracked.transitions)
    assert [t.get_text() for t in ax3.get_xticklabels()][-1] == INACTIVE
    with pytest.raises(ParameterError):
        plot_sizes_over_time(tracked.sizes, value="revenue")


def test_transition_table_of_handmade_periods():
    by_period = pd.DataFrame({
        "period": ["A", "A", "A", "B", "B", "B"], "segment": [1, 2, 2, 1, 1, 3],
    }, index=pd.Index(["x", "y", "z", "x", "y", "w"], name="customer_key"))
    table = transition_table(by_period, ["A", "B"])
    got = {(r.segment_from, r.segment_to): r.customers for r in table.itertuples()}
    assert got == {("1", "1"): 1, ("2", "1"): 1, ("2", INACTIVE): 1, (NEW, "3"): 1}


def test_training_on_a_hexagonal_map(planted):
    hexagonal = {**TRAIN, "topology": "hexagonal"}
    tracking = track_segments(planted["data"], train_periods=2, window=2, **hexagonal)
    assert tracking.model.som_.topology == "hexagonal"
    assert tracking.changed()["changed_share"].between(0, 1).all()


def test_segment_with_track_tracks_the_new_model(planted, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["-q", "segment", "--data", str(planted["data"]), "--out", str(run), "--track", "--no-progress",
            "-p", "map_shape", "[6, 6]", "-p", "n_clusters", "6", "-p", "period", "year"]
    assert main(args) == 0
    by_period = pd.read_csv(run / "tracking" / "by_period.csv", dtype=str)
    assert set(by_period["period"]) == {"2016", "2017"}
    info = pd.read_json(run / "run.json", typ="series")
    assert info["track"] is True or info["track"] == 1
    assert "track" in info["timings"]
