"""The fused, compiled kernel: one pass over the samples of a block of rows.

Sums and variances are taken on the stored numbers and converted once per pixel; the
histograms of digitised data are integer arithmetic on the stored numbers.
"""

import math
import warnings

import numba
import numpy as np

#: bins of the dense part of a chunk's single-sample histograms; values outside
#: go to a short overflow list (tracks), beyond which numpy takes over. Not a power of 2:
#: rows 64 KiB apart would share the same cache sets and every count would miss the
#: cache (measured: 19 times slower)
DENSE_HISTOGRAM_BINS = 16400
OVERFLOW_CAPACITY = 65536


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
def statistics_kernel(block, scale, zero, polarity, row_median, row_offset, nhist, centers,
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


def whole_numbers(block, scale, zero):
    """Whether every value is a whole number of ADU by construction (integers, unit scale,
    whole offset): the kernel's histograms then need no floating point."""
    return block.dtype.kind in "iu" and scale == 1 and float(zero).is_integer()


def histogram_centres(block, scale, zero, polarity, nhist):
    """A typical value of each histogrammed sample in the chunk's first row: where its dense
    histogram is centred."""
    first = block[0, : min(block.shape[1], 64), :nhist].astype(np.float64)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row of NaN: centred at 0
        centres = np.floor(np.nanmedian(polarity * (first * scale + zero), axis=0))
    return np.nan_to_num(centres, nan=0.0).astype(np.int64)
