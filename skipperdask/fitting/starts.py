"""Starting values from the data: the zero-electron peak, the noise, candidate gains.

Charge only raises values, so the lowest values are the zero-electron peak's lower tail
whatever lies above (charge, tracks, clusters): the noise scale and the zero peak come from
there. Candidate gains come from two complementary views of the histogram:

- :func:`residual_gains`: peaks of the histogram left after subtracting the zero peak;
  they see a one-electron peak of a few dozen pixels beside a zero peak of millions (small λ);
- :func:`spacing_gains`: the period of the peaks, from the empirical characteristic function
  φ(t) = E[exp(itx)] of the values. For the Gaussian-smeared Poisson,
  ln|φ(t)| = -σ²t²/2 + λ(cos(tg) - 1): once the Gaussian envelope is divided out, |φ| returns
  to 1 at t = 2π/g whatever λ, so its first maximum gives g when several peaks are populated
  (large λ), where the zero peak is no longer the tallest and may be only a shoulder;
- :func:`moment_gain`: (variance - σ²)/(mean - x0), the photon-transfer estimate.

At t = 2π/g, φ(t) = exp(2πi x0/g) exp(-2π²σ²/g²): its phase gives the positions of all the
peaks, x0 modulo g (:func:`peak_phase`), so the fit starts on the peaks' comb.
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

from ..statistics import ValueCounts
from .gaussian import GaussianFit, fit_gaussian
from .likelihood import histogram, interval_probabilities
from .model import MIN_PEAK_PIXELS
from .poisson import normal_sf

#: fewest finite values for a fit
MIN_PIXELS = 100
NOT_RESOLVED_FEW = "single-electron peaks not resolved: only"
#: most bins of the histogram whose characteristic function is taken
MAX_SPACING_BINS = 4096


def distribution(values):
    """The ValueCounts of an array's finite values (or the ValueCounts given)."""
    return values if isinstance(values, ValueCounts) else ValueCounts.of_values(values)


def check_values(values):
    """(ValueCounts of the finite values, {} , nan) for values that can be fitted, else
    (them, a reason per parameter that cannot be measured, x0 when it is known)."""
    values = distribution(values)
    if values.size == 0:
        reason = "no finite pixel value"
        return values, dict.fromkeys(("x0", "sigma", "gain", "lam"), reason), np.nan
    if values.size < MIN_PIXELS:
        reason = f"too few pixels ({values.size} < {MIN_PIXELS})"
        return values, dict.fromkeys(("x0", "sigma", "gain", "lam"), reason), np.nan
    if values.min == values.max:
        reason = f"constant image (every value is {values.min:.6g})"
        return values, dict.fromkeys(("sigma", "gain", "lam"), reason), values.min
    return values, {}, np.nan


def bin_probabilities(edges, mu, sigma):
    """Probability of each bin for Normal(mu_k, sigma): shape (len(mu), len(edges) - 1)."""
    z = (np.asarray(edges)[None, :] - np.asarray(mu, dtype=float)[:, None]) / sigma
    return interval_probabilities(z)


@dataclass(frozen=True)
class ZeroPeak:
    """The zero-electron peak from a Gaussian on its lower side."""

    x0: float
    sigma: float
    area: float
    x0_err: float
    sigma_err: float


def fit_zero_peak(values, *, bin_width):
    """The zero-electron peak of an image's values: a Gaussian fitted on its lower side.

    Charge only raises values, so the lower side of the lowest prominent peak is readout
    noise alone, whatever lies above (charge, tracks, clusters).

    Parameters
    ----------
    values : array_like
        Pixel values, charge raising the value.
    bin_width : float
        Bin width of the histogram, ADU.

    Returns
    -------
    GaussianFit
        ``mu`` the peak's position, ``sigma`` the noise; NaN with ``reason`` when it cannot
        be measured.
    """
    values, reasons, x0 = check_values(values)
    if reasons:
        return GaussianFit(x0, *[np.nan] * 6, reasons["sigma"])
    zero, reason, peak = zero_peak(values, bin_width)
    if zero is None:
        return GaussianFit(peak, *[np.nan] * 6, reason)
    # the first estimate starts from a rough scale; refit from x0 - 4σ to x0 + 1σ, which
    # holds most of the peak and little of the one-electron peak wherever that is resolved
    refined = fit_gaussian(*histogram(values, zero.x0 - 4 * zero.sigma, zero.x0 + zero.sigma,
                                       bin_width))
    if refined.reason:
        return GaussianFit(zero.x0, zero.sigma, zero.area, zero.x0_err, zero.sigma_err, np.nan,
                           np.nan)
    return refined


def zero_peak_width(values):
    """A rough (±30 %) width σ of the zero-electron peak, from the lowest quantiles alone.

    Charge only raises values, so the lowest values are the zero peak's lower tail, whatever
    the charge, tracks or clusters above it. Used to choose a histogram's bin width.
    ``values``: an array (non-finite values are left out) or its ValueCounts.
    """
    values = distribution(values)
    if values.size < MIN_PIXELS:
        return np.nan
    return first_scale(values, 0.0)[1]


def first_scale(values, bin_width):
    """Lowest quantile and a scale of the noise from the spread of the lowest quantiles.

    The lowest values all belong to the zero-electron peak; between the quantiles p and 4p
    (p = 0.1 %) its Gaussian tail spans 0.44σ (λ = 0) to 0.65σ (λ = 3), so twice the
    spread is σ within ±30 %; the histogram cannot resolve less than a bin.
    """
    p_low = max(0.001, 10 / values.size)
    q1, q2 = values.quantile([p_low, 4 * p_low])
    return q1, max(2 * (q2 - q1), bin_width)


def smoothed(counts, width_in_bins):
    """Counts smoothed by a Gaussian kernel (left alone below one bin), and the variance factor."""
    if width_in_bins < 1.0:
        return counts, 1.0
    # a Poisson count smoothed by a unit-area Gaussian of s bins keeps 1/(2√π s) of its variance
    return (ndimage.gaussian_filter1d(counts, width_in_bins, mode="constant"),
            1.0 / (2.0 * np.sqrt(np.pi) * width_in_bins))


def significant_peaks(smooth, variance_factor):
    """Indices of the peaks of a smoothed histogram that stand 5 standard deviations out.

    A peak's prominence must exceed 5 times the Poisson noise of the smoothed count at its
    top, and 1 % of the highest count (so that far tails do not count).
    """
    peaks, properties = signal.find_peaks(np.r_[0.0, smooth, 0.0], prominence=0.0)
    peaks = peaks - 1
    noise = np.sqrt(np.maximum(smooth[peaks], 1.0) * variance_factor)
    keep = properties["prominences"] >= np.maximum(5 * noise, 0.01 * smooth.max())
    return peaks[keep]


def lowest_peak(values, bin_width):
    """Position of the lowest prominent peak (the zero-electron peak) and the first scale."""
    q1, scale = first_scale(values, bin_width)
    counts, edges = histogram(values, q1 - 3 * scale, q1 + 8 * scale, bin_width)
    smooth, variance_factor = smoothed(counts, scale / 2 / np.diff(edges[:2])[0])
    peaks = significant_peaks(smooth, variance_factor)
    index = peaks[0] if peaks.size else int(np.argmax(smooth))
    return 0.5 * (edges[index] + edges[index + 1]), scale


def zero_peak(values, bin_width):
    """The zero-electron peak: (``ZeroPeak``, "") or (None, reason) with the peak's position."""
    peak, scale = lowest_peak(values, bin_width)
    # whole bins only: values cut inside a bin would leave the edge bins part-filled
    counts, edges = histogram(values, peak - 4 * scale,
                               peak + max(0.5 * scale, 1.5 * bin_width), bin_width)
    spill = counts.sum() - counts.max()
    if spill < max(10.0, 1e-4 * counts.max()):
        return None, ("zero noise: the zero-electron peak lies within one bin of "
                      f"{np.diff(edges[:2])[0]:.3g} ADU, its width cannot be measured"), peak
    gauss = fit_gaussian(counts, edges)
    if gauss.reason:
        return None, f"zero-electron peak: {gauss.reason}", peak
    zero = ZeroPeak(gauss.mu, gauss.sigma, gauss.amplitude, gauss.mu_err, gauss.sigma_err)
    return zero, "", peak


def search_top(values, x0, sigma):
    """Upper edge of the histogram searched for the single-electron peaks.

    Four times the offset of the lower quartile of the charged values (above x0 + 4σ): for
    λ ≤ 3 that quartile lies at most in the second or third peak, so the first peaks are in,
    while tracks and clusters (rarely a quarter of the charged pixels) stay mostly out.
    """
    charged = values.above(x0 + 4 * sigma)
    if charged.size == 0:
        return x0 + 25 * sigma, 0
    quartile = charged.quantile(0.25)
    return x0 + max(4 * (quartile - x0), 20 * sigma) + 5 * sigma, charged.size


def residual_gains(values, bin_width, zero):
    """Candidate gains: offsets of residual peaks above the zero-electron peak, or a reason."""
    top, _ = search_top(values, zero.x0, zero.sigma)
    # pixels above x0 + 3σ beyond the zero peak's own tail (the one-electron peak lies at
    # 2-3σ when σ/g ≈ 0.35-0.5)
    tail = zero.area * normal_sf(3.0)
    excess = int(values.count_above(zero.x0 + 3 * zero.sigma) - tail)
    if excess < max(MIN_PEAK_PIXELS, 5 * np.sqrt(tail)):
        return [], f"{NOT_RESOLVED_FEW} {max(excess, 0)} pixels above the zero-electron peak"
    counts, edges = histogram(values, zero.x0 - 5 * zero.sigma, top, bin_width)
    width = np.diff(edges[:2])[0]
    residual = counts - zero.area * bin_probabilities(edges, [zero.x0], zero.sigma)[0]
    smooth_residual, variance_factor = smoothed(residual, zero.sigma / width)
    smooth_counts, _ = smoothed(counts, zero.sigma / width)
    noise = np.sqrt(np.maximum(smooth_counts, 1.0) * variance_factor)
    centres = 0.5 * (edges[:-1] + edges[1:])
    peaks, _ = signal.find_peaks(np.r_[0.0, smooth_residual, 0.0], height=np.r_[0, 5 * noise, 0])
    peaks = peaks - 1
    peaks = peaks[centres[peaks] > zero.x0 + 1.5 * zero.sigma]
    if peaks.size == 0:
        return [], "single-electron peaks not resolved: no peak above the zero-electron peak"
    significance = smooth_residual[peaks] / noise[peaks]
    # the most significant peak (the one-electron peak unless λ > 2) first, then the lowest
    # two (the first may be a remnant of the zero peak's subtraction)
    most = peaks[np.argmax(significance)]
    chosen = [most, *(p for p in peaks[:2] if p != most)]
    return [centres[i] - zero.x0 for i in chosen], ""


def characteristic_function(values, t, lo, hi, bin_width):
    """The empirical characteristic function Σ p_i exp(i t x_i) of the values in [lo, hi]
    (bins of ``bin_width``, at most ``MAX_SPACING_BINS``), at each ``t``."""
    width = max(bin_width, (hi - lo) / MAX_SPACING_BINS)
    counts, edges = histogram(values, lo, hi, width)
    centres = 0.5 * (edges[:-1] + edges[1:])
    return np.exp(1j * np.outer(np.atleast_1d(t), centres)) @ (counts / counts.sum())


def spacing_gains(values, bin_width, lo):
    """Candidate gains from the period of the peaks (the module docstring): the most
    prominent significant local maximum of |φ(t)| at periods from 4 bins to the range of
    the values and the lowest-frequency one of at least a quarter of its prominence (the
    fundamental where the harmonics stand out more), that one first.

    Without dividing out the Gaussian envelope (σ is not yet known well enough), the
    maximum sits at t = (2π - ε)/g with ε ≈ 2π(σ/g)²/λ: a start within a few per cent where
    several peaks are populated. ``lo``: a value at the bottom of the zero peak. The values
    used reach 8 times as far above ``lo`` as the median does (several peaks at any λ, not
    the far tails of tracks, which would only widen the bins).
    """
    hi = min(float(values.quantile(0.999)), lo + 8 * (float(values.quantile(0.5)) - lo))
    if not hi > lo + 8 * bin_width:
        return []
    width = max(bin_width, (hi - lo) / MAX_SPACING_BINS)
    counts, edges = histogram(values, lo, hi, width)
    total = counts.sum()
    # |φ| on a fine grid of frequencies, by FFT of the zero-padded histogram
    size = 1 << int(np.ceil(np.log2(max(16 * counts.size, 4096))))
    spectrum = np.abs(np.fft.rfft(counts / total, size))
    frequency = np.fft.rfftfreq(size, width)
    # a maximum is real when it rises 5 standard deviations of |φ| (1/√N) above its valleys
    # (|φ(0)| = 1 is no maximum: the spectrum is not padded on that side)
    peaks, properties = signal.find_peaks(np.r_[spectrum, 0.0], prominence=5.0 / np.sqrt(total))
    inside = (frequency[peaks] > 1.0 / (hi - lo)) & (frequency[peaks] < 1.0 / (4 * width))
    peaks, prominence = peaks[inside], properties["prominences"][inside]
    if peaks.size == 0:
        return []
    most = peaks[np.argmax(prominence)]
    first = peaks[np.argmax(prominence >= prominence.max() / 4)]
    return [1.0 / frequency[i] for i in dict.fromkeys([first, most])]


def peak_phase(values, gain, lo, hi, bin_width):
    """x0 modulo ``gain``: the phase of φ(2π/g) (module docstring); in [0, gain)."""
    phi = characteristic_function(values, 2 * np.pi / gain, lo, hi, min(bin_width, gain / 8))[0]
    return float(np.angle(phi) / (2 * np.pi) * gain) % gain


def moment_gain(values, zero, hi):
    """(variance - σ²)/(mean - x0) of the values up to ``hi``: the photon-transfer gain,
    or NaN when the values hold no charge beyond the noise."""
    count, mean, variance = moments(values, zero.x0 - 6 * zero.sigma, hi, zero.sigma / 4)
    if count < MIN_PIXELS:
        return np.nan
    excess = variance - zero.sigma**2
    offset = mean - zero.x0
    return excess / offset if excess > 0 and offset > 0 else np.nan


#: most bins of the histogram :func:`moments` takes its moments from
MOMENT_BINS = 1024


def moments(values, lo, hi, resolution):
    """(count, mean, variance) of the values in [lo, hi], from a histogram with bins of
    ``resolution`` or coarser (at most ``MOMENT_BINS``): good to a fraction of a bin."""
    width = max(resolution, (hi - lo) / MOMENT_BINS)
    counts, edges = histogram(values, lo, hi, width)
    count = counts.sum()
    if count == 0:
        return 0, np.nan, np.nan
    centres = 0.5 * (edges[:-1] + edges[1:])
    mean = counts @ centres / count
    return int(count), mean, counts @ (centres - mean) ** 2 / count

