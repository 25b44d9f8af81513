"""One palette for segments, shared by every plot (dendrogram links, maps, profiles)."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np

__all__ = ["segment_colors", "segment_label", "is_greyish", "EMPTY_COLOR", "ABOVE_CUT_COLOR"]

#: Colour of units that win no customer, and of "no segment".
EMPTY_COLOR = "#d9d9d9"
#: Colour of dendrogram links above the cut.
ABOVE_CUT_COLOR = "#7f7f7f"


def segment_colors(n_segments: int) -> list[str]:
    """Hex colours of segments 1..n_segments (index 0 is segment 1).

    ``tab10`` without its grey up to 9 segments, ``tab20`` without its two greys up to 18, then evenly
    spaced ``hsv`` hues, so a segment keeps its colour in every figure of a run. No segment is grey:
    grey is the colour of dendrogram links above the cut (:data:`ABOVE_CUT_COLOR`), of empty units
    (:data:`EMPTY_COLOR`) and of the U-matrix background, where a grey segment would vanish.
    """
    if n_segments < 0:
        raise ValueError(f"n_segments must be >= 0, got {n_segments}")
    if n_segments <= 9:
        cmap = mpl.colormaps["tab10"]
        cols = [cmap(i) for i in range(10) if i != 7][:n_segments]
    elif n_segments <= 18:
        cmap = mpl.colormaps["tab20"]
        cols = [cmap(i) for i in range(20) if i not in (14, 15)][:n_segments]
    else:
        cmap = mpl.colormaps["hsv"]
        cols = [cmap(x) for x in np.linspace(0, 1, n_segments, endpoint=False)]
    return [mpl.colors.to_hex(c) for c in cols]


def is_greyish(color, tolerance: float = 0.06) -> bool:
    """True when ``color`` has (almost) no hue: red, green and blue within ``tolerance`` of each other."""
    r, g, b = mpl.colors.to_rgb(color)
    return max(r, g, b) - min(r, g, b) <= tolerance


def segment_label(segment, name=None) -> str:
    """``"5: Payback, lapsed"``: the number once (a name ending in ``" (5)"`` loses that suffix)."""
    segment = int(segment)
    if name is None:
        return str(segment)
    name = str(name)
    suffix = f" ({segment})"
    if name.endswith(suffix):
        name = name[: -len(suffix)]
    return f"{segment}: {name}"
