"""Plots of every step. Each function takes ``ax=None`` (a new figure when None) and returns the Axes."""

from seglib.plots._colors import ABOVE_CUT_COLOR, EMPTY_COLOR, segment_colors

__all__ = ["segment_colors", "EMPTY_COLOR", "ABOVE_CUT_COLOR"]
