"""Plots of segments over time (``seglib.track``): flows, sizes, transition heat map."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.collections import PolyCollection
from matplotlib.patches import Rectangle
from matplotlib.ticker import PercentFormatter

from seglib.plots._colors import EMPTY_COLOR, segment_colors

__all__ = ["plot_segment_flows", "plot_sizes_over_time", "plot_transition_heatmap"]

_PSEUDO = ("new", "inactive")


def _ax(ax, figsize):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _periods(transitions: pd.DataFrame) -> list[str]:
    periods = list(dict.fromkeys(transitions["period_from"]))
    if len(transitions):
        periods.append(transitions["period_to"].iloc[-1])
    return periods


def _label(s, names) -> str:
    return f"{s} {names[s]}" if names and s in names else str(s)


def plot_segment_flows(transitions: pd.DataFrame, *, n_segments: int | None = None, names=None,
                       bar_width: float = 0.12, gap: float = 0.02, ax=None) -> plt.Axes:
    """Alluvial (Sankey) diagram: customers flowing between segments of consecutive periods.

    One stacked bar per period (segment 1 at the top, heights = the period's customers per segment);
    a band joins segment s of one period to segment t of the next, as wide as the customers who moved
    from s to t; grey stubs show customers who became inactive (right of a bar) or are new (left).

    Parameters
    ----------
    transitions : DataFrame
        ``seglib.track.transition_table`` (``transitions.csv``).
    n_segments : int, optional
        Segments 1..k to draw (None: the largest in the table).
    names : dict, optional
        Segment -> name, for the legend.
    bar_width, gap : float
        Width of a bar (x units between periods = 1) and the gap between stacked segments (share of
        the largest period).
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    ax = _ax(ax, (8, 5))
    periods = _periods(transitions)
    if not periods:
        ax.set_axis_off()
        return ax
    t = transitions.copy()
    segs = sorted({int(s) for s in pd.concat([t["segment_from"], t["segment_to"]]) if s not in _PSEUDO})
    k = n_segments or (max(segs) if segs else 0)
    colors = segment_colors(k)
    # customers per period and segment (both sides of the table agree)
    size = np.zeros((len(periods), k))
    for i, p in enumerate(periods):
        out_ = t[(t["period_from"] == p) & (t["segment_from"] != "new")]
        out_ = out_.groupby("segment_from")["customers"].sum()
        in_ = t[(t["period_to"] == p) & (t["segment_to"] != "inactive")]
        in_ = in_.groupby("segment_to")["customers"].sum()
        both = out_ if len(out_) else in_
        for s, v in both.items():
            size[i, int(s) - 1] = v
    pad = gap * size.sum(axis=1).max()
    top = np.zeros_like(size)  # y of the top of every (period, segment) block, segment 1 highest
    for i in range(len(periods)):
        y = size[i].sum() + pad * (k - 1)
        for s in range(k):
            top[i, s] = y
            y -= size[i, s] + pad
    out_y, in_y = top.copy(), top.copy()  # next free y for outgoing / incoming bands
    xs = np.linspace(0, 1, 40)
    curve = 3 * xs ** 2 - 2 * xs ** 3  # smooth step
    bands, band_colors, blocks, block_colors = [], [], [], []  # drawn as two collections: fast to save

    def box(x, y, w, h, color):
        blocks.append([(x, y), (x + w, y), (x + w, y + h), (x, y + h)])
        block_colors.append(color)

    counts = t.groupby(["period_from", "segment_from", "segment_to"])["customers"].sum()
    for i, p in enumerate(periods[:-1]):
        part = counts.loc[p] if p in counts.index.get_level_values(0) else pd.Series(dtype=float)
        x0, x1 = i + bar_width / 2, i + 1 - bar_width / 2
        for s in range(1, k + 1):
            for tgt in range(1, k + 1):
                v = part.get((str(s), str(tgt)), 0)
                if v <= 0:
                    continue
                a_top, b_top = out_y[i, s - 1], in_y[i + 1, tgt - 1]
                out_y[i, s - 1] -= v
                in_y[i + 1, tgt - 1] -= v
                upper = a_top + (b_top - a_top) * curve
                x = x0 + (x1 - x0) * xs
                bands.append(np.r_[np.c_[x, upper], np.c_[x[::-1], upper[::-1] - v]])
                band_colors.append(colors[s - 1])
        for s in range(1, k + 1):  # stubs: to inactive (right of period i), from new (left of i + 1)
            v = part.get((str(s), "inactive"), 0)
            if v > 0:
                box(x0, out_y[i, s - 1] - v, 0.06, v, EMPTY_COLOR)
                out_y[i, s - 1] -= v
            v = part.get(("new", str(s)), 0)
            if v > 0:
                box(x1 - 0.06, in_y[i + 1, s - 1] - v, 0.06, v, EMPTY_COLOR)
                in_y[i + 1, s - 1] -= v
    for i in range(len(periods)):
        for s in range(k):
            if size[i, s] > 0:
                box(i - bar_width / 2, top[i, s] - size[i, s], bar_width, size[i, s], colors[s])
    ax.add_collection(PolyCollection(bands, facecolors=band_colors, alpha=0.45, linewidths=0))
    ax.add_collection(PolyCollection(blocks, facecolors=block_colors, linewidths=0))
    ax.set_xlim(-0.5, len(periods) - 0.5)
    ax.set_ylim(0, top[:, 0].max() * 1.02 if k else 1)
    ax.set_xticks(range(len(periods)), periods)
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    handles = [Rectangle((0, 0), 1, 1, color=colors[s]) for s in range(k)]
    handles.append(Rectangle((0, 0), 1, 1, color=EMPTY_COLOR))
    ax.legend(handles, [_label(s, names) for s in range(1, k + 1)] + ["new / inactive"],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    ax.set_title("Customers flowing between segments")
    return ax


def plot_sizes_over_time(sizes: pd.DataFrame, *, value: str = "share", names=None, ax=None) -> plt.Axes:
    """Lines of every segment's size over the periods.

    Parameters
    ----------
    sizes : DataFrame
        ``seglib.track.size_table`` (``sizes.csv``).
    value : {"share", "customers", "revenue_share"}, default "share"
        What to draw: shares compare periods of different activity; counts show growth.
    names : dict, optional
        Segment -> name, for the legend.
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    from seglib.errors import check_option

    check_option("value", value, ("share", "customers", "revenue_share"))
    ax = _ax(ax, (7.5, 4.2))
    table = sizes.pivot(index="period", columns="segment", values=value)
    table = table.loc[list(dict.fromkeys(sizes["period"]))]
    colors = segment_colors(int(table.columns.max()) if len(table.columns) else 0)
    x = np.arange(len(table))
    for s in table.columns:
        ax.plot(x, table[s].to_numpy(), marker="o", color=colors[int(s) - 1], label=_label(int(s), names))
    ax.set_xticks(x, table.index)
    ax.set_ylabel({"share": "share of the period's customers", "customers": "customers",
                   "revenue_share": "share of the period's revenue"}[value])
    if value != "customers":
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    ax.set_title("Segment sizes over time")
    return ax


def plot_transition_heatmap(transitions: pd.DataFrame, *, ax=None) -> plt.Axes:
    """Heat map of where the customers of each segment went in the next period, over all periods.

    Rows: segment in a period (and ``new``); columns: segment in the next period (and ``inactive``);
    cells: share of the row's customers (each row sums to 1), annotated. The diagonal is loyalty.

    Parameters
    ----------
    transitions : DataFrame
        ``seglib.track.transition_table`` (``transitions.csv``).
    ax : Axes, optional

    Returns
    -------
    Axes
    """
    ax = _ax(ax, (7, 5.5))
    counts = transitions.groupby(["segment_from", "segment_to"])["customers"].sum().unstack(fill_value=0)
    segs = sorted({s for s in list(counts.index) + list(counts.columns) if s not in _PSEUDO}, key=int)
    rows = segs + (["new"] if "new" in counts.index else [])
    cols = segs + (["inactive"] if "inactive" in counts.columns else [])
    counts = counts.reindex(index=rows, columns=cols, fill_value=0)
    share = counts.div(counts.sum(axis=1).where(lambda v: v > 0), axis=0).fillna(0.0)
    im = ax.imshow(share.to_numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(share.to_numpy()):
        if v >= 0.005:
            ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize="x-small",
                    color="white" if v > 0.6 else "black")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("segment in the next period")
    ax.set_ylabel("segment in a period")
    ax.figure.colorbar(im, ax=ax, label="share of the row's customers")
    ax.set_title("Transitions between segments")
    return ax
