"""Figures a person reads at a glance (issue 15): palette, labels, legends, ticks, units, SVG copies."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from seglib.config import Layout
from seglib.plots import (
    ABOVE_CUT_COLOR,
    EMPTY_COLOR,
    plot_component_planes,
    plot_k_selection,
    plot_profile_heatmap,
    plot_segment_map,
    plot_segment_sizes,
    segment_colors,
)
from seglib.plots._colors import is_greyish, segment_label
from seglib.profile import profile_segments
from seglib.steps import save_figure


@pytest.mark.parametrize("k", [1, 8, 9, 10, 18, 19, 40])
def test_no_segment_is_grey_or_shares_a_colour(k):
    colors = segment_colors(k)
    assert len(colors) == len(set(colors)) == k
    assert not any(is_greyish(c) for c in colors)
    assert ABOVE_CUT_COLOR not in colors and EMPTY_COLOR not in colors
    assert is_greyish(ABOVE_CUT_COLOR) and is_greyish(EMPTY_COLOR)


def test_segment_label_numbers_a_segment_once():
    assert segment_label(5, "Payback, lapsed (5)") == "5: Payback, lapsed"
    assert segment_label(5, "Payback (15)") == "5: Payback (15)"
    assert segment_label(3) == "3"


def _profile():
    rng = np.random.default_rng(0)
    n = 200
    seg = np.arange(n) % 3 + 1
    customers = pd.DataFrame({
        "customer_id": [str(i) for i in range(n)],
        "recency_days": rng.integers(1, 300, n).astype(float),
        "monetary": rng.gamma(2, 100, n) * seg,
        "return_share": np.where(rng.random(n) < 0.03, 0.5, 0.0),
        "age": rng.normal(40, 10, n),
    })
    return profile_segments(customers, seg)


def test_heatmap_groups_rows_and_compares_shares_in_points():
    profile = _profile()
    ax = plot_profile_heatmap(profile)
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows[0].startswith("behaviour") and any(r.startswith("descriptors") for r in rows)
    assert rows.index("age") > rows.index(next(r for r in rows if r.startswith("descriptors")))
    assert "days since last visit" in rows and "lines returned" in rows
    texts = [t.get_text() for t in ax.texts]
    assert sum(t.endswith(" pts") for t in texts) == 3  # the share: one per segment
    assert sum(t.endswith("x") for t in texts) == 3 * 3  # recency, spend, age
    assert "not better or worse" in ax.get_title()


def test_sizes_legend_sits_above_the_bars():
    profile = _profile()
    ax = plot_segment_sizes(profile)
    ax.figure.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.y0 >= ax.get_window_extent().y1 - 1
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert all(lab.count(lab.split(":")[0]) == 1 for lab in labels)


def test_k_selection_ticks_are_whole_numbers():
    table = pd.DataFrame({"k": [2, 3, 4, 5, 6, 7, 8, 9, 10], "silhouette": np.linspace(0.2, 0.4, 9),
                          "davies_bouldin": np.linspace(1, 2, 9), "smallest_share": np.linspace(0.3, 0.01, 9),
                          "gap": np.linspace(1, 2, 9)})
    axes = plot_k_selection(table)
    axes[0].figure.canvas.draw()
    for ax in axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)


def test_segment_map_legend_names_and_sizes():
    labels = np.array([[1, 1, 2], [3, 2, 2]])
    hits = np.array([[4, 0, 2], [1, 3, 0]])
    ax = plot_segment_map(None, labels, hits, background="hits", names={1: "Big", 2: "Mid (2)", 3: "Small"})
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[:3] == ["1: Big (4 customers)", "2: Mid (5 customers)", "3: Small (1 customers)"]
    assert texts[3] == "unit without customers"


def test_component_planes_in_original_units_with_borders():
    weights = np.zeros((2, 2, 2))
    customers = pd.DataFrame({"recency_days": [10.0, 30.0, 50.0, 7.0], "promo_share": [0.2, 0.4, 1.0, 0.0]})
    bmu = np.array([0, 0, 1, 3])
    axes = plot_component_planes(weights, ["recency_days", "promo_share"], customers=customers, bmu=bmu,
                                 unit_labels=[1, 1, 2, 2])
    recency = axes[0].images[0].get_array()
    assert recency[0, 0] == 20.0 and recency[0, 1] == 50.0 and recency[1, 1] == 7.0
    assert np.ma.is_masked(recency[1, 0])  # a unit without customers
    assert axes[1].images[0].get_array()[0, 0] == pytest.approx(0.3)  # shares: the mean
    assert axes[0].get_title() == "days since last visit (days)"
    assert all(any(c.get_gid() == "boundaries" for c in ax.collections) for ax in axes)


def test_save_figure_writes_an_svg_beside_the_png(tmp_path):
    layout = Layout.for_run(tmp_path)
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    png = save_figure(fig, layout, "x")
    svg = png.with_suffix(".svg")
    assert png.is_file() and svg.read_text().lstrip().startswith("<?xml")
    first = svg.read_bytes()
    save_figure(fig, layout, "x")
    assert svg.read_bytes() == first  # no date: same figure, same bytes


def _constrained_figure():
    fig, axes = plt.subplots(1, 2, figsize=(6, 3), layout="constrained")
    for k, ax in enumerate(axes):
        ax.plot([1, 2, 3], [k, 2 * k, 1])
        ax.set_title(f"panel {k} with a long title")
        ax.set_ylabel("net spend (EUR)")
    fig.colorbar(axes[1].imshow(np.arange(6.0).reshape(2, 3)), ax=axes[1])
    return fig


def test_save_figure_writes_the_png_matplotlib_writes_and_an_svg_of_the_same_box(tmp_path):
    """The layout and tight box are computed once, for the PNG: the PNG is what a plain ``savefig``
    writes, and the SVG (laid out and boxed from it) has the same size within a point."""
    import io
    import re

    png = save_figure(_constrained_figure(), Layout.for_run(tmp_path), "x")
    plain, buf = _constrained_figure(), io.BytesIO()
    plain.savefig(buf, dpi=110, bbox_inches="tight", format="png", metadata={"Software": None})
    assert png.read_bytes() == buf.getvalue()
    buf = io.StringIO()
    plain.savefig(buf, bbox_inches="tight", format="svg", metadata={"Date": None})

    def size(text):
        return [float(v) for v in re.search(r'width="([\d.]+)pt" height="([\d.]+)pt"', text).groups()]

    assert size(png.with_suffix(".svg").read_text()) == pytest.approx(size(buf.getvalue()), abs=1.0)
    plt.close("all")


def test_save_figure_show_displays_the_saved_png_and_closes_the_figure(tmp_path, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kwargs: shown.extend(objs))
    fig = _constrained_figure()
    assert save_figure(fig, Layout.for_run(tmp_path), "x", show=True) is None  # a cell shows no path
    png = Layout.for_run(tmp_path).figures / "x.png"
    assert len(shown) == 1 and shown[0].data == png.read_bytes()  # the file, not another rendering
    assert not plt.fignum_exists(fig.number)
    shown.clear()
    kept = _constrained_figure()
    save_figure(kept, Layout.for_run(tmp_path), "y")
    assert shown == [] and plt.fignum_exists(kept.number)
    plt.close("all")
