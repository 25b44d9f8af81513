"""A stand-in for the cluster explorer, run as a notebook cell by the harness self-test.

Linked like the real explorer: moving ``max_d`` sets the segment count to the number of clusters the
cut at ``max_d`` gives; moving ``segments`` sets ``max_d`` between the merge heights that give that many;
both redraw the dendrogram and the points and update the label. Not imported by the tests: its source
is the code cell of a generated notebook.

The figure goes to an ``Image`` widget as PNG bytes. An ``Output`` widget redrawn with
``clear_output(wait=True)`` from slider callbacks kept two figures after some moves here (ipywidgets
8.1): the front-end sends the value snapped to the slider's step back, a second callback redraws, and
its clear is lost; the UI test counts the plots and reports that as a failure.
"""

import io

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display
from scipy.cluster.hierarchy import dendrogram, fcluster, linkage

rng = np.random.default_rng(0)
centres = [(0, 0), (4, 0), (0, 4), (4, 4), (8, 8)]
X = np.concatenate([rng.normal(c, 0.5, size=(8, 2)) for c in centres])
Z = linkage(X, "ward")
K_MAX = 8


def k_at(d):
    """Number of segments of the cut at height ``d``."""
    return int(fcluster(Z, d, "distance").max())


def d_for(k):
    """A cut height giving ``k`` segments: halfway between the merges that give k and k - 1."""
    return float((Z[-k, 2] + Z[-k + 1, 2]) / 2) if k > 1 else float(Z[-1, 2] * 1.05)


count = widgets.IntSlider(value=3, min=1, max=K_MAX, description="segments")
max_d = widgets.FloatSlider(value=d_for(3), min=float(Z[-K_MAX, 2]) + 0.01, max=float(Z[-1, 2] * 1.1),
                            step=0.01, description="max_d")
label = widgets.Label()
image = widgets.Image(format="png")
syncing = False


def redraw():
    labels = fcluster(Z, max_d.value, "distance")
    label.value = f"{labels.max()} segments"
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    dendrogram(Z, ax=a, no_labels=True, color_threshold=max_d.value)
    a.axhline(max_d.value, color="k", ls="--")
    b.scatter(X[:, 0], X[:, 1], c=labels, cmap="tab10")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    image.value = buffer.getvalue()


def on_max_d(change):
    global syncing
    if not syncing:
        syncing = True
        count.value = k_at(change["new"])
        syncing = False
    redraw()


def on_count(change):
    global syncing
    if not syncing:
        syncing = True
        max_d.value = d_for(change["new"])  # on_max_d redraws
        syncing = False


max_d.observe(on_max_d, "value")
count.observe(on_count, "value")
redraw()
display(widgets.VBox([widgets.HBox([count, max_d, label]), image]))
