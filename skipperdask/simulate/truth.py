"""The truth of a simulated image: every parameter, checked."""

import dataclasses

from ..errors import BadOptionError

# on-disk type of each storable dtype: big-endian numpy type, BITPIX, BZERO
STORAGE = {
    "uint32": (">i4", 32, 2**31),  # the common DAQ choice: unsigned 32 bit through BZERO
    "int32": (">i4", 32, 0),
    "uint16": (">i2", 16, 2**15),
    "int16": (">i2", 16, 0),
    "float32": (">f4", -32, 0),
    "float64": (">f8", -64, 0),
}

DTYPES = tuple(STORAGE)
DRIFT_KINDS = ("linear", "random_walk")


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
        None: -1 for raw images, +1 for averaged ones (the original tool's rule).
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
        no compression the image is in the primary HDU, as in the original tool's files.
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
            raise BadOptionError("; ".join(problems))


