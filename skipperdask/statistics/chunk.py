"""The statistics of one row chunk of one amplifier: from a block in memory
(:func:`chunk_statistics`) or read from its file block by block (:func:`read_chunk_statistics`,
a campaign's way, and :func:`skipperdask.image_metrics`' for an array of
:func:`skipperdask.open_image`)."""

from dataclasses import dataclass

import dask.array as da
import numpy as np

from ..io.array import file_layout
from ..io.rows import read_blocks
from .distributions import Histogram, ValueCounts
from .image import ImageStatistics
from .kernel import (
    DENSE_HISTOGRAM_BINS,
    OVERFLOW_CAPACITY,
    histogram_centres,
    statistics_kernel,
    whole_numbers,
)


def chunk_statistics(block, plan, row_start, *, scale=1.0, zero=0.0):
    """Statistics of one row chunk of one amplifier image.

    Parameters
    ----------
    block : ndarray (rows, ncols, nskips)
        The stored values of rows ``row_start …`` (native byte order); the values are
        ``block * scale + zero``.
    plan : StatisticsPlan
    row_start : int
        Index of the chunk's first row in the image; a multiple of ``plan.row_multiple``.
    scale, zero : float
        BSCALE and BZERO of the stored values.

    Returns
    -------
    ImageStatistics
    """
    chunk = _ChunkPass(plan, row_start, row_start + block.shape[0], block, scale, zero)
    chunk.add(block, row_start)
    return chunk.finish(lambda s: _single_sample(block, s, scale, zero, plan))


class _ChunkPass:
    """The kernel over consecutive row blocks of one chunk, into the chunk's statistics.

    Reading a chunk block by block keeps each block in the processor's cache from the
    read through the byte swap to the kernel, instead of three trips to memory.
    """

    def __init__(self, plan, row_start, row_stop, first_block, scale, zero):
        if row_start % plan.row_multiple:
            raise ValueError(
                f"row chunk starts at {row_start}, not a multiple of {plan.row_multiple}"
            )
        if not first_block.dtype.isnative:
            raise ValueError("the kernel needs native byte order (byteswap the block first)")
        self.plan, self.row_start, self.row_stop = plan, row_start, row_stop
        self.scale, self.zero = float(scale), float(zero)
        nrows, ncols, nskips = row_stop - row_start, first_block.shape[1], first_block.shape[2]
        tile_rows, tile_cols = plan.cluster_shape
        self.ntile_rows_total = plan.nrows // tile_rows if tile_rows else 0
        self.tile_row_origin = row_start // tile_rows if tile_rows else 0
        self.ntiles = 0
        if tile_rows:
            stop_tile_row = min(row_stop // tile_rows, self.ntile_rows_total)
            self.ntiles = max(stop_tile_row - self.tile_row_origin, 0) * (ncols // tile_cols)
        tile_samples = max(nskips - 2, 0)
        stride = plan.partial_stride
        self.slot_origin = -(-row_start // stride)
        nslots = -(-row_stop // stride) - self.slot_origin
        self.centers = histogram_centres(first_block, scale, zero, plan.polarity, plan.nhist)
        self.whole_numbers = whole_numbers(first_block, scale, zero)
        self.levels = np.asarray(plan.levels, dtype=np.int64)
        self.average = np.empty((nrows, ncols))
        self.partial = np.empty((len(plan.levels), nslots, ncols))
        # the variance of fewer than 2 samples is not kept at all (averaged images)
        self.pixel_variance = np.empty((nrows, ncols if nskips >= 4 else 0), dtype=np.float32)
        self.dense = np.zeros((plan.nhist, DENSE_HISTOGRAM_BINS), dtype=np.int32)
        self.overflow = np.empty((plan.nhist, OVERFLOW_CAPACITY), dtype=np.int64)
        self.noverflow = np.zeros(plan.nhist, dtype=np.int64)
        # tiles are laid out per tile row; allocate for every tile the chunk's rows touch
        tiles = (nrows // max(tile_rows, 1) + 1) * (ncols // tile_cols) if tile_rows else 0
        self.tile_sum = np.zeros((tiles, tile_samples))
        self.tile_square = np.zeros((tiles, tile_samples))
        self.tile_first = np.zeros((tiles, tile_samples))
        self.fractional = 0

    def add(self, block, block_start):
        """Run the kernel on the rows ``block_start …`` of the chunk (native byte order)."""
        plan = self.plan
        first, last = block_start - self.row_start, block_start - self.row_start + len(block)
        tile_rows, tile_cols = plan.cluster_shape
        self.fractional += statistics_kernel(
            block, self.scale, self.zero, plan.polarity, plan.baseline == "row-median",
            block_start, plan.nhist, self.centers, self.whole_numbers, self.levels,
            plan.partial_stride, self.slot_origin, self.tile_row_origin, tile_rows, tile_cols,
            plan.cluster_pixels, self.ntile_rows_total, self.average[first:last], self.partial,
            self.pixel_variance[first:last], self.dense, self.overflow, self.noverflow,
            self.tile_sum, self.tile_square, self.tile_first,
        )

    def finish(self, sample_values):
        """The chunk's statistics; ``sample_values(s)`` gives all values of single-sample
        image ``s`` for the rare sample whose histogram outgrew the kernel's."""
        plan = self.plan
        histograms = []
        for s in range(plan.nhist):
            if self.noverflow[s] > OVERFLOW_CAPACITY:
                # a wide image (bright frame, many tracks): numpy counts this sample exactly
                histograms.append(Histogram.of_values(sample_values(s)))
                continue
            (bins,) = np.nonzero(self.dense[s])
            dense_part = Histogram(bins + self.centers[s] - DENSE_HISTOGRAM_BINS // 2,
                                   self.dense[s, bins])
            values, counts = np.unique(self.overflow[s, : self.noverflow[s]], return_counts=True)
            histograms.append(
                Histogram.merge([dense_part, Histogram(values, counts.astype(np.int64))])
            )
        n, ntiles = plan.cluster_pixels, self.ntiles
        # float32, as the pixel variances: a median needs no more, and the statistics of a
        # campaign's row chunks travel between workers
        cluster_variance = (
            ((self.tile_square[:ntiles] - self.tile_sum[:ntiles] ** 2 / n) / (n - 1)
             * self.scale**2).astype(np.float32)
            if ntiles
            else np.empty((0, self.tile_sum.shape[1]), dtype=np.float32)
        )
        return ImageStatistics(
            plan=plan, row_start=self.row_start, row_stop=self.row_stop,
            average=self.average,
            average_values=ValueCounts.of_values(self.average), partial_averages=self.partial,
            pixel_variance=self.pixel_variance,
            histograms=histograms, cluster_variance=cluster_variance,
            integer_valued=self.fractional == 0,
        )


def _single_sample(block, s, scale, zero, plan):
    """Sample ``s`` of every pixel of a chunk, in the charge-positive frame, baseline removed."""
    values = plan.polarity * (block[:, :, s] * scale + zero)
    if plan.baseline == "row-median":
        averages = plan.polarity * (block.mean(axis=2) * scale + zero)
        values = values - np.round(np.median(averages, axis=1, keepdims=True))
    return values


def read_chunk_statistics(amp, row_start, row_stop, plan):
    """Read rows ``row_start … row_stop - 1`` of one amplifier and compute their statistics.

    The file is opened inside the call; the rows are read block by block
    (:func:`skipperdask.io.rows.read_blocks`: a reused buffer, byte-swapped in place) and
    passed to the kernel while they are still in the processor's cache.

    Parameters
    ----------
    amp : skipperdask.io.AmpLayout
    row_start, row_stop : int
    plan : StatisticsPlan
    """
    chunk = None
    for start, block in read_blocks(amp, row_start, row_stop):
        if chunk is None:
            chunk = _ChunkPass(plan, row_start, row_stop, block, amp.bscale, amp.bzero)
        chunk.add(block, start)

    def sample_values(s):
        # read again: only for the rare sample too wide for the kernel's histogram
        return np.concatenate([
            _single_sample(block, s, amp.bscale, amp.bzero, plan).ravel()
            for _, block in read_blocks(amp, row_start, row_stop)
        ])

    return chunk.finish(sample_values)


@dataclass(frozen=True)
class RowChunk:
    """The statistics of rows ``start … stop - 1`` of one amplifier, to compute:
    ``function(*args)``, in place (:meth:`compute`) or as a task of a cluster."""

    start: int
    stop: int
    function: object
    args: tuple

    def compute(self):
        """The chunk's :class:`ImageStatistics`, computed here."""
        return self.function(*self.args)


def row_chunks(pixels, plan, rows_per_chunk=None):
    """The row chunks of every amplifier of an ``(amp, row, col, skip)`` DataArray, with how
    to compute their statistics.

    An array that :func:`skipperdask.open_image` made and nobody changed
    (:func:`skipperdask.io.array.file_layout`) is read from its file chunk by chunk with
    :func:`read_chunk_statistics`, as a campaign reads it: both compute the same numbers by
    construction. Any other array's values (numpy, or dask: computed when the chunk is) go
    through :func:`chunk_statistics`, the same kernel.

    Parameters
    ----------
    pixels : xarray.DataArray
        Dims ``(amp, row, col, skip)``, every amplifier of the shape ``plan`` is for.
    plan : StatisticsPlan
    rows_per_chunk : int, optional
        Rows of a chunk (rounded to the plan's tile height); default the array's own dask
        row chunks, or every row of an amplifier for a numpy array.

    Returns
    -------
    list of list of RowChunk
        One list per amplifier, its chunks in row order.
    """
    layout = file_layout(pixels)
    data = pixels.data
    if rows_per_chunk is None:
        rows_per_chunk = max(data.chunks[1]) if isinstance(data, da.Array) else plan.nrows
    if layout is not None:
        return file_row_chunks(layout, plan, rows_per_chunk)
    return [[RowChunk(start, stop, _values_statistics, (data[a, start:stop], plan, start))
             for start, stop in plan.row_chunks(rows_per_chunk)] for a in range(data.shape[0])]


def file_row_chunks(layout, plan, rows_per_chunk):
    """The row chunks of every amplifier of a scanned file, each read from the file with
    :func:`read_chunk_statistics`: those of its :func:`skipperdask.open_image` array with
    row chunks of ``rows_per_chunk`` rows (rounded to the plan's tile height).

    Returns
    -------
    list of list of RowChunk
        One list per amplifier, its chunks in row order.
    """
    ranges = plan.row_chunks(rows_per_chunk)
    return [[RowChunk(start, stop, read_chunk_statistics, (amp, start, stop, plan))
             for start, stop in ranges] for amp in layout.amps]


def _values_statistics(values, plan, row_start):
    """:func:`chunk_statistics` of a chunk's values (an array, or a dask array to compute)."""
    return chunk_statistics(np.ascontiguousarray(values), plan, row_start)
