"""Plots of segment profiles (step 04): feature-index heat map, segment sizes, feature bars."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from seglib.errors import ParameterError, check_option
from seglib.plots._colors import segment_colors
from seglib.profile import feature_indices

__all__ = ["plot_profile_heatmap", "plot_segment_sizes", "plot_feature_bars"]


def _axes(ax, figsize):
    return plt.subplots(figsize=figsize)[1] if ax is None else ax


def _segment_labels(profile: pd.DataFrame) -> list[str]:
    if "name" in profile.columns:
        return [f"{s}: {n}" for s, n in profile["name"].items()]
    return [str(s) for s in profile.index]


def _colors(segments) -> list[str]:
    palette = segment_colors(int(max(segments)))
    return [palette[int(s) - 1] for s in segments]


def plot_profile_heatmap(
    profile: pd.DataFrame, *, ax=None, limit: float = 4.0, annotate: bool = True, cmap: str = "RdBu_r",
    **kwargs,
):
    """Heat map of feature indices: features down, segments across, colour centred on 1x.

    Colour follows ``log2(index)``, so 2x and 0.5x are equally strong (red above average, blue
    below); missing indices are left blank.

    Parameters
    ----------
    profile : DataFrame
        A :func:`seglib.profile.profile_segments` table (its ``<feature>_index`` columns are used and
        the segment names label the columns), or a segments x features matrix of indices such as
        :func:`seglib.profile.feature_indices` returns.
    ax : Axes, optional
        Axes to draw on; a new figure when None.
    limit : float, default=4.0
        Indices at or beyond ``limit`` and ``1 / limit`` get the full colour. 4 suits most profiles;
        use 2 when segments differ mildly, so the differences stay visible.
    annotate : bool, default=True
        Write each index (``1.4x``) in its cell. Turn off for more than ~15 segments.
    cmap : str, default="RdBu_r"
        A diverging colormap.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.imshow`.

    Returns
    -------
    Axes
    """
    if not limit > 1:
        raise ParameterError(f"limit={limit!r} is not valid; expected a number > 1 (e.g. 2 or 4)")
    if feature_indices(profile).shape[1]:  # a profile table; else a matrix of indices
        indices, labels = feature_indices(profile), _segment_labels(profile)
    else:
        indices, labels = profile.astype(float), [str(s) for s in profile.index]
    values = indices.to_numpy(dtype=float).T  # features x segments
    bound = np.log2(limit)
    with np.errstate(divide="ignore", invalid="ignore"):
        colour = np.ma.masked_invalid(np.clip(np.log2(values), -bound, bound))
    ax = _axes(ax, (1.6 + 0.9 * values.shape[1], 1.2 + 0.4 * values.shape[0]))
    kwargs.setdefault("aspect", "auto")
    image = ax.imshow(colour, cmap=cmap, norm=Normalize(-bound, bound), **kwargs)
    ticks = [t for t in range(-int(np.floor(bound)), int(np.floor(bound)) + 1)]
    bar = ax.figure.colorbar(image, ax=ax, ticks=ticks)
    bar.ax.set_yticklabels([f"{2.0**t:g}x" for t in ticks])
    bar.set_label("index (segment mean / overall mean)")
    if annotate:
        for (i, j), v in np.ndenumerate(values):
            dark = not np.ma.is_masked(colour[i, j]) and abs(colour[i, j]) > 0.6 * bound
            ax.text(j, i, "-" if not np.isfinite(v) else f"{v:.1f}x", ha="center", va="center",
                    fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(values.shape[1]), labels, rotation=30, ha="right")
    ax.set_yticks(range(values.shape[0]), list(indices.columns))
    ax.set_xlabel("segment")
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
    handles = [Patch(facecolor="grey", label="customers")]
    if revenue:
        ax.bar(x + width / 2, profile["revenue_share"], width, color=colors, alpha=0.55, hatch="//",
               edgecolor="white", **kwargs)
        handles.append(Patch(facecolor="grey", alpha=0.55, hatch="//", edgecolor="white", label="revenue"))
    ax.legend(handles=handles, frameon=False)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xticks(x, _segment_labels(profile), rotation=30, ha="right")
    ax.set_xlabel("segment")
    ax.set_ylabel("share")
    return ax


def plot_feature_bars(profile: pd.DataFrame, features, *, stat: str = "mean", ax=None, **kwargs):
    """Bars of one or more features per segment, coloured by segment, with the all-customer reference.

    Parameters
    ----------
    profile : DataFrame
        A :func:`seglib.profile.profile_segments` table.
    features : str or list of str
        Profiled feature(s). Several features in original units only share an axis when their units
        agree; compare features of different units with ``stat="index"``.
    stat : {"mean", "median", "index"}, default="mean"
        Statistic drawn. A dashed line marks the value of all customers (overall mean, or 1 for the
        index); there is none for the median.
    ax : Axes, optional
        Axes to draw on; a new figure when None.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.bar`.

    Returns
    -------
    Axes
    """
    check_option("stat", stat, ["mean", "median", "index"])
    features = [features] if isinstance(features, str) else list(features)
    valid = list(feature_indices(profile).columns)
    for f in features:
        check_option("features", f, valid)
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
    if single:  # one group: the segments label the x axis
        ax.set_xticks(-0.4 + width * (np.arange(k) + 0.5), _segment_labels(profile), rotation=30, ha="right")
        ax.set_xlabel("segment")
        ax.set_ylabel(f"{features[0]} ({stat})")
        if stat != "median":
            ax.legend(frameon=False, loc="lower right")
        return ax
    handles = [Patch(facecolor=c, label=lab) for c, lab in zip(colors, _segment_labels(profile))]
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], frameon=False, fontsize=8,
              loc="upper left", bbox_to_anchor=(1, 1))
    ax.set_xticks(range(len(features)), features)
    ax.set_ylabel(stat)
    return ax


def _overall_mean(profile: pd.DataFrame, feature: str) -> float | None:
    """Mean of all customers, recovered exactly as ``segment mean / index`` from a segment with an index."""
    ok = np.isfinite(profile[f"{feature}_index"]) & (profile[f"{feature}_index"] != 0)
    if not ok.any():
        return None
    seg = profile.index[ok][0]
    return float(profile.at[seg, f"{feature}_mean"] / profile.at[seg, f"{feature}_index"])
