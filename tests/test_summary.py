"""Tests of seglib.summary (segment cards, action rules, the summary page) and seglib.labels."""

from __future__ import annotations

import html
import itertools
import re

import numpy as np
import pandas as pd
import pytest

from seglib import labels, summary
from seglib.config import Layout
from seglib.errors import ParameterError
from seglib.profile import profile_segments, write_segments


def make_customers(n: int = 400, seed: int = 0, k: int = 4) -> tuple[pd.DataFrame, pd.Series]:
    """Seeded customer table in original units with planted differences between segments 1..k."""
    rng = np.random.default_rng(seed)
    seg = (np.arange(n) % k) + 1
    rng.shuffle(seg)
    keys = [f"{i:05d}" for i in range(n)]
    lapsed = np.isin(seg, [2, 4])
    customers = pd.DataFrame(
        {
            "customer_id": [f"BBID_{x}" for x in keys],
            "recency_days": rng.integers(1, 60, n) + 300.0 * lapsed,
            "tenure_days": rng.integers(100, 700, n).astype(float),
            "frequency": rng.integers(1, 4, n) + 6.0 * (seg % 2 == 1),
            "monetary": rng.gamma(2.0, 100.0, n) * np.where(seg == 1, 5.0, 1.0),
            "promo_share": rng.random(n) * 0.3 + 0.5 * (seg == 3),
            "return_share": np.where(rng.random(n) < 0.02, 0.5, 0.0),
            "programme_Payback": (rng.random(n) < np.where(seg == 2, 0.9, 0.1)).astype(float),
            "programme_T24Club": (rng.random(n) < 0.2).astype(float),
            "age": np.where(rng.random(n) < 0.1, np.nan, rng.normal(40, 8, n) + 15 * (seg == 3)),
            "gender_female": (rng.random(n) < 0.4).astype(float),
        },
        index=pd.Index(keys, name="customer_key"),
    )
    customers["gender_male"] = 1.0 - customers["gender_female"]
    # first visit before the last: tenure = recency + days from first to last visit
    customers["tenure_days"] = customers["recency_days"] + rng.integers(100, 600, n)
    return customers, pd.Series(seg, index=customers.index, name="segment")


@pytest.fixture(scope="module")
def data():
    return make_customers()


@pytest.fixture(scope="module")
def cards(data):
    return summary.segment_cards(*data, currency="EUR")


# --------------------------------------------------------------------------------------- the cards


def test_cards_agree_with_segments_csv(data, cards, tmp_path):
    """Every segment of segments.csv has a card with the same size, shares, value and name."""
    customers, seg = data
    descriptors = ["age", "gender_female", "gender_male"]  # as the pipeline: names from behaviour only
    write_segments(tmp_path / "segments.csv", profile_segments(customers, seg, descriptors=descriptors))
    table = pd.read_csv(tmp_path / "segments.csv", index_col="segment")
    assert [c["segment"] for c in cards] == table.index.tolist()
    for card in cards:
        row = table.loc[card["segment"]]
        assert card["name"] == row["name"]
        assert card["customers"] == row["customers"]
        assert card["customer_share"] == pytest.approx(row["customer_share"])
        assert card["revenue_share"] == pytest.approx(row["revenue_share"])
        assert card["revenue_per_customer"] == pytest.approx(row["monetary_mean"])
        assert card["value_index"] == pytest.approx(row["revenue_share"] / row["customer_share"])
    assert sum(c["customers"] for c in cards) == len(customers)
    assert sum(c["revenue_share"] for c in cards) == pytest.approx(1.0)
    # visits in plain units: "visits every N days vs M", from the same customers as segments.csv
    interval = (customers["tenure_days"] - customers["recency_days"]) / (customers["frequency"] - 1)
    interval = interval[customers["frequency"] >= 2]
    n_visits = 0
    for card in cards:
        for b in (b for b in card["behaviours"] if b["feature"] == "frequency"):
            n_visits += 1
            assert b["segment"] == pytest.approx(table.loc[card["segment"], "frequency_median"])
            got = re.match(r"visits every ([\d,.]+) days vs ([\d,.]+)", b["text"])
            assert got, b["text"]
            mine = interval[seg.reindex(interval.index) == card["segment"]].median()
            assert float(got[1]) == pytest.approx(mine, abs=0.5)
            assert float(got[2]) == pytest.approx(interval.median(), abs=0.5)
    assert n_visits >= 2  # the planted frequent segments list their visits


def test_behaviours_are_the_strongest_differences_in_plain_units(data, cards):
    customers, seg = data
    card = next(c for c in cards if c["segment"] == 1)  # planted: 5x spend, frequent
    features = [b["feature"] for b in card["behaviours"]]
    assert "monetary" in features[:2] and "frequency" in features[:2]
    effects = [abs(b["effect"]) for b in card["behaviours"]]
    assert effects == sorted(effects, reverse=True) and len(effects) <= 4
    spend = next(b for b in card["behaviours"] if b["feature"] == "monetary")
    assert spend["segment"] == pytest.approx(customers.loc[seg == 1, "monetary"].median())
    assert spend["base"] == pytest.approx(customers["monetary"].median())
    assert spend["text"].startswith("net spend: EUR ") and " vs EUR " in spend["text"]
    for c in cards:  # descriptors never listed as behaviours
        assert not {b["feature"] for b in c["behaviours"]} & {"age", "gender_female", "gender_male"}
        assert [d["feature"] for d in c["descriptors"]] == ["age", "gender"]
    explicit = summary.segment_cards(customers, seg, descriptors=["age", "promo_share"])
    for c in explicit:  # a descriptor named by the caller moves from the behaviours to "who they are"
        assert "promo_share" not in {b["feature"] for b in c["behaviours"]}
        assert [d["feature"] for d in c["descriptors"]][:2] == ["promo_share", "age"]



def test_card_figures_are_those_of_each_segment_against_the_whole_table(data, cards):
    """The cards compute the whole base's figures once: they equal a direct computation to the bit."""
    customers, seg = data
    customers = customers.iloc[::-1]  # the text index in another order: the figures go by position
    seg = seg.reindex(customers.index)
    for card in summary.segment_cards(customers, seg, currency="EUR"):
        mask = (seg == card["segment"]).to_numpy()
        for b in card["behaviours"]:
            col = customers[b["feature"]].astype(float)
            rate = labels.is_rate(b["feature"])
            typical = (lambda v: v.dropna().mean()) if rate else (lambda v: v.dropna().median())
            # the typical values (median; mean for shares), or the means when the medians read the same
            expected = [(typical(col[mask]), typical(col)), (col[mask].mean(), col.mean())]
            assert (b["segment"], b["base"]) in expected
            known, v = col.dropna().to_numpy(), col[mask].median()
            assert b["percentile"] == 100 * ((known < v).mean() + 0.5 * (known == v).mean())
            if b["feature"] == "frequency":
                assert b["text"] == summary.visits_text(customers, mask)
        assert card["descriptors"][0]["text"].startswith("age: ")

def test_visits_read_as_an_interval_and_one_visit_customers_are_said(data):
    customers, seg = data
    frequent = [c for c in summary.segment_cards(customers, seg) if c["segment"] % 2 == 1]
    for card in frequent:  # planted: 6 more visits over the same span -> a shorter interval
        text = next(b["text"] for b in card["behaviours"] if b["feature"] == "frequency")
        a, b = (float(x) for x in re.match(r"visits every ([\d.]+) days vs ([\d.]+)", text).groups())
        assert a < b
    once = customers.assign(frequency=np.where(seg == 2, 1.0, customers["frequency"]))
    mask = (seg == 2).to_numpy()
    text = summary.visits_text(once, mask)  # a segment of one-visit customers has no interval
    share = (once["frequency"] <= 1).mean()
    assert text == f"one visit only: 100% vs {100 * share:.0f}%"
    interval = summary.visit_interval_days(once)
    assert interval[mask].isna().all() and interval[~mask & (once["frequency"] >= 2).to_numpy()].gt(0).all()
    assert summary.visits_text(once.drop(columns="tenure_days"), mask) is None  # no tenure: counts
    bare = summary.segment_cards(customers.drop(columns="tenure_days"), seg)
    texts = [b["text"] for c in bare for b in c["behaviours"] if b["feature"] == "frequency"]
    assert texts and all(t.startswith("visits: ") for t in texts)


def test_actions_follow_the_planted_patterns(cards):
    by_seg = {c["segment"]: c for c in cards}
    assert by_seg[1]["action"]["rule"] == "Champions"  # recent, frequent, high spend
    assert by_seg[2]["action"]["rule"] == "Lost"  # lapsed, infrequent, low spend
    for c in cards:
        a = c["action"]
        rule = summary.action_for(a["recent"], a["frequent"], a["high_value"])
        assert a["rule"] == rule.name and a["pattern"] == rule.pattern()
        assert a["high_value"] == (c["value_index"] >= 1)


def test_action_rules_are_exclusive_and_exhaustive():
    patterns = [(r.recent, r.frequent, r.high_value) for r in summary.ACTION_RULES]
    assert sorted(patterns) == sorted(itertools.product([False, True], repeat=3))
    assert len({r.name for r in summary.ACTION_RULES}) == len(summary.ACTION_RULES)
    for combo in itertools.product([False, True], repeat=3):
        assert (summary.action_for(*combo).recent, summary.action_for(*combo).frequent,
                summary.action_for(*combo).high_value) == combo
    assert summary.action_for(True, None, True) is summary.NO_RULE


def test_closest_segment_and_description(cards):
    for c in cards:
        closest = c["closest"]
        assert closest is not None and closest["segment"] != c["segment"]
        assert f"segment {closest['segment']}" in c["description"]
        assert c["description"].endswith(".") and c["description"].count(". ") == 0  # one sentence


@pytest.mark.parametrize("k", [1, 2, 12])
def test_any_number_of_segments(k):
    customers, seg = make_customers(n=240, seed=k, k=k)
    cards = summary.segment_cards(customers, seg)
    assert [c["segment"] for c in cards] == list(range(1, k + 1))
    page = summary.summary_html(cards)
    assert page.count("class='card'") == k



@pytest.mark.parametrize("k", [1, 2, 4])
def test_cards_from_a_precomputed_profile_and_effects_are_the_same(k):
    """Step 04 profiles once and passes the profile and effects on: the cards do not change."""
    from seglib.profile import segment_effects

    customers, seg = make_customers(n=300, seed=10 + k, k=k)
    descriptors = ["age", "gender_female", "gender_male"]
    expected = summary.segment_cards(customers, seg, descriptors=descriptors, currency="EUR")
    profile = profile_segments(customers, seg, descriptors=descriptors)
    effects = segment_effects(customers, seg)
    shared = summary.segment_cards(customers, seg, descriptors=descriptors, currency="EUR",
                                   profile=profile, effects=effects)
    assert repr(shared) == repr(expected)  # every figure to the bit (repr: NaN equals NaN), every text
    assert summary.segment_cards(customers, seg, descriptors=descriptors, currency="EUR",
                                 profile=profile) == expected  # no NaN in these cards


def test_a_profile_or_effects_of_other_labels_are_refused(data):
    from seglib.errors import InputError
    from seglib.profile import segment_effects

    customers, seg = data
    other = seg.where(seg != 4, 3)  # segments 1..3
    with pytest.raises(InputError, match="profile has segments"):
        summary.segment_cards(customers, other, profile=profile_segments(customers, seg))
    with pytest.raises(InputError, match="effects is indexed"):
        summary.segment_cards(customers, other, effects=segment_effects(customers, seg))
    with pytest.raises(InputError, match="no column 'monetary'"):
        summary.segment_cards(customers, seg,
                              effects=segment_effects(customers, seg).drop(columns="monetary"))
    # a precomputed profile does not skip the check of the labels themselves
    profile, effects = profile_segments(customers, seg), segment_effects(customers, seg)
    with pytest.raises(InputError, match="labels must be whole numbers"):
        summary.segment_cards(customers, seg.astype(float) + 0.5, profile=profile, effects=effects)
    with pytest.raises(InputError, match="labels has no value for 1 customers"):
        summary.segment_cards(customers, seg.iloc[1:], profile=profile, effects=effects)


def test_optional_columns_may_all_be_missing(data):
    customers, seg = data
    bare = customers[["customer_id", "recency_days", "frequency", "monetary"]]
    cards = summary.segment_cards(bare, seg)
    assert all(c["descriptors"] == [] for c in cards)
    assert all(c["action"]["rule"] != summary.NO_RULE.name for c in cards)
    no_money = summary.segment_cards(bare.drop(columns="monetary"), seg)
    assert all(c["value_index"] is None and c["action"]["rule"] == summary.NO_RULE.name for c in no_money)
    page = summary.summary_html(no_money)
    assert "value index" not in page.split("How actions are suggested")[0]


def test_stability_from_numbers_verdicts_tables_or_nothing(data):
    customers, seg = data
    jaccard = {1: 0.9, 2: 0.6, 3: 0.2}
    cards = summary.segment_cards(customers, seg, stability=jaccard)
    got = {c["segment"]: c["stability"] for c in cards}
    assert [got[s]["verdict"] for s in (1, 2, 3, 4)] == ["stable", "weak", "unstable", "not measured"]
    assert got[1]["jaccard"] == pytest.approx(0.9) and got[4]["jaccard"] is None
    table = pd.DataFrame({"stability": ["stable", None, "weak", "unstable"],
                          "jaccard": [0.8, 0.7, np.nan, 0.1]}, index=pd.Index([1, 2, 3, 4], name="segment"))
    got = {c["segment"]: c["stability"]["verdict"]
           for c in summary.segment_cards(customers, seg, stability=table)}
    assert got == {1: "stable", 2: "weak", 3: "weak", 4: "unstable"}
    assert {c["stability"]["verdict"] for c in summary.segment_cards(customers, seg)} == {"not measured"}
    with pytest.raises(ParameterError, match="stability"):
        summary.segment_cards(customers, seg, stability=0.5)


def test_bad_parameters_name_themselves(data):
    with pytest.raises(ParameterError, match="currency"):
        summary.segment_cards(*data, currency=3)
    with pytest.raises(ParameterError, match="n_behaviours"):
        summary.segment_cards(*data, n_behaviours=0)
    with pytest.raises(ParameterError, match="labels"):
        summary.summary_html(data[0])


# ---------------------------------------------------------------------------------------- the page


def test_page_is_self_contained_escaped_and_printable(data):
    customers, seg = data
    names = {1: "<script>alert(1)</script>", 2: "B & C", 3: "C", 4: "D"}
    page = summary.summary_html(customers, seg, names=names, currency="EUR")
    assert "<script>" not in page and "&lt;script&gt;" in page and "B &amp; C" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from a network
    images = re.findall(r"<img[^>]*>", page)
    assert len(images) == 1 + 4  # the overview and one chart per card
    assert all(re.search(r"alt=['\"][^'\"]{10,}", tag) for tag in images)
    assert all("data:image/svg+xml;base64," in tag for tag in images)
    assert "@page{size:A4" in page and "break-inside:avoid" in page
    for rule in summary.ACTION_RULES:
        assert html.escape(rule.name) in page
    assert "EUR " in page


def test_page_is_deterministic(data):
    assert summary.summary_html(*data) == summary.summary_html(*data)


def test_write_summary_from_a_run_folder_and_to_a_path(data, tmp_path):
    customers, seg = data
    layout = Layout.for_run(tmp_path / "run").makedirs()
    customers.to_parquet(layout.customers)
    seg.to_frame().to_parquet(layout.segments)
    profile = profile_segments(customers, seg)
    profile["jaccard"] = [0.9, 0.8, 0.4, np.nan]
    write_segments(layout.segments_csv, profile)
    path = summary.write_summary(tmp_path / "run", currency="$")
    assert path == layout.root / "summary.html"
    page = path.read_text()
    assert "unstable" in page and "not measured" in page and "$ " in page
    fragment = summary.read_fragment(path)
    assert fragment.startswith(summary.FRAGMENT_START) and "seglib-summary" in fragment
    other = summary.write_summary(tmp_path / "other.html", summary.segment_cards(customers, seg))
    assert other.read_text().count("class='card'") == 4
    with pytest.raises(ParameterError, match="cards"):
        summary.write_summary(tmp_path / "x.html")


def test_cards_table_shows_every_segment_formatted(cards):
    table = summary.cards_table(cards)
    assert table.index.tolist() == [c["segment"] for c in cards]
    assert table["share of revenue"].str.endswith("%").all()
    assert table["revenue per customer"].str.startswith("EUR ").all()


def test_profile_table_reads_in_units(data):
    customers, seg = data
    table = summary.profile_table(customers, seg, names={1: "One"}, currency="EUR")
    groups = table.index.get_level_values("group").tolist()
    assert groups == sorted(groups, key=lambda g: g != "behaviour")  # behaviour first, then descriptors
    assert ("descriptors", "age (years)") in table.index
    assert table.columns.get_level_values(0)[0] == "all customers"
    assert ("1: One", "value") in table.columns and ("segment 2", "vs all") in table.columns
    returns = table.loc[("behaviour", "lines returned (%)")]
    assert all(v.endswith(" pts") for v in returns.xs("vs all", level=1).iloc[1:])  # a share: a difference
    spend = table.loc[("behaviour", "net spend (EUR)")]
    assert all(v.endswith("x") for v in spend.xs("vs all", level=1).iloc[1:])
    assert spend[("all customers", "value")].startswith("EUR ")


# -------------------------------------------------------------------------------------- the labels


def test_feature_labels_known_pattern_and_unknown():
    assert labels.label("monetary", currency="EUR") == "net spend (EUR)"
    assert labels.label("monetary") == "net spend"
    assert labels.label("recency_days") == "days since last visit (days)"
    payback = labels.feature_info("programme_Payback")
    assert payback.kind == "share" and "Payback" in payback.label and payback.role == "behaviour"
    assert labels.feature_info("gender_female").role == "descriptor"
    odd = labels.feature_info("my_score")
    assert odd.label == "my score" and odd.kind == "number"
    table = labels.feature_table()
    assert set(table["kind"]) <= set(labels.KINDS) and set(table["role"]) <= set(labels.ROLES)
    assert table["feature"].is_unique


def test_describe_features_labels_every_row_and_keeps_the_statistics(data):
    customers, _ = data
    desc = labels.describe_features(customers, currency="EUR")
    numeric = customers.select_dtypes("number").columns
    assert len(desc) == len(numeric) and "customer_id" not in " ".join(desc.index)  # text columns left out
    assert desc.index.is_unique and not set(desc.index) & set(numeric)  # every row reads as a label
    assert "days since last visit (days)" in desc.index and "net spend (EUR)" in desc.index
    raw = customers.describe().T
    rate = [labels.is_rate(c) for c in raw.index]
    raw.loc[rate, raw.columns[1:]] *= 100  # shares in percent, as their "(%)" label says; counts as they are
    assert np.array_equal(desc.to_numpy(), raw.round(2).to_numpy(), equal_nan=True)  # same order
    assert desc.loc["lines on promotion (%)", "max"] > 1 and desc["count"].eq(raw["count"].to_numpy()).all()
    scaled = labels.describe_features(customers[numeric], stats=["mean", "std"], scaled=True)
    assert list(scaled.columns) == ["mean", "std"] and "days since last visit" in scaled.index
    with pytest.raises(ParameterError, match="median"):
        labels.describe_features(customers, stats=["median"])


@pytest.mark.parametrize(
    "name, value, currency, expected",
    [
        ("monetary", 1240.4, "EUR", "EUR 1,240"),
        ("monetary", 9.5, None, "9.50"),
        ("recency_days", 41.2, None, "41 days"),
        ("frequency", 1.0, None, "1 visit"),
        ("frequency", 2.5, None, "2.5 visits"),
        ("promo_share", 0.342, None, "34%"),
        ("return_share", 0.004, None, "0.4%"),
        ("age", float("nan"), None, "-"),
    ],
)
def test_values_are_written_in_their_units(name, value, currency, expected):
    assert labels.format_value(name, value, currency=currency) == expected
