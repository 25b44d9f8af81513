"""Tests of the cut explorer's logic, without a browser (and once under a real kernel)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from seglib.cluster import PrototypeClustering, cut, distance_range_for_k, n_clusters_for_distance
from seglib.errors import ParameterError
from seglib.widgets import ClusterExplorer

ROWS, COLS = 6, 8


@pytest.fixture
def fitted():
    rng = np.random.default_rng(11)
    weights = rng.normal(size=(ROWS, COLS, 3))
    hits = rng.poisson(5, size=(ROWS, COLS))
    hits[0, 0] = 0
    pc = PrototypeClustering(n_clusters=5).fit(weights, hits)
    return pc, weights, hits


@pytest.fixture
def explorer(fitted):
    pc, weights, hits = fitted
    return ClusterExplorer.from_clustering(pc, weights, hits, umatrix=np.ones((ROWS, COLS)), k_max=10)


def _max_d_line(ex):
    ax_tree = ex.figure.axes[0]
    (line,) = [ln for ln in ax_tree.get_lines() if ln.get_gid() == "max_d"]
    return line.get_ydata()[0]


def test_initial_state_is_the_fitted_cut(explorer, fitted):
    pc = fitted[0]
    assert explorer.k_slider.value == explorer.n_clusters == 5
    low, high = distance_range_for_k(pc.linkage_, 5)
    assert low <= explorer.d_slider.value == explorer.max_d < high
    assert np.array_equal(explorer.unit_labels, pc.unit_labels_)
    assert _max_d_line(explorer) == explorer.max_d
    assert explorer.n_redraws == 1
    (out,) = explorer.output.outputs
    assert out["data"]["image/png"] and "5 segments" in out["data"]["text/plain"]


def test_count_handler_moves_the_distance_slider(explorer, fitted):
    Z, hits = fitted[0].linkage_, fitted[2]
    explorer.on_k_change({"new": 3})
    low, high = distance_range_for_k(Z, 3)
    assert low <= explorer.d_slider.value < high
    assert explorer.max_d == explorer.d_slider.value == _max_d_line(explorer)
    plain = cut(Z, n_clusters=3, hits=hits)
    # the map shows the segments the user would get at this cut: the cut, consolidated
    assert np.array_equal(explorer.unit_labels, fitted[0].segments_for(plain))
    assert adjusted_rand_score(explorer.cut_labels, plain) == 1.0  # the cut, renumbered as the segments
    assert "S3" in explorer.sizes.value and "S4" not in explorer.sizes.value
    assert explorer.n_redraws == 2


def test_at_the_kept_number_of_segments_the_map_shows_the_kept_segments(fitted):
    pc, weights, hits = fitted
    kept = np.roll(pc.unit_labels_, 1)  # e.g. each unit's majority after consolidation customer by customer
    ex = ClusterExplorer.from_clustering(pc, weights, hits, umatrix=np.ones((ROWS, COLS)), k_max=10,
                                         kept_segments=kept)
    assert np.array_equal(ex.unit_labels, kept)
    ex.on_k_change({"new": 3})  # another cut: a preview, consolidated unit by unit
    assert np.array_equal(ex.unit_labels, pc.segments_for(cut(pc.linkage_, n_clusters=3, hits=hits)))
    ex.on_k_change({"new": 5})  # back at the kept k
    assert np.array_equal(ex.unit_labels, kept)


def test_distance_handler_moves_the_count_slider(explorer, fitted):
    Z = fitted[0].linkage_
    low, high = distance_range_for_k(Z, 7)
    d = low + 0.25 * (high - low)
    explorer.on_d_change({"new": d})
    assert explorer.k_slider.value == explorer.n_clusters == 7 == n_clusters_for_distance(Z, d)
    assert explorer.max_d == d == _max_d_line(explorer)
    assert explorer.unit_labels.max() == 7
    rows = explorer.sizes_table()
    assert [r["segment"] for r in rows] == list(range(1, 8))
    assert sum(r["customers"] for r in rows) == fitted[2].sum()
    assert sum(r["empty_units"] for r in rows) == (fitted[2] == 0).sum()


def test_moving_a_real_slider_updates_once_without_loops(explorer, fitted):
    explorer.k_slider.value = 8  # traitlets notifies on_k_change, which sets the other slider
    assert explorer.n_redraws == 2
    assert n_clusters_for_distance(fitted[0].linkage_, explorer.d_slider.value) == 8
    explorer.d_slider.value = explorer.d_slider.max  # the top of the range: one segment
    assert explorer.n_redraws == 3
    assert explorer.k_slider.value == 1 and explorer.unit_labels.max() == 1


def test_distance_slider_spans_the_count_slider(explorer, fitted):
    Z = fitted[0].linkage_
    assert n_clusters_for_distance(Z, explorer.d_slider.min) <= explorer.k_slider.max
    assert n_clusters_for_distance(Z, explorer.d_slider.max) == 1


def test_explorer_starts_at_a_distance_cut(fitted):
    pc, weights, hits = fitted
    low, high = distance_range_for_k(pc.linkage_, 4)
    by_d = PrototypeClustering(n_clusters=None, max_d=low).fit(weights, hits)
    ex = ClusterExplorer.from_clustering(by_d, weights, hits, umatrix=np.ones((ROWS, COLS)))
    assert ex.max_d == ex.d_slider.value == low
    assert ex.n_clusters == ex.k_slider.value == 4
    assert np.array_equal(ex.unit_labels, by_d.unit_labels_)


def test_tied_count_is_explained():
    w = np.array([[[0.0], [1.0], [2.0], [3.0]]])  # single linkage: three merges at height 1
    pc = PrototypeClustering(method="single", n_clusters=4).fit(w)
    ex = ClusterExplorer.from_clustering(pc, w, umatrix=np.ones((1, 4)), k_max=4)
    ex.set_k(2)
    assert ex.n_clusters == 2 and ex.unit_labels.max() == 2
    assert ex.max_d == 1.0
    assert "No distance gives exactly 2 segments" in ex.sizes.value


def test_parameters_are_checked(fitted):
    pc, weights, hits = fitted
    with pytest.raises(ParameterError, match="exactly one"):
        ClusterExplorer(pc.linkage_, weights, hits, n_clusters=3, max_d=1.0, umatrix=np.ones((ROWS, COLS)))
    with pytest.raises(ParameterError, match="prototypes"):
        ClusterExplorer(pc.linkage_, weights[:2], hits, umatrix=np.ones((ROWS, COLS)))
    ex = ClusterExplorer(pc.linkage_, weights, hits, n_clusters=None, max_d=0.0,
                         umatrix=np.ones((ROWS, COLS)))
    assert ex.n_clusters == ROWS * COLS and ex.k_slider.max == ROWS * COLS  # sliders widen to the state


def test_explorer_draws_the_clusterings_topology():
    rng = np.random.default_rng(5)
    weights = rng.normal(size=(ROWS, COLS, 3))
    pc = PrototypeClustering(n_clusters=4, connectivity=True, topology="hexagonal").fit(weights)
    ex = ClusterExplorer.from_clustering(pc, weights, k_max=6)
    assert ex.topology == "hexagonal"
    (cells,) = [c for c in ex.figure.axes[1].collections if c.get_gid() == "cells"]
    assert len(cells.get_paths()) == ROWS * COLS
    square = ClusterExplorer.from_clustering(PrototypeClustering(n_clusters=4).fit(weights), weights, k_max=6)
    assert square.topology == "rectangular" and square.figure.axes[1].images


def test_renders_under_a_kernel_without_front_end(tmp_path, fitted):
    """What papermill and nbval do: run a cell that builds and displays the explorer."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pc, weights, hits = fitted
    np.savez(tmp_path / "cut.npz", Z=pc.linkage_, weights=weights, hits=hits)
    code = (
        "import numpy as np\n"
        "from seglib.widgets import ClusterExplorer\n"
        f"d = np.load({str(tmp_path / 'cut.npz')!r})\n"
        "ex = ClusterExplorer(d['Z'], d['weights'], d['hits'], n_clusters=4, umatrix=np.ones((6, 8)))\n"
        "ex.on_k_change({'new': 6})\n"
        "ex"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    (output,) = nb.cells[0].outputs
    assert "application/vnd.jupyter.widget-view+json" in output["data"]


def test_map_shows_the_plain_cut_without_consolidation(fitted):
    _, weights, hits = fitted
    plain = PrototypeClustering(n_clusters=5, consolidate=False).fit(weights, hits)
    ex = ClusterExplorer.from_clustering(plain, weights, hits, umatrix=np.ones((ROWS, COLS)))
    ex.set_k(4)
    assert np.array_equal(ex.unit_labels, cut(plain.linkage_, n_clusters=4, hits=hits))
    assert np.array_equal(ex.unit_labels, ex.cut_labels)


def test_segment_map_drawn_equals_the_final_labels(explorer, fitted):
    """The map's colours are the consolidated segments: the drawn image matches a map of unit_labels_."""
    from matplotlib.figure import Figure

    from seglib.plots import plot_segment_map

    pc, weights, hits = fitted
    assert not np.array_equal(pc.unit_labels_, pc.cut_labels_)  # consolidation moved units here
    def unit_colours(ax):
        (units,) = [c for c in ax.collections if c.get_gid() == "units"]
        return units.get_facecolors()

    expected = plot_segment_map(weights, pc.unit_labels_, hits, umatrix=np.ones((ROWS, COLS)),
                                ax=Figure().subplots())
    cut_only = plot_segment_map(weights, pc.cut_labels_, hits, umatrix=np.ones((ROWS, COLS)),
                                ax=Figure().subplots())
    assert np.array_equal(unit_colours(explorer.figure.axes[1]), unit_colours(expected))
    assert not np.array_equal(unit_colours(explorer.figure.axes[1]), unit_colours(cut_only))
