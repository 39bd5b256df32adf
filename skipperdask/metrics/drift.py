"""Baseline drift along rows, measured on the average image and corrected.

The pedestal of a skipper CCD moves during a readout (temperature, the video chain): a drift
along rows smears every single-electron peak by the same offset, which widens them (σ is
biased by 20 % for a drift of 0.6 gain over the image at σ/g = 0.25) long before the peaks'
shape gives it away to the fit's acceptance test. So it is measured directly, on blocks of
consecutive rows, from the pixels outside clusters:

- with resolved peaks, from the phase of the characteristic function at the gain's
  frequency, φ = Σ exp(2πi (x - x0)/g): every peak x0 + g·k turns it by the same angle, so
  the charge does not bias it (as a block's mean or median would be, by λ) and no pixel is
  cut away; its noise is g / (2π |φ| √(2n)) for n pixels;
- without a gain, or when the peaks overlap so much that the phase is lost in the noise,
  from the lower quartile of the block's pixels: a drift moves every quantile by its own
  amount, and the dark current, the same in every block, does not change the blocks'
  differences; its noise is √(p(1 - p))/density, 1.4-3 σ/√n.

Whichever of the two is less noisy on the image is used.

Blocks hold enough rows for a level to 0.1σ. The blocks' levels are compared with their
errors: when their χ² stands ``DRIFT_Z`` standard deviations above its mean and their rms
(less the noise) exceeds ``DRIFT_NOISE_FRACTION`` σ, each row's level (interpolated between
blocks, rounded to the data's quantum so that digitised values stay on their grid) is
subtracted and the image is fitted again; the catalogue says so (``baselineDrift``, the
levels' rms in ADU, ``baselineCorrected`` = 1). If a drift is still found after the
correction, σ is reported missing with a reason that names ``--baseline row-median``.

``--baseline row-median`` subtracts each row's median in the pixel pass instead (right when
most pixels are empty); after it, no drift is left to find.
"""

import math
from dataclasses import dataclass

import numba
import numpy as np

#: a drift smaller than this fraction of σ (rms) widens σ by less than 0.5 %: left alone
DRIFT_NOISE_FRACTION = 0.1
#: significance of the blocks' spread, in standard deviations of its χ²
DRIFT_Z = 5.0
#: a block's level is measured to this fraction of σ
LEVEL_PRECISION = 0.1
#: corrections at most (each one measured on the image the last one left)
DRIFT_PASSES = 4
#: the quantile a block's level is read from without a phase (the lower quartile: within
#: the zero peak unless λ ≳ 1)
LEVEL_QUANTILE = 0.25
#: pixels the levels are measured on, at most (every k-th column beyond)
MAX_PIXELS = 30_000
#: pixels sampled for the quantile's noise
NOISE_SAMPLE = 20_000


@dataclass(frozen=True)
class RowLevels:
    """The zero level of each row, relative to the image's mean level, and whether it drifts.

    Attributes
    ----------
    levels : ndarray (rows,)
        Offset of each row's zero level, ADU, interpolated between blocks of rows.
    rms : float
        The blocks' rms about their mean, ADU, less their noise (NaN: not measurable).
    drifts : bool
        Whether the spread is significant and large enough to correct.
    """

    levels: np.ndarray
    rms: float
    drifts: bool


def row_levels(average, kept, *, x0, gain, sigma):
    """The rows' zero levels of an average image (module docstring).

    Parameters
    ----------
    average : ndarray (rows, cols)
        Charge raising the value.
    kept : ndarray of bool (rows, cols)
        The pixels to use (outside clusters, finite).
    x0, sigma : float
        The fitted zero-electron peak and noise.
    gain : float
        The fitted gain, or NaN when there is none.

    Returns
    -------
    RowLevels
    """
    rows = average.shape[0]
    # a row's level needs a few hundred pixels, not thousands: every k-th column of a wide
    # image (the drift is along rows; the blocks grow to hold enough pixels)
    step = max(int(kept.sum()) // MAX_PIXELS, 1)
    average, kept = average[:, ::step], kept[:, ::step]
    offsets = np.where(kept, average - x0, 0.0)
    count = kept.sum(axis=1)
    total = max(int(count.sum()), 1)
    # the quantile's noise per pixel, √(p(1 - p)) over the density there (from a sample)
    sample = offsets[kept][:: max(total // NOISE_SAMPLE, 1)]
    where = np.quantile(sample, LEVEL_QUANTILE) if sample.size > 1 else 0.0
    density = np.count_nonzero(np.abs(sample - where) < 0.25 * sigma) / (
        0.5 * sigma * max(sample.size, 1))
    quantile_noise = np.sqrt(LEVEL_QUANTILE * (1 - LEVEL_QUANTILE)) / max(density, 1e-300)
    phase_noise = np.inf
    if np.isfinite(gain):
        cosines, sines = _row_phasors(offsets, kept, 2 * np.pi / gain)
        # |φ| = exp(-2π²σ²/g²), over the pixels used
        contrast = math.hypot(cosines.sum(), sines.sum()) / total
        if contrast > 0:
            phase_noise = gain / (2 * np.pi * contrast * np.sqrt(2))
    noise = min(phase_noise, quantile_noise)
    # blocks of rows with enough pixels for a level to LEVEL_PRECISION σ
    bounds = _blocks(count, (noise / (LEVEL_PRECISION * sigma)) ** 2)
    counts = np.add.reduceat(count, bounds[:-1])
    errors = noise / np.sqrt(np.maximum(counts, 1))
    if phase_noise <= quantile_noise:
        per_row = cosines + 1j * sines
        sums = np.add.reduceat(per_row, bounds[:-1])
        reference = np.angle(per_row.sum())
        levels = np.angle(sums * np.exp(-1j * reference)) * gain / (2 * np.pi)
    else:
        # each row's lower quartile (every row at once: a sort along rows), averaged over
        # the block's rows by their pixels
        ordered = np.sort(np.where(kept, offsets, np.inf), axis=1)
        index = np.maximum(np.floor(LEVEL_QUANTILE * (count - 1)), 0).astype(np.int64)
        quartile = np.take_along_axis(ordered, index[:, None], axis=1)[:, 0]
        weighted = np.where(count > 0, quartile, 0.0) * count  # rows without pixels: inf
        levels = np.add.reduceat(weighted, bounds[:-1]) / np.maximum(counts, 1)
    usable = counts > 0
    if np.count_nonzero(usable) < 3:
        return RowLevels(np.zeros(rows), np.nan, False)
    levels, errors = levels[usable], errors[usable]
    centres = 0.5 * (bounds[:-1] + bounds[1:] - 1)[usable]
    mean = np.average(levels, weights=errors**-2)
    chi2, ndof = float(np.sum(((levels - mean) / errors) ** 2)), levels.size - 1
    rms = float(np.sqrt(max(np.mean((levels - mean) ** 2) - np.mean(errors**2), 0.0)))
    drifts = chi2 > ndof + DRIFT_Z * np.sqrt(2 * ndof) and rms > DRIFT_NOISE_FRACTION * sigma
    return RowLevels(np.interp(np.arange(rows), centres, levels - mean), rms, bool(drifts))


@numba.njit(cache=True, nogil=True)
def _row_phasors(offsets, kept, omega):
    """Each row's ``Σ cos(ω x)`` and ``Σ sin(ω x)`` over its ``kept`` offsets x, in one pass
    (numpy's angles, cosines, sines and masks, and the contrast's own exponentials, took 1.5
    of a DAMIC-M amplifier's 3.2 ms)."""
    rows, cols = offsets.shape
    cosines, sines = np.zeros(rows), np.zeros(rows)
    for r in range(rows):
        for c in range(cols):
            if kept[r, c]:
                angle = omega * offsets[r, c]
                cosines[r] += math.cos(angle)
                sines[r] += math.sin(angle)
    return cosines, sines


def _blocks(count, needed):
    """Bounds of blocks of consecutive rows holding at least ``needed`` pixels each (the
    last one joined to the one before when short)."""
    cumulative = np.cumsum(count)
    total = cumulative[-1] if cumulative.size else 0
    nblocks = max(int(total // max(needed, 1.0)), 1)
    # row where each block's share of the pixels is reached
    targets = total * np.arange(1, nblocks) / nblocks
    inner = np.searchsorted(cumulative, targets, side="left") + 1
    return np.unique(np.r_[0, inner, count.size])


def remove_row_drift(average, kept, *, x0, gain, sigma, quantum):
    """The average image with its rows' drift removed, and the drift found.

    Parameters
    ----------
    average, kept, x0, gain, sigma
        As :func:`row_levels`.
    quantum : float
        The step of the values (1/nskips for averages of digitised samples; 0 for none):
        corrections are rounded to it, so that the values stay on their grid. Without one,
        the corrected values are rounded to float32 (10⁻⁷ of the value, far below any
        noise): on float32's grid their distribution is counted instead of sorted.

    Returns
    -------
    (ndarray or None, RowLevels)
        The corrected image (None when there is no drift to remove) and the rows' levels
        of the image as given.
    """
    found = row_levels(average, kept, x0=x0, gain=gain, sigma=sigma)
    if not found.drifts:
        return None, found
    # measure again on the corrected image, a few times: a level between blocks is
    # interpolated, and a weak drift may hide at first behind a strong one
    image, levels, total = average, found, np.zeros(average.shape[0])
    for _ in range(DRIFT_PASSES):
        shift = levels.levels
        if quantum > 0:
            shift = np.round(shift / quantum) * quantum
        if not np.any(shift):
            break
        total = total + shift
        image = average - total[:, None]
        if not quantum > 0:
            image = image.astype(np.float32).astype(np.float64)
        levels = row_levels(image, kept, x0=x0, gain=gain, sigma=sigma)
        if not levels.drifts:
            break
    return image, found
