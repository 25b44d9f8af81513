"""Plots of every step.

Each function takes ``ax=None`` (a new figure when None) and returns the Axes; segment colours come
from :func:`segment_colors`, so a segment has the same colour in every figure.
"""

import importlib

# public name -> private submodule that defines it; imported on first use (PEP 562), so a notebook that
# draws the cleaning figures does not pay for scikit-learn and scipy (the map figures need the SOM module)
_EXPORTS = {
    **dict.fromkeys(("plot_age_distribution", "plot_spend_distribution",
                     "plot_transactions_per_customer"), "_clean"),
    **dict.fromkeys(("plot_consolidation", "plot_dendrogram", "plot_fancy_dendrogram",
                     "plot_k_selection", "plot_segment_map", "plot_stability"), "_cluster"),
    **dict.fromkeys(("ABOVE_CUT_COLOR", "EMPTY_COLOR", "segment_colors"), "_colors"),
    **dict.fromkeys(("border_segments", "cell_centers", "draw_cells", "map_topology", "set_map_limits"),
                    "_grid"),
    **dict.fromkeys(("plot_feature_bars", "plot_profile_heatmap", "plot_segment_sizes"), "_profile"),
    **dict.fromkeys(("plot_component_planes", "plot_hit_map", "plot_training_curve", "plot_u_matrix"),
                    "_som"),
    **dict.fromkeys(("plot_segment_flows", "plot_sizes_over_time", "plot_transition_heatmap"), "_track"),
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'seglib.plots' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"seglib.plots.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


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
