"""The fits, on small in-memory arrays: histograms of an image's values, never pixels.

Everything works in the frame where charge raises the value (the caller flips raw images).

- :mod:`.likelihood`: histograms, bin-integrated Gaussians, the binned Poisson
  maximum-likelihood engine and the goodness-of-fit test;
- :mod:`.gaussian`: Gaussians fitted to many histograms at once (noise of single samples);
- :mod:`.line`: straight lines (the entropy slope);
- :mod:`.starts`: starting values from the data (zero peak, noise, candidate gains);
- :mod:`.model`: the Gaussian-smeared Poisson and its result;
- :mod:`.fallback`: the peaks-and-Gaussians fallback of damicm-image-preproc;
- :mod:`.free_heights`: free peak heights, when the heights are not one Poisson;
- :mod:`.gauss_poisson`: the Gaussian-smeared Poisson fit, right or missing;
- :mod:`.tail`: the tail ratio.
"""

from .fallback import fit_peaks
from .gauss_poisson import fit_gauss_poisson, unambiguous
from .gaussian import GaussianFit, fit_gaussian, fit_gaussians
from .likelihood import Acceptance, histogram
from .line import LineFit, fit_line
from .model import GaussPoissonFit, gauss_poisson_counts
from .starts import fit_zero_peak, zero_peak_width
from .tail import tail_ratio

__all__ = [
    "Acceptance",
    "GaussPoissonFit",
    "GaussianFit",
    "LineFit",
    "fit_gauss_poisson",
    "fit_gaussian",
    "fit_gaussians",
    "fit_line",
    "fit_peaks",
    "fit_zero_peak",
    "gauss_poisson_counts",
    "histogram",
    "tail_ratio",
    "unambiguous",
    "zero_peak_width",
]
