"""Simulated skipper-CCD images whose truth is known.

The physics (SPEC §1): every pixel's charge is measured ``nskips`` times, non-destructively.
For amplifier ``a``, row ``r``, column ``c`` and sample ``s`` the stored value is::

    value = pedestal + drift(r) + polarity * gain * q_s(r, c) + noise_s(r, c)

- ``q_0(r, c)`` electrons: Poisson(``dark_current``), plus the charge of tracks, blobs and
  X-ray clusters, plus Poisson(``hot_column_current``) in the hot columns;
- ``q_s``: each electron is lost with probability ``charge_loss`` at every transfer between
  two samples, so later samples see less charge (``q_s ~ Binomial(q_{s-1}, 1 - charge_loss)``);
- ``noise_s``: Normal(0, ``read_noise``), independent for every sample, in ADU;
- ``drift(r)``: a baseline that drifts along rows, linearly (``drift`` ADU per row) or as a
  random walk (steps of standard deviation ``drift`` ADU per row);
- ``polarity``: -1 for raw images (more charge gives a lower value, the seed's convention),
  +1 for averaged images.

Raw images are stored rounded to integers, one 2-D HDU of shape ``(nrows, ncols * nskips)``
per amplifier, the samples of one pixel consecutive along the row (``data[r, c * nskips + s]``),
with ``NDCMS = nskips``. Averaged images hold the mean of the (unrounded) samples as a float
image ``(nrows, ncols)`` without ``NDCMS``; give them a file name containing ``Avg`` so that
the seed's polarity rule reads them right. Stored integers saturate at the limits of their
type, as an ADC does.

The truth is written in every image header as ``SIM*`` keywords (see :func:`read_truth`);
those of the X-rays and hot columns only when they are set, so that images without them keep
their bytes. :func:`cluster_fraction` gives the fraction of pixels that clusters hold.
Random numbers are drawn row by row from generators seeded by ``(seed, amplifier, row)``, so a
file is the same whatever block size it is written in, and :func:`simulate_pixels` gives exactly
the values of the file.
"""

import csv
import dataclasses
import datetime
import os
import pathlib
from typing import NamedTuple

import numpy as np
from astropy.io import fits
from scipy import special

# on-disk type of each storable dtype: big-endian numpy type, BITPIX, BZERO
_STORAGE = {
    "uint32": (">i4", 32, 2**31),  # the common DAQ choice: unsigned 32 bit through BZERO
    "int32": (">i4", 32, 0),
    "uint16": (">i2", 16, 2**15),
    "int16": (">i2", 16, 0),
    "float32": (">f4", -32, 0),
    "float64": (">f8", -64, 0),
}

DTYPES = tuple(_STORAGE)
DRIFT_KINDS = ("linear", "random_walk")

# Truth field -> (header keyword, comment)
_TRUTH_KEYWORDS = {
    "nrows": ("SIMNROW", "simulated rows"),
    "ncols": ("SIMNCOL", "simulated columns"),
    "nskips": ("SIMNSKIP", "simulated samples per pixel"),
    "gain": ("SIMGAIN", "simulated gain [ADU/e-]"),
    "read_noise": ("SIMNOISE", "simulated single-sample noise [ADU]"),
    "dark_current": ("SIMDC", "simulated dark current [e-/pixel]"),
    "pedestal": ("SIMPED", "simulated pedestal [ADU]"),
    "polarity": ("SIMPOL", "simulated polarity (-1: charge lowers value)"),
    "drift": ("SIMDRIFT", "simulated baseline drift [ADU/row]"),
    "drift_kind": ("SIMDKIND", "simulated drift: linear or random_walk"),
    "tracks": ("SIMTRACK", "simulated tracks and blobs per amplifier"),
    "track_charge": ("SIMTRCHG", "simulated track charge [e-/pixel]"),
    "charge_loss": ("SIMCLOSS", "simulated loss probability per e- per sample"),
    "xrays": ("SIMXRAY", "simulated X-ray clusters per amplifier"),
    "hot_columns": ("SIMHOTC", "simulated hot columns per amplifier"),
    "hot_column_current": ("SIMHOTI", "simulated hot-column current [e-/pixel]"),
    "namps": ("SIMNAMPS", "simulated amplifiers"),
    "dtype": ("SIMDTYPE", "simulated storage type"),
    "averaged": ("SIMAVG", "simulated averaged image"),
    "compressed": ("SIMCOMPR", "simulated tile compression"),
    "seed": ("SIMSEED", "simulation seed"),
}

# Truth fields written in the header only when they differ from their default: images
# without them keep the bytes they had before these fields existed
_WRITTEN_WHEN_SET = ("xrays", "hot_columns", "hot_column_current")

# Acquisition keywords of a simulated image, those analysts correlate metrics with;
# write_image(header=...) overrides them.
ACQUISITION_HEADER = {
    "EXPOSURE": 600.0,
    "DATE-OBS": "2025-01-01T00:00:00",
    "DATEINI": "2025-01-01T00:00:00",
    "DATEEND": "2025-01-01T00:10:00",
    "VDD": -22.0,
    "VR": -7.0,
    "VSUB": 70.0,
    "H1AH": 5.0,
    "H1AL": -2.5,
    "V1AH": 3.5,
    "V1AL": -2.0,
    "TEMP": 140.0,
}

# one random stream per purpose, so that changing one does not reshuffle the others
_PIXEL_STREAM, _TRACK_STREAM, _DRIFT_STREAM = 0, 1, 2
_XRAY_STREAM, _HOT_COLUMN_STREAM, _HOT_CHARGE_STREAM = 3, 4, 5
#: electrons of an Fe-55 X-ray (5.9 keV at 3.75 eV per pair) and their Fano factor
XRAY_ELECTRONS, _FANO = 5900 / 3.75, 0.128
#: diffusion of an X-ray's charge: Gaussian sigma, pixels, drawn uniformly in this range
XRAY_SIGMA = (0.2, 1.2)
#: half-width of the pixel window an X-ray's electrons land in: at least 5 of the largest sigma
_XRAY_HALF_WIDTH = 6
_SAMPLE_TIME = 10e-6  # s per sample, for the DATEEND of a campaign's images
_FITS_BLOCK = 2880  # bytes: headers and data are padded to multiples of it
_BLOCK_VALUES = 4_000_000  # values per written block: 32 MB of float64, whatever the image


@dataclasses.dataclass(frozen=True)
class Truth:
    """Every parameter of a simulated image.

    Parameters
    ----------
    nrows, ncols, nskips : int
        Rows, columns and samples per pixel of each amplifier.
    gain : float
        ADU per electron.
    read_noise : float
        Standard deviation of one sample's noise, in ADU.
    dark_current : float
        Mean electrons per pixel (Poisson λ), before tracks.
    pedestal : float
        Value of a pixel without charge on row 0, in ADU. The default leaves room for a
        thousand electrons at the default gain before a raw image saturates at 0.
    polarity : {-1, +1} or None
        -1: charge lowers the value (raw images); +1: charge raises it.
        None: -1 for raw images, +1 for averaged ones (the seed's rule).
    drift : float
        Baseline drift along rows: ADU per row (``drift_kind="linear"``), or the standard
        deviation of the step from one row to the next (``"random_walk"``).
    drift_kind : {"linear", "random_walk"}
    tracks : int
        Tracks and blobs of charge per amplifier: even ones straight tracks, odd ones round
        diffusion blobs.
    track_charge : float
        Mean electrons per pixel length of a track; a blob holds ten times that.
    charge_loss : float
        Probability that an electron is lost at each transfer between two samples.
    xrays : int
        Fe-55-like X-ray clusters per amplifier: :data:`XRAY_ELECTRONS` (about 1,570)
        electrons each, with Fano-limited spread, diffused as a Gaussian whose sigma is drawn
        uniformly in :data:`XRAY_SIGMA` pixels (from a point-like hit to a well diffused one).
    hot_columns : int
        Hot columns per amplifier, chosen at random: their pixels get extra charge.
    hot_column_current : float
        Mean extra electrons per pixel of a hot column (Poisson).
    namps : int
        Amplifiers in the file, one HDU each (``AMP1``, ``AMP2``, ...); with one amplifier and
        no compression the image is in the primary HDU, as in the seed's files.
    dtype : {"uint32", "int32", "uint16", "int16", "float32", "float64"} or None
        Storage type. None: "uint32" (32-bit with ``BZERO = 2**31``) for raw images,
        "float32" for averaged ones. Averaged images must be stored as floats.
    averaged : bool
        Write the mean over samples, a 2-D float image, instead of the raw samples.
    compressed : bool
        Tile-compressed HDUs (``CompImageHDU``): RICE for integers, lossless GZIP for floats.
    seed : int
        Seed of the random numbers (non-negative).
    """

    nrows: int = 64
    ncols: int = 128
    nskips: int = 20
    gain: float = 10.0
    read_noise: float = 4.0
    dark_current: float = 0.1
    pedestal: float = 10000.0
    polarity: int | None = None
    drift: float = 0.0
    drift_kind: str = "linear"
    tracks: int = 0
    track_charge: float = 50.0
    charge_loss: float = 0.0
    xrays: int = 0
    hot_columns: int = 0
    hot_column_current: float = 100.0
    namps: int = 1
    dtype: str | None = None
    averaged: bool = False
    compressed: bool = False
    seed: int = 0

    def __post_init__(self):
        # resolve the defaults that depend on the layout, so that a Truth is always explicit
        if self.polarity is None:
            object.__setattr__(self, "polarity", 1 if self.averaged else -1)
        if self.dtype is None:
            object.__setattr__(self, "dtype", "float32" if self.averaged else "uint32")
        sizes = (self.nrows, self.ncols, self.nskips, self.namps)
        amounts = (self.read_noise, self.dark_current, self.track_charge, self.tracks,
                   self.xrays, self.hot_columns, self.hot_column_current)
        broken_rules = {
            "nrows, ncols, nskips and namps must be at least 1": min(sizes) < 1,
            "gain must be positive": self.gain <= 0,
            "read_noise, dark_current, track_charge, tracks, xrays, hot_columns, "
            "hot_column_current must not be negative": min(amounts) < 0,
            "hot_columns must not exceed ncols": self.hot_columns > self.ncols,
            "charge_loss must be a probability": not 0 <= self.charge_loss <= 1,
            "polarity must be -1 or +1": self.polarity not in (-1, 1),
            f"drift_kind must be one of {DRIFT_KINDS}": self.drift_kind not in DRIFT_KINDS,
            f"dtype must be one of {DTYPES}": self.dtype not in DTYPES,
            "averaged images are stored as float32 or float64": (
                self.averaged and not str(self.dtype).startswith("float")
            ),
            "seed must not be negative": self.seed < 0,
        }
        problems = [rule for rule, broken in broken_rules.items() if broken]
        if problems:
            raise ValueError("; ".join(problems))


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
        _AmpSimulation(truth, amp).rows(0, truth.nrows, values[amp], electrons[amp])
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
    hit = sum(len(_AmpSimulation(truth, amp).cluster_rows) for amp in range(truth.namps))
    return hit / (truth.namps * truth.nrows * truth.ncols)


def write_image(path, truth=Truth(), *, header=None, overwrite=False, block_rows=None):
    """Write one simulated FITS image.

    Uncompressed images are generated and written in blocks of rows, so memory stays bounded
    whatever the image size; a compressed image holds one amplifier in memory at a time
    (astropy compresses whole arrays). The file is written under a temporary name and renamed
    when complete, so a file with the final name is never half-written.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. Averaged images should have ``Avg`` in their name (the seed's
        polarity rule); compressed ones conventionally end with ``.fz``.
    truth : Truth
    header : dict, optional
        Keywords added to, or replacing, :data:`ACQUISITION_HEADER` in the primary header.
    overwrite : bool
        Replace an existing file; without it an existing file is an error.
    block_rows : int, optional
        Rows generated and written at a time (default: about 4 million values).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = pathlib.Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True to replace it")
    if block_rows is None:
        block_rows = max(1, _BLOCK_VALUES // (truth.ncols * truth.nskips))
    primary = fits.Header()
    primary.update(ACQUISITION_HEADER)
    primary.update(header or {})
    if not truth.averaged:
        primary["NDCMS"] = (truth.nskips, "samples per pixel")
    partial = path.with_name(path.name + ".part")
    try:
        if truth.compressed:
            _write_compressed(partial, truth, primary, block_rows)
        else:
            _write_streamed(partial, truth, primary, block_rows)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def read_truth(path):
    """The truth of a simulated file, from the ``SIM*`` keywords of its first image header.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Truth
    """
    with fits.open(path) as hdus:
        for hdu in hdus:
            if "SIMGAIN" in hdu.header:
                return Truth(
                    **{
                        field: hdu.header.get(keyword, getattr(Truth, field))
                        if field in _WRITTEN_WHEN_SET
                        else hdu.header[keyword]
                        for field, (keyword, _) in _TRUTH_KEYWORDS.items()
                    }
                )
    raise ValueError(f"{path}: no SIM* truth keywords (not a simulated file)")


def simulate_campaign(
    directory, n_images=5, *, seed=0, n_averaged=0, overwrite=False, **truth_overrides
):
    """Write a small simulated campaign, and its truth as ``truth.csv``.

    Over the campaign the output-drain voltage ``VDD`` rises by 1 V and the read noise with it
    (by 20%), and the exposure cycles through 300, 600 and 900 s with the dark current
    proportional to it, so that metrics plotted against header keywords show something.

    Parameters
    ----------
    directory : str or os.PathLike
        Created if needed. Files are named ``Img_1.fits``, ``Img_2.fits``, ... (the seed's
        default pattern); averaged ones ``Avg_Img_<i>.fits``; compressed ones end in ``.fz``.
    n_images : int
    seed : int
        Seed of the campaign; each image gets its own seed derived from it.
    n_averaged : int
        The last ``n_averaged`` images are written averaged.
    overwrite : bool
        Replace existing files; without it an existing file is an error (nothing is written).
    **truth_overrides
        Fields of :class:`Truth` for every image; ``read_noise`` and ``dark_current`` are the
        values at the start of the campaign and at 600 s exposure.

    Returns
    -------
    list of pathlib.Path
        The images, in order.
    """
    directory = pathlib.Path(directory)
    image_seeds = np.random.SeedSequence(seed).generate_state(n_images)
    base = Truth(**truth_overrides)
    start = datetime.datetime(2025, 1, 1)
    plan = []
    for index in range(n_images):
        fraction = index / max(n_images - 1, 1)
        exposure = (300.0, 600.0, 900.0)[index % 3]
        averaged = base.averaged or index >= n_images - n_averaged
        truth = Truth(
            **{
                **truth_overrides,
                "read_noise": base.read_noise * (1 + 0.2 * fraction),
                "dark_current": base.dark_current * exposure / 600.0,
                "averaged": averaged,
                "seed": int(image_seeds[index]),
            }
        )
        end = start + datetime.timedelta(
            seconds=exposure + truth.nrows * truth.ncols * truth.nskips * _SAMPLE_TIME
        )
        header = {
            "EXPOSURE": exposure,
            "DATE-OBS": start.isoformat(timespec="seconds"),
            "DATEINI": start.isoformat(timespec="seconds"),
            "DATEEND": end.isoformat(timespec="seconds"),
            "VDD": round(ACQUISITION_HEADER["VDD"] + fraction, 3),
        }
        name = f"{'Avg_' if averaged else ''}Img_{index + 1}.fits"
        if truth.compressed:
            name += ".fz"
        plan.append((directory / name, truth, header))
        start = end
    truth_table = directory / "truth.csv"
    existing = [str(p) for p in [truth_table, *(p for p, _, _ in plan)] if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"already exist: {', '.join(existing)}; pass overwrite=True")
    directory.mkdir(parents=True, exist_ok=True)
    paths = [write_image(p, t, header=h, overwrite=overwrite) for p, t, h in plan]
    with open(truth_table, "w", newline="") as table:
        writer = csv.DictWriter(table, ["filename", *_TRUTH_KEYWORDS, *ACQUISITION_HEADER])
        writer.writeheader()
        for p, t, h in plan:
            writer.writerow(
                {"filename": p.name, **dataclasses.asdict(t), **ACQUISITION_HEADER, **h}
            )
    return paths


class _AmpSimulation:
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


def _stored(values, truth):
    """The values a file holds for ``values (rows, ncols, nskips)``: ``(rows, NAXIS1)`` float64.

    Raw integers are rounded and saturate at the limits of their type, as an ADC does.
    """
    if truth.averaged:
        return values.mean(axis=-1)
    values = values.reshape(len(values), -1)
    disk_type, _, bzero = _STORAGE[truth.dtype]
    if disk_type.startswith(">f"):
        return values
    limits = np.iinfo(disk_type)
    return np.clip(np.rint(values), limits.min + bzero, limits.max + bzero)


def _image_header(truth, amp):
    """Keywords of one amplifier's image HDU: the sample count and the truth."""
    header = fits.Header()
    if truth.namps > 1 or truth.compressed:
        header["EXTNAME"] = f"AMP{amp + 1}"
    if not truth.averaged:
        header["NDCMS"] = (truth.nskips, "samples per pixel")
    for field, (keyword, comment) in _TRUTH_KEYWORDS.items():
        value = getattr(truth, field)
        if field not in _WRITTEN_WHEN_SET or value != getattr(Truth, field):
            header[keyword] = (value, comment)
    return header


def _blocks(truth, amp, block_rows):
    """The stored values of one amplifier (see `_stored`), block by block of rows."""
    simulation = _AmpSimulation(truth, amp)
    for start in range(0, truth.nrows, block_rows):
        stop = min(start + block_rows, truth.nrows)
        values = np.empty((stop - start, truth.ncols, truth.nskips))
        electrons = np.empty((stop - start, truth.ncols), np.int64)
        simulation.rows(start, stop, values, electrons)
        yield _stored(values, truth)


def _write_streamed(path, truth, primary, block_rows):
    disk_type, bitpix, bzero = _STORAGE[truth.dtype]
    shape = (truth.ncols * (1 if truth.averaged else truth.nskips), truth.nrows)  # NAXIS1, 2
    structure = [("BITPIX", bitpix), ("NAXIS", 2), ("NAXIS1", shape[0]), ("NAXIS2", shape[1])]
    scaling = [("BSCALE", 1), ("BZERO", bzero)] if bzero else []
    with open(path, "wb") as out:
        if truth.namps == 1:  # the seed's layout: the image in the primary HDU
            cards = [("SIMPLE", True), *structure, ("EXTEND", True), *scaling]
            out.write(_header_bytes(cards, primary, _image_header(truth, 0)))
        else:
            cards = [("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), ("EXTEND", True)]
            out.write(_header_bytes(cards, primary))
        for amp in range(truth.namps):
            if truth.namps > 1:
                cards = [("XTENSION", "IMAGE"), *structure, ("PCOUNT", 0), ("GCOUNT", 1), *scaling]
                out.write(_header_bytes(cards, _image_header(truth, amp)))
            for block in _blocks(truth, amp, block_rows):
                (block - bzero).astype(disk_type).tofile(out)
            size = shape[0] * shape[1] * np.dtype(disk_type).itemsize
            out.write(bytes(-size % _FITS_BLOCK))  # data are padded with zeros


def _header_bytes(structure, *headers):
    """A FITS header block: the mandatory cards in their order, then the given headers."""
    header = fits.Header(structure)
    for extra in headers:
        header.update(extra)
    return header.tostring().encode("ascii")


def _write_compressed(path, truth, primary, block_rows):
    disk_type, _, bzero = _STORAGE[truth.dtype]
    # the numbers as astropy holds them in memory: native order, unsigned where BZERO says so
    memory_type = np.dtype(disk_type).newbyteorder("=")
    if bzero:
        memory_type = np.dtype(f"u{memory_type.itemsize}")
    fits.PrimaryHDU(header=primary).writeto(path)
    naxis1 = truth.ncols * (1 if truth.averaged else truth.nskips)
    for amp in range(truth.namps):
        data = np.empty((truth.nrows, naxis1), memory_type)
        for start, block in zip(
            range(0, truth.nrows, block_rows), _blocks(truth, amp, block_rows), strict=True
        ):
            data[start : start + len(block)] = block
        compressed = fits.CompImageHDU(
            data,
            header=_image_header(truth, amp),
            compression_type="GZIP_2" if truth.dtype.startswith("float") else "RICE_1",
            quantize_level=0.0,  # lossless for floats too: the truth must survive
        )
        # one amplifier at a time: closing the file writes the appended HDU and frees it
        with fits.open(path, mode="append") as hdus:
            hdus.append(compressed)
