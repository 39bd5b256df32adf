"""What the figures draw with: a reason written across a panel, a value with its error, a log
axis when values span decades, a PNG at the figures' resolution, a time as a datetime."""

import datetime
import os

import numpy as np

DPI = 100

#: axis labels of the metrics the report shows
LABELS = {
    "skNoise": "noise of the average image, skNoise (ADU)",
    "aduConversion": "gain, aduConversion (ADU/e⁻)",
    "darkCurrent": "dark current (e⁻/pixel)",
    "imgNoise": "single-sample noise, imgNoise (ADU)",
    "dSdskip": "entropy slope, dSdskip (milli-nats/sample)",
    "tailRatio": "tailRatio (observed / expected tail pixels)",
    "resolution": "resolution σ/g (e⁻)",
    "pixVar": "variance of a pixel's samples, pixVar (ADU²)",
    "clustVar": "variance of a pixel cluster, clustVar (ADU²)",
}


def say(ax, text, *, y=0.5, **kwargs):
    """Write ``text`` across a panel, in the middle by default (why a curve is missing)."""
    options = {"ha": "center", "va": "center", "wrap": True, "fontsize": 10,
               "color": "0.25", "gid": "reason",
               "bbox": {"boxstyle": "round", "facecolor": "lightyellow", "edgecolor": "0.6"}}
    options.update(kwargs)
    return ax.text(0.5, y, text, transform=ax.transAxes, **options)


def value_text(value, error, digits=3):
    """``value ± error`` with the error's significant digits deciding the precision."""
    if not np.isfinite(value):
        return "missing"
    if not np.isfinite(error) or error <= 0:
        return f"{value:.{digits}g}"
    decimals = max(0, 1 - int(np.floor(np.log10(error))))
    return f"{value:.{decimals}f} ± {error:.{decimals}f}"


def log_if_wide(ax, values):
    """Log y axis when the positive values span more than a factor 30 (tailRatio, say)."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() > 30 * values.min():
        ax.set_yscale("log")


def log_if_positive(ax, values):
    """Log y axis whenever the values are positive (a ratio such as tailRatio, whose normal
    images sit near 1 while flagged ones reach hundreds); symmetric-log, linear below 1,
    when some are 0."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0:
        ax.set_yscale("log")
    elif values.size and values.min() == 0 and values.max() > 0:  # no tail pixel at all: 0
        ax.set_yscale("symlog", linthresh=1.0)


def save(figure, path):
    figure.savefig(path, dpi=DPI)
    return os.fspath(path)


def as_datetime(time):
    """A ``numpy.datetime64`` as a naive :class:`datetime.datetime` (UTC), of any year
    (``numpy.datetime64.item`` gives an int for nanoseconds)."""
    return datetime.datetime(1970, 1, 1) + datetime.timedelta(
        microseconds=int(time.astype("datetime64[us]").astype(np.int64)))
