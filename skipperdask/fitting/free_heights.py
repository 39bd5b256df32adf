"""Free peak heights: the single-electron peaks when their heights are not Poisson.

Real images are often not a single Poisson: the charge per pixel varies across the image
(a source's illumination, clusters' diffused tails left outside the mask, a light leak), so
the higher peaks hold more pixels than Pois(k; λ) says, while the peaks' positions and the
zero peak's width, which are what the gain and the noise are, stay exact. The model keeps
the peaks at x0 + g·k but gives each its own area a_k and a width growing with its charge,
σ_k² = σ² + k·v (gain non-uniformity, seen in real detectors), every bin integrated:

    counts_i = Σ_k a_k ∫_bin_i Normal(x; x0 + g·k, σ_k) dx

λ is then the ratio of the one- to the zero-electron areas, a_1/a_0 = Pois(1; λ)/Pois(0; λ),
what a dark-current analysis reads from the first two peaks. The derivatives are analytic
(those of the bin-integrated Gaussians), so the fit costs as much as a Poisson-heights fit.
"""

import numpy as np

from . import engine
from .likelihood import fit_binned_poisson, goodness_of_fit, pdg_scale
from .model import RESOLUTION_LIMIT, GaussPoissonFit, check_resolution


def fit_free_heights(counts, edges, x0, sigma, gain, areas):
    """Fit the free-heights model to a histogram from a start (the Poisson fit's values).

    Parameters
    ----------
    counts, edges : ndarray
        The histogram.
    x0, sigma, gain : float
        Starting zero peak, noise and gain.
    areas : array_like
        Starting area of each peak k = 0, 1, … (their number sets the model's).

    Returns
    -------
    skipperdask.fitting.likelihood.PoissonFit
        Parameters (x0, σ, g, v, a_0, …).
    """
    areas = np.maximum(np.asarray(areas, dtype=float), 1.0)
    start = np.r_[x0, sigma, gain, 0.01 * sigma**2, areas]
    nareas = areas.size
    lower = np.r_[edges[0], 1e-3 * sigma, gain / 1.5, 0.0, np.zeros(nareas)]
    upper = np.r_[edges[-1], 20 * sigma, gain * 1.5, gain**2, np.full(nareas, np.inf)]
    return fit_binned_poisson(engine.FREE_HEIGHTS, edges, start, lower, upper, counts)


def refit_with_free_heights(poisson, acceptance, max_lambda):
    """The free-heights fit from a rejected Poisson-heights fit (a
    :class:`.model.GaussPoissonFit`) with resolved peaks, if it passes the ``acceptance``
    test with resolved peaks and λ ≤ ``max_lambda``; else None.

    λ = a_1/a_0; the zero- and one-electron areas must stand 5 standard errors above 0 (free
    heights at a fraction of the true gain, with empty peaks between, or on a comb shifted
    by one peak, would fit as well).
    """
    if not poisson.sigma / poisson.gain < RESOLUTION_LIMIT:
        return None
    k = np.arange(int((poisson.edges[-1] - poisson.x0) / poisson.gain) + 1)
    if k.size < 2:
        return None
    areas = poisson.n * engine.poisson_weights(int(k[-1]), poisson.lam)
    fit = fit_free_heights(poisson.counts, poisson.edges, poisson.x0, poisson.sigma,
                           poisson.gain, areas)
    if not fit.converged:
        return None
    test = goodness_of_fit(poisson.counts, fit.model, fit.params.size)
    if not test.passes(acceptance):
        return None
    cov = fit.cov * pdg_scale(test.chi2_reduced)
    (x0, sigma, gain), (a0, a1) = fit.params[:3], fit.params[4:6]
    errors = np.sqrt(np.diag(cov))
    if not (a0 > 5 * errors[4] and a1 > 5 * errors[5]):
        return None  # an empty zero peak (a comb one tooth too low) or one-electron peak
    lam = a1 / a0
    if lam > max_lambda:
        return None
    lam_err = lam * np.sqrt(cov[4, 4] / a0**2 + cov[5, 5] / a1**2 - 2 * cov[4, 5] / (a0 * a1))
    result = GaussPoissonFit(x0, sigma, gain, lam, fit.params[4:].sum(), *errors[:3], lam_err,
                             test.chi2_reduced, test.ndof, "free-heights", poisson.edges,
                             poisson.counts, {}, heights=tuple(map(float, fit.params)))
    return check_resolution(result)
