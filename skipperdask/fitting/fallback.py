"""The fallback of DAMIC-M's damicm-image-preproc, for when no least-squares fit of the whole
model converges: Gaussians on the peaks of a smoothed histogram, a Poisson fitted to their
areas."""

import numpy as np
from scipy import optimize, stats

from .gaussian import fit_gaussian
from .likelihood import histogram
from .line import fit_line
from .model import GaussPoissonFit, missing_fit
from .starts import check_values, lowest_peak, search_top, significant_peaks, smoothed


def fit_peaks(values, *, bin_width=1.0):
    """The original tool's fallback: Gaussians on the peaks of a smoothed histogram.

    Peaks are found in the histogram smoothed to about half the noise; a Gaussian is fitted
    to each, over half the distance to its neighbours. σ and x0 come from the first peak,
    the gain from the spacing of the peaks (a straight line through their positions, or the
    difference of two), λ from a Poisson fitted to the peak areas. Never raises: what cannot
    be measured is NaN with a reason.

    Parameters
    ----------
    values : array_like
        Pixel values, in the frame where charge raises the value.
    bin_width : float, optional
        Bin width of the histogram, in ADU.

    Returns
    -------
    GaussPoissonFit
        With ``method="fallback"``; ``chi2_reduced`` is that of the first peak's Gaussian.
        The caller tests it like any fit (the goodness of fit of the model at these values,
        the resolution).
    """
    values, reasons, x0 = check_values(values)
    if reasons:
        return missing_fit(reasons, x0=x0)
    x0, scale = lowest_peak(values, bin_width)
    top, _ = search_top(values, x0, scale)
    counts, edges = histogram(values, x0 - 5 * scale, top, bin_width)
    width = np.diff(edges[:2])[0]
    smooth, variance_factor = smoothed(counts, scale / 2 / width)
    peaks = significant_peaks(smooth, variance_factor)
    if peaks.size == 0:
        reason = "fallback: no peak found in the smoothed histogram"
        return missing_fit(dict.fromkeys(("x0", "sigma", "gain", "lam"), reason))
    bounds = np.r_[0, (peaks[:-1] + peaks[1:]) // 2 + 1, counts.size]
    if peaks.size > 1:  # the last peak gets as much room above as below
        bounds[-1] = min(counts.size, peaks[-1] + (peaks[-1] - bounds[-2]) + 1)
    gaussians = [fit_gaussian(counts[a:b], edges[a:b + 1])
                 for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    first = gaussians[0]
    if first.reason:
        reason = f"fallback: Gaussian on the first peak failed ({first.reason})"
        return missing_fit(dict.fromkeys(("x0", "sigma", "gain", "lam"), reason))
    good = [g for g in gaussians if not g.reason]
    if len(good) < 2:
        reason = "single-electron peaks not resolved: the fallback found one peak only"
        return GaussPoissonFit(first.mu, first.sigma, np.nan, np.nan, counts.sum(), first.mu_err,
                               first.sigma_err, np.nan, np.nan, first.chi2_reduced, 0, "fallback",
                               edges, counts, {"gain": reason, "lam": reason})
    positions = np.array([g.mu for g in good])
    spacing = positions[1] - positions[0]
    electrons = np.round((positions - positions[0]) / spacing)
    if len(good) == 2:
        gain = spacing
        gain_err = np.hypot(good[0].mu_err, good[1].mu_err)
    else:
        line = fit_line(electrons, positions)
        gain, gain_err = line.slope, line.slope_err
    lam, lam_err, n = _poisson_from_areas(electrons.astype(int), [g.amplitude for g in good],
                                          [g.amplitude_err for g in good])
    fit = GaussPoissonFit(first.mu, first.sigma, gain, lam, n, first.mu_err, first.sigma_err,
                          gain_err, lam_err, first.chi2_reduced, 0, "fallback", edges, counts, {})
    return fit


def _poisson_from_areas(electrons, areas, area_errors):
    """λ, its error and the total from areas of peaks of k electrons, weighted by their errors."""
    areas = np.asarray(areas, dtype=float)
    errors = np.maximum(np.asarray(area_errors, dtype=float), 1.0)
    start_lam = np.clip(areas[electrons == 1].sum() / max(areas[electrons == 0].sum(), 1.0),
                        1e-3, 49.0)

    def residuals(p):
        return (areas - p[0] * stats.poisson.pmf(electrons, p[1])) / errors

    result = optimize.least_squares(residuals, [areas.sum(), start_lam],
                                    bounds=([0.0, 0.0], [np.inf, 50.0]), x_scale="jac")
    dof = max(areas.size - 2, 1)
    scale = max(1.0, 2 * result.cost / dof) if areas.size > 2 else 1.0
    try:
        cov = np.linalg.inv(result.jac.T @ result.jac) * scale
        lam_err = float(np.sqrt(cov[1, 1]))
    except np.linalg.LinAlgError:
        lam_err = np.nan
    return float(result.x[1]), lam_err, float(result.x[0])
