"""Tests of seglib.features: hand-computable tables, invariants, JSON round trips, integration."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from seglib.errors import InputError, ModelFormatError, ParameterError
from seglib.features import (
    IDENTIFIERS,
    ORIGINAL_COLUMNS,
    FeatureBuilder,
    FeatureScaler,
    combine_partials,
    customer_partials,
    customer_table,
    descriptor_columns,
    feature_pipeline,
    finalize_customers,
    pipeline_from_dict,
    pipeline_to_dict,
)

AS_OF = "2016-02-01"


def make_clean(rows, *, as_of=AS_OF, drop=()):
    """A cleaned-transactions table (DEVELOPERS.md contract) from short row tuples.

    Row: (customer, date, amount, store, till, txn, is_promo, discounts, dob, gender, promo_code).
    """
    cols = ["cust", "date", "amount", "store", "till", "transaction", "is_promo", "discounts", "dob",
            "gender", "promo_code"]
    t = pd.DataFrame(rows, columns=cols)
    dob = pd.to_datetime(t["dob"])
    ref = pd.Timestamp(as_of)  # the cleaner's age: whole years at as_of
    age = [np.nan if pd.isna(d) else ref.year - d.year - ((ref.month, ref.day) < (d.month, d.day))
           for d in dob]
    clean = pd.DataFrame({
        "row": np.arange(1, len(t) + 1, dtype="int64"),
        "customer_id": "BBID_" + t["cust"],
        "customer_key": t["cust"],
        "date": pd.to_datetime(t["date"]),
        "amount": t["amount"].astype(float),
        "line_type": np.where(t["amount"] > 0, "sale", np.where(t["amount"] == 0, "zero", "return")),
        "dob": dob,
        "age": np.array(age, dtype=float),
        "gender": t["gender"],
        "pincode": pd.Series([pd.NA] * len(t), dtype="string"),
        "store": t["store"],
        "till": t["till"],
        "transaction": t["transaction"],
        "promo_code": t["promo_code"],
        "is_promo": t["is_promo"].astype(bool),
        "discounts": t["discounts"],
        "product": [f"10{i:07d}" for i in range(len(t))],
    })
    clean = clean.drop(columns=list(drop))
    if as_of is not None:
        clean.attrs["as_of"] = as_of
    return clean


#: customer 1: one two-line transaction + one line at another store; 2: one return, unknown age and
#: gender; 3: a free (zero-price) line and a 100 line on two days, always on promotion.
ROWS = [
    ("1", "2016-01-01", 10.0, "20", "1", "10", True, "Payback", "1980-06-01", "male", "0000869304"),
    ("1", "2016-01-01", 20.0, "20", "1", "10", False, "Payback,T24Club", "1980-06-01", "male", None),
    ("1", "2016-01-11", 30.0, "30", "2", "11", False, "", "1980-06-01", "male", None),
    ("2", "2016-01-05", -5.0, "20", "1", "12", False, "T24Club", None, "unknown", None),
    ("3", "2016-01-20", 0.0, "30", "3", "13", True, "", "1990-01-30", "female", "LOCALPROMO"),
    ("3", "2016-01-21", 100.0, "30", "3", "14", True, "", "1990-01-30", "female", "0001152512"),
]


@pytest.fixture
def clean():
    return make_clean(ROWS)


def random_clean(seed: int, n_lines: int = 60) -> pd.DataFrame:
    """Seeded random cleaned table; some optional roles randomly absent."""
    rng = np.random.default_rng(seed)
    n_cust = int(rng.integers(1, 15))
    rows = []
    for _ in range(n_lines):
        c = str(rng.integers(n_cust))
        day = pd.Timestamp("2016-01-01") + pd.Timedelta(days=int(rng.integers(0, 60)))
        progs = ",".join(sorted(p for p in ("A", "B", "C") if rng.random() < 0.3))
        amount = float(rng.choice([0.0, -3.0, *rng.gamma(2, 50, 8).round(2)]))
        dob = None if rng.random() < 0.2 else f"19{rng.integers(40, 99)}-0{rng.integers(1, 10)}-15"
        rows.append((c, day, amount, str(rng.integers(3)), str(rng.integers(2)), str(rng.integers(5)),
                     bool(rng.random() < 0.3), progs, dob, str(rng.choice(["female", "male", "unknown"])),
                     None))
    optional = ["dob", "age", "gender", "store", "till", "transaction", "is_promo", "discounts", "promo_code"]
    drop = [c for c in optional if rng.random() < 0.25]
    if "dob" in drop:
        drop.append("age")
    return make_clean(rows, as_of="2016-03-15", drop=sorted(set(drop)))


# ---------------------------------------------------------------------------------------------------
# customer table: every feature computed by hand


def test_customer_table_hand_computed(clean):
    t = customer_table(clean)
    assert list(t.index) == ["1", "2", "3"] and t.index.name == "customer_key"
    assert list(t["customer_id"]) == ["BBID_1", "BBID_2", "BBID_3"]
    expected = {  # as_of 2016-02-01
        "recency_days": [21, 27, 11],  # last purchase 01-11, 01-05, 01-21
        "tenure_days": [31, 27, 12],  # first purchase 01-01, 01-05, 01-20
        "frequency": [2, 1, 2],  # the two 01-01 lines of customer 1 are one transaction
        "monetary": [60, -5, 100],  # net: returns subtract, zero lines add nothing
        "avg_basket_value": [30, -5, 50],
        "items_per_transaction": [1.5, 1, 1],
        "promo_share": [1 / 3, 0, 1],
        "programme_Payback": [2 / 3, 0, 0],
        "programme_T24Club": [1 / 3, 1, 0],
        "return_share": [0, 1, 0],
        "zero_share": [0, 0, 0.5],
        "gender_female": [0, 0, 1],
        "gender_male": [1, 0, 0],
        "gender_unknown": [0, 1, 0],
        "n_stores": [2, 1, 1],
    }
    for name, values in expected.items():
        np.testing.assert_allclose(t[name].to_numpy(float), values, err_msg=name)
    assert t.loc["1", "age"] == 35 and t.loc["3", "age"] == 26 and math.isnan(t.loc["2", "age"])
    assert t.attrs["as_of"].startswith(AS_OF)


def test_transaction_definition_falls_back_to_customer_date_store():
    rows = [  # two tickets of customer 1 on the same day at the same store
        ("1", "2016-01-01", 10.0, "20", "1", "10", False, "", None, "male", None),
        ("1", "2016-01-01", 20.0, "20", "2", "77", False, "", None, "male", None),
        ("1", "2016-01-01", 5.0, "30", "1", "10", False, "", None, "male", None),
    ]
    assert customer_table(make_clean(rows))["frequency"].iloc[0] == 3  # store+till+number+date
    no_numbers = make_clean(rows, drop=("till", "transaction"))
    assert customer_table(no_numbers)["frequency"].iloc[0] == 2  # customer+date+store
    assert customer_table(make_clean(rows, drop=("till", "transaction", "store")))["frequency"].iloc[0] == 1


def test_as_of_parameter_then_attrs_then_day_after_last(clean):
    assert customer_table(clean, as_of="2016-03-01")["recency_days"].iloc[0] == 50
    assert customer_table(clean)["recency_days"].iloc[0] == 21  # attrs: 2016-02-01
    clean.attrs.clear()
    assert customer_table(clean)["recency_days"].iloc[2] == 1  # day after the last date (01-21)


def test_features_of_absent_roles_are_not_built():
    minimal = make_clean(ROWS).drop(columns=["dob", "age", "gender", "pincode", "store", "till",
                                             "transaction", "promo_code", "is_promo", "discounts", "product"])
    t = customer_table(minimal)
    assert list(t.columns) == ["customer_id", "recency_days", "tenure_days", "frequency", "monetary",
                               "avg_basket_value", "items_per_transaction", "return_share", "zero_share"]
    X = FeatureBuilder().fit_transform(minimal)  # default indicators=("age",) is fine without age
    assert X.index.is_unique and len(X) == 3


def test_partials_of_date_chunks_combine_to_the_whole(clean):
    """Dask-style: chunks that do not split a transaction combine by sum/min/max to the same table."""
    programmes, genders = ["Payback", "T24Club"], ["female", "male", "unknown"]
    early = clean[clean["date"] <= "2016-01-05"]
    late = clean[clean["date"] > "2016-01-05"]
    parts = pd.concat([customer_partials(c, programmes=programmes, genders=genders) for c in (early, late)])
    combined = finalize_customers(combine_partials(parts), AS_OF)
    pd.testing.assert_frame_equal(combined, customer_table(clean))


@pytest.mark.parametrize("seed", range(6))
def test_partials_equal_grouping_on_the_text_keys(seed):
    """The group-bys run on integer codes; grouping on the text itself (NA stores, tills and numbers
    included, ids of one key that differ) gives the same groups, order, minimum ids and sums."""
    from seglib.features import _line_values, _values_array, categories, transaction_key

    clean = random_clean(seed, n_lines=200)
    rng = np.random.default_rng(seed)
    for col in ("store", "till", "transaction"):
        if col in clean:
            clean[col] = clean[col].where(rng.random(len(clean)) > 0.2)  # some NA
    prefixed = rng.random(len(clean)) < 0.5  # one key, two ids ("7" and "BBID_7"): the minimum is kept
    clean["customer_id"] = clean["customer_id"].where(~prefixed, "BBID_" + clean["customer_key"])
    programmes, genders = categories(clean)
    values = _line_values(clean, programmes, genders)
    keys = ("customer_key", "customer_id", "store", "till", "transaction", "date")
    lines = {name: _values_array(x) for name, (_, x) in values.items()}
    v = pd.DataFrame({c: clean[c] for c in keys if c in clean} | lines, index=clean.index)
    if "store" not in v:
        v.insert(2, "store", pd.Series(pd.NA, index=clean.index, dtype="string"))
    key = transaction_key(clean)
    if "store" not in key:
        key.insert(1, "store")
    sums = list(values)
    txn = v.groupby(key, dropna=False, sort=False).agg(
        customer_id=("customer_id", "min"), **{c: (c, "sum") for c in sums}).reset_index()
    expected = txn.groupby(["customer_key", "store"], dropna=False, sort=True).agg(
        customer_id=("customer_id", "min"), first_date=("date", "min"), last_date=("date", "max"),
        transactions=("date", "size"), **{c: (c, "sum") for c in sums})
    expected["transactions"] = expected["transactions"].astype(float)
    got = customer_partials(clean)
    assert got.index.tolist() == expected.index.tolist()
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True),
                                  check_exact=True, check_dtype=False)


# ---------------------------------------------------------------------------------------------------
# bases and descriptors


def _descriptors_in(names) -> list[str]:
    return [n for n in names if n in ("age", "age_missing") or n.startswith("gender_")]


@pytest.mark.parametrize("seed", range(6))
def test_default_bases_leave_age_and_gender_out_of_the_scaled_matrix(seed):
    clean = random_clean(seed, n_lines=80)
    pipe = feature_pipeline()
    Xs = pipe.fit_transform(clean)
    names = pipe["features"].feature_names_
    assert not _descriptors_in(names) and Xs.shape[1] == len(names)
    every = feature_pipeline(bases="all")
    Xa = every.fit_transform(clean)
    all_names = every["features"].feature_names_
    assert [n for n in all_names if n in names] == names  # behaviour = all minus the descriptors, in order
    assert set(all_names) - set(names) == set(_descriptors_in(all_names))
    if "gender" in clean and clean["gender"].nunique() > 1:
        assert _descriptors_in(all_names) and Xa.shape[1] > Xs.shape[1]
    table = customer_table(clean)  # the profiles still see the descriptors
    found = descriptor_columns(table.columns, names, pipe["features"].dropped_)
    assert set(found) == set(_descriptors_in(table.columns)) - set(pipe["features"].dropped_)


def test_explicit_bases_a_group_and_an_indicator_follow(clean):
    b = FeatureBuilder(bases=["recency_days", "gender", "age"]).fit(clean)
    assert b.feature_names_ == ["recency_days", "age", "gender_female", "gender_male", "gender_unknown",
                                "age_missing"]
    assert FeatureBuilder(bases=["age_missing", "monetary"]).fit(clean).feature_names_ == \
        ["monetary", "age", "age_missing"]
    with pytest.raises(ParameterError, match=r"\['gendr'\].*recency_days.*gender"):
        FeatureBuilder(bases=["gendr"]).fit(clean)
    with pytest.raises(ParameterError, match="behaviour.*all"):
        FeatureBuilder(bases="demographic").fit(clean)


def test_bases_round_trip_and_models_saved_before_bases_keep_every_feature(clean):
    b = FeatureBuilder(bases=["monetary", "gender"]).fit(clean)
    again = FeatureBuilder.from_dict(json.loads(json.dumps(b.to_dict())))
    assert again.bases == ["monetary", "gender"] and again.feature_names_ == b.feature_names_
    old = FeatureBuilder(bases="all").fit(clean).to_dict()
    del old["params"]["bases"]
    loaded = FeatureBuilder.from_dict(old)
    assert loaded.bases == "all" and "age" in loaded.feature_names_
    pd.testing.assert_frame_equal(loaded.transform(clean), FeatureBuilder(bases="all").fit_transform(clean))


def test_feature_weights_multiply_a_scaled_column(clean):
    plain = feature_pipeline().fit(clean)
    names = plain["features"].feature_names_
    weighted = feature_pipeline(weights={"monetary": 2.0}).fit(clean)
    a, b = plain.transform(clean), weighted.transform(clean)
    j = names.index("monetary")
    np.testing.assert_array_equal(b[:, j], 2 * a[:, j])
    np.testing.assert_array_equal(np.delete(b, j, axis=1), np.delete(a, j, axis=1))
    with pytest.raises(ParameterError, match="age"):  # a descriptor outside the bases has no weight
        feature_pipeline(weights={"age": 2.0}).fit(clean)


# ---------------------------------------------------------------------------------------------------
# builder: imputation, indicators, constant features, scoring


def test_builder_imputes_median_with_indicator_and_reports(clean):
    b = FeatureBuilder(bases="all").fit(clean)
    X = b.transform(clean)
    assert X.loc["2", "age"] == 30.5  # median of 35 and 26
    assert list(X["age_missing"]) == [0, 1, 0]
    assert b.imputed_ == {"age": 1} and X.attrs["imputed"] == {"age": 1}
    assert not X[b.feature_names_].isna().any().any()
    assert list(X.columns) == ["customer_id", *b.feature_names_]


def test_constant_feature_dropped_with_logged_note(caplog):
    rows = [r for r in ROWS if r[0] != "1"]  # everyone left bought ... customer 3 twice: make it once
    rows = [r for r in rows if r[1] != "2016-01-21"]
    with caplog.at_level(logging.INFO, logger="seglib.features"):
        b = FeatureBuilder().fit(make_clean(rows))
    assert "frequency" in b.dropped_ and "frequency" not in b.feature_names_
    assert "frequency" in caplog.text and "constant" in caplog.text


def test_every_customer_exactly_once_on_random_tables():
    for seed in range(25):
        clean = random_clean(seed)
        X = FeatureBuilder().fit_transform(clean)
        assert X.index.is_unique and set(X.index) == set(clean["customer_key"]), seed
        assert not X.drop(columns="customer_id").isna().any().any(), seed
        assert not set(X.columns) & set(IDENTIFIERS) - {"customer_id"}, seed
        if X.shape[1] > 1:
            assert np.isfinite(FeatureScaler().fit_transform(X)).all(), seed


def test_scoring_unseen_programme_warns_and_is_ignored(clean):
    b = FeatureBuilder().fit(clean)
    new = clean.copy()
    new.loc[0, "discounts"] = "NewClub,Payback"
    with pytest.warns(UserWarning, match="NewClub"):
        X = b.transform(new)
    assert not any("NewClub" in c for c in X.columns)
    assert X.loc["1", "programme_Payback"] == pytest.approx(2 / 3)


def test_scoring_missing_optional_input_is_imputed_and_reported(clean):
    b = FeatureBuilder(bases="all").fit(clean)
    new = clean.drop(columns=["dob", "age"])
    with pytest.warns(UserWarning, match="age"):
        X = b.transform(new)
    assert list(X.columns) == ["customer_id", *b.feature_names_]
    assert (X["age"] == b.medians_["age"]).all() and (X["age_missing"] == 1).all()
    assert X.attrs["imputed"]["age"] == 3


@pytest.mark.parametrize("column", ["customer_key", "customer_id", "date", "amount"])
def test_required_column_missing_is_input_error(clean, column):
    b = FeatureBuilder().fit(clean)
    with pytest.raises(InputError, match=column):
        b.transform(clean.drop(columns=column))


def test_bad_input_and_parameters(clean):
    with pytest.raises(InputError, match="empty"):
        FeatureBuilder().fit(clean.iloc[:0])
    bad = clean.copy()
    bad.loc[1, "amount"] = np.nan
    with pytest.raises(InputError, match="amount"):
        customer_table(bad)
    with pytest.raises(ParameterError, match="'customer', 'transaction', 'original'"):
        FeatureBuilder(level="lines").fit(clean)
    with pytest.raises(ParameterError, match="agee"):
        FeatureBuilder(exclude=("agee",)).fit(clean)
    assert "zero_share" not in FeatureBuilder(exclude="zero_share").fit(clean).feature_names_
    assert FeatureBuilder(indicators=()).fit(clean).indicators_ == []


def test_builder_json_round_trip_transforms_identically(clean):
    b = FeatureBuilder().fit(clean)
    b2 = FeatureBuilder.from_dict(json.loads(json.dumps(b.to_dict())))
    pd.testing.assert_frame_equal(b2.transform(clean), b.transform(clean))
    data = b.to_dict()
    data["format_version"] = 99
    with pytest.raises(ModelFormatError, match="format_version"):
        FeatureBuilder.from_dict(data)


def test_identifiers_carry_no_information(clean):
    """Relabelling every identifier consistently leaves the model matrix unchanged."""
    relabelled = clean.copy()
    for col in ("store", "till", "transaction", "product", "promo_code", "pincode"):
        values = relabelled[col].astype("string")
        relabelled[col] = ("x" + values[::-1].str.cat(values, sep="-")).where(values.notna())
    key_map = {"1": "9", "2": "7", "3": "8"}
    relabelled["customer_key"] = relabelled["customer_key"].map(key_map)
    for level in ("customer", "transaction"):
        X = FeatureBuilder(level).fit_transform(clean)
        Y = FeatureBuilder(level).fit_transform(relabelled)
        if level == "customer":
            Y = Y.rename(index={v: k for k, v in key_map.items()}).sort_index()
        pd.testing.assert_frame_equal(X.drop(columns=["customer_key"], errors="ignore"),
                                      Y.drop(columns=["customer_key"], errors="ignore"), check_names=False)


# ---------------------------------------------------------------------------------------------------
# transaction level and the original preset


def test_transaction_level_encodings():
    rows = [
        ("1", "2016-01-15", 10.0, "20", "1", "1", True, "Payback", "1980-06-01", "male", None),
        ("1", "2016-02-15", -5.0, "20", "1", "2", False, "", "1980-06-01", "male", None),
        ("2", "2016-07-15", 0.0, "20", "1", "3", False, "T24Club", "1990-01-30", "female", None),
        ("2", "2015-12-15", 20.0, "20", "1", "4", True, "", "1990-01-30", "female", None),
    ]
    X = FeatureBuilder("transaction", bases="all").fit_transform(make_clean(rows))
    assert list(X.index) == [1, 2, 3, 4] and {"customer_key", "customer_id"} <= set(X.columns)
    assert list(X["age"]) == [35, 35, 26, 25]  # whole years at each line's date
    np.testing.assert_allclose(X["log_price"], [math.log(11), -math.log(6), 0, math.log(21)])
    assert list(X["promo"]) == [1, 0, 0, 1] and list(X["programme_T24Club"]) == [0, 0, 1, 0]
    month = X[["month_sin", "month_cos"]].to_numpy()
    dec_jan, jan_feb = np.linalg.norm(month[3] - month[0]), np.linalg.norm(month[0] - month[1])
    assert dec_jan == pytest.approx(jan_feb)  # December is next to January
    np.testing.assert_allclose(np.linalg.norm(month, axis=1), 1)


def test_original_preset_rebuilds_the_13_columns(clean):
    pipe = feature_pipeline("original")
    Z = pipe.fit_transform(clean)
    b = pipe["features"]
    table = b.transform(clean)
    assert b.feature_names_ == list(ORIGINAL_COLUMNS)
    assert list(table.index) == [1, 2, 3, 5, 6]  # the line without date of birth is dropped
    t = table.set_index(table.index)
    assert list(t["customerID"]) == [1, 1, 1, 3, 3]
    assert list(t["Gender"]) == [1, 1, 1, 0, 0]  # female 0, male 1, unknown 2 (sorted labels)
    assert list(t["PinCode"]) == [999999] * 5  # NA placeholder back to the original's 999999
    assert list(t["promo_code"]) == [869304, 0, 0, 1, 1152512]  # NONPROMO 0, LOCALPROMO 1
    assert list(t["discountUsed"]) == [1, 2, 0, 0, 0]  # "", Payback, "Payback,T24Club", T24Club
    assert list(t["store_code"]) == [20, 20, 30, 30, 30] and list(t["Month"]) == [1] * 5
    assert list(t["Week"]) == [53, 53, 2, 3, 3]  # ISO weeks: 2016-01-01 is in week 53 of 2015
    assert list(t["Age"]) == [35, 35, 35, 26, 26]
    np.testing.assert_allclose(Z, StandardScaler().fit_transform(t[list(ORIGINAL_COLUMNS)]))
    with pytest.raises(ParameterError, match="StandardScaler"):
        feature_pipeline("original", scaler="robust")


# ---------------------------------------------------------------------------------------------------
# scaler


@pytest.fixture
def matrix():
    rng = np.random.default_rng(0)
    n = 1000
    rare = np.zeros(n)
    rare[0] = 1.0  # a flag held by 0.1% of the rows
    return pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "monetary": rng.lognormal(5, 1, n),
                         "recency_days": rng.uniform(1, 700, n), "rare_flag": rare,
                         "share": rng.beta(2, 5, n)})


def test_standard_scaler_and_balanced_flags(matrix):
    s = FeatureScaler().fit(matrix)
    Z = s.transform(matrix)
    assert list(s.feature_names_in_) == ["monetary", "recency_days", "rare_flag", "share"]  # text left out
    assert s.log1p_ == ["monetary"] and s.balanced_ == ["rare_flag", "share"]
    np.testing.assert_allclose(Z[:, :2].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z[:, :2].std(axis=0), 1)
    np.testing.assert_allclose(Z[:, 0], StandardScaler().fit_transform(np.log1p(matrix[["monetary"]]))[:, 0])
    assert np.ptp(Z[:, 2]) == pytest.approx(2.0)  # has / has not = 2 std units, whatever the prevalence
    plain = FeatureScaler(balance=None).fit_transform(matrix)
    assert np.abs(plain[:, 2]).max() > 30 > np.abs(Z).max()  # the rare flag no longer dominates


def test_nearly_constant_counts_are_balanced_too():
    X = pd.DataFrame({"n_stores": [1.0] * 999 + [2.0], "frequency": [1.0] * 998 + [2.0, 5.0],
                      "age": np.arange(1000) % 60 + 20.0})
    s = FeatureScaler().fit(X)
    Z = s.transform(X)
    assert s.balanced_ == ["n_stores", "frequency", "age"]  # whole numbers: counts
    assert np.ptp(Z[:, 0]) == pytest.approx(2.0)  # one more store = a balanced flag's 2 units
    step = math.log(3) - math.log(2)  # frequency 1 -> 2 after log1p
    assert Z[998, 1] - Z[0, 1] == pytest.approx(2.0)
    assert Z[999, 1] - Z[0, 1] == pytest.approx(2 * math.log(3) / step)  # 1 -> 5 visits: log(6/2)
    assert np.std(Z[:, 2]) == pytest.approx(1.0)  # a column with a real spread is unchanged
    assert np.abs(FeatureScaler(balance=None).fit_transform(X)[:, 0]).max() > 30


@pytest.mark.parametrize("name", ["minmax", "robust"])
def test_minmax_and_robust(matrix, name):
    Z = FeatureScaler(name, log1p=None, balance=None).fit_transform(matrix)
    if name == "minmax":
        np.testing.assert_allclose(Z.min(axis=0), 0, atol=1e-12)
        np.testing.assert_allclose(Z.max(axis=0), 1)
    else:
        np.testing.assert_allclose(np.median(Z[:, :2], axis=0), 0, atol=1e-12)
        q75, q25 = np.percentile(Z[:, :2], [75, 25], axis=0)
        np.testing.assert_allclose(q75 - q25, 1)


def test_signed_log1p_and_weights():
    X = pd.DataFrame({"monetary": [-5.0, 0.0, 5.0, 10.0], "age": [20.0, 30.0, 40.0, 50.0]})
    s = FeatureScaler("minmax", log1p=["monetary"], weights={"age": 0.5}).fit(X)
    Z = s.transform(X)
    logged = np.array([-math.log(6), 0, math.log(6), math.log(11)])
    np.testing.assert_allclose(Z[:, 0], (logged - logged.min()) / np.ptp(logged))
    np.testing.assert_allclose(Z[:, 1], [0, 1 / 6, 2 / 6, 0.5])


def test_scaler_errors(matrix):
    with pytest.raises(ParameterError, match="'standard', 'minmax', 'robust'"):
        FeatureScaler("zscore").fit(matrix)
    with pytest.raises(ParameterError, match="nope"):
        FeatureScaler(weights={"nope": 2}).fit(matrix)
    with pytest.raises(ParameterError, match="weights"):
        FeatureScaler(weights={"share": -1}).fit(matrix)
    with pytest.raises(ParameterError, match="log1p"):
        FeatureScaler(log1p=["money"]).fit(matrix)
    bad = matrix.copy()
    bad.loc[3, "share"] = np.nan
    with pytest.raises(InputError, match="share"):
        FeatureScaler().fit(bad)
    s = FeatureScaler().fit(matrix)
    with pytest.raises(InputError, match="recency_days"):
        s.transform(matrix.drop(columns="recency_days"))


@pytest.mark.parametrize("name", ["standard", "minmax", "robust"])
def test_plain_scalers_fit_scikit_learn_exactly(matrix, name):
    X = matrix.drop(columns="customer_id").assign(const=3.0, tiny=1e-300 * np.arange(len(matrix)))
    s = FeatureScaler(name, log1p=None, balance=None).fit(X)
    if name == "standard":
        ref = StandardScaler().fit(X.to_numpy())
        center, scale = ref.mean_, ref.scale_
        assert np.array_equal(s.transform(X), ref.transform(X.to_numpy()))
    elif name == "minmax":  # the range itself (sklearn stores its inverse), 1 only when it is 0
        ref = MinMaxScaler().fit(X.to_numpy())
        center, scale = ref.data_min_, np.where(ref.data_range_ == 0, 1.0, ref.data_range_)
    else:
        ref = RobustScaler().fit(X.to_numpy())
        center, scale = ref.center_, ref.scale_
    assert np.array_equal(s.center_, center) and np.array_equal(s.scale_, scale)
    assert s.scale_[4] == 1.0  # the constant column


def test_builder_fit_from_stats_hand_computed():
    b = FeatureBuilder(indicators=("age",), exclude=("zero_share",), bases="all")
    columns = ["customer_id", "recency_days", "zero_share", "age", "n_stores"]
    features, indicators = b.candidate_features(columns)
    assert features == ["recency_days", "age", "n_stores", "age_missing"] and indicators == ["age"]
    stats = pd.DataFrame({"count": [4, 3, 4, 4], "missing": [0, 1, 0, 0], "min": [1.0, 20.0, 1.0, 0.0],
                          "max": [9.0, 40.0, 1.0, 1.0], "median": [5.0, 30.0, 1.0, 0.0]}, index=features)
    b.fit_from_stats(stats, as_of="2016-02-01", programmes=None, genders=["male"],
                     transaction_key=["customer_key", "date"])
    assert b.feature_names_ == ["recency_days", "age", "age_missing"] and b.dropped_ == ["n_stores"]
    assert b.medians_ == {"recency_days": 5.0, "age": 30.0, "age_missing": 0.0} and b.imputed_ == {"age": 1}
    assert b.indicators_ == ["age"] and b.as_of_ == "2016-02-01T00:00:00" and b.genders_ == ["male"]
    assert FeatureBuilder.from_dict(json.loads(json.dumps(b.to_dict()))).medians_ == b.medians_
    with pytest.raises(ParameterError, match="nope"):
        FeatureBuilder(exclude=("nope",)).candidate_features(features)
    with pytest.raises(InputError, match="median"):
        b.fit_from_stats(stats.drop(columns="median"), as_of="2016-02-01")


def test_scaler_fit_from_stats_of_chunks_matches_fit(matrix):
    """Statistics added up over chunks (as the Dask backend does) give the in-memory fit."""
    X = matrix.drop(columns="customer_id")
    for name in ("standard", "minmax"):
        s = FeatureScaler(name)
        log1p = s.check_columns(list(X.columns))
        F = X.assign(**{c: np.sign(X[c]) * np.log1p(np.abs(X[c])) for c in log1p})
        chunks = np.array_split(np.arange(len(X)), 3)
        inputs = pd.DataFrame({"min": X.min(), "max": X.max(), "whole": (X == X.round()).all()})
        mean = sum(F.iloc[i].sum() for i in chunks) / len(F)
        stats = pd.DataFrame({"count": float(len(F)), "mean": mean,
                              "dev_sum": sum((F.iloc[i] - mean).sum() for i in chunks),
                              "dev_sumsq": sum(((F.iloc[i] - mean) ** 2).sum() for i in chunks),
                              "min": F.min(), "max": F.max()})
        got, expected = s.fit_from_stats(inputs, stats), FeatureScaler(name).fit(X)
        assert got.balanced_ == expected.balanced_ == ["rare_flag", "share"] and got.log1p_ == ["monetary"]
        np.testing.assert_allclose(got.center_, expected.center_, rtol=1e-12)
        np.testing.assert_allclose(got.scale_, expected.scale_, rtol=1e-12)
    with pytest.raises(ParameterError, match="weights"):
        FeatureScaler(weights={"share": -1}).check_columns(list(X.columns))


def test_scaler_json_round_trip_is_exact(matrix):
    s = FeatureScaler("robust", weights={"share": 2.0}).fit(matrix)
    s2 = FeatureScaler.from_dict(json.loads(json.dumps(s.to_dict())))
    assert np.array_equal(s2.transform(matrix), s.transform(matrix))
    assert s2.get_params() == {**s.get_params(), "weights": {"share": 2.0}}
    with pytest.raises(ModelFormatError):
        FeatureScaler.from_dict({**s.to_dict(), "center_": [0.0]})


def test_pipeline_json_round_trip_and_determinism(clean):
    pipe = feature_pipeline()
    Z = pipe.fit_transform(clean)
    assert np.array_equal(Z, feature_pipeline().fit_transform(clean))  # same input -> same bytes
    restored = pipeline_from_dict(json.loads(json.dumps(pipeline_to_dict(pipe))))
    assert np.array_equal(restored.transform(clean), Z)
    assert Z.shape == (3, len(pipe["features"].feature_names_))
    pandas_out = feature_pipeline().set_output(transform="pandas").fit_transform(clean)
    assert list(pandas_out.columns) == pipe["features"].feature_names_


# ---------------------------------------------------------------------------------------------------
# integration: generated data and the real sample, through the cleaner


def _cleaned(path):
    clean_mod = pytest.importorskip("seglib.clean")
    if not hasattr(clean_mod, "clean_file"):
        pytest.skip("seglib.clean.clean_file is not available")
    return clean_mod.clean_file(path)[0]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Cleaned generated data: 300 customers, 4 planted segments, seed 3."""
    synthetic = pytest.importorskip("seglib.synthetic")
    if not hasattr(synthetic, "write_dataset"):
        pytest.skip("seglib.synthetic.write_dataset is not available")
    path, truth = synthetic.write_dataset(tmp_path_factory.mktemp("gen") / "tx.csv", 300, 4, random_state=3)
    return _cleaned(path), pd.read_csv(truth, dtype=str)


def _assert_no_identifier_in_matrix(clean):
    pipe = feature_pipeline()
    Z = pipe.fit_transform(clean)
    names = pipe["features"].feature_names_
    assert not set(names) & set(IDENTIFIERS)
    assert not any(n in ("PinCode", "store_code", "till_no", "product_code", "customerID") for n in names)
    X = pipe["features"].transform(clean)
    assert X.index.is_unique and set(X.index) == set(clean["customer_key"])
    assert np.isfinite(Z).all() and Z.shape == (clean["customer_key"].nunique(), len(names))
    key = pd.to_numeric(pd.Series(X.index, index=X.index), errors="coerce")
    if key.notna().all():  # no scaled column follows the customer number
        ranks = pd.DataFrame(Z, index=X.index).rank()
        assert (ranks.corrwith(key.rank()).abs().fillna(0) < 0.99).all()


def test_generated_data_no_identifiers_and_every_customer_once(generated):
    clean, truth = generated
    _assert_no_identifier_in_matrix(clean)
    X = FeatureBuilder().fit_transform(clean)
    assert set(X["customer_id"]) == set(truth["customerID"])  # every generated customer, once


def _assert_identifiers_carry_no_information(clean):
    """Consistently relabelled identifiers give the same scaled matrix."""
    relabelled = clean.copy()
    for col in ("store", "till", "transaction", "product", "promo_code", "pincode"):
        relabelled[col] = "id-" + clean[col].str[::-1]
    Z = feature_pipeline().fit_transform(clean)
    # equal up to the order of floating-point sums (groups are visited in identifier order)
    np.testing.assert_allclose(feature_pipeline().fit_transform(relabelled), Z, rtol=0, atol=1e-12)


def test_generated_data_identifiers_carry_no_information(generated):
    _assert_identifiers_carry_no_information(generated[0])


def test_generated_customer_level_is_well_formed(generated):
    clean, _ = generated
    t = customer_table(clean)
    assert (t["recency_days"] >= 1).all() and (t["tenure_days"] >= t["recency_days"]).all()
    assert (t["frequency"] >= 1).all() and (t["items_per_transaction"] >= 1).all()
    shares = [c for c in t.columns if c.endswith("_share") or c.startswith(("programme_", "gender_"))]
    assert ((t[shares] >= 0) & (t[shares] <= 1)).all().all()
    np.testing.assert_allclose(t.filter(like="gender_").sum(axis=1), 1)
    assert t["monetary"].sum() == pytest.approx(clean["amount"].sum())


def test_real_sample_no_identifiers_and_every_customer_once(real_sample):
    clean = _cleaned(real_sample)
    _assert_no_identifier_in_matrix(clean)
    _assert_identifiers_carry_no_information(clean)


def test_scaler_ignores_identifier_columns_even_when_numeric(clean):
    X = FeatureBuilder("transaction").fit_transform(clean)
    X["customer_key"] = X["customer_key"].astype(int)  # a caller's numeric ids
    assert "customer_key" not in FeatureScaler().fit(X).feature_names_in_


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_builder_given_the_customer_table_gives_the_same_matrix(seed):
    # step 02 aggregates the transactions once and hands the customer table to the builder
    data = random_clean(seed, n_lines=200)
    alone = FeatureBuilder().fit(data)
    expected = FeatureBuilder().fit_transform(data)
    given = FeatureBuilder()
    got = given.fit_transform(data, customers=customer_table(data))
    pd.testing.assert_frame_equal(got, expected)
    assert given.medians_ == alone.medians_ and given.feature_names_ == alone.feature_names_
    with pytest.raises(ParameterError, match="customers"):
        FeatureBuilder(level="transaction").fit_transform(data, customers=customer_table(data))
    with pytest.raises(ParameterError, match="as_of"):
        FeatureBuilder().fit_transform(data, customers=customer_table(data, as_of="2030-01-01"))


# ---------------------------------------------------------------------------------------------------
# fitting from blocks of customers (what the Dask backend reduces over its partitions)


@pytest.mark.parametrize("scaler", ["standard", "minmax", "robust"])
@pytest.mark.parametrize("n_blocks", [1, 3])
def test_fits_from_blocks_match_the_in_memory_fit(scaler, n_blocks):
    from seglib.features import (
        categories,
        fit_builder_from_blocks,
        fit_scaler_from_blocks,
        scale_block,
        transaction_key,
    )

    clean = random_clean(7, n_lines=400)
    as_of = clean.attrs["as_of"]
    customers = customer_table(clean)
    expected = feature_pipeline("customer", as_of=as_of, scaler=scaler)
    matrix = expected["features"].fit_transform(clean, customers=customers)
    scaled = expected["scale"].fit_transform(matrix)
    blocks = [customers.iloc[i::n_blocks] for i in range(n_blocks)]

    def reduce(func, **kwargs):
        return [func(block, **kwargs) for block in blocks]

    got = feature_pipeline("customer", as_of=as_of, scaler=scaler)
    programmes, genders = categories(clean)
    builder = fit_builder_from_blocks(got["features"], reduce, customers.columns, as_of=as_of,
                                      programmes=programmes, genders=genders,
                                      transaction_key=transaction_key(clean))
    fitted = fit_scaler_from_blocks(got["scale"], reduce, builder)
    for key in ("feature_names_", "imputed_", "dropped_", "indicators_"):
        assert getattr(builder, key) == getattr(expected["features"], key), key
    assert builder.medians_ == pytest.approx(expected["features"].medians_, rel=1e-12)
    assert fitted.log1p_ == expected["scale"].log1p_ and fitted.balanced_ == expected["scale"].balanced_
    np.testing.assert_allclose(fitted.center_, expected["scale"].center_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fitted.scale_, expected["scale"].scale_, rtol=1e-12, atol=1e-12)
    X = pd.concat([scale_block(b, builder, fitted) for b in blocks]).reindex(matrix.index)
    np.testing.assert_allclose(X.to_numpy(), scaled, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_exact_order_statistics_of_blocks(seed):
    from seglib.features import (
        add_column_stats,
        column_stats,
        exact_medians,
        exact_percentiles,
        order_statistics,
    )

    rng = np.random.default_rng(seed)
    values = np.round(rng.lognormal(0, 2, 2001), 1)  # heavy tail and many ties
    values[rng.random(values.size) < 0.1] = np.nan
    blocks = [pd.DataFrame({"x": chunk}) for chunk in np.array_split(values, 4)]

    def reduce(func, **kwargs):
        return [func(block, **kwargs) for block in blocks]

    stats = add_column_stats(reduce(column_stats, prepare=lambda b: b))
    assert stats.at["x", "count"] == np.isfinite(values).sum()
    assert stats.at["x", "sum"] == pytest.approx(np.nansum(values))
    ordered = np.sort(values[np.isfinite(values)])
    ranks = [0, 7, len(ordered) // 3, len(ordered) - 1]
    assert order_statistics(reduce, lambda b: b, [("x", k) for k in ranks], stats, bins=8, small=16) == \
        [ordered[k] for k in ranks]
    assert exact_medians(reduce, lambda b: b, stats)["x"] == np.nanmedian(values)
    assert exact_percentiles(reduce, lambda b: b, stats, 25.0)["x"] == pytest.approx(
        np.nanpercentile(values, 25.0), rel=1e-15)


def test_partial_blocks_combine_to_the_customer_table(clean):
    """Blocks of partials (one per file), conformed, combined and finalised: the in-memory table."""
    from seglib.features import (
        categories,
        combine_block,
        conform_partials,
        customers_meta,
        finalize_block,
        partials_meta,
    )

    early, late = clean[clean["date"] <= "2016-01-05"], clean[clean["date"] > "2016-01-05"]
    blocks = [customer_partials(c).reset_index().assign(part=i) for i, c in enumerate((early, late))]
    programmes, genders = categories(clean)
    meta = partials_meta(blocks[0].iloc[:0], programmes, genders)
    combined = combine_block(pd.concat([conform_partials(b, meta) for b in blocks]))
    table_meta = customers_meta(combine_block(meta), AS_OF, has_store=True)
    got = finalize_block(combined, AS_OF, table_meta)
    assert list(got.columns) == list(table_meta.columns)
    expected = customer_table(clean)
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)
    assert finalize_block(combined.iloc[:0], AS_OF, table_meta).empty
