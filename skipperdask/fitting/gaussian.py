"""Gaussians fitted to histograms, many at once: the noise of single-sample images, of
partial averages and of the zero-electron peak.

The estimator is the binned Poisson maximum likelihood found by Newton's method with the
analytic derivatives of the bin-integrated Gaussian, all histograms of a stack at once
(padded to a common length with masked bins). Errors are the inverse Fisher information
Σ ∂m ∂mᵀ / m at the minimum, scaled by max(1, χ²ᵣ) (the PDG scale factor).
"""

from dataclasses import dataclass

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
    the minimum it is Newton's method, far from it a scaled gradient descent.
    """
    rows = counts.shape[0]
    active = np.ones(rows, bool)  # still iterating
    converged = np.zeros(rows, bool)
    current = deviance(counts, gaussian_bins(edges, params)[0], mask).sum(axis=1)
    step = np.zeros_like(params)
    length = np.ones(rows)  # fraction of Newton's step tried
    fresh = np.ones(rows, bool)  # rows whose Newton step must be computed
    for _ in range(MAX_NEWTON_STEPS):
        if fresh.any():
            rows_ = np.flatnonzero(fresh)
            step[rows_], small, broken = _newton_step(counts[rows_], edges[rows_],
                                                      mask[rows_], params[rows_])
            # a step already below the tolerance: take it and stop
            converged[rows_[small]] = True
            # a curvature that is not finite (overflow far from the data): the row fails
            active[rows_[broken]] = False
            length[rows_] = 1.0
            fresh[:] = False
        rows_ = np.flatnonzero(active)
        if rows_.size == 0:
            break
        trial = np.clip(params[rows_] + length[rows_, None] * step[rows_], lower[rows_],
                        upper[rows_])
        trial_deviance = deviance(counts[rows_], gaussian_bins(edges[rows_], trial)[0],
                                   mask[rows_]).sum(axis=1)
        # a step that no longer changes the parameters, or no decrease even at 1e-8 of
        # Newton's step: at the minimum to rounding (the gradient's rounding limits the step)
        unchanged = np.all(trial == params[rows_], axis=1)
        accept = (trial_deviance <= current[rows_]) & ~unchanged
        taken = rows_[accept]
        params[taken] = trial[accept]
        current[taken] = trial_deviance[accept]
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
    """Newton's step of the deviance of each row, whether it is below the tolerance, and
    whether the row's curvature is not finite (no step)."""
    model, first, second = gaussian_bins(edges, params, second=True)
    model = np.maximum(model, 1e-300)
    ratio = np.where(mask, counts / model, 0.0)
    residual = np.where(mask, 1.0 - ratio, 0.0)
    gradient = np.einsum("rb,rbi->ri", residual, first)
    hessian = (np.einsum("rb,rbi,rbj->rij", ratio / model, first, first)
               + np.einsum("rb,rbij->rij", residual, second))
    broken = ~(np.isfinite(hessian).all(axis=(1, 2)) & np.isfinite(gradient).all(axis=1))
    hessian[broken], gradient[broken] = np.eye(3), 0.0
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
    small = (size.max(axis=1) < NEWTON_TOLERANCE) | (decrement < NEWTON_DECREMENT)
    return step, small & ~broken, broken
