"""One palette for segments, shared by every plot (dendrogram links, maps, profiles)."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np

__all__ = ["segment_colors", "EMPTY_COLOR", "ABOVE_CUT_COLOR"]

#: Colour of units that win no customer, and of "no segment".
EMPTY_COLOR = "#d9d9d9"
#: Colour of dendrogram links above the cut.
ABOVE_CUT_COLOR = "#7f7f7f"


def segment_colors(n_segments: int) -> list[str]:
    """Hex colours of segments 1..n_segments (index 0 is segment 1).

    Uses ``tab10`` up to 10 segments, ``tab20`` up to 20, then evenly spaced ``hsv`` hues, so a
    segment keeps its colour in every figure of a run.
    """
    if n_segments < 0:
        raise ValueError(f"n_segments must be >= 0, got {n_segments}")
    if n_segments <= 10:
        cmap = mpl.colormaps["tab10"]
        cols = [cmap(i) for i in range(n_segments)]
    elif n_segments <= 20:
        cmap = mpl.colormaps["tab20"]
        cols = [cmap(i) for i in range(n_segments)]
    else:
        cmap = mpl.colormaps["hsv"]
        cols = [cmap(x) for x in np.linspace(0, 1, n_segments, endpoint=False)]
    return [mpl.colors.to_hex(c) for c in cols]
