"""The noise: of the single-sample images (``imgNoise``), and of the average of the first n
samples against n (``noise_vs_n``), from Gaussians fitted to their zero-electron peaks."""

import numba
import numpy as np

from .. import fitting
from ..statistics import ValueCounts
from .amplifier import missing


def zero_peak_window(histogram):
    """Bins ``[lo, hi)`` of a 1-ADU histogram from median - 3 MAD to median + 1 MAD.

    The original tool fits its noise Gaussian on median ± 3 MAD (normal-scaled). Charge only raises
    values, so the low side is pure readout noise, while the high side takes in the
    one-electron peak as soon as the noise is low enough to resolve it, and would widen the
    Gaussian: the fit stops at median + 1 MAD (the same σ, within statistics, when the
    noise is far above the gain). At least 3 bins on each side.
    """
    median = histogram.quantile(0.5)
    mad = 1.4826 * _median_deviation(histogram.values + 0.5, histogram.counts, median)
    return int(np.floor(median - max(3 * mad, 3))), int(np.ceil(median + max(mad, 3))) + 1


@numba.njit(cache=True, nogil=True)
def _median_deviation(centres, counts, median):
    """The median of ``|centre - median|`` over the pixels (the increasing bin ``centres``,
    weighted by their ``counts``): the bins taken outwards from the median, nearest first, until
    half the pixels are in (fifty single-sample images of a raw amplifier: 2.5 ms with an
    argsort of every bin)."""
    half = counts.sum() / 2
    right = np.searchsorted(centres, median)  # the first bin at or above the median
    left = right - 1
    taken = 0
    deviation = 0.0
    while taken < half:
        if right < centres.size and (left < 0 or centres[right] - median <= median - centres[left]):
            deviation = centres[right] - median
            taken += counts[right]
            right += 1
        else:
            deviation = median - centres[left]
            taken += counts[left]
            left -= 1
    return deviation


def sample_noise_histogram(statistics, index):
    """Counts and edges of the window of single-sample image ``index`` that imgNoise fits."""
    histogram = statistics.histograms[index]
    lo, hi = zero_peak_window(histogram)
    offset = 0.5 if statistics.integer_valued else 0.0  # integers sit at the centres of bins
    return histogram.dense(lo, hi), np.arange(lo, hi + 1) - offset


def single_sample_noise(analysis):
    """imgNoise: Gaussian fits on each single-sample image (first 50; see zero_peak_window)."""
    stats = analysis.statistics
    if stats.plan.nskips == 1 and not stats.integer_valued:
        # an averaged file (the original tool's imgNoise is then the noise of the average): its
        # values are in memory and its noise may be far below the 1-ADU bins
        if not analysis.noise_fits:
            missing(analysis, "imgNoise", analysis.reasons["noise_vs_n"])
            return
        analysis.sample_noise_fits.append(analysis.noise_fits[0])
    else:
        _fit_single_samples(analysis)
    sigmas = [f.sigma for f in analysis.sample_noise_fits if not f.reason]
    if sigmas:
        analysis.values["imgNoise"] = float(np.mean(sigmas))
    else:
        missing(analysis, "imgNoise", analysis.sample_noise_fits[0].reason or "no noise fit")


def _fit_single_samples(analysis):
    """The Gaussians of the single-sample images, fitted all at once."""
    stats = analysis.statistics
    nsamples = min(stats.plan.noise_samples, len(stats.histograms))
    windows = [sample_noise_histogram(stats, index) for index in range(nsamples)]
    analysis.sample_noise_fits.extend(fit_windows(windows))


def fit_windows(windows):
    """Gaussians fitted to several histogram windows ``(counts, edges)`` in one call: the
    windows are stacked, padded to the longest with masked bins."""
    nbins = max(counts.size for counts, _ in windows)
    counts = np.zeros((len(windows), nbins))
    edges = np.zeros((len(windows), nbins + 1))
    mask = np.arange(nbins) < np.array([c.size for c, _ in windows])[:, None]
    for row, (window_counts, window_edges) in enumerate(windows):
        counts[row, :window_counts.size] = window_counts
        edges[row, :window_edges.size] = window_edges
    return fitting.fit_gaussians(counts, edges, mask)




def noise_against_samples(analysis):
    """The noise of the average of the first n samples, n = 1, 2, 4, …, nskips: the width of
    the zero-electron peak of each partial average.

    The last one (the average image) has its zero peak placed by the average image's fit
    (else found from scratch, :func:`skipperdask.fitting.fit_zero_peak`), the first one's is
    found from scratch; the others share their zero-electron level and have a width between
    theirs. Every window but the first (x0 - 4σ … x0 + 1σ, σ interpolated geometrically in
    n) is then fitted at once.
    """
    stats = analysis.statistics
    levels = stats.plan.levels
    last = len(levels) - 1
    placed = analysis.peaks_fit.estimate[:2] if analysis.peaks_fit is not None else (np.nan,)
    if not np.all(np.isfinite(placed)):
        end = _zero_peak_fit(stats, last)
        placed = (end.mu, end.sigma)
    fits = [_zero_peak_fit(stats, 0)] if last else []  # level 0 from scratch
    if not np.all(np.isfinite(placed)) or (fits and fits[0].reason):
        analysis.noise_fits.extend(fits or [_zero_peak_fit(stats, 0)])
        analysis.noise_fits.extend(_zero_peak_fit(stats, level) for level in range(1, last + 1))
        return
    x0_first, sigma_first = (fits[0].mu, fits[0].sigma) if fits else placed
    windows = []
    for level in range(len(fits), last + 1):
        fraction = np.log(levels[level]) / np.log(levels[-1]) if last else 1.0
        sigma = sigma_first * (placed[1] / sigma_first) ** fraction
        x0 = x0_first + (placed[0] - x0_first) * fraction
        width = fine_bin_width(sigma, levels[level], stats.integer_valued)
        values = (stats.average_values if level == last
                  else stats.partial_averages[level].ravel())
        windows.append(fitting.histogram(values, x0 - 4 * sigma, x0 + sigma, width))
    analysis.noise_fits.extend([*fits, *fit_windows(windows)])


def _zero_peak_fit(stats, level):
    """The zero-electron peak of partial average ``level``, found from scratch."""
    if stats.plan.levels[level] == stats.plan.nskips:
        values = stats.average_values  # the average of all samples, every row: known
    else:
        values = ValueCounts.of_values(stats.partial_averages[level])
    bin_width = fine_bin_width(fitting.zero_peak_width(values), stats.plan.levels[level],
                                stats.integer_valued)
    return fitting.fit_zero_peak(values, bin_width=bin_width)


def fine_bin_width(sigma, nsamples, integer_valued):
    """A power of 2 at most a quarter of the noise σ, and never finer than the 1/n steps of
    an average of n digitised samples (finer bins would be empty in between)."""
    width = 2.0 ** np.floor(np.log2(max(sigma, 1e-6) / 4)) if np.isfinite(sigma) else 1.0
    if integer_valued:
        # an odd number of steps per bin: bins are centred on multiples of the width, so
        # their edges then fall half-way between two possible values, never on one
        steps = max(np.ceil(width * nsamples - 1e-9), 1)
        width = (steps + (steps % 2 == 0)) / nsamples
    return float(width)


