"""The one pass over the pixels: small sufficient statistics of one amplifier image.

Every metric is computed from these statistics, never from the pixels again
("reduce first, fit second"). One row chunk of one amplifier goes through a fused,
compiled kernel that reads every sample once and produces:

- the average image (mean over samples) and its partial averages over the first
  1, 2, 4, … samples (for the noise against the number of averaged samples);
- per pixel, the variance of its samples with index ≥ 2 (``pixVar``);
- exact 1-ADU histograms of the first single-sample images (entropy, ``imgNoise``);
- the variance of every compact cluster of ``nskips - 2`` adjacent pixels in every
  single-sample image with index ≥ 2 (``clustVar``).

All values are in the frame where charge raises the value (the polarity applied),
with the optional per-row baseline subtracted. Chunks along rows combine exactly:
images, variances and cluster variances concatenate, histograms add. Clusters are
tiles aligned to absolute rows, and row chunks start on a tile boundary, so the
numbers are the same for any chunking and any number of workers.
"""

import dataclasses
import functools
import math
import threading
from dataclasses import dataclass

import numba
import numpy as np

#: bins of the dense part of a chunk's single-sample histograms; values outside
#: go to a short overflow list (tracks), beyond which numpy takes over. Not a power of 2:
#: rows 64 KiB apart would share the same cache sets and every count would miss the
#: cache (measured: 19 times slower)
DENSE_HISTOGRAM_BINS = 16400
OVERFLOW_CAPACITY = 65536
#: rows a campaign's task reads at a time: a block stays in the processor's cache
#: from the read through the byte swap to the kernel
READ_BLOCK_BYTES = 4 * 2**20

BASELINES = ("none", "row-median")
#: memory of the statistics of one pixel while they are computed, at most (measured: the
#: average image, the pixel and cluster variances, the cluster sums, the distinct values)
STATISTICS_BYTES_PER_PIXEL = 60
#: the noise of partial averages is measured on this many pixels at least (every k-th
#: row): plenty for a width to 0.3 %, while the statistics stay small for huge images
PARTIAL_AVERAGE_PIXELS = 100_000


def _summed(values, counts):
    """The distinct values, increasing, and the total count of each: what merging the
    counts of several histograms or distributions comes to."""
    order = np.argsort(values, kind="stable")
    values, counts = values[order], counts[order]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    summed = np.add.reduceat(counts, starts) if counts.size else counts
    return values[starts], summed.astype(np.int64)


#: distributions of fewer values are sorted: counting on a grid gains nothing
GRID_MIN_VALUES = 20_000


def _counted_on_grid(values, spacing):
    """The distinct finite values of ``values`` and their counts, counted on a grid of step
    ``spacing`` (default: one float32 step at the largest magnitude); None when the grid
    would hold more than two steps per value or a step holds two distinct values (then
    only a sort tells them apart)."""
    with np.errstate(all="ignore"):
        lo, hi = np.nanmin(values), np.nanmax(values)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            return None
        if spacing is None:
            largest = max(abs(lo), abs(hi))
            spacing = 2.0 ** (math.frexp(largest)[1] - 24) if largest > 0 else 1.0
        origin, top = math.floor(lo / spacing + 0.5), math.floor(hi / spacing + 0.5)
    if top - origin >= 2 * values.size + 2**16:
        return None
    counts, seen, single = _grid_counts(values, 1.0 / spacing, origin, top - origin + 1)
    if not single:
        return None
    present = np.flatnonzero(counts)
    return seen[present], counts[present]


@numba.njit(cache=True, nogil=True)
def _grid_counts(values, scale, origin, ncells):
    """Counts of the finite ``values`` in grid cells floor(v·scale + ½) - origin, the value
    seen in each, and whether no cell saw two different values."""
    counts = np.zeros(ncells, np.int64)
    seen = np.empty(ncells)
    for value in values:
        if not np.isfinite(value):
            continue
        cell = int(math.floor(value * scale + 0.5)) - origin
        if counts[cell] == 0:
            seen[cell] = value
        elif seen[cell] != value:
            return counts, seen, False
        counts[cell] += 1
    return counts, seen, True


@dataclass(frozen=True)
class Histogram:
    """A sparse histogram with 1-ADU bins: bin ``[v, v + 1)`` holds ``counts[i]`` values.

    Parameters
    ----------
    values : ndarray of int64
        Sorted lower edges of the non-empty bins.
    counts : ndarray of int64
        Number of pixels in each of those bins.
    """

    values: np.ndarray
    counts: np.ndarray

    @classmethod
    def merge(cls, histograms):
        """The histogram of the union of the pixels of several histograms."""
        return cls(*_summed(np.concatenate([h.values for h in histograms]),
                            np.concatenate([h.counts for h in histograms])))

    @classmethod
    def of_value_counts(cls, distribution, origin=0.0):
        """The 1-ADU histogram (bins ``[floor(v - origin), …)``) of a :class:`ValueCounts`."""
        bins = np.floor(distribution.values - origin).astype(np.int64)
        return cls(*_summed(bins, distribution.counts))

    @classmethod
    def of_values(cls, values):
        """The 1-ADU histogram (bins ``[floor(v), floor(v) + 1)``) of finite values."""
        values = np.asarray(values, dtype=np.float64).ravel()
        values = np.floor(values[np.isfinite(values)]).astype(np.int64)
        unique, counts = np.unique(values, return_counts=True)
        return cls(unique, counts.astype(np.int64))

    def negated(self, *, integer_valued):
        """The histogram of the negated values. A value inside bin ``[v, v + 1)`` goes to
        ``[-v - 1, -v)``; a whole number ``v`` (``integer_valued``: all of them) to ``-v``."""
        shift = 0 if integer_valued else 1
        return Histogram(-self.values[::-1] - shift, self.counts[::-1].copy())

    @property
    def total(self):
        """Number of pixels."""
        return int(self.counts.sum())

    def dense(self, start, stop):
        """Counts of the bins ``start, start + 1, …, stop - 1`` as a dense array."""
        counts = np.zeros(stop - start, dtype=np.int64)
        inside = (self.values >= start) & (self.values < stop)
        counts[self.values[inside] - start] = self.counts[inside]
        return counts

    def quantile(self, q):
        """The value below which a fraction ``q`` of the pixels lie (bin centres)."""
        cumulative = np.cumsum(self.counts)
        index = np.searchsorted(cumulative, q * cumulative[-1])
        return float(self.values[min(index, self.values.size - 1)]) + 0.5

    def entropy(self):
        """Shannon entropy, natural log, of the bin probabilities: ``-Σ p ln p``."""
        p = self.counts[self.counts > 0] / self.total
        return float(-(p * np.log(p)).sum())


@dataclass(frozen=True)
class ValueCounts:
    """The exact distribution of an image's values: each distinct value once, with its count.

    The fits need histograms, quantiles and counts of the average image many times over;
    on this lossless summary each costs a binary search instead of a pass over millions of
    pixels (np.histogram of 2.5 million pixels takes 28 ms; sorting them once, 7 ms).

    Parameters
    ----------
    values : ndarray of float64
        The distinct values, increasing (all finite).
    counts : ndarray of int64
        How many pixels hold each value (all > 0).
    """

    values: np.ndarray
    counts: np.ndarray

    @classmethod
    def of_values(cls, values, *, spacing=None):
        """The distribution of the finite values of an array.

        Values on a grid, each grid step holding one distinct value, are counted in one
        pass; others are sorted (4 million values: about 30 ms against 300-400 ms).

        Parameters
        ----------
        values : array_like
        spacing : float, optional
            The grid's step when known (``1/nskips`` for averages of whole numbers); by
            default one float32 step at the largest magnitude, which is the grid of images
            stored as float32.
        """
        values = np.asarray(values, dtype=np.float64).ravel()
        counted = _counted_on_grid(values, spacing) if values.size >= GRID_MIN_VALUES else None
        if counted is not None:
            return cls(*counted)
        unique, counts = np.unique(values[np.isfinite(values)], return_counts=True)
        return cls(unique, counts.astype(np.int64))

    @classmethod
    def merge(cls, distributions):
        """The distribution of the union of the pixels of several distributions."""
        return cls(*_summed(np.concatenate([d.values for d in distributions]),
                            np.concatenate([d.counts for d in distributions])))

    def negated(self):
        """The distribution of the negated values."""
        return ValueCounts(-self.values[::-1], self.counts[::-1].copy())

    @property
    def size(self):
        """Number of pixels."""
        return int(self._cumulative[-1])

    @property
    def min(self):
        return float(self.values[0])

    @property
    def max(self):
        return float(self.values[-1])

    @functools.cached_property
    def _cumulative(self):
        # _cumulative[i]: pixels below values[i]
        return np.concatenate([[0], np.cumsum(self.counts)])

    def count_below(self, x, *, inclusive=False):
        """Pixels with a value below ``x`` (``<= x`` with ``inclusive``); ``x`` may be an array."""
        side = "right" if inclusive else "left"
        return self._cumulative[np.searchsorted(self.values, x, side=side)]

    def count_above(self, x):
        """Pixels with a value above ``x``."""
        return self.size - self.count_below(x, inclusive=True)

    def above(self, x):
        """The distribution of the values above ``x``."""
        start = np.searchsorted(self.values, x, side="right")
        return ValueCounts(self.values[start:], self.counts[start:])

    def without(self, values):
        """The distribution less the pixels of ``values`` (an array of values it holds)."""
        removed = ValueCounts.of_values(values)
        counts = self.counts.copy()
        counts[np.searchsorted(self.values, removed.values)] -= removed.counts
        kept = counts > 0
        return ValueCounts(self.values[kept], counts[kept])

    def order_statistics(self, ranks):
        """The values of rank ``ranks`` (0 the lowest) of the sorted pixel values."""
        index = np.searchsorted(self._cumulative[1:], np.asarray(ranks), side="right")
        return self.values[np.minimum(index, self.values.size - 1)]

    def quantile(self, q):
        """``np.quantile`` (linear interpolation) of the pixel values."""
        ranks = np.asarray(q, dtype=np.float64) * (self.size - 1)
        below = np.floor(ranks)
        low, high = self.order_statistics(below), self.order_statistics(below + 1)
        return low + (high - low) * (ranks - below)

    def histogram(self, bins, range):  # noqa: A002  (np.histogram's names)
        """``np.histogram(values, bins, range)`` of the pixel values: counts and edges."""
        edges = np.linspace(range[0], range[1], bins + 1)
        below = self.count_below(edges)
        below[-1] = self.count_below(edges[-1], inclusive=True)  # the last bin is closed
        return np.diff(below), edges


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
    nhist: int
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
        Single-sample images histogrammed: the first ``max(…)`` samples at most.
    """
    if polarity not in (1, -1):
        raise ValueError(f"polarity must be +1 or -1, not {polarity!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, not {baseline!r}")
    levels = [1 << k for k in range(int(math.log2(nskips)) + 1)]
    if levels[-1] != nskips:
        levels.append(nskips)
    npixels = nskips - 2
    rows_needed = -(-PARTIAL_AVERAGE_PIXELS // ncols)
    return StatisticsPlan(
        nrows=int(nrows), ncols=int(ncols), nskips=int(nskips), polarity=int(polarity),
        baseline=baseline,
        nhist=min(nskips, max(max_entropy_samples, max_noise_samples)),
        levels=tuple(levels),
        cluster_shape=cluster_shape(nrows, ncols, npixels),
        cluster_pixels=npixels,
        partial_stride=max(1, nrows // rows_needed),
    )


@dataclass
class ImageStatistics:
    """Sufficient statistics of rows ``row_start … row_stop - 1`` of one amplifier image.

    A whole image is the combination (:meth:`combine`) of its row chunks.

    Attributes
    ----------
    plan : StatisticsPlan
    row_start, row_stop : int
    average : ndarray (rows, ncols)
        Mean over samples: the cluster mask is found on it (1/nskips of the raw data).
    average_values : ValueCounts
        The distinct values of ``average`` and their counts: all that the fits need of it.
    partial_averages : ndarray (len(plan.levels), sampled rows, ncols)
        Mean over the first ``n`` samples, ``n`` in ``plan.levels``, of the rows whose
        index is a multiple of ``plan.partial_stride``.
    pixel_variance : ndarray of float32 (rows, ncols), or (rows, 0) when nskips < 4
        Variance (ddof=1) of each pixel's samples with index ≥ 2.
    histograms : list of Histogram
        1-ADU histograms of the single-sample images ``0 … plan.nhist - 1``.
    cluster_variance : ndarray of float32 (nclusters, nskips - 2)
        Variance (ddof=1) of each cluster in each single-sample image with index ≥ 2.
    integer_valued : bool
        Whether every histogrammed value is a whole number of ADU (digitised data):
        its 1-ADU bins are then centred on the integers.
    """

    plan: StatisticsPlan
    row_start: int
    row_stop: int
    average: np.ndarray
    average_values: ValueCounts
    partial_averages: np.ndarray
    pixel_variance: np.ndarray
    histograms: list
    cluster_variance: np.ndarray
    integer_valued: bool

    @classmethod
    def combine(cls, parts):
        """Statistics of contiguous row chunks combined into those of their union."""
        parts = sorted(parts, key=lambda part: part.row_start)
        for before, after in zip(parts, parts[1:], strict=False):
            if before.row_stop != after.row_start:
                raise ValueError(
                    f"row chunks are not contiguous: {before.row_stop} != {after.row_start}"
                )
        return cls(
            plan=parts[0].plan,
            row_start=parts[0].row_start,
            row_stop=parts[-1].row_stop,
            average=np.concatenate([p.average for p in parts]),
            average_values=ValueCounts.merge([p.average_values for p in parts]),
            partial_averages=np.concatenate([p.partial_averages for p in parts], axis=1),
            pixel_variance=np.concatenate([p.pixel_variance for p in parts]),
            histograms=[
                Histogram.merge(same_sample)
                for same_sample in zip(*(p.histograms for p in parts), strict=True)
            ],
            cluster_variance=np.concatenate([p.cluster_variance for p in parts]),
            integer_valued=all(p.integer_valued for p in parts),
        )

    def flipped(self):
        """The statistics of the same pixels in the frame of the other polarity.

        Values (average image, its distinct values, partial averages, histograms) are
        negated; variances do not change. The 1-ADU histograms follow exactly for whole
        numbers (digitised data) and for an averaged image (``nskips = 1``: its only
        histogram is rebuilt from its exact distinct values); for other fractional samples a
        value exactly on a bin edge moves one bin down (see :meth:`Histogram.negated`).
        A row-median baseline negates with the values (the median of the negated values is
        the negated median, and rounding is symmetric).
        """
        average_values = self.average_values.negated()
        if self.plan.nskips == 1 and not self.integer_valued:
            histograms = [Histogram.of_value_counts(average_values) for _ in self.histograms]
        else:
            histograms = [h.negated(integer_valued=self.integer_valued)
                          for h in self.histograms]
        return dataclasses.replace(
            self,
            plan=dataclasses.replace(self.plan, polarity=-self.plan.polarity),
            average=-self.average,
            average_values=average_values,
            partial_averages=-self.partial_averages,
            histograms=histograms,
        )


# reductions over a pixel's samples: reassociation lets LLVM vectorise them, and for
# digitised data (whole numbers below 2**53) every partial sum is exact in any order
_VECTOR = {"reassoc", "nsz"}


@numba.njit(cache=True, nogil=True, fastmath=_VECTOR)
def _shifted_sum(samples, start, stop, shift):
    total = 0.0
    for s in range(start, stop):
        total += samples[s] - shift
    return total


@numba.njit(cache=True, nogil=True, fastmath=_VECTOR)
def _shifted_moments(samples, start, stop, shift):
    """Σ d and Σ d² of d = samples - shift (shifting keeps the squares small)."""
    first = 0.0
    second = 0.0
    for s in range(start, stop):
        d = samples[s] - shift
        first += d
        second += d * d
    return first, second


@numba.njit(cache=True, nogil=True, fastmath=_VECTOR)
def _moments_and_cluster(samples, shift, offset, tile_first, sums, squares):
    """:func:`_shifted_moments` of samples 2 … and, in the same loop, the sums and squares
    of a cluster's single-sample images: ``samples[s + 2] - offset - tile_first[s]``."""
    first = 0.0
    second = 0.0
    for s in range(sums.size):
        x = samples[s + 2]
        d = x - shift
        first += d
        second += d * d
        e = x - offset - tile_first[s]
        sums[s] += e
        squares[s] += e * e
    return first, second


@numba.njit(cache=True, nogil=True)
def _statistics_kernel(block, scale, zero, polarity, row_median, row_offset, nhist, centers,
                       whole_numbers, levels, partial_stride, slot_origin, tile_row_origin,
                       tile_rows, tile_cols, tile_pixels, ntile_rows_total, average, partial,
                       pixel_variance, dense, overflow, noverflow, tile_sum, tile_square,
                       tile_first):
    # Sums and variances are taken on the stored numbers and converted once per pixel
    # (value = polarity · (stored · scale + zero) - baseline): the loops over samples
    # are then plain reductions. Returns the number of histogrammed values that are not
    # whole numbers of ADU.
    nrows, ncols, nskips = block.shape
    width = dense.shape[1]
    half = width // 2
    nlevels = levels.size
    ntile_cols = ncols // tile_cols if tile_cols > 0 else 0
    nvar = nskips - 2
    row_values = np.empty(ncols)
    bin_offsets = np.empty(nhist, dtype=np.int64)
    fractional = 0
    for r in range(nrows):
        baseline = 0.0
        if row_median:
            for c in range(ncols):
                mean = _shifted_sum(block[r, c], 0, nskips, 0.0) / nskips
                row_values[c] = polarity * (mean * scale + zero)
            # a whole number of ADU keeps integer data on their 1-ADU bins
            baseline = np.round(np.median(row_values))
        # the baseline in stored units, for the cluster variances
        stored_baseline = polarity * baseline / scale
        if whole_numbers:
            integer_offset = np.int64(polarity * zero - baseline)
            for s in range(nhist):
                bin_offsets[s] = integer_offset - centers[s] + half
        absolute_row = row_offset + r
        sampled = absolute_row % partial_stride == 0
        slot = absolute_row // partial_stride - slot_origin
        tile_row = absolute_row // tile_rows if tile_rows > 0 else 0
        in_tile_row = tile_rows > 0 and tile_row < ntile_rows_total
        local_tile_row = tile_row - tile_row_origin
        for c in range(ncols):
            samples = block[r, c]
            if whole_numbers:
                # digitised data: the value's bin is integer arithmetic on the stored number
                for s in range(nhist):
                    i = polarity * np.int64(samples[s]) + bin_offsets[s]
                    if 0 <= i < width:
                        dense[s, i] += 1
                    else:
                        n = noverflow[s]
                        if n < overflow.shape[1]:
                            overflow[s, n] = i - bin_offsets[s] + integer_offset
                        noverflow[s] = n + 1
            else:
                for s in range(nhist):
                    v = polarity * (samples[s] * scale + zero) - baseline
                    if v == v:
                        b = math.floor(v)
                        if v != b:
                            fractional += 1
                        i = b - centers[s] + half
                        if 0 <= i < width:
                            dense[s, i] += 1
                        else:
                            n = noverflow[s]
                            if n < overflow.shape[1]:
                                overflow[s, n] = b
                            noverflow[s] = n + 1
            # sums are taken relative to the first sample, whose value is computed once:
            # a large BZERO (2**31) would otherwise swamp the fractions of the average
            origin = np.float64(samples[0])
            origin_value = origin * scale + zero
            first = 0.0
            shift = origin
            tile = -1
            if in_tile_row and c // tile_cols < ntile_cols:
                raster = (absolute_row % tile_rows) * tile_cols + c % tile_cols
                if raster < tile_pixels:
                    tile = local_tile_row * ntile_cols + c // tile_cols
                    if raster == 0:
                        for s in range(nvar):
                            tile_first[tile, s] = samples[s + 2] - stored_baseline
            if nvar >= 2:
                shift = np.float64(samples[2])
                if tile >= 0:  # a cluster's pixel: its samples are read once for both
                    first, second = _moments_and_cluster(samples, shift, stored_baseline,
                                                         tile_first[tile], tile_sum[tile],
                                                         tile_square[tile])
                else:
                    first, second = _shifted_moments(samples, 2, nskips, shift)
                pixel_variance[r, c] = (second - first * first / nvar) / (nvar - 1) * scale * scale
            if sampled:
                total = 0.0
                start = 0
                for level in range(nlevels):
                    total += _shifted_sum(samples, start, levels[level], origin)
                    start = levels[level]
                    mean = origin_value + total / start * scale
                    partial[level, slot, c] = polarity * mean - baseline
            elif nvar >= 2:
                # the moments already hold samples 2 …: one pass over the samples
                total = np.float64(samples[1]) - origin + first + nvar * (shift - origin)
            else:
                total = _shifted_sum(samples, 0, nskips, origin)
            average[r, c] = polarity * (origin_value + total / nskips * scale) - baseline
    return fractional


def _whole_numbers(block, scale, zero):
    """Whether every value is a whole number of ADU by construction (integers, unit scale,
    whole offset): the kernel's histograms then need no floating point."""
    return block.dtype.kind in "iu" and scale == 1 and float(zero).is_integer()


def _histogram_centres(block, scale, zero, polarity, nhist):
    """A typical value of each histogrammed sample in the chunk's first row: where its dense
    histogram is centred."""
    first = block[0, : min(block.shape[1], 64), :nhist].astype(np.float64)
    return np.floor(np.median(polarity * (first * scale + zero), axis=0)).astype(np.int64)


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
        self.centers = _histogram_centres(first_block, scale, zero, plan.polarity, plan.nhist)
        self.whole_numbers = _whole_numbers(first_block, scale, zero)
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
        self.fractional += _statistics_kernel(
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


@numba.njit(cache=True, nogil=True)
def _swap16(words):
    for i in range(words.size):
        x = words[i]
        words[i] = ((x >> 8) & 0xFF) | ((x & 0xFF) << 8)


@numba.njit(cache=True, nogil=True)
def _swap32(words):
    for i in range(words.size):
        x = words[i]
        words[i] = (((x >> 24) & 0xFF) | ((x >> 8) & 0xFF00) | ((x & 0xFF00) << 8)
                    | ((x & 0xFF) << 24))


#: the raw images' types (16- and 32-bit integers, float32); others use ndarray.byteswap
_SWAPS = {2: (_swap16, np.uint16), 4: (_swap32, np.uint32)}


def _byteswap_inplace(raw):
    """``raw`` (an array of foreign byte order) as native values, swapped in place: for
    2- and 4-byte values a vectorised loop, 7 times faster than ``ndarray.byteswap``
    (FITS is big-endian)."""
    native = raw.dtype.newbyteorder("=")
    if raw.dtype.itemsize not in _SWAPS or not raw.flags.c_contiguous:
        return raw.byteswap(inplace=True).view(native)
    swap, words = _SWAPS[raw.dtype.itemsize]
    swap(raw.reshape(-1).view(words))
    return raw.view(native)


_thread_buffers = threading.local()


def _reusable_buffer(nbytes):
    """A per-thread read buffer: fresh memory costs far more to touch than to reuse."""
    buffer = getattr(_thread_buffers, "buffer", None)
    if buffer is None or buffer.nbytes < nbytes:
        buffer = np.empty(nbytes, dtype=np.uint8)
        _thread_buffers.buffer = buffer
    return buffer


def read_chunk_statistics(amp, row_start, row_stop, plan):
    """Read rows ``row_start … row_stop - 1`` of one amplifier and compute their statistics.

    The file is opened inside the call; the rows are read block by block
    (``READ_BLOCK_BYTES``) into a reused buffer, byte-swapped in place and passed to the
    kernel while they are still in the processor's cache: the fast path of a campaign.

    Parameters
    ----------
    amp : skipperdask.reader.AmpLayout
    row_start, row_stop : int
    plan : StatisticsPlan
    """
    if amp.compressed:  # astropy decompresses whole tiles: one block
        rows_per_block = row_stop - row_start
    else:
        rows_per_block = max(1, READ_BLOCK_BYTES // amp.row_bytes)

    def blocks():
        for start in range(row_start, row_stop, rows_per_block):
            stop = min(start + rows_per_block, row_stop)
            yield start, _read_block(amp, start, stop)

    chunk = None
    for start, block in blocks():
        if chunk is None:
            chunk = _ChunkPass(plan, row_start, row_stop, block, amp.bscale, amp.bzero)
        chunk.add(block, start)

    def sample_values(s):
        # read again: only for the rare sample too wide for the kernel's histogram
        return np.concatenate([
            _single_sample(block, s, amp.bscale, amp.bzero, plan).ravel()
            for _, block in blocks()
        ])

    return chunk.finish(sample_values)


def _read_block(amp, start, stop):
    """Rows ``start … stop - 1`` as (rows, ncols, nskips), native byte order, in the reused
    buffer when uncompressed (valid until the next read)."""
    from .reader import read_raw_rows

    if amp.compressed:
        raw = read_raw_rows(amp, start, stop)
    else:
        nbytes = (stop - start) * amp.row_bytes
        raw = read_raw_rows(amp, start, stop, out=_reusable_buffer(nbytes)[:nbytes].view(amp.dtype))
    if not raw.dtype.isnative:
        raw = _byteswap_inplace(raw)
    return raw.reshape(stop - start, amp.ncols, amp.nskips)
