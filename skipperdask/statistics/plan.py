"""What the pass over the pixels computes for one amplifier: the same for all its row chunks."""

import math
from dataclasses import dataclass

from ..config import BASELINES
from ..errors import BadOptionError

#: memory of the statistics of one pixel while they are computed, at most (measured: the
#: average image, the pixel and cluster variances, the cluster sums, the distinct values)
STATISTICS_BYTES_PER_PIXEL = 60
#: the noise of partial averages is measured on this many pixels at least (every k-th
#: row): plenty for a width to 0.3 %, while the statistics stay small for huge images
PARTIAL_AVERAGE_PIXELS = 100_000


@dataclass(frozen=True)
class StatisticsPlan:
    """What the pass computes for one amplifier image; the same for all its chunks.

    Build it with :func:`plan_statistics`.
    """

    nrows: int
    ncols: int
    nskips: int
    polarity: int
    baseline: str
    nhist: int  # single-sample images histogrammed: the first nhist
    entropy_samples: int  # ... of which the entropy slope uses the first this many
    noise_samples: int  # ... and the single-sample noise the first this many
    levels: tuple
    cluster_shape: tuple  # (rows, cols) of the tile holding one cluster; (0, 0) for none
    cluster_pixels: int
    partial_stride: int  # partial averages are kept for the rows that are multiples of it

    @property
    def row_multiple(self):
        """Row chunks must start at a multiple of this (a cluster tile's height)."""
        return max(self.cluster_shape[0], 1)

    def row_chunks(self, rows_per_chunk):
        """Row ranges ``(start, stop)`` of about ``rows_per_chunk`` rows on tile boundaries."""
        step = max(self.row_multiple, rows_per_chunk // self.row_multiple * self.row_multiple)
        return [(start, min(start + step, self.nrows)) for start in range(0, self.nrows, step)]


def cluster_shape(nrows, ncols, npixels):
    """The tile of an as-square-as-possible cluster of ``npixels`` adjacent pixels.

    The cluster is the first ``npixels`` pixels, in raster order, of a tile of
    ``rows × cols`` pixels with ``rows = min(nrows, ceil(sqrt(npixels)))``.
    Returns ``(0, 0)`` when no such cluster fits in the image or ``npixels < 2``.
    """
    if npixels < 2:
        return (0, 0)
    rows = min(nrows, math.ceil(math.sqrt(npixels)))
    cols = math.ceil(npixels / rows)
    if cols > ncols:
        return (0, 0)
    return (rows, cols)


def plan_statistics(nrows, ncols, nskips, polarity, *, baseline="none", max_entropy_samples=30,
                    max_noise_samples=50):
    """The statistics to compute for an amplifier image of this shape.

    Parameters
    ----------
    nrows, ncols, nskips : int
        Shape of the image: rows, columns, samples per pixel.
    polarity : {+1, -1}
        Sign that makes charge raise the value.
    baseline : {"none", "row-median"}
        ``"row-median"`` subtracts from every row the median of its average-image values
        (use it when the baseline drifts along rows).
    max_entropy_samples, max_noise_samples : int
        Single-sample images the entropy slope and the single-sample noise use, at most
        (the original tool's 30 and 50 by default; :func:`plan_of` takes them from the options).
        The first ``max(…)`` samples are histogrammed.
    """
    if polarity not in (1, -1):
        raise BadOptionError(f"polarity must be +1 or -1, not {polarity!r}")
    if baseline not in BASELINES:
        raise BadOptionError(f"baseline must be one of {BASELINES}, not {baseline!r}")
    levels = [1 << k for k in range(int(math.log2(nskips)) + 1)]
    if levels[-1] != nskips:
        levels.append(nskips)
    npixels = nskips - 2
    rows_needed = -(-PARTIAL_AVERAGE_PIXELS // ncols)
    return StatisticsPlan(
        nrows=int(nrows), ncols=int(ncols), nskips=int(nskips), polarity=int(polarity),
        baseline=baseline,
        nhist=min(nskips, max(max_entropy_samples, max_noise_samples)),
        entropy_samples=min(nskips, max_entropy_samples),
        noise_samples=min(nskips, max_noise_samples),
        levels=tuple(levels),
        cluster_shape=cluster_shape(nrows, ncols, npixels),
        cluster_pixels=npixels,
        partial_stride=max(1, nrows // rows_needed),
    )


def plan_of(shape, polarity, options):
    """The plan of an amplifier image of ``shape`` ``(rows, cols, samples)`` with the options
    of a run (:class:`skipperdask.config.Options`: baseline, samples used)."""
    return plan_statistics(*shape, polarity, baseline=options.baseline,
                           max_entropy_samples=options.max_entropy_samples,
                           max_noise_samples=options.max_noise_samples)
