"""The quality metrics of one image, assembled from the one-pass statistics and the fits
(the metrics of DAMIC-M's damicm-image-preproc, and the figures behind them).

- :mod:`~.image`: :func:`image_metrics` of an ``(amp, row, col, skip)`` DataArray;
- :mod:`~.analysis`: :func:`analyse` of one amplifier step by step, :func:`measure` and
  :func:`metrics_dataset` for one image;
- :mod:`~.amplifier`: :class:`AmpAnalysis`, the metrics' names and units;
- :mod:`~.noise`, :mod:`~.measurements`: the steps;
- :mod:`~.peaks`: the average image's Gauss-Poisson fit outside its clusters
  (:mod:`~.mask`), after a drift of its baseline (:mod:`~.drift`) is removed;
- :mod:`~.polarity`: which way charge goes, when only the default said it.

A value the data cannot determine is NaN, and its ``<name>_reason`` variable says why.
"""

from .amplifier import METRICS, REASONED, UNITS, WITH_ERROR, AmpAnalysis
from .analysis import analyse, measure, metrics_dataset
from .image import analyse_image, combined, image_metrics, image_statistics
from .noise import sample_noise_histogram, zero_peak_window
from .polarity import charge_side, settle_polarity

__all__ = [
    "METRICS", "REASONED", "UNITS", "WITH_ERROR", "AmpAnalysis", "analyse", "analyse_image",
    "charge_side", "combined", "image_metrics", "image_statistics", "measure",
    "metrics_dataset", "sample_noise_histogram", "settle_polarity", "zero_peak_window",
]
