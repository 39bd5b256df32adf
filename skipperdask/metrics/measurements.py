"""The other measurements of one amplifier: the entropies and their slope, the average
image's Gauss-Poisson fit (gain, dark current, noise, pedestal, resolution, tail ratio, with
the cluster mask and the drift they were found with), the pixel and cluster variances."""

import numpy as np

from .. import fitting
from ..statistics import Histogram
from .amplifier import missing
from .noise import fine_bin_width
from .peaks import fit_average_image


def entropy_slope(analysis):
    """aveImgS and dSdskip: entropies of the average and of the single-sample images."""
    stats = analysis.statistics
    average = stats.average_values
    if average.size == 0:
        missing(analysis, "aveImgS", "no finite pixel")
    else:
        # 1-ADU bins from the image's minimum, every value its own bin
        histogram = Histogram.of_value_counts(average, origin=average.min)
        analysis.values["aveImgS"] = histogram.entropy()
    nsamples = stats.plan.entropy_samples
    analysis.entropies = np.array([h.entropy() for h in stats.histograms[:nsamples]])
    if stats.plan.nskips == 1:
        missing(analysis, "dSdskip", "nskips = 1: no single samples", with_error=True)
        return
    line = fitting.fit_line(np.arange(nsamples, dtype=float), analysis.entropies)
    analysis.entropy_line = line
    if line.reason:
        missing(analysis, "dSdskip", line.reason, with_error=True)
    else:
        analysis.values["dSdskip"] = 1000 * line.slope
        analysis.values["dSdskip_err"] = 1000 * line.slope_err




def average_image_fit(analysis, bin_width, settings):
    """skNoise, darkCurrent, aduConversion, pedestal, resolution, fitChi2, tailRatio, the
    cluster mask they are fitted outside of and the drift removed first
    (:func:`skipperdask.metrics.peaks.fit_average_image`)."""
    stats = analysis.statistics
    if bin_width == "auto":
        bin_width = _peaks_bin_width(analysis, stats.average_values)
    peaks = fit_average_image(stats.average, stats.average_values,
                              integer_valued=stats.integer_valued, nskips=stats.plan.nskips,
                              bin_width=bin_width, settings=settings)
    fit = analysis.peaks_fit = peaks.fit
    analysis.mask = peaks.mask
    for name, attribute in (("skNoise", "sigma"), ("darkCurrent", "lam"),
                            ("aduConversion", "gain"), ("pedestal", "x0")):
        reason = fit.reasons.get(attribute, "")
        if reason:
            missing(analysis, name, reason, with_error=True)
        else:
            analysis.values[name] = float(getattr(fit, attribute))
            analysis.values[f"{name}_err"] = float(getattr(fit, f"{attribute}_err"))
    if np.isfinite(fit.chi2_reduced):
        analysis.values["fitChi2"] = float(fit.chi2_reduced)
    else:
        missing(analysis, "fitChi2", fit.reasons.get("gain") or "no fit")
    sigma = analysis.values.get("skNoise", np.nan)
    gain = analysis.values.get("aduConversion", np.nan)
    if np.isfinite(sigma) and np.isfinite(gain):
        resolution = sigma / gain
        relative = np.hypot(analysis.values["skNoise_err"] / sigma,
                            analysis.values["aduConversion_err"] / gain)
        analysis.values["resolution"] = resolution
        analysis.values["resolution_err"] = resolution * relative
    else:
        missing(analysis, "resolution", analysis.reasons.get("aduConversion")
                 or analysis.reasons.get("skNoise", ""), with_error=True)
    # every pixel counts for the tail ratio, clusters included: that is what it flags
    ratio, reason = fitting.tail_ratio(fit, peaks.values)
    if reason:
        missing(analysis, "tailRatio", reason)
    else:
        analysis.values["tailRatio"] = float(ratio)
    _mask_and_drift_figures(analysis, peaks)


def _mask_and_drift_figures(analysis, peaks):
    """maskedFraction, clusters, hotColumns, baselineDrift and baselineCorrected."""
    if peaks.mask is None:
        reason = "no first fit with resolved peaks to find clusters with"
        for name in ("maskedFraction", "clusters", "hotColumns"):
            missing(analysis, name, reason)
    else:
        analysis.values["maskedFraction"] = peaks.mask.fraction
        analysis.values["clusters"] = float(peaks.mask.clusters)
        analysis.values["hotColumns"] = float(peaks.mask.hot_columns.size)
    if peaks.levels is None:
        reason = "no zero-electron peak to find the rows' zero levels with"
        missing(analysis, "baselineDrift", reason)
        missing(analysis, "baselineCorrected", reason)
        return
    if np.isfinite(peaks.levels.rms):
        analysis.values["baselineDrift"] = peaks.levels.rms
    else:
        missing(analysis, "baselineDrift", "fewer than 3 blocks of rows with pixels to use")
    analysis.values["baselineCorrected"] = float(peaks.corrected)


def _peaks_bin_width(analysis, values):
    """1 ADU (the original tool's bins) unless the zero peak is narrower than 2 ADU: then
    finer bins (see :func:`fine_bin_width`), so that σ spans several bins."""
    sigma = fitting.zero_peak_width(values)
    if not sigma < 2.0:
        return 1.0
    stats = analysis.statistics
    return min(fine_bin_width(sigma, stats.plan.nskips, stats.integer_valued), 1.0)


def _median(values):
    """``np.nanmedian`` of millions of values in a few passes instead of a selection over all:
    a sample brackets the median, and only the values in the bracket are ordered."""
    values = np.asarray(values).ravel()
    n = values.size - np.count_nonzero(np.isnan(values))
    if n == 0:
        return np.nan
    ranks = [(n - 1) // 2, n // 2]  # the middle one, or the middle two
    sample = np.sort(values[:: max(values.size // 10_000, 1)])
    sample = sample[~np.isnan(sample)]
    if values.size > 100_000 and sample.size > 1000:
        # ±5 standard deviations of the sample's median rank
        half = int(5 * np.sqrt(sample.size) / 2) + 1
        middle = sample.size // 2
        low, high = sample[max(middle - half, 0)], sample[min(middle + half, sample.size - 1)]
        below = np.count_nonzero(values < low)
        bracket = values[(values >= low) & (values <= high)]
        if below <= ranks[0] and ranks[1] < below + bracket.size:
            ordered = np.partition(bracket, [r - below for r in ranks])
            return (float(ordered[ranks[0] - below]) + float(ordered[ranks[1] - below])) / 2
    ordered = np.partition(values[~np.isnan(values)], ranks)
    return (float(ordered[ranks[0]]) + float(ordered[ranks[1]])) / 2


def variances(analysis):
    """pixVar and clustVar: medians of the per-pixel and per-cluster variances."""
    stats = analysis.statistics
    if stats.plan.nskips < 4:
        reason = f"nskips = {stats.plan.nskips}: fewer than 2 samples after the first 2"
        missing(analysis, "pixVar", reason)
    else:
        analysis.values["pixVar"] = _median(stats.pixel_variance)
    if stats.cluster_variance.size == 0:
        if stats.plan.cluster_pixels < 2:
            reason = f"nskips = {stats.plan.nskips}: a cluster would have fewer than 2 pixels"
        else:
            reason = f"image too small for a cluster of {stats.plan.cluster_pixels} pixels"
        missing(analysis, "clustVar", reason)
    else:
        analysis.values["clustVar"] = _median(stats.cluster_variance)


