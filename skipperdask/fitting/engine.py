"""The compiled core of the peaks fits: the two models of a histogram of bin-integrated
Gaussian peaks, and the Levenberg-Marquardt loop that fits them.

An image's analysis runs a dozen or more such fits of a few hundred bins each; in numpy,
each iteration's small-array calls cost more than its arithmetic. Here one compiled call
runs a whole fit. The Python side (:func:`.likelihood.fit_binned_poisson`) adds the
covariance and the result.

- the models, ``GAUSS_POISSON`` (params x0, σ, g, λ, n: :mod:`.model`) and ``FREE_HEIGHTS``
  (x0, σ, g, v, a_0, …, a_K: :mod:`.free_heights`): expected counts per bin and their
  derivatives (bins, parameters), each edge's Gaussian tail and density computed once per
  peak, and not at all where both underflow to 0 (beyond ``FAR`` widths);
- :func:`levenberg_marquardt`: the minimum of the Poisson deviance of one of them.
"""

import math

import numba
import numpy as np

#: beyond this many widths from a peak its density and tail underflow to 0 in double precision
FAR = 40.0
#: the models :func:`levenberg_marquardt` fits
GAUSS_POISSON, FREE_HEIGHTS = 0, 1

ROOT_HALF, DENSITY = math.sqrt(0.5), 1.0 / math.sqrt(2.0 * math.pi)

# numpy's rules for floating-point errors (inf and NaN, no exception), as in the numpy code.
# Plain loops throughout: numba compiles numpy's array expressions, `@` and `linalg` slowly
# (BLAS and LAPACK wrappers), and every worker of a fresh installation compiles them once
# (measured: 24 s of compilation with them, a few seconds without)
_compiled = numba.njit(cache=True, nogil=True, error_model="numpy")


@_compiled
def _edge(edge, mean, width):
    """z = (edge - mean)/width, the Gaussian tail beyond |z| and the density at z (both 0
    beyond ``FAR`` widths, where they underflow)."""
    z = (edge - mean) / width
    if abs(z) < FAR:
        return z, 0.5 * math.erfc(abs(z) * ROOT_HALF), DENSITY * math.exp(-0.5 * z * z)
    return z, 0.0, 0.0


@_compiled
def _between(z_low, tail_low, z, tail):
    """A bin's probability Φ(z) - Φ(z_low): a difference of upper tails right of the peak
    and of lower tails left of it, for its precision far from the peak."""
    if z_low > 0.0:
        return tail_low - tail
    return (tail if z <= 0.0 else 1.0 - tail) - tail_low


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
    nbins = edges.size - 1
    derivatives = np.zeros((nbins, 5))
    for k in range(kmax + 1):
        weight = weights[k]
        d_weight = (weights[k - 1] if k > 0 else 0.0) - weight
        if weight == 0.0 and d_weight == 0.0:
            continue
        mean = x0 + gain * k
        z_low, tail_low, pdf_low = _edge(edges[0], mean, sigma)
        for i in range(nbins):
            z, tail, pdf = _edge(edges[i + 1], mean, sigma)
            probability = _between(z_low, tail_low, z, tail)
            d_mean = (pdf_low - pdf) / sigma
            derivatives[i, 0] += weight * d_mean
            derivatives[i, 1] += weight * (z_low * pdf_low - z * pdf) / sigma
            derivatives[i, 2] += weight * k * d_mean
            derivatives[i, 3] += d_weight * probability
            derivatives[i, 4] += weight * probability
            z_low, tail_low, pdf_low = z, tail, pdf
    counts = np.empty(nbins)
    for i in range(nbins):
        for j in range(4):
            derivatives[i, j] *= n
        counts[i] = n * derivatives[i, 4]
    return counts, derivatives


@_compiled
def free_heights_model(edges, params):
    """Expected counts Σ_k a_k ∫_bin Normal(x0 + g·k, √(σ² + k·v)) and their derivatives by
    (x0, σ, g, v, a_0, …, a_K)."""
    x0, sigma, gain, variance = params[0], params[1], params[2], params[3]
    nbins = edges.size - 1
    counts = np.zeros(nbins)
    derivatives = np.zeros((nbins, params.size))
    for k in range(params.size - 4):
        area = params[4 + k]
        width = math.sqrt(sigma * sigma + k * variance)
        mean = x0 + gain * k
        z_low, tail_low, pdf_low = _edge(edges[0], mean, width)
        for i in range(nbins):
            z, tail, pdf = _edge(edges[i + 1], mean, width)
            probability = _between(z_low, tail_low, z, tail)
            d_mean = (pdf_low - pdf) / width
            d_width = (z_low * pdf_low - z * pdf) / width
            counts[i] += area * probability
            derivatives[i, 0] += area * d_mean
            derivatives[i, 1] += area * sigma / width * d_width
            derivatives[i, 2] += area * k * d_mean
            derivatives[i, 3] += area * k / (2 * width) * d_width
            derivatives[i, 4 + k] = probability
            z_low, tail_low, pdf_low = z, tail, pdf
    return counts, derivatives


@_compiled
def _fisher_and_gradient(jac, counts, expected):
    """F = Jᵀ diag(1/m) J and g = Jᵀ (1 - c/m), m floored at 1e-300."""
    nbins, nparams = jac.shape
    fisher = np.zeros((nparams, nparams))
    gradient = np.zeros(nparams)
    for i in range(nbins):
        weight = 1.0 / max(expected[i], 1e-300)
        residual = 1.0 - counts[i] * weight
        for a in range(nparams):
            gradient[a] += jac[i, a] * residual
            scaled = jac[i, a] * weight
            for b in range(a + 1):
                fisher[a, b] += scaled * jac[i, b]
    for a in range(nparams):
        for b in range(a):
            fisher[b, a] = fisher[a, b]
    return fisher, gradient


@_compiled
def solve(matrix, rhs):
    """x with matrix · x = rhs, by Gaussian elimination with partial pivoting (as LAPACK's
    gesv); (x, whether the matrix is non-singular)."""
    size = rhs.size
    a, x = matrix.copy(), rhs.copy()
    for col in range(size):
        pivot = col
        for row in range(col + 1, size):
            if abs(a[row, col]) > abs(a[pivot, col]):
                pivot = row
        if a[pivot, col] == 0.0:
            return x, False
        if pivot != col:
            for j in range(size):
                a[col, j], a[pivot, j] = a[pivot, j], a[col, j]
            x[col], x[pivot] = x[pivot], x[col]
        for row in range(col + 1, size):
            factor = a[row, col] / a[col, col]
            if factor != 0.0:
                for j in range(col, size):
                    a[row, j] -= factor * a[col, j]
                x[row] -= factor * x[col]
    for row in range(size - 1, -1, -1):
        total = x[row]
        for j in range(row + 1, size):
            total -= a[row, j] * x[j]
        x[row] = total / a[row, row]
    return x, True


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
def _clipped(params, lower, upper):
    clipped = np.empty(params.size)
    for i in range(params.size):
        clipped[i] = min(max(params[i], lower[i]), upper[i])
    return clipped


@_compiled
def levenberg_marquardt(kind, edges, kmax, p0, lower, upper, counts, max_iterations,
                        step_tolerance, deviance_tolerance, pinned_iterations):
    """The minimum of the Poisson deviance of the model ``kind`` (the algorithm is
    :func:`.likelihood.fit_binned_poisson`'s): (params, expected, derivatives, deviance,
    converged)."""
    nparams = p0.size
    params = _clipped(p0, lower, upper)
    expected, jac = _model(kind, edges, kmax, params)
    current = _deviance(counts, expected)
    damping = 1e-3
    converged = False
    pinned = 0  # consecutive iterations with a parameter on a bound that only limits
    system = np.empty((nparams, nparams))
    for _ in range(max_iterations):
        if not np.isfinite(current):
            break
        fisher, gradient = _fisher_and_gradient(jac, counts, expected)
        diagonal = np.empty(nparams)
        for i in range(nparams):
            diagonal[i] = max(fisher[i, i], 1e-300)
        finite = True
        for i in range(nparams):
            finite &= np.isfinite(gradient[i])
            for j in range(nparams):
                system[i, j] = fisher[i, j] + (damping * diagonal[i] if i == j else 0.0)
                finite &= np.isfinite(system[i, j])
        if not finite:
            break
        step, regular = solve(system, -gradient)
        if not regular:
            break
        trial = _clipped(params + step, lower, upper)
        trial_expected, trial_jac = _model(kind, edges, kmax, trial)
        trial_deviance = _deviance(counts, trial_expected)
        # the step in standard errors (1/√F_ii), or a decrease of the deviance far below
        # one unit of χ² (scaled by χ²/bin when the model is imperfect): converged
        tolerance = deviance_tolerance * max(1.0, current / counts.size)
        small = 0 <= current - trial_deviance < tolerance
        if not small:
            small = True
            for i in range(nparams):
                small &= abs(trial[i] - params[i]) * math.sqrt(diagonal[i]) < step_tolerance
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
