"""Plots of segment profiles (step 04): feature-index heat map, segment sizes, feature bars."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from seglib.errors import ParameterError, check_option
from seglib.features import absent_reason
from seglib.plots._colors import segment_colors, segment_label
from seglib.profile import feature_indices

__all__ = ["plot_profile_heatmap", "plot_segment_sizes", "plot_feature_bars"]


def _axes(ax, figsize):
    return plt.subplots(figsize=figsize)[1] if ax is None else ax


def _segment_labels(profile: pd.DataFrame) -> list[str]:
    if "name" in profile.columns:
        return [segment_label(s, n) for s, n in profile["name"].items()]
    return [str(s) for s in profile.index]


def _colors(segments) -> list[str]:
    palette = segment_colors(int(max(segments)))
    return [palette[int(s) - 1] for s in segments]


#: Heat-map caption: what the colour says, and what it does not.
HEATMAP_NOTE = ("orange: more than the average customer, purple: less - the colour says more or less, "
                "not better or worse")


def plot_profile_heatmap(
    profile: pd.DataFrame, *, ax=None, limit: float = 4.0, rate_limit: float = 0.25, annotate: bool = True,
    cmap: str = "PuOr_r", **kwargs,
):
    """Heat map of segments against all customers: features down (behaviour, descriptors), segments across.

    Amounts, counts and days compare by their index (segment mean / mean of all customers, written
    ``1.4x``; colour follows ``log2(index)``, so 2x and 0.5x are equally strong). Shares and flags
    compare by their difference in percentage points (``+12 pts``): their ratios mislead when rare
    (a 0.3% return share against 0.1% would read 3.0x). Orange is more than the average customer,
    purple less; the colour says more or less, not better or worse (more days since the last visit
    is worse, more spend is better). Missing values are left blank.

    Parameters
    ----------
    profile : DataFrame
        A :func:`seglib.profile.profile_segments` table (its ``<feature>_index`` / ``_mean`` columns
        are used and the segment names label the columns), or a segments x features matrix of
        indices such as :func:`seglib.profile.feature_indices` returns (then every feature compares
        by its index).
    ax : Axes, optional
        Axes to draw on; a new figure when None.
    limit : float, default=4.0
        Indices at or beyond ``limit`` and ``1 / limit`` get the full colour. 4 suits most profiles;
        use 2 when segments differ mildly, so the differences stay visible.
    rate_limit : float, default=0.25
        Share differences at or beyond this (0.25 = 25 percentage points) get the full colour.
    annotate : bool, default=True
        Write each comparison (``1.4x``, ``+12 pts``) in its cell. Turn off for more than ~15 segments.
    cmap : str, default="PuOr_r"
        A diverging colormap without a good/bad connotation (red/green or red/blue suggest one).
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.imshow`.

    Returns
    -------
    Axes
    """
    from seglib.labels import feature_info, is_rate
    from seglib.labels import label as feature_label

    if not limit > 1:
        raise ParameterError(f"limit={limit!r} is not valid; expected a number > 1 (e.g. 2 or 4)")
    if not rate_limit > 0:
        raise ParameterError(f"rate_limit={rate_limit!r} is not valid; expected a share > 0 (e.g. 0.25)")
    is_profile = bool(feature_indices(profile).shape[1])
    if is_profile:  # a profile table; else a matrix of indices
        indices, labels = feature_indices(profile), _segment_labels(profile)
    else:
        indices, labels = profile.astype(float), [str(s) for s in profile.index]
    bound = np.log2(limit)
    rows, row_labels, texts, colour_rows = [], [], [], []
    for group, title in (("behaviour", "what they do"), ("descriptor", "who they are")):
        feats = [f for f in indices.columns if feature_info(f).role == group]
        if not feats:
            continue
        row_labels.append(f"{group if group == 'behaviour' else 'descriptors'}: {title}")
        colour_rows.append(np.full(len(indices), np.nan))
        texts.append([""] * len(indices))
        rows.append(None)
        for f in feats:
            idx = indices[f].to_numpy(dtype=float)
            overall = _overall_mean(profile, f) if is_profile else None
            if is_rate(f) and overall is not None:
                diff = profile[f"{f}_mean"].to_numpy(dtype=float) - overall
                colour_rows.append(np.clip(diff / rate_limit, -1, 1) * bound)
                texts.append(["-" if not np.isfinite(d) else f"{100 * d:+.0f} pts" for d in diff])
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    colour_rows.append(np.clip(np.log2(idx), -bound, bound))
                texts.append(["-" if not np.isfinite(v) else f"{v:.1f}x" for v in idx])
            row_labels.append(feature_label(f, unit=False))
            rows.append(f)
    colour = np.ma.masked_invalid(np.array(colour_rows, dtype=float))
    ax = _axes(ax, (2.6 + 1.0 * len(labels), 1.4 + 0.36 * len(row_labels)))
    kwargs.setdefault("aspect", "auto")
    image = ax.imshow(colour, cmap=cmap, norm=Normalize(-bound, bound), **kwargs)
    bar = ax.figure.colorbar(image, ax=ax, ticks=[-bound, 0, bound], shrink=0.8)
    bar.ax.set_yticklabels([f"less\n(1/{limit:g}x or\n-{100 * rate_limit:.0f} pts)", "as all\ncustomers",
                            f"more\n({limit:g}x or\n+{100 * rate_limit:.0f} pts)"], fontsize=7)
    if annotate:
        for (i, j), text in np.ndenumerate(np.array(texts, dtype=object)):
            if not text:  # a group heading row
                continue
            dark = not np.ma.is_masked(colour[i, j]) and abs(colour[i, j]) > 0.6 * bound
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    for tick, f in zip(ax.get_yticklabels(), rows):
        if f is None:
            tick.set_fontweight("bold")
    for i, f in enumerate(rows):
        if f is None and i:
            ax.axhline(i - 0.5, color="black", lw=0.8)
    ax.tick_params(length=0)
    ax.set_xlabel("segment")
    ax.set_title(f"Each segment against all customers\n({HEATMAP_NOTE})", fontsize=9)
    return ax


def plot_segment_sizes(profile: pd.DataFrame, *, ax=None, **kwargs):
    """Bars per segment: share of customers (solid) beside share of revenue (hatched).

    A segment whose revenue bar is taller than its customer bar spends more than its size suggests.

    Parameters
    ----------
    profile : DataFrame
        A :func:`seglib.profile.profile_segments` table (``customer_share``, optional
        ``revenue_share``, ``name``).
    ax : Axes, optional
        Axes to draw on; a new figure when None.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.bar`.

    Returns
    -------
    Axes
    """
    ax = _axes(ax, (1.5 + 0.8 * len(profile), 4))
    x = np.arange(len(profile))
    colors = _colors(profile.index)
    revenue = "revenue_share" in profile.columns
    width = 0.4 if revenue else 0.8
    ax.bar(x - width / 2 * revenue, profile["customer_share"], width, color=colors, **kwargs)
    handles = [Patch(facecolor="0.35", label="share of customers")]
    if revenue:
        ax.bar(x + width / 2, profile["revenue_share"], width, color=colors, alpha=0.55, hatch="//",
               edgecolor="white", **kwargs)
        handles.append(Patch(facecolor="0.35", alpha=0.55, hatch="//", edgecolor="white",
                             label="share of revenue"))
    # above the bars, never over them
    ax.legend(handles=handles, frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, fontsize=8)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xticks(x, _segment_labels(profile), rotation=30, ha="right")
    ax.set_xlabel("segment")
    ax.set_ylabel("share of all customers / revenue")
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def plot_feature_bars(profile: pd.DataFrame, features, *, stat: str = "mean", currency: str | None = None,
                      ax=None, **kwargs):
    """Bars of one or more features per segment, coloured by segment, with the all-customer reference.

    Parameters
    ----------
    profile : DataFrame
        A :func:`seglib.profile.profile_segments` table.
    features : str or list of str
        Profiled feature(s). Several features in original units only share an axis when their units
        agree; compare features of different units with ``stat="index"``. A feature that needs an
        optional role the data lacks (``age`` without a date of birth, see
        :func:`seglib.features.absent_reason`) is left out; when none is left the axes say why in one
        sentence instead of raising, so a notebook runs on any log. Any other unknown name raises.
    stat : {"mean", "median", "index"}, default="mean"
        Statistic drawn. A dashed line marks the value of all customers (overall mean, or 1 for the
        index); there is none for the median.
    currency : str, optional
        Unit of money features on the axis label (``"net spend (EUR), mean"``).
    ax : Axes, optional
        Axes to draw on; a new figure when None.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.bar`.

    Returns
    -------
    Axes
    """
    from seglib.labels import label as feature_label

    check_option("stat", stat, ["mean", "median", "index"])
    features = [features] if isinstance(features, str) else list(features)
    valid = list(feature_indices(profile).columns)
    notes = [absent_reason(f) for f in features if f not in valid and absent_reason(f)]
    features = [f for f in features if f in valid or not absent_reason(f)]
    for f in features:
        check_option("features", f, valid)
    if not features:  # every feature needs a role the data lacks: say so instead of drawing
        ax = _axes(ax, (1.5 + 0.8 * len(profile), 4))
        ax.set_axis_off()
        ax.text(0.5, 0.5, "\n".join(notes), ha="center", va="center", wrap=True, transform=ax.transAxes,
                color="0.4")
        return ax
    k, single = len(profile), len(features) == 1
    ax = _axes(ax, (1.5 + 0.8 * k, 4) if single else (2 + 0.5 * k * len(features), 4))
    width = 0.8 / k
    colors = _colors(profile.index)
    for g, f in enumerate(features):
        x = g - 0.4 + width * (np.arange(k) + 0.5)
        ax.bar(x, profile[f"{f}_{stat}"], width, color=colors, **kwargs)
        reference = 1.0 if stat == "index" else _overall_mean(profile, f) if stat == "mean" else None
        if reference is not None:
            ax.hlines(reference, g - 0.45, g + 0.45, colors="black", linestyles="--", linewidth=1,
                      label="all customers" if g == 0 else None)
    ax.spines[["top", "right"]].set_visible(False)
    if single:  # one group: the segments label the x axis
        ax.set_xticks(-0.4 + width * (np.arange(k) + 0.5), _segment_labels(profile), rotation=30, ha="right")
        ax.set_xlabel("segment")
        what = "index (segment mean / mean of all customers)" if stat == "index" else \
            f"{feature_label(features[0], currency=currency)}, {stat}"
        ax.set_ylabel(what)
        if stat != "median":  # above the bars, never over them
            ax.legend(frameon=False, loc="lower right", bbox_to_anchor=(1, 1.0), fontsize=8)
        return ax
    handles = [Patch(facecolor=c, label=lab) for c, lab in zip(colors, _segment_labels(profile))]
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], frameon=False, fontsize=8,
              loc="upper left", bbox_to_anchor=(1, 1))
    ax.set_xticks(range(len(features)), [feature_label(f, unit=False) for f in features])
    ax.set_ylabel(stat)
    return ax


def _overall_mean(profile: pd.DataFrame, feature: str) -> float | None:
    """Mean of all customers, recovered exactly as ``segment mean / index`` from a segment with an index."""
    ok = np.isfinite(profile[f"{feature}_index"]) & (profile[f"{feature}_index"] != 0)
    if not ok.any():
        return None
    seg = profile.index[ok][0]
    return float(profile.at[seg, f"{feature}_mean"] / profile.at[seg, f"{feature}_index"])
