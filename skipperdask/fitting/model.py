"""The Gaussian-smeared Poisson: its expected counts, their derivatives, and the fit's result.

    counts_i = n · Σ_k Pois(k; λ) · ∫_bin_i Normal(x; x0 + g·k, σ) dx

x0 the zero-electron peak, σ the noise (skNoise), g the gain (ADU per electron), λ the mean
electrons per pixel, n the pixels the model describes. The model is integrated over each bin,
so that σ may be smaller than the bin width.
"""

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from . import engine
from .poisson import poisson_isf, poisson_pmf

#: σ/g at and beyond which the single-electron peaks merge: two equal Gaussians 2σ apart are
#: where a dip between them first appears
RESOLUTION_LIMIT = 0.5
#: the one-electron peak must hold at least this many pixels for a gain
MIN_PEAK_PIXELS = 20
#: a peak is populated when the model puts at least this many pixels in it
POPULATED = 5.0
#: beyond the resolution limit, σ is still the zero-electron peak's width while λ (plus two
#: standard errors) stays below this: the zero peak then dominates what is fitted
ZERO_PEAK_DOMINATES = 0.1


@dataclass(frozen=True, eq=False)
class GaussPoissonFit:
    """The Gaussian-smeared Poisson fit of an average image.

    ``reasons`` maps a parameter name (``"x0"``, ``"sigma"``, ``"gain"``, ``"lam"``) to why it
    is NaN; a name absent from it means the value is good. ``edges`` and ``counts`` are the
    histogram actually fitted. ``chi2_reduced`` and ``ndof`` are those of the goodness-of-fit
    test (Pearson's χ² on grouped bins, :func:`skipperdask.fitting.likelihood.goodness_of_fit`).
    ``estimate`` is (x0, σ, g, λ) of the best converged fit even when it is rejected or its
    peaks are unresolved (NaN where there is none): good enough to mask clusters with, never
    a result.
    """

    x0: float
    sigma: float
    gain: float
    lam: float
    n: float
    x0_err: float
    sigma_err: float
    gain_err: float
    lam_err: float
    chi2_reduced: float
    ndof: int
    method: str  # "poisson", "fallback" or "none"
    edges: np.ndarray = field(repr=False)
    counts: np.ndarray = field(repr=False)
    reasons: dict = field(default_factory=dict)
    estimate: tuple = (np.nan, np.nan, np.nan, np.nan)
    #: the free-heights model's parameters (x0, σ, g, v, a_0, …, a_K) when ``method`` is
    #: "free-heights": the curve its numbers come from (:func:`.engine.free_heights_model`)
    heights: tuple = field(default=(), repr=False)

    @property
    def params(self):
        """(x0, σ, g, λ, n), the model's parameters."""
        return np.array([self.x0, self.sigma, self.gain, self.lam, self.n])


def missing_fit(reasons, *, x0=np.nan, sigma=np.nan, sigma_err=np.nan, x0_err=np.nan):
    """A fit with gain and λ missing (and whatever else ``reasons`` names)."""
    empty = np.zeros(0)
    return GaussPoissonFit(
        x0=x0, sigma=sigma, gain=np.nan, lam=np.nan, n=np.nan, x0_err=x0_err,
        sigma_err=sigma_err, gain_err=np.nan, lam_err=np.nan, chi2_reduced=np.nan, ndof=0,
        method="none", edges=empty, counts=empty, reasons=dict(reasons),
    )


def without(fit, reason, names):
    """The fit with the parameters ``names`` (of "x0", "sigma", "gain", "lam") missing."""
    missing = {name: np.nan for name in names} | {f"{name}_err": np.nan for name in names}
    return dataclasses.replace(fit, **missing,
                               reasons={**fit.reasons, **dict.fromkeys(names, reason)})


def gauss_poisson_counts(edges, n, x0, sigma, gain, lam, kmax=9):
    """Expected counts per bin of the Gaussian-smeared Poisson.

    Parameters
    ----------
    edges : array_like
        Bin edges, increasing (length = number of bins + 1).
    n : float
        Number of pixels the model describes.
    x0, sigma, gain, lam : float
        Zero-electron peak, noise, ADU per electron and mean electrons per pixel.
    kmax : int, optional
        Highest number of electrons in the sum.

    Returns
    -------
    ndarray
        n · Σ_{k=0..kmax} Pois(k; λ) · (Φ((e_{i+1} - x0 - g·k)/σ) - Φ((e_i - x0 - g·k)/σ)).
    """
    return counts_and_derivatives(edges, (x0, sigma, gain, lam, n), kmax)[0]


def counts_and_derivatives(edges, params, kmax):
    """:func:`gauss_poisson_counts` at ``params`` = (x0, σ, g, λ, n) and its derivatives
    (bins, 5) (:func:`.engine.gauss_poisson_model`)."""
    return engine.gauss_poisson_model(np.asarray(edges, dtype=float), int(kmax),
                                      np.asarray(params, dtype=float))


def populated(n, lam):
    """Highest k whose peak holds at least ``POPULATED`` pixels (at least 1)."""
    return max(poisson_isf(POPULATED / max(n, 1.0), lam) + 1, 1)


def check_resolution(fit):
    """Gain and λ missing when the single-electron peaks are not resolved; σ missing too
    when, beyond the resolution limit, the charge is not negligible beside the zero peak
    (σ would then be the width of the merged peaks, not the noise)."""
    ratio = fit.sigma / fit.gain
    one_electron = fit.n * poisson_pmf(1, fit.lam)
    if ratio >= RESOLUTION_LIMIT:
        reason = (f"single-electron peaks not resolved (σ/g = {ratio:.2f} ≥ "
                  f"{RESOLUTION_LIMIT})")
        merged = not fit.lam + 2 * fit.lam_err <= ZERO_PEAK_DOMINATES
        if merged:
            fit = without(fit, f"zero-electron peak merged with the charge: {reason}",
                          ("sigma",))
        return without(fit, reason, ("gain", "lam"))
    if not one_electron >= MIN_PEAK_PIXELS:
        reason = (f"single-electron peaks not resolved: {one_electron:.3g} pixels in the "
                  f"one-electron peak (fewer than {MIN_PEAK_PIXELS})")
        return without(fit, reason, ("gain", "lam"))
    return fit
