"""Plots of every step.

Each function takes ``ax=None`` (a new figure when None) and returns the Axes; segment colours come
from :func:`segment_colors`, so a segment has the same colour in every figure.
"""

from seglib.plots._clean import (
    plot_age_distribution,
    plot_spend_distribution,
    plot_transactions_per_customer,
)
from seglib.plots._cluster import (
    plot_consolidation,
    plot_dendrogram,
    plot_fancy_dendrogram,
    plot_k_selection,
    plot_segment_map,
    plot_stability,
)
from seglib.plots._colors import ABOVE_CUT_COLOR, EMPTY_COLOR, segment_colors
from seglib.plots._grid import border_segments, cell_centers, draw_cells, map_topology, set_map_limits
from seglib.plots._profile import plot_feature_bars, plot_profile_heatmap, plot_segment_sizes
from seglib.plots._som import plot_component_planes, plot_hit_map, plot_training_curve, plot_u_matrix
from seglib.plots._track import plot_segment_flows, plot_sizes_over_time, plot_transition_heatmap

__all__ = [
    "ABOVE_CUT_COLOR",
    "EMPTY_COLOR",
    "segment_colors",
    # the units of any map figure (squares or hexagons)
    "border_segments",
    "cell_centers",
    "draw_cells",
    "map_topology",
    "set_map_limits",
    # step 01
    "plot_age_distribution",
    "plot_spend_distribution",
    "plot_transactions_per_customer",
    # step 02
    "plot_component_planes",
    "plot_hit_map",
    "plot_training_curve",
    "plot_u_matrix",
    # step 03
    "plot_consolidation",
    "plot_dendrogram",
    "plot_fancy_dendrogram",
    "plot_k_selection",
    "plot_segment_map",
    "plot_stability",
    # step 04
    "plot_feature_bars",
    "plot_profile_heatmap",
    "plot_segment_sizes",
    # segments over time (seglib.track)
    "plot_segment_flows",
    "plot_sizes_over_time",
    "plot_transition_heatmap",
]
