"""Binned Poisson likelihood: histograms, bin-integrated Gaussians, the fit engine, the test.

Every fit of skipperdask is a binned Poisson maximum likelihood: the model gives the
expected count of each bin (integrated over the bin, so that a peak may be narrower than a
bin), and the fit minimises the Poisson deviance D = 2 Σ (m - c + c ln(c/m)).

- :func:`histogram`: counts of a :class:`~skipperdask.statistics.ValueCounts` (or an array) on
  bins centred on multiples of the bin width.
- :func:`gaussian_bins`: bin-integrated Gaussians and their analytic derivatives.
- :func:`fit_binned_poisson`: Levenberg-Marquardt on the deviance with Fisher scoring (the
  curvature JᵀWJ, W = 1/m) and analytic derivatives; a few milliseconds for a few hundred
  bins. Errors are the inverse Fisher information at the minimum, scaled by max(1, χ²ᵣ)
  as the PDG scale factor does.
- :func:`goodness_of_fit`: Pearson's χ² on bins grouped until each expects at least
  ``MIN_EXPECTED`` counts, so that χ²/ndof is ≈ 1 for a correct model whatever the bin width
  (the deviance of sparse bins is not χ²-distributed: its mean is below 1 per bin).
"""

from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy import special

from ..statistics import ValueCounts, uniform_histogram
from . import engine

#: most bins of a fitted histogram
MAX_BINS = 20_000
#: bins are grouped for the goodness-of-fit test until each expects this many counts
MIN_EXPECTED = 5.0
#: Levenberg-Marquardt iterations before a fit is failed
MAX_ITERATIONS = 60
#: ... or when a step lowers the deviance by less than this (a fraction of one unit of χ²)
DEVIANCE_TOLERANCE = 1e-2
#: iterations on a search bound after which a fit is failed (its minimum lies beyond)
PINNED_ITERATIONS = 5
#: converged when the step is below this many standard errors of every parameter
STEP_TOLERANCE = 1e-2


def histogram(values, lo, hi, bin_width):
    """Counts and edges on bins of ``bin_width`` centred on its multiples, covering [lo, hi].

    Bins centred on multiples are right for quantised data (integers, averages of n
    integers with a width that is a multiple of 1/n). Coarser bins (an integer factor) when
    there would be more than ``MAX_BINS``.

    Parameters
    ----------
    values : ValueCounts or array_like
        The values; a :class:`~skipperdask.statistics.ValueCounts` when histogrammed many times
        (each histogram is then a binary search).
    lo, hi : float
        Range to cover.
    bin_width : float

    Returns
    -------
    counts : ndarray of float
    edges : ndarray
    """
    first = (np.floor(lo / bin_width + 0.5) - 0.5) * bin_width
    nbins = max(int(np.ceil((hi - first) / bin_width)), 1)
    if nbins > MAX_BINS:
        factor = int(np.ceil(nbins / MAX_BINS))
        bin_width *= factor
        nbins = int(np.ceil(nbins / factor))
    counter = (values.histogram if isinstance(values, ValueCounts)
               else partial(uniform_histogram, values))
    counts, edges = counter(bins=nbins, range=(first, first + nbins * bin_width))
    return counts.astype(float), edges


def interval_probabilities(z):
    """Φ(z[..., i + 1]) - Φ(z[..., i]), upper tails from the right for their precision."""
    # each edge's Φ and upper tail once (not once per bin it bounds)
    lower, upper = special.ndtr(z), special.ndtr(-z)
    return np.where(z[..., :-1] > 0, upper[..., :-1] - upper[..., 1:],
                    lower[..., 1:] - lower[..., :-1])


def gaussian_bins(edges, params, *, second=False):
    """Bin-integrated Gaussians, one per row, and their derivatives.

    ``edges`` (rows, bins + 1), ``params`` (rows, 3) = (μ, σ, area). Returns the counts
    (rows, bins), their first derivatives (rows, bins, 3) and, with ``second``, their second
    derivatives (rows, bins, 3, 3) (else None). With z = (e - μ)/σ at an edge, Φ(z) has
    derivatives -φ/σ and -zφ/σ (μ, σ), -zφ/σ², (1 - z²)φ/σ² and zφ(2 - z²)/σ² (μμ, μσ, σσ).
    """
    mu, sigma, area = (params[:, i, None] for i in range(3))
    z = (edges - mu) / sigma
    probability = interval_probabilities(z)
    pdf = np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
    zpdf = z * pdf

    def across(f):  # f at the lower edge minus f at the upper edge, over σ
        return (f[:, :-1] - f[:, 1:]) / sigma

    d_mu, d_sigma = across(pdf), across(zpdf)
    first = np.stack([area * d_mu, area * d_sigma, probability], axis=-1)
    if not second:
        return area * probability, first, None
    d_mumu = across(zpdf) / sigma
    d_musigma = -across((1 - z**2) * pdf) / sigma
    d_sigmasigma = -across(zpdf * (2 - z**2)) / sigma
    hessian = np.empty(first.shape + (3,))
    hessian[..., 0, 0] = area * d_mumu
    hessian[..., 0, 1] = hessian[..., 1, 0] = area * d_musigma
    hessian[..., 1, 1] = area * d_sigmasigma
    hessian[..., 0, 2] = hessian[..., 2, 0] = d_mu
    hessian[..., 1, 2] = hessian[..., 2, 1] = d_sigma
    hessian[..., 2, 2] = 0.0
    return area * probability, first, hessian


def deviance(counts, model, mask=None):
    """Poisson deviance of each bin, 2 (m - c + c ln(c/m)); 0 in bins outside ``mask``."""
    model = np.maximum(model, 1e-300)
    safe = np.where(counts > 0, counts, 1.0)
    terms = 2.0 * (model - counts + np.where(counts > 0, counts * np.log(safe / model), 0.0))
    return terms if mask is None else np.where(mask, terms, 0.0)


def covariance(jac, scale=1.0):
    """Covariance(s) (JᵀJ)⁻¹ · scale from Jacobian(s) ``jac`` (…, residuals, parameters),
    through the SVD of J as curve_fit computes it; and whether J has full rank (the
    covariance is NaN otherwise). ``scale``: max(1, χ²ᵣ), the PDG scale factor."""
    _, s, vt = np.linalg.svd(jac, full_matrices=False)
    nparams = jac.shape[-1]
    full_rank = (s.shape[-1] == nparams) & (
        s[..., -1] > np.finfo(float).eps * max(jac.shape[-2:]) * s[..., 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = np.swapaxes(vt, -1, -2) / s[..., None, :] ** 2 @ vt
    cov = np.where(full_rank[..., None, None], cov * np.asarray(scale)[..., None, None], np.nan)
    return cov, full_rank


def pdg_scale(chi2_reduced):
    """max(1, χ²ᵣ): errors are scaled up when the model is imperfect, never down."""
    return np.where(np.isfinite(chi2_reduced), np.maximum(1.0, chi2_reduced), 1.0)


def on_bound(params, lower, upper):
    """Whether a parameter is stuck on a bound that only limits the search (a failed fit);
    a bound at exactly 0 (λ, areas) is physical and may be reached. Works on the last axis."""
    span = np.where(np.isfinite(upper - lower), upper - lower, np.abs(params) + 1.0)
    stuck = (np.isfinite(lower) & (lower != 0) & (params - lower < 1e-6 * span)) | (
        np.isfinite(upper) & (upper - params < 1e-6 * span))
    return np.any(stuck, axis=-1)


@dataclass(frozen=True)
class GoodnessOfFit:
    """Pearson's χ² of a fitted histogram on grouped bins (see :func:`goodness_of_fit`)."""

    chi2: float
    ndof: int

    @property
    def chi2_reduced(self):
        return self.chi2 / self.ndof if self.ndof > 0 else np.nan

    def passes(self, acceptance):
        """Whether the fit passes the :class:`Acceptance` test."""
        return self.ndof > 0 and (
            self.chi2 <= self.ndof + acceptance.z * np.sqrt(2.0 * self.ndof)
            or self.chi2 <= acceptance.tolerance * self.ndof)


@dataclass(frozen=True)
class Acceptance:
    """The acceptance test of a fit: its χ² at most ``z`` standard deviations above its mean,
    χ² ≤ ndof + z √(2 ndof), or χ²/ndof at most ``tolerance``.

    The first is the statistical test (its false-rejection rate on correct simulations is
    measured by the test suite); the second tolerates a model imperfection whatever the
    statistics: with 10⁵-10⁶ pixels a real detector's small ones show (non-uniform charge,
    the quantisation of a lossy compression); errors are then scaled by √(χ²/ndof).
    """

    z: float = 5.0
    tolerance: float = 1.5


def goodness_of_fit(counts, model, nparams):
    """Pearson's χ² of ``counts`` against ``model``, bins grouped from the left until each
    group expects at least ``MIN_EXPECTED`` counts (the last group joins its left neighbour
    when short), ndof = groups - ``nparams``.

    For a correct model χ²/ndof is then ≈ 1 (within √(2/ndof)) on any binning, which the
    deviance of sparse bins is not.
    """
    group = _groups(np.asarray(model, dtype=float), MIN_EXPECTED)
    ngroups = group[-1] + 1
    grouped_model = np.bincount(group, model, ngroups)
    grouped_counts = np.bincount(group, counts, ngroups)
    chi2 = float(np.sum((grouped_counts - grouped_model) ** 2 / grouped_model))
    return GoodnessOfFit(chi2, int(ngroups) - nparams)


def _groups(model, minimum):
    """Group index of each bin: consecutive bins grouped until each group expects at least
    ``minimum`` (the last, if short, joins the one before)."""
    group = np.empty(model.size, np.int64)
    index, total = 0, 0.0
    for i, expected in enumerate(model.tolist()):
        group[i] = index
        total += expected
        if total >= minimum:
            index, total = index + 1, 0.0
    if total < minimum and index > 0:  # a short last group
        group[group == index] = index - 1
    return group


@dataclass(frozen=True)
class PoissonFit:
    """The result of :func:`fit_binned_poisson`."""

    params: np.ndarray
    cov: np.ndarray  # inverse Fisher information, not yet scaled
    deviance: float
    model: np.ndarray
    converged: bool

    @property
    def errors(self):
        return np.sqrt(np.diag(self.cov))


def fit_binned_poisson(kind, edges, p0, lower, upper, counts, *, kmax=0):
    """Minimise the Poisson deviance of a model of peaks on the histogram ``counts``.

    Levenberg-Marquardt with Fisher scoring: the step solves (F + μ diag F) δ = -g with
    F = Jᵀ diag(1/m) J and g = Jᵀ (1 - c/m), which is Newton's method for the deviance near
    its minimum; μ shrinks after a step that lowers the deviance and grows otherwise. Steps
    are clipped to the bounds. Converged when the step is below ``STEP_TOLERANCE`` standard
    errors of every parameter. The loop is compiled (:func:`.engine.levenberg_marquardt`).

    Parameters
    ----------
    kind : {engine.GAUSS_POISSON, engine.FREE_HEIGHTS}
        The model (:mod:`.engine`).
    edges : ndarray
        The histogram's bin edges.
    p0, lower, upper : array_like
        Start and bounds.
    counts : ndarray
    kmax : int, optional
        Highest number of electrons of the Gauss-Poisson model.

    Returns
    -------
    PoissonFit
        ``converged`` is False when the iterations ran out, the model became invalid or the
        curvature is singular; ``cov`` is then NaN.
    """
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    params, expected, jac, current, converged = engine.levenberg_marquardt(
        kind, np.asarray(edges, dtype=float), kmax, np.asarray(p0, dtype=float), lower, upper,
        np.asarray(counts, dtype=float), MAX_ITERATIONS, STEP_TOLERANCE, DEVIANCE_TOLERANCE,
        PINNED_ITERATIONS)
    nparams = params.size
    with np.errstate(all="ignore"):
        cov, full_rank = covariance(jac / np.sqrt(np.maximum(expected, 1e-300))[:, None])
    ok = bool(converged and full_rank and np.isfinite(current)
              and not on_bound(params, lower, upper))
    if not ok:
        cov = np.full((nparams, nparams), np.nan)
    return PoissonFit(params, cov, float(current), expected, ok)
