"""The dark current as a rate: electrons per pixel per day, from the exposure and readout
times the header gives.

``darkCurrent`` is what the fit measures: the mean charge of a pixel in that image. A pixel
collects dark charge during the exposure and then until it is read, so on average over the
image for the exposure plus half the readout (the first pixel waits for none of it, the
last for all of it). ``darkCurrentRate = darkCurrent / (exposure + readout / 2)``, in
e⁻/pixel/day. The header keywords differ between experiments (DAMIC-M writes ``EXPOSURE``
and ``DATEINI``/``DATEEND``): they are the ``exposure-keywords`` and
``acquisition-keywords`` settings, carried by :class:`skipperdask.config.Options`.
"""

import datetime

import numpy as np

SECONDS_PER_DAY = 86400.0


def collection_seconds(header, exposure_keywords, acquisition_keywords):
    """The mean time a pixel of the image collects dark charge, and what it came from.

    Parameters
    ----------
    header : mapping
        The file's header (keyword -> value).
    exposure_keywords : sequence of str
        Keywords of the exposure in seconds; the first present with a number is used.
    acquisition_keywords : (str, str)
        Keywords of the dates at the start of the exposure and the end of the readout.

    Returns
    -------
    seconds : float or None
        Exposure plus half the readout; None when the header gives no exposure.
    reason : str
        Why there is none, or how it was found.
    """
    exposure, used = None, None
    for keyword in exposure_keywords:
        exposure = _number(header.get(keyword))
        if exposure is not None and exposure >= 0:
            used = keyword
            break
    else:
        return None, f"no exposure time in the header ({', '.join(exposure_keywords)})"
    start, end = (_date(header.get(k)) for k in acquisition_keywords)
    if start is None or end is None:
        return (exposure or None), f"{used}; no readout time ({'/'.join(acquisition_keywords)})"
    readout = max((end - start).total_seconds() - exposure, 0.0)
    seconds = exposure + readout / 2
    return (seconds if seconds > 0 else None), f"{used} + half of {'/'.join(acquisition_keywords)}"


def add_dark_current_rate(dataset, header, options):
    """Fill ``darkCurrentRate`` (and its error and reason) of a metrics Dataset in place.

    Parameters
    ----------
    dataset : xarray.Dataset
        The metrics of one image over ``amp`` (:func:`skipperdask.metrics.measure`).
    header : mapping
        The file's header.
    options : skipperdask.config.Options
        ``exposure_keywords`` and ``acquisition_keywords``.
    """
    seconds, how = collection_seconds(header or {}, options.exposure_keywords,
                                      options.acquisition_keywords)
    reasons = dataset["darkCurrent_reason"].values
    if seconds is None:
        rate = np.full(dataset.sizes["amp"], np.nan)
        error = rate.copy()
        reason = np.array([r or how for r in reasons], dtype=object)
    else:
        per_day = SECONDS_PER_DAY / seconds
        rate = dataset["darkCurrent"].values * per_day
        error = dataset["darkCurrent_err"].values * per_day
        reason = np.array([r or "" for r in reasons], dtype=object)
    dataset["darkCurrentRate"].values[:] = rate
    dataset["darkCurrentRate_err"].values[:] = error
    dataset["darkCurrentRate_reason"].values[:] = reason
    dataset["darkCurrentRate"].attrs["long_name"] = (
        "dark current per day: darkCurrent / (exposure + readout / 2)")


def _number(value):
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _date(value):
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
