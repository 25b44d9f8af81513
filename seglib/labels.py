"""Readable labels and units of the customer features, kept in one place.

Every figure and table that shows a feature says it the same way: ``days since last visit`` in days,
``net spend`` in the run's currency, ``Payback share of lines`` as a percentage. :data:`FEATURES` is the
table (feature name -> :class:`Feature`); the columns made per value of a role
(``programme_<name>``, ``gender_<value>``) get their label by pattern; any other column gets a
label derived from its name (``"my_score"`` -> ``"my score"``, unit-less), so an unknown feature is
shown, never an error.

* :func:`feature_info` - the :class:`Feature` of a column name.
* :func:`label` - the label with its unit (``"net spend (EUR)"``), for axes and table rows.
* :func:`format_value` - a value in its unit (``"EUR 1,240"``, ``"41 days"``, ``"34%"``).
* :func:`feature_table` - the table as a DataFrame (the documentation prints it).
* :func:`describe_features` - summary statistics of a feature table, one row per feature by its label.

Kinds: ``money``, ``days``, ``count``, ``share`` (0..1 of a customer's lines), ``flag`` (0/1),
``years``, ``category``, ``number``. Roles: ``behaviour`` (what customers do: the bases of a
segmentation) or ``descriptor`` (who they are: age, gender).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "Feature",
    "FEATURES",
    "KINDS",
    "ROLES",
    "feature_info",
    "label",
    "format_value",
    "feature_table",
    "describe_features",
    "is_rate",
]

#: Kinds of feature, each with how its values are written.
KINDS = ("money", "days", "count", "share", "flag", "years", "category", "number")
#: What a feature says about a customer.
ROLES = ("behaviour", "descriptor")


@dataclass(frozen=True)
class Feature:
    """Label, unit and kind of one feature.

    Attributes
    ----------
    name : str
        The column name.
    label : str
        Readable label without unit (``"days since last visit"``).
    unit : str
        Unit word (``"days"``, ``"visits"``, ``"%"``); ``"currency"`` for money (replaced by the run's
        currency, or left out when there is none); ``""`` when unit-less.
    kind : str
        One of :data:`KINDS`.
    role : str
        One of :data:`ROLES`.
    short : str
        A few words for a narrow axis or a card (``"recency"``).
    """

    name: str
    label: str
    unit: str
    kind: str
    role: str = "behaviour"
    short: str = ""


#: The customer features of ``seglib.features`` (``level="customer"``).
FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("recency_days", "days since last visit", "days", "days", short="recency"),
        Feature("tenure_days", "days since first visit", "days", "days", short="tenure"),
        Feature("frequency", "visits", "visits", "count", short="visits"),
        # derived by the summary cards (seglib.summary.visits_text), not columns of the customer table
        Feature("visit_interval_days", "days between visits", "days", "days", short="visit interval"),
        Feature("one_visit_share", "customers with one visit only", "%", "share", short="one visit"),
        Feature("monetary", "net spend", "currency", "money", short="spend"),
        Feature("avg_basket_value", "spend per visit", "currency", "money", short="basket"),
        Feature("items_per_transaction", "items per visit", "items", "count", short="items"),
        Feature("promo_share", "lines on promotion", "%", "share", short="promotions"),
        Feature("return_share", "lines returned", "%", "share", short="returns"),
        Feature("zero_share", "free lines", "%", "share", short="free items"),
        Feature("n_stores", "stores visited", "stores", "count", short="stores"),
        Feature("age", "age", "years", "years", "descriptor", short="age"),
        Feature("gender", "gender", "", "category", "descriptor", short="gender"),
    )
}

#: Patterns of the columns made per value of a role: prefix -> (label template, kind, role).
PATTERNS = {
    "programme_": ("{} programme, share of lines", "share", "behaviour"),
    "gender_": ("gender {}, share", "share", "descriptor"),
}


def feature_info(name) -> Feature:
    """The :class:`Feature` of column ``name``: from :data:`FEATURES`, a pattern, or derived from the name."""
    name = str(name)
    if name in FEATURES:
        return FEATURES[name]
    for prefix, (template, kind, role) in PATTERNS.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            level = name[len(prefix) :]
            return Feature(name, template.format(level), "%", kind, role, short=level)
    plain = name.replace("_", " ")
    return Feature(name, plain, "", "number", "behaviour", short=plain)


def is_rate(name) -> bool:
    """True for shares and flags: compared as differences in percentage points, not as ratios."""
    return feature_info(name).kind in ("share", "flag")


def _unit(feature: Feature, currency: str | None) -> str:
    if feature.unit == "currency":
        return currency or ""
    return feature.unit


def label(name, *, currency: str | None = None, unit: bool = True) -> str:
    """Readable label of column ``name``, with its unit in brackets: ``"net spend (EUR)"``.

    Parameters
    ----------
    name : str
        Column name (a feature of the customer table).
    currency : str, optional
        Symbol or code of the money unit; money labels carry no unit when None.
    unit : bool, default=True
        Append the unit.
    """
    f = feature_info(name)
    u = _unit(f, currency) if unit else ""
    return f"{f.label} ({u})" if u and u != f.label else f.label


def _number(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def format_value(
    name, value, *, currency: str | None = None, unit: bool = True, digits: int | None = None
) -> str:
    """``value`` of feature ``name`` written in its unit, for a person.

    Money: ``"EUR 1,240"`` (no decimals from 100 up, two below); days and years: whole numbers
    (``"41 days"``); counts: one decimal below 10 (``"2.5 visits"``); shares and flags: percent
    (``"34%"``, one decimal below 1%). Missing values read ``"-"``.

    Parameters
    ----------
    name : str
        Column name.
    value : float
    currency : str, optional
        Written before amounts (``"EUR 1,240"``, ``"$ 1,240"``); none when None.
    unit : bool, default=True
        Write the unit (``"41 days"``) or the number only (``"41"``); money keeps its currency.
    digits : int, optional
        Decimals of days, years and counts (default: whole days and years, counts as above).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    f = feature_info(name)
    v = float(value)
    if f.kind in ("share", "flag"):
        pct = 100 * v
        return f"{pct:.1f}%" if 0 < abs(pct) < 1 else f"{pct:.0f}%"
    if f.kind == "money":
        text = _number(v, 0 if abs(v) >= 10 else 2)
        return f"{currency} {text}" if currency else text
    if digits is not None and f.kind in ("days", "years", "count"):
        text = _number(v, digits)
    elif f.kind in ("days", "years"):
        text = _number(v, 0)
    elif f.kind == "count":
        text = _number(v, 1 if abs(v) < 10 and v != round(v) else 0)
    else:
        text = f"{v:,.3g}" if abs(v) < 1000 else _number(v, 0)
    u = f.unit if unit else ""
    if u.endswith("s") and text == "1":  # 1 visit, 1 store, 1 day
        u = u[:-1]
    return f"{text} {u}" if u else text


def feature_table(names=None):
    """The label table as a DataFrame: ``feature``, ``label``, ``unit``, ``kind``, ``role``.

    ``names`` (column names) lists those features, in that order; default :data:`FEATURES`.
    """
    import pandas as pd

    rows = [feature_info(n) for n in (FEATURES if names is None else names)]
    return pd.DataFrame(
        [(f.name, f.label, f.unit, f.kind, f.role) for f in rows],
        columns=["feature", "label", "unit", "kind", "role"],
    )


def describe_features(table, *, stats=None, scaled: bool = False, currency: str | None = None,
                      decimals: int = 2):
    """Summary statistics of a feature table, one row per feature under its readable label.

    ``table.describe().T`` of the numeric columns (identifiers such as ``customer_id`` are text and
    left out), its rows renamed with :func:`label`: ``"days since last visit (days)"`` rather than
    ``recency_days``. Shares and flags are written in percent (their label says ``(%)``: 24 rather than
    0.24) in original units. Notebooks show it instead of the raw ``describe()``.

    Parameters
    ----------
    table : DataFrame
        A customer table (original units) or the scaled features the map is trained on.
    stats : list of str, optional
        Columns of ``describe()`` to keep, in order (``["mean", "std", "min", "max"]``); default all
        (count, mean, std, min, quartiles, max).
    scaled : bool, default=False
        True for scaled features: their values are no longer in the feature's unit, so the labels
        carry none (``"days since last visit"``) and shares stay as they are.
    currency : str, optional
        Unit of money labels of unscaled tables (``"net spend (EUR)"``).
    decimals : int, default=2
        Rounding of the statistics (2 reads well for both original and scaled values).

    Returns
    -------
    DataFrame
        Index ``feature`` (the labels; a label two columns share is followed by the column name),
        columns the statistics.
    """
    import pandas as pd

    from seglib.errors import ParameterError

    desc = table.describe().T
    if stats is not None:
        unknown = [s for s in stats if s not in desc.columns]
        if unknown:
            raise ParameterError(f"stats={list(stats)!r} is not valid: {unknown} not among the "
                                 f"statistics {list(desc.columns)}")
        desc = desc[list(stats)]
    if not scaled:  # shares and flags are labelled "(%)": written in percent, as format_value does
        rates = [c for c in desc.index if is_rate(c)]
        values = [s for s in desc.columns if s != "count"]
        desc.loc[rates, values] = desc.loc[rates, values] * 100
    names = [label(c, currency=currency, unit=not scaled) for c in desc.index]
    names = [f"{n} [{c}]" if names.count(n) > 1 else n for n, c in zip(names, desc.index)]
    desc.index = pd.Index(names, name="feature")
    return desc.round(decimals)
