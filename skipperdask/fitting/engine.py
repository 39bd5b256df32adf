"""The compiled core of the peaks fits: bin-integrated peaks, the two models of a histogram
of peaks, and the Levenberg-Marquardt loop that fits them.

An image's analysis runs a dozen or more such fits of a few hundred bins each; in numpy,
each iteration's small-array calls cost more than its arithmetic. Here one compiled call
runs a whole fit. The Python side (:func:`.likelihood.fit_binned_poisson`) adds the
covariance and the result.

- :func:`peak_integrals`: bin-integrated unit Gaussians and their derivatives;
- the models, ``GAUSS_POISSON`` (params x0, σ, g, λ, n: :mod:`.model`) and ``FREE_HEIGHTS``
  (x0, σ, g, v, a_0, …, a_K: :mod:`.free_heights`): expected counts per bin and their
  derivatives (bins, parameters);
- :func:`levenberg_marquardt`: the minimum of the Poisson deviance of one of them.
"""

import math

import numba
import numpy as np

#: beyond this many widths from a peak its density and tail underflow to 0 in double precision
FAR = 40.0
#: the models :func:`levenberg_marquardt` fits
GAUSS_POISSON, FREE_HEIGHTS = 0, 1

# numpy's rules for floating-point errors (inf and NaN, no exception), as in the numpy code
_compiled = numba.njit(cache=True, nogil=True, error_model="numpy")


@_compiled
def peak_integrals(edges, means, widths):
    """Bin-integrated unit Gaussians and their derivatives, one row per peak: the
    probability of each bin (peaks, bins), and its derivatives by the mean and the width.

    Each edge's tail and density are computed once, and not at all where both underflow to
    0 (beyond ``FAR`` widths). A bin's probability is a difference of upper tails right of
    the peak and of lower tails left of it, for its precision far from the peak (as
    :func:`.likelihood.interval_probabilities`).
    """
    npeaks, nbins = means.size, edges.size - 1
    probability = np.zeros((npeaks, nbins))
    d_mean = np.zeros((npeaks, nbins))
    d_width = np.zeros((npeaks, nbins))
    root_half, density = math.sqrt(0.5), 1.0 / math.sqrt(2.0 * math.pi)
    for k in range(npeaks):
        mean, width = means[k], widths[k]
        z_low = (edges[0] - mean) / width
        tail_low = 0.5 * math.erfc(abs(z_low) * root_half)  # beyond |z|: Φ(z) for z ≤ 0
        pdf_low = density * math.exp(-0.5 * z_low * z_low)
        for i in range(nbins):
            z = (edges[i + 1] - mean) / width
            if abs(z) < FAR:
                tail = 0.5 * math.erfc(abs(z) * root_half)
                pdf = density * math.exp(-0.5 * z * z)
            else:
                tail = pdf = 0.0
            if z_low > 0.0:
                probability[k, i] = tail_low - tail  # Q(z_low) - Q(z), both upper tails
            else:
                probability[k, i] = (tail if z <= 0.0 else 1.0 - tail) - tail_low
            d_mean[k, i] = (pdf_low - pdf) / width
            d_width[k, i] = (z_low * pdf_low - z * pdf) / width
            z_low, tail_low, pdf_low = z, tail, pdf
    return probability, d_mean, d_width


@_compiled
def poisson_weights(kmax, lam):
    """Pois(k; λ) for k = 0 … kmax (λ = 0: all in k = 0)."""
    weights = np.zeros(kmax + 1)
    for k in range(kmax + 1):
        if lam > 0.0:
            weights[k] = math.exp(k * math.log(lam) - lam - math.lgamma(k + 1.0))
        elif k == 0:
            weights[k] = 1.0 if lam == 0.0 else np.nan
        elif not lam == 0.0:
            weights[k] = np.nan
    return weights


@_compiled
def gauss_poisson_model(edges, kmax, params):
    """Expected counts n·Σ_k Pois(k; λ)·∫_bin Normal(x0 + g·k, σ) and their derivatives by
    (x0, σ, g, λ, n); ∂Pois(k; λ)/∂λ = Pois(k - 1; λ) - Pois(k; λ)."""
    x0, sigma, gain, lam, n = params[0], params[1], params[2], params[3], params[4]
    weights = poisson_weights(kmax, lam)
    k = np.arange(kmax + 1).astype(np.float64)
    d_weights = -weights.copy()
    d_weights[1:] += weights[:-1]
    probability, d_mean, d_width = peak_integrals(edges, x0 + gain * k,
                                                  np.full(kmax + 1, sigma))
    derivatives = np.empty((edges.size - 1, 5))
    derivatives[:, 0] = n * (weights @ d_mean)
    derivatives[:, 1] = n * (weights @ d_width)
    derivatives[:, 2] = n * ((weights * k) @ d_mean)
    derivatives[:, 3] = n * (d_weights @ probability)
    derivatives[:, 4] = weights @ probability
    return n * derivatives[:, 4], derivatives


@_compiled
def free_heights_model(edges, params):
    """Expected counts Σ_k a_k ∫_bin Normal(x0 + g·k, √(σ² + k·v)) and their derivatives by
    (x0, σ, g, v, a_0, …, a_K)."""
    x0, sigma, gain, variance = params[0], params[1], params[2], params[3]
    areas = params[4:]
    k = np.arange(areas.size).astype(np.float64)
    widths = np.sqrt(sigma**2 + k * variance)
    probability, d_mean, d_width = peak_integrals(edges, x0 + gain * k, widths)
    derivatives = np.empty((edges.size - 1, params.size))
    derivatives[:, 0] = areas @ d_mean
    derivatives[:, 1] = (areas * sigma / widths) @ d_width
    derivatives[:, 2] = (areas * k) @ d_mean
    derivatives[:, 3] = (areas * k / (2 * widths)) @ d_width
    derivatives[:, 4:] = probability.T
    return areas @ probability, derivatives


@_compiled
def _model(kind, edges, kmax, params):
    if kind == GAUSS_POISSON:
        return gauss_poisson_model(edges, kmax, params)
    return free_heights_model(edges, params)


@_compiled
def _deviance(counts, model):
    """Σ 2 (m - c + c ln(c/m)), m floored at 1e-300."""
    total = 0.0
    for i in range(counts.size):
        m = max(model[i], 1e-300)
        c = counts[i]
        total += 2.0 * (m - c + (c * math.log(c / m) if c > 0 else 0.0))
    return total


@_compiled
def on_bound(params, lower, upper):
    """Whether a parameter is stuck on a bound that only limits the search (as
    :func:`.likelihood.on_bound`, for one parameter vector)."""
    for i in range(params.size):
        span = upper[i] - lower[i]
        if not np.isfinite(span):
            span = abs(params[i]) + 1.0
        if np.isfinite(lower[i]) and lower[i] != 0 and params[i] - lower[i] < 1e-6 * span:
            return True
        if np.isfinite(upper[i]) and upper[i] - params[i] < 1e-6 * span:
            return True
    return False


@_compiled
def levenberg_marquardt(kind, edges, kmax, p0, lower, upper, counts, max_iterations,
                        step_tolerance, deviance_tolerance, pinned_iterations):
    """The minimum of the Poisson deviance of the model ``kind`` (the algorithm is
    :func:`.likelihood.fit_binned_poisson`'s): (params, expected, derivatives, deviance,
    converged)."""
    params = np.minimum(np.maximum(p0, lower), upper)
    nparams = params.size
    expected, jac = _model(kind, edges, kmax, params)
    current = _deviance(counts, expected)
    damping = 1e-3
    converged = False
    pinned = 0  # consecutive iterations with a parameter on a bound that only limits
    system = np.empty((nparams, nparams))
    for _ in range(max_iterations):
        if not np.isfinite(current):
            break
        weight = 1.0 / np.maximum(expected, 1e-300)
        fisher = jac.T @ (jac * weight[:, None])
        gradient = jac.T @ (1.0 - counts * weight)
        diagonal = np.maximum(np.diag(fisher).copy(), 1e-300)
        system[:] = fisher
        for i in range(nparams):
            system[i, i] += damping * diagonal[i]
        if not (np.all(np.isfinite(system)) and np.all(np.isfinite(gradient))):
            break
        try:
            step = np.linalg.solve(system, -gradient)
        except Exception:  # noqa: BLE001  (numba raises a generic error for a singular matrix)
            break
        trial = np.minimum(np.maximum(params + step, lower), upper)
        trial_expected, trial_jac = _model(kind, edges, kmax, trial)
        trial_deviance = _deviance(counts, trial_expected)
        # the step in standard errors (1/√F_ii), or a decrease of the deviance far below
        # one unit of χ² (scaled by χ²/bin when the model is imperfect): converged
        tolerance = deviance_tolerance * max(1.0, current / counts.size)
        small = (np.all(np.abs(trial - params) * np.sqrt(diagonal) < step_tolerance)
                 or 0 <= current - trial_deviance < tolerance)
        if np.isfinite(trial_deviance) and trial_deviance <= current:
            params, expected, jac, current = trial, trial_expected, trial_jac, trial_deviance
            damping = max(damping / 3.0, 1e-9)
            if small:
                converged = True
                break
            # a minimum beyond a search bound: this start leads nowhere, stop early
            pinned = pinned + 1 if on_bound(params, lower, upper) else 0
            if pinned >= pinned_iterations:
                break
        else:
            if small:  # no decrease even for a step within rounding: at the minimum
                converged = True
                break
            damping *= 4.0
            if damping > 1e12:
                break
    return params, expected, jac, current, converged
