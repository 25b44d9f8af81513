"""Segment profiles in original units, generated descriptions, and ``result.csv`` / ``segments.csv``.

Step 04 of the pipeline. Everything here works on the customer table of step 02 *in original units*
(one row per customer, indexed by customer key, with a ``customer_id`` column holding the id exactly
as in the input) and on the labels of step 03 (segment 1..k, best unit ``som_row`` / ``som_col``).
Profiles are computed from the raw values, never from un-scaled prototypes.

* :func:`profile_segments` - one row per segment: size, shares, median / mean / index of every numeric
  feature, the most common categories, a description and a name.
* :func:`segment_effects`, :func:`describe_segments` - the standardised differences the descriptions
  are built from, and the rules that turn them into words.
* :func:`feature_indices`, :func:`profile_long` - the profile reshaped for heat maps and plotting.
* :func:`result_table`, :func:`write_result`, :func:`read_result`, :func:`write_segments` - the output
  files, written atomically with spreadsheet formulas neutralised.

See ``docs/profiles.md`` for the column reference and the description rules.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from seglib._files import FORMULA_PREFIXES, write_csv
from seglib.errors import InputError, check_float, check_int, check_option

__all__ = [
    "DESCRIPTORS",
    "FLOAT_FORMAT",
    "profile_segments",
    "segment_effects",
    "percentile_ranks",
    "checked_effects",
    "segment_labels",
    "describe_segments",
    "feature_indices",
    "profile_long",
    "result_table",
    "with_exact_sizes",
    "write_result",
    "read_result",
    "write_segments",
]

logger = logging.getLogger(__name__)

#: Column of the customer table holding the id exactly as in the input.
CUSTOMER_ID = "customer_id"
#: Columns added by :func:`result_table`; never profiled as features.
RESULT_COLUMNS = ("segment", "som_row", "som_col")
#: Per-feature statistics of the profile, in column order (``<feature>_<stat>``).
STATS = ("median", "mean", "index")
#: Float format of the written files: 12 significant digits keep cents on amounts up to 10^9 and hide
#: the last-bit noise of float sums (``0.1 + 0.2`` is written ``0.3``), so equal inputs give equal bytes.
FLOAT_FORMAT = "%.12g"
#: Words for the features of the default customer table: ``feature -> (low, high)``. Features not
#: listed read "low <feature>" / "high <feature>"; pass ``words=`` to override or extend.
DESCRIPTORS = {
    "recency_days": ("recent", "lapsed"),
    "frequency": ("infrequent", "frequent"),
    "monetary": ("low spend", "high spend"),
    "avg_basket_value": ("small baskets", "large baskets"),
    "items_per_transaction": ("few items per visit", "many items per visit"),
    "promo_share": ("rarely on promotion", "promotion-driven"),
    "return_share": ("few returns", "many returns"),
    "zero_share": ("few free items", "many free items"),
    "age": ("younger", "older"),
    "n_stores": ("single-store", "multi-store"),
    "tenure_days": ("new", "long-standing"),
}
#: Description and name of a segment with no feature beyond ``min_effect``.
AVERAGE_DESCRIPTION, AVERAGE_NAME = "close to the average customer", "Average"


# --------------------------------------------------------------------------- input checks


def segment_labels(segments, customers: pd.DataFrame, name: str = "segments") -> np.ndarray:
    """The segment labels as checked integers, one per customer row (>= 1).

    A Series is aligned on the customer table's index (every customer needs a value); anything else is
    read by position. Raises `InputError`, naming the parameter ``name``, for duplicated customer keys
    in a Series' index, a missing customer, a wrong length or shape, a non-whole number or a label
    below 1.
    """
    return _labels(segments, customers, name, minimum=1)


def _labels(values, customers: pd.DataFrame, name: str, minimum: int) -> np.ndarray:
    """Whole-number labels, one per customer row: a Series is aligned on the index, else positional."""
    if isinstance(values, pd.Series):
        if values.index.has_duplicates:
            raise InputError(f"{name} has duplicated customer keys in its index; expected one per customer")
        missing = customers.index.difference(values.index)
        if len(missing):
            raise InputError(
                f"{name} has no value for {len(missing)} customers of the customer table, "
                f"e.g. {list(missing[:3])}; expected one value per customer"
            )
        values = values.reindex(customers.index)
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != len(customers):
        raise InputError(f"{name} has shape {arr.shape}; expected one value per customer ({len(customers)})")
    if arr.dtype.kind in "iu":  # whole numbers already (the pipeline's labels): only the minimum to check
        bad = arr < minimum
        if not bad.any():
            return arr.astype(np.int64)
    nums = pd.to_numeric(pd.Series(arr), errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(nums) | (nums != np.round(nums)) | (nums < minimum)
    if bad.any():
        raise InputError(
            f"{name} must be whole numbers >= {minimum} for every customer; {int(bad.sum())} are not, "
            f"e.g. {arr[bad][:3].tolist()}"
        )
    return nums.astype(np.int64)


def _check_at_least(name: str, value, minimum, integer: bool = False) -> None:
    """Raise :class:`ParameterError` unless ``value`` is a number (an int when ``integer``) >= ``minimum``."""
    (check_int if integer else check_float)(name, value, minimum=minimum)


def _require(customers: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in customers.columns]
    if missing:
        raise InputError(
            f"customer table has no column {', '.join(map(repr, missing))} (needed for {what}); "
            f"its columns are: {', '.join(map(str, customers.columns))}"
        )


def _is_text(s: pd.Series) -> bool:
    return bool(
        pd.api.types.is_object_dtype(s)
        or pd.api.types.is_string_dtype(s)
        or isinstance(s.dtype, pd.CategoricalDtype)
    )


def _is_number(s: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s))


def _columns(customers: pd.DataFrame, features, categorical) -> tuple[list, list]:
    """Resolve the numeric features and the categorical columns (see :func:`profile_segments`)."""
    skip = {CUSTOMER_ID, *RESULT_COLUMNS}
    if categorical is None:
        categorical = [c for c in customers.columns if c not in skip and _is_text(customers[c])]
    else:
        categorical = list(categorical)
        _require(customers, categorical, "categorical")
    if features is None:
        features = [
            c for c in customers.columns
            if c not in skip and c not in categorical and _is_number(customers[c])
        ]
    else:
        features = list(features)
        dup = sorted({str(c) for c in features if features.count(c) > 1})
        if dup:
            raise InputError(f"features lists {', '.join(map(repr, dup))} more than once; expected each once")
        _require(customers, features, "features")
        text = [c for c in features if not _is_number(customers[c])]
        if text:
            raise InputError(f"features must be numeric columns; {', '.join(map(repr, text))} are not")
    return features, categorical


def _unit_interval(s: pd.Series) -> bool:
    v = s.to_numpy(dtype=float, na_value=np.nan)
    v = v[~np.isnan(v)]
    return len(v) > 0 and bool(((v >= 0) & (v <= 1)).all())


def _share_groups(customers: pd.DataFrame, features: list) -> dict[str, list]:
    """Auto-detect one-hot / multi-hot groups: >= 2 columns ``<prefix>_<level>`` with values in [0, 1]."""
    groups: dict[str, list] = {}
    for c in features:
        prefix, sep, level = str(c).partition("_")
        if sep and level and _unit_interval(customers[c]):
            groups.setdefault(prefix, []).append(c)
    return {p: cols for p, cols in groups.items() if len(cols) >= 2}


def _level(group: str, column) -> str:
    column = str(column)
    return column[len(group) + 1:] if column.startswith(f"{group}_") else column


def _format_top(shares: pd.Series, top: int) -> str:
    """``"female 62%, male 30%"``: the largest shares first, ties by label, zero shares left out."""
    s = shares[shares > 0]
    order = sorted(s.index, key=lambda k: (-round(float(s[k]), 12), str(k)))[:top]
    return ", ".join(f"{k} {s[k]:.0%}" for k in order) if order else "none"


# --------------------------------------------------------------------------- profiles


def percentile_ranks(frame: pd.DataFrame) -> pd.DataFrame:
    """Percentile rank of each value in its column: ``frame.astype(float).rank(pct=True)``, faster.

    Ties get the average of their ranks, divided by the number of values that are not NaN; NaN stays
    NaN. The same arithmetic as pandas (an integer sum of ranks divided by the ties, then by the
    count), so the same floats, from one sort of the distinct values per column.
    """
    values = frame.to_numpy(dtype=float, na_value=np.nan)
    # column-major: each column is contiguous in memory (a row-major column is read and written strided),
    # and the DataFrame takes the array as its block without a copy
    values = np.asfortranarray(values)
    out = np.full(values.shape, np.nan, order="F")
    for j in range(values.shape[1]):
        col = values[:, j]
        nan = np.isnan(col)
        ok = ~nan if nan.any() else slice(None)
        x = col[ok]
        n = len(x)
        if not n:
            continue
        inverse, ties = _distinct_order(x)
        first = np.cumsum(ties) - ties  # ranks before each distinct value
        average = (ties * first + ties * (ties + 1) // 2) / ties
        out[ok, j] = average[inverse] / n
    return pd.DataFrame(out, index=frame.index, columns=frame.columns, copy=False)


def _distinct_order(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(x, return_inverse=True, return_counts=True)[1:]`` for floats without NaN, faster.

    The distinct values are found by hashing (one pass) and only they are sorted; equal values (0.0 and
    -0.0 too) share one position in the sorted order.
    """
    codes, distinct = pd.factorize(x)
    order = np.argsort(distinct, kind="stable")
    ordered = distinct[order]
    new = np.empty(len(ordered), dtype=bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    position = np.empty(len(distinct), dtype=np.intp)
    position[order] = np.cumsum(new) - 1
    inverse = position[codes]
    return inverse, np.bincount(inverse, minlength=int(new.sum()))


def segment_effects(customers: pd.DataFrame, segments, *, features=None, categorical=None) -> pd.DataFrame:
    """Standardised difference of each segment from the whole customer base, on percentile ranks.

    Each feature is replaced by its percentile rank among all customers (ties averaged, NaN kept);
    then ``effect = (segment mean rank - overall mean rank) / standard deviation of the ranks``
    (population std). Ranks make it robust to heavy tails: on raw spend a handful of big spenders
    inflate the standard deviation so much that a segment spending twice the average looks
    "ordinary". For a 0/1 flag the rank is a linear map of the flag, so its effect equals the plain
    standardised difference of shares. Unlike the index (a ratio of means) the effect puts every
    feature on one scale: 0.5 is a clear difference, 1 a strong one (an above-median half of the
    customers has about 0.87). A feature that does not vary has effect NaN.

    Parameters
    ----------
    customers : DataFrame
        Customer table in original units (see :func:`profile_segments`).
    segments : Series or array-like of int
        Segment (1..k) per customer: a Series is aligned on the customer index, an array by position.
    features, categorical : list of str, optional
        As in :func:`profile_segments`.

    Returns
    -------
    DataFrame
        Index ``segment`` (sorted), one column per feature.
    """
    labels = _labels(segments, customers, "segments", minimum=1)
    features, _ = _columns(customers, features, categorical)
    ranks = percentile_ranks(customers[features])
    std = ranks.std(ddof=0)
    effects = (ranks.groupby(labels).mean() - ranks.mean()) / std.where(std > 0)
    return effects.rename_axis("segment")


def checked_effects(effects: pd.DataFrame, segments, features) -> pd.DataFrame:
    """``effects[features]`` after checking it is a :func:`segment_effects` table of ``segments``.

    Raises :class:`InputError` when a feature has no column or the index is not the segments (sorted).
    """
    if not isinstance(effects, pd.DataFrame):
        raise InputError(f"effects must be a DataFrame from segment_effects; got {type(effects).__name__}")
    missing = [f for f in features if f not in effects.columns]
    if missing:
        raise InputError(f"effects has no column {', '.join(map(repr, missing))}; expected segment_effects "
                         "of the same customers (one column per profiled feature)")
    if not np.array_equal(np.asarray(effects.index), np.asarray(segments)):
        raise InputError(f"effects is indexed by segments {list(effects.index)}; expected {list(segments)} "
                         "(segment_effects of the same labels)")
    return effects[list(features)]


def describe_segments(
    effects: pd.DataFrame,
    *,
    groups: dict | None = None,
    words: dict | None = None,
    n_terms: int = 3,
    min_effect: float = 0.5,
) -> pd.DataFrame:
    """Short description and readable name of each segment from its strongest differences.

    Rules (deterministic; see ``docs/profiles.md``):

    1. Candidates are the features whose effect (:func:`segment_effects`) is at least ``min_effect``
       in absolute value, strongest first; ties keep the column order.
    2. A plain feature gives its *high* word when the effect is positive and its *low* word when
       negative (``words``, else :data:`DESCRIPTORS`, else ``"high <feature>"`` / ``"low <feature>"``).
    3. A column of a one-hot / multi-hot group (``groups``) counts only when it is *over*-represented
       and then reads as its level (``gender_female`` -> ``"female"``, ``programme_Payback`` ->
       ``"Payback"``); at most one level per group (one-hot levels mirror each other).
    4. The description is the first ``n_terms`` words joined by commas (``"older, high spend,
       Payback"``); without any candidate it is ``"close to the average customer"``.
    5. The name is the first two words, capitalised (``"Older, high spend"``), or ``"Average"``.
       Names are distinct, always: two segments never share a name, nor the same words in another
       order (``"High spend, large baskets"`` and ``"Large baskets, high spend"``). While some do,
       each gets the trait that separates it from the others best (the feature not yet in its name
       whose effect differs most from theirs, its high word when the segment is above them, else its
       low word: ``"Average, frequent"`` beside ``"Average, infrequent"``). Segments that no feature
       separates get their number appended (``"Average (4)"``), so names can label a saved model.

    Parameters
    ----------
    effects : DataFrame
        Segments x features, as returned by :func:`segment_effects`.
    groups : dict of str to list of str, optional
        Group name -> its columns (e.g. ``{"gender": ["gender_female", "gender_male"]}``).
    words : dict of str to (str, str), optional
        Feature -> (low word, high word), overriding :data:`DESCRIPTORS`; for a group column only the
        high word is used.
    n_terms : int, default=3
        Words in a description. 2-3 reads well; more turns into a list of every feature.
    min_effect : float, default=0.5
        Smallest absolute effect worth a word, in standard deviations of the percentile ranks (see
        :func:`segment_effects`). 0.5 (a "medium" effect) names what a marketer would notice; raise
        it to 0.8 for terser names on well-separated segments, lower it to 0.3 when segments differ
        only mildly.

    Returns
    -------
    DataFrame
        Index ``segment``, columns ``description`` and ``name``.
    """
    _check_at_least("n_terms", n_terms, 1, integer=True)
    _check_at_least("min_effect", min_effect, 0)
    words = {**DESCRIPTORS, **(words or {})}
    group_of = {col: g for g, cols in (groups or {}).items() for col in cols}
    rows = {}
    for seg, row in effects.iterrows():
        candidates = [
            (-round(abs(float(e)), 9), pos, col, float(e))
            for pos, (col, e) in enumerate(row.items())
            if np.isfinite(e) and abs(e) >= min_effect
        ]
        terms, used_groups = [], set()
        for _, _, col, e in sorted(candidates):
            if len(terms) == n_terms:
                break
            group = group_of.get(col)
            if group is not None:
                if e <= 0 or group in used_groups:
                    continue
                used_groups.add(group)
                terms.append(words.get(col, (None, _level(group, col)))[1])
            else:
                low, high = words.get(col, (f"low {_plain(col)}", f"high {_plain(col)}"))
                terms.append(high if e > 0 else low)
        rows[seg] = (", ".join(terms) if terms else AVERAGE_DESCRIPTION, terms[:2] or [AVERAGE_NAME])
    names = _distinct_names(effects, {seg: words_ for seg, (_, words_) in rows.items()}, words, group_of)
    out = pd.DataFrame({"description": [rows[s][0] for s in rows], "name": [names[s] for s in rows]},
                       index=pd.Index(list(rows), name="segment"))
    return out


def _word_key(words_) -> frozenset:
    return frozenset(w.lower() for w in words_)


def _distinct_names(effects: pd.DataFrame, name_words: dict, words: dict, group_of: dict) -> dict:
    """Names whose sets of words differ between every two segments (rule 5 of describe_segments).

    While segments share the same words (in any order), each of them gets the trait that best separates
    it from the others of its group: the plain feature, not yet in its name, with the largest smallest
    difference of effects to them, read as its high word when the segment is above them, else its low
    word. Segments no feature separates (equal effects) get their number appended.
    """
    name_words = {seg: list(w) for seg, w in name_words.items()}
    plain = [c for c in effects.columns if c not in group_of]
    for _ in range(len(plain) + 1):
        groups: dict = {}
        for seg, w in name_words.items():
            groups.setdefault(_word_key(w), []).append(seg)
        clashes = [g for g in groups.values() if len(g) > 1]
        if not clashes:
            break
        for group in clashes:
            for seg in group:
                others = effects.loc[[t for t in group if t != seg], plain]
                mine = effects.loc[seg, plain]
                gap = (others.sub(mine, axis=1)).abs().min(axis=0)
                taken = set(map(str.lower, name_words[seg]))
                best, best_gap = None, 0.0
                for col in plain:  # column order breaks ties
                    low, high = words.get(col, (f"low {_plain(col)}", f"high {_plain(col)}"))
                    g = float(gap[col])
                    fresh = low.lower() not in taken and high.lower() not in taken
                    if fresh and np.isfinite(g) and g > best_gap:
                        best, best_gap = col, g
                if best is not None:
                    low, high = words.get(best, (f"low {_plain(best)}", f"high {_plain(best)}"))
                    name_words[seg].append(high if mine[best] > others[best].mean() else low)
    names = {seg: ", ".join(w) for seg, w in name_words.items()}
    names = {seg: n[:1].upper() + n[1:] for seg, n in names.items()}
    counts = pd.Series([_word_key(w) for w in name_words.values()]).value_counts()
    for seg, w in name_words.items():
        if counts[_word_key(w)] > 1:  # nothing separates them: their number does
            names[seg] = f"{names[seg]} ({seg})"
    return names


def _plain(column) -> str:
    return str(column).replace("_", " ")


def profile_segments(
    customers: pd.DataFrame,
    segments,
    *,
    money: str | None = "monetary",
    categorical=None,
    features=None,
    groups: dict | None = None,
    top: int = 3,
    words: dict | None = None,
    n_terms: int = 3,
    min_effect: float = 0.5,
    descriptors=None,
    stability: pd.DataFrame | None = None,
    effects: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Profile each segment in original units: size, value, features, categories, description.

    Parameters
    ----------
    customers : DataFrame
        One row per customer in original units, indexed by customer key: a ``customer_id`` column
        (ignored here), numeric features, possibly text columns (gender, preferred store). Columns
        ``segment``, ``som_row`` and ``som_col`` are never profiled.
    segments : Series or array-like of int
        Segment (1..k) per customer: a Series is aligned on the customer index, an array by position.
        Only segments with customers get a row.
    money : str or None, default="monetary"
        Column of spend per customer used for ``revenue_share``. None leaves the share out; a name
        that is not a column raises :class:`~seglib.errors.InputError` (so a renamed column is not
        silently ignored). Missing values count as 0.
    categorical : list of str, optional
        Columns summarised by their most common values (``top_<column>``) instead of numerically.
        Default: every text / categorical column. List a numeric code column (a store number) here
        to treat it as a category.
    features : list of str, optional
        Numeric columns to profile. Default: every numeric or boolean column not in ``categorical``.
    groups : dict of str to list of str, optional
        One-hot / multi-hot groups summarised like categories (``top_<group>``): the mean of each
        column in the segment is the share of customers with that level (0/1 flags) or the average
        share (per-customer shares such as ``programme_Payback``). Default: columns named
        ``<prefix>_<level>`` whose values lie in [0, 1], grouped by prefix when a prefix has at least
        two columns (``gender_female`` + ``gender_male`` -> ``gender``). Pass ``{}`` to disable, or an
        explicit mapping when the names do not follow that pattern.
    top : int, default=3
        Categories listed per ``top_`` column; the rest of the distribution is in the data.
    words, n_terms, min_effect
        Description rules, see :func:`describe_segments`.
    descriptors : list of str, optional
        Columns that *describe* the segments but did not form them (the descriptors of market
        segmentation: age, gender; :func:`seglib.features.descriptor_columns`). They are profiled
        like every feature, but the ``name`` and ``description`` come from the other columns (the
        bases: what the customers do), and a ``who`` column describes the descriptors by the same
        rules (``"older, female"``). None: no split, every column names the segments, no ``who``.
    stability : DataFrame, optional
        Per-segment stability (:meth:`seglib.cluster.StabilityResult.summary`: ``mean_jaccard`` and
        ``verdict``), written as the ``mean_jaccard`` and ``stability`` columns after ``who``;
        segments it lacks get NaN and ``"not measured"``.
    effects : DataFrame, optional
        :func:`segment_effects` of these customers and segments, when the caller has them already
        (step 04 shares them with :func:`seglib.summary.segment_cards`): its columns must include
        every profiled feature and its index be the segments. None computes them here. Passing the
        effects of other customers or labels gives wrong names: they are not recomputed to check.

    Returns
    -------
    DataFrame
        Index ``segment`` (sorted). Columns, in order: ``name``, ``description``, (``who``,
        with ``descriptors``; ``mean_jaccard`` and ``stability``, with ``stability``), ``customers``
        (count), ``customer_share``, ``revenue_share`` (with ``money``), then per feature
        ``<feature>_median``, ``<feature>_mean``, ``<feature>_index``, then ``top_<column>`` per
        categorical column and ``top_<group>`` per group (none for a group named like a categorical
        column, which already has its summary).

        The index is the segment mean over the mean of all customers (1.4 = 40 % above average).
        When the overall mean is 0 it is 1 for a segment whose mean is 0 too and NaN otherwise (no
        ratio exists; read the effect of :func:`segment_effects`); it is NaN when a segment has no
        value for the feature (all NaN). For features that can be negative the ratio misleads: use
        the effect.
    """
    _check_at_least("top", top, 1, integer=True)
    if len(customers) == 0:
        raise InputError("customer table is empty; expected one row per customer")
    labels = _labels(segments, customers, "segments", minimum=1)
    features, categorical = _columns(customers, features, categorical)
    groups = _share_groups(customers, features) if groups is None else dict(groups)
    _require(customers, [c for cols in groups.values() for c in cols], "groups")

    counts = pd.Series(labels).value_counts().sort_index()
    out = pd.DataFrame({"customers": counts, "customer_share": counts / len(customers)})
    out.index = pd.Index(counts.index.to_numpy(dtype=np.int64), name="segment")
    if money is not None:
        _require(customers, [money], "money (pass money=None to leave revenue_share out)")
        spend = customers[money].astype(float).fillna(0.0)
        total = spend.sum()
        if total == 0:
            logger.warning("total %s is 0: revenue_share is undefined (NaN)", money)
        out["revenue_share"] = spend.groupby(labels).sum() / total if total != 0 else np.nan

    x = customers[features].astype(float)
    by = x.groupby(labels)
    seg_mean, overall = by.mean(), x.mean()
    index = seg_mean / overall
    zero = (overall == 0).to_numpy()
    index.loc[:, zero] = np.where(seg_mean.loc[:, zero] == 0, 1.0, np.nan)
    stats = {"median": by.median(), "mean": seg_mean, "index": index}
    blocks = [out]
    columns = {f"{f}_{s}": stats[s][f] for f in features for s in STATS}  # one block, features unique
    blocks.append(pd.DataFrame(columns, index=out.index))
    for col in categorical:
        text = customers[col].astype(object).where(customers[col].notna(), "(missing)")
        shares = pd.crosstab(labels, text.to_numpy(), normalize="index")
        blocks.append(shares.apply(_format_top, axis=1, top=top).rename(f"top_{col}").to_frame())
    for group, cols in groups.items():
        if group in categorical:  # e.g. a text `gender` beside `gender_*` flags: one summary is enough
            continue
        means = customers[cols].astype(float).groupby(labels).mean()
        means.columns = [_level(group, c) for c in cols]
        blocks.append(means.apply(_format_top, axis=1, top=top).rename(f"top_{group}").to_frame())
    for b in blocks[1:]:  # every block is indexed by the sorted labels present, like `out`
        b.index = out.index
    profile = pd.concat(blocks, axis=1)

    if effects is None:
        effects = segment_effects(customers, labels, features=features, categorical=categorical)
    else:
        effects = checked_effects(effects, out.index, features)
    rules = dict(words=words, n_terms=n_terms, min_effect=min_effect)
    if stability is not None:
        missing = [c for c in ("mean_jaccard", "verdict") if c not in stability.columns]
        if missing:
            raise InputError(f"stability lacks column(s) {missing}; expected StabilityResult.summary()")
        table = stability.reindex(profile.index)
        profile.insert(0, "stability", table["verdict"].astype(object).where(table["verdict"].notna(),
                                                                             "not measured"))
        profile.insert(0, "mean_jaccard", table["mean_jaccard"].astype(float))
    if descriptors is not None:
        descriptors = list(descriptors)
        _require(customers, descriptors, "descriptors")
        who = [c for c in effects.columns if c in descriptors]
        bases = [c for c in effects.columns if c not in descriptors]
        split = {g: [c for c in cols if c in who] for g, cols in groups.items()}
        described = describe_segments(effects[who], groups={g: c for g, c in split.items() if c}, **rules)
        profile.insert(0, "who", described["description"])
        groups = {g: [c for c in cols if c in bases] for g, cols in groups.items()}
        effects = effects[bases]
    names = describe_segments(effects, groups={g: c for g, c in groups.items() if c}, **rules)
    profile.insert(0, "description", names["description"])
    profile.insert(0, "name", names["name"])
    logger.info("profiled %d customers, %d segments, %d features", len(customers), len(out), len(features))
    return profile


def _profile_features(profile: pd.DataFrame) -> list:
    """Features of a profile: those with all three ``<feature>_<stat>`` columns, in column order."""
    cols = set(map(str, profile.columns))
    return [
        c[: -len("_index")] for c in map(str, profile.columns)
        if c.endswith("_index") and all(f"{c[: -len('_index')]}_{s}" in cols for s in STATS)
    ]


def feature_indices(profile: pd.DataFrame) -> pd.DataFrame:
    """Segments x features matrix of the indices of a :func:`profile_segments` table (the heat map)."""
    feats = _profile_features(profile)
    return profile[[f"{f}_index" for f in feats]].set_axis(feats, axis=1).rename_axis(columns="feature")


def profile_long(profile: pd.DataFrame) -> pd.DataFrame:
    """Tidy form of a profile: one row per (segment, feature) with ``median``, ``mean``, ``index``.

    Columns ``segment``, ``name`` (when the profile has names), ``feature``, ``median``, ``mean``,
    ``index``; rows ordered by segment, then feature in profile order. Suited to seaborn and to
    pivoting (``long.pivot(index="feature", columns="segment", values="index")``).
    """
    feats = _profile_features(profile)
    parts = [
        profile[[f"{f}_{s}" for f in feats]].set_axis(feats, axis=1).rename_axis(columns="feature")
        .stack().rename(s)
        for s in STATS
    ]
    long = pd.concat(parts, axis=1).reset_index()
    if "name" in profile.columns:
        long.insert(1, "name", long["segment"].map(profile["name"]))
    return long


# --------------------------------------------------------------------------- output files


def result_table(
    customers: pd.DataFrame,
    segments,
    som_row,
    som_col,
    id_column: str = "customerID",
    *,
    features=None,
    order: str = "segment",
) -> pd.DataFrame:
    """The ``result.csv`` frame: one row per customer with its segment, best unit and features.

    Parameters
    ----------
    customers : DataFrame
        Customer table in original units with a ``customer_id`` column (the id exactly as in the
        input), indexed by customer key.
    segments, som_row, som_col : Series or array-like of int
        Segment (1..k) and best SOM unit (row, column, from 0) per customer: a Series is aligned on
        the customer index, an array by position.
    id_column : str, default="customerID"
        Name of the id column in the output: the name the id column has in the input file, so the
        result joins back onto it (``customerID`` in the original schema).
    features : list of str, optional
        Columns copied after ``som_col``, in original units. Default: every column of the table except
        ``customer_id`` (and any stale ``segment`` / ``som_row`` / ``som_col``), in table order.
    order : {"segment", "input"}, default="segment"
        Row order. ``"segment"``: by segment, then id text, then customer key - fixed by the content
        alone, so the same customers give the same file whatever order upstream steps produced.
        ``"input"``: the customer table's order.

    Returns
    -------
    DataFrame
        Columns ``id_column``, ``segment``, ``som_row``, ``som_col``, then the features; a fresh
        0..n-1 index.
    """
    check_option("order", order, ["segment", "input"])
    _require(customers, [CUSTOMER_ID], "the customer id of result.csv")
    table = pd.DataFrame(
        {
            id_column: customers[CUSTOMER_ID].to_numpy(),
            "segment": _labels(segments, customers, "segments", minimum=1),
            "som_row": _labels(som_row, customers, "som_row", minimum=0),
            "som_col": _labels(som_col, customers, "som_col", minimum=0),
        }
    )
    if features is None:
        taken = {CUSTOMER_ID, id_column, *RESULT_COLUMNS}
        stale = [c for c in customers.columns if c in taken and c != CUSTOMER_ID]
        if stale:
            logger.warning("result_table: column(s) %s of the customer table replaced by new labels", stale)
        features = [c for c in customers.columns if c not in taken]
    else:
        features = list(features)
        _require(customers, features, "features of result.csv")
    table = pd.concat([table, customers[features].reset_index(drop=True)], axis=1)
    if order == "segment":
        table = table.iloc[_segment_order(table["segment"], table[id_column], customers.index)]
    return table.reset_index(drop=True)


def _segment_order(segments, ids, keys) -> np.ndarray:
    """Positions that sort rows by segment, then id text, then key text (``result.csv``'s order).

    Texts compare by code point, and equal rows keep their order (a stable sort), as
    ``DataFrame.sort_values(kind="mergesort")`` on ``(segment, ids.astype(str), keys.astype(str))``
    orders them; with Arrow (four times faster on 100,000 customers) unless a text is missing.
    """
    frame = pd.DataFrame({"segment": np.asarray(segments), "id": pd.Series(np.asarray(ids)).astype(str),
                          "key": pd.Index(keys).astype(str)})
    if frame["id"].isna().any() or frame["key"].isna().any():  # missing texts: pandas places them last
        return frame.sort_values(["segment", "id", "key"], kind="mergesort").index.to_numpy()
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.table({name: pa.array(frame[name]) for name in frame.columns})
    return pc.sort_indices(table, sort_keys=[(name, "ascending") for name in frame.columns]).to_numpy()


def write_result(path: str | os.PathLike, table: pd.DataFrame, *, float_format: str = FLOAT_FORMAT) -> Path:
    """Write a :func:`result_table` frame to ``path`` (``result.csv``) atomically; returns the path.

    Header row, ``\\n`` line ends, UTF-8, no index; missing values as empty cells; floats with
    :data:`FLOAT_FORMAT`; text cells starting with ``= + - @`` prefixed with ``'`` so a spreadsheet
    shows them as text (:func:`read_result` undoes it). The old file stays intact if writing fails.
    """
    logger.info("writing %s: %d customers", path, len(table))
    return write_csv(path, table, index=False, float_format=float_format)


def with_exact_sizes(profile: pd.DataFrame, customers, revenue=None) -> pd.DataFrame:
    """A profile of a sample of customers with the exact sizes of its segments.

    ``customers`` (and ``revenue``, the spend) per segment over every customer, e.g. summed over a
    Dask run's partitions, replace the sample's ``customers``, ``customer_share`` and (when the profile
    has it and ``revenue`` is given) ``revenue_share``; medians and means stay the sample's. A segment
    without a count gets 0. Returns a copy.
    """
    out = profile.copy()
    customers = pd.Series(customers)
    absent = customers.index.difference(out.index)
    if len(absent):
        logger.warning("segments %s (%s customers in all) have no customer in the sample: not profiled",
                       ", ".join(map(str, absent)), ", ".join(str(int(customers[s])) for s in absent))
    counts = customers.reindex(out.index, fill_value=0)
    out["customers"] = counts.astype("int64")
    out["customer_share"] = counts / customers.sum()
    if "revenue_share" in out and revenue is not None:
        money = pd.Series(revenue)
        out["revenue_share"] = money.reindex(out.index, fill_value=0) / money.sum()
    return out


def write_segments(
    path: str | os.PathLike, profile: pd.DataFrame, *, float_format: str = FLOAT_FORMAT
) -> Path:
    """Write a :func:`profile_segments` table to ``path`` (``segments.csv``), ``segment`` as first column.

    Same format and guarantees as :func:`write_result`.
    """
    logger.info("writing %s: %d segments", path, len(profile))
    return write_csv(path, profile.reset_index(), index=False, float_format=float_format)


def read_result(path: str | os.PathLike, id_column: str = "customerID") -> pd.DataFrame:
    """Read a ``result.csv`` back, ids as text exactly as written by :func:`write_result`.

    The id column is read as text (``"007"`` keeps its zeros, ``"NA"`` stays a string) and the
    ``'`` that neutralised formula-like cells is removed from text columns, so ``"=cmd"`` round-trips.
    (An id that itself starts with ``'`` followed by ``= + - @`` loses that apostrophe.)
    """
    path = Path(path)
    try:
        header = pd.read_csv(path, nrows=0).columns
    except (OSError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot read result file {path}: {exc}") from exc
    if id_column not in header:
        raise InputError(f"{path} has no column {id_column!r}; its columns are: {', '.join(header)}")
    table = pd.read_csv(
        path,
        dtype={id_column: str},
        keep_default_na=False,
        na_values={c: [""] for c in header if c != id_column},
    )
    for col in table.columns:
        if _is_text(table[col]):
            text = table[col].astype("string")
            mask = text.str.startswith(tuple("'" + p for p in FORMULA_PREFIXES), na=False)
            if mask.any():
                table[col] = table[col].astype(object).where(~mask, text[mask].str[1:].astype(object))
    return table
