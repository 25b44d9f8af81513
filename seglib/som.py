"""Self-organizing maps: the :class:`SOM` estimator, its quality figures and model files.

Two engines train the same kind of map:

* ``"batch"`` (default): the Kohonen batch map in plain numpy. Each epoch finds every row's best-matching
  unit (``||w||^2 - 2 x.w`` in row chunks, never an N x units matrix at once), sums the rows per unit, and
  sets each unit to the neighbourhood-weighted mean of those sums. One matrix product per epoch bounds its
  cost; float32 by default. From ``KERNEL_MIN_ROWS`` rows a compiled numba kernel computes the same
  statistics in one pass (best units with exact near-ties, sums in numpy's order; numpy is the fallback).
* ``"minisom"``: MiniSom itself (online updates, one row at a time, float64), with the original analysis's
  settings available as :meth:`SOM.original`.

The building blocks of the batch engine are module-level functions, so that another executor (the Dask
backend) reuses them instead of forking them::

    mean, cov, n = data_moments(X)                       # a reduction
    W = initial_weights(mean, cov, map_shape, init, random_state).astype(dtype)
    for sigma in sigma_schedule(sigma0, sigma_end, n_epochs, decay):
        sums, counts, sum_dist = <sum of epoch_stats(chunk, W) over chunks>   # map + reduce
        W = update_weights(W, sums, counts, neighborhood_matrix(map_shape, sigma)).astype(dtype)

Maps are drawn and indexed as matrices: unit ``(row, col)`` has the flat index ``row * cols + col``
(``np.unravel_index`` / :meth:`SOM.unit_coords` go back).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from tqdm.auto import tqdm

from seglib._files import read_npz, write_json, write_npz
from seglib.errors import InputError, ModelFormatError, ParameterError, check_int, check_option

__all__ = [
    "SOM",
    "one_blas_thread",
    "exact_sq_distances",
    "data_moments",
    "moment_sums",
    "reduce_moments",
    "default_map_shape",
    "initial_weights",
    "sigma_schedule",
    "neighborhood_matrix",
    "unit_positions",
    "adjacent_units",
    "grid_adjacency",
    "neighbor_pairs",
    "epoch_stats",
    "kernel_switch",
    "explained_variance",
    "quality_sums",
    "map_quality",
    "update_weights",
    "best_units",
    "u_matrix",
    "unit_distances",
    "quality_table",
    "FORMAT_VERSION",
]

logger = logging.getLogger(__name__)

ENGINES = ("batch", "minisom")
INITS = ("pca", "random")
NEIGHBORHOODS = ("gaussian",)
TOPOLOGIES = ("rectangular", "hexagonal")
#: Neighbours counted by the topographic error and the U-matrix, per topology (default first).
NEIGHBORS = {"rectangular": (8, 4), "hexagonal": (6,)}
#: Distance between two rows of units on a hexagonal map (units of one row are 1 apart).
HEX_ROW_HEIGHT = float(np.sqrt(3.0) / 2.0)
DECAYS = ("inverse", "linear", "asymptotic")
DTYPES = ("float32", "float64")
#: Version of the files written by :meth:`SOM.save`; :meth:`SOM.load` refuses newer ones.
FORMAT_VERSION = 1
#: Elements of one chunk's rows x units score block when ``chunk_size=None`` (4 MB in float32).
CHUNK_ELEMENTS = 2**20
#: MiniSom's decay-function names for each ``decay`` (learning rate, sigma).
_MINISOM_DECAY = {
    "inverse": ("inverse_decay_to_zero", "inverse_decay_to_one"),
    "linear": ("linear_decay_to_zero", "linear_decay_to_one"),
    "asymptotic": ("asymptotic_decay", "asymptotic_decay"),
}
_NPZ_ARRAYS = ("weights", "history", "sigmas")


# --------------------------------------------------------------------------------------------------
# building blocks of the batch engine (also used by the Dask backend)
# --------------------------------------------------------------------------------------------------


def _row_chunks(n_rows: int, chunk_size: int) -> list[slice]:
    return [slice(a, min(a + chunk_size, n_rows)) for a in range(0, n_rows, chunk_size)]


def _auto_chunk_size(n_units: int) -> int:
    """Rows per chunk so that a chunk's rows x units block holds about ``CHUNK_ELEMENTS`` values."""
    return int(np.clip(CHUNK_ELEMENTS // max(n_units, 1), 256, 65536))


def data_moments(X, *, chunk_size: int = 16384) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean, covariance (``ddof=1``) and row count of ``X``, in float64, computed in row chunks.

    Two passes (the mean, then centred cross-products), so no float64 copy of ``X`` is ever made. A
    distributed caller computes the same three figures with :func:`reduce_moments` over its blocks and
    passes them to :meth:`SOM.fit_stats`.
    """
    X = np.asarray(X)
    chunks = _row_chunks(len(X), chunk_size)
    return reduce_moments(lambda func, **kwargs: [func(X[s], **kwargs) for s in chunks])


def moment_sums(block, mean=None):
    """A block's share of :func:`data_moments`: ``(rows, column sums)``, or with ``mean`` the centred
    cross-products ``(x - mean).T @ (x - mean)`` (float64)."""
    x = np.asarray(block, dtype=np.float64)
    if mean is None:
        return len(x), x.sum(axis=0)
    c = x - mean
    return c.T @ c


def reduce_moments(reduce) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean, covariance (``ddof=1``) and rows from :func:`moment_sums` of every block, in two passes.

    ``reduce(func, **kwargs)`` returns ``[func(block, **kwargs) for block in blocks]`` in a fixed block
    order (row chunks in memory, partitions on Dask), so the figures do not depend on who computed what.
    """
    parts = reduce(moment_sums)
    if not parts:
        raise InputError("X has no rows: moments need at least one block of rows")
    n = sum(p[0] for p in parts)
    total = parts[0][1].copy()
    for p in parts[1:]:
        total += p[1]
    mean = total / max(n, 1)
    cross = np.zeros((len(mean), len(mean)))
    for c in reduce(moment_sums, mean=mean):
        cross += c
    return mean, cross / max(n - 1, 1), n


def explained_variance(sq_dist_sum: float, cov, n_samples: int) -> float:
    """``1 - sum ||x - w_bmu||^2 / sum ||x - mean||^2`` from the summed squared best-unit distances and
    the data's covariance (``ddof=1``) and rows (:func:`data_moments`, or a reduction); NaN when the data
    have no variance. ``SOM.explained_variance`` and the Dask backend's quality figures use it."""
    total = np.trace(cov) * (n_samples - 1)
    return float(1.0 - sq_dist_sum / total) if total > 0 else float("nan")


def quality_sums(block, som) -> tuple:
    """A block's share of :func:`map_quality`: ``(rows, summed best-unit distance, summed squared
    distance, rows with a topographic error, hits per unit)``; these add up over blocks."""
    x = np.asarray(block, dtype=np.float64)
    units = int(np.prod(som.map_shape_))
    if not len(x):
        return 0, 0.0, 0.0, 0.0, np.zeros(units, dtype=np.int64)
    bmu, dist = som.predict(x, return_distance=True)
    return (len(x), float(dist.sum()), float((dist**2).sum()), som.topographic_error(x) * len(x),
            np.bincount(bmu, minlength=units))


def map_quality(som, reduce) -> dict:
    """The quality figures of a fitted map on its training rows, as both backends record them in step 02.

    ``quantization_error`` (mean best-unit distance), ``topographic_error`` (share of rows whose two
    best units are not neighbours), ``empty_unit_share`` and ``explained_variance``
    (:func:`explained_variance`), from :func:`quality_sums` and :func:`moment_sums` of every block.
    ``reduce(func, **kwargs)`` returns ``[func(block, **kwargs) for block in blocks]`` in a fixed order:
    ``lambda f, **kw: [f(X, **kw)]`` in memory, a reduction over partitions on Dask. How to read them:
    see the ``SOM`` methods of the same names (``docs/som.md``).
    """
    parts = reduce(quality_sums, som=som)
    n = sum(p[0] for p in parts)
    hits = sum(p[4] for p in parts)
    _, cov, _ = reduce_moments(reduce)
    return {
        "quantization_error": sum(p[1] for p in parts) / n,
        "topographic_error": sum(p[3] for p in parts) / n,
        "empty_unit_share": float((np.asarray(hits) == 0).mean()),
        "explained_variance": explained_variance(sum(p[2] for p in parts), cov, n),
    }


def _principal_axes(cov) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending, >= 0) and unit eigenvectors (columns) of ``cov`` with a fixed sign.

    The sign convention (each vector's largest component is positive) makes the PCA start independent
    of the LAPACK build and of how the covariance was summed.
    """
    values, vectors = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0.0, None), vectors[:, order]
    pivot = vectors[np.argmax(np.abs(vectors), axis=0), np.arange(vectors.shape[1])]
    return values, vectors * np.where(pivot < 0, -1.0, 1.0)


def default_map_shape(n_samples: int, cov) -> tuple[int, int]:
    """The usual map size for ``n_samples`` rows: about ``5 * sqrt(n_samples)`` units.

    The sides follow the ratio of the data's two largest principal standard deviations
    (``sqrt(l1 / l2)``, the SOM Toolbox rule), the longer side first, so the grid is evenly spaced
    along the plane the map starts in. 1,000 rows give about 158 units (e.g. 16 x 10); 1M rows about
    5,000 units, where a smaller fixed map is usually wiser (training cost grows with the units).
    """
    values, _ = _principal_axes(cov)
    units = max(5.0 * np.sqrt(n_samples), 2.0)
    ratio = np.sqrt(values[0] / values[1]) if len(values) > 1 and values[1] > 0 else units
    rows = int(max(1, round(np.sqrt(units * min(ratio, units)))))
    cols = int(max(1, round(units / rows)))
    if rows * cols < 2:
        rows, cols = 2, 1
    return rows, cols


def initial_weights(mean, cov, map_shape, init: str = "pca", random_state=None) -> np.ndarray:
    """Starting weights of shape ``(rows, cols, n_features)`` (float64), from the data's moments only.

    Parameters
    ----------
    mean : array of shape (n_features,)
        Mean of the training data.
    cov : array of shape (n_features, n_features)
        Covariance of the training data (see :func:`data_moments`).
    map_shape : (int, int)
        Rows and columns of the map.
    init : {"pca", "random"}
        ``"pca"`` (deterministic, recommended): a regular grid on the plane of the two main principal
        components, spanning one standard deviation either side of the mean; the longer side of the
        map follows the first component. Training then only refines an already ordered map.
        ``"random"``: each unit drawn from a Gaussian with the data's mean and covariance (seeded by
        ``random_state``); useful to check that results do not hinge on the start.
    random_state : int, RandomState or None
        Seed for ``init="random"``; ignored by ``"pca"``.
    """
    check_option("init", init, INITS)
    rows, cols = (int(v) for v in map_shape)
    mean = np.asarray(mean, dtype=np.float64)
    values, vectors = _principal_axes(cov)
    if init == "random":
        rng = check_random_state(random_state)
        z = rng.standard_normal((rows * cols, mean.size))
        return (mean + (z * np.sqrt(values)) @ vectors.T).reshape(rows, cols, mean.size)
    axes = vectors[:, :2] * np.sqrt(values[:2])
    if axes.shape[1] < 2:  # one feature: no second component
        axes = np.hstack([axes, np.zeros_like(axes)])
    first, second = (axes[:, 0], axes[:, 1]) if rows >= cols else (axes[:, 1], axes[:, 0])

    def grid(n):
        return np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)

    return mean + grid(rows)[:, None, None] * first + grid(cols)[None, :, None] * second


def sigma_schedule(sigma: float, sigma_end: float, n_epochs: int, decay: str = "inverse") -> np.ndarray:
    """Neighbourhood radius of each epoch ``t = 0 .. n_epochs - 1``, shape ``(n_epochs,)``.

    ``decay="inverse"`` (MiniSom's ``inverse_decay_to_one`` shape) falls fast first, then slowly:
    ``sigma / (1 + t (sigma / sigma_end - 1) / (n_epochs - 1))``, from ``sigma`` to ``sigma_end``.
    ``decay="linear"`` goes in equal steps from ``sigma`` to ``sigma_end``. Both give a single epoch
    ``sigma_end``. ``decay="asymptotic"`` is MiniSom's default, ``sigma / (1 + t / (n_epochs / 2))``,
    which ignores ``sigma_end`` and ends near a third of ``sigma``.
    """
    check_option("decay", decay, DECAYS)
    t = np.arange(n_epochs, dtype=np.float64)
    sigma, sigma_end = float(sigma), float(sigma_end)
    if decay == "asymptotic":
        return sigma / (1.0 + t / (n_epochs / 2.0))
    if n_epochs == 1:
        return np.array([sigma_end])
    if decay == "inverse":
        return sigma / (1.0 + t * (sigma / sigma_end - 1.0) / (n_epochs - 1))
    return np.linspace(sigma, sigma_end, n_epochs)


def unit_positions(map_shape, topology: str = "rectangular") -> np.ndarray:
    """Position of each unit on the plane, shape ``(units, 2)`` as ``(x, y)``, flat unit order.

    ``"rectangular"``: unit ``(row r, col c)`` sits at ``x = c, y = r``. ``"hexagonal"``: rows are
    ``sqrt(3)/2`` apart and odd rows are shifted right by half a unit, ``x = c + (r % 2) / 2``,
    ``y = r sqrt(3)/2``, so every inner unit has six neighbours at distance 1 (pointy-top hexagons).
    This is MiniSom's hexagonal lattice with its two indexes swapped (MiniSom shifts alternate
    *columns*); with an odd number of rows the two coincide up to a translation. Plots draw ``y``
    downwards (row 0 at the top), the same layout as the square maps.
    """
    check_option("topology", topology, TOPOLOGIES)
    rows, cols = (int(v) for v in map_shape)
    r, c = np.unravel_index(np.arange(rows * cols), (rows, cols))
    if topology == "hexagonal":
        return np.column_stack([c + 0.5 * (r % 2), r * HEX_ROW_HEIGHT])
    return np.column_stack([c, r]).astype(np.float64)


def _grid_sq_distances(map_shape, topology: str = "rectangular") -> np.ndarray:
    if topology == "rectangular":  # exact integers, as before
        r, c = np.unravel_index(np.arange(int(map_shape[0]) * int(map_shape[1])), tuple(map_shape))
        return (r[:, None] - r[None, :]) ** 2 + (c[:, None] - c[None, :]) ** 2
    pos = unit_positions(map_shape, topology)
    diff = pos[:, None, :] - pos[None, :, :]
    return np.einsum("ijk,ijk->ij", diff, diff)


def neighborhood_matrix(map_shape, sigma: float, kind: str = "gaussian", topology: str = "rectangular"
                        ) -> np.ndarray:
    """Unit-to-unit neighbourhood weights ``H`` (units x units, float64), ``exp(-g^2 / (2 sigma^2))``.

    ``g`` is the distance between two units on the grid: between the positions of
    :func:`unit_positions` for ``topology`` (``"rectangular"`` or ``"hexagonal"``).
    """
    check_option("neighborhood", kind, NEIGHBORHOODS)
    check_option("topology", topology, TOPOLOGIES)
    return np.exp(-_grid_sq_distances(map_shape, topology) / (2.0 * float(sigma) ** 2))


def _check_neighbors(topology, neighbors):
    check_option("topology", topology, TOPOLOGIES)
    if neighbors is None:
        return NEIGHBORS[topology][0]
    check_option("neighbors", neighbors, NEIGHBORS[topology])
    return neighbors


def adjacent_units(a, b, map_shape, topology: str = "rectangular",
                   neighbors: int | None = None) -> np.ndarray:
    """Whether flat units ``a`` and ``b`` (arrays, broadcast) are grid neighbours (a unit is not its own).

    Parameters
    ----------
    map_shape : (int, int)
    topology : {"rectangular", "hexagonal"}
    neighbors : int or None
        ``"rectangular"``: 8 (default; diagonal units count, MiniSom's rule) or 4 (units sharing an
        edge). ``"hexagonal"``: 6, the units sharing an edge of the hexagon (also MiniSom's rule:
        centres at distance 1). ``None`` takes the topology's default.
    """
    neighbors = _check_neighbors(topology, neighbors)
    cols = int(map_shape[1])
    r1, c1 = np.divmod(np.asarray(a), cols)
    r2, c2 = np.divmod(np.asarray(b), cols)
    dr, dc = r2 - r1, c2 - c1
    if topology == "hexagonal":  # odd rows sit half a unit right: their diagonal neighbours are c, c + 1
        diagonal = (np.abs(dr) == 1) & ((dc == 0) | (dc == np.where(r1 % 2 == 1, 1, -1)))
        return ((dr == 0) & (np.abs(dc) == 1)) | diagonal
    if neighbors == 8:
        return (np.maximum(np.abs(dr), np.abs(dc)) == 1)
    return (np.abs(dr) + np.abs(dc)) == 1


def grid_adjacency(map_shape, topology: str = "rectangular", neighbors: int | None = None) -> np.ndarray:
    """Boolean ``(units, units)`` matrix of :func:`adjacent_units` (symmetric, False on the diagonal)."""
    units = np.arange(int(map_shape[0]) * int(map_shape[1]))
    return adjacent_units(units[:, None], units[None, :], map_shape, topology, neighbors)


def neighbor_pairs(map_shape, topology: str = "rectangular",
                   neighbors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs ``(a, b)`` of neighbouring flat units (both directions), in ``a`` order."""
    rows, cols = (int(v) for v in map_shape)
    units = np.arange(rows * cols)
    r, c = np.divmod(units, cols)
    a_parts, b_parts = [], []
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            rr, cc = r + dr, c + dc
            inside = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
            a, b = units[inside], (rr * cols + cc)[inside]
            keep = adjacent_units(a, b, (rows, cols), topology, neighbors)
            a_parts.append(a[keep])
            b_parts.append(b[keep])
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    order = np.lexsort((b, a))
    return a[order], b[order]


def _flat(weights) -> np.ndarray:
    w = np.asarray(weights)
    return w.reshape(-1, w.shape[-1])


def _augmented(codebook: np.ndarray) -> np.ndarray:
    """``[-2 W, ||w||^2]``: one product with ``[x, 1]`` gives ``||w||^2 - 2 x.w`` for every unit."""
    sq = np.einsum("ij,ij->i", codebook.astype(np.float64), codebook.astype(np.float64))
    return np.hstack([-2.0 * codebook, sq[:, None].astype(codebook.dtype)])


class _Codebook:
    """A codebook prepared for best-unit searches: the augmented matrix of the fast scores, the
    float64 prototypes of the exact distances, the largest prototype norm and the scale of the
    near-tie bound ``4 (F + 4) eps`` (eps of the weights' dtype; see :func:`_nearest`)."""

    def __init__(self, codebook: np.ndarray):
        self.augmented = _augmented(codebook)
        self.exact = np.ascontiguousarray(codebook, dtype=np.float64)
        norms = np.einsum("ij,ij->i", self.exact, self.exact)
        self.max_norm = float(np.sqrt(norms.max())) if len(norms) else 0.0
        self.eps = float(np.finfo(self.augmented.dtype).eps)
        self.tol_scale = 4.0 * (codebook.shape[1] + 4) * self.eps

    def __len__(self) -> int:
        return len(self.augmented)


def _exact_sq_distances(x64: np.ndarray, w64: np.ndarray) -> np.ndarray:
    """Squared distance of each row ``x64[i]`` to the prototype ``w64[i]`` (pairs of rows).

    Summed feature by feature, in feature order, in float64: every value depends on its own row and
    unit only, never on the other rows of the batch (unlike a BLAS product, whose rounding follows
    the blocking of the whole matrix).
    """
    d = np.zeros(len(x64))
    for j in range(x64.shape[1]):
        diff = x64[:, j] - w64[:, j]
        d += diff * diff
    return d


def exact_sq_distances(x64: np.ndarray, w64: np.ndarray) -> np.ndarray:
    """Squared distances of every row to every unit (rows x units), summed feature by feature in float64,
    in feature order: the same operations as :func:`_exact_sq_distances`, so ``transform``, ``predict``
    and :func:`seglib.cluster.nearest_segment`'s near-ties agree to the bit."""
    d = np.zeros((len(x64), len(w64)))
    for j in range(x64.shape[1]):
        diff = x64[:, j, None] - w64[None, :, j]
        d += diff * diff
    return d


def _nearest(scores: np.ndarray, x: np.ndarray, cb: _Codebook, k: int = 1):
    """Best (and second-best for ``k=2``) unit of each row, independent of the batch.

    The fast scores ``||w||^2 - 2 x.w`` come from a BLAS product whose rounding depends on the batch
    (its size and blocking), so near-ties could go either way depending on who else is scored. Every
    unit whose score is within a rounding-error bound of the k-th best is a *candidate*; when a row
    has more candidates than one, their exact squared distances (:func:`_exact_sq_distances`) decide,
    exact ties going to the lowest unit index. The bound, ``4 (F + 4) eps (||x|| + max ||w||)^2``
    (eps of the weights' dtype), exceeds twice the error of the product, so the true best units are
    always candidates: the answer is the exact argmin, whatever the batch. Finding the rows with a
    near-tie costs one more pass (the second-smallest score); only those rows (a few in a thousand,
    on real data) are recomputed. ``scores`` is used as scratch space and left as it was.
    """
    n, units = scores.shape
    rows = np.arange(n)
    first = scores.argmin(axis=1)
    flat, at = scores.reshape(-1), rows * units + first  # flat indexes: much faster than (rows, first)
    top = flat[at]
    flat[at] = np.inf
    second = scores.argmin(axis=1) if k == 2 else None
    runner_up = flat[rows * units + second] if k == 2 else scores.min(axis=1)
    flat[at] = top
    norm = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))  # the bound needs no exactness
    tol = cb.tol_scale * (norm + cb.max_norm) ** 2
    # k=1: a row is settled when its runner-up is beyond the bound; k=2: every row is checked
    need = rows if k == 2 else np.flatnonzero(runner_up <= top + tol)
    if need.size:
        kth = (runner_up if k == 2 else top)[need]
        r, unit = np.nonzero(scores[need] <= (kth + tol[need]).astype(scores.dtype)[:, None])
        row = need[r]
        d = _exact_sq_distances(np.asarray(x[row], dtype=np.float64), cb.exact[unit])
        order = np.lexsort((unit, d, row))  # by row, then distance, then unit index
        row, unit = row[order], unit[order]
        start = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        first[row[start]] = unit[start]
        if k == 2:
            second[row[start + 1]] = unit[start + 1]
    return first, second


def _scores(X_chunk, augmented) -> np.ndarray:
    """``||w||^2 - 2 x.w`` for each row of the chunk and each unit (chunk x units, weights' dtype)."""
    n, n_features = X_chunk.shape
    ext = np.empty((n, n_features + 1), dtype=augmented.dtype)
    ext[:, :n_features] = X_chunk
    ext[:, n_features] = 1.0
    return ext @ augmented.T


def epoch_stats(X_chunk, weights, *, chunk_size: int | None = None,
                exact: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """What one epoch of the batch map needs from a block of rows.

    Parameters
    ----------
    X_chunk : array of shape (n_rows, n_features)
        Any block of the training rows (a chunk, a Dask partition); processed in row chunks of
        ``chunk_size`` internally.
    weights : array of shape (rows, cols, n_features) or (units, n_features)
        Current weights; their dtype is the precision of the best-unit search (float32 is about twice
        as fast as float64; best units differ only on near-ties).

    Returns
    -------
    sums : float64 array (units, n_features)
        Sum of the rows won by each unit.
    counts : int64 array (units,)
        Rows won by each unit.
    sum_dist : float
        Sum over the rows of the distance to their best unit (quantization error = sum / rows). It uses
        the expanded form of the distance in the weights' dtype (relative error ~1e-6 in float32).

    Sums over several blocks add up: the statistics of a whole epoch are the element-wise sums of the
    blocks' statistics, in any order (up to floating-point rounding).

    ``exact=True`` settles near-tied best units by exact distances, as :func:`best_units` does, so
    the counts are those of ``SOM.hit_map`` (a row's unit does not depend on the block); the training
    epochs keep the plain argmin (``exact=False``): a near-tie moves a rounding error's worth of a row
    between two equidistant prototypes, and the extra pass would cost 10-30% of an epoch.

    From ``KERNEL_MIN_ROWS`` rows (numba installed, ``SEGLIB_NUMBA`` not ``0``) the compiled kernel
    computes the statistics, in parallel over the row chunks: its best units are always the exact ones
    (whatever ``exact``: the check costs the kernel little), its sums and counts are then those of
    ``exact=True`` to the bit, and ``sum_dist`` sums exact float64 distances (equal to numpy's figure
    to ~1e-6 relative). The thread count never changes a result.
    """
    codebook = _flat(weights)
    X_chunk = np.asarray(X_chunk)
    chunks = _row_chunks(len(X_chunk), chunk_size or _auto_chunk_size(len(codebook)))
    return _epoch_totals(X_chunk, codebook, exact, chunks=chunks, mapper=map)  # chunks one after another


def _chunk_stats(x, cb: _Codebook, exact: bool = False):
    """``epoch_stats`` of one chunk, given the prepared codebook."""
    augmented = cb.augmented
    units = len(augmented)
    scores = _scores(x, augmented)
    best = _nearest(scores, x, cb)[0] if exact else scores.argmin(axis=1)
    n = len(best)
    x = x.astype(augmented.dtype, copy=False)
    sq = scores[np.arange(n), best] + np.einsum("ij,ij->i", x, x)
    sum_dist = float(np.sqrt(np.maximum(sq, 0.0)).sum(dtype=np.float64))
    onehot = sp.csr_array((np.ones(n), best, np.arange(n + 1)), shape=(n, units))
    return onehot.T @ x, np.bincount(best, minlength=units), sum_dist


def _add_stats(parts, augmented):
    """Element-wise sum of chunk statistics, in the order given (so the result is reproducible)."""
    sums = np.zeros((len(augmented), augmented.shape[1] - 1))
    counts = np.zeros(len(augmented), dtype=np.int64)
    sum_dist = 0.0
    for part_sums, part_counts, part_dist in parts:
        sums += part_sums
        counts += part_counts
        sum_dist += part_dist
    return sums, counts, sum_dist


def _epoch_totals(X, codebook, exact=False, *, chunks, mapper, n_threads=None):
    """``epoch_stats(X, codebook)`` with the chunks spread by ``mapper`` (or, from ``KERNEL_MIN_ROWS``
    rows, by the compiled kernel over ``n_threads``, default every core), summed in chunk order."""
    if _use_kernel(len(X)):
        totals = _kernel_totals(X, codebook, chunks, _n_threads(-1) if n_threads is None else n_threads)
        if totals is not None:
            return totals
    cb = _Codebook(codebook)
    return _add_stats(mapper(lambda s: _chunk_stats(X[s], cb, exact), chunks), cb.augmented)


def _epoch(epoch_totals, codebook, n, map_shape, sigma, kind, topology="rectangular"):
    """One epoch of the batch map from ``epoch_totals(codebook)``: (new codebook in the same dtype,
    quantization error before it)."""
    sums, counts, sum_dist = epoch_totals(codebook)
    H = neighborhood_matrix(map_shape, sigma, kind, topology)
    return update_weights(codebook, sums, counts, H).astype(codebook.dtype), sum_dist / n


def _batch_epoch(X, codebook, chunks, mapper, map_shape, sigma, kind, topology="rectangular"):
    """:func:`_epoch` of the rows of ``X`` in memory (the code path of ``SOM.fit``; benchmarks time it)."""
    return _epoch(partial(_epoch_totals, X, chunks=chunks, mapper=mapper), codebook, len(X), map_shape, sigma,
                  kind, topology)


def update_weights(weights, sums, counts, H) -> np.ndarray:
    """The batch-map update ``W = (H @ sums) / (H @ counts)`` (float64, same shape as ``weights``).

    A unit whose neighbourhood holds no row at all (``H @ counts == 0``, possible when a small sigma
    makes far weights underflow) keeps its current weights.
    """
    weights = np.asarray(weights)
    numerator = H @ np.asarray(sums, dtype=np.float64)
    mass = H @ np.asarray(counts, dtype=np.float64)
    new = _flat(weights).astype(np.float64)
    ok = mass > 0
    new[ok] = numerator[ok] / mass[ok, None]
    return new.reshape(weights.shape)


def best_units(X, weights, *, chunk_size: int | None = None, n_jobs: int | None = 1) -> np.ndarray:
    """Flat index of each row's best-matching unit, in row chunks.

    Searched in the weights' dtype, near-ties settled by exact float64 distances: a row gets the
    same unit alone or in any batch, ties going to the lowest unit index (see :func:`_nearest`).
    """
    return _best_units(np.asarray(X), _flat(weights), chunk_size, _n_threads(n_jobs))[0]


def _best_units(X, codebook, chunk_size, n_threads, k=1):
    """Best ``k`` units (1 or 2) per row: (best, second or None), int64, independent of the batch."""
    chunk_size = chunk_size or _auto_chunk_size(len(codebook))
    if k == 1 and _use_kernel(len(X)):
        found = _kernel_run(X, codebook, _row_chunks(len(X), chunk_size), n_threads, with_sums=False)
        if found is not None:
            return found[0], None
    cb = _Codebook(codebook)

    def one(s):
        return _nearest(_scores(X[s], cb.augmented), X[s], cb, k)

    parts = _run_chunks(one, len(X), chunk_size, n_threads)
    first = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    second = np.concatenate([p[1] for p in parts]) if k == 2 and parts else None
    return first, second


# --------------------------------------------------------------------------------------------------
# the compiled kernel (numba): best units and per-unit sums in one pass over the rows
# --------------------------------------------------------------------------------------------------

#: Rows from which an epoch or a best-unit search runs in the compiled kernel rather than numpy. Below
#: it the kernel does not repay importing numba and loading the cached kernel (~1 s in a fresh process,
#: a few seconds once per installation to compile; see docs/performance.md "SOM epoch"). In the
#: environment, ``SEGLIB_NUMBA=0`` turns the kernel off and ``SEGLIB_NUMBA=1`` uses it at any size.
KERNEL_MIN_ROWS = 500_000
#: Rows of one sub-block of the kernel: a sub-block's rows are scored against every unit at once.
_KERNEL_ROWS = 128
#: Most memory the kernel's per-chunk sums take at once (bytes).
_KERNEL_PARTS_BYTES = 64 * 2**20
_kernel_state: dict = {}
_kernel_lock = threading.Lock()  # one parallel region at a time
_build_lock = threading.Lock()  # one import and build of the kernel
_prange = range  # numba.prange once the kernel is built (a global of the compiled function)


def _kernel_scores(xt, neg2w, wsq, scores, top, second, unit):  # pragma: no cover - compiled by numba
    """Fast scores ``||w||^2 - 2 x.w`` of the rows of ``xt`` (features x rows, the weights' dtype) for
    every unit into ``scores`` (units + 1 x rows, the last row scratch space), with each row's smallest
    and second-smallest score and the unit of the smallest (the first on equal scores). Two units per
    pass over the rows, vectorised over the rows; compiled with FMA contraction, whose rounding the
    near-tie bound covers as it covers a BLAS product's."""
    n_features, rows = xt.shape
    units = neg2w.shape[0]
    for r in range(rows):
        top[r] = np.inf
        second[r] = np.inf
        unit[r] = 0
    for u in range(0, units, 2):
        v = min(u + 1, units - 1)  # an odd last unit is scored twice (into the scratch row), compared once
        s0, s1 = scores[u], scores[u + 1]
        a0, a1 = wsq[u], wsq[v]
        for r in range(rows):
            s0[r] = a0
            s1[r] = a1
        for f in range(n_features):
            w0, w1 = neg2w[u, f], neg2w[v, f]
            xf = xt[f]
            for r in range(rows):
                x = xf[r]
                s0[r] += w0 * x
                s1[r] += w1 * x
        u0, u1 = np.int32(u), np.int32(u + 1)
        for r in range(rows):
            t, sec, un = top[r], second[r], unit[r]
            s = s0[r]
            lt = s < t
            sec = min(sec, t if lt else s)
            un = u0 if lt else un
            t = s if lt else t
            if u1 < units:
                s = s1[r]
                lt = s < t
                sec = min(sec, t if lt else s)
                un = u1 if lt else un
                t = s if lt else t
            top[r], second[r], unit[r] = t, sec, un


def _kernel_body(X, neg2w, wsq, w64, tol_scale, max_norm, starts, best, part_sums, part_counts, part_dist,
                 with_sums):  # pragma: no cover - compiled by numba (run by the tests when numba is present)
    """Per row chunk ``c`` (in parallel over chunks): every row's best unit (``best``), and with
    ``with_sums`` the chunk's per-unit sums (float64, rows in order), counts and summed distances.

    Rows go by sub-blocks of ``_KERNEL_ROWS`` through :func:`_kernel_scores`. As in ``_nearest``, a
    row whose runner-up lies within the rounding bound has every unit within the bound of its best
    score as a candidate, and the candidates' exact float64 distances (summed in feature order, no
    FMA) decide, the lowest unit on exact ties: ``_nearest``'s answer.
    """
    n_features = X.shape[1]
    units = neg2w.shape[0]
    for c in _prange(len(starts) - 1):
        xt = np.zeros((n_features, _KERNEL_ROWS), dtype=neg2w.dtype)
        scores = np.empty((units + 1, _KERNEL_ROWS), dtype=neg2w.dtype)
        top = np.empty(_KERNEL_ROWS, dtype=neg2w.dtype)
        second = np.empty(_KERNEL_ROWS, dtype=neg2w.dtype)
        unit = np.zeros(_KERNEL_ROWS, dtype=np.int32)
        for r0 in range(starts[c], starts[c + 1], _KERNEL_ROWS):
            m = min(_KERNEL_ROWS, starts[c + 1] - r0)
            for r in range(m):
                for f in range(n_features):
                    xt[f, r] = X[r0 + r, f]
            _kernel_scores(xt, neg2w, wsq, scores, top, second, unit)
            for r in range(m):
                i = r0 + r
                norm = 0.0
                for f in range(n_features):
                    v = np.float64(X[i, f])
                    norm += v * v
                bound = np.sqrt(norm) + max_norm
                limit = np.float64(top[r]) + tol_scale * bound * bound
                if np.float64(second[r]) <= limit:  # a near-tie: exact distances of the candidates decide
                    best_d = np.inf
                    for u in range(units):
                        if np.float64(scores[u, r]) <= limit:
                            d = 0.0
                            for f in range(n_features):
                                diff = np.float64(X[i, f]) - w64[u, f]
                                d += diff * diff
                            if d < best_d:
                                best_d = d
                                unit[r] = u
                best[i] = unit[r]
            if with_sums:
                for r in range(m):
                    i, u = r0 + r, unit[r]
                    part_counts[c, u] += 1
                    d = 0.0
                    for f in range(n_features):
                        part_sums[c, u, f] += np.float64(xt[f, r])
                        diff = np.float64(X[i, f]) - w64[u, f]
                        d += diff * diff
                    part_dist[c] += np.sqrt(d)


_KERNEL_PY = {"scores": _kernel_scores, "body": _kernel_body}


def _kernel():
    """The compiled kernel, or None when numba is missing or fails (logged at DEBUG)."""
    if "fn" in _kernel_state:
        return _kernel_state["fn"]
    with _build_lock:
        if "fn" not in _kernel_state:
            _kernel_state["fn"] = _build_kernel()
    return _kernel_state["fn"]


def _build_kernel():
    """Import numba and compile the kernel (``SEGLIB_NUMBA=0`` is settled before: :func:`_use_kernel`)."""
    try:
        import numba

        globals()["_prange"] = numba.prange
        try:
            return _compile_kernel(numba, cache=True)
        except RuntimeError as exc:  # no writable cache location (a read-only install)
            logger.debug("numba cannot cache the SOM kernel (%s): compiled in memory", exc)
            return _compile_kernel(numba, cache=False)
    except Exception as exc:  # noqa: BLE001 - any failure means: use numpy
        logger.debug("numba unavailable (%s): numpy computes the SOM epochs", exc)
        return None


def _compile_kernel(numba, cache: bool):
    """The two compiled functions (lazily: numba compiles on the first call, or loads its cache)."""
    scores = numba.njit(cache=cache, nogil=True, fastmath={"contract"})(_KERNEL_PY["scores"])
    body = numba.njit(parallel=True, cache=cache, nogil=True)(_KERNEL_PY["body"])
    globals()["_kernel_scores"] = scores  # the name the body calls
    return body


@contextmanager
def kernel_switch(on: bool):
    """Within the block, the SOM kernel is on at any size (``on=True``) or off (``False``): it sets
    ``SEGLIB_NUMBA`` (which wins over :data:`KERNEL_MIN_ROWS`) and restores it after. For comparing the
    two paths (tests, ``benchmarks/bench_epoch.py``); results are the same either way."""
    saved = os.environ.get("SEGLIB_NUMBA")
    os.environ["SEGLIB_NUMBA"] = "1" if on else "0"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["SEGLIB_NUMBA"]
        else:
            os.environ["SEGLIB_NUMBA"] = saved


def _use_kernel(n_rows: int) -> bool:
    setting = os.environ.get("SEGLIB_NUMBA", "")
    large = n_rows >= KERNEL_MIN_ROWS or setting == "1"
    return large and n_rows > 0 and setting != "0" and _kernel() is not None


def _kernel_run(X, codebook, chunks, n_threads, with_sums):
    """Run the kernel over ``chunks`` of ``X``: (best units, per-chunk sums, counts, distances).

    Returns None when the kernel fails (the caller then uses numpy; logged at DEBUG).
    """
    import numba

    cb = _Codebook(codebook)
    X = np.ascontiguousarray(X)
    neg2w = np.ascontiguousarray(cb.augmented[:, :-1])
    wsq = np.ascontiguousarray(cb.augmented[:, -1])
    units, n_features = neg2w.shape
    starts = np.array([s.start for s in chunks] + [chunks[-1].stop], dtype=np.int64)
    n_chunks = len(chunks)
    best = np.empty(len(X), dtype=np.int64)
    shape = (n_chunks, units, n_features) if with_sums else (1, 1, 1)
    part_sums = np.zeros(shape)
    part_counts = np.zeros(shape[:2], dtype=np.int64)
    part_dist = np.zeros(shape[0])
    # the bound of _nearest, a little wider: recomputing more rows exactly never changes the answer
    tol_scale = cb.tol_scale * (1.0 + 1e-6)
    try:
        with _kernel_lock:  # one parallel region at a time (numba's default threading layer needs it)
            before = numba.get_num_threads()
            numba.set_num_threads(max(1, min(n_threads, numba.config.NUMBA_NUM_THREADS)))
            try:
                _kernel()(X, neg2w, wsq, cb.exact, tol_scale, cb.max_norm, starts, best, part_sums,
                          part_counts, part_dist, with_sums)
            finally:
                numba.set_num_threads(before)
    except Exception as exc:  # noqa: BLE001 - a failing compile or run falls back to numpy
        logger.debug("the SOM kernel failed (%s): numpy computes this epoch", exc)
        _kernel_state["fn"] = None
        return None
    return best, part_sums, part_counts, part_dist


def _kernel_totals(X, codebook, chunks, n_threads):
    """``epoch_stats`` by the kernel: the chunks' statistics added in chunk order, as ``_add_stats``
    adds numpy's (so the sums are the same bits); None when the kernel fails.

    The chunks go to the kernel in groups whose per-chunk sums hold at most ``_KERNEL_PARTS_BYTES``
    (one group at the default chunk size; many tiny chunks would otherwise need gigabytes).
    """
    units, n_features = np.shape(codebook)
    sums = np.zeros((units, n_features))
    counts = np.zeros(units, dtype=np.int64)
    sum_dist = 0.0
    group = max(1, _KERNEL_PARTS_BYTES // (8 * units * n_features))
    for g in range(0, len(chunks), group):
        part = chunks[g : g + group]
        a, b = part[0].start, part[-1].stop
        found = _kernel_run(X[a:b], codebook, [slice(s.start - a, s.stop - a) for s in part], n_threads,
                            with_sums=True)
        if found is None:
            return None
        _, part_sums, part_counts, part_dist = found
        for c in range(len(part)):
            sums += part_sums[c]
            counts += part_counts[c]
            sum_dist += float(part_dist[c])
    return sums, counts, sum_dist


def u_matrix(weights, topology: str = "rectangular") -> np.ndarray:
    """U-matrix (distance map): each unit's mean Euclidean distance to its grid neighbours.

    Shape ``(rows, cols)``, in the units of the features (not rescaled). High values mark borders
    between groups of similar units. The neighbours are the 8 surrounding units on a rectangular map
    and the 6 units sharing a hexagon edge on a hexagonal one (:func:`adjacent_units`). MiniSom's
    ``distance_map(scaling="mean")`` is this divided by its maximum; its default ``scaling="sum"``
    sums instead, which makes edge and corner units (fewer neighbours) look artificially close to
    their neighbours. The distances themselves, one per pair of neighbours, are
    :func:`unit_distances`.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 3:
        raise ParameterError(f"weights must have shape (rows, cols, n_features), got {w.shape}")
    a, b, d = unit_distances(w, topology)
    units = w.shape[0] * w.shape[1]
    total = np.bincount(a, weights=d, minlength=units)
    count = np.bincount(a, minlength=units)
    with np.errstate(invalid="ignore"):
        return (total / count).reshape(w.shape[:2])


def unit_distances(weights, topology: str = "rectangular", neighbors: int | None = None):
    """Distance between the weights of every pair of neighbouring units.

    Returns ``(a, b, d)``: flat unit indexes (each pair once in each direction, sorted by ``a``) and
    the Euclidean distance of their weights. The U-matrix averages ``d`` per unit; a map figure can
    draw ``d`` on the edge between ``a`` and ``b``.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 3:
        raise ParameterError(f"weights must have shape (rows, cols, n_features), got {w.shape}")
    a, b = neighbor_pairs(w.shape[:2], topology, neighbors)
    flat = w.reshape(-1, w.shape[-1])
    return a, b, np.linalg.norm(flat[a] - flat[b], axis=1)


# --------------------------------------------------------------------------------------------------
# threads: BLAS pinned to one thread, row chunks spread over Python threads (numpy releases the GIL)
# --------------------------------------------------------------------------------------------------


def _n_threads(n_jobs) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if n_jobs is None:
        return 1
    if n_jobs < 0:
        return max(1, cores + 1 + n_jobs)
    return max(1, int(n_jobs))


class _OneBlasThread:
    """BLAS on one thread while any thread of the process is inside, restored when the last one leaves
    (threads of a Dask worker search their partitions at once: none may restore the limit under another).

    The searches' products are small: on a busy machine a threaded BLAS waits for its threads far longer
    than such a product takes. The SOM's best-unit searches and :func:`seglib.cluster.nearest_segment`
    go through it. The threadpoolctl controller is made once (scanning the loaded libraries takes about
    a millisecond, once per search before).
    """

    def __init__(self):
        from threadpoolctl import ThreadpoolController

        self._controller = ThreadpoolController()
        self._lock = threading.Lock()
        self._inside = 0
        self._limiter = None

    def __enter__(self):
        with self._lock:
            if self._inside == 0:
                self._limiter = self._controller.limit(limits=1, user_api="blas")
            self._inside += 1

    def __exit__(self, *exc):
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                self._limiter.restore_original_limits()
                self._limiter = None


_ONE_BLAS_THREAD: list = []  # the process's _OneBlasThread, made on first use
_ONE_BLAS_LOCK = threading.Lock()


def one_blas_thread() -> _OneBlasThread:
    """The process's one-BLAS-thread guard: a context manager, re-entrant and shared by threads."""
    with _ONE_BLAS_LOCK:
        if not _ONE_BLAS_THREAD:
            _ONE_BLAS_THREAD.append(_OneBlasThread())
        return _ONE_BLAS_THREAD[0]


@contextmanager
def _chunk_mapper(n_threads: int):
    """Yield ``map``-like callable; one BLAS thread, ``n_threads`` Python threads; results in order."""
    with one_blas_thread():
        if n_threads <= 1:
            yield map
        else:
            with ThreadPoolExecutor(n_threads) as pool:
                yield pool.map


def _run_chunks(fn, n_rows, chunk_size, n_threads):
    chunks = _row_chunks(n_rows, chunk_size)
    with _chunk_mapper(min(n_threads, len(chunks))) as mapper:
        return list(mapper(fn, chunks))


# --------------------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------------------


class SOM(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Self-organizing map (Kohonen), scikit-learn style.

    Parameters
    ----------
    map_shape : (int, int) or None, default=(15, 15)
        Rows and columns of units. ``None`` picks about ``5 * sqrt(n_samples)`` units with sides in the
        ratio of the data's two main principal components (:func:`default_map_shape`). For
        segmentation, the map only has to be finer than the segments: 10x10 to 20x20 suits thousands
        to hundreds of thousands of customers; more units cost time linearly and leave more units
        empty (see :meth:`empty_unit_share`).
    engine : {"batch", "minisom"}, default="batch"
        ``"batch"``: the numpy batch map (fast; deterministic for a given seed; the default).
        ``"minisom"``: MiniSom's online training, one row at a time (about 30 us per update, float64),
        for comparison and for reproducing the original analysis (:meth:`original`).
    sigma : float or None, default=None
        Neighbourhood radius (in units) at the start. ``None`` means half the longer side of the map,
        which lets the first epochs order the whole map. A random start with a small radius (the
        original's 1.0) leaves a map that never untangles (topographic error 0.4-0.7); a PCA start is
        ordered already and tolerates smaller values.
    sigma_end : float, default=1.0
        Radius of the last epoch (``decay="inverse"`` or ``"linear"``). It sets the final trade-off:
        smaller values fit the data more closely (lower quantization error) but give a rougher map;
        below about 0.5 the batch map behaves like k-means. Compare engines at the same final sigma.
        MiniSom's decays end at 1, so ``engine="minisom"`` requires ``sigma_end=1``.
    learning_rate : float, default=0.5
        Starting learning rate of ``engine="minisom"`` (decays with ``decay``); the batch map has no
        learning rate and ignores it.
    n_epochs : int, default=10
        Passes over the data. The batch map is usually settled after 10 (see ``history_``); MiniSom
        online training needs about as many passes for a comparable map.
    n_iterations : int or None, default=None
        ``engine="minisom"`` only: train with this many single-row updates on rows drawn at random
        (MiniSom's ``train_random``) instead of ``n_epochs`` full passes. 10,000 is the original
        setting, which on 10k rows touches each row about once: too little.
    init : {"pca", "random"}, default="pca"
        Starting weights, see :func:`initial_weights`. ``"pca"`` is deterministic and converges fastest.
    neighborhood : {"gaussian"}, default="gaussian"
        Neighbourhood function.
    topology : {"rectangular", "hexagonal"}, default="rectangular"
        Grid of the units (:func:`unit_positions`). ``"hexagonal"``: every inner unit has six
        neighbours at the same distance, so the U-matrix and segment borders have no diagonal
        artefacts and the map reads as regions (the default of R ``kohonen`` and the SOM Toolbox);
        the topographic error then counts the 6 neighbours and every map figure draws hexagons.
        ``"rectangular"``: square cells, 8 neighbours (4 sharing an edge). On planted and real data the
        two gave the same segments and quality within noise (``docs/som.md``), so the default stays
        rectangular; choose hexagonal for maps that are read by eye.
    decay : {"inverse", "linear", "asymptotic"}, default="inverse"
        How sigma (and MiniSom's learning rate) shrink over training, see :func:`sigma_schedule`.
        ``"inverse"`` falls fast while the map orders, then spends the last epochs near ``sigma_end``
        where the prototypes settle: on planted data it gave a 2.6% lower quantization error than
        ``"linear"`` (equal steps) for a topographic error of 0.04 instead of 0.025. ``"asymptotic"`` is
        MiniSom's default ``x / (1 + t / (T/2))``, used by the original analysis. With
        ``engine="minisom"`` these are MiniSom's ``inverse_decay_to_one`` / ``linear_decay_to_one`` /
        ``asymptotic_decay`` for sigma and the matching ``*_to_zero`` decays for the learning rate.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the batch engine's weights and best-unit search. float32 halves the time; the best
        unit changes only on near-ties (7 rows in a million on the benchmark data). ``engine="minisom"``
        always uses float64.
    chunk_size : int or None, default=None
        Rows per chunk of the best-unit search; ``None`` sizes a chunk's rows x units block to about 1M
        values (4 MB in float32, ~4.7k rows for a 15x15 map). Memory use beyond ``X`` is a few times
        ``n_jobs`` such blocks. The result does not depend on it beyond floating-point rounding.
    n_jobs : int or None, default=-1
        Python threads over the row chunks (BLAS is pinned to one thread, which measured stable and
        fastest here), or the compiled kernel's threads from ``KERNEL_MIN_ROWS`` rows; ``-1`` uses every
        core, ``None`` or 1 one thread. Results do not depend on it.
    progress : bool, default=True
        Show a progress bar over the epochs.
    random_state : int, RandomState or None, default=None
        Seed for ``init="random"`` and for MiniSom's row order; the same seed gives the same weights.

    Attributes
    ----------
    weights_ : ndarray of shape (rows, cols, n_features)
        The trained prototypes (one per unit).
    map_shape_ : (int, int)
        Rows and columns actually used.
    sigma_ : float
        Starting radius actually used.
    sigmas_ : ndarray of shape (n_epochs,)
        Radius of each epoch (batch engine) or at the start of each pass (minisom engine).
    history_ : ndarray
        Quantization error of the map before the first epoch and after each epoch (n_epochs + 1 values;
        for ``n_iterations`` training, after each block of n_samples updates and at the end).
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of str
        Column names seen in fit, when ``X`` was a DataFrame.

    Examples
    --------
    >>> som = SOM(map_shape=(10, 10), random_state=0, progress=False).fit(X)   # doctest: +SKIP
    >>> som.predict(X[:3]), som.quantization_error(X), som.topographic_error(X)  # doctest: +SKIP
    """

    def __init__(
        self,
        map_shape=(15, 15),
        *,
        engine="batch",
        sigma=None,
        sigma_end=1.0,
        learning_rate=0.5,
        n_epochs=10,
        n_iterations=None,
        init="pca",
        neighborhood="gaussian",
        topology="rectangular",
        decay="inverse",
        dtype="float32",
        chunk_size=None,
        n_jobs=-1,
        progress=True,
        random_state=None,
    ):
        self.map_shape = map_shape
        self.engine = engine
        self.sigma = sigma
        self.sigma_end = sigma_end
        self.learning_rate = learning_rate
        self.n_epochs = n_epochs
        self.n_iterations = n_iterations
        self.init = init
        self.neighborhood = neighborhood
        self.topology = topology
        self.decay = decay
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.n_jobs = n_jobs
        self.progress = progress
        self.random_state = random_state

    @classmethod
    def original(cls, random_state=None, **params) -> SOM:
        """The original analysis's map: a 15x15 MiniSom, sigma 1.0, learning rate 0.5, random start,
        10,000 single-row updates on random rows (``train_random``), MiniSom's asymptotic decay.

        Use it to reproduce the original figures; it leaves the map unordered (topographic error about
        0.5 on clustered data). ``params`` override any setting. Note: the original drew its random
        start from MiniSom (rows of the data); here ``init="random"`` draws from a Gaussian with the
        data's mean and covariance, so every engine starts from the same weights for a seed.
        """
        settings = dict(
            map_shape=(15, 15),
            engine="minisom",
            sigma=1.0,
            learning_rate=0.5,
            n_iterations=10_000,
            init="random",
            decay="asymptotic",
            random_state=random_state,
        )
        settings.update(params)
        return cls(**settings)

    # ---------------------------------------------------------------------------------- validation

    def check_params(self) -> None:
        """Raise :class:`~seglib.errors.ParameterError` if a parameter is invalid; :meth:`fit` calls it.

        Call it to fail before any expensive work, as the Dask backend does before reading the data.
        """
        check_option("engine", self.engine, ENGINES)
        check_option("init", self.init, INITS)
        check_option("neighborhood", self.neighborhood, NEIGHBORHOODS)
        check_option("topology", self.topology, TOPOLOGIES)
        check_option("decay", self.decay, DECAYS)
        check_option("dtype", self.dtype, DTYPES)
        shape = self.map_shape
        if shape is not None:
            ok = (
                isinstance(shape, (tuple, list))
                and len(shape) == 2
                and all(_is_int(v) and v >= 1 for v in shape)
                and shape[0] * shape[1] >= 2
            )
            if not ok:
                raise ParameterError(
                    f"map_shape={shape!r} is not valid; give (rows, cols), two positive integers with at "
                    "least 2 units, e.g. (15, 15), or None for the 5*sqrt(N) rule"
                )
        _positive("sigma", self.sigma, allow_none=True)
        _positive("sigma_end", self.sigma_end)
        _positive("learning_rate", self.learning_rate)
        check_int("n_epochs", self.n_epochs, minimum=1)
        check_int("n_iterations", self.n_iterations, minimum=1, allow_none=True)
        check_int("chunk_size", self.chunk_size, minimum=1, allow_none=True)
        if self.n_jobs is not None and (not _is_int(self.n_jobs) or self.n_jobs == 0):
            raise ParameterError(
                f"n_jobs={self.n_jobs!r} is not valid; use -1 (every core), None or 1 (one thread), or k > 1"
            )
        if self.engine == "batch" and self.n_iterations is not None:
            raise ParameterError(
                "n_iterations applies to engine='minisom' only (single-row updates); the batch engine "
                "trains n_epochs full passes: set n_iterations=None"
            )
        if self.engine == "minisom" and self.decay != "asymptotic" and self.sigma_end != 1.0:
            raise ParameterError(
                f"sigma_end={self.sigma_end!r} is not available with engine='minisom': MiniSom's "
                f"{self.decay} decay always ends at sigma 1; use sigma_end=1.0 or engine='batch'"
            )

    def _validate_X(self, X, *, reset: bool) -> np.ndarray:
        """Validated 2-D float array (float32 or float64 kept as is, no copy), finite values only."""
        try:
            X = validate_data(
                self, X, reset=reset, dtype=[np.float64, np.float32], ensure_all_finite=False,
                ensure_min_samples=1,
            )
        except ValueError as exc:
            raise InputError(f"X: {exc}") from exc
        if not np.isfinite(X).all():
            bad = ~np.isfinite(X)
            rows, cols = np.nonzero(bad)
            raise InputError(
                f"X contains NaN or inf in {int(bad.any(axis=1).sum())} row(s) (first at row {rows[0]}, "
                f"column {cols[0]}); the SOM needs finite numbers: impute or drop those rows first"
            )
        return X

    # ---------------------------------------------------------------------------------- training

    def fit(self, X, y=None) -> SOM:
        """Train the map on ``X`` (rows = customers, columns = scaled features); returns ``self``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, already scaled (features on comparable scales; the SOM uses Euclidean
            distance). At least 2 rows; NaN and inf are rejected.
        y : None
            Ignored.
        """
        self.check_params()
        X = self._validate_X(X, reset=True)
        n, n_features = X.shape
        if n < 2:
            raise InputError(f"X has {n} sample(s) (rows); the SOM needs at least 2 rows to train")
        started = time.perf_counter()
        mean, cov, _ = data_moments(X)
        rng = check_random_state(self.random_state)
        start = self._start(mean, cov, n, rng)
        if self.engine == "batch":
            chunks = _row_chunks(n, self.chunk_size or _auto_chunk_size(len(_flat(start))))
            if _use_kernel(n):
                X = np.ascontiguousarray(X)  # once, not in every epoch
            with _chunk_mapper(min(_n_threads(self.n_jobs), len(chunks))) as mapper:
                self._fit_epochs(partial(_epoch_totals, X, chunks=chunks, mapper=mapper,
                                         n_threads=_n_threads(self.n_jobs)), start, n)
        else:
            weights, self.sigmas_, history = self._fit_minisom(X, start, rng)
            self.weights_ = weights
            self.history_ = np.asarray(history, dtype=np.float64)
        logger.info(
            "SOM %dx%d (%s, %s) trained on %d x %d in %.2f s: quantization error %.4f -> %.4f",
            *self.map_shape_, self.engine, self.weights_.dtype, n, n_features,
            time.perf_counter() - started, self.history_[0], self.history_[-1],
        )
        return self

    def fit_stats(self, epoch_totals, mean, cov, n_samples: int) -> SOM:
        """Train the batch map from epoch statistics supplied by a backend; returns ``self``.

        The batch engine's algorithm without the data: ``fit`` calls it with statistics computed in
        row chunks of ``X``; the Dask backend with statistics reduced over partitions (the pattern of
        ``FeatureScaler.fit_from_stats``). Same moments and settings give the same map.

        Parameters
        ----------
        epoch_totals : callable
            ``epoch_totals(weights) -> (sums, counts, sum_dist)``: :func:`epoch_stats` of
            all the training rows for the flat weights ``(units, n_features)``, summed in a fixed order
            (so the map does not depend on how the rows are spread).
        mean, cov : arrays of shape (n_features,) and (n_features, n_features)
            Moments of the training rows (:func:`data_moments`): they set the default map shape and the
            PCA initialisation.
        n_samples : int
            Rows of the training data (at least 2).
        """
        self.check_params()
        check_option("engine (fit_stats)", self.engine, ["batch"])
        if n_samples < 2:
            raise InputError(f"X has {n_samples} row(s); the SOM needs at least 2 rows to train")
        self.n_features_in_ = len(mean)
        start = self._start(mean, cov, n_samples, check_random_state(self.random_state))
        return self._fit_epochs(epoch_totals, start, n_samples)

    def _start(self, mean, cov, n, rng) -> np.ndarray:
        """Set ``map_shape_`` and ``sigma_``; the initial weights."""
        shape = tuple(int(v) for v in (self.map_shape or default_map_shape(n, cov)))
        units = shape[0] * shape[1]
        if units > n:
            warnings.warn(
                f"the {shape[0]}x{shape[1]} map has more units ({units}) than X has rows ({n}): many units "
                "will stay empty; consider map_shape=None (about 5*sqrt(N) units)",
                stacklevel=3,
            )
        self.map_shape_ = shape
        self.sigma_ = float(self.sigma if self.sigma is not None else max(shape) / 2.0)
        self._n_features_out = units
        return initial_weights(mean, cov, shape, self.init, rng)

    def _fit_epochs(self, epoch_totals, start, n) -> SOM:
        """The batch epochs, each from ``epoch_totals(weights)``; sets the fitted attributes."""
        sigmas = sigma_schedule(self.sigma_, self.sigma_end, self.n_epochs, self.decay)
        weights = start.reshape(-1, start.shape[-1]).astype(np.dtype(self.dtype))
        history = []
        with tqdm(total=len(sigmas), desc="SOM epochs", unit="epoch", disable=not self.progress) as bar:
            for sigma in sigmas:
                weights, qe = _epoch(epoch_totals, weights, n, self.map_shape_, sigma, self.neighborhood,
                                     self.topology)
                history.append(qe)
                bar.set_postfix(sigma=f"{sigma:.2f}", qe=f"{history[-1]:.4f}")
                bar.update()
        _, counts, sum_dist = epoch_totals(weights)
        history.append(sum_dist / n)
        logger.debug("batch SOM: %d empty units of %d", int((counts == 0).sum()), len(counts))
        self.weights_ = weights.reshape(*self.map_shape_, -1)
        self.sigmas_ = sigmas
        self.history_ = np.asarray(history, dtype=np.float64)
        return self

    def _fit_minisom(self, X, start, rng):
        n = len(X)
        lr_decay, sigma_decay = _MINISOM_DECAY[self.decay]
        som = _minisom(self.map_shape_, X.shape[1], self.topology, sigma=self.sigma_,
                       learning_rate=self.learning_rate, decay_function=lr_decay,
                       neighborhood_function=self.neighborhood,
                       random_seed=int(rng.randint(np.iinfo(np.int32).max)), sigma_decay_function=sigma_decay)
        som._weights = start.astype(np.float64)  # MiniSom has no public setter; its own inits differ
        if self.n_iterations is None:
            order = np.concatenate([rng.permutation(n) for _ in range(self.n_epochs)])
        else:  # MiniSom's train_random: indexes 0..T-1 modulo n, shuffled
            order = np.arange(self.n_iterations) % n
            rng.shuffle(order)
        X64 = np.asarray(X, dtype=np.float64)
        history = [self._qe_of(som._weights, X)]
        sigmas = []
        with tqdm(total=len(order), desc="MiniSom updates", unit="row", disable=not self.progress) as bar:
            for start_at in range(0, len(order), n):
                block = order[start_at : start_at + n]
                sigmas.append(_minisom_sigma(self.sigma_, start_at, len(order), self.decay))
                _minisom_updates(som, X64, block, start_at, len(order), bar)
                history.append(self._qe_of(som._weights, X))
        return som._weights.copy(), np.asarray(sigmas), history

    def _qe_of(self, weights, X) -> float:
        chunks = _row_chunks(len(X), self._chunk_size(weights))
        with _chunk_mapper(min(_n_threads(self.n_jobs), len(chunks))) as mapper:
            return _epoch_totals(X, _flat(weights), chunks=chunks, mapper=mapper,
                                 n_threads=_n_threads(self.n_jobs))[2] / len(X)

    def _chunk_size(self, weights=None) -> int:
        units = _flat(self.weights_ if weights is None else weights).shape[0]
        return self.chunk_size or _auto_chunk_size(units)

    # ---------------------------------------------------------------------------------- mapping

    def predict(self, X, *, return_distance: bool = False):
        """Flat index of each row's best-matching unit (``row * cols + col``).

        With ``return_distance=True`` also return the Euclidean distance to that unit (float64).
        """
        check_is_fitted(self)
        return self._predict(self._validate_X(X, reset=False), return_distance)

    def _predict(self, X, return_distance=False):
        codebook = _flat(self.weights_)
        best = _best_units(X, codebook, self._chunk_size(), _n_threads(self.n_jobs))[0]
        if not return_distance:
            return best
        d = _exact_sq_distances(np.asarray(X, dtype=np.float64), codebook[best].astype(np.float64))
        return best, np.sqrt(d)

    def transform(self, X) -> np.ndarray:
        """Euclidean distance of each row to every unit, shape ``(n_samples, units)``, float64.

        Computed row by row (feature by feature in float64, no BLAS product), so a row's distances
        are the same bits alone or in any batch, and ``predict`` is their argmin (lowest unit on
        exact ties) with ``return_distance`` their minimum. This is an N x units matrix: for large
        ``X`` use :meth:`predict` (best unit and its distance).
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        codebook = _flat(self.weights_).astype(np.float64)

        def one(s):
            return np.sqrt(exact_sq_distances(X[s].astype(np.float64), codebook))

        parts = _run_chunks(one, len(X), self._chunk_size(), _n_threads(self.n_jobs))
        return np.concatenate(parts) if parts else np.zeros((0, len(codebook)))

    def unit_coords(self, flat_index):
        """(row, col) arrays of flat unit indexes, as ``np.unravel_index`` with the map's shape."""
        check_is_fitted(self)
        return np.unravel_index(flat_index, self.map_shape_)

    def unit_positions(self) -> np.ndarray:
        """Position ``(x, y)`` of each unit on the plane for the map's topology (:func:`unit_positions`)."""
        check_is_fitted(self)
        return unit_positions(self.map_shape_, self.topology)

    # ---------------------------------------------------------------------------------- quality

    def quantization_error(self, X) -> float:
        """Mean Euclidean distance of the rows to their best unit (lower = prototypes fit the data
        closer; it falls with smaller final sigma and more units, so compare maps of equal size)."""
        return float(self.predict(X, return_distance=True)[1].mean())

    def topographic_error(self, X, *, neighbors: int | None = None) -> float:
        """Share of rows whose best and second-best units are not grid neighbours (0 = perfectly
        ordered map; above ~0.1 the map folds and its picture misleads).

        Parameters
        ----------
        neighbors : {8, 4} or {6} or None, default=None
            Rectangular maps: 8 (the default) counts diagonal units as neighbours, as MiniSom does on a
            rectangular grid (its units are adjacent when their distance is below 1.42); 4 is the
            stricter edge-sharing rule of the SOM Toolbox. seglib uses 8 by default so its figures
            compare with MiniSom's and the original's. Hexagonal maps: 6, the units sharing a hexagon
            edge (MiniSom's hexagonal rule, and the SOM Toolbox's). ``None`` takes the default.
        """
        check_is_fitted(self)
        neighbors = _check_neighbors(self.topology, neighbors)
        X = self._validate_X(X, reset=False)
        first, second = _best_units(X, _flat(self.weights_), self._chunk_size(), _n_threads(self.n_jobs), k=2)
        adjacent = adjacent_units(first, second, self.map_shape_, self.topology, neighbors)
        return float(1.0 - adjacent.mean()) if len(X) else float("nan")

    def hit_map(self, X) -> np.ndarray:
        """Rows won by each unit, shape ``(rows, cols)``, int64 (MiniSom's ``activation_response``)."""
        units = self.map_shape_[0] * self.map_shape_[1]
        return np.bincount(self.predict(X), minlength=units).reshape(self.map_shape_)

    def empty_unit_share(self, X) -> float:
        """Share of units that win no row of ``X``. A few percent is normal; a large share means the map
        is too big for the data or badly trained (the original left 28-34 of 225 units empty)."""
        return float((self.hit_map(X) == 0).mean())

    def explained_variance(self, X) -> float:
        """Share of the total variance of ``X`` reproduced by the prototypes:
        ``1 - sum ||x - w_bmu||^2 / sum ||x - mean(X)||^2`` (1 = every row sits on a unit)."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        _, dist = self._predict(X, return_distance=True)
        return explained_variance((dist**2).sum(), *data_moments(X)[1:])

    def u_matrix(self) -> np.ndarray:
        """U-matrix of the trained map (see the module-level :func:`u_matrix`)."""
        check_is_fitted(self)
        return u_matrix(self.weights_, self.topology)

    def component_planes(self) -> np.ndarray:
        """Weights per feature, shape ``(n_features, rows, cols)``: how each feature varies over the map."""
        check_is_fitted(self)
        return np.moveaxis(self.weights_, -1, 0).copy()

    # ---------------------------------------------------------------------------------- files

    def save(self, path) -> Path:
        """Write ``<path>/som.json`` (settings, shapes, versions) and ``<path>/som.npz`` (weights,
        history, sigmas); no pickle. Returns the folder. Files are written atomically and are
        byte-identical for identical models."""
        from seglib import __version__

        check_is_fitted(self)
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        params = self.get_params()
        if not (params["random_state"] is None or isinstance(params["random_state"], (int, np.integer))):
            logger.warning("random_state is not an int: saved as null (the weights are saved exactly)")
            params["random_state"] = None
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}
        params = json.loads(json.dumps(params, default=lambda v: v.item()))  # numpy scalars -> Python
        arrays = {"weights": self.weights_, "history": self.history_, "sigmas": np.asarray(self.sigmas_)}
        write_npz(folder / "som.npz", arrays)
        meta = {
            "format": "seglib.SOM",
            "format_version": FORMAT_VERSION,
            "seglib_version": __version__,
            "params": params,
            "map_shape": list(self.map_shape_),
            "n_features_in": int(self.n_features_in_),
            "feature_names_in": [str(f) for f in getattr(self, "feature_names_in_", [])] or None,
            "dtype": str(self.weights_.dtype),
            "sigma": self.sigma_,
            "arrays": {k: list(np.shape(v)) for k, v in arrays.items()},
        }
        write_json(folder / "som.json", meta)
        return folder

    @classmethod
    def load(cls, path) -> SOM:
        """Read a model written by :meth:`save` (``allow_pickle=False``); raises
        :class:`~seglib.errors.ModelFormatError` for missing, corrupted, tampered or newer files."""
        from seglib import __version__

        folder = Path(path)
        meta_path, npz_path = folder / "som.json", folder / "som.npz"
        for p in (meta_path, npz_path):
            if not p.is_file():
                raise ModelFormatError(f"{p}: missing; a saved SOM is a folder with som.json and som.npz")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"{meta_path}: not valid JSON ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != "seglib.SOM":
            raise ModelFormatError(f"{meta_path}: not a seglib SOM file (no \"format\": \"seglib.SOM\")")
        version = meta.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ModelFormatError(f"{meta_path}: format_version missing or not an integer")
        if version > FORMAT_VERSION:
            raise ModelFormatError(
                f"{meta_path}: format_version {version} was written by a newer seglib "
                f"({meta.get('seglib_version')}); this seglib ({__version__}) reads up to {FORMAT_VERSION}: "
                "upgrade seglib"
            )
        try:
            params = dict(meta["params"])
            if isinstance(params.get("map_shape"), list):
                params["map_shape"] = tuple(params["map_shape"])
            som = cls(**params)
            som.check_params()
            shape = tuple(int(v) for v in meta["map_shape"])
            n_features = int(meta["n_features_in"])
            names = meta.get("feature_names_in")
            sigma = float(meta["sigma"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{meta_path}: invalid or incomplete settings ({exc})") from exc
        arrays = read_npz(npz_path, _NPZ_ARRAYS, what="seglib SOM arrays")
        weights = arrays["weights"]
        if weights.shape != (*shape, n_features) or weights.dtype.kind != "f":
            raise ModelFormatError(
                f"{npz_path}: weights have shape {weights.shape} and dtype {weights.dtype}; som.json "
                f"expects floats of shape {(*shape, n_features)}"
            )
        for k in ("history", "sigmas"):
            if arrays[k].ndim != 1 or arrays[k].dtype.kind != "f":
                raise ModelFormatError(f"{npz_path}: {k} must be a 1-D float array, got {arrays[k].shape}")
        if names is not None and len(names) != n_features:
            raise ModelFormatError(f"{meta_path}: {len(names)} feature names for {n_features} features")
        som.weights_, som.history_, som.sigmas_ = weights, arrays["history"], arrays["sigmas"]
        som.map_shape_, som.sigma_, som.n_features_in_ = shape, sigma, n_features
        som._n_features_out = shape[0] * shape[1]
        if names is not None:
            som.feature_names_in_ = np.asarray(names, dtype=object)
        return som


def _minisom(map_shape, n_features, topology, **kwargs):
    """A MiniSom of ``map_shape`` whose unit positions are seglib's (:func:`unit_positions`).

    MiniSom's hexagonal lattice shifts alternate *columns* (which ones depends on the parity of the
    column count); seglib shifts odd *rows*, the usual picture. The neighbourhood function and the
    topographic error of MiniSom only read the positions ``_xx``/``_yy``, so setting them to seglib's
    makes MiniSom train on the same lattice as the batch engine (a test checks MiniSom's neighbourhood
    against :func:`neighborhood_matrix` and, on an odd number of rows, MiniSom's own transposed
    lattice against seglib's). Rectangular maps are left as MiniSom builds them (the same positions).
    """
    from minisom import MiniSom

    rows, cols = (int(v) for v in map_shape)
    som = MiniSom(rows, cols, n_features, topology=topology, **kwargs)
    if topology == "hexagonal":
        pos = unit_positions((rows, cols), topology)
        # MiniSom's _xx.T[i, j] is the first coordinate of unit (i, j); any plane coordinates will do
        som._xx = pos[:, 1].reshape(rows, cols).T.copy()
        som._yy = pos[:, 0].reshape(rows, cols).T.copy()
    return som


def _minisom_updates(som, X64, order, t0, total, bar) -> None:
    """MiniSom's own training step (the body of ``MiniSom.train``) over rows ``order``, at times t0..."""
    for i, row in enumerate(order):
        x = X64[row]
        som.update(x, som.winner(x), t0 + i, total)
        if (i + 1) % 1024 == 0:
            bar.update(1024)
    bar.update(len(order) % 1024)


def _minisom_sigma(sigma, t, total, decay) -> float:
    """MiniSom's sigma at update ``t`` of ``total`` (inverse_decay_to_one, linear_decay_to_one,
    asymptotic_decay)."""
    if decay == "inverse":
        return sigma / (1.0 + t * (sigma - 1.0) / total)
    return sigma + t * (1.0 - sigma) / total if decay == "linear" else sigma / (1.0 + t / (total / 2.0))


def _positive(name, value, *, allow_none=False) -> None:
    if value is None and allow_none:
        return
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not number or not np.isfinite(value) or value <= 0:
        raise ParameterError(f"{name}={value!r} is not valid; expected a number > 0")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def quality_table(soms: dict, X) -> pd.DataFrame:
    """Quality figures of fitted maps on the same data, one column per map.

    Rows: quantization error (mean distance to the best unit; lower fits closer), topographic error
    (share of rows whose two best units are not neighbours; below about 0.05 is a well-ordered map),
    share of units that win no row, and explained variance.

    Parameters
    ----------
    soms : dict of str -> SOM
        Fitted maps by label, e.g. ``{"batch": som, "original setting": SOM.original().fit(X)}``.
    X : array-like of shape (n_samples, n_features)
    """
    rows = {
        "quantization error": lambda s: s.quantization_error(X),
        "topographic error": lambda s: s.topographic_error(X),
        "units without customers": lambda s: s.empty_unit_share(X),
        "explained variance": lambda s: s.explained_variance(X),
    }
    table = {label: {name: float(f(som)) for name, f in rows.items()} for label, som in soms.items()}
    return pd.DataFrame(table)
