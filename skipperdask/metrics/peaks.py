"""The single-electron peaks of an average image: the Gauss-Poisson fit outside its
clusters, after a drift of its baseline is removed.

:func:`fit_average_image` ties the fits (:mod:`skipperdask.fitting`), the cluster mask
(:mod:`skipperdask.metrics.mask`) and the rows' zero levels (:mod:`skipperdask.metrics.drift`)
together:

1. a first fit of every pixel; when it finds no accepted gain, the obvious clusters are
   masked without a gain (:func:`skipperdask.metrics.mask.bright_areas`) and the rest fitted;
2. the cluster mask in electrons from that fit's estimate, and a fit of the pixels outside
   it, from that estimate, until the mask's thresholds no longer move;
3. the rows' zero levels outside the mask: a drift is removed, and steps 1-2 run again on
   the corrected image (a drift moves the thresholds);
4. where the peaks are barely resolved, the last fit's gain is kept only if it is the only
   one that describes the values that fit saw (:func:`skipperdask.fitting.unambiguous`).

Every fit after the first starts from the previous one's estimate.
"""

from dataclasses import dataclass

import numpy as np

from .. import fitting
from ..statistics import ValueCounts
from .drift import remove_row_drift, row_levels
from .mask import bright_areas, charge_thresholds
from .mask import cluster_mask as mask_clusters

#: a mask that would leave less than this fraction of the pixels is not used
MAX_MASKED = 0.95
#: fits with a new cluster mask, at most: the mask's thresholds follow the fitted λ
MASK_ITERATIONS = 3
#: starts of the first fit, on every pixel: with clusters it fails whatever it tries, and the
#: fits outside them (from its estimate, or after the gain-free mask) settle the gain; on a
#: clean image the right gain is among the first candidates (measured over the benchmark's
#: grid: the same verdicts as with every start, 40 % less time)
FIRST_FIT_STARTS = 4


@dataclass(frozen=True)
class FitSettings:
    """Settings of the average image's fit and of its cluster mask (``skipperdask.yaml``):
    build them with :meth:`of_options`.

    Attributes
    ----------
    acceptance : skipperdask.fitting.likelihood.Acceptance
        The fit's acceptance test (:mod:`skipperdask.fitting.gauss_poisson`).
    mask_seed_electrons, mask_halo, mask_hot_threshold
        The cluster mask's rule (:mod:`skipperdask.metrics.mask`).
    """

    acceptance: fitting.Acceptance
    mask_seed_electrons: int
    mask_halo: int
    mask_hot_threshold: float

    @classmethod
    def of_options(cls, options):
        """The settings a run's :class:`skipperdask.config.Options` give (``fit-*``,
        ``mask-*``)."""
        return cls(
            acceptance=fitting.Acceptance(z=float(options.fit_acceptance),
                                          tolerance=float(options.fit_chi2_tolerance)),
            mask_seed_electrons=int(options.mask_seed_electrons),
            mask_halo=int(options.mask_halo),
            mask_hot_threshold=float(options.mask_hot_threshold),
        )


@dataclass(frozen=True)
class PeaksFit:
    """What :func:`fit_average_image` found.

    Attributes
    ----------
    fit : skipperdask.fitting.GaussPoissonFit
        The last fit.
    mask : skipperdask.metrics.mask.ClusterMask or None
        The pixels left out of it (None: no fit with resolved peaks to find them with).
    levels : skipperdask.metrics.drift.RowLevels or None
        The rows' zero levels of the image as given (None: no zero peak to find them with).
    corrected : bool
        Whether a drift was removed before the last fit.
    values : skipperdask.statistics.ValueCounts
        Every pixel of the (corrected) image: what the tail ratio counts.
    """

    fit: object
    mask: object
    levels: object
    corrected: bool
    values: object


def fit_average_image(average, values, *, integer_valued, nskips, bin_width, settings):
    """The Gauss-Poisson fit of an average image outside its clusters (module docstring).

    Parameters
    ----------
    average : ndarray (rows, cols)
        The average image, charge raising the value.
    values : skipperdask.statistics.ValueCounts
        Its distribution.
    integer_valued : bool
        Whether its samples are whole numbers (its values then step by 1/``nskips``).
    nskips : int
    bin_width : float
        Of the fitted histograms, ADU.
    settings : FitSettings

    Returns
    -------
    PeaksFit
    """
    search = _Search(bin_width, settings)
    fit = search.masked(average, values, search.fit(values, max_starts=FIRST_FIT_STARTS))
    x0, sigma, gain, _ = fit.estimate
    if not (np.isfinite(x0) and np.isfinite(sigma) and sigma > 0):
        return search.result(fit, None, False, values)
    kept = np.isfinite(average)
    if search.mask is not None:
        kept &= ~search.mask.masked
    quantum = 1.0 / nskips if integer_valued else 0.0
    image, levels = remove_row_drift(average, kept, x0=x0, sigma=sigma, quantum=quantum,
                                     gain=gain if _resolved(fit.estimate) else np.nan)
    if image is None:
        return search.result(fit, levels, False, values)
    # the fit of the corrected image, then its clusters again (a drift moves the thresholds)
    values = ValueCounts.of_values(image, spacing=quantum or None)
    refit = search.fit(_unmasked_values(values, image, ~kept), fit)
    refit = search.masked(image, values, refit)
    x0, sigma, gain, _ = refit.estimate
    if np.isfinite(sigma):
        kept = np.isfinite(image) & (True if search.mask is None else ~search.mask.masked)
        left = row_levels(image, kept, x0=x0, gain=gain if _resolved(refit.estimate) else np.nan,
                          sigma=sigma)
        if left.drifts:
            reason = (f"the rows' zero level drifts by {left.rms:.3g} ADU rms even after "
                      "correction: rerun with --baseline row-median")
            refit = fitting.model.without(refit, reason, ("sigma",))
    return search.result(refit, levels, True, values)


class _Search:
    """The fits of one image, each from the last one's estimate; the last mask found and
    the values the last fit saw."""

    def __init__(self, bin_width, settings):
        self.bin_width, self.settings = bin_width, settings
        self.mask = None
        self.fitted_values = None

    def fit(self, values, start=None, max_starts=fitting.gauss_poisson.MAX_STARTS):
        """One Gauss-Poisson fit of ``values`` (from ``start``, a fit of the same image);
        its ambiguity is checked on the last fit only (:meth:`result`)."""
        self.fitted_values = values
        return fitting.fit_gauss_poisson(values, bin_width=self.bin_width,
                                         acceptance=self.settings.acceptance, start=start,
                                         check_ambiguity=False, max_starts=max_starts)

    def masked(self, average, values, fit):
        """The fit of the pixels of ``average`` (whose distribution is ``values``) outside
        clusters, the mask following the estimate (x0, σ, g, λ) of ``fit`` (a fit of the
        image) until its thresholds no longer move; the mask is kept in ``mask``."""
        settings = self.settings
        mask = None
        if "gain" in fit.reasons:
            # no electrons to threshold in, or a fit that clusters may have led astray: mask
            # what is obvious without them and fit again
            bright = bright_areas(average, halo=settings.mask_halo)
            if bright.any() and bright.mean() < MAX_MASKED:
                premasked = self.fit(_unmasked_values(values, average, bright))
                if "gain" not in premasked.reasons or not _resolved(fit.estimate):
                    fit = premasked
        used = None  # the estimate the mask was found with
        for _ in range(MASK_ITERATIONS):
            if not _resolved(fit.estimate):
                break  # no electrons to threshold in: the fit stands on every pixel
            if used is not None and _same_thresholds(used, fit.estimate, average.size,
                                                     settings.mask_seed_electrons):
                break  # the refit moved the thresholds by a fraction of the noise: same mask
            used = x0, sigma, gain, lam = fit.estimate
            new = mask_clusters(average, x0=x0, gain=gain, lam=lam, sigma=sigma,
                                seed_electrons=settings.mask_seed_electrons,
                                halo=settings.mask_halo,
                                hot_threshold=settings.mask_hot_threshold)
            unchanged = mask is not None and np.array_equal(new.masked, mask.masked)
            if new.fraction > MAX_MASKED:
                # the thresholds in electrons of a fit that is no fit (a flat field, say)
                break
            mask = new
            if unchanged or not mask.masked.any():
                break
            rejected = "gain" in fit.reasons
            fit = self.fit(_unmasked_values(values, average, mask.masked), fit)
            if rejected and "gain" in fit.reasons:
                break  # a rejected fit's thresholds did not lead to an accepted one: stop
        self.mask = mask
        return fit

    def result(self, fit, levels, corrected, values):
        """The :class:`PeaksFit`, the last fit's gain checked for ambiguity on the values it
        saw."""
        fit = fitting.unambiguous(fit, self.fitted_values, bin_width=self.bin_width,
                                  acceptance=self.settings.acceptance)
        return PeaksFit(fit, self.mask, levels, corrected, values)


def _resolved(estimate):
    """Whether a fit's estimate (x0, σ, g, λ) has peaks to count electrons with."""
    x0, sigma, gain, _ = estimate
    return bool(np.all(np.isfinite(estimate)) and gain > 0
                and sigma / gain < fitting.model.RESOLUTION_LIMIT)


def _same_thresholds(before, after, npixels, seed_electrons):
    """Whether two estimates (x0, σ, g, λ) put the mask's thresholds, in ADU, within 2 % of
    the noise of each other: the mask would then be the same but for a pixel or two."""
    def thresholds(x0, sigma, gain, lam):
        seed, grow = charge_thresholds(npixels, lam, seed_electrons)
        return np.array([x0 + (seed - 0.5) * gain, x0 + (grow - 0.5) * gain])

    return bool(np.all(np.abs(thresholds(*before) - thresholds(*after)) < 0.02 * before[1]))


def _unmasked_values(values, average, masked):
    """The distribution of the pixels outside ``masked``, from the image's ``values``."""
    if masked.mean() < 0.5:  # the distribution less the few masked pixels: no sort
        return values.without(average[masked])
    return ValueCounts.of_values(average[~masked])
