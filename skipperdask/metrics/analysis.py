"""The analysis of one amplifier image, step by step, and the Dataset of one image's metrics.

A value the data cannot determine is NaN, and its ``<name>_reason`` variable says why; an
unexpected failure inside one step leaves only that step's metrics missing.
"""

import logging

import numpy as np
import xarray as xr

from ..errors import BadFileError
from .amplifier import METRICS, REASONED, UNITS, WITH_ERROR, AmpAnalysis, missing
from .exposure import add_dark_current_rate
from .measurements import average_image_fit, entropy_slope, variances
from .noise import noise_against_samples, single_sample_noise
from .peaks import FitSettings
from .polarity import settle_polarity

logger = logging.getLogger(__name__)


def _contained(analysis, step, names, *args):
    """Run one step of the analysis; an unexpected failure inside it (a LinAlgError, a
    ValueError of scipy, …) makes only the metrics it fills, ``names``, missing, with the
    reason "internal error: …", logged on one line, while the other steps go on."""
    try:
        step(analysis, *args)
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001  (whatever it is, it must stay in this step)
        reason = f"internal error: {type(error).__name__}: {error}"
        logger.warning("%s missing: %s", ", ".join(names), reason)
        for name in names:
            missing(analysis, name, reason, with_error=name in WITH_ERROR)


#: the steps of the analysis, in order, and the metrics each fills
_STEPS = (
    (entropy_slope, ("aveImgS", "dSdskip")),
    # first: its zero peak places the last one of the noise against samples
    (average_image_fit, ("skNoise", "darkCurrent", "aduConversion", "pedestal", "resolution",
                          "fitChi2", "tailRatio", "maskedFraction", "clusters", "hotColumns",
                          "baselineDrift", "baselineCorrected")),
    (noise_against_samples, ("noise_vs_n",)),  # and imgNoise of an averaged image
    (single_sample_noise, ("imgNoise",)),
    (variances, ("pixVar", "clustVar")),
)


def analyse(statistics, options, *, polarity_source="default"):
    """All the measurements of one amplifier image from its statistics.

    Parameters
    ----------
    statistics : skipperdask.statistics.ImageStatistics
        The combined statistics of the whole image.
    options : skipperdask.config.Options
        The run's options: the peaks' bin width, the fit's acceptance, the cluster mask.
    polarity_source : {"option", "header", "name", "default"}
        What decided the polarity of ``statistics``; with ``"default"`` the data decide
        (:func:`settle_polarity`).

    Returns
    -------
    AmpAnalysis
        Its ``statistics`` are in the frame of the settled polarity. An unexpected failure
        in one step leaves the metrics of that step missing ("internal error: …") and the
        others computed.
    """
    fit_settings = FitSettings.of_options(options)
    statistics, polarity_source = settle_polarity(statistics, polarity_source)
    analysis = AmpAnalysis(statistics, polarity_source=polarity_source)
    for step, names in _STEPS:
        args = (options.peaks_bin_width, fit_settings) if step is average_image_fit else ()
        _contained(analysis, step, names, *args)
    return analysis




def measure(statistics, options, *, polarity_source, amp_names, path, header=None):
    """The metrics Dataset of one image from the statistics of its amplifiers: what
    :func:`image_metrics` and a campaign's tasks give. (Run it with BLAS on one thread:
    :func:`skipperdask.blas.single_threaded_blas`, or a worker's
    :class:`~skipperdask.blas.SingleThreadedBLAS`.)

    Parameters
    ----------
    statistics : list of skipperdask.statistics.ImageStatistics
        One per amplifier, with the provisional polarity.
    options : skipperdask.config.Options
    polarity_source : {"option", "header", "name", "default"}
        What decided that polarity.
    amp_names : list of str
    path : str
        The image's file, kept in the attributes with the baseline.
    header : mapping, optional
        The file's header: its exposure and readout times give ``darkCurrentRate``.

    Returns
    -------
    xarray.Dataset
        See :func:`image_metrics`.
    """
    for name, stats in zip(amp_names, statistics, strict=True):
        if not stats.average_values.counts.sum():
            raise BadFileError(path, f"amplifier {name} has no finite value (all NaN or "
                               "infinite): nothing to measure")
    analyses = [analyse(s, options, polarity_source=polarity_source) for s in statistics]
    dataset = metrics_dataset(analyses, amp_names,
                              attrs={"path": path, "baseline": options.baseline})
    add_dark_current_rate(dataset, header, options)
    return dataset




def metrics_dataset(analyses, amp_names, *, attrs=None):
    """The metrics of one image as an ``xarray.Dataset`` over ``amp``.

    Parameters
    ----------
    analyses : list of AmpAnalysis
        One per amplifier.
    amp_names : list of str
    attrs : dict, optional
        Stored as the Dataset's attributes (path, options), with ``polarity``: the
        amplifiers' polarity, or 0 when they differ.

    Returns
    -------
    xarray.Dataset
        The metrics, their ``_reason``, ``nskips``, ``polarity`` and ``polarity_source``
        over ``amp``, and ``noise_vs_n`` over ``(amp, nsamp)``.
    """
    data = {}
    for name in METRICS:
        data[name] = ("amp", np.array([a.values.get(name, np.nan) for a in analyses], float))
        if name in UNITS:
            data[name] += ({"units": UNITS[name]},)
    for name in REASONED:
        reasons = [a.reasons.get(name, "") for a in analyses]
        data[f"{name}_reason"] = ("amp", np.array(reasons, dtype=object))
    data["nskips"] = ("amp", np.array([a.statistics.plan.nskips for a in analyses], np.int64))
    polarities = np.array([a.statistics.plan.polarity for a in analyses], np.int64)
    data["polarity"] = ("amp", polarities, {"long_name": "+1: charge raises the value"})
    data["polarity_source"] = ("amp", np.array([a.polarity_source for a in analyses], object),
                               {"long_name": "what decided the polarity"})
    file_polarity = int(polarities[0]) if len(set(polarities)) == 1 else 0
    levels = max((a.statistics.plan.levels for a in analyses), key=len)
    noise = np.full((len(analyses), len(levels)), np.nan)
    for i, analysis in enumerate(analyses):
        for j, result in enumerate(analysis.noise_fits):
            if result is not None and not result.reason:
                noise[i, j] = result.sigma
    data["noise_vs_n"] = (("amp", "nsamp"), noise, {"units": "ADU",
                          "long_name": "noise of the average of the first n samples"})
    return xr.Dataset(data, coords={"amp": list(amp_names), "nsamp": list(levels)},
                      attrs=dict(attrs or {}) | {"polarity": file_polarity})


