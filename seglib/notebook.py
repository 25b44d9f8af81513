"""What the notebooks need beside the steps: the bundled default data, figures saved into a run's
layout, and Markdown summaries of a step's result.

Nothing here computes a result: :mod:`seglib.steps` does, and the batch paths (``seglib segment``, the
Dask backend) never use this module. The notebooks import it as ``from seglib.notebook import ...``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from seglib._files import atomic_path
from seglib.config import DEFAULT_CUSTOMERS, DEFAULT_DATA, DEFAULT_DATA_SEED, Layout, resolve

logger = logging.getLogger(__name__)

__all__ = ["cluster_summary", "default_data", "save_figure"]


def default_data(data_path: str | os.PathLike | None = None) -> Path:
    """The input file: ``data_path`` resolved against the project root, or the bundled default data.

    The default data set (``data/raw/transactions.csv``, about 3,000 synthetic customers with
    planted segments) is generated when missing; a user's file is never generated or changed.
    """
    if data_path is not None:
        return resolve(data_path)
    if not DEFAULT_DATA.is_file():
        from seglib.synthetic import write_dataset

        logger.info("generating the default data set %s", DEFAULT_DATA)
        write_dataset(DEFAULT_DATA, n_customers=DEFAULT_CUSTOMERS, random_state=DEFAULT_DATA_SEED)
    return DEFAULT_DATA


def save_figure(fig, layout: Layout, name: str, *, dpi: int = 110, show: bool = False) -> Path:
    """Save ``fig`` as ``<figures>/<name>.png`` and ``<name>.svg`` beside it (atomically); return the PNG.

    The SVG scales for print and slides. Neither carries a software version or date, so re-executing
    a notebook changes no bytes.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    layout : seglib.config.Layout
        The run's layout: the files go to ``layout.figures``.
    name : str
        File name without extension, e.g. ``"02-u-matrix"``.
    dpi : int
        Resolution of the PNG. 110 reads well on screen and in ``report.html``; raise it (e.g. 200) for
        print, at the cost of larger files and slower saves.
    show : bool
        Also show the figure (in a notebook) and close it, in place of ``plt.show()``: the notebook
        shows the PNG just written, so the figure is drawn once for the file and the screen instead of
        once more by matplotlib's inline display. Keep ``False`` to go on drawing on ``fig``.

    After the PNG, ``fig`` keeps the layout computed for it (its layout engine is set to none), so the
    SVG and any later display do not lay it out again.
    """
    import matplotlib.pyplot as plt

    layout.figures.mkdir(parents=True, exist_ok=True)
    path = layout.figures / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png", metadata={"Software": None})
    # The PNG's save laid the figure out (constrained layout) and measured every text: keep that layout
    # and one tight box for the SVG (and any later display) instead of computing both again for each
    if fig.get_layout_engine() is not None:
        fig.set_layout_engine("none")
    box = fig.get_tightbbox().padded(plt.rcParams["savefig.pad_inches"])
    with atomic_path(path.with_suffix(".svg")) as tmp, plt.rc_context({"svg.hashsalt": name}):
        fig.savefig(tmp, bbox_inches=box, format="svg", metadata={"Date": None})
    if show:
        from IPython.display import Image, display

        display(Image(data=path.read_bytes(), format="png"))
        plt.close(fig)
    return path


def cluster_summary(step) -> str:
    """One paragraph (Markdown) about step 03's result (:class:`seglib.steps.ClusterStep`): the cut, the
    distance range that gives it, the cophenetic correlation and the customers per segment."""
    pc = step.clustering
    how = (f"`max_d = {pc.max_d:g}`" if pc.max_d is not None else f"`n_clusters = {pc.n_clusters!r}`")
    weighted = ", hit-weighted" if pc.hit_weighting_ else ""
    text = f"**{pc.n_clusters_} segments** from {how} ({pc.method} linkage{weighted}). "
    if getattr(pc, "consolidate", False):
        from seglib.cluster import moved_units, off_majority_share

        moved = int(moved_units(pc.cut_labels_, pc.unit_labels_, pc.unit_hits_).sum())
        text += (f"The cut is consolidated by k-means iterations on the customers ({moved} of "
                 f"{pc.unit_labels_.size} units change segment)")
        if getattr(step, "segment_means", None) is not None:
            share = off_majority_share(step.segments["bmu"].to_numpy(), step.segments["segment"].to_numpy())
            text += (", then customer by customer: a unit's customers may fall in several segments, and "
                     f"{share:.1%} of the customers are in another segment than their unit's majority "
                     "(the map shows each unit's majority)")
        text += ". "
    if pc.max_d_range_ is not None:
        lo, hi = pc.max_d_range_
        text += f"Every cut height `max_d` in [{lo:.3g}, {hi:.3g}) gives these segments. "
    else:
        text += "No single cut height gives exactly this count (tied merge heights). "
    sizes = step.segments["segment"].value_counts().sort_index()
    shares = ", ".join(f"{k}: {v / sizes.sum():.0%}" for k, v in sizes.items())
    text += f"Cophenetic correlation {pc.cophenetic_corr_:.3f}. Customers per segment: {shares}."
    return text
