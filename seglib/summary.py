"""The segment summary a marketer reads first: one card per segment, in a self-contained page.

Beside :mod:`seglib.profile` (step 04): it works on the same customer table in original units and the
segment labels, in memory, so a run (``summary.html``), ``report.html`` and an interactive app (the
summary cards of the current cut) all show the same figures.

* :func:`segment_cards` - per segment: name, a one-sentence description, size, revenue share,
  revenue per customer, value index, the behaviours that most distinguish it in plain units, its
  descriptors, its stability verdict and a suggested action from :data:`ACTION_RULES`.
* :func:`summary_html` - a full HTML page of the cards: no network, figures embedded, A4 print.
* :func:`write_summary` - ``summary.html`` of a run folder (or any path).
* :func:`profile_table` - the profile transposed (features down, segments across) in plain units.
* :func:`action_for` and :data:`ACTION_RULES` - the rule table of the suggested actions.

See ``docs/profiles.md`` ("The summary") for the rules.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seglib import labels as _labels
from seglib.cluster import STABLE, WEAK
from seglib.errors import InputError, ParameterError
from seglib.profile import checked_effects, profile_segments, segment_effects, segment_labels

__all__ = [
    "ACTION_RULES",
    "ActionRule",
    "STABILITY_THRESHOLDS",
    "action_for",
    "cards_table",
    "profile_table",
    "segment_cards",
    "stability_verdict",
    "visit_interval_days",
    "visits_text",
    "read_fragment",
    "summary_fragment",
    "summary_html",
    "write_summary",
]

logger = logging.getLogger(__name__)

#: Name of the page written into a run folder.
SUMMARY_FILE = "summary.html"
#: Mean Jaccard thresholds of the stability verdicts, those of step 03 (Hennig 2007; see
#: :meth:`seglib.cluster.StabilityResult.summary`): >= 0.75 stable, >= 0.6 weak, else unstable.
STABILITY_THRESHOLDS = (("stable", STABLE), ("weak", WEAK))
#: Columns of a segments table that may carry the stability of each segment.
STABILITY_COLUMNS = ("stability", "verdict", "stability_verdict")
JACCARD_COLUMNS = ("jaccard", "mean_jaccard", "stability_jaccard")


@dataclass(frozen=True)
class ActionRule:
    """One row of the action rule table: a pattern of recency, frequency and value, and what to do."""

    name: str
    recent: bool
    frequent: bool
    high_value: bool
    action: str
    why: str

    def pattern(self) -> str:
        """The condition in words: ``"recent, frequent, value index >= 1"``."""
        return ", ".join(
            [
                "recent" if self.recent else "lapsed",
                "frequent" if self.frequent else "infrequent",
                "value index >= 1" if self.high_value else "value index < 1",
            ]
        )


#: The suggested actions. Exclusive and exhaustive: every combination of the three yes/no tests
#: (recent? frequent? value index >= 1?) is exactly one rule. The tests, against the whole base:
#: *recent* - the segment's customers are on average at least as recent as the base (mean percentile
#: rank of days since last visit at or below the base's); *frequent* - they visit more often than the
#: base (mean percentile rank of visits above the base's); *high value* - revenue share / customer
#: share >= 1.
ACTION_RULES: tuple[ActionRule, ...] = (
    ActionRule(
        "Champions",
        True,
        True,
        True,
        "Retain and reward",
        "recent, frequent and worth more than their number: keep them close (loyalty benefits, "
        "early access); do not discount what they buy anyway",
    ),
    ActionRule(
        "Loyal, low spend",
        True,
        True,
        False,
        "Develop the basket",
        "they come often but spend little: cross-sell and bundles raise the spend per visit",
    ),
    ActionRule(
        "Big occasional spenders",
        True,
        False,
        True,
        "Develop the frequency",
        "they spend well but come seldom: reminders and visit incentives bring them back sooner",
    ),
    ActionRule(
        "New or occasional",
        True,
        False,
        False,
        "Nurture",
        "recent but infrequent and of low value: onboard them and encourage a second visit",
    ),
    ActionRule(
        "Can't lose them",
        False,
        True,
        True,
        "Win back now",
        "frequent, valuable customers who have not come back lately: a personal offer before they are lost",
    ),
    ActionRule(
        "Fading regulars",
        False,
        True,
        False,
        "Reactivate",
        "they used to come often, but spent little and have lapsed: a timely reminder or offer",
    ),
    ActionRule(
        "Lapsed big spenders",
        False,
        False,
        True,
        "Win back",
        "valuable but lapsed and infrequent: a targeted offer on what they bought",
    ),
    ActionRule(
        "Lost",
        False,
        False,
        False,
        "Reactivate cheaply or let go",
        "lapsed, infrequent and of low value: low-cost mass campaigns only",
    ),
)
#: What the card says when a test cannot be made (no recency, frequency or money column).
NO_RULE = ActionRule(
    "No rule",
    False,
    False,
    False,
    "Not enough data",
    "the action rules need days since last visit, visits and spend per customer",
)


def action_for(recent: bool | None, frequent: bool | None, high_value: bool | None) -> ActionRule:
    """The rule of :data:`ACTION_RULES` that fires for this pattern (:data:`NO_RULE` when one is unknown)."""
    if recent is None or frequent is None or high_value is None:
        return NO_RULE
    matches = [
        r
        for r in ACTION_RULES
        if (r.recent, r.frequent, r.high_value) == (bool(recent), bool(frequent), bool(high_value))
    ]
    assert len(matches) == 1, "the action rules must be exclusive and exhaustive"
    return matches[0]


def stability_verdict(jaccard: float | None) -> str:
    """``"stable"``, ``"weak"`` or ``"unstable"`` from a mean Jaccard; ``"not measured"`` for None/NaN."""
    if jaccard is None or not np.isfinite(jaccard):
        return "not measured"
    for verdict, threshold in STABILITY_THRESHOLDS:
        if jaccard >= threshold:
            return verdict
    return "unstable"


# ----------------------------------------------------------------------------------------------- cards


def _stability_of(stability, segments) -> dict:
    """``{segment: (verdict, jaccard or None)}`` from a mapping, Series, DataFrame or StabilityResult."""
    out = {int(s): ("not measured", None) for s in segments}
    if stability is None:
        return out
    if hasattr(stability, "jaccard") and isinstance(stability.jaccard, pd.DataFrame):  # StabilityResult
        stability = stability.jaccard.mean(axis=1)
    if isinstance(stability, pd.DataFrame):
        verdicts = next((stability[c] for c in STABILITY_COLUMNS if c in stability.columns), None)
        jaccards = next((stability[c] for c in JACCARD_COLUMNS if c in stability.columns), None)
        for s in out:
            j = float(jaccards[s]) if jaccards is not None and s in jaccards.index else None
            j = j if j is not None and np.isfinite(j) else None
            v = (
                str(verdicts[s])
                if verdicts is not None and s in verdicts.index and pd.notna(verdicts[s])
                else None
            )
            out[s] = (v or stability_verdict(j), j)
        return out
    items = stability.items() if hasattr(stability, "items") else None
    if items is None:
        raise ParameterError(
            "stability: expected a mapping segment -> mean Jaccard or verdict, a Series, "
            f"a DataFrame or a StabilityResult; got {type(stability).__name__}"
        )
    for s, value in items:
        s = int(s)
        if s not in out:
            continue
        if isinstance(value, str):
            out[s] = (value, None)
        else:
            j = float(value) if value is not None and np.isfinite(float(value)) else None
            out[s] = (stability_verdict(j), j)
    return out


def _percentile(values: np.ndarray, v: float) -> float:
    """Percentile (0-100) of ``v`` among ``values`` (ties count half)."""
    if not len(values) or not np.isfinite(v):
        return float("nan")
    return float(100 * ((values < v).mean() + 0.5 * (values == v).mean()))


def _typical(name: str, values: pd.Series) -> float:
    """The value a card shows: the median, or the mean for shares and flags (medians of rare shares are 0)."""
    v = values.dropna().astype(float)
    if not len(v):
        return float("nan")
    return float(v.mean() if _labels.is_rate(name) else v.median())


class _Base:
    """The customer table's columns as floats and the whole base's figures, each computed once.

    A card compares a segment with every customer, feature by feature: the whole base's typical value,
    mean and known values are the same for every segment, so they are computed on first use and kept.
    Computed by the same pandas calls as for a single segment, so the figures are the same to the bit.
    """

    def __init__(self, customers: pd.DataFrame):
        self.customers = customers
        self._cache: dict = {}

    def _get(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def column(self, name) -> pd.Series:
        return self._get(("column", name), lambda: self.customers[name].astype(float))

    def typical(self, name) -> float:
        return self._get(("typical", name), lambda: _typical(name, self.column(name)))

    def mean(self, name) -> float:
        return self._get(("mean", name), lambda: float(self.column(name).mean()))

    def known(self, name) -> np.ndarray:
        return self._get(("known", name), lambda: self.column(name).dropna().to_numpy())

    def visits(self):
        return self._get(("visits",), lambda: _Visits.of(self.customers))


def _compare(name: str, seg: pd.Series, base: pd.Series | None, currency, *, label: bool = True,
             whole: _Base | None = None) -> tuple:
    """``(segment value, base value, "days since last visit: 12 days vs 57")``.

    Typical values (:func:`_typical`); when the two medians read the same (1 store vs 1) the means are
    compared instead (``"stores visited: 1.4 stores vs 1.1 on average"``). ``whole``: the base is every
    customer, whose figures ``whole`` keeps (``base`` is then not needed).
    """
    f = _labels.feature_info(name)
    seg = seg.astype(float)
    if whole is None:
        base = base.astype(float)
        b, base_mean = _typical(name, base), lambda: float(base.mean())
    else:
        b, base_mean = whole.typical(name), lambda: whole.mean(name)
    a = _typical(name, seg)
    text = _labels.format_value(name, a, currency=currency)
    other = _labels.format_value(name, b, currency=currency, unit=False)
    suffix = ""
    if text == _labels.format_value(name, b, currency=currency) and not _labels.is_rate(name):
        a, b = float(seg.mean()), base_mean()
        text = _labels.format_value(name, a, currency=currency, digits=1)
        other = _labels.format_value(name, b, currency=currency, unit=False, digits=1)
        suffix = " on average"
    return a, b, (f"{f.label}: " if label else "") + f"{text} vs {other}{suffix}"


def visit_interval_days(customers: pd.DataFrame) -> pd.Series | None:
    """Mean days between a customer's visits: (first to last visit) / (visits - 1).

    From ``tenure_days`` (days since first visit), ``recency_days`` (days since last visit) and
    ``frequency`` (visits): ``(tenure_days - recency_days) / (frequency - 1)``. NaN for customers with
    fewer than two visits (no interval to measure), unknown values or an inconsistent row (last visit
    before the first). None when a column is missing: the cards then count visits instead.
    """
    if not {"tenure_days", "recency_days", "frequency"} <= set(customers.columns):
        return None
    visits = customers["frequency"].astype(float)
    span = customers["tenure_days"].astype(float) - customers["recency_days"].astype(float)
    repeat = (visits >= 2) & (span >= 0)
    return (span / (visits - 1)).where(repeat).rename("visit_interval_days")


def visits_text(customers: pd.DataFrame, mask) -> str | None:
    """How often a group's customers visit, in plain units against the whole base.

    ``"visits every 41 days vs 96"``: the median of :func:`visit_interval_days` among the group's
    customers with two visits or more, against the same median of all customers. One-visit customers
    have no interval: their share is said beside it when it is at least 5% in either
    (``"visits every 41 days vs 96; one visit only: 12% vs 35%"``), and alone when they are most of the
    group or the group has no repeat customer (``"one visit only: 89% vs 60%"``). None without the
    columns of :func:`visit_interval_days`.
    """
    visits = _Visits.of(customers)
    return None if visits is None else visits.text(mask)


@dataclass(frozen=True)
class _Visits:
    """What :func:`visits_text` says of the whole base, computed once for every group."""

    interval: pd.Series  # visit_interval_days
    known: np.ndarray  # visits known
    one: np.ndarray  # one visit only
    one_all: float
    all_median: float | None  # median interval of every repeat customer, None without one

    @classmethod
    def of(cls, customers: pd.DataFrame) -> _Visits | None:
        interval = visit_interval_days(customers)
        if interval is None:
            return None
        visits = customers["frequency"].astype(float)
        known = visits.notna().to_numpy()
        one = (visits <= 1).to_numpy()
        all_i = interval.dropna()
        return cls(interval, known, one, one[known].mean() if known.any() else float("nan"),
                   float(all_i.median()) if len(all_i) else None)

    def text(self, mask) -> str:
        mask = np.asarray(mask, dtype=bool)
        known, one, one_all = self.known, self.one, self.one_all
        one_seg = one[mask & known].mean() if (mask & known).any() else float("nan")
        fmt = functools.partial(_labels.format_value, "one_visit_share")
        once = f"one visit only: {fmt(one_seg)} vs {fmt(one_all)}"
        seg_i = self.interval[mask].dropna()
        if not len(seg_i) or self.all_median is None or one_seg > 0.5:
            return once
        a, b = float(seg_i.median()), self.all_median
        digits = 1 if min(a, b) < 10 and round(a) == round(b) else None  # "every 3.4 days vs 3.1"
        text = (f"visits every {_labels.format_value('visit_interval_days', a, digits=digits)} vs "
                f"{_labels.format_value('visit_interval_days', b, unit=False, digits=digits)}")
        return text + (f"; {once}" if max(one_seg, one_all) >= 0.05 else "")


def _gender_mix(customers: pd.DataFrame, mask: np.ndarray) -> str | None:
    cols = [c for c in customers.columns if str(c).startswith("gender_")]
    if cols:
        shares = customers.loc[mask, cols].astype(float).mean()
        shares.index = [str(c)[len("gender_") :] for c in cols]
    elif "gender" in customers.columns:
        shares = customers.loc[mask, "gender"].astype(object).fillna("unknown").value_counts(normalize=True)
    else:
        return None
    shares = shares[shares > 0].sort_values(ascending=False, kind="mergesort")
    return ", ".join(f"{k} {v:.0%}" for k, v in shares.items()) if len(shares) else None


def segment_cards(
    customers: pd.DataFrame,
    labels,
    *,
    names=None,
    stability=None,
    currency: str | None = None,
    money: str | None = "monetary",
    n_behaviours: int = 4,
    descriptors=None,
    profile: pd.DataFrame | None = None,
    effects: pd.DataFrame | None = None,
) -> list[dict]:
    """The figures of one summary card per segment, from the customer table in memory.

    Parameters
    ----------
    customers : DataFrame
        One row per customer in original units (the customer table of step 02, or ``result.csv``
        read back): numeric features; ``customer_id``, ``segment``, ``som_row``, ``som_col`` are not
        features. Optional columns (age, gender, promotions, programmes) may be missing: the cards
        then say nothing about them.
    labels : Series or array-like of int
        Segment (1..k) per customer: a Series is aligned on the customer index, an array by position.
    names : mapping or Series of segment -> str, optional
        Segment names (``segments.csv``'s ``name``); default: generated by
        :func:`seglib.profile.profile_segments`.
    stability : optional
        Stability per segment: a mapping or Series of segment -> mean Jaccard (a number) or verdict (a
        string), a DataFrame with a ``stability`` / ``verdict`` and/or ``jaccard`` / ``mean_jaccard``
        column indexed by segment, or a :class:`seglib.cluster.StabilityResult`. None: every card says
        "not measured".
    currency : str, optional
        Symbol or code written before amounts (``"EUR"``, ``"$"``); none by default.
    money : str or None, default="monetary"
        Column of net spend per customer; revenue figures need it (None: no revenue figures and
        no action rule).
    descriptors : list of str, optional
        Columns that describe the segments but did not form them (age, gender: the *descriptors* of
        :func:`seglib.features.descriptor_columns`). They are listed under "who they are", never among
        the distinguishing behaviours, and the generated names come from the other columns, as in
        ``segments.csv``. Default: the columns whose role in :mod:`seglib.labels` is ``descriptor``.
    n_behaviours : int, default=4
        Behaviours listed per card, strongest difference first. 3-4 is what a reader retains.
    profile : DataFrame, optional
        :func:`seglib.profile.profile_segments` of these customers and labels with these
        ``descriptors`` and ``money`` (``segments.csv``'s table, as step 04 computes it): the cards
        take the segments, generated names, descriptions and features from it instead of profiling
        again. None profiles here.
    effects : DataFrame, optional
        :func:`seglib.profile.segment_effects` of these customers and labels (at least the profiled
        features): reused instead of recomputed. None computes them here. Both must have the
        labels' segments (else :class:`~seglib.errors.InputError`); that they come from these
        customers is not checked: pass those of the same table and labels.

    Returns
    -------
    list of dict
        One dict per segment (in segment order) with keys ``segment``, ``name``, ``description``
        (one sentence), ``customers``, ``customer_share``, ``revenue``, ``revenue_share``,
        ``revenue_per_customer``, ``value_index`` (revenue share / customer share; None without
        ``money``), ``currency``, ``behaviours`` (list of dicts: ``feature``, ``label``, ``segment``,
        ``base``, ``percentile``, ``effect``, ``text``), ``descriptors`` (list of dicts: ``feature``,
        ``label``, ``text``), ``closest`` (the most similar segment and what separates them, or None),
        ``stability`` (``verdict``, ``jaccard``), ``action`` (``rule``, ``action``, ``why``,
        ``pattern``, ``recent``, ``frequent``, ``high_value``).
    """
    if isinstance(n_behaviours, bool) or not isinstance(n_behaviours, (int, np.integer)) or n_behaviours < 1:
        raise ParameterError(
            f"n_behaviours={n_behaviours!r} is not valid; expected an integer >= 1 (3-4 reads well)"
        )
    if currency is not None and not isinstance(currency, str):
        raise ParameterError(
            f"currency={currency!r} is not valid; expected a symbol or code such as 'EUR' or None"
        )
    customers = customers.drop(
        columns=[c for c in ("segment", "som_row", "som_col") if c in customers.columns]
    )
    if money is not None and money not in customers.columns:
        logger.info("no %r column: the summary has no revenue figures", money)
        money = None
    if descriptors is None:
        descriptors = [c for c in customers.columns if _labels.feature_info(c).role == "descriptor"]
    descriptors = [str(c) for c in descriptors if c in customers.columns]
    given = profile is not None
    if not given:
        profile = profile_segments(customers, labels, money=money, descriptors=descriptors or None)
    seg_labels = pd.Series(segment_labels(labels, customers, "labels"), index=customers.index)
    if given and not np.array_equal(np.unique(seg_labels.to_numpy()), np.asarray(profile.index)):
        raise InputError(f"profile has segments {list(profile.index)}; the labels have "
                         f"{np.unique(seg_labels.to_numpy()).tolist()} (pass the profile of the same labels)")
    features = [c for c in customers.columns if f"{c}_index" in profile.columns]
    if effects is None:
        effects = segment_effects(customers, seg_labels.to_numpy(), features=features)
    else:
        effects = checked_effects(effects, profile.index, features)
    behaviour = [c for c in features if c not in descriptors]
    descriptor = [c for c in features if c in descriptors]
    if names is not None:
        names = {int(k): str(v) for k, v in dict(names).items()}
    verdicts = _stability_of(stability, profile.index)
    if money is not None:
        spend = customers[money].astype(float).fillna(0.0)
        total, revenue = float(spend.sum()), spend.groupby(seg_labels.to_numpy()).sum()
    n_total = len(customers)
    # from here on rows are selected by position: on a plain 0..n-1 index a mask is cheap (a text index
    # would be taken along), and the whole base's figures are computed once, not once per segment
    lab = seg_labels.to_numpy()
    customers = customers.reset_index(drop=True)
    whole = _Base(customers)
    masks = {int(s): lab == s for s in profile.index}

    cards = []
    for s in profile.index:
        s = int(s)
        mask = masks[s]
        n = int(mask.sum())
        share = n / n_total
        card = {
            "segment": s,
            "name": names.get(s, profile.at[s, "name"]) if names else profile.at[s, "name"],
            "customers": n,
            "customer_share": share,
            "currency": currency,
        }
        if money is not None:
            rev = float(revenue.get(s, 0.0))
            rev_share = rev / total if total else float("nan")
            card.update(
                revenue=rev,
                revenue_share=rev_share,
                revenue_per_customer=rev / n,
                value_index=rev_share / share if total else float("nan"),
            )
        else:
            card.update(revenue=None, revenue_share=None, revenue_per_customer=None, value_index=None)
        row = effects.loc[s]
        ranked = sorted(
            (c for c in behaviour if np.isfinite(row.get(c, np.nan))),
            key=lambda c: (-round(abs(float(row[c])), 9), behaviour.index(c)),
        )
        card["behaviours"] = []
        for c in ranked[:n_behaviours]:
            base = whole.column(c)
            seg_v, base_v, text = _compare(c, base[mask], None, currency, whole=whole)
            visits = whole.visits() if c == "frequency" else None
            if visits is not None:  # "visits every 41 days vs 96"
                text = visits.text(mask)
            card["behaviours"].append(
                {
                    "feature": c,
                    "label": _labels.label(c, currency=currency),
                    "segment": seg_v,
                    "base": base_v,
                    "percentile": _percentile(whole.known(c), float(base[mask].median())),
                    "effect": float(row[c]),
                    "text": text,
                }
            )
        card["descriptors"] = []
        for c in descriptor:
            if str(c).startswith("gender_"):
                continue
            v = whole.column(c)[mask]
            if v.notna().any():
                card["descriptors"].append(
                    {
                        "feature": c,
                        "label": _labels.label(c),
                        "text": _compare(c, v, None, currency, whole=whole)[2],
                    }
                )
        mix = _gender_mix(customers, mask)
        if mix:
            card["descriptors"].append({"feature": "gender", "label": "gender", "text": f"gender: {mix}"})
        verdict, jaccard = verdicts[s]
        card["stability"] = {"verdict": verdict, "jaccard": jaccard}
        card["action"] = _action(card, row, features)
        cards.append(card)
    _add_closest(cards, effects, behaviour, whole, masks, currency)
    for card in cards:
        card["description"] = _sentence(card, profile.at[card["segment"], "description"])
    return cards


def _action(card: dict, effects_row: pd.Series, features: list) -> dict:
    recent = (
        bool(effects_row["recency_days"] <= 0)
        if "recency_days" in features and np.isfinite(effects_row["recency_days"])
        else None
    )
    frequent = (
        bool(effects_row["frequency"] > 0)
        if "frequency" in features and np.isfinite(effects_row["frequency"])
        else None
    )
    vi = card.get("value_index")
    high = bool(vi >= 1) if vi is not None and np.isfinite(vi) else None
    rule = action_for(recent, frequent, high)
    return {
        "rule": rule.name,
        "action": rule.action,
        "why": rule.why,
        "pattern": rule.pattern() if rule is not NO_RULE else "",
        "recent": recent,
        "frequent": frequent,
        "high_value": high,
    }


def _add_closest(cards, effects, behaviour, whole: _Base, masks: dict, currency) -> None:
    """Per card, the segment with the nearest behaviour effects and the behaviour that separates them most."""
    cols = [c for c in behaviour if c in effects.columns]
    E = effects[cols].astype(float).fillna(0.0)
    by_seg = {c["segment"]: c for c in cards}
    for card in cards:
        s = card["segment"]
        card["closest"] = None
        others = [o for o in E.index if o != s]
        if not others or not cols:
            continue
        d = ((E.loc[others] - E.loc[s]) ** 2).sum(axis=1)
        o = int(min(others, key=lambda x: (round(float(d[x]), 9), x)))
        diff = (E.loc[s] - E.loc[o]).abs()
        feature = max(cols, key=lambda c: (round(float(diff[c]), 9), -cols.index(c)))
        values = whole.column(feature)
        _, _, text = _compare(feature, values[masks[s]], values[masks[o]], currency, label=False)
        card["closest"] = {
            "segment": o,
            "name": by_seg[o]["name"],
            "feature": feature,
            "text": f"{_labels.feature_info(feature).label} {text} in segment {o}",
        }


def _sentence(card: dict, description: str) -> str:
    text = (
        f"Customers who are {description}"
        if description and "average" not in description
        else "Customers close to the average customer"
    )
    if card["value_index"] is not None and np.isfinite(card["value_index"]):
        text += f", worth {card['value_index']:.1f}x their share of customers in revenue"
    if card.get("closest"):
        c = card["closest"]
        text += f"; unlike the closest segment, {c['segment']} ({c['name']}): {c['text']}"
    return text + "."


# ----------------------------------------------------------------------------------------------- table


def profile_table(
    customers: pd.DataFrame, labels, *, names=None, currency: str | None = None
) -> pd.DataFrame:
    """The profile a person reads: features down (behaviour, then descriptors), segments across.

    Per segment two columns: the typical value in the feature's unit (median; mean for shares) and how
    it compares with all customers: an index (``1.4x``) for amounts, counts and days, a difference in
    percentage points (``+12 pts``) for shares and flags, whose ratios mislead when rare (0.3% against
    0.1% is "3.0x"). The first column is all customers. Everything is text, formatted for reading;
    the numbers are in ``segments.csv``.

    Parameters
    ----------
    customers, labels, names, currency
        As in :func:`segment_cards`.

    Returns
    -------
    DataFrame
        Index: (group, feature label); columns: (segment label, ``"value"`` / ``"vs all"``).
    """
    customers = customers.drop(
        columns=[c for c in ("customer_id", "segment", "som_row", "som_col") if c in customers.columns]
    )
    lab = segment_labels(labels, customers, "labels")
    features = [
        c
        for c in customers.columns
        if pd.api.types.is_numeric_dtype(customers[c]) or pd.api.types.is_bool_dtype(customers[c])
    ]
    features = sorted(
        features, key=lambda c: (_labels.feature_info(c).role != "behaviour", features.index(c))
    )
    names = {int(k): str(v) for k, v in dict(names).items()} if names is not None else {}
    segments = sorted(set(lab.tolist()))
    columns, data = [], {}
    for c in features:
        x = customers[c].astype(float)
        base = _typical(c, x)
        f = _labels.feature_info(c)
        key = ("behaviour" if f.role == "behaviour" else "descriptors", _labels.label(c, currency=currency))
        row = {
            ("all customers", "value"): _labels.format_value(c, base, currency=currency),
            ("all customers", "vs all"): "",
        }
        for s in segments:
            name = f"{s}: {names[s]}" if s in names else f"segment {s}"
            v = _typical(c, x[lab == s])
            if _labels.is_rate(c):
                cmp = f"{100 * (v - base):+.0f} pts" if np.isfinite(v) and np.isfinite(base) else "-"
            else:
                mean_all, mean_seg = x.mean(), x[lab == s].mean()
                cmp = (
                    f"{mean_seg / mean_all:.1f}x"
                    if np.isfinite(mean_seg) and np.isfinite(mean_all) and mean_all > 0 and mean_seg >= 0
                    else "-"
                )
            row[(name, "value")] = _labels.format_value(c, v, currency=currency)
            row[(name, "vs all")] = cmp
        data[key] = row
        columns = list(row)
    out = pd.DataFrame.from_dict(data, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["group", "feature"])
    out.columns = pd.MultiIndex.from_tuples(columns, names=["segment", ""])
    return out


def cards_table(cards: list[dict]) -> pd.DataFrame:
    """The cards as one table for a notebook: a row per segment, figures formatted in their units.

    Columns: ``name``, ``customers`` (count and share), ``share of revenue``, ``revenue per customer``
    (in the cards' currency), ``value index``, ``stability``, ``suggested action`` (with its rule).
    """
    rows = {}
    for c in cards:
        money = c["value_index"] is not None
        rows[c["segment"]] = {
            "name": c["name"],
            "customers": f"{c['customers']:,} ({c['customer_share']:.1%})",
            "share of revenue": f"{c['revenue_share']:.1%}" if money else "-",
            "revenue per customer": _money(c["revenue_per_customer"], c["currency"]) if money else "-",
            "value index": f"{c['value_index']:.2f}" if money else "-",
            "stability": c["stability"]["verdict"],
            "suggested action": f"{c['action']['action']} ({c['action']['rule']})",
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("segment")


# ------------------------------------------------------------------------------------------------ html


def _figure(figsize):
    """A figure and its Axes outside pyplot (no figure manager to create and close; the same SVG)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _svg_data_uri(fig) -> str:
    import matplotlib as mpl

    buf = io.BytesIO()
    with mpl.rc_context({"svg.hashsalt": "seglib", "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _colors(cards) -> dict:
    from seglib.plots import segment_colors

    palette = segment_colors(max(c["segment"] for c in cards)) if cards else []
    return {c["segment"]: palette[c["segment"] - 1] for c in cards}


def _overview_chart(cards) -> str | None:
    """Size vs value: share of customers (x) against value index (y), a bubble per segment."""
    from matplotlib.ticker import PercentFormatter

    if not cards or cards[0]["value_index"] is None:
        return None
    colors = _colors(cards)
    fig, ax = _figure((6.4, 3.4))
    x = [c["customer_share"] for c in cards]
    y = [c["value_index"] for c in cards]
    ax.axhline(1.0, color="black", ls="--", lw=0.8)
    ax.text(0.0, 1.0, " worth their size", transform=ax.get_yaxis_transform(), va="bottom", fontsize=8)
    for c, xi, yi in zip(cards, x, y):
        ax.scatter(
            [xi],
            [yi],
            s=160 + 1500 * max(c["revenue_share"], 0),
            color=colors[c["segment"]],
            alpha=0.85,
            edgecolors="white",
            linewidths=1,
            zorder=3,
        )
        ax.annotate(
            str(c["segment"]),
            (xi, yi),
            ha="center",
            va="center",
            fontsize=9,
            weight="bold",
            color="white",
            zorder=4,
        )
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("share of customers")
    ax.set_ylabel("value index (revenue share / customer share)")
    ax.set_xlim(0, max(x) * 1.2)
    ax.set_ylim(0, max(max(y) * 1.2, 1.3))
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("Size and value of the segments (bubble area: share of revenue)", fontsize=10)
    return _svg_data_uri(fig)


def _card_chart(card, color) -> str | None:
    """Where the segment's typical customer sits among all customers, per distinguishing behaviour."""
    rows = [b for b in card["behaviours"] if np.isfinite(b["percentile"])]
    if not rows:
        return None
    fig, ax = _figure((3.2, 0.45 + 0.32 * len(rows)))
    y = np.arange(len(rows))[::-1]
    p = [b["percentile"] for b in rows]
    ax.barh(y, [v - 50 for v in p], left=50, color=color, height=0.6)
    ax.axvline(50, color="black", lw=0.8)
    ax.set_yticks(y, [_labels.feature_info(b["feature"]).short for b in rows], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xticks([0, 50, 100], ["lowest", "typical", "highest"], fontsize=7)
    ax.tick_params(length=0)
    ax.spines[["top", "right", "left"]].set_visible(False)
    ax.set_title("typical customer of the segment, among all customers", fontsize=7)
    return _svg_data_uri(fig)


def _money(v, currency) -> str:
    if v is None or not np.isfinite(v):
        return "-"
    text = f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"
    return f"{currency} {text}" if currency else text


def _card_html(card, color) -> str:
    e = html.escape
    money = card["value_index"] is not None
    facts = [f"<dt>customers</dt><dd>{card['customers']:,} ({card['customer_share']:.1%})</dd>"]
    if money:
        facts += [
            f"<dt>share of revenue</dt><dd>{card['revenue_share']:.1%}</dd>",
            "<dt>revenue per customer</dt>"
            f"<dd>{e(_money(card['revenue_per_customer'], card['currency']))}</dd>",
            f"<dt>value index</dt><dd>{card['value_index']:.2f}</dd>",
        ]
    st = card["stability"]
    jac = f" (mean Jaccard {st['jaccard']:.2f})" if st["jaccard"] is not None else ""
    facts.append(
        f"<dt>stability</dt><dd class='stab-{e(st['verdict'].replace(' ', '-'))}'>"
        f"{e(st['verdict'])}{jac}</dd>"
    )
    behaviours = "".join(f"<li>{e(b['text'])}</li>" for b in card["behaviours"])
    descriptors = "".join(f"<li>{e(d['text'])}</li>" for d in card["descriptors"])
    a = card["action"]
    chart = _card_chart(card, color)
    chart_html = (
        (
            f"<img class='chart' src='{chart}' alt='Where segment {card['segment']}&#39;s typical "
            f"customer sits among all customers on: "
            f"{e(', '.join(b['label'] for b in card['behaviours']))}'>"
        )
        if chart
        else ""
    )
    return (
        f"<section class='card' id='segment-{card['segment']}' style='border-top-color:{color}'>"
        f"<h2><span class='num' style='background:{color}'>{card['segment']}</span> {e(card['name'])}</h2>"
        f"<p class='desc'>{e(card['description'])}</p>"
        f"<div class='cols'><dl class='facts'>{''.join(facts)}</dl>{chart_html}</div>"
        + (
            f"<h3>What sets it apart (segment vs all customers)</h3><ul>{behaviours}</ul>"
            if behaviours
            else ""
        )
        + (f"<h3>Who they are</h3><ul>{descriptors}</ul>" if descriptors else "")
        + f"<p class='action'><strong>Suggested action: {e(a['action'])}</strong> "
        f"(rule <em>{e(a['rule'])}</em>{': ' + e(a['pattern']) if a['pattern'] else ''}) - {e(a['why'])}.</p>"
        "</section>"
    )


#: Styles of the summary, scoped to ``.seglib-summary`` so the block can sit inside another page.
CSS = """
.seglib-summary{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#222;line-height:1.35;
font-size:14px;max-width:60rem;margin:0 auto 2rem}
.seglib-summary h1{font-size:1.5rem;margin:0 0 .3rem}.seglib-summary h2{font-size:1.1rem;margin:.1rem 0 .3rem}
.seglib-summary h3{font-size:.9rem;margin:.5rem 0 .2rem}
.seglib-summary .lead{color:#333}.seglib-summary .overview{text-align:center}
.seglib-summary .overview img{max-width:100%}
.seglib-summary .cards{display:grid;grid-template-columns:1fr 1fr;gap:.8rem}
.seglib-summary .card{border:1px solid #ccc;border-top:6px solid;border-radius:4px;padding:.5rem .7rem;
break-inside:avoid;page-break-inside:avoid}
.seglib-summary .num{display:inline-block;min-width:1.5em;text-align:center;color:#fff;border-radius:3px;
padding:0 .2em}
.seglib-summary .desc{margin:.2rem 0 .4rem;font-style:italic}
.seglib-summary .cols{display:flex;gap:.5rem;align-items:flex-start}
.seglib-summary .facts{display:grid;grid-template-columns:max-content 1fr;gap:0 .6rem;margin:0;
flex:1 1 auto;min-width:0}
.seglib-summary .facts dt{color:#555;font-weight:normal;white-space:nowrap}
.seglib-summary .facts dd{margin:0;padding:0;font-weight:600}
.seglib-summary .chart{flex:0 0 40%;width:40%;min-width:0}
.seglib-summary ul{margin:.1rem 0;padding-left:1.1rem}
.seglib-summary .action{background:#f4f4f4;padding:.3rem .5rem;margin:.5rem 0 0}
.seglib-summary .stab-unstable{color:#b00}.seglib-summary .stab-weak{color:#a60}
.seglib-summary table.rules{border-collapse:collapse;font-size:12px;margin-top:.3rem}
.seglib-summary table.rules td,.seglib-summary table.rules th{border:1px solid #ccc;padding:.15rem .4rem;
text-align:left}
.seglib-summary .rule-notes{break-inside:avoid;page-break-inside:avoid;margin-top:1rem}
@media print{.seglib-summary{max-width:none;font-size:10.5px}}
@media (max-width:700px){.seglib-summary .cards{grid-template-columns:1fr}}
"""
#: Styles of the stand-alone page around it (A4 print margins).
PAGE_CSS = "body{margin:1.5rem 1rem;background:#fff}@media print{@page{size:A4;margin:12mm}body{margin:0}}"
#: Markers around the summary block in ``summary.html``, so a report can embed the same block.
FRAGMENT_START, FRAGMENT_END = "<!-- seglib-summary:start -->", "<!-- seglib-summary:end -->"


def _rules_html() -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r.name)}</td><td>{html.escape(r.pattern())}</td>"
        f"<td>{html.escape(r.action)}</td></tr>"
        for r in ACTION_RULES
    )
    return (
        "<section class='rule-notes'><h3>How actions are suggested</h3><p>Each segment is tested against all "
        "customers: <em>recent</em> when its customers are on average at least as recent as the base "
        "(percentile rank of days since last visit), <em>frequent</em> when they visit more often than "
        "the base (percentile rank of visits), <em>value index &gt;= 1</em> when its share of revenue is at "
        "least its share of customers. Every combination is exactly one rule; each card names the rule that "
        "fired.</p>"
        f"<table class='rules'><tr><th>rule</th><th>pattern</th><th>action</th></tr>{rows}</table>"
        "</section>"
    )


def _cards_of(cards_or_customers, labels, card_kwargs) -> list[dict]:
    if isinstance(cards_or_customers, pd.DataFrame):
        if labels is None:
            raise ParameterError("summary_html: give labels (segment per customer) with a customer table")
        return segment_cards(cards_or_customers, labels, **card_kwargs)
    return list(cards_or_customers)


def summary_html(
    cards_or_customers,
    labels=None,
    *,
    title: str = "Customer segments",
    note: str | None = None,
    **card_kwargs,
) -> str:
    """A complete, self-contained HTML page of the summary cards (no network; charts embedded as SVG).

    Parameters
    ----------
    cards_or_customers : list of dict or DataFrame
        Cards from :func:`segment_cards`, or the customer table (then ``labels`` and ``card_kwargs``
        are passed to :func:`segment_cards`).
    labels : Series or array-like, optional
        Segment per customer, with a customer table.
    title : str
        Heading of the page.
    note : str, optional
        A line under the heading (e.g. the run folder).
    **card_kwargs
        ``names``, ``stability``, ``currency``, ``money``, ``n_behaviours`` (see :func:`segment_cards`).

    Returns
    -------
    str
        The page; it prints on A4 (two cards per row, no card split across pages).
    """
    cards = _cards_of(cards_or_customers, labels, card_kwargs)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}"
        f"</title><style>{PAGE_CSS}</style></head>\n<body>\n"
        f"{summary_fragment(cards, title=title, note=note)}\n</body></html>\n"
    )


def summary_fragment(
    cards_or_customers,
    labels=None,
    *,
    title: str = "Customer segments",
    note: str | None = None,
    **card_kwargs,
) -> str:
    """The summary as a block for another page: its scoped ``<style>`` and ``<div class='seglib-summary'>``.

    Same arguments as :func:`summary_html`; ``report.html`` embeds this block at its top.
    """
    cards = _cards_of(cards_or_customers, labels, card_kwargs)
    e = html.escape
    colors = _colors(cards)
    n = sum(c["customers"] for c in cards)
    lead = f"{len(cards)} segments of {n:,} customers."
    if cards and cards[0]["value_index"] is not None:
        low = max(cards, key=lambda c: (c["customer_share"] - c["revenue_share"], -c["segment"]))
        top = max(cards, key=lambda c: (c["revenue_share"] - c["customer_share"], -c["segment"]))
        def fact(c, verb):
            per = e(_money(c["revenue_per_customer"], c["currency"]))
            return (
                f"segment {c['segment']} ({e(c['name'])}) holds {c['customer_share']:.1%} of customers "
                f"{verb} {c['revenue_share']:.1%} of revenue ({per} per customer, value index "
                f"{c['value_index']:.2f})"
            )

        first = fact(low, "but only")
        lead += f" {first[:1].upper()}{first[1:]}; {fact(top, 'and')}."
    overview = _overview_chart(cards)
    over_html = (
        f"<div class='overview'><img src='{overview}' alt='Size and value of the segments: share of "
        "customers against value index, one numbered bubble per segment, bubble area the share of "
        "revenue'></div>"
        if overview
        else ""
    )
    cards_html = "".join(_card_html(c, colors[c["segment"]]) for c in cards)
    return (
        f"{FRAGMENT_START}<style>{CSS}</style><div class='seglib-summary'><h1>{e(title)}</h1>"
        + (f"<p class='note'>{e(note)}</p>" if note else "")
        + f"<p class='lead'>{lead}</p>{over_html}<div class='cards'>{cards_html}</div>{_rules_html()}</div>"
        + FRAGMENT_END
    )


def read_fragment(path) -> str | None:
    """The summary block of a ``summary.html`` written by :func:`write_summary` (None when absent)."""
    path = Path(path)
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    a, b = text.find(FRAGMENT_START), text.find(FRAGMENT_END)
    return text[a : b + len(FRAGMENT_END)] if a >= 0 and b > a else None


def write_summary(
    target,
    cards=None,
    *,
    currency: str | None = None,
    title: str = "Customer segments",
    note: str | None = None,
    **card_kwargs,
) -> Path:
    """Write ``summary.html``; returns its path.

    Parameters
    ----------
    target : seglib.config.Layout, run folder or ``.html`` path
        A :class:`~seglib.config.Layout` or a run folder: the page goes to ``<root>/summary.html`` and,
        without ``cards``, is built from the run's customer table (``processed/customers.parquet``),
        segments (``processed/segments.parquet``) and ``segments.csv`` (names; stability from a
        ``stability`` / ``jaccard`` column when present). A path ending in ``.html``: written there
        from ``cards`` (or ``customers=`` and ``labels=`` in ``card_kwargs``).
    cards : list of dict, optional
        From :func:`segment_cards`.
    currency, title, note, **card_kwargs
        See :func:`segment_cards` and :func:`summary_html`.
    """
    from seglib._files import atomic_write_text

    if hasattr(target, "root") and hasattr(target, "processed"):
        layout = target
    elif Path(target).suffix.lower() != ".html":
        from seglib.config import Layout

        layout = Layout.for_run(target)
    else:
        layout = None
    if cards is None:
        if "customers" in card_kwargs:
            customers, labels = card_kwargs.pop("customers"), card_kwargs.pop("labels", None)
        elif layout is not None:
            customers, labels, names, stab = _read_run(layout)
            card_kwargs.setdefault("names", names)
            card_kwargs.setdefault("stability", stab)
        else:
            raise ParameterError("write_summary: give cards, customers= and labels=, or a run folder")
        cards = segment_cards(customers, labels, currency=currency, **card_kwargs)
    path = layout.root / SUMMARY_FILE if layout is not None else Path(target)
    logger.info("writing %s: %d segment cards", path, len(cards))
    return atomic_write_text(path, summary_html(cards, title=title, note=note))


def _read_run(layout):
    for p in (layout.customers, layout.segments):
        if not Path(p).is_file():
            raise InputError(f"{p} not found: run steps 02-03 (or notebook 04) before writing the summary")
    customers = pd.read_parquet(layout.customers)
    seg = pd.read_parquet(layout.segments)
    names, stab = None, None
    if Path(layout.segments_csv).is_file():
        table = pd.read_csv(layout.segments_csv, index_col="segment")
        names = table["name"] if "name" in table.columns else None
        if any(c in table.columns for c in STABILITY_COLUMNS + JACCARD_COLUMNS):
            stab = table
    return customers, seg["segment"], names, stab
