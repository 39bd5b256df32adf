"""What is measured on one amplifier image (:class:`AmpAnalysis`), and the names of the
metrics: those with an error, those that can be missing, their units."""

from dataclasses import dataclass, field

import numpy as np

from ..statistics import ImageStatistics

#: metrics with a one-sigma uncertainty ``<name>_err``
WITH_ERROR = ("dSdskip", "skNoise", "darkCurrent", "aduConversion", "pedestal", "resolution",
              "darkCurrentRate")
#: metrics that can be missing, each with a ``<name>_reason`` variable
REASONED = (
    "aveImgS", "dSdskip", "imgNoise", "skNoise", "darkCurrent", "aduConversion", "pedestal",
    "resolution", "fitChi2", "pixVar", "clustVar", "tailRatio", "maskedFraction", "clusters",
    "hotColumns", "baselineDrift", "baselineCorrected", "darkCurrentRate",
)
#: the float variables over ``amp``, in catalogue order
METRICS = (
    "aveImgS", "dSdskip", "dSdskip_err", "imgNoise", "skNoise", "skNoise_err", "darkCurrent",
    "darkCurrent_err", "aduConversion", "aduConversion_err", "pedestal", "pedestal_err",
    "resolution", "resolution_err", "fitChi2", "pixVar", "clustVar", "tailRatio",
    "maskedFraction", "clusters", "hotColumns", "baselineDrift", "baselineCorrected",
    "darkCurrentRate", "darkCurrentRate_err",
)
UNITS = {
    "aveImgS": "nats", "dSdskip": "milli-nats per sample", "imgNoise": "ADU", "skNoise": "ADU",
    "darkCurrent": "e-/pixel", "darkCurrentRate": "e-/pixel/day", "aduConversion": "ADU/e-",
    "pedestal": "ADU", "resolution": "e-",
    "pixVar": "ADU^2", "clustVar": "ADU^2", "tailRatio": "1", "fitChi2": "1",
    "noise_vs_n": "ADU", "maskedFraction": "1", "clusters": "1", "hotColumns": "1",
    "baselineDrift": "ADU", "baselineCorrected": "1",
}


@dataclass
class AmpAnalysis:
    """Everything measured on one amplifier image: the metrics and the fits behind them.

    The plots draw from it; :meth:`metrics` gives the catalogue's values.
    """

    statistics: ImageStatistics
    polarity_source: str = "default"  # what decided statistics.plan.polarity
    entropies: np.ndarray = None  # of single-sample images 0 … n-1
    entropy_line: object = None  # fitting.LineFit of entropies against sample index
    sample_noise_fits: list = field(default_factory=list)  # fitting.GaussianFit per sample
    noise_fits: list = field(default_factory=list)  # fitting.GaussianFit per partial average
    peaks_fit: object = None  # fitting.GaussPoissonFit of the average image
    mask: object = None  # mask.ClusterMask of the pixels left out of that fit, or None
    values: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)

    def metrics(self):
        """The metric values, with NaN for each missing one."""
        return {name: self.values.get(name, np.nan) for name in METRICS}


def missing(analysis, name, reason, *, with_error=False):
    analysis.values[name] = np.nan
    if with_error:
        analysis.values[f"{name}_err"] = np.nan
    analysis.reasons[name] = reason

