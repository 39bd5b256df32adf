"""The values of a simulated image, row block by row block, from generators seeded by
``(seed, amplifier, row)``."""

from typing import NamedTuple

import numpy as np
from scipy import special

from .truth import STORAGE

# one random stream per purpose, so that changing one does not reshuffle the others
_PIXEL_STREAM, _TRACK_STREAM, _DRIFT_STREAM = 0, 1, 2
_XRAY_STREAM, _HOT_COLUMN_STREAM, _HOT_CHARGE_STREAM = 3, 4, 5
#: electrons of an Fe-55 X-ray (5.9 keV at 3.75 eV per pair) and their Fano factor
XRAY_ELECTRONS, _FANO = 5900 / 3.75, 0.128
#: diffusion of an X-ray's charge: Gaussian sigma, pixels, drawn uniformly in this range
XRAY_SIGMA = (0.2, 1.2)
#: half-width of the pixel window an X-ray's electrons land in: at least 5 of the largest sigma
_XRAY_HALF_WIDTH = 6


class SimulatedPixels(NamedTuple):
    """The pixels of a simulated image, before rounding and storage.

    Attributes
    ----------
    values : numpy.ndarray
        ``(namps, nrows, ncols, nskips)`` float64 values, in ADU.
    electrons : numpy.ndarray
        ``(namps, nrows, ncols)`` int64 electrons of each pixel as its first sample sees them
        (dark current, tracks, X-rays and hot columns, before any charge loss).
    """

    values: np.ndarray
    electrons: np.ndarray


def simulate_pixels(truth):
    """All pixel values of a simulated image, in memory.

    Parameters
    ----------
    truth : Truth

    Returns
    -------
    SimulatedPixels
        The values of every sample (float, before rounding) and the electrons of every pixel.
        A raw file written by :func:`write_image` holds these values rounded; an averaged one
        their mean over samples.
    """
    values = np.empty((truth.namps, truth.nrows, truth.ncols, truth.nskips))
    electrons = np.empty((truth.namps, truth.nrows, truth.ncols), np.int64)
    for amp in range(truth.namps):
        AmpSimulation(truth, amp).rows(0, truth.nrows, values[amp], electrons[amp])
    return SimulatedPixels(values, electrons)


def cluster_fraction(truth):
    """The fraction of pixels that hold charge of tracks, blobs or X-rays.

    Dark current and hot columns do not count. Cheap: the pixels are not simulated.

    Parameters
    ----------
    truth : Truth

    Returns
    -------
    float
        Over every amplifier, between 0 and 1.
    """
    hit = sum(len(AmpSimulation(truth, amp).cluster_rows) for amp in range(truth.namps))
    return hit / (truth.namps * truth.nrows * truth.ncols)




class AmpSimulation:
    """The random pixels of one amplifier, generated on demand for any range of rows."""

    def __init__(self, truth, amp):
        self.truth = truth
        self.amp = amp
        self.baseline = truth.pedestal + self._drift()
        self.cluster_rows, self.cluster_cols, self.cluster_electrons = self._clusters()
        self.hot_columns = np.sort(
            self._rng(_HOT_COLUMN_STREAM).choice(truth.ncols, truth.hot_columns, replace=False)
        )

    def _rng(self, stream, row=0):
        return np.random.default_rng([self.truth.seed, stream, self.amp, row])

    def _drift(self):
        truth = self.truth
        if truth.drift_kind == "linear":
            return truth.drift * np.arange(truth.nrows)
        steps = self._rng(_DRIFT_STREAM).normal(0.0, truth.drift, truth.nrows - 1)
        return np.concatenate([[0.0], np.cumsum(steps)])

    def _tracks(self):
        """Electrons of tracks and blobs: rows, columns and electrons of every hit (a pixel
        may repeat, some are outside the image)."""
        truth = self.truth
        rng = self._rng(_TRACK_STREAM)
        ys, xs, charges = [], [], []
        for index in range(truth.tracks):
            centre = rng.uniform((0, 0), (truth.nrows, truth.ncols))
            if index % 2 == 0:  # a straight track (a muon, an electron): charge along a segment
                length = rng.uniform(3.0, max(4.0, 0.5 * min(truth.nrows, truth.ncols)))
                angle = rng.uniform(0.0, np.pi)
                step = 0.1
                t = np.arange(0.0, length, step)
                points = centre + t[:, None] * (np.sin(angle), np.cos(angle))
                charge = rng.poisson(truth.track_charge * step, len(t))
            else:  # a blob (an X-ray): electrons spread by diffusion around a point
                electrons = rng.poisson(10 * truth.track_charge)
                points = rng.normal(centre, 1.0, (electrons, 2))
                charge = np.ones(electrons, np.int64)
            ys.append(points[:, 0])
            xs.append(points[:, 1])
            charges.append(charge)
        if not charges:
            return _no_hits()
        rows = np.floor(np.concatenate(ys)).astype(np.int64)
        cols = np.floor(np.concatenate(xs)).astype(np.int64)
        return rows, cols, np.concatenate(charges)

    def _xrays(self):
        """Electrons of the X-ray clusters: rows, columns and electrons of every pixel of
        each X-ray's window (zeros included, some outside the image)."""
        truth = self.truth
        if not truth.xrays:
            return _no_hits()
        rng = self._rng(_XRAY_STREAM)
        centres = rng.uniform((0, 0), (truth.nrows, truth.ncols), (truth.xrays, 2))
        sigmas = rng.uniform(*XRAY_SIGMA, truth.xrays)
        electrons = np.maximum(
            0, np.rint(rng.normal(XRAY_ELECTRONS, np.sqrt(_FANO * XRAY_ELECTRONS), truth.xrays))
        ).astype(np.int64)
        # each electron lands in a pixel with the Gaussian's integral over it: the counts of
        # a window of pixels are multinomial (the few beyond the window are dropped)
        offsets = np.arange(-_XRAY_HALF_WIDTH, _XRAY_HALF_WIDTH + 1)
        first = np.floor(centres).astype(np.int64)[:, :, None] + offsets  # (xray, axis, pixel)
        edges = np.concatenate([first, first[..., -1:] + 1], axis=-1)
        cdf = special.ndtr((edges - centres[:, :, None]) / sigmas[:, None, None])
        along_rows, along_cols = np.diff(cdf, axis=-1).transpose(1, 0, 2)
        pixel_probability = (along_rows[:, :, None] * along_cols[:, None, :]).reshape(
            truth.xrays, -1
        )
        beyond = np.clip(1 - pixel_probability.sum(axis=1, keepdims=True), 0, 1)
        counts = rng.multinomial(electrons, np.concatenate([pixel_probability, beyond], 1))
        rows = np.repeat(first[:, 0], len(offsets), axis=1).ravel()
        cols = np.tile(first[:, 1], len(offsets)).ravel()
        return rows, cols, counts[:, :-1].ravel()

    def _clusters(self):
        """Pixels hit by tracks, blobs and X-rays: rows, columns and electrons, by row."""
        truth = self.truth
        rows, cols, charge = (np.concatenate(parts) for parts in zip(
            self._tracks(), self._xrays(), strict=True))
        inside = (rows >= 0) & (rows < truth.nrows) & (cols >= 0) & (cols < truth.ncols)
        inside &= charge > 0
        pixels, where = np.unique(rows[inside] * truth.ncols + cols[inside], return_inverse=True)
        electrons = np.bincount(where, weights=charge[inside]).astype(np.int64)
        return pixels // truth.ncols, pixels % truth.ncols, electrons

    def rows(self, start, stop, values, electrons):
        """Fill ``values (stop-start, ncols, nskips)`` and ``electrons (stop-start, ncols)``."""
        truth = self.truth
        first, last = np.searchsorted(self.cluster_rows, [start, stop])
        noise = np.empty(values.shape, np.float32)
        for index, row in enumerate(range(start, stop)):
            rng = self._rng(_PIXEL_STREAM, row)
            electrons[index] = rng.poisson(truth.dark_current, truth.ncols)
            rng.standard_normal(out=noise[index], dtype=np.float32)
            on_row = slice(first, last)
            hit = self.cluster_rows[on_row] == row
            electrons[index, self.cluster_cols[on_row][hit]] += self.cluster_electrons[on_row][hit]
            if truth.hot_columns and truth.hot_column_current:
                electrons[index, self.hot_columns] += self._rng(_HOT_CHARGE_STREAM, row).poisson(
                    truth.hot_column_current, truth.hot_columns
                )
            values[index] = 0.0
            if truth.charge_loss > 0:
                # the full charge is added below with the baseline; here what later samples
                # miss of it (zero or negative)
                charged = np.flatnonzero(electrons[index])
                seen = _charge_seen(rng, electrons[index, charged], truth.nskips, truth.charge_loss)
                lost = seen - electrons[index, charged, None]
                values[index, charged] = truth.polarity * truth.gain * lost
        values += noise * np.float32(truth.read_noise)
        values += (self.baseline[start:stop, None] + truth.polarity * truth.gain * electrons)[
            ..., None
        ]


def _no_hits():
    """Rows, columns and electrons of no pixel."""
    return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)


def _charge_seen(rng, electrons, nskips, loss):
    """Electrons seen by each sample, ``(len(electrons), nskips)``, with charge loss.

    Each electron is lost at each transfer with probability ``loss``: the number of samples
    that see it is geometric, so that sample ``s`` sees the electrons whose count exceeds ``s``.
    """
    seen_by = np.minimum(rng.geometric(loss, electrons.sum()), nskips)
    pixel = np.repeat(np.arange(len(electrons)), electrons)
    counts = np.bincount(pixel * (nskips + 1) + seen_by, minlength=len(electrons) * (nskips + 1))
    # electrons seen by at least s + 1 samples, for s = 0 .. nskips-1
    at_least = np.cumsum(counts.reshape(len(electrons), nskips + 1)[:, ::-1], axis=1)[:, ::-1]
    return at_least[:, 1:]


def stored_values(values, truth):
    """The values a file holds for ``values (rows, ncols, nskips)``: ``(rows, NAXIS1)`` float64.

    Raw integers are rounded and saturate at the limits of their type, as an ADC does.
    """
    if truth.averaged:
        return values.mean(axis=-1)
    values = values.reshape(len(values), -1)
    disk_type, _, bzero = STORAGE[truth.dtype]
    if disk_type.startswith(">f"):
        return values
    limits = np.iinfo(disk_type)
    return np.clip(np.rint(values), limits.min + bzero, limits.max + bzero)


