"""The tail ratio: how many pixels lie beyond what the fitted model puts beyond 4σ."""

import numpy as np
from scipy import optimize

from .poisson import normal_sf, poisson_isf, poisson_pmf
from .starts import check_values


def tail_ratio(fit, values):
    """Pixels beyond the point where the fitted model holds what a Gaussian puts beyond 4σ.

    n = N_pixels · Q(4) (Q the Gaussian upper tail); x_t solves
    N_pixels · Σ_k Pois(k; λ) · Q((x_t - x0 - g·k)/σ) = n; the ratio is the number of values
    above x_t over n. Missing (NaN and the fit's reason) when the fit has no gain or λ: the
    zero-electron Gaussian alone would count every charged pixel as tail, and an image of
    dark current would look like one full of tracks.

    Parameters
    ----------
    fit : GaussPoissonFit
        The fit of these values (or of the same image with its clusters masked).
    values : ValueCounts or array_like
        The pixel values counted (non-finite ones are left out).

    Returns
    -------
    (float, str)
        The ratio and "" or NaN and why.
    """
    if not (np.isfinite(fit.sigma) and np.isfinite(fit.x0)):
        return np.nan, f"no noise from the fit ({fit.reasons.get('sigma', 'sigma missing')})"
    values, reasons, _ = check_values(values)
    expected = values.size * normal_sf(4.0)
    if expected == 0:
        return np.nan, "no finite pixel value"
    if not (np.isfinite(fit.gain) and np.isfinite(fit.lam)):
        why = fit.reasons.get("gain") or fit.reasons.get("lam") or "gain or λ missing"
        return np.nan, f"no fitted Gauss-Poisson model ({why})"
    if fit.lam > 0:
        kmax = poisson_isf(1e-12, fit.lam) + 1
        weights = poisson_pmf(np.arange(kmax + 1), fit.lam)
        centres = fit.x0 + fit.gain * np.arange(kmax + 1)

        def excess(x):
            return weights @ normal_sf((x - centres) / fit.sigma) - normal_sf(4.0)

        threshold = optimize.brentq(excess, fit.x0 + 4 * fit.sigma,
                                    centres[-1] + 10 * fit.sigma)
    else:
        threshold = fit.x0 + 4 * fit.sigma
    return float(values.count_above(threshold)) / expected, ""
