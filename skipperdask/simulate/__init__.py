"""Simulated skipper-CCD images whose truth is known.

The physics (a skipper CCD as DAMIC-M's damicm-image-preproc sees it): every pixel's charge
is measured ``nskips`` times, non-destructively.
For amplifier ``a``, row ``r``, column ``c`` and sample ``s`` the stored value is::

    value = pedestal + drift(r) + polarity * gain * q_s(r, c) + noise_s(r, c)

- ``q_0(r, c)`` electrons: Poisson(``dark_current``), plus the charge of tracks, blobs and
  X-ray clusters, plus Poisson(``hot_column_current``) in the hot columns;
- ``q_s``: each electron is lost with probability ``charge_loss`` at every transfer between
  two samples, so later samples see less charge (``q_s ~ Binomial(q_{s-1}, 1 - charge_loss)``);
- ``noise_s``: Normal(0, ``read_noise``), independent for every sample, in ADU;
- ``drift(r)``: a baseline that drifts along rows, linearly (``drift`` ADU per row) or as a
  random walk (steps of standard deviation ``drift`` ADU per row);
- ``polarity``: -1 for raw images (more charge gives a lower value, the original tool's convention),
  +1 for averaged images.

Raw images are stored rounded to integers, one 2-D HDU of shape ``(nrows, ncols * nskips)``
per amplifier, the samples of one pixel consecutive along the row (``data[r, c * nskips + s]``),
with ``NDCMS = nskips``. Averaged images hold the mean of the (unrounded) samples as a float
image ``(nrows, ncols)`` without ``NDCMS``; give them a file name containing ``Avg`` so that
the original tool's polarity rule reads them right. Stored integers saturate at the limits of their
type, as an ADC does.

The truth is written in every image header as ``SIM*`` keywords (see :func:`read_truth`);
those of the X-rays and hot columns only when they are set, so that images without them keep
their bytes. :func:`cluster_fraction` gives the fraction of pixels that clusters hold.
Random numbers are drawn row by row from generators seeded by ``(seed, amplifier, row)``, so a
file is the same whatever block size it is written in, and :func:`simulate_pixels` gives exactly
the values of the file.

Modules: :mod:`~.truth` (the parameters), :mod:`~.pixels` (the values), :mod:`~.files` (images
and campaigns on disk), :mod:`~.demo` (the demo's campaign and its comparison with the truth).
"""

from ..lazy import lazy_exports

# imported on first use: the command line's parser needs the parameters, not the simulation
_EXPORTS = {
    ".files": ("ACQUISITION_HEADER", "read_truth", "simulate_campaign", "write_image"),
    ".pixels": ("XRAY_ELECTRONS", "XRAY_SIGMA", "SimulatedPixels", "cluster_fraction",
                "simulate_pixels"),
    ".truth": ("DRIFT_KINDS", "DTYPES", "Truth"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
