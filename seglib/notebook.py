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
from seglib.params import as_yaml

logger = logging.getLogger(__name__)

__all__ = ["cluster_summary", "default_data", "profile_note", "result_note", "save_figure"]


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


def save_figure(fig, layout: Layout, name: str, *, dpi: int = 110, show: bool = False) -> Path | None:
    """Save ``fig`` as ``<figures>/<name>.png`` and ``<name>.svg`` beside it (atomically); return the PNG
    (None with ``show=True``, so a notebook cell ending with it shows the picture, not a path).

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
        return None
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
    sample = getattr(step.som_step, "sample", None)
    sizes = step.segments["segment"].value_counts().sort_index()
    if sample is not None and step.run_cut:
        sizes = sample.segment_customers
    shares = ", ".join(f"{k}: {v / sizes.sum():.0%}" for k, v in sizes.items())
    text += f"Cophenetic correlation {pc.cophenetic_corr_:.3f}. Customers per segment: {shares}."
    if sample is not None:
        text += "\n\n" + _sample_sentence(step, sample)
    return text


def _sample_sentence(step, sample) -> str:
    """What a step on a Dask run above ``max_collect`` works on (:class:`seglib.steps.Sample`)."""
    text = (f"**This run has {sample.n_customers:,} customers, more than fit in memory: this notebook works "
            f"on {sample.describe()}.** The tree, the cut and the maps count every customer (the exact hits "
            "and per-unit sums the Dask run saved); k-selection, the stability check and the figures of "
            "single customers use the sample. ")
    if step.run_cut:
        return text + ("These are the run's segments: the sampled customers have exactly the segments they "
                       "have in the run's `result/` parts, and the sizes above are over every customer.")
    return text + ("This cut is not the run's: it was consolidated customer by customer on the sample, and "
                   "the sizes above are the sample's (notebook 04 says how to give it to every customer).")


def _cut_changes(step) -> dict:
    """The cut settings that differ from the run's: name -> (run's, this one)."""
    return {k: (step.sample.cut.get(k), v) for k, v in step.cut.items() if step.sample.cut.get(k) != v}


def profile_note(step) -> str:
    """Where step 04's outputs are (:class:`seglib.steps.ProfileStep`): ``summary.html`` of a run in
    memory; on a sample (a Dask run above ``max_collect``) what the profile is, where the full result
    is when the cut is the run's, and how to apply a changed cut to every customer."""
    from seglib.config import display_path

    layout = step.layout
    if step.sample is None:
        return f"summary for marketers: {display_path(layout.root / 'summary.html')}"
    sample = step.sample
    parts = display_path(layout.root / "result")
    text = (f"This run has {sample.n_customers:,} customers, more than fit in memory: this notebook profiles "
            f"{sample.describe()}. Nothing is written: the run's files are the full result.\n")
    if step.run_cut:
        return text + ("The cut is the run's: the sizes and revenue shares below are exact (every customer); "
                       "medians, means, the cards and the table of customers are the sample's. Every "
                       f"customer's segment: {parts}/part-* ({sample.n_customers:,} customers); the profile: "
                       f"{display_path(layout.segments_csv)}; the model that scores new customers: "
                       f"{display_path(layout.model_dir)} (`seglib score`).")
    changes = _cut_changes(step)
    seed = changes.pop("random_state", None)  # the run's seed also trained its map: never suggest another
    kept = (f"The run's result ({parts}/, {display_path(layout.segments_csv)}, "
            f"{display_path(layout.model_dir)}) is the run's cut, unchanged.")
    if seed is not None:
        kept += (f" Notebook 03 used seed {seed[1]}, the run {seed[0]}: with seed = {seed[0]} (and the run's "
                 "other cut parameters) notebook 03 gives the run's segments back.")
    if not changes:
        return text + ("The cut's settings are the run's but for the seed: these segments were consolidated "
                       "on the sample and their sizes and shares are the sample's. " + kept)
    options = " ".join(f"-p {k} {as_yaml(v)}" for k, (_, v) in changes.items())
    said = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changes.items())
    return text + (f"You changed the cut in notebook 03 ({said}): these segments exist for the sample only, "
                   "and their sizes and shares are the sample's. To give them to every customer, segment "
                   "again with the new cut and this run's other parameters (run.json, its seed too: the "
                   f"same seed trains the same map): `seglib segment --backend dask --data DATA {options}`. "
                   + kept)


def result_note(step) -> str:
    """One line about ``result.csv`` (:class:`seglib.steps.ProfileStep`): its customers, or on a sample
    that it was not written and where every customer's segment is."""
    from seglib.config import display_path

    if step.sample is None:
        return f"{display_path(step.layout.result)}: {len(step.result):,} customers"
    parts = display_path(step.layout.root / "result")
    return (f"{len(step.result):,} sampled customers (not written); every customer's segment under the run's "
            f"cut: {parts}/part-* ({step.sample.n_customers:,} customers)")
