"""The fits of SPEC §2, on small in-memory arrays (values of an average image, or histograms).

Everything here works in the frame where charge raises the value (the caller flips raw images).

The Gaussian-smeared Poisson
----------------------------
The average image's histogram is fitted with

    counts_i = n · Σ_k Pois(k; λ) · ∫_bin_i Normal(x; x0 + g·k, σ) dx

(the model integrated over each bin, so that σ may be smaller than the bin width), by
least squares on Poisson deviance residuals, i.e. a binned Poisson maximum likelihood whose
minimum is also the fit-quality figure: ``chi2_reduced`` = deviance / degrees of freedom.

:func:`fit_gauss_poisson` proceeds as a DAMIC-M analyst does by hand:

1. **Zero-electron peak.** Charge only raises the value, so the lowest values belong to the
   zero-electron peak. The spread of the lowest quantiles gives a first scale; the lowest
   prominent peak of the histogram is the zero-electron peak; a bin-integrated Gaussian fitted
   to its lower side (where no other peak lies) gives x0, σ and its area A0; λ starts at
   -ln(A0 / N).
2. **Gain.** The zero-peak Gaussian is subtracted and the residual smoothed with a kernel of
   width σ; its most prominent peaks above x0 + 1.5σ give candidate gains (peak - x0), the
   most significant first. Candidates are fitted (step 3) in turn until one passes the
   quality test (step 4) with resolved peaks (step 5); when none does, every candidate is
   fitted and the fit of lowest χ² goes on to step 4.
3. **Fit window (replaces the seed's "median ± 3 MAD, at least 200 ADU").** A fixed 200-ADU
   width holds tracks when g is 2 ADU and misses the first peak when g is 300 ADU; ±3 MAD is
   the zero peak's width when λ is small. The window is therefore built from the estimates:
   from x0 - 5σ up to the last *populated* peak, k_top = the largest k with
   n·Pois(k; λ) ≥ 5 pixels (at least 1), plus max(3σ, g/2). What lies above (tracks,
   clusters) is outside the fit. Bins have ``bin_width``, centred on its multiples (right
   for integer data); if the window would exceed 20,000 bins the bins are widened by an
   integer factor.
4. **Quality test and fall-backs.** Poisson heights are accepted when their reduced χ² is
   statistically acceptable (at most 1 + 5·sqrt(2/ndof)). Otherwise the peaks get *free
   heights*: one area per peak, a flat continuum between consecutive peaks (charge partly lost
   between samples, or shared) and widths that may grow with the charge,
   σ_k² = σ² + k·w² (gain non-uniformity; real detectors show it), all smeared by the
   noise. σ is then the zero-electron peak's width and λ the ratio of the one- to the
   zero-electron areas (insensitive to clusters that over-populate the higher peaks).
   Free heights are accepted up to a reduced χ² of ``CHI2_ACCEPT`` and only when the
   one-electron area stands 5 standard errors above 0 (free heights at a fraction of the
   gain, with empty peaks between, would fit as well). When neither holds, gain, λ and σ are
   reported missing ("model does not describe the data (reduced chi2 = …)"), x0 kept. When
   no least-squares fit converges at all, the fallback of SPEC §2 is used (:func:`fit_peaks`).
5. **Resolution.** The single-electron peaks are *resolved* when σ/g < 0.5: two equal
   Gaussians 2σ apart are where a dip between them first appears, so beyond that the
   histogram has no peaks to space, and gain and λ become degenerate. They are also not
   resolved when fewer than ``MIN_PEAK_PIXELS`` pixels are expected in the one-electron peak.
   In both cases gain and λ are missing with the reason "single-electron peaks not resolved".

Bin width: the fit needs bins of at most about σ (and g ≳ 4 bins). The real DAMIC-M averaged
image in ``../shared/data/real`` has σ ≈ 0.21 ADU and g ≈ 1.35 ADU: 1-ADU bins cannot resolve
it (the fit then says "model does not describe the data"), 0.05-0.2 ADU bins do.

Zero noise: when the zero-electron peak lies within one histogram bin (nothing spills into
its neighbours), its width cannot be measured: σ, gain and λ are missing with a reason
(use a finer ``bin_width`` if the values are not quantised). The constant image, fewer than
``MIN_PIXELS`` values, no finite value: all missing with a reason; nothing raises.

Errors are one standard deviation from the inverse of JᵀJ at the minimum (J the Jacobian of
the deviance residuals), multiplied by max(1, χ²_reduced) when the model is not perfect, as
the PDG scale factor does (never shrunk by a χ² below 1). The single Gaussians
(:func:`fit_gaussians`, many histograms at once by Newton's method) take the inverse Fisher
information instead, which JᵀJ approximates (equal within a few per cent but in sparse
histograms), with the same scale factor. Jacobians are analytic (derivatives of the
bin-integrated Gaussians), except in the free-heights fit.
"""

from dataclasses import dataclass, field
from functools import partial

import numpy as np
from scipy import ndimage, optimize, signal, special, stats

from .stats import ValueCounts

__all__ = [
    "GaussPoissonFit",
    "GaussianFit",
    "LineFit",
    "fit_gauss_poisson",
    "fit_gaussian",
    "fit_gaussians",
    "fit_line",
    "fit_zero_peak",
    "fit_peaks",
    "gauss_poisson_counts",
    "histogram",
    "tail_ratio",
    "zero_peak_width",
]

#: fewest finite values for the Gaussian-smeared Poisson fit
MIN_PIXELS = 100
#: largest reduced χ² (deviance per degree of freedom) for which free heights are accepted
CHI2_ACCEPT = 10.0
#: the one-electron peak must hold at least this many pixels for a gain
MIN_PEAK_PIXELS = 20
NOT_RESOLVED_FEW = "single-electron peaks not resolved: only"
#: starting gains, in units of the zero peak's σ, when the one-electron peak is a shoulder
SHOULDER_GAINS = np.array([2.2, 3.0, 4.0, 5.5, 7.5])
#: σ/g at and beyond which the single-electron peaks merge
RESOLUTION_LIMIT = 0.5
#: a peak is populated when the model puts at least this many pixels in it
POPULATED = 5.0
#: most bins of the fitted histogram
MAX_BINS = 20_000


@dataclass(frozen=True, eq=False)
class GaussianFit:
    """A Gaussian fitted to a histogram; NaN with ``reason`` when the fit failed."""

    mu: float
    sigma: float
    amplitude: float  # area, in counts
    mu_err: float
    sigma_err: float
    amplitude_err: float
    chi2_reduced: float
    reason: str = ""


@dataclass(frozen=True, eq=False)
class LineFit:
    """A straight line y = slope·x + intercept; NaN with ``reason`` when it cannot be fitted."""

    slope: float
    intercept: float
    slope_err: float
    intercept_err: float
    reason: str = ""


@dataclass(frozen=True, eq=False)
class GaussPoissonFit:
    """The Gaussian-smeared Poisson fit of an average image (see the module docstring).

    ``reasons`` maps a parameter name (``"x0"``, ``"sigma"``, ``"gain"``, ``"lam"``) to why it
    is NaN; a name absent from it means the value is good. ``edges`` and ``counts`` are the
    histogram actually fitted.
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
    method: str  # "poisson", "free-heights", "fallback" or "none"
    edges: np.ndarray = field(repr=False)
    counts: np.ndarray = field(repr=False)
    reasons: dict = field(default_factory=dict)


def _missing_fit(reasons, *, x0=np.nan, sigma=np.nan, sigma_err=np.nan, x0_err=np.nan):
    """A fit with gain and λ missing (and whatever else ``reasons`` names)."""
    empty = np.zeros(0)
    return GaussPoissonFit(
        x0=x0, sigma=sigma, gain=np.nan, lam=np.nan, n=np.nan, x0_err=x0_err,
        sigma_err=sigma_err, gain_err=np.nan, lam_err=np.nan, chi2_reduced=np.nan, ndof=0,
        method="none", edges=empty, counts=empty, reasons=dict(reasons),
    )


# ---------------------------------------------------------------- models

def _bin_probabilities(edges, mu, sigma):
    """Probability of each bin for Normal(mu_k, sigma): shape (len(mu), len(edges) - 1).

    Upper tails are taken from the right (ndtr(-z)) so that far bins keep their precision.
    """
    z = (np.asarray(edges)[None, :] - np.asarray(mu, dtype=float)[:, None]) / sigma
    return _interval_probabilities(z)


def _interval_probabilities(z):
    """Φ(z[..., i + 1]) - Φ(z[..., i]), upper tails from the right for their precision."""
    # each edge's Φ and upper tail once (not once per bin it bounds)
    lower, upper = special.ndtr(z), special.ndtr(-z)
    return np.where(z[..., :-1] > 0, upper[..., :-1] - upper[..., 1:],
                    lower[..., 1:] - lower[..., :-1])


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
    k = np.arange(kmax + 1)
    weights = stats.poisson.pmf(k, lam)
    return n * (weights @ _bin_probabilities(edges, x0 + gain * k, sigma))


def _gauss_poisson_derivatives(edges, params, kmax):
    """:func:`gauss_poisson_counts` at ``params`` = (x0, σ, g, λ, n) and its derivatives
    (bins, 5): those of the peaks' bin-integrated Gaussians, and ∂Pois(k; λ)/∂λ =
    Pois(k - 1; λ) - Pois(k; λ)."""
    x0, sigma, gain, lam, n = params
    k = np.arange(kmax + 1)
    weights = stats.poisson.pmf(k, lam)
    peaks = np.stack([x0 + gain * k, np.full(k.size, sigma), np.ones(k.size)], axis=1)
    probabilities, first, _ = _gaussian_model(np.asarray(edges, dtype=float), peaks)
    d_weights = np.r_[0.0, weights[:-1]] - weights
    position = weights @ first[..., 0]
    derivatives = np.stack([n * position, n * (weights @ first[..., 1]),
                            n * ((weights * k) @ first[..., 0]),
                            n * (d_weights @ probabilities), weights @ probabilities], axis=1)
    return n * (weights @ probabilities), derivatives


def _free_heights_counts(edges, x0, sigma, gain, widening, areas, continuum):
    """Expected counts per bin of the free-heights model.

    Peak k (k = 0 … len(areas) - 1) at x0 + g·k holds ``areas[k]`` pixels with width
    sqrt(σ² + k·w²); ``continuum[j]`` pixels lie uniformly between peaks j and j + 1,
    smeared by σ.
    """
    k = np.arange(len(areas))
    widths = np.sqrt(sigma**2 + k * widening**2)
    z = (np.asarray(edges)[None, :] - (x0 + gain * k)[:, None]) / widths[:, None]
    peaks = np.asarray(areas) @ np.diff(special.ndtr(z), axis=1)
    # a uniform density on [a, a + g] smeared by σ integrates to (G(x - a) - G(x - a - g)) / g
    # with G(u) = u Φ(u/σ) + σ φ(u/σ)
    u = np.asarray(edges)[None, :] - (x0 + gain * np.arange(len(continuum)))[:, None]

    def integral(u):
        return u * special.ndtr(u / sigma) + sigma * np.exp(-0.5 * (u / sigma) ** 2) / np.sqrt(
            2 * np.pi)

    uniform = np.diff(integral(u) - integral(u - gain), axis=1) / gain
    return peaks + np.asarray(continuum) @ uniform


def _gaussian_model(edges, params, *, second=False):
    """Bin-integrated Gaussians, one per row, and their derivatives.

    ``edges`` (rows, bins + 1), ``params`` (rows, 3) = (μ, σ, area). Returns the counts
    (rows, bins), their first derivatives (rows, bins, 3) and, with ``second``, their second
    derivatives (rows, bins, 3, 3). With z = (e - μ)/σ at an edge, Φ(z) has derivatives
    -φ/σ and -zφ/σ (μ, σ), -zφ/σ², (1 - z²)φ/σ² and zφ(2 - z²)/σ² (μμ, μσ, σσ).
    """
    mu, sigma, area = (params[:, i, None] for i in range(3))
    z = (edges - mu) / sigma
    probability = _interval_probabilities(z)
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


# ---------------------------------------------------------------- least squares

def _deviance_residuals(counts, model):
    """Signed square roots of the Poisson deviance: their squares sum to -2 ln(L/L_saturated)."""
    model = np.maximum(model, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = np.where(counts > 0, counts * np.log(counts / model), 0.0)
    deviance = np.maximum(2.0 * (model - counts + log_term), 0.0)
    return np.sign(counts - model) * np.sqrt(deviance)


def _deviance_slopes(counts, model):
    """Derivatives of :func:`_deviance_residuals` with respect to the model, (1 - c/m)/r;
    -1/sqrt(m) in the limit m → c (taken within 1e-6, where r is rounding)."""
    model = np.maximum(model, 1e-300)
    residuals = _deviance_residuals(counts, model)
    slope = 1.0 - counts / model
    close = np.abs(slope) < 1e-6
    return np.where(close, -1.0 / np.sqrt(model), slope / np.where(close, 1.0, residuals))


@dataclass(frozen=True)
class _LeastSquares:
    params: np.ndarray
    errors: np.ndarray
    cov: np.ndarray
    chi2_reduced: float
    ndof: int
    ok: bool  # converged, covariance of full rank, no parameter on a bound


def _fit_counts(model, p0, lower, upper, counts, *, with_derivatives=False):
    """Poisson least squares of ``model(params)`` on ``counts``, with honest errors.

    With ``with_derivatives``, ``model(params)`` returns the counts and their derivatives
    (bins, parameters): the Jacobian is then analytic instead of finite differences.
    """
    p0 = np.clip(np.asarray(p0, dtype=float), lower, upper)
    jac = "2-point"
    if with_derivatives:
        model_and_derivatives, last = model, {}

        def evaluate(p):  # least_squares asks for the residuals, then the Jacobian, at p
            if "p" not in last or not np.array_equal(last["p"], p):
                last["p"], last["values"] = p.copy(), model_and_derivatives(p)
            return last["values"]

        def model(p):
            return evaluate(p)[0]

        def jac(p):
            values, derivatives = evaluate(p)
            return _deviance_slopes(counts, values)[:, None] * derivatives
    try:
        with np.errstate(all="ignore"):
            result = optimize.least_squares(
                lambda p: _deviance_residuals(counts, model(p)), p0, jac=jac,
                bounds=(lower, upper), x_scale="jac", method="trf",
            )
    except (ValueError, np.linalg.LinAlgError):
        nan = np.full(len(p0), np.nan)
        return _LeastSquares(nan, nan, np.diag(nan), np.nan, 0, False)
    ndof = int(counts.size - len(p0))
    chi2_reduced = 2.0 * result.cost / ndof if ndof > 0 else np.nan
    cov, full_rank = _covariance(result.jac, chi2_reduced)
    on_bound = bool(_on_bound(result.x, lower, upper))
    ok = bool(result.success and full_rank and not on_bound and np.isfinite(chi2_reduced))
    return _LeastSquares(result.x, np.sqrt(np.diag(cov)), cov, chi2_reduced, ndof, ok)


def _covariance(jac, chi2_reduced):
    """Covariance(s) from Jacobian(s) ``jac`` (…, residuals, parameters), as curve_fit
    computes it (pseudo-inverse of JᵀJ through the SVD of J), times max(1, χ²_reduced);
    and whether J has full rank (the covariance is NaN otherwise)."""
    _, s, vt = np.linalg.svd(jac, full_matrices=False)
    nparams = jac.shape[-1]
    full_rank = (s.shape[-1] == nparams) & (
        s[..., -1] > np.finfo(float).eps * max(jac.shape[-2:]) * s[..., 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = np.swapaxes(vt, -1, -2) / s[..., None, :] ** 2 @ vt
    scale = np.where(np.isfinite(chi2_reduced), np.maximum(1.0, chi2_reduced), 1.0)
    cov = np.where(full_rank[..., None, None], cov * np.asarray(scale)[..., None, None], np.nan)
    return cov, full_rank


def _on_bound(params, lower, upper):
    """Whether a parameter is stuck on a bound that only limits the search (a failed fit);
    a bound at exactly 0 (λ, areas) is physical and may be reached. Works on the last axis."""
    span = np.where(np.isfinite(upper - lower), upper - lower, np.abs(params) + 1.0)
    stuck = (np.isfinite(lower) & (lower != 0) & (params - lower < 1e-6 * span)) | (
        np.isfinite(upper) & (upper - params < 1e-6 * span))
    return np.any(stuck, axis=-1)


def histogram(values, lo, hi, bin_width):
    """Counts and edges on bins of ``bin_width`` centred on its multiples, covering [lo, hi]
    (right for quantised data); coarser bins when that would exceed ``MAX_BINS``.

    ``values`` is an array or, when it is histogrammed many times, its
    :class:`~skipperdask.stats.ValueCounts` (the same counts, at the cost of a binary search).
    """
    first = (np.floor(lo / bin_width + 0.5) - 0.5) * bin_width
    nbins = max(int(np.ceil((hi - first) / bin_width)), 1)
    if nbins > MAX_BINS:
        factor = int(np.ceil(nbins / MAX_BINS))
        bin_width *= factor
        nbins = int(np.ceil(nbins / factor))
    counter = values.histogram if isinstance(values, ValueCounts) else partial(np.histogram, values)
    counts, edges = counter(bins=nbins, range=(first, first + nbins * bin_width))
    return counts.astype(float), edges


# ---------------------------------------------------------------- Gaussian and line

def fit_gaussian(counts, edges):
    """Fit a bin-integrated Gaussian to a histogram: :func:`fit_gaussians` on one row.

    Parameters
    ----------
    counts : array_like
        Counts per bin.
    edges : array_like
        Bin edges (``len(counts) + 1``).

    Returns
    -------
    GaussianFit
        ``mu``, ``sigma`` and ``amplitude`` (area in counts) with their one-sigma errors and the
        reduced χ²; all NaN with ``reason`` when the histogram cannot give a Gaussian (empty,
        fewer than 3 bins, all counts in one bin) or the fit fails.
    """
    return fit_gaussians(np.asarray(counts, dtype=float)[None, :],
                         np.asarray(edges, dtype=float)[None, :])[0]


def fit_gaussians(counts, edges, mask=None):
    """Fit a bin-integrated Gaussian to each row of a stack of histograms, at once.

    The estimator is the binned Poisson maximum likelihood (the minimum of the deviance,
    which is also ``chi2_reduced`` × degrees of freedom), started from the moments of the
    histogram and found by Newton's method with the analytic derivatives of the
    bin-integrated Gaussian (differences of normal CDFs and PDFs), steps halved until the
    deviance decreases and kept within the bounds (μ within the histogram, σ > 0).
    The errors are one standard deviation from the inverse Fisher information
    Σ ∂m ∂mᵀ / m at the minimum, multiplied by max(1, χ²_reduced) as in the module
    docstring.

    Parameters
    ----------
    counts : array_like (rows, bins)
        Counts per bin, one histogram per row.
    edges : array_like (rows, bins + 1) or (bins + 1,)
        Bin edges of each row (or one set for all rows), increasing over the used bins.
    mask : array_like of bool (rows, bins), optional
        The bins used; others (padding, so that windows of different lengths can be stacked)
        are ignored, their counts and edges may be anything.

    Returns
    -------
    list of GaussianFit
        One per row, as :func:`fit_gaussian` gives.
    """
    counts = np.atleast_2d(np.asarray(counts, dtype=float))
    rows, nbins = counts.shape
    edges = np.broadcast_to(np.asarray(edges, dtype=float), (rows, nbins + 1))
    mask = (np.ones(counts.shape, bool) if mask is None
            else np.broadcast_to(np.asarray(mask, dtype=bool), counts.shape))
    used = mask.sum(axis=1)
    with np.errstate(invalid="ignore"):
        total = np.where(mask, counts, 0.0).sum(axis=1)
    reasons = np.select(
        [used < 3, ~np.isfinite(total) | (total <= 0),
         np.count_nonzero(mask & (counts != 0), axis=1) < 2],
        [np.char.add(np.char.add("fewer than 3 bins (", used.astype(str)), ")"),
         "empty histogram", "all counts in one bin: width below the bin width"], "").tolist()
    good = np.flatnonzero(np.array([not r for r in reasons], bool))
    results = [GaussianFit(*([np.nan] * 7), reason=reason) for reason in reasons]
    if good.size:
        fitted = _fit_gaussian_rows(counts[good], edges[good], mask[good])
        for row, fit in zip(good, fitted, strict=True):
            results[row] = fit
    return results


def _fit_gaussian_rows(counts, edges, mask):
    """:func:`fit_gaussians` on rows that hold at least 3 bins and 2 with counts."""
    rows = counts.shape[0]
    counts = np.where(mask, counts, 0.0)
    # padded edges: the row's first used edge, so that padded bins have zero width
    lower_edges = np.where(mask, edges[:, :-1], np.inf)
    upper_edges = np.where(mask, edges[:, 1:], -np.inf)
    first_edge, last_edge = lower_edges.min(axis=1), upper_edges.max(axis=1)
    edge_used = np.zeros(edges.shape, bool)
    edge_used[:, :-1] |= mask
    edge_used[:, 1:] |= mask
    edges = np.where(edge_used, edges, first_edge[:, None])
    width = np.where(mask, np.diff(edges, axis=1), np.inf).min(axis=1)
    # moments of the binned data, less the bin's own variance (Sheppard), never below 1/4 bin
    centres = 0.5 * (edges[:, :-1] + edges[:, 1:])
    total = counts.sum(axis=1)
    mu = (counts * centres).sum(axis=1) / total
    variance = (counts * (centres - mu[:, None]) ** 2).sum(axis=1) / total - width**2 / 12
    sigma = np.sqrt(np.maximum(variance, (width / 4) ** 2))
    lower = np.stack([first_edge, 1e-6 * width, np.zeros(rows)], axis=1)
    upper = np.stack([last_edge, last_edge - first_edge, np.full(rows, np.inf)], axis=1)
    start = np.clip(np.stack([mu, sigma, total], axis=1), lower, upper)
    with np.errstate(all="ignore"):
        params, converged = _newton_gaussians(counts, edges, mask, start, lower, upper)
        model, first, _ = _gaussian_model(edges, params)
        ndof = mask.sum(axis=1) - 3
        chi2_reduced = np.where(ndof > 0, _deviance(counts, model, mask).sum(axis=1)
                                / np.maximum(ndof, 1), np.nan)
        # the Fisher information Σ ∂m ∂mᵀ / m is JᵀJ of these residual derivatives
        weighted = np.where(mask, 1.0 / np.sqrt(np.maximum(model, 1e-300)), 0.0)
        cov, full_rank = _covariance(first * weighted[..., None], chi2_reduced)
    errors = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    ok = converged & full_rank & ~_on_bound(params, lower, upper) & np.isfinite(chi2_reduced)
    return [GaussianFit(*p, *e, c) if good else
            GaussianFit(*([np.nan] * 7), reason="Gaussian fit did not converge")
            for p, e, c, good in zip(params, errors, chi2_reduced, ok, strict=True)]


def _deviance(counts, model, mask):
    """Poisson deviance of each bin, 2 (m - c + c ln(c/m)); 0 in bins not used."""
    model = np.maximum(model, 1e-300)
    log_term = np.where(counts > 0, counts * np.log(np.where(counts > 0, counts, 1.0) / model),
                        0.0)
    return np.where(mask, 2.0 * (model - counts + log_term), 0.0)


#: Newton iterations (each a full step or a halving) before a Gaussian fit is failed
MAX_NEWTON_STEPS = 200
#: a Gaussian fit has converged when Newton's step is below this fraction of σ (μ, σ) and area
NEWTON_TOLERANCE = 1e-9
#: ... or when its step promises to lower the deviance by less than this
NEWTON_DECREMENT = 1e-12


def _newton_gaussians(counts, edges, mask, params, lower, upper):
    """Minimise the deviance of each row: (parameters, converged).

    Newton's direction from the Hessian of the deviance, made a descent direction by taking
    the absolute values of its eigenvalues (in units of the parameters' curvature): near
    the minimum it is Newton's method, far from it a scaled gradient descent.
    """
    rows = counts.shape[0]
    active = np.ones(rows, bool)  # still iterating
    converged = np.zeros(rows, bool)
    deviance = _deviance(counts, _gaussian_model(edges, params)[0], mask).sum(axis=1)
    step = np.zeros_like(params)
    length = np.ones(rows)  # fraction of Newton's step tried
    fresh = np.ones(rows, bool)  # rows whose Newton step must be computed
    for _ in range(MAX_NEWTON_STEPS):
        if fresh.any():
            rows_ = np.flatnonzero(fresh)
            step[rows_], small = _newton_step(counts[rows_], edges[rows_], mask[rows_],
                                              params[rows_])
            # a step already below the tolerance: take it and stop
            converged[rows_[small]] = True
            length[rows_] = 1.0
            fresh[:] = False
        rows_ = np.flatnonzero(active)
        if rows_.size == 0:
            break
        trial = np.clip(params[rows_] + length[rows_, None] * step[rows_], lower[rows_],
                        upper[rows_])
        trial_deviance = _deviance(counts[rows_], _gaussian_model(edges[rows_], trial)[0],
                                   mask[rows_]).sum(axis=1)
        # a step that no longer changes the parameters, or no decrease even at 1e-8 of
        # Newton's step: at the minimum to rounding (the gradient's rounding limits the step)
        unchanged = np.all(trial == params[rows_], axis=1)
        accept = (trial_deviance <= deviance[rows_]) & ~unchanged
        taken = rows_[accept]
        params[taken] = trial[accept]
        deviance[taken] = trial_deviance[accept]
        active[taken[converged[taken]]] = False
        fresh[taken[~converged[taken]]] = True
        # rows whose last step was below the tolerance stop whether or not it was taken
        halved = rows_[~accept & ~unchanged & ~converged[rows_]]
        length[halved] /= 2
        stalled = np.r_[rows_[unchanged | (converged[rows_] & ~accept)],
                        halved[length[halved] < 1e-8]]
        converged[stalled] = True
        active[stalled] = False
    return params, converged & ~active


def _newton_step(counts, edges, mask, params):
    """Newton's step of the deviance of each row and whether it is below the tolerance."""
    model, first, second = _gaussian_model(edges, params, second=True)
    model = np.maximum(model, 1e-300)
    ratio = np.where(mask, counts / model, 0.0)
    residual = np.where(mask, 1.0 - ratio, 0.0)
    gradient = np.einsum("rb,rbi->ri", residual, first)
    hessian = (np.einsum("rb,rbi,rbj->rij", ratio / model, first, first)
               + np.einsum("rb,rbij->rij", residual, second))
    # in units of the curvature of each parameter, with a floor on the eigenvalues
    scale = np.sqrt(np.maximum(np.abs(np.diagonal(hessian, axis1=1, axis2=2)), 1e-300))
    eigenvalues, vectors = np.linalg.eigh(hessian / scale[:, :, None] / scale[:, None, :])
    eigenvalues = np.maximum(np.abs(eigenvalues),
                             1e-12 * np.abs(eigenvalues).max(axis=1, keepdims=True))
    projected = np.einsum("rji,rj->ri", vectors, gradient / scale) / eigenvalues
    step = -np.einsum("rij,rj->ri", vectors, projected) / scale
    size = np.abs(step) / np.stack([params[:, 1], params[:, 1],
                                    np.maximum(params[:, 2], 1.0)], axis=1)
    # the decrease of the deviance Newton's step promises: below NEWTON_DECREMENT the step
    # is under 1e-6 standard errors (the gradient's rounding may keep it above the tolerance)
    decrement = -np.einsum("ri,ri->r", gradient, step)
    return step, (size.max(axis=1) < NEWTON_TOLERANCE) | (decrement < NEWTON_DECREMENT)


def fit_line(x, y):
    """Fit a straight line by ordinary least squares.

    Parameters
    ----------
    x, y : array_like
        Points; pairs with a non-finite value are left out.

    Returns
    -------
    LineFit
        slope, intercept and their standard errors from the scatter of the residuals; NaN
        with ``reason`` for fewer than 3 points or when all x are equal.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    good = np.isfinite(x) & np.isfinite(y)
    x, y = x[good], y[good]
    if x.size < 3:
        return LineFit(np.nan, np.nan, np.nan, np.nan, f"fewer than 3 points ({x.size})")
    x_mean, y_mean = x.mean(), y.mean()
    sxx = np.sum((x - x_mean) ** 2)
    if sxx == 0:
        return LineFit(np.nan, np.nan, np.nan, np.nan, "all x values equal")
    slope = np.sum((x - x_mean) * (y - y_mean)) / sxx
    intercept = y_mean - slope * x_mean
    residual_variance = np.sum((y - intercept - slope * x) ** 2) / (x.size - 2)
    slope_err = np.sqrt(residual_variance / sxx)
    intercept_err = np.sqrt(residual_variance * (1 / x.size + x_mean**2 / sxx))
    return LineFit(slope, intercept, slope_err, intercept_err)


# ---------------------------------------------------------------- starting values

@dataclass(frozen=True)
class _ZeroPeak:
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
    values, degenerate = _degenerate(values)
    if degenerate is not None:
        reason = degenerate.reasons["sigma"]
        return GaussianFit(degenerate.x0, *[np.nan] * 6, reason)
    zero, reason, peak = _zero_peak(values, bin_width)
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
    values = _distribution(values)
    if values.size < MIN_PIXELS:
        return np.nan
    return _first_scale(values, 0.0)[1]


def _first_scale(values, bin_width):
    """Lowest quantile and a scale of the noise from the spread of the lowest quantiles.

    The lowest values all belong to the zero-electron peak; between the quantiles p and 4p
    (p = 0.1 %) its Gaussian tail spans 0.44σ (λ = 0) to 0.65σ (λ = 3), so twice the
    spread is σ within ±30 %; the histogram cannot resolve less than a bin.
    """
    p_low = max(0.001, 10 / values.size)
    q1, q2 = values.quantile([p_low, 4 * p_low])
    return q1, max(2 * (q2 - q1), bin_width)


def _smooth(counts, width_in_bins):
    """Counts smoothed by a Gaussian kernel (left alone below one bin), and the variance factor."""
    if width_in_bins < 1.0:
        return counts, 1.0
    # a Poisson count smoothed by a unit-area Gaussian of s bins keeps 1/(2√π s) of its variance
    return (ndimage.gaussian_filter1d(counts, width_in_bins, mode="constant"),
            1.0 / (2.0 * np.sqrt(np.pi) * width_in_bins))


def _significant_peaks(smooth, variance_factor):
    """Indices of the peaks of a smoothed histogram that stand 5 standard deviations out.

    A peak's prominence must exceed 5 times the Poisson noise of the smoothed count at its
    top, and 1 % of the highest count (so that far tails do not count).
    """
    peaks, properties = signal.find_peaks(np.r_[0.0, smooth, 0.0], prominence=0.0)
    peaks = peaks - 1
    noise = np.sqrt(np.maximum(smooth[peaks], 1.0) * variance_factor)
    keep = properties["prominences"] >= np.maximum(5 * noise, 0.01 * smooth.max())
    return peaks[keep]


def _lowest_peak(values, bin_width):
    """Position of the lowest prominent peak (the zero-electron peak) and the first scale."""
    q1, scale = _first_scale(values, bin_width)
    counts, edges = histogram(values, q1 - 3 * scale, q1 + 8 * scale, bin_width)
    smooth, variance_factor = _smooth(counts, scale / 2 / np.diff(edges[:2])[0])
    peaks = _significant_peaks(smooth, variance_factor)
    index = peaks[0] if peaks.size else int(np.argmax(smooth))
    return 0.5 * (edges[index] + edges[index + 1]), scale


def _zero_peak(values, bin_width):
    """The zero-electron peak: (``_ZeroPeak``, "") or (None, reason) with the peak's position."""
    peak, scale = _lowest_peak(values, bin_width)
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
    zero = _ZeroPeak(gauss.mu, gauss.sigma, gauss.amplitude, gauss.mu_err, gauss.sigma_err)
    return zero, "", peak


def _search_top(values, x0, sigma):
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


def _gain_candidates(values, bin_width, zero):
    """Candidate gains: offsets of residual peaks above the zero-electron peak, or a reason."""
    top, n_charged = _search_top(values, zero.x0, zero.sigma)
    if n_charged < MIN_PEAK_PIXELS:
        return [], f"{NOT_RESOLVED_FEW} {n_charged} pixels above the zero-electron peak"
    counts, edges = histogram(values, zero.x0 - 5 * zero.sigma, top, bin_width)
    width = np.diff(edges[:2])[0]
    residual = counts - zero.area * _bin_probabilities(edges, [zero.x0], zero.sigma)[0]
    smooth_residual, variance_factor = _smooth(residual, zero.sigma / width)
    smooth_counts, _ = _smooth(counts, zero.sigma / width)
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


# ---------------------------------------------------------------- the Gaussian-smeared Poisson

def _populated(n, lam):
    """Highest k whose peak holds at least ``POPULATED`` pixels (at least 1)."""
    return max(int(stats.poisson.isf(POPULATED / max(n, 1.0), lam)) + 1, 1)


def _fit_window(values, bin_width, x0, sigma, gain, k_top):
    """Histogram from x0 - 5σ to the peak k_top plus max(3σ, g/2)."""
    return histogram(values, x0 - 5 * sigma, x0 + gain * k_top + max(3 * sigma, gain / 2),
                      bin_width)


def _fit_poisson_heights(values, bin_width, x0, sigma, gain, lam, n):
    """Least squares of the Gaussian-smeared Poisson; the window follows the fitted λ."""
    k_top = _populated(n, lam)
    for _ in range(2):
        counts, edges = _fit_window(values, bin_width, x0, sigma, gain, k_top)
        kmax = k_top + 3

        def model(p, edges=edges, kmax=kmax):
            return _gauss_poisson_derivatives(edges, p, kmax)

        lower = np.array([edges[0], 1e-6 * sigma, gain / 1.5, 0.0, 0.0])
        upper = np.array([edges[-1], np.inf, gain * 1.5, 50.0, np.inf])
        fit = _fit_counts(model, [x0, sigma, gain, lam, n], lower, upper, counts,
                          with_derivatives=True)
        if not fit.ok:
            break
        x0, sigma, gain, lam, n = fit.params
        new_top = _populated(n, lam)
        if new_top == k_top:
            break
        k_top = new_top
    result = _as_fit(fit, edges, counts, "poisson")
    return result, fit.ok


def _as_fit(fit, edges, counts, method):
    x0, sigma, gain, lam, n = fit.params
    x0_err, sigma_err, gain_err, lam_err, _ = fit.errors
    return GaussPoissonFit(x0, sigma, gain, lam, n, x0_err, sigma_err, gain_err, lam_err,
                           fit.chi2_reduced, fit.ndof, method, edges, counts, {})


def _fit_free_heights(start):
    """The free-heights model (:func:`_free_heights_counts`) on the histogram of ``start``.

    λ is the ratio of the one- to the zero-electron areas, Pois(1; λ)/Pois(0; λ). The fit
    fails when the one-electron area is not 5 standard errors above 0: free heights at a
    fraction of the true gain (with empty peaks in between) would otherwise fit as well.
    """
    edges, counts = start.edges, start.counts
    k = np.arange(int((edges[-1] - start.x0) / start.gain) + 1)
    npk = k.size
    areas = start.n * stats.poisson.pmf(k, start.lam)

    def model(p):
        return _free_heights_counts(edges, p[0], p[1], p[2], p[3], p[4:4 + npk], p[4 + npk:])

    zeros = np.zeros(2 * npk - 1)
    lower = np.r_[edges[0], 1e-6 * start.sigma, start.gain / 1.5, 0.0, zeros]
    upper = np.r_[edges[-1], np.inf, start.gain * 1.5, start.gain, zeros + np.inf]
    p0 = np.r_[start.x0, start.sigma, start.gain, 0.01 * start.sigma, areas,
               0.01 * areas[1:]]
    fit = _fit_counts(model, p0, lower, upper, counts)
    x0, sigma, gain, _, a0, a1 = fit.params[:6]
    cov = fit.cov[4:6, 4:6]
    significant = a1 > 5 * np.sqrt(cov[1, 1])
    lam = a1 / a0 if a0 > 0 else np.nan
    lam_err = abs(lam) * np.sqrt(cov[0, 0] / a0**2 + cov[1, 1] / a1**2
                                 - 2 * cov[0, 1] / (a0 * a1)) if a0 > 0 and a1 > 0 else np.nan
    result = GaussPoissonFit(x0, sigma, gain, lam, fit.params[4:].sum(), *fit.errors[:3],
                             lam_err, fit.chi2_reduced, fit.ndof, "free-heights", edges, counts,
                             {})
    return result, fit.ok and bool(significant)


def _check_resolution(fit):
    """Gain and λ missing when the single-electron peaks are not resolved."""
    ratio = fit.sigma / fit.gain
    one_electron = fit.n * stats.poisson.pmf(1, fit.lam)
    if ratio >= RESOLUTION_LIMIT:
        reason = (f"single-electron peaks not resolved (σ/g = {ratio:.2f} ≥ "
                  f"{RESOLUTION_LIMIT})")
    elif not one_electron >= MIN_PEAK_PIXELS:
        reason = (f"single-electron peaks not resolved: {one_electron:.3g} pixels in the "
                  f"one-electron peak (fewer than {MIN_PEAK_PIXELS})")
    else:
        return fit
    return _without_gain(fit, reason)


def _without_gain(fit, reason):
    return GaussPoissonFit(
        fit.x0, fit.sigma, np.nan, np.nan, fit.n, fit.x0_err, fit.sigma_err, np.nan, np.nan,
        fit.chi2_reduced, fit.ndof, fit.method, fit.edges, fit.counts,
        {**fit.reasons, "gain": reason, "lam": reason},
    )


def _distribution(values):
    """The ValueCounts of an array's finite values (or the ValueCounts given)."""
    return values if isinstance(values, ValueCounts) else ValueCounts.of_values(values)


def _degenerate(values):
    """(ValueCounts of the finite values, None) or (them, the missing fit of an input that
    cannot be fitted)."""
    values = _distribution(values)
    if values.size == 0:
        reason = "no finite pixel value"
        return values, _missing_fit(dict.fromkeys(("x0", "sigma", "gain", "lam"), reason))
    if values.size < MIN_PIXELS:
        reason = f"too few pixels ({values.size} < {MIN_PIXELS})"
        return values, _missing_fit(dict.fromkeys(("x0", "sigma", "gain", "lam"), reason))
    if values.min == values.max:
        reason = f"constant image (every value is {values.min:.6g})"
        return values, _missing_fit(dict.fromkeys(("sigma", "gain", "lam"), reason),
                                    x0=values.min)
    return values, None


def fit_gauss_poisson(values, *, bin_width=1.0, method="auto"):
    """Fit the Gaussian-smeared Poisson to the values of an average image.

    The procedure (starting values from the data, fit window, quality test, fall-backs,
    resolution limit) is described in the module docstring.

    Parameters
    ----------
    values : array_like
        Pixel values, in the frame where charge raises the value; non-finite values are left out.
    bin_width : float, optional
        Bin width of the fitted histogram, in ADU.
    method : {"auto", "fallback"}, optional
        ``"fallback"`` skips the least-squares fit and uses :func:`fit_peaks` directly.

    Returns
    -------
    GaussPoissonFit
        Never raises for bad data: missing values are NaN with a reason in ``reasons``.
    """
    if method not in ("auto", "fallback"):
        raise ValueError(f"method must be 'auto' or 'fallback', not {method!r}")
    values, degenerate = _degenerate(values)
    if degenerate is not None:
        return degenerate
    if method == "fallback":
        return fit_peaks(values, bin_width=bin_width)
    zero, reason, peak = _zero_peak(values, bin_width)
    if zero is None:
        return _missing_fit(dict.fromkeys(("sigma", "gain", "lam"), reason), x0=peak)
    zero_only = {"x0": zero.x0, "sigma": zero.sigma, "x0_err": zero.x0_err,
                 "sigma_err": zero.sigma_err}
    candidates, reason = _gain_candidates(values, bin_width, zero)
    if not candidates and not reason.startswith(NOT_RESOLVED_FEW):
        candidates = list(zero.sigma * SHOULDER_GAINS)
    if not candidates:
        return _missing_fit({"gain": reason, "lam": reason}, **zero_only)
    lam = -np.log(np.clip(zero.area / values.size, 1e-9, 0.999))
    poisson = []
    for gain in candidates:
        poisson.append(_poisson_or_start(values, bin_width, zero, gain, lam))
        fit, ok = poisson[-1]
        if ok and _acceptable(fit) and "gain" not in _check_resolution(fit).reasons:
            # Poisson heights that describe the data with resolved peaks are unique: a
            # fraction or a multiple of the gain would put pixels in empty peaks. (An
            # acceptable fit without them, λ near 0 on a narrow window say, is weighed
            # against the other candidates, as below.)
            return fit
    converged = [fit for fit, ok in poisson if ok]
    if not any(_acceptable(fit) for fit in converged):
        # at σ/g ≳ 0.3 the one-electron peak is a shoulder of the zero peak: the residual's
        # peak misplaces it, so also start from gains spread over the resolvable range
        tried = np.array(candidates)
        for gain in zero.sigma * SHOULDER_GAINS:
            if np.all(np.abs(tried / gain - 1) > 0.2):
                poisson.append(_poisson_or_start(values, bin_width, zero, gain, lam))
        converged = [fit for fit, ok in poisson if ok]
    if converged:
        best = min(converged, key=lambda fit: fit.chi2_reduced)
        if _acceptable(best):
            return _check_resolution(best)
    # Poisson heights rejected or never converged: free heights from each start
    free = [fit for fit, ok in (_fit_free_heights(start) for start, _ in poisson) if ok]
    if free:
        best = min(free, key=lambda fit: fit.chi2_reduced)
        if _acceptable(best):
            return _check_resolution(best)
    elif not converged:
        return fit_peaks(values, bin_width=bin_width)
    # the zero peak's lower side alone can be wrong too (bins too coarse to resolve it):
    # when no model holds, only its position is kept
    reason = f"model does not describe the data (reduced chi2 = {best.chi2_reduced:.3g})"
    failed = GaussPoissonFit(
        zero.x0, np.nan, np.nan, np.nan, np.nan, zero.x0_err, np.nan, np.nan, np.nan,
        best.chi2_reduced, best.ndof, best.method, best.edges, best.counts, {"sigma": reason})
    return _without_gain(failed, reason)


def _poisson_or_start(values, bin_width, zero, gain, lam):
    """(Poisson-heights fit, True) from this starting gain, or (its start, False) when it
    does not converge (the start of a free-heights fit)."""
    fit, ok = _fit_poisson_heights(values, bin_width, zero.x0, zero.sigma, gain, lam, values.size)
    return (fit, True) if ok else (_start(values, bin_width, zero, gain, lam), False)


def _start(values, bin_width, zero, gain, lam):
    """The starting point of a fit, on its window, for free heights when Poisson failed."""
    n = values.size
    counts, edges = _fit_window(values, bin_width, zero.x0, zero.sigma, gain, _populated(n, lam))
    return GaussPoissonFit(zero.x0, zero.sigma, gain, lam, n, *[np.nan] * 5, 0, "start",
                           edges, counts, {})


def _acceptable(fit):
    """The fit-quality test on the reduced χ² (deviance per degree of freedom).

    Poisson heights must be statistically acceptable: χ² at most 5 standard deviations
    above its expectation, 1 + 5·sqrt(2/ndof) (charge smeared by loss biases their gain by
    several per cent while raising χ² only a little). Free heights, which hold a continuum
    and peaks broadening with charge, may show the small imperfections of real detectors
    seen with hundreds of thousands of pixels: χ² at most ``CHI2_ACCEPT``.
    """
    if fit.ndof <= 0:
        return False
    if fit.method == "poisson":
        return fit.chi2_reduced <= 1 + 5 * np.sqrt(2 / fit.ndof)
    return fit.chi2_reduced <= CHI2_ACCEPT


# ---------------------------------------------------------------- the fallback of SPEC §2

def fit_peaks(values, *, bin_width=1.0):
    """The fallback of SPEC §2: Gaussians on the peaks of a smoothed histogram.

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
    """
    values, degenerate = _degenerate(values)
    if degenerate is not None:
        return degenerate
    x0, scale = _lowest_peak(values, bin_width)
    top, _ = _search_top(values, x0, scale)
    counts, edges = histogram(values, x0 - 5 * scale, top, bin_width)
    width = np.diff(edges[:2])[0]
    smooth, variance_factor = _smooth(counts, scale / 2 / width)
    peaks = _significant_peaks(smooth, variance_factor)
    if peaks.size == 0:
        reason = "fallback: no peak found in the smoothed histogram"
        return _missing_fit(dict.fromkeys(("x0", "sigma", "gain", "lam"), reason))
    bounds = np.r_[0, (peaks[:-1] + peaks[1:]) // 2 + 1, counts.size]
    if peaks.size > 1:  # the last peak gets as much room above as below
        bounds[-1] = min(counts.size, peaks[-1] + (peaks[-1] - bounds[-2]) + 1)
    gaussians = [fit_gaussian(counts[a:b], edges[a:b + 1])
                 for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    first = gaussians[0]
    if first.reason:
        reason = f"fallback: Gaussian on the first peak failed ({first.reason})"
        return _missing_fit(dict.fromkeys(("x0", "sigma", "gain", "lam"), reason))
    base = dict(x0=first.mu, sigma=first.sigma, x0_err=first.mu_err, sigma_err=first.sigma_err)
    good = [g for g in gaussians if not g.reason]
    if len(good) < 2:
        reason = "single-electron peaks not resolved: the fallback found one peak only"
        return _missing_fit({"gain": reason, "lam": reason}, **base)
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
    return _check_resolution(fit)


def _poisson_from_areas(electrons, areas, area_errors):
    """λ, its error and the total from areas of peaks of k electrons, weighted by their errors."""
    areas = np.asarray(areas, dtype=float)
    errors = np.maximum(np.asarray(area_errors, dtype=float), 1.0)
    start_lam = max(areas[electrons == 1].sum() / max(areas[electrons == 0].sum(), 1.0), 1e-3)

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


# ---------------------------------------------------------------- tail ratio

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
        The fit of these values.
    values : array_like
        The same pixel values (non-finite ones are left out).

    Returns
    -------
    (float, str)
        The ratio and "" or NaN and why.
    """
    if not (np.isfinite(fit.sigma) and np.isfinite(fit.x0)):
        return np.nan, f"no noise from the fit ({fit.reasons.get('sigma', 'sigma missing')})"
    values = _distribution(values)
    expected = values.size * stats.norm.sf(4.0)
    if expected == 0:
        return np.nan, "no finite pixel value"
    if not (np.isfinite(fit.gain) and np.isfinite(fit.lam)):
        why = fit.reasons.get("gain") or fit.reasons.get("lam") or "gain or λ missing"
        return np.nan, f"no fitted Gauss-Poisson model ({why})"
    if fit.lam > 0:
        kmax = int(stats.poisson.isf(1e-12, fit.lam)) + 1
        weights = stats.poisson.pmf(np.arange(kmax + 1), fit.lam)
        centres = fit.x0 + fit.gain * np.arange(kmax + 1)

        def excess(x):
            return weights @ stats.norm.sf((x - centres) / fit.sigma) - stats.norm.sf(4.0)

        threshold = optimize.brentq(excess, fit.x0 + 4 * fit.sigma,
                                    centres[-1] + 10 * fit.sigma)
    else:
        threshold = fit.x0 + 4 * fit.sigma
    return float(values.count_above(threshold)) / expected, ""
