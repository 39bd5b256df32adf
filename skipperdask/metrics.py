"""The quality metrics of SPEC §2, assembled from the one-pass statistics and the fits.

:func:`image_metrics` is the entry point for one image; the campaign pipeline
computes the same statistics chunk by chunk on a cluster and calls
:func:`metrics_dataset` on them. A value the data cannot determine is NaN, and its
``<name>_reason`` variable says why.
"""

import logging
from dataclasses import dataclass, field

import dask
import numpy as np
import xarray as xr

from . import fitting
from .blas import single_threaded_blas
from .config import Options
from .io.layout import resolve_polarity
from .peaks import FitSettings, fit_average_image
from .statistics import Histogram, ImageStatistics, ValueCounts, plan_of, row_chunks

logger = logging.getLogger(__name__)

#: metrics with a one-sigma uncertainty ``<name>_err``
WITH_ERROR = ("dSdskip", "skNoise", "darkCurrent", "aduConversion", "pedestal", "resolution")
#: metrics that can be missing, each with a ``<name>_reason`` variable
REASONED = (
    "aveImgS", "dSdskip", "imgNoise", "skNoise", "darkCurrent", "aduConversion", "pedestal",
    "resolution", "fitChi2", "pixVar", "clustVar", "tailRatio", "maskedFraction", "clusters",
    "hotColumns", "baselineDrift", "baselineCorrected",
)
#: the float variables over ``amp``, in catalogue order
METRICS = (
    "aveImgS", "dSdskip", "dSdskip_err", "imgNoise", "skNoise", "skNoise_err", "darkCurrent",
    "darkCurrent_err", "aduConversion", "aduConversion_err", "pedestal", "pedestal_err",
    "resolution", "resolution_err", "fitChi2", "pixVar", "clustVar", "tailRatio",
    "maskedFraction", "clusters", "hotColumns", "baselineDrift", "baselineCorrected",
)
UNITS = {
    "aveImgS": "nats", "dSdskip": "milli-nats per sample", "imgNoise": "ADU", "skNoise": "ADU",
    "darkCurrent": "e-/pixel", "aduConversion": "ADU/e-", "pedestal": "ADU", "resolution": "e-",
    "pixVar": "ADU^2", "clustVar": "ADU^2", "tailRatio": "1", "fitChi2": "1",
    "noise_vs_n": "ADU", "maskedFraction": "1", "clusters": "1", "hotColumns": "1",
    "baselineDrift": "ADU", "baselineCorrected": "1",
}
#: the data decide the polarity from the tails of the average image beyond this many of its
#: most extreme pixels on each side (a few bad pixels must not decide)
POLARITY_TAIL_PIXELS = 10
#: ... when one tail reaches this many times farther from the median than the other
POLARITY_TAIL_RATIO = 1.5


@dataclass
class AmpAnalysis:
    """Everything measured on one amplifier image: the metrics and the fits behind them.

    The plots draw from it; :meth:`metrics` gives the catalogue's values.
    """

    statistics: ImageStatistics
    polarity_source: str = "default"  # what decided statistics.plan.polarity
    entropies: np.ndarray = None  # of single-sample images 0 … n-1
    entropy_line: object = None  # fitting.LineFit of entropies against sample index
    sample_noise_fits: list = field(default_factory=list)  # fitting.GaussianFit per sample
    noise_fits: list = field(default_factory=list)  # fitting.GaussianFit per partial average
    peaks_fit: object = None  # fitting.GaussPoissonFit of the average image
    mask: object = None  # mask.ClusterMask of the pixels left out of that fit, or None
    values: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)

    def metrics(self):
        """The metric values, with NaN for each missing one."""
        return {name: self.values.get(name, np.nan) for name in METRICS}


def _missing(analysis, name, reason, *, with_error=False):
    analysis.values[name] = np.nan
    if with_error:
        analysis.values[f"{name}_err"] = np.nan
    analysis.reasons[name] = reason


def zero_peak_window(histogram):
    """Bins ``[lo, hi)`` of a 1-ADU histogram from median - 3 MAD to median + 1 MAD.

    The seed fits its noise Gaussian on median ± 3 MAD (normal-scaled). Charge only raises
    values, so the low side is pure readout noise, while the high side takes in the
    one-electron peak as soon as the noise is low enough to resolve it, and would widen the
    Gaussian: the fit stops at median + 1 MAD (the same σ, within statistics, when the
    noise is far above the gain). At least 3 bins on each side.
    """
    median = histogram.quantile(0.5)
    deviation = np.abs(histogram.values + 0.5 - median)
    order = np.argsort(deviation)
    cumulative = np.cumsum(histogram.counts[order])
    mad = 1.4826 * float(deviation[order][np.searchsorted(cumulative, cumulative[-1] / 2)])
    return int(np.floor(median - max(3 * mad, 3))), int(np.ceil(median + max(mad, 3))) + 1


def sample_noise_histogram(statistics, index):
    """Counts and edges of the window of single-sample image ``index`` that imgNoise fits."""
    histogram = statistics.histograms[index]
    lo, hi = zero_peak_window(histogram)
    offset = 0.5 if statistics.integer_valued else 0.0  # integers sit at the centres of bins
    return histogram.dense(lo, hi), np.arange(lo, hi + 1) - offset


def _single_sample_noise(analysis):
    """imgNoise: Gaussian fits on each single-sample image (first 50; see zero_peak_window)."""
    stats = analysis.statistics
    if stats.plan.nskips == 1 and not stats.integer_valued:
        # an averaged file (the seed's imgNoise is then the noise of the average): its
        # values are in memory and its noise may be far below the 1-ADU bins
        if not analysis.noise_fits:
            _missing(analysis, "imgNoise", analysis.reasons["noise_vs_n"])
            return
        analysis.sample_noise_fits.append(analysis.noise_fits[0])
    else:
        _fit_single_samples(analysis)
    sigmas = [f.sigma for f in analysis.sample_noise_fits if not f.reason]
    if sigmas:
        analysis.values["imgNoise"] = float(np.mean(sigmas))
    else:
        _missing(analysis, "imgNoise", analysis.sample_noise_fits[0].reason or "no noise fit")


def _fit_single_samples(analysis):
    """The Gaussians of the single-sample images, fitted all at once."""
    stats = analysis.statistics
    nsamples = min(stats.plan.noise_samples, len(stats.histograms))
    windows = [sample_noise_histogram(stats, index) for index in range(nsamples)]
    analysis.sample_noise_fits.extend(_fit_windows(windows))


def _fit_windows(windows):
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


def _entropy_slope(analysis):
    """aveImgS and dSdskip: entropies of the average and of the single-sample images."""
    stats = analysis.statistics
    average = stats.average_values
    if average.size == 0:
        _missing(analysis, "aveImgS", "no finite pixel")
    else:
        # 1-ADU bins from the image's minimum, every value its own bin
        histogram = Histogram.of_value_counts(average, origin=average.min)
        analysis.values["aveImgS"] = histogram.entropy()
    nsamples = stats.plan.entropy_samples
    analysis.entropies = np.array([h.entropy() for h in stats.histograms[:nsamples]])
    if stats.plan.nskips == 1:
        _missing(analysis, "dSdskip", "nskips = 1: no single samples", with_error=True)
        return
    line = fitting.fit_line(np.arange(nsamples, dtype=float), analysis.entropies)
    analysis.entropy_line = line
    if line.reason:
        _missing(analysis, "dSdskip", line.reason, with_error=True)
    else:
        analysis.values["dSdskip"] = 1000 * line.slope
        analysis.values["dSdskip_err"] = 1000 * line.slope_err


def _noise_against_samples(analysis):
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
        width = _fine_bin_width(sigma, levels[level], stats.integer_valued)
        values = (stats.average_values if level == last
                  else stats.partial_averages[level].ravel())
        windows.append(fitting.histogram(values, x0 - 4 * sigma, x0 + sigma, width))
    analysis.noise_fits.extend([*fits, *_fit_windows(windows)])


def _zero_peak_fit(stats, level):
    """The zero-electron peak of partial average ``level``, found from scratch."""
    if stats.plan.levels[level] == stats.plan.nskips:
        values = stats.average_values  # the average of all samples, every row: known
    else:
        values = ValueCounts.of_values(stats.partial_averages[level])
    bin_width = _fine_bin_width(fitting.zero_peak_width(values), stats.plan.levels[level],
                                stats.integer_valued)
    return fitting.fit_zero_peak(values, bin_width=bin_width)


def _fine_bin_width(sigma, nsamples, integer_valued):
    """A power of 2 at most a quarter of the noise σ, and never finer than the 1/n steps of
    an average of n digitised samples (finer bins would be empty in between)."""
    width = 2.0 ** np.floor(np.log2(max(sigma, 1e-6) / 4)) if np.isfinite(sigma) else 1.0
    if integer_valued:
        # an odd number of steps per bin: bins are centred on multiples of the width, so
        # their edges then fall half-way between two possible values, never on one
        steps = max(np.ceil(width * nsamples - 1e-9), 1)
        width = (steps + (steps % 2 == 0)) / nsamples
    return float(width)


def _average_image_fit(analysis, bin_width, settings):
    """skNoise, darkCurrent, aduConversion, pedestal, resolution, fitChi2, tailRatio, the
    cluster mask they are fitted outside of and the drift removed first
    (:func:`skipperdask.peaks.fit_average_image`)."""
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
            _missing(analysis, name, reason, with_error=True)
        else:
            analysis.values[name] = float(getattr(fit, attribute))
            analysis.values[f"{name}_err"] = float(getattr(fit, f"{attribute}_err"))
    if np.isfinite(fit.chi2_reduced):
        analysis.values["fitChi2"] = float(fit.chi2_reduced)
    else:
        _missing(analysis, "fitChi2", fit.reasons.get("gain") or "no fit")
    sigma = analysis.values.get("skNoise", np.nan)
    gain = analysis.values.get("aduConversion", np.nan)
    if np.isfinite(sigma) and np.isfinite(gain):
        resolution = sigma / gain
        relative = np.hypot(analysis.values["skNoise_err"] / sigma,
                            analysis.values["aduConversion_err"] / gain)
        analysis.values["resolution"] = resolution
        analysis.values["resolution_err"] = resolution * relative
    else:
        _missing(analysis, "resolution", analysis.reasons.get("aduConversion")
                 or analysis.reasons.get("skNoise", ""), with_error=True)
    # every pixel counts for the tail ratio, clusters included: that is what it flags
    ratio, reason = fitting.tail_ratio(fit, peaks.values)
    if reason:
        _missing(analysis, "tailRatio", reason)
    else:
        analysis.values["tailRatio"] = float(ratio)
    _mask_and_drift_figures(analysis, peaks)


def _mask_and_drift_figures(analysis, peaks):
    """maskedFraction, clusters, hotColumns, baselineDrift and baselineCorrected."""
    if peaks.mask is None:
        reason = "no first fit with resolved peaks to find clusters with"
        for name in ("maskedFraction", "clusters", "hotColumns"):
            _missing(analysis, name, reason)
    else:
        analysis.values["maskedFraction"] = peaks.mask.fraction
        analysis.values["clusters"] = float(peaks.mask.clusters)
        analysis.values["hotColumns"] = float(peaks.mask.hot_columns.size)
    if peaks.levels is None:
        reason = "no zero-electron peak to find the rows' zero levels with"
        _missing(analysis, "baselineDrift", reason)
        _missing(analysis, "baselineCorrected", reason)
        return
    if np.isfinite(peaks.levels.rms):
        analysis.values["baselineDrift"] = peaks.levels.rms
    else:
        _missing(analysis, "baselineDrift", "fewer than 3 blocks of rows with pixels to use")
    analysis.values["baselineCorrected"] = float(peaks.corrected)


def _peaks_bin_width(analysis, values):
    """1 ADU (SPEC §2) unless the zero peak is narrower than 2 ADU: then finer bins (see
    :func:`_fine_bin_width`), so that σ spans several bins."""
    sigma = fitting.zero_peak_width(values)
    if not sigma < 2.0:
        return 1.0
    stats = analysis.statistics
    return min(_fine_bin_width(sigma, stats.plan.nskips, stats.integer_valued), 1.0)


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


def _variances(analysis):
    """pixVar and clustVar: medians of the per-pixel and per-cluster variances."""
    stats = analysis.statistics
    if stats.plan.nskips < 4:
        reason = f"nskips = {stats.plan.nskips}: fewer than 2 samples after the first 2"
        _missing(analysis, "pixVar", reason)
    else:
        analysis.values["pixVar"] = _median(stats.pixel_variance)
    if stats.cluster_variance.size == 0:
        if stats.plan.cluster_pixels < 2:
            reason = f"nskips = {stats.plan.nskips}: a cluster would have fewer than 2 pixels"
        else:
            reason = f"image too small for a cluster of {stats.plan.cluster_pixels} pixels"
        _missing(analysis, "clustVar", reason)
    else:
        analysis.values["clustVar"] = _median(stats.cluster_variance)


def charge_side(values):
    """On which side of the zero-charge peak the charge of an image lies, from its values.

    Charge only adds: dark current, clusters and tracks make a long tail on the charge side
    of the median, while the other side ends where the noise of the emptiest pixels ends
    (in an illuminated flat field: at the level of its empty pixels, far closer than the
    tracks reach). The tails are measured beyond the ``POLARITY_TAIL_PIXELS`` most extreme
    pixels on each side: the side whose tail reaches ``POLARITY_TAIL_RATIO`` times farther
    from the median than the other holds the charge.

    Parameters
    ----------
    values : skipperdask.stats.ValueCounts
        The average image.

    Returns
    -------
    int
        +1: charge raises the values; -1: it lowers them; 0: the data cannot tell (too few
        pixels, or tails of similar lengths, as in an image of noise alone).
    """
    if values.size <= 2 * POLARITY_TAIL_PIXELS:
        return 0
    low, high = values.order_statistics(
        [POLARITY_TAIL_PIXELS - 1, values.size - POLARITY_TAIL_PIXELS])
    median = float(values.quantile(0.5))
    below, above = median - float(low), float(high) - median
    if above > POLARITY_TAIL_RATIO * below:
        return 1
    if below > POLARITY_TAIL_RATIO * above:
        return -1
    return 0


def settle_polarity(statistics, source):
    """The statistics in the frame where charge raises the value, and what decided it.

    When nothing but the default decided the polarity (``source == "default"``), the data
    decide (:func:`charge_side`) and the statistics are flipped if they say the other way;
    when the data cannot tell, the default stands.

    Parameters
    ----------
    statistics : skipperdask.stats.ImageStatistics
        Computed with the provisional polarity ``statistics.plan.polarity``.
    source : {"option", "header", "name", "default"}
        What decided that polarity (:func:`skipperdask.reader.resolve_polarity`).

    Returns
    -------
    statistics : skipperdask.stats.ImageStatistics
    source : {"option", "header", "name", "data", "default"}
    """
    if source != "default":
        return statistics, source
    side = charge_side(statistics.average_values)
    if side == 0:
        return statistics, "default"
    return (statistics if side > 0 else statistics.flipped()), "data"


def _contained(analysis, step, names, *args):
    """Run one step of the analysis; an unexpected failure inside it (a LinAlgError, a
    ValueError of scipy, …) makes only the metrics it fills, ``names``, missing, with the
    reason "internal error: …", logged on one line, while the other steps go on."""
    try:
        step(analysis, *args)
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001  (whatever it is, it must stay in this step)
        reason = f"internal error: {type(error).__name__}: {error}"
        logger.warning("%s missing: %s", ", ".join(names), reason)
        for name in names:
            _missing(analysis, name, reason, with_error=name in WITH_ERROR)


#: the steps of the analysis, in order, and the metrics each fills
_STEPS = (
    (_entropy_slope, ("aveImgS", "dSdskip")),
    # first: its zero peak places the last one of the noise against samples
    (_average_image_fit, ("skNoise", "darkCurrent", "aduConversion", "pedestal", "resolution",
                          "fitChi2", "tailRatio", "maskedFraction", "clusters", "hotColumns",
                          "baselineDrift", "baselineCorrected")),
    (_noise_against_samples, ("noise_vs_n",)),  # and imgNoise of an averaged image
    (_single_sample_noise, ("imgNoise",)),
    (_variances, ("pixVar", "clustVar")),
)


def analyse(statistics, options, *, polarity_source="default"):
    """All the measurements of one amplifier image from its statistics.

    Parameters
    ----------
    statistics : skipperdask.statistics.ImageStatistics
        The combined statistics of the whole image.
    options : skipperdask.config.Options
        The run's options: the peaks' bin width, the fit's acceptance, the cluster mask.
    polarity_source : {"option", "header", "name", "default"}
        What decided the polarity of ``statistics``; with ``"default"`` the data decide
        (:func:`settle_polarity`).

    Returns
    -------
    AmpAnalysis
        Its ``statistics`` are in the frame of the settled polarity. An unexpected failure
        in one step leaves the metrics of that step missing ("internal error: …") and the
        others computed.
    """
    fit_settings = FitSettings.of_options(options)
    statistics, polarity_source = settle_polarity(statistics, polarity_source)
    analysis = AmpAnalysis(statistics, polarity_source=polarity_source)
    for step, names in _STEPS:
        args = (options.peaks_bin_width, fit_settings) if step is _average_image_fit else ()
        _contained(analysis, step, names, *args)
    return analysis


def metrics_dataset(analyses, amp_names, *, attrs=None):
    """The metrics of one image as an ``xarray.Dataset`` over ``amp``.

    Parameters
    ----------
    analyses : list of AmpAnalysis
        One per amplifier.
    amp_names : list of str
    attrs : dict, optional
        Stored as the Dataset's attributes (path, options), with ``polarity``: the
        amplifiers' polarity, or 0 when they differ.

    Returns
    -------
    xarray.Dataset
        The metrics, their ``_reason``, ``nskips``, ``polarity`` and ``polarity_source``
        over ``amp``, and ``noise_vs_n`` over ``(amp, nsamp)``.
    """
    data = {}
    for name in METRICS:
        data[name] = ("amp", np.array([a.values.get(name, np.nan) for a in analyses], float))
        if name in UNITS:
            data[name] += ({"units": UNITS[name]},)
    for name in REASONED:
        reasons = [a.reasons.get(name, "") for a in analyses]
        data[f"{name}_reason"] = ("amp", np.array(reasons, dtype=object))
    data["nskips"] = ("amp", np.array([a.statistics.plan.nskips for a in analyses], np.int64))
    polarities = np.array([a.statistics.plan.polarity for a in analyses], np.int64)
    data["polarity"] = ("amp", polarities, {"long_name": "+1: charge raises the value"})
    data["polarity_source"] = ("amp", np.array([a.polarity_source for a in analyses], object),
                               {"long_name": "what decided the polarity"})
    file_polarity = int(polarities[0]) if len(set(polarities)) == 1 else 0
    levels = max((a.statistics.plan.levels for a in analyses), key=len)
    noise = np.full((len(analyses), len(levels)), np.nan)
    for i, analysis in enumerate(analyses):
        for j, result in enumerate(analysis.noise_fits):
            if result is not None and not result.reason:
                noise[i, j] = result.sigma
    data["noise_vs_n"] = (("amp", "nsamp"), noise, {"units": "ADU",
                          "long_name": "noise of the average of the first n samples"})
    return xr.Dataset(data, coords={"amp": list(amp_names), "nsamp": list(levels)},
                      attrs=dict(attrs or {}) | {"polarity": file_polarity})


def image_statistics(pixels, options, *, rows_per_chunk=None, scheduler=None):
    """The statistics of every amplifier of one image, and what decided their polarity.

    Each row chunk is one dask task (:func:`skipperdask.statistics.row_chunks`: an array of
    :func:`skipperdask.open_image` is read from its file as a campaign reads it), the chunks
    of an amplifier combined into its statistics (:func:`combined`).

    Parameters
    ----------
    pixels : xarray.DataArray
        Dims ``(amp, row, col, skip)``.
    options : skipperdask.config.Options
        Polarity (when ``pixels`` does not say it), baseline, samples used.
    rows_per_chunk : int, optional
        Rows of one task; default the array's own row chunks.
    scheduler : str, optional
        The dask scheduler (``"sync"`` inside a worker); default dask's.

    Returns
    -------
    statistics : list of skipperdask.statistics.ImageStatistics
        One per amplifier, in the order of ``pixels["amp"]``, with the provisional polarity.
    polarity_source : {"option", "header", "name", "default"}
    """
    if pixels.dims != ("amp", "row", "col", "skip"):
        raise ValueError(f"pixels must have dims (amp, row, col, skip), not {pixels.dims}")
    polarity, source = _polarity(pixels, options.polarity)
    plan = plan_of(pixels.shape[1:], polarity, options)
    return combined(row_chunks(pixels, plan, rows_per_chunk), scheduler=scheduler), source


def combined(chunks, *, scheduler=None):
    """The statistics of every amplifier from the statistics of its row chunks.

    Parameters
    ----------
    chunks : list of list of skipperdask.statistics.RowChunk
        One list per amplifier (:func:`skipperdask.statistics.row_chunks`).
    scheduler : str, optional
        The dask scheduler; ``"sync"`` computes the chunks in this thread, one after the
        other, as dask's synchronous scheduler would, but without building a graph (a
        campaign's task on its worker: a few milliseconds less per file).

    Returns
    -------
    list of skipperdask.statistics.ImageStatistics
    """
    if scheduler == "sync":
        return [ImageStatistics.combine([chunk.compute() for chunk in amp]) for amp in chunks]
    delayed = [
        dask.delayed(ImageStatistics.combine)([dask.delayed(c.function)(*c.args) for c in amp])
        for amp in chunks
    ]
    return list(dask.compute(*delayed, scheduler=scheduler))


def analyse_image(pixels, options, *, rows_per_chunk=None, scheduler=None):
    """The measurements of every amplifier of one image: what :func:`image_metrics` tabulates.

    Parameters are those of :func:`image_statistics`.

    Returns
    -------
    list of AmpAnalysis
        One per amplifier, in the order of ``pixels["amp"]``; each holds the statistics and
        the fits behind the metrics (the diagnostic plots draw them).
    """
    statistics, source = image_statistics(pixels, options, rows_per_chunk=rows_per_chunk,
                                          scheduler=scheduler)
    with single_threaded_blas():
        return [analyse(s, options, polarity_source=source) for s in statistics]


def measure(statistics, options, *, polarity_source, amp_names, path):
    """The metrics Dataset of one image from the statistics of its amplifiers: what
    :func:`image_metrics` and a campaign's tasks give. (Run it with BLAS on one thread:
    :func:`skipperdask.blas.single_threaded_blas`, or a worker's
    :class:`~skipperdask.blas.SingleThreadedBLAS`.)

    Parameters
    ----------
    statistics : list of skipperdask.statistics.ImageStatistics
        One per amplifier, with the provisional polarity.
    options : skipperdask.config.Options
    polarity_source : {"option", "header", "name", "default"}
        What decided that polarity.
    amp_names : list of str
    path : str
        The image's file, kept in the attributes with the baseline.

    Returns
    -------
    xarray.Dataset
        See :func:`image_metrics`.
    """
    analyses = [analyse(s, options, polarity_source=polarity_source) for s in statistics]
    return metrics_dataset(analyses, amp_names,
                           attrs={"path": path, "baseline": options.baseline})


def _polarity(pixels, polarity):
    """The polarity and what decided it: the image's own (as :func:`skipperdask.open_image`
    resolved it), else :func:`resolve_polarity` on its attributes with ``polarity``."""
    if "polarity" in pixels.attrs:
        # a polarity given with the array, without saying where from, was chosen for it
        return int(pixels.attrs["polarity"]), pixels.attrs.get("polarity_source", "option")
    return resolve_polarity(pixels.attrs.get("path", ""), pixels.attrs, polarity)


def image_metrics(pixels, *, polarity=None, baseline=None, bin_width=None, rows_per_chunk=None,
                  options=None, scheduler=None):
    """The quality metrics of one image.

    Parameters
    ----------
    pixels : xarray.DataArray
        Dims ``(amp, row, col, skip)`` as :func:`skipperdask.open_image` returns, backed by
        dask or numpy. Each amplifier is a separate image.
    polarity : {+1, -1}, optional
        Sign that makes charge raise the value; default ``pixels.attrs["polarity"]`` as
        ``pixels.attrs["polarity_source"]`` says it was decided, and when nothing but the
        default decided it, the data of each amplifier (:func:`settle_polarity`).
    baseline : {"none", "row-median"}, optional
        Per-row baseline subtraction (default ``skipperdask.baseline``). Use
        ``"row-median"`` when the baseline drifts along rows: it subtracts each row's
        median average-image value, which is the zero-charge level wherever most
        pixels are empty.
    bin_width : float or "auto", optional
        Bin width (ADU) of the average image's histogram for the peaks fit; default
        ``skipperdask.peaks-bin-width`` ("auto": 1 ADU unless the averaged noise is
        below 1 ADU).
    rows_per_chunk : int, optional
        Rows of one statistics task (rounded to the cluster tile's height); default the
        array's own row chunks.
    options : skipperdask.config.Options, optional
        Every option; default from ``dask.config``. The arguments above override it.
    scheduler : str, optional
        The dask scheduler of the pass over the pixels; default dask's.

    Returns
    -------
    xarray.Dataset
        Over ``amp``: the metrics (``aveImgS``, ``dSdskip``, ``dSdskip_err``,
        ``imgNoise``, ``skNoise``, …), ``pedestal``, ``resolution`` (e⁻), ``fitChi2``,
        ``noise_vs_n`` over ``(amp, nsamp)``, ``<name>_reason`` strings, and ``polarity``
        with ``polarity_source`` ("option", "header", "name", "data" or "default").
    """
    options = (options or Options.from_config()).updated(baseline=baseline,
                                                          peaks_bin_width=bin_width)
    if polarity is not None:
        pixels = pixels.assign_attrs(polarity=polarity, polarity_source="option")
    statistics, source = image_statistics(pixels, options, rows_per_chunk=rows_per_chunk,
                                          scheduler=scheduler)
    with single_threaded_blas():
        return measure(statistics, options, polarity_source=source,
                       amp_names=[str(a) for a in pixels["amp"].values],
                       path=pixels.attrs.get("path", ""))
