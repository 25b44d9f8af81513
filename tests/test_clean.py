"""Cleaning rules, the report's accounting, reproducibility, the real sample, the plots."""

from __future__ import annotations

import csv
import importlib
import io
import re
import tempfile
from datetime import datetime
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from seglib.clean import (
    RULES,
    CleaningReport,
    clean_file,
    clean_partition,
    clean_transactions,
    combine_plausibility_stats,
    customer_key,
    default_as_of,
    plausibility_stats,
    plausible_bounds,
    rules_table,
)
from seglib.errors import InputError, ParameterError, SeglibError
from seglib.load import DEFAULT_COLUMNS, ROLES, load_transactions
from seglib.plots._clean import (
    plot_age_distribution,
    plot_spend_distribution,
    plot_transactions_per_customer,
)

ROOT = Path(__file__).resolve().parent.parent
JSON_KEYS = {"rows_read", "rows_kept", "rows_dropped", "values_changed", "customers_read", "customers_kept",
             "input_encoding"}  # fmt: skip
CONTRACT_DTYPES = {
    "row": "int64", "customer_id": "string", "customer_key": "string", "date": "datetime64[ns]",
    "amount": "float64", "line_type": "string", "dob": "datetime64[ns]", "age": "float64",
    "gender": "string", "pincode": "string", "store": "string", "till": "string", "transaction": "string",
    "product": "string", "promo_code": "string", "is_promo": "bool", "discounts": "string",
}  # fmt: skip


def frame(n=None, **columns) -> pd.DataFrame:
    """A raw frame of role columns; required roles get valid defaults."""
    n = n or max((len(v) for v in columns.values()), default=1)
    base = {
        "customer_id": [f"BBID_{i}" for i in range(n)],
        "date": ["2017-06-30"] * n,
        "amount": ["10"] * n,
    }
    return pd.DataFrame({**base, **columns}, dtype=object)


def clean(raw, **kw):
    kw.setdefault("as_of", "2017-07-01")
    return clean_transactions(raw, **kw)


# ---------------------------------------------------------------------------------- rules, one by one
def test_rules_are_named_documented_and_ordered():
    table = rules_table()
    assert table["name"].is_unique
    assert set(table["kind"]) <= {"drop", "change", "flag"}
    assert all(d and "\n" not in d for d in table["description"])
    names = [r.name for r in RULES]
    # drops of required fields come before the value rules, so change counts refer to kept rows
    assert max(names.index(n) for n in ("missing_customer_id", "unparseable_amount")) < names.index("gender")


# ---------------------------------------------------------------------------------- implausible values
def log_frame(n=60, seed=0, **overrides) -> pd.DataFrame:
    """A plausible log of ``n`` rows over about a year, then the ``overrides`` (position -> value)."""
    rng = np.random.default_rng(seed)
    days = pd.Timestamp("2016-07-01") + pd.to_timedelta(rng.integers(0, 360, n), unit="D")
    raw = frame(
        customer_id=[f"C_{i % 9}" for i in range(n)],
        date=list(days.strftime("%Y-%m-%d")),
        amount=[f"{v:.2f}" for v in rng.lognormal(4, 1, n)],
    )
    for col, changes in overrides.items():
        for pos, value in changes.items():
            raw.loc[pos, col] = value
    return raw


def test_placeholder_and_typo_dates_are_dropped_and_as_of_comes_from_the_kept_ones():
    raw = log_frame(date={3: "1900-01-01", 7: "1970-01-01", 11: "2099-05-05"})
    out, rep = clean_transactions(raw)
    assert rep.rows_dropped["implausible_date"] == 3 and rep.invariant_holds
    assert out["date"].between("2016-01-01", "2018-01-01").all()
    kept_last = out["date"].max().normalize()
    assert rep.as_of == (kept_last + pd.Timedelta(days=1)).date().isoformat() == out.attrs["as_of"]
    assert rep.settings["min_date"] <= out["date"].min().date().isoformat()
    assert rep.settings["max_date"] == kept_last.date().isoformat()


def test_a_date_at_the_edge_of_the_datetime_range_is_dropped_too():
    # 1677 to 2017 is more than 292 years: a difference in nanoseconds would overflow
    _, rep = clean_transactions(log_frame(date={3: "1677-09-22", 4: "2262-04-11"}))
    assert rep.rows_dropped["implausible_date"] == 2 and rep.as_of < "2018"


def test_a_log_without_gaps_loses_no_row_to_the_plausibility_rules():
    raw = log_frame(300, seed=2)
    _, rep = clean_transactions(raw)
    assert rep.rows_dropped["implausible_date"] == rep.rows_dropped["implausible_amount"] == 0


def test_the_date_window_can_be_given():
    raw = log_frame(date={3: "1900-01-01"})
    out, rep = clean_transactions(raw, min_date="1899-01-01")
    assert rep.rows_dropped["implausible_date"] == 0 and out["date"].min() == pd.Timestamp("1900-01-01")
    out, rep = clean_transactions(raw, max_date="2016-12-31")
    assert (out["date"] <= "2016-12-31").all() and rep.rows_dropped["implausible_date"] > 1
    assert rep.as_of <= "2017-01-01"
    with pytest.raises(ParameterError, match="min_date"):
        clean_transactions(raw, min_date="2017-01-01", max_date="2016-01-01")
    with pytest.raises(ParameterError, match="max_date"):
        clean_transactions(raw, max_date="today")


def test_amounts_beyond_the_plausible_bound_are_dropped():
    raw = log_frame(amount={2: "1e308", 5: "-1e300", 8: "3e9"})
    out, rep = clean_transactions(raw)
    assert rep.rows_dropped["implausible_amount"] == 3
    # the median amount is in the tens: the default bound is 10 ** (1 + 6)
    assert rep.settings["max_amount"] == 1e7 and out["amount"].abs().max() <= 1e7
    out, rep = clean_transactions(raw, max_amount=1e10)
    assert rep.rows_dropped["implausible_amount"] == 2 and out["amount"].abs().max() == 3e9
    for bad in (0, -5, float("inf"), "big", 1e16, True):
        with pytest.raises(ParameterError, match="max_amount"):
            clean_transactions(raw, max_amount=bad)


def test_an_implausible_amount_on_the_last_day_does_not_set_as_of():
    raw = log_frame()
    raw.loc[len(raw)] = ["C_1", "2017-06-28", "1e200"]
    raw.loc[len(raw)] = ["C_2", "2017-06-29", "1e200"]
    _, rep = clean_transactions(raw)
    assert rep.rows_dropped["implausible_amount"] == 2
    assert rep.as_of < "2017-06-29"


@pytest.mark.parametrize("cut", [1, 20, 59])
def test_plausibility_stats_of_parts_add_up_to_the_whole(cut):
    raw = log_frame(date={3: "1900-01-01", 30: "2099-01-01"}, amount={9: "1e308", 40: "abc"})
    whole = plausibility_stats(raw, "%Y-%m-%d")
    parts = combine_plausibility_stats([plausibility_stats(raw.iloc[:cut], "%Y-%m-%d"),
                                        plausibility_stats(raw.iloc[cut:], "%Y-%m-%d")])
    pd.testing.assert_frame_equal(parts["days"], whole["days"])
    pd.testing.assert_series_equal(parts["decades"], whole["decades"], check_names=False)
    assert plausible_bounds(parts) == plausible_bounds(whole)


def test_a_derived_amount_is_quantity_times_unit_price_and_reported(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"cust": ["a", "a", "b", "b", "c"], "day": ["2017-01-01"] * 5,
                  "qty": ["2", "3", "", "x", "1"],
                  "price": ["1.5", "2", "3", "4", "1e308"]}).to_csv(path, index=False)
    columns = {"customer_id": "cust", "date": "day", "quantity": "qty", "unit_price": "price"}
    out, rep = clean_file(path, columns)
    assert out["amount"].tolist() == [3.0, 6.0] and out["quantity"].tolist() == [2.0, 3.0]
    assert rep.derived == {"amount": "quantity * unit_price"}
    assert rep.rows_dropped["missing_amount"] == 1 and rep.rows_dropped["unparseable_amount"] == 1
    assert rep.rows_dropped["implausible_amount"] == 1 and rep.invariant_holds
    assert ("derived", "amount") in set(zip(rep.to_frame()["section"], rep.to_frame()["name"]))
    assert CleaningReport.from_dict(rep.to_dict()).derived == rep.derived
    # with an amount column, quantity and unit price are kept beside it and never replace it
    path2 = tmp_path / "u.csv"
    pd.DataFrame({"cust": ["a"], "day": ["2017-01-01"], "total": ["10"], "qty": ["4"],
                  "price": ["2"]}).to_csv(path2, index=False)
    out, rep = clean_file(path2, {**columns, "amount": "total"})
    assert out["amount"].tolist() == [10.0] and rep.derived == {}


def test_no_amount_and_no_quantity_times_price_is_an_input_error_that_says_how(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"cust": ["a"], "day": ["2017-01-01"], "qty": ["2"]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="quantity and unit_price"):
        clean_file(path, {"customer_id": "cust", "date": "day", "quantity": "qty"})


def test_duplicates_are_counted_and_kept_or_dropped_on_request():
    raw = frame(customer_id=["A_1", "A_1", "A_2"], amount=["5", "5", "5"])
    out, rep = clean(raw)
    assert len(out) == 3 and rep.duplicate_rows == 1 and "duplicate_row" not in rep.rows_dropped
    out, rep = clean(raw, drop_duplicates=True)
    assert out["row"].tolist() == [1, 3] and rep.duplicate_rows == 1
    assert rep.rows_dropped["duplicate_row"] == 1


def test_rows_differing_in_any_one_column_are_not_duplicates():
    # equal on the columns compared first (id, date, amount), different in one other column each
    raw = frame(customer_id=["A_1"] * 5, amount=["5"] * 5, gender=["m", "m", "f", "m", "m"],
                product=["p", "p", "p", "q", "p"], pincode=["625011"] * 4 + ["625012"])
    for drop in (False, True):
        out, rep = clean(raw, drop_duplicates=drop)
        assert rep.duplicate_rows == 1 == int(raw.duplicated().sum())
        assert out["row"].tolist() == ([1, 3, 4, 5] if drop else [1, 2, 3, 4, 5])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("drop", [False, True])
def test_the_cleaner_equals_its_rules_applied_one_after_another(seed, drop):
    """Drop rules are evaluated as masks and the frame filtered once: the same rows, values and counts
    as applying every rule's ``func`` to the rows the earlier rules kept."""
    raw = random_frame(seed)
    raw = pd.concat([raw, raw.iloc[::7]])  # exact duplicates (the loader's row numbers repeat)
    raw.index = pd.RangeIndex(1, len(raw) + 1, name="row")
    kw = dict(date_format="%Y-%m-%d", dob_format="%Y-%m-%d", drop_duplicates=drop)
    out, rep = clean_partition(raw, "2017-07-01", **kw)

    df = pd.DataFrame({c: raw[c].astype(str) for c in raw.columns}).reset_index()
    settings_ = rep.settings
    from seglib.clean import _Settings

    s = _Settings(pd.Timestamp("2017-07-01"), settings_["min_age"], settings_["max_age"], "%Y-%m-%d",
                  "%Y-%m-%d", drop, max_amount=settings_["max_amount"])
    counts = {}
    for rule in RULES:
        if rule.role is None or rule.role in raw.columns:
            n = len(df)
            df, count = rule.func(df, s)
            counts[rule.name] = n - len(df) if rule.kind == "drop" else count
    assert [counts[k] for k in rep.rows_dropped if k != "duplicate_row"] == \
        [v for k, v in rep.rows_dropped.items() if k != "duplicate_row"]
    assert {k: counts[k] for k in rep.values_changed} == rep.values_changed
    assert {k: counts[k] for k in rep.rows_flagged} == rep.rows_flagged
    assert rep.rows_flagged["duplicate_row"] == int(raw.duplicated().sum()) > 0
    assert out["row"].tolist() == df["row"].tolist()
    assert out["customer_key"].tolist() == df["customer_key"].tolist()
    assert out["date"].tolist() == df["date"].tolist() and out["amount"].tolist() == df["amount"].tolist()
    assert rep.customers_kept == df["customer_key"].nunique()
    # the cleaner works once per distinct value, on categoricals: every output column is the same
    from seglib.clean import _assemble

    pd.testing.assert_frame_equal(out, _assemble(df, raw.columns), check_exact=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_duplicates_found_on_value_numbers_are_pandas_duplicates(seed):
    """Rows compared by the numbers of their values, combined into one integer (renumbered when the
    combinations would overflow), are duplicates exactly when pandas says so."""
    from seglib.clean import _duplicated

    rng = np.random.default_rng(seed)
    n = 400
    df = pd.DataFrame({f"c{i}": rng.choice([f"v{j}" for j in range(int(rng.integers(1, 2000)))], size=n)
                       for i in range(12)}, dtype=str)  # 12 columns of up to 2000 values: over 2**62
    df = pd.concat([df, df.sample(80, random_state=seed)], ignore_index=True)
    df["customer_id"], df["date"], df["amount"] = rng.choice(["a", "b"], len(df)), "2017-01-01", "1"
    cols = list(df.columns)
    np.testing.assert_array_equal(_duplicated(df, cols), df[cols].duplicated().to_numpy())
    few = ["customer_id", "date"]
    np.testing.assert_array_equal(_duplicated(df, few), df[few].duplicated().to_numpy())


def test_text_columns_are_chunked_as_the_text_rules_left_them(tmp_path):
    """The Parquet writer's switch from dictionary to plain encoding depends on the Arrow chunks: the
    cleaned text columns are chunked as when the rules worked on the text itself: the input's chunks
    when no row is dropped, one chunk when some are."""
    import pyarrow as pa

    from seglib.clean import _chunk_lengths

    text_dtype = pd.StringDtype("pyarrow", na_value=np.nan)

    def chunked(raw):
        for col in raw.columns:
            text = raw[col].astype(str).tolist()
            pieces = pa.chunked_array([text[:2], text[2:5], text[5:]], type=pa.large_string())
            raw[col] = pd.Series(pd.arrays.ArrowStringArray(pieces, dtype=text_dtype))
        return raw

    stores = ["1", "2", "", "3", "4", "5", "6"]
    out, rep = clean(chunked(frame(customer_id=["A_1", "", "A_2", "A_3", "", "A_4", "A_5"], store=stores)))
    assert rep.rows_dropped["missing_customer_id"] == 2
    assert _chunk_lengths(out["customer_id"]) == _chunk_lengths(out["store"]) == [5]
    assert out["store"].tolist() == ["1", pd.NA, "3", "5", "6"]
    out, rep = clean(chunked(frame(customer_id=[f"A_{i}" for i in range(1, 8)], store=stores)))
    assert sum(rep.rows_dropped.values()) == 0
    assert _chunk_lengths(out["customer_id"]) == _chunk_lengths(out["store"]) == [2, 3, 2]


@pytest.mark.parametrize("seed", [0, 1])
def test_customer_keys_are_the_ids_trimmed_without_their_prefix(seed):
    rng = np.random.default_rng(seed)
    parts = ["BBID_", "bbid_", "X_", "_", "A1_", " ", "7", "0042", "é_", "Ab_Cd_", "", "12_3"]
    ids = pd.Series(["".join(rng.choice(parts, size=rng.integers(0, 4))) for _ in range(300)])
    expected = [re.sub(r"^[A-Za-z]+_", "", v.strip()).strip() for v in ids]
    assert customer_key(ids).tolist() == expected


def test_rows_missing_a_required_field_are_dropped_with_their_reason():
    raw = frame(
        customer_id=["", "  ", "BBID_", "BBID_1", "BBID_2", "BBID_3", "BBID_4", "BBID_5", "BBID_6", "BBID_7"],
        date=["2017-01-01"] * 3 + ["", "31/31/2017", "2017-01-01", "2017-01-01", "2017-01-01", "2017-01-01",
                                   "2017-01-02"],
        amount=["1"] * 5 + ["", "abc", "inf", "1e400", "-3"],
    )  # fmt: skip
    out, rep = clean(raw)
    assert rep.rows_dropped == {
        "missing_customer_id": 3, "missing_date": 1, "unparseable_date": 1,
        "missing_amount": 1, "unparseable_amount": 3, "implausible_date": 0, "implausible_amount": 0,
    }  # fmt: skip
    assert out["row"].tolist() == [10] and rep.rows_kept == 1 and rep.invariant_holds


def test_a_missing_optional_field_never_drops_a_row():
    raw = frame(dob=["1980-01-02", "", "NANA"], pincode=["", "", "999999"], gender=["", "", ""],
                promo_code=["", "", ""], discounts=["", "", ""], store=["", "", ""])  # fmt: skip
    out, rep = clean(raw)
    assert len(out) == 3 and sum(rep.rows_dropped.values()) == 0


def test_strip_id_prefix_keeps_the_original_id():
    raw = frame(customer_id=["BBID_0042", "12", " BBID_7 ", "CUST_x_1"])
    out, rep = clean(raw)
    assert out["customer_id"].tolist() == ["BBID_0042", "12", " BBID_7 ", "CUST_x_1"]
    assert out["customer_key"].tolist() == ["0042", "12", "7", "x_1"]  # leading zeros kept, one prefix
    assert rep.values_changed["strip_id_prefix"] == 3


def test_dob_placeholders_and_unparseable_values_become_missing():
    raw = frame(dob=["NANA", "nana", "garbage", "", "1980-01-02"])
    out, rep = clean(raw)
    assert out["dob"].isna().tolist() == [True, True, True, True, False]
    assert rep.values_changed["dob_placeholder"] == 2
    assert rep.values_changed["dob_unparseable"] == 1  # the empty DOB was already missing: not a change
    assert rep.missing_values["dob"] == 4


@pytest.mark.parametrize(
    "dob, as_of, age",
    [
        ("1980-07-01", "2017-07-01", 37),  # birthday on as_of
        ("1980-07-02", "2017-07-01", 36),  # the day before the birthday
        ("2002-07-01", "2017-07-01", 15),  # min_age is inclusive
        ("2002-07-02", "2017-07-01", None),  # 14: too young
        ("1918-07-01", "2017-07-01", 99),  # max_age is inclusive
        ("1917-07-01", "2017-07-01", None),  # 100: too old
        ("2000-02-29", "2017-02-28", 16),  # leap-day birthday not reached
        ("2000-02-29", "2017-03-01", 17),
        ("2020-01-01", "2017-07-01", None),  # born after as_of
    ],
)
def test_age_in_whole_years_at_as_of(dob, as_of, age):
    out, rep = clean(frame(dob=[dob]), as_of=as_of)
    got = out["age"].iloc[0]
    assert (np.isnan(got) if age is None else got == age)
    assert rep.values_changed["age_out_of_range"] == (age is None)
    assert out["dob"].notna().all()  # an implausible age keeps its DOB


def test_age_range_is_a_parameter():
    raw = frame(dob=["2007-01-01", "1930-01-01"])
    out, _ = clean(raw, min_age=10, max_age=80)
    assert out["age"].tolist()[0] == 10 and np.isnan(out["age"].tolist()[1])


def test_empty_gender_becomes_unknown():
    out, rep = clean(frame(gender=["", "NANA", " Male", "female"]))
    assert out["gender"].tolist() == ["unknown", "unknown", "male", "female"]
    assert rep.values_changed["gender"] == 3


def test_placeholder_and_malformed_pincodes_become_missing():
    values = ["999999", "111111", "12345", "0123456", "62501A", "062501", "", "625011"]
    out, rep = clean(frame(pincode=values))
    assert out["pincode"].isna().tolist() == [True] * 7 + [False]
    assert rep.values_changed["pincode_placeholder"] == 6  # the empty one was already missing


def test_promo_codes_are_text_and_nonpromo_means_no_promotion():
    out, rep = clean(frame(promo_code=["NONPROMO", "", "LOCALPROMO", "0000869304", "5050"]))
    assert out["promo_code"].isna().tolist() == [True, True, False, False, False]
    assert out["promo_code"].tolist()[2:] == ["LOCALPROMO", "0000869304", "5050"]  # leading zeros intact
    assert out["is_promo"].tolist() == [False, False, True, True, True]
    assert rep.values_changed["nonpromo"] == 1


def test_discounts_become_a_canonical_set():
    values = ["T24Club,Payback", "Payback,T24Club", "Payback, Payback", "", "NA", "Payback"]
    out, rep = clean(frame(discounts=values))
    assert out["discounts"].tolist() == ["Payback,T24Club", "Payback,T24Club", "Payback", "", "", "Payback"]
    assert rep.values_changed["discount_set"] == 3


def test_zero_price_lines_and_returns_are_kept_apart_and_counted():
    out, rep = clean(frame(amount=["72", "0", "-12.5", "-0", "0.0"]))
    assert out["line_type"].tolist() == ["sale", "zero", "return", "zero", "zero"]
    assert out["amount"].tolist() == [72.0, 0.0, -12.5, 0.0, 0.0]
    assert rep.rows_flagged["zero_price_line"] == 3 and rep.rows_flagged["return_line"] == 1


def test_output_follows_the_contract(tmp_path):
    raw = load_transactions(write_rows(tmp_path / "t.csv", [good_row(), good_row(cust="BBID_9")]))
    out, rep = clean_transactions(raw)
    assert list(out.columns) == list(CONTRACT_DTYPES)
    assert {c: str(t) for c, t in out.dtypes.items()} == CONTRACT_DTYPES
    assert out.attrs["as_of"] == rep.as_of


def test_only_mapped_optional_columns_are_present():
    out, _ = clean(frame(gender=["f"]))
    assert list(out.columns) == ["row", "customer_id", "customer_key", "date", "amount", "line_type",
                                 "gender"]  # fmt: skip


def test_values_of_any_type_are_accepted():
    raw = frame(customer_id=[42, 7.0, None], date=[datetime(2017, 1, 2), pd.Timestamp("2017-01-03"), None],
                amount=[72, 1.5, np.nan], gender=[True, None, "m"])  # fmt: skip
    out, rep = clean(raw)
    assert out["customer_key"].tolist() == ["42", "7"]
    assert out["date"].dt.day.tolist() == [2, 3] and rep.rows_dropped["missing_customer_id"] == 1


# ---------------------------------------------------------------------------------- as_of
def test_default_as_of_is_the_day_after_the_last_valid_transaction():
    raw = frame(date=["2017-01-01", "2017-03-04", "2018-12-31"], amount=["1", "2", "not a number"])
    assert default_as_of(raw) == pd.Timestamp("2017-03-05")  # the 2018 row will be dropped
    out, rep = clean_transactions(raw)
    assert rep.as_of == "2017-03-05" == out.attrs["as_of"]


def test_two_runs_give_identical_output(tmp_path):
    path = write_rows(tmp_path / "t.csv", [good_row(dob=d) for d in ("1980-01-02", "NANA", "2010-01-01")])
    a, ra = clean_file(path)
    b, rb = clean_file(path)
    pd.testing.assert_frame_equal(a, b)
    assert ra == rb
    assert ra.to_json(tmp_path / "a.json").read_bytes() == rb.to_json(tmp_path / "b.json").read_bytes()


def test_running_on_a_later_day_changes_nothing(tmp_path, monkeypatch):
    path = write_rows(tmp_path / "t.csv", [good_row(dob=d) for d in ("1980-07-02", "2002-06-30", "NANA")])
    before, report_before = clean_file(path)
    later = pd.Timestamp("2031-01-01")
    for name in ("now", "today", "utcnow"):
        monkeypatch.setattr(pd.Timestamp, name, classmethod(lambda cls, *a, **k: later))
    after, report_after = clean_file(path)
    pd.testing.assert_frame_equal(before, after)
    assert report_before == report_after and report_after.as_of == "2017-07-01"


# ---------------------------------------------------------------------------------- report
def test_report_json_has_the_keys_the_pipeline_needs_and_round_trips(tmp_path):
    _, rep = clean(frame(dob=["NANA"]))
    assert JSON_KEYS <= set(rep.to_dict())
    path = rep.to_json(tmp_path / "cleaning_report.json")
    back = CleaningReport.from_json(path)
    assert back == rep and back.keys_read is None
    assert CleaningReport.from_dict(rep.to_dict()).to_dict() == rep.to_dict()


def test_report_check_catches_a_broken_invariant():
    rep = CleaningReport(rows_read=5, rows_kept=3, rows_dropped={"missing_date": 1})
    assert not rep.invariant_holds
    with pytest.raises(InputError, match="rows_read=5"):
        rep.check()
    with pytest.raises(InputError):
        CleaningReport.from_dict({"rows_kept": 3})


def test_report_table_for_the_notebook():
    _, rep = clean(frame(amount=["0", "1", "x"], dob=["", "", ""]))
    table = rep.to_frame()
    assert list(table.columns) == ["section", "name", "count", "share", "description"]
    assert set(table["section"]) == {"rows", "dropped", "changed", "flagged", "missing", "customers"}
    dropped = table[table["section"] == "dropped"]
    assert dropped["count"].sum() == rep.rows_read - rep.rows_kept
    assert table.loc[table["name"] == "zero_price_line", "share"].iloc[0] == pytest.approx(1 / 3)


def random_frame(seed: int, n: int = 300) -> pd.DataFrame:
    """Seeded raw rows mixing valid values and every quirk, with the loader's ``row`` index."""
    rng = np.random.default_rng(seed)

    def pick(values):
        return rng.choice(np.array(values, dtype=object), n)

    raw = pd.DataFrame({
        "customer_id": pick(["7", "", "BBID_"] + [f"BBID_{i}" for i in range(40)]),
        "date": pick(["2017-01-02", "2016-05-24", "2017-06-30", "", "soon", "2015-13-01"]),
        "amount": pick(["72", "0", "-5", "1.5", "", "abc", "999"]),
        "dob": pick(["1980-01-02", "NANA", "", "1910-01-01", "2008-05-05", "x"]),
        "gender": pick(["male", "female", "", "Male"]),
        "pincode": pick(["625011", "999999", "", "12"]),
        "promo_code": pick(["NONPROMO", "LOCALPROMO", "0001234", ""]),
        "discounts": pick(["Payback", "T24Club,Payback", ""]),
    })  # fmt: skip
    raw.index = pd.RangeIndex(1, n + 1, name="row")
    return raw


@pytest.mark.parametrize("cut", [1, 150, 299])
def test_partition_reports_add_up_to_the_whole(cut):
    raw = random_frame(0)
    kw = dict(date_format="%Y-%m-%d", dob_format="%Y-%m-%d")
    whole, r_whole = clean_partition(raw, "2017-07-01", **kw)
    a, r_a = clean_partition(raw.iloc[:cut], "2017-07-01", **kw)
    b, r_b = clean_partition(raw.iloc[cut:], "2017-07-01", **kw)
    total = sum([r_a, r_b])
    pd.testing.assert_frame_equal(pd.concat([a, b], ignore_index=True), whole)
    assert total.invariant_holds
    assert total.customers_read == r_whole.customers_read and total.customers_kept == r_whole.customers_kept
    # duplicates are found within a partition: the parts see at most those of the whole
    assert total.duplicate_rows <= r_whole.duplicate_rows
    total.rows_flagged.pop("duplicate_row"), r_whole.rows_flagged.pop("duplicate_row")
    assert total == r_whole


def test_malformed_lines_of_a_partition_are_read_and_dropped():
    raw = random_frame(1)
    kw = dict(date_format="%Y-%m-%d", dob_format="%Y-%m-%d")
    plain, r_plain = clean_partition(raw, "2017-07-01", **kw)
    clean, report = clean_partition(raw, "2017-07-01", malformed_rows=3, **kw)
    pd.testing.assert_frame_equal(clean, plain)
    assert report.rows_read == r_plain.rows_read + 3 and report.rows_dropped["malformed_line"] == 3
    assert report.invariant_holds and "malformed_line" not in r_plain.rows_dropped
    for bad in (-1, 1.5, True):
        with pytest.raises(ParameterError, match="malformed_rows"):
            clean_partition(raw, "2017-07-01", malformed_rows=bad, **kw)


def test_a_report_from_json_adds_with_unknown_customer_counts():
    _, rep = clean(frame(amount=["1", "2"]))
    total = rep + CleaningReport.from_dict(rep.to_dict())
    assert total.rows_read == 4 and total.customers_read is None and total.invariant_holds


# ---------------------------------------------------------------------------------- properties
JUNK = ["", " ", "NANA", "NONPROMO", "LOCALPROMO", "999999", "BBID_", "BBID_12", "2016-05-24", "24/05/2016",
        "05/24/2016", "1980-01-02", "72", "-5", "0", "inf", "nan", "1e400", "Payback,T24Club", "male",
        "now", "today", "0000869304", "=SUM(A1)", "١٢", "\u00e9", "a,b", '"']  # fmt: skip
cells = st.one_of(
    st.sampled_from(JUNK),
    st.text(max_size=10),
    st.none(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
)


VALID = {
    "customer_id": st.sampled_from(["BBID_1", "BBID_2", "7", "BBID_0042"]),
    "date": st.sampled_from(["2016-05-24", "2017-06-30", "2015-05-01"]),
    "amount": st.sampled_from(["72", "0", "-5", "1.5"]),
}


@st.composite
def raw_frames(draw):
    """Required columns mostly valid (so most frames get cleaned), optional ones anything."""
    n = draw(st.integers(min_value=0, max_value=12))
    optional = draw(st.sets(st.sampled_from(ROLES[3:])))
    roles = [r for r in ROLES if r in set(ROLES[:3]) | optional]
    columns = {}
    for r in roles:
        cell = cells
        if r in VALID:  # three in four cells valid
            cell = st.integers(0, 3).flatmap(lambda i, r=r: cells if i == 0 else VALID[r])
        columns[r] = draw(st.lists(cell, min_size=n, max_size=n))
    return pd.DataFrame(columns, dtype=object)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_frames(), drop=st.booleans(), as_of=st.sampled_from([None, "2017-07-01"]))
def test_cleaner_raises_only_seglib_errors_and_accounts_for_every_row(raw, drop, as_of):
    try:
        out, rep = clean_transactions(raw, as_of=as_of, drop_duplicates=drop)
    except InputError:
        event("rejected with InputError")
        return
    event("cleaned")
    assert rep.invariant_holds and rep.rows_kept == len(out) and rep.rows_read == len(raw)
    assert out["customer_key"].ne("").all() and out["date"].notna().all() and np.isfinite(out["amount"]).all()
    assert set(out["line_type"]) <= {"sale", "zero", "return"}
    assert (out["line_type"] == "return").sum() == rep.rows_flagged["return_line"]
    if "age" in out:
        ages = out["age"].dropna()
        assert ((ages >= 15) & (ages <= 99) & (ages == ages.round())).all()
    assert rep.customers_kept == out["customer_key"].nunique() <= rep.customers_read


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=raw_frames(), cut=st.floats(0, 1))
def test_cleaning_in_partitions_gives_the_whole(raw, cut):
    raw.index = pd.RangeIndex(1, len(raw) + 1, name="row")
    k = int(cut * len(raw))
    kw = dict(date_format="%Y-%m-%d", dob_format="%Y-%m-%d")
    whole, r_whole = clean_partition(raw, "2017-07-01", **kw)
    a, r_a = clean_partition(raw.iloc[:k], "2017-07-01", **kw)
    b, r_b = clean_partition(raw.iloc[k:], "2017-07-01", **kw)
    pd.testing.assert_frame_equal(pd.concat([a, b], ignore_index=True), whole)
    total = r_a + r_b
    assert total.invariant_holds and total.rows_read == len(raw)
    assert total.duplicate_rows <= r_whole.duplicate_rows  # found within a partition only
    total.rows_flagged.pop("duplicate_row"), r_whole.rows_flagged.pop("duplicate_row")
    assert total == r_whole  # every other count, and the distinct customers, add up


text_cells = st.one_of(st.sampled_from(JUNK), st.text(max_size=8))
HEADER = list(DEFAULT_COLUMNS.values())


@st.composite
def text_rows(draw):
    """A valid row with a few cells replaced by junk, sometimes too short or too long."""
    cells = [draw(VALID[r]) if r in VALID else draw(st.sampled_from(JUNK)) for r in ROLES]
    for i in draw(st.lists(st.integers(0, len(cells) - 1), max_size=3)):
        cells[i] = draw(text_cells)
    return cells[: draw(st.integers(len(cells) - 2, len(cells)))] + draw(st.lists(text_cells, max_size=1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.one_of(st.just(HEADER), st.permutations(HEADER), st.lists(st.sampled_from(HEADER + ["x", ""]))),
    rows=st.lists(text_rows(), max_size=8),
    encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]),
    sep=st.sampled_from([",", ";"]),
)
def test_files_of_any_content_give_a_table_or_a_seglib_error(header, rows, encoding, sep):
    buf = io.StringIO()
    csv.writer(buf, delimiter=sep, lineterminator="\n").writerows([header, *rows])
    data = buf.getvalue().encode(encoding, errors="replace")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_bytes(data)
        try:
            out, rep = clean_file(path)
        except SeglibError as exc:
            assert str(path) in str(exc)
            event(f"rejected with {type(exc).__name__}")
            return
    event("cleaned")
    assert rep.invariant_holds and rep.rows_kept == len(out)


@settings(max_examples=30, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_give_a_table_or_a_seglib_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_bytes(data)
        try:
            clean_file(path)
        except SeglibError:
            pass


# ---------------------------------------------------------------------------------- files
def good_row(cust="BBID_1", date="2017-06-30", amount="72", dob="1980-01-02"):
    return [cust, date, amount, dob, "male", "625011", "4986", "1", "1", "NONPROMO", "9", "Payback"]


def write_rows(path, rows):
    with open(path, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([list(DEFAULT_COLUMNS.values()), *rows])
    return path


def test_the_real_sample_is_accounted_for_and_every_quirk_counted(real_sample):
    with open(real_sample, newline="") as fh:
        n_lines = sum(1 for _ in csv.reader(fh)) - 1
    raw = load_transactions(real_sample)
    out, rep = clean_transactions(raw)
    assert rep.rows_read == n_lines and rep.invariant_holds and rep.rows_kept == len(out)
    for rule in ("strip_id_prefix", "dob_placeholder", "age_out_of_range", "gender", "pincode_placeholder",
                 "nonpromo", "discount_set"):  # fmt: skip
        assert rep.values_changed[rule] > 0, rule
    assert rep.rows_flagged["zero_price_line"] > 0 and rep.rows_flagged["return_line"] > 0
    assert rep.missing_values["dob"] > rep.values_changed["dob_placeholder"]  # empty DOBs too
    assert rep.duplicate_rows == int(raw.duplicated().sum())  # none in this sample
    # the original dropped rows with a valid DOB only for lacking a pin code: they are all kept
    valid_dob_no_pin = raw.index[(raw["pincode"] == "") & (raw["dob"].str.match(r"\d{4}-"))]
    assert len(valid_dob_no_pin) > 0 and set(valid_dob_no_pin) <= set(out["row"])
    assert out.loc[raw.loc[out["row"], "promo_code"].eq("LOCALPROMO").to_numpy(), "is_promo"].all()
    assert out["promo_code"].str.startswith("0").any()
    assert out["age"].dropna().between(15, 99).all()


def test_generated_data_is_accounted_for_and_every_quirk_counted(tmp_path):
    synthetic = importlib.import_module("seglib.synthetic")
    if not hasattr(synthetic, "write_dataset"):
        pytest.skip("seglib.synthetic.write_dataset is not written yet")
    synthetic.write_dataset(tmp_path / "t.csv", n_customers=1000, random_state=0)
    raw = load_transactions(tmp_path / "t.csv")
    out, rep = clean_transactions(raw)
    assert rep.invariant_holds and rep.rows_kept == len(out) == len(raw)
    for rule in ("strip_id_prefix", "dob_placeholder", "age_out_of_range", "gender", "pincode_placeholder",
                 "nonpromo", "discount_set"):  # fmt: skip
        assert rep.values_changed[rule] > 0, rule
    assert rep.rows_flagged["zero_price_line"] > 0 and rep.rows_flagged["return_line"] > 0
    assert rep.duplicate_rows == int(raw.duplicated().sum()) > 0
    deduplicated, rep2 = clean_transactions(raw, drop_duplicates=True)
    assert len(deduplicated) == rep2.rows_kept == rep.rows_read - rep.duplicate_rows
    assert rep2.customers_kept == rep.customers_kept  # a duplicate never removes a customer


# ---------------------------------------------------------------------------------- docs and plots
def test_every_rule_has_a_paragraph_in_the_docs():
    doc = (ROOT / "docs" / "cleaning.md").read_text(encoding="utf-8")
    for rule in RULES:
        assert f"`{rule.name}`" in doc, rule.name


@pytest.fixture
def small_clean():
    raw = frame(
        customer_id=["A_1", "A_1", "A_2", "A_3", "A_3"],
        date=["2017-01-01", "2017-01-05", "2017-01-01", "2017-01-01", "2017-01-01"],
        amount=["10", "20", "0", "5", "-5"],
        dob=["1980-01-01", "1980-01-01", "NANA", "1990-06-01", "1990-06-01"],
    )
    return clean(raw)[0]


def test_plots_draw_one_value_per_customer(small_clean):
    ax = plot_age_distribution(small_clean)
    assert sum(p.get_height() for p in ax.patches) == 2  # A_1 and A_3; A_2 has no age
    ax = plot_spend_distribution(small_clean)
    assert sum(p.get_height() for p in ax.patches) == 2  # A_2 has only a zero-price line
    assert "1 zero-price" in ax.get_title() and "1 return" in ax.get_title()
    ax = plot_transactions_per_customer(small_clean, max_count=3)
    assert [p.get_height() for p in ax.patches] == [2, 1, 0]  # A_1 came on two days


def test_plots_draw_on_a_given_axes_and_handle_missing_data(small_clean):
    _, ax = plt.subplots()
    assert plot_spend_distribution(small_clean, ax=ax, log=False) is ax
    no_dob = small_clean.drop(columns=["dob", "age"])
    assert "no date-of-birth" in plot_age_distribution(no_dob).texts[0].get_text()
    with pytest.raises(InputError, match="customer_key"):
        plot_transactions_per_customer(pd.DataFrame({"date": []}))


def test_reference_bounds_of_a_files_stats_are_the_cleaners(tmp_path):
    """as_of and the bounds from a file's stats (what the Dask backend sums) are clean_file's."""
    from seglib.clean import file_plausibility_stats, reference_bounds

    raw = log_frame(date={3: "1900-01-01", 30: "2099-01-01"}, amount={9: "1e308", 40: "abc"})
    path = tmp_path / "log.csv"
    raw.to_csv(path, index=False)
    stats = file_plausibility_stats(path, {"customer_id": "customer_id", "date": "date", "amount": "amount"},
                                    date_format="%Y-%m-%d")
    pd.testing.assert_frame_equal(stats["days"], plausibility_stats(raw, "%Y-%m-%d")["days"])
    as_of, bounds = reference_bounds(stats, str(path))
    _, report = clean_transactions(raw)
    assert str(as_of.date()) == report.as_of and bounds.max_amount == report.settings["max_amount"]
    given, _ = reference_bounds(stats, str(path), as_of="2020-01-01")
    assert isinstance(given, pd.Timestamp) and given == pd.Timestamp("2020-01-01")  # kept, as a Timestamp
    assert reference_bounds(stats, str(path), as_of=pd.Timestamp("2020-01-01 13:00"))[0] == given  # midnight
    with pytest.raises(ParameterError, match="as_of='today' is not a date"):
        reference_bounds(stats, str(path), as_of="today")
    with pytest.raises(InputError, match="log.csv: no row has a customer id"):
        reference_bounds(stats, str(path), max_amount=1e-9)
