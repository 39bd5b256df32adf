"""Gaussians fitted to histograms, many at once: the noise of single-sample images, of
partial averages and of the zero-electron peak.

The estimator is the binned Poisson maximum likelihood found by Newton's method with the
analytic derivatives of the bin-integrated Gaussian, all histograms of a stack at once
(padded to a common length with masked bins). Errors are the inverse Fisher information
Σ ∂m ∂mᵀ / m at the minimum, scaled by max(1, χ²ᵣ) (the PDG scale factor).
"""

import math
from dataclasses import dataclass

import numba
import numpy as np

from .likelihood import covariance, deviance, gaussian_bins, on_bound, pdg_scale


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
        model, first, _ = gaussian_bins(edges, params)
        ndof = mask.sum(axis=1) - 3
        chi2_reduced = np.where(ndof > 0, deviance(counts, model, mask).sum(axis=1)
                                / np.maximum(ndof, 1), np.nan)
        # the Fisher information Σ ∂m ∂mᵀ / m is JᵀJ of these residual derivatives
        weighted = np.where(mask, 1.0 / np.sqrt(np.maximum(model, 1e-300)), 0.0)
        cov, full_rank = covariance(first * weighted[..., None], pdg_scale(chi2_reduced))
    errors = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    ok = converged & full_rank & ~on_bound(params, lower, upper) & np.isfinite(chi2_reduced)
    return [GaussianFit(*p, *e, c) if good else
            GaussianFit(*([np.nan] * 7), reason="Gaussian fit did not converge")
            for p, e, c, good in zip(params, errors, chi2_reduced, ok, strict=True)]


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
    the minimum it is Newton's method, far from it a scaled gradient descent. The step is
    halved until the deviance decreases. Compiled, row by row: the rows are independent,
    and for histograms of tens of bins numpy's per-call overhead was most of the time.
    """
    params = np.ascontiguousarray(params, dtype=float).copy()
    converged = _newton_rows(np.ascontiguousarray(counts, dtype=float),
                             np.ascontiguousarray(edges, dtype=float),
                             np.ascontiguousarray(mask, dtype=np.bool_), params,
                             np.ascontiguousarray(lower, dtype=float),
                             np.ascontiguousarray(upper, dtype=float),
                             MAX_NEWTON_STEPS, NEWTON_TOLERANCE, NEWTON_DECREMENT)
    return params, converged


@numba.njit(cache=True, nogil=True)
def _newton_rows(counts, edges, mask, params, lower, upper, max_steps, tolerance, decrement):
    """:func:`_newton_gaussians` on every row, ``params`` updated in place."""
    converged = np.zeros(counts.shape[0], np.bool_)
    for row in range(counts.shape[0]):
        converged[row] = _newton_row(counts[row], edges[row], mask[row], params[row],
                                     lower[row], upper[row], max_steps, tolerance, decrement)
    return converged


@numba.njit(cache=True, nogil=True)
def _newton_row(counts, edges, mask, params, lower, upper, max_steps, tolerance, decrement):
    """Newton's method on one row (``params`` updated in place); whether it converged: its
    step fell below the tolerance, or no longer changed the parameters, or halving it 27
    times (to 1e-8 of Newton's step) never lowered the deviance."""
    current = _row_deviance(counts, edges, mask, params)
    step = np.zeros(3)
    trial = np.empty(3)
    length, fresh, small = 1.0, True, False
    for _ in range(max_steps):
        if fresh:
            broken, small = _newton_step_row(counts, edges, mask, params, step, tolerance,
                                             decrement)
            if broken:
                return False
            length, fresh = 1.0, False
        unchanged = True
        for i in range(3):
            trial[i] = min(max(params[i] + length * step[i], lower[i]), upper[i])
            unchanged &= trial[i] == params[i]
        if unchanged:
            return True  # a step that no longer changes the parameters: at the minimum
        trial_deviance = _row_deviance(counts, edges, mask, trial)
        if trial_deviance <= current:
            for i in range(3):
                params[i] = trial[i]
            current = trial_deviance
            if small:
                return True
            fresh = True
        elif small:
            return True  # a step below the tolerance that does not decrease: at the minimum
        else:
            length /= 2
            if length < 1e-8:
                return True
    return False


@numba.njit(cache=True, nogil=True)
def _row_deviance(counts, edges, mask, params):
    """The Poisson deviance of one row's used bins under a bin-integrated Gaussian."""
    mu, sigma, area = params[0], params[1], params[2]
    root_half = math.sqrt(0.5)
    total = 0.0
    z_low = (edges[0] - mu) / sigma
    tail_low = 0.5 * math.erfc(abs(z_low) * root_half)
    for i in range(counts.size):
        z = (edges[i + 1] - mu) / sigma
        tail = 0.5 * math.erfc(abs(z) * root_half)
        if mask[i]:
            if z_low > 0.0:
                probability = tail_low - tail
            else:
                probability = (tail if z <= 0.0 else 1.0 - tail) - tail_low
            model = max(area * probability, 1e-300)
            count = counts[i]
            total += 2.0 * (model - count + (count * math.log(count / model) if count > 0 else 0.0))
        z_low, tail_low = z, tail
    return total


@numba.njit(cache=True, nogil=True)
def _newton_step_row(counts, edges, mask, params, step, tolerance, decrement):
    """Newton's step of one row's deviance, into ``step``; (whether the curvature is not
    finite, whether the step is below the tolerance)."""
    mu, sigma, area = params[0], params[1], params[2]
    root_half, density = math.sqrt(0.5), 1.0 / math.sqrt(2.0 * math.pi)
    gradient = np.zeros(3)
    hessian = np.zeros((3, 3))
    first = np.empty(3)
    z_low = (edges[0] - mu) / sigma
    tail_low = 0.5 * math.erfc(abs(z_low) * root_half)
    pdf_low = density * math.exp(-0.5 * z_low * z_low)
    for i in range(counts.size):
        z = (edges[i + 1] - mu) / sigma
        tail = 0.5 * math.erfc(abs(z) * root_half)
        pdf = density * math.exp(-0.5 * z * z)
        if mask[i]:
            if z_low > 0.0:
                probability = tail_low - tail
            else:
                probability = (tail if z <= 0.0 else 1.0 - tail) - tail_low
            # derivatives of Φ at the bin's edges (gaussian_bins' formulas), lower - upper
            d_mu = (pdf_low - pdf) / sigma
            d_sigma = (z_low * pdf_low - z * pdf) / sigma
            d_mumu = d_sigma / sigma
            d_musigma = -((1 - z_low * z_low) * pdf_low - (1 - z * z) * pdf) / sigma / sigma
            d_sigmasigma = -(z_low * pdf_low * (2 - z_low * z_low)
                             - z * pdf * (2 - z * z)) / sigma / sigma
            model = max(area * probability, 1e-300)
            ratio = counts[i] / model
            residual = 1.0 - ratio
            first[0], first[1], first[2] = area * d_mu, area * d_sigma, probability
            for a in range(3):
                gradient[a] += residual * first[a]
                for b in range(3):
                    hessian[a, b] += ratio / model * first[a] * first[b]
            hessian[0, 0] += residual * area * d_mumu
            hessian[0, 1] += residual * area * d_musigma
            hessian[1, 0] += residual * area * d_musigma
            hessian[1, 1] += residual * area * d_sigmasigma
            hessian[0, 2] += residual * d_mu
            hessian[2, 0] += residual * d_mu
            hessian[1, 2] += residual * d_sigma
            hessian[2, 1] += residual * d_sigma
        z_low, tail_low, pdf_low = z, tail, pdf
    scale = np.empty(3)
    for a in range(3):
        if not np.isfinite(gradient[a]):
            return True, False
        for b in range(3):
            if not np.isfinite(hessian[a, b]):
                return True, False
        # in units of the curvature of each parameter, with a floor on the eigenvalues
        scale[a] = math.sqrt(max(abs(hessian[a, a]), 1e-300))
    scaled = np.empty((3, 3))
    for a in range(3):
        for b in range(3):
            scaled[a, b] = hessian[a, b] / (scale[a] * scale[b])
    eigenvalues, vectors = _symmetric_eigen(scaled)
    largest = max(abs(eigenvalues[0]), abs(eigenvalues[1]), abs(eigenvalues[2]))
    for j in range(3):
        eigenvalues[j] = max(abs(eigenvalues[j]), 1e-12 * largest)
    for i in range(3):  # step = -V diag(1/|λ|) Vᵀ (g/scale) / scale
        step[i] = 0.0
    for j in range(3):
        projected = 0.0
        for i in range(3):
            projected += vectors[i, j] * gradient[i] / scale[i]
        projected /= eigenvalues[j]
        for i in range(3):
            step[i] -= vectors[i, j] * projected / scale[i]
    size = max(abs(step[0]) / sigma, abs(step[1]) / sigma, abs(step[2]) / max(area, 1.0))
    promised = -(gradient[0] * step[0] + gradient[1] * step[1] + gradient[2] * step[2])
    return False, size < tolerance or promised < decrement


@numba.njit(cache=True, nogil=True)
def _symmetric_eigen(matrix):
    """Eigenvalues and eigenvectors (columns) of a symmetric 3×3 matrix, by cyclic Jacobi
    rotations (to rounding: quadratic convergence). numba's ``np.linalg.eigh`` goes through
    LAPACK wrappers that take seconds to compile in every fresh installation's workers."""
    a = matrix.copy()
    vectors = np.zeros((3, 3))
    for k in range(3):
        vectors[k, k] = 1.0
    for _ in range(50):
        off = a[0, 1] ** 2 + a[0, 2] ** 2 + a[1, 2] ** 2
        if not off > 1e-32 * (a[0, 0] ** 2 + a[1, 1] ** 2 + a[2, 2] ** 2):
            break
        for p, q in ((0, 1), (0, 2), (1, 2)):
            if a[p, q] == 0.0:
                continue
            theta = (a[q, q] - a[p, p]) / (2.0 * a[p, q])
            t = (1.0 if theta >= 0 else -1.0) / (abs(theta) + math.sqrt(theta * theta + 1.0))
            c = 1.0 / math.sqrt(t * t + 1.0)
            s = t * c
            for k in range(3):  # A ← A·R
                akp, akq = a[k, p], a[k, q]
                a[k, p], a[k, q] = c * akp - s * akq, s * akp + c * akq
            for k in range(3):  # A ← Rᵀ·A
                apk, aqk = a[p, k], a[q, k]
                a[p, k], a[q, k] = c * apk - s * aqk, s * apk + c * aqk
            for k in range(3):
                vkp, vkq = vectors[k, p], vectors[k, q]
                vectors[k, p], vectors[k, q] = c * vkp - s * vkq, s * vkp + c * vkq
    eigenvalues = np.empty(3)
    for k in range(3):
        eigenvalues[k] = a[k, k]
    return eigenvalues, vectors
