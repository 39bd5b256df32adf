"""The Gaussian-smeared Poisson fit of an average image, right or missing.

Everything here works in the frame where charge raises the value (the caller flips raw
images) and on the values the caller chose (clusters masked: :mod:`skipperdask.metrics.mask`).
:func:`fit_gauss_poisson` proceeds as a DAMIC-M analyst does by hand:

1. **Noise and zero peak.** The spread of the lowest quantiles gives a first noise scale;
   a Gaussian on the lower side of the lowest prominent peak gives x0 and σ
   (:mod:`.starts`). At large λ that peak may be the one-electron peak: step 3 tries the
   neighbouring peaks too.
2. **Candidate gains** from the data: the period of the peaks from the characteristic
   function (large λ, where the zero peak is a shoulder), the peaks of the histogram less
   the zero peak (small λ), and the photon-transfer estimate (variance - σ²)/(mean - x0);
   gains beyond ``MAX_GAIN_IN_SIGMA`` σ are not searched. When none converges, gains spread
   over 2.2σ … 7.5σ (a one-electron shoulder). A caller that fitted the same image before
   (``start``) has that fit's gain and x0 tried first.
3. **Fit.** For each gain, the phase of the characteristic function puts x0 on the peaks'
   comb; x0 starts on the tooth nearest the zero-peak estimate (and the lowest values) and
   on its neighbours; λ starts at (mean - x0)/g; at most ``MAX_STARTS`` starts. Each is
   fitted by binned Poisson maximum likelihood (:func:`.likelihood.fit_binned_poisson`,
   analytic derivatives) on a window from the bottom of the data (so that a zero peak left
   out cannot go unnoticed) to the last peak expected to hold ``POPULATED`` pixels plus
   max(3σ, g/2); the window follows the fitted λ. The first fit that passes step 4 is kept:
   a wrong gain or a wrong tooth puts pixels where the data have none, or misses a
   populated peak.
4. **Acceptance.** Pearson's χ² on bins grouped to ≥ 5 expected counts must lie within
   z standard deviations of its mean (χ² ≤ ndof + z√(2 ndof)), or χ²ᵣ below a tolerance for
   real detectors' small imperfections (:class:`.likelihood.Acceptance`). The first
   converged fit with resolved peaks that fails is fitted once more with free heights
   (:mod:`.free_heights`: real images' heights are often not one Poisson). When nothing
   passes, σ, g and λ are missing: "model does not describe the data (reduced chi2 = …)".
   The false-rejection rate of the test on correct simulations is measured by the tests.
5. **Resolution** (:func:`.model.check_resolution`): gain and λ need σ/g < 0.5 and ≥ 20
   pixels in the one-electron peak; beyond σ/g = 0.5, σ is kept only while the charge is
   negligible (then it is the zero peak's width, not that of merged peaks). Where the
   peaks are barely resolved (σ/g ≥ ``MARGINAL_RATIO``) a gain is kept only if no other
   start also passes with a gain 5 errors away (:func:`unambiguous`).
6. **Fallback** (damicm-image-preproc's): when no fit converges at all, Gaussians on the peaks of a
   smoothed histogram (:func:`.fallback.fit_peaks`), held to the same tests.

Bins: ``bin_width`` (the caller's: 1 ADU, or finer for sub-ADU noise), widened by an odd
factor to about σ/3 and at most ``MAX_FIT_BINS`` bins (the fit costs per bin; odd factors
keep the bin edges between the quantised values). Errors: the inverse Fisher information,
scaled by max(1, χ²ᵣ).
"""

import dataclasses

import numpy as np

from . import engine
from .fallback import fit_peaks
from .free_heights import refit_with_free_heights
from .likelihood import (
    Acceptance,
    GoodnessOfFit,
    fit_binned_poisson,
    goodness_of_fit,
    histogram,
    pdg_scale,
)
from .model import (
    RESOLUTION_LIMIT,
    GaussPoissonFit,
    check_resolution,
    counts_and_derivatives,
    missing_fit,
    populated,
    without,
)
from .starts import (
    NOT_RESOLVED_FEW,
    check_values,
    first_scale,
    moment_gain,
    moments,
    peak_phase,
    residual_gains,
    spacing_gains,
    zero_peak,
)

#: starting gains, in units of the zero peak's σ, when no other candidate is accepted
SHOULDER_GAINS = np.array([2.2, 3.0, 4.0, 5.5, 7.5])
NPARAMS = 5


#: from this σ/g on the peaks are barely resolved: an accepted gain must be the only one
MARGINAL_RATIO = 0.35
#: the largest gain searched, in units of the noise: σ/g = 0.02 is beyond any skipper CCD
MAX_GAIN_IN_SIGMA = 50.0
#: the largest dark current searched, e⁻/pixel (campaigns hold up to a few): a start
#: beyond it is a flat field or a wrong gain
MAX_LAMBDA = 20.0
#: most bins of a fitted histogram
MAX_FIT_BINS = 2000
#: starts fitted at most: the right gain is among the first candidates when there is one
MAX_STARTS = 12
#: the acceptance test unless the caller gives one
DEFAULT_ACCEPTANCE = Acceptance()


def fit_gauss_poisson(values, *, bin_width=1.0, acceptance=DEFAULT_ACCEPTANCE, method="auto",
                      start=None, check_ambiguity=True, max_starts=MAX_STARTS):
    """Fit the Gaussian-smeared Poisson to the values of an average image.

    The procedure (starting values from the data, fit window, acceptance test, resolution,
    fallback) is described in the module docstring.

    Parameters
    ----------
    values : ValueCounts or array_like
        Pixel values, in the frame where charge raises the value; non-finite values are left
        out.
    bin_width : float, optional
        Bin width of the histogram, in ADU (see the module docstring).
    acceptance : Acceptance, optional
        The acceptance test.
    method : {"auto", "fallback"}, optional
        ``"fallback"`` skips the least-squares fit and uses :func:`fit_peaks` directly.
    start : GaussPoissonFit, optional
        A fit of the same image (before its clusters were masked, say): the gain and x0 of
        its estimate are tried first (with free heights first if it needed them), then the
        candidates from the data.
    check_ambiguity : bool, optional
        Where the peaks are barely resolved, drop a gain that another start matches as well
        (:func:`unambiguous`). A caller that fits the same image several times (its clusters
        masked in turn) checks its last fit only.
    max_starts : int, optional
        Starts fitted at most (``MAX_STARTS``); fewer for a first look at an image whose
        clusters are not yet masked, which a later fit settles.

    Returns
    -------
    GaussPoissonFit
        Never raises for bad data: missing values are NaN with a reason in ``reasons``.
    """
    if method not in ("auto", "fallback"):
        raise ValueError(f"method must be 'auto' or 'fallback', not {method!r}")
    values, reasons, x0 = check_values(values)
    if reasons:
        return missing_fit(reasons, x0=x0)
    if method == "fallback":
        return _tested(fit_peaks(values, bin_width=bin_width), acceptance)
    lo, scale = first_scale(values, bin_width)
    hinted = start is not None and np.all(np.isfinite(start.estimate)) and start.estimate[2] > 0
    if hinted:  # the estimate's comb first, before any search
        x0, sigma, gain, lam = start.estimate
        hint = _Search(values, bin_width, lo, scale, None, sigma, acceptance, max_starts)
        hint.references = [x0]
        found = None
        if start.method == "free-heights":  # it needed them: so will this image
            hint.tried_free_heights = True
            counts, edges = hint.window(x0, gain, populated(values.size, lam))
            found = _free_heights(GaussPoissonFit(
                x0, sigma, gain, lam, float(values.size), *[np.nan] * 5, 0, "start", edges,
                counts, {}), acceptance)
        found = found or hint.first_accepted([gain])
        if found is not None:
            return _estimated(_checked(found, values, bin_width, acceptance, check_ambiguity),
                              found)
    zero, reason, peak = zero_peak(values, bin_width)
    if zero is None and reason.startswith("zero noise"):
        return missing_fit(dict.fromkeys(("sigma", "gain", "lam"), reason), x0=peak)
    sigma = zero.sigma if zero is not None else scale
    search = _Search(values, bin_width, lo, scale, zero, sigma, acceptance, max_starts)
    gains, no_gain = _candidate_gains(values, bin_width, lo, scale, zero, sigma)
    if hinted:
        search.fits.extend(hint.fits)
        gains = [g for g in gains if abs(g / start.estimate[2] - 1) > 0.05]
    found = search.first_accepted(gains)
    if found is None and not search.fits and not no_gain.startswith(NOT_RESOLVED_FEW):
        # no candidate from the data converged: a one-electron shoulder of the zero peak
        found = search.first_accepted(sigma * SHOULDER_GAINS)
    if found is not None:
        return _estimated(_checked(found, values, bin_width, acceptance, check_ambiguity),
                          found)
    if not search.fits:
        if zero is not None and (no_gain or not gains):
            # nothing but the zero peak: its width is the noise
            return _zero_peak_alone(values, bin_width, zero, no_gain, acceptance)
        return _tested(fit_peaks(values, bin_width=bin_width), acceptance)
    best = min(search.fits, key=_excess)
    reason = (f"model does not describe the data (reduced chi2 = {best.chi2_reduced:.3g}, "
              f"{best.ndof} degrees of freedom)")
    rejected = without(best, reason, ("sigma", "gain", "lam"))
    if zero is None:
        return _estimated(without(rejected, reason, ("x0",)), best)
    return _estimated(dataclasses.replace(rejected, x0=zero.x0, x0_err=zero.x0_err), best)


def _checked(found, values, bin_width, acceptance, check_ambiguity):
    return unambiguous(found, values, bin_width=bin_width, acceptance=acceptance) if (
        check_ambiguity) else found


def unambiguous(found, values, *, bin_width=1.0, acceptance=DEFAULT_ACCEPTANCE):
    """``found``, or its gain and λ missing when, its peaks barely resolved
    (``MARGINAL_RATIO`` ≤ σ/g), another start also passes the acceptance test with a gain 5
    standard errors away: there g·λ (the mean) and g²λ + σ² (the variance) hold while g and
    λ trade against each other, and a small image cannot tell which is right. σ goes too
    when the two disagree on it.

    Parameters
    ----------
    found : GaussPoissonFit
        A fit of ``values``.
    values : ValueCounts
        The values it fitted.
    bin_width : float, optional
    acceptance : Acceptance, optional
        As for :func:`fit_gauss_poisson`.

    Returns
    -------
    GaussPoissonFit
    """
    if "gain" in found.reasons or not found.sigma / found.gain >= MARGINAL_RATIO:
        return found
    lo, scale = first_scale(values, bin_width)
    zero, _, _ = zero_peak(values, bin_width)
    search = _Search(values, bin_width, lo, scale, zero, found.sigma, acceptance)
    search.references.insert(0, found.x0)
    gains, _ = _candidate_gains(values, bin_width, lo, scale, zero, found.sigma)
    for other in search.accepted([*gains, *(found.sigma * SHOULDER_GAINS)]):
        apart = abs(other.gain - found.gain) / np.hypot(other.gain_err, found.gain_err)
        if not apart > 5:
            continue
        reason = (f"single-electron peaks ambiguous: gains {found.gain:.3g} and "
                  f"{other.gain:.3g} ADU/e- both describe the data (σ/g = "
                  f"{found.sigma / found.gain:.2f})")
        names = ("gain", "lam")
        if abs(other.sigma - found.sigma) > 5 * np.hypot(other.sigma_err, found.sigma_err):
            names += ("sigma",)
        return without(found, reason, names)
    return found


def _zero_peak_alone(values, bin_width, zero, reason, acceptance):
    """The fit of an image with nothing but a zero peak (no charge to find a gain in): its
    width is the noise if a Gaussian describes the peak out to 5σ on both sides (a flat
    field's or a merged lump's width is not), else σ is missing too."""
    alone = missing_fit({"gain": reason, "lam": reason}, x0=zero.x0, sigma=zero.sigma,
                        x0_err=zero.x0_err, sigma_err=zero.sigma_err)
    counts, edges = histogram(values, zero.x0 - 5 * zero.sigma, zero.x0 + 5 * zero.sigma,
                              bin_width)
    expected, _ = counts_and_derivatives(edges, [zero.x0, zero.sigma, 1.0, 0.0, counts.sum()], 0)
    test = goodness_of_fit(counts, expected, 3)
    alone = _estimated(dataclasses.replace(alone, chi2_reduced=test.chi2_reduced,
                                           ndof=test.ndof, edges=edges, counts=counts), alone)
    if test.passes(acceptance):
        return alone
    return without(alone, f"the zero-electron peak is not a Gaussian (reduced chi2 = "
                          f"{test.chi2_reduced:.3g}): no noise without peaks", ("sigma",))


def _free_heights(poisson, acceptance):
    """:func:`.free_heights.refit_with_free_heights`, λ at most ``MAX_LAMBDA``."""
    return refit_with_free_heights(poisson, acceptance, MAX_LAMBDA)


def _estimated(fit, source):
    """``fit`` with the estimate of ``source`` (the parameters before any were dropped)."""
    return dataclasses.replace(fit, estimate=(source.x0, source.sigma, source.gain, source.lam))


def goodness(fit):
    """The goodness-of-fit test of a fit, from its χ²ᵣ and degrees of freedom."""
    return GoodnessOfFit(fit.chi2_reduced * fit.ndof, fit.ndof)


def _excess(fit):
    """χ² above its mean, in standard deviations (fits on different windows compare)."""
    return (fit.chi2_reduced - 1.0) * np.sqrt(fit.ndof / 2.0) if fit.ndof > 0 else np.inf


def _odd_factor(x):
    """The largest odd integer at most ``x`` (at least 1)."""
    factor = max(int(np.floor(x)), 1)
    return factor if factor % 2 else factor - 1


def _candidate_gains(values, bin_width, lo, scale, zero, sigma):
    """Candidate gains from the data (module docstring, step 2), without near-duplicates,
    and the reason when there is nothing to find a gain in. Gains beyond ``MAX_GAIN_IN_SIGMA``
    times the noise (finer than any skipper CCD resolves) are not searched."""
    # the period of the peaks first: where it is seen (λ ≳ 2π(σ/g)²), the zero-peak estimate
    # the residual peaks start from may be a higher peak
    gains, reason = spacing_gains(values, bin_width, lo - 2 * sigma), ""
    if zero is not None:
        residual, reason = residual_gains(values, bin_width, zero)
        if reason.startswith(NOT_RESOLVED_FEW):
            return [], reason
        gains += residual
        gains.append(moment_gain(values, zero, float(values.quantile(0.999))))
    kept = []
    for gain in gains:
        plausible = (np.isfinite(gain) and gain > 2 * bin_width
                     and gain < MAX_GAIN_IN_SIGMA * min(scale, sigma))
        if plausible and all(abs(gain / other - 1) > 0.05 for other in kept):
            kept.append(float(gain))
    return kept, reason


class _Search:
    """The fits from the starts of each candidate gain, until one is accepted."""

    def __init__(self, values, bin_width, lo, scale, zero, sigma, acceptance,
                 max_starts=MAX_STARTS):
        self.values, self.bin_width, self.bottom = values, bin_width, lo - 2 * scale
        self.scale = scale
        self.zero, self.sigma, self.acceptance = zero, sigma, acceptance
        # where the zero peak may be: the zero-peak estimate (which at large λ may be a
        # higher peak, or the merged peaks), and the lowest values
        self.references = [lo] if zero is None else [zero.x0, lo]
        self.top = float(values.quantile(0.999))
        self.fits = []
        self.tried_free_heights = False
        self.starts, self.max_starts = 0, max_starts

    def first_accepted(self, gains):
        """The first fit that passes the acceptance test (its peaks resolved or not: an
        accepted fit beyond the resolution says there are none to find), or None. Every
        converged fit is kept in ``fits``.

        The first converged fit with resolved peaks that is rejected is fitted again with
        free heights (:func:`_free_heights`), once: real images' heights are often not
        Poisson while their peaks' positions are right.
        """
        for fit in self._converged(gains):
            if goodness(fit).passes(self.acceptance):
                return fit
            if not self.tried_free_heights and fit.sigma / fit.gain < RESOLUTION_LIMIT:
                self.tried_free_heights = True
                free = _free_heights(fit, self.acceptance)
                if free is not None:
                    return free
        return None

    def accepted(self, gains):
        """Every fit from these gains' starts that passes the acceptance test."""
        return [fit for fit in self._converged(gains) if goodness(fit).passes(self.acceptance)]

    def _converged(self, gains):
        """The converged Poisson-heights fits from each gain's starts, in turn (at most
        ``max_starts`` in all), each kept in ``fits``."""
        for gain in gains:
            for x0 in self._teeth(gain):
                if self.starts >= self.max_starts:
                    return
                self.starts += 1
                fit = self._fit(x0, gain)
                if fit is not None:
                    self.fits.append(fit)
                    yield fit

    def _teeth(self, gain):
        """Starting x0: the peak comb's teeth nearest each reference and their neighbours,
        where the data hold pixels."""
        phase = peak_phase(self.values, gain, self.bottom, self.top, self.bin_width)
        teeth = []
        for reference in self.references:
            nearest = reference + (phase - reference + gain / 2) % gain - gain / 2
            for x0 in (nearest, nearest - gain, nearest + gain):
                populated_ = (self.values.count_below(x0 + gain / 2)
                              > self.values.count_below(x0 - gain / 2))
                new = all(abs(x0 - other) > gain / 4 for other in teeth)
                if populated_ and new and x0 > self.bottom:
                    teeth.append(x0)
        return teeth

    def window(self, x0, gain, k_top):
        """The histogram a fit sees: from the bottom of the data to the peak ``k_top`` plus
        max(3σ, g/2), in bins of about a third of the noise or of half the gain, whichever
        is finer (the noise from both estimates: at large λ the zero peak's may be the
        merged peaks'), at most ``MAX_FIT_BINS`` of them (the fit costs per bin), widened
        by odd factors (that keep the edges between quantised values)."""
        sigma = self.sigma
        finest = min(sigma, self.scale, gain / 2) / 3
        finest = max(finest, (gain * (k_top + 3) + 10 * sigma) / MAX_FIT_BINS)
        width = self.bin_width * _odd_factor(finest / self.bin_width)
        return histogram(self.values, min(self.bottom, x0 - 5 * sigma),
                         x0 + gain * k_top + max(3 * sigma, gain / 2), width)

    def _fit(self, x0, gain):
        """The Poisson-heights fit from this start (window following λ), accepted or not,
        with the resolution checked; None when it does not converge."""
        values, sigma = self.values, self.sigma
        count, mean, _ = moments(values, x0 - 6 * sigma, min(self.top, x0 + 40 * gain),
                                 gain / 8)
        lam = max((mean - x0) / gain, 1e-4) if count else 1e-4
        if lam > MAX_LAMBDA:
            return None  # not a dark exposure at this gain (a flat field, a wrong gain)
        params = np.array([x0, sigma, gain, lam, float(values.size)])
        k_top = populated(params[4], lam)
        for _ in range(3):
            counts, edges = self.window(x0, gain, k_top)
            lower = [edges[0], 1e-3 * sigma, gain / 1.5, 0.0, 0.0]
            upper = [edges[-1], 20 * sigma, gain * 1.5, 1.5 * MAX_LAMBDA, np.inf]
            fit = fit_binned_poisson(engine.GAUSS_POISSON, edges, params, lower, upper, counts,
                                     kmax=k_top + 3)
            if not fit.converged:
                return None
            params = fit.params
            x0, gain = params[0], params[2]
            new_top = populated(params[4], params[3])
            if new_top == k_top:
                break
            k_top = new_top
        test = goodness_of_fit(counts, fit.model, NPARAMS)
        errors = np.sqrt(np.diag(fit.cov) * pdg_scale(test.chi2_reduced))
        result = GaussPoissonFit(*params, *errors[:4], test.chi2_reduced, test.ndof, "poisson",
                                 edges, counts, {})
        return check_resolution(result) if test.passes(self.acceptance) else result


def _tested(fit, acceptance):
    """A fallback fit held to the acceptance test of the whole model and the resolution.
    With one peak only, its σ stands only if a single Gaussian describes the histogram."""
    if fit.method == "none" or fit.edges.size == 0 or not np.isfinite(fit.sigma):
        return fit
    params = fit.params
    single = not np.isfinite(fit.gain)
    if single:  # the model of a zero peak alone: λ = 0, every pixel in it
        params = np.array([fit.x0, fit.sigma, 1.0, 0.0, fit.counts.sum()])
    kmax = populated(params[4], params[3]) + 3
    expected, _ = counts_and_derivatives(fit.edges, params, kmax)
    test = goodness_of_fit(fit.counts, expected, 2 if single else NPARAMS)
    tested = dataclasses.replace(fit, chi2_reduced=test.chi2_reduced, ndof=test.ndof)
    tested = _estimated(tested, fit)
    if not test.passes(acceptance):
        reason = (f"fallback: model does not describe the data (reduced chi2 = "
                  f"{test.chi2_reduced:.3g})")
        return without(tested, reason, ("sigma", "gain", "lam"))
    return tested if single else check_resolution(tested)
