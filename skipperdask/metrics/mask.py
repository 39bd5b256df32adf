"""Cluster masking: the pixels the Gaussian-smeared Poisson fit must not see.

Tracks, X-ray clusters and hot columns hold charge that is not dark current: fitted with the
rest, they raise λ (a track's edge pixels hold 1-3 e⁻, exactly where dark current lies) and
distort the peaks' heights until the model is rejected. As a DAMIC-M dark-current analysis
does, the fit therefore uses the pixels outside clusters. On the average image, in electrons
q = (value - x0)/g from a first fit:

1. **Seeds**: pixels with q ≥ k_seed - ½, where k_seed is the smallest charge that dark
   current (Poisson λ) gives to fewer than one pixel of the image, plus one, and at least
   ``seed_electrons`` (default 4: clearly above the one- and two-electron range).
2. **Clusters**: seeds grown (8-connected) through pixels with q ≥ k_grow - ½, k_grow the
   smallest charge dark current gives to fewer than 1 % of the pixels, plus one, and at
   least 2: a cluster's diffused charge, down to where dark current takes over.
3. **Halo**: every pixel within ``halo`` pixels (default 2, a square) of a cluster: the
   charge diffused beyond the grown cluster (tails of 0.1-1 e⁻ at 2-3 pixels from an
   Fe-55 cluster) and a track's edges.
4. **Hot columns and rows**: a column (row) whose mean charge outside the clusters stands
   more than ``hot_threshold`` times max(its Poisson standard error, the robust spread of
   all columns) above the median column: masked whole.

The thresholds follow λ, so that dark current itself is never masked, whatever its level.

When the first fit finds no peaks to count electrons with (tracks and clusters fill so much
of the image that they swamp them), :func:`bright_areas` masks the obvious first, without a
gain: pixels whose 3×3 neighbourhood's mean stands 6 standard deviations above that of the
darker half of the image (charge spread over neighbours is a cluster; dark current is not
correlated between neighbours), with the halo. The fit on the rest gives the electrons.
``tailRatio`` still counts every pixel: it measures what lies beyond the noise, clusters
included. The mask is computed on the whole average image of an amplifier, after the row
chunks are combined, so it does not depend on the chunking or the number of workers.
"""

from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage, stats

from ..fitting.poisson import poisson_isf

#: defaults of the rule (module docstring); ``skipperdask.yaml`` holds the user's settings
SEED_ELECTRONS = 4
HALO = 2
HOT_THRESHOLD = 5.0
# the standard normal's quantiles that turn the dark areas' quantiles into a spread
_NORMAL_QUARTILE, _NORMAL_5_PERCENT = stats.norm.ppf([0.25, 0.05])


@dataclass(frozen=True)
class ClusterMask:
    """The masked pixels of an amplifier image and what they are.

    Attributes
    ----------
    masked : ndarray of bool (rows, cols)
    clusters : int
        Connected clusters (before the halo).
    hot_columns, hot_rows : ndarray of int
        Indices of the columns and rows masked whole.
    """

    masked: np.ndarray
    clusters: int
    hot_columns: np.ndarray
    hot_rows: np.ndarray

    @property
    def fraction(self):
        """Fraction of the pixels masked."""
        return float(self.masked.mean()) if self.masked.size else 0.0

    @classmethod
    def empty(cls, shape):
        return cls(np.zeros(shape, bool), 0, np.zeros(0, int), np.zeros(0, int))


def charge_thresholds(npixels, lam, seed_electrons=SEED_ELECTRONS):
    """(k_seed, k_grow) in electrons for an image of ``npixels`` with dark current ``lam``."""
    lam = max(float(lam), 0.0)
    seed = poisson_isf(1.0 / max(npixels, 1), lam) + 1 if lam > 0 else 1
    grow = poisson_isf(0.01, lam) + 1 if lam > 0 else 1
    return max(seed, seed_electrons), max(grow, 2)


def cluster_mask(average, *, x0, gain, lam, sigma, seed_electrons=SEED_ELECTRONS, halo=HALO,
                 hot_threshold=HOT_THRESHOLD):
    """The cluster mask of one amplifier's average image (rule in the module docstring).

    Parameters
    ----------
    average : ndarray (rows, cols)
        The average image, charge raising the value (NaN pixels are never masked).
    x0, gain, lam, sigma : float
        Zero-electron level (ADU), ADU per electron, dark current (e⁻/pixel) and noise (ADU)
        from a first fit.
    seed_electrons : int
        Smallest seed threshold, e⁻.
    halo : int
        Pixels added around each cluster.
    hot_threshold : float
        Standard deviations above the median column (row) for a hot column (row).

    Returns
    -------
    ClusterMask
    """
    # thresholds in ADU and sums over lines: no image-sized temporary of floats (on
    # images of millions of pixels, fresh memory costs more than the arithmetic)
    average = np.asarray(average, dtype=float)
    finite = np.isfinite(average)
    k_seed, k_grow = charge_thresholds(int(finite.sum()), lam, seed_electrons)
    with np.errstate(invalid="ignore"):
        seeds = average >= x0 + (k_seed - 0.5) * gain
        grown = average >= x0 + (k_grow - 0.5) * gain
    clusters = 0
    masked = np.zeros(average.shape, bool)
    if seeds.any():
        labels, count = ndimage.label(grown, structure=np.ones((3, 3), bool))
        seeded = np.zeros(count + 1, bool)
        seeded[labels[seeds]] = True
        clusters = int(seeded.sum())
        masked = _grown(seeded[labels], halo)
    noise = (sigma / gain) ** 2 + max(lam, 0.0)  # variance of one pixel's charge, e⁻²
    kept = finite & ~masked
    hot_columns = _hot_lines(average, kept, x0, gain, noise, hot_threshold, axis=0)
    hot_rows = _hot_lines(average, kept, x0, gain, noise, hot_threshold, axis=1)
    masked[:, hot_columns] = True
    masked[hot_rows, :] = True
    return ClusterMask(masked & finite, clusters, hot_columns, hot_rows)


def _grown(masked, halo):
    """``masked`` grown by ``halo`` pixels in rows and columns (a square of side
    2·halo + 1, as a maximum filter; shifted ORs are twice as fast on booleans)."""
    for axis in (0, 1):
        source, masked = masked, masked.copy()
        for shift in range(1, halo + 1):
            ahead = (slice(None),) * axis + (slice(shift, None),)
            behind = (slice(None),) * axis + (slice(None, -shift),)
            masked[ahead] |= source[behind]
            masked[behind] |= source[ahead]
    return masked


def _hot_lines(average, kept, x0, gain, variance, threshold, axis):
    """Indices of the columns (``axis=0``) or rows (``axis=1``) whose mean charge (e⁻) over
    the ``kept`` pixels stands ``threshold`` times max(standard error, robust spread) above
    the median line's."""
    count = kept.sum(axis=axis)
    if np.count_nonzero(count) < 3:
        return np.zeros(0, int)
    total = np.sum(average, axis=axis, where=kept)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (total / count - x0) / gain
    valid = count > 0
    median = np.median(mean[valid])
    spread = 1.4826 * np.median(np.abs(mean[valid] - median))
    with np.errstate(divide="ignore"):
        error = np.sqrt(variance / np.maximum(count, 1))
    hot = valid & (mean - median > threshold * np.maximum(error, spread))
    return np.flatnonzero(hot)


#: a 3×3 mean this many of its standard deviations above the dark areas' is a cluster
BRIGHT_THRESHOLD = 6.0
#: pixels sampled for the dark areas' level and spread
BRIGHT_SAMPLE = 100_000


def bright_areas(average, *, halo=HALO):
    """The pixels in and around obvious clusters, found without a gain (module docstring).

    Parameters
    ----------
    average : ndarray (rows, cols)
        Charge raising the value.
    halo : int

    Returns
    -------
    ndarray of bool (rows, cols)
    """
    average = np.ascontiguousarray(average, dtype=float)
    finite = np.isfinite(average)
    if not finite.any():
        return np.zeros(average.shape, bool)
    fill = float(np.median(average[finite])) if not finite.all() else 0.0
    step = max(average.size // BRIGHT_SAMPLE, 1)
    sample = _local_means_at(average, fill, np.arange(0, average.size, step))
    # the dark areas from the lower quantiles: clusters may cover half the image
    low, quartile = np.quantile(sample, [0.05, 0.25])
    spread = (quartile - low) / (_NORMAL_QUARTILE - _NORMAL_5_PERCENT)
    if not spread > 0:
        return np.zeros(average.shape, bool)
    level = quartile - _NORMAL_QUARTILE * spread
    bright = _local_means_above(average, fill, level + BRIGHT_THRESHOLD * spread)
    # the 3×3 mean already reaches one pixel beyond a cluster
    return _grown(bright, halo) & finite


@numba.njit(cache=True, nogil=True)
def _local_mean(image, fill, row, col):
    """Mean of the 3×3 neighbourhood of a pixel, edges repeated (as scipy's
    ``uniform_filter(mode="nearest")``), non-finite values counted as ``fill``."""
    rows, cols = image.shape
    total = 0.0
    for r in range(row - 1, row + 2):
        r = min(max(r, 0), rows - 1)
        for c in range(col - 1, col + 2):
            value = image[r, min(max(c, 0), cols - 1)]
            total += value if np.isfinite(value) else fill
    return total / 9.0


@numba.njit(cache=True, nogil=True)
def _local_means_at(image, fill, flat_indices):
    """The 3×3 means at these pixels (flat indices)."""
    cols = image.shape[1]
    means = np.empty(flat_indices.size)
    for i, index in enumerate(flat_indices):
        means[i] = _local_mean(image, fill, index // cols, index % cols)
    return means


@numba.njit(cache=True, nogil=True)
def _local_means_above(image, fill, cut):
    """Whether each pixel's 3×3 mean is above ``cut``: one pass, no image of means (on
    millions of pixels fresh memory costs more than the sums)."""
    rows, cols = image.shape
    above = np.zeros((rows, cols), np.bool_)
    for row in range(rows):
        for col in range(cols):
            above[row, col] = _local_mean(image, fill, row, col) > cut
    return above
