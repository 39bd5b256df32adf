"""Straight lines by ordinary least squares (the entropy against the sample index)."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class LineFit:
    """A straight line y = slope·x + intercept; NaN with ``reason`` when it cannot be fitted."""

    slope: float
    intercept: float
    slope_err: float
    intercept_err: float
    reason: str = ""


def fit_line(x, y):
    """Fit a straight line by ordinary least squares.

    Parameters
    ----------
    x, y : array_like
        Points; pairs with a non-finite value are left out.

    Returns
    -------
    LineFit
        slope, intercept and their standard errors from the scatter of the residuals; NaN
        with ``reason`` for fewer than 3 points or when all x are equal.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    good = np.isfinite(x) & np.isfinite(y)
    x, y = x[good], y[good]
    if x.size < 3:
        return LineFit(np.nan, np.nan, np.nan, np.nan, f"fewer than 3 points ({x.size})")
    x_mean, y_mean = x.mean(), y.mean()
    sxx = np.sum((x - x_mean) ** 2)
    if sxx == 0:
        return LineFit(np.nan, np.nan, np.nan, np.nan, "all x values equal")
    slope = np.sum((x - x_mean) * (y - y_mean)) / sxx
    intercept = y_mean - slope * x_mean
    residual_variance = np.sum((y - intercept - slope * x) ** 2) / (x.size - 2)
    slope_err = np.sqrt(residual_variance / sxx)
    intercept_err = np.sqrt(residual_variance * (1 / x.size + x_mean**2 / sxx))
    return LineFit(slope, intercept, slope_err, intercept_err)
