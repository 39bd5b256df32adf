"""Alerts: which images' amplifiers look wrong, as each image finishes.

:class:`AlertRules` checks every finished :class:`~skipperdask.catalogue.ImageRecord` in the
client (``process`` and ``watch`` call it before the record is committed) and writes its
verdict into the record, so that it reaches the catalogue: ``metrics["flags"]``, a string
per amplifier, ``""`` when nothing is wrong, else the reasons joined by ``"; "``. An
amplifier is flagged when

- its fit failed: the gain (``aduConversion``) or ``skNoise`` is missing (its reason quoted);
- charge is lost between samples: ``dSdskip`` below ``charge-loss-dsdskip`` (-10);
- ``tailRatio`` is far above its usual level: above ``tail-ratio-factor`` (10) times its
  running median and above ``tail-ratio-minimum`` (100): tracks, a flood of clusters, a
  transfer problem;
- one of ``deviation-metrics`` (gain, skNoise, dark current) is more than
  ``deviation-sigmas`` (5) standard deviations from its running median.

The running median of each (metric, amplifier) is over the last ``baseline-window`` (50)
values of images whose amplifier had no flag (:class:`RunningBaseline`): memory stays bounded
however long a campaign runs, and the flagged images themselves never move it. Its standard
deviation is 1.4826 times the median absolute deviation of that window (what a Gaussian
spread gives), in quadrature with the value's own error: a metric steadier than its error
raises no alarm. No deviation is flagged before ``baseline-minimum`` (5) values are in.

A file that failed has no metrics: it gives one alert with no amplifier, and the catalogue
keeps its flag (:func:`skipperdask.catalogue.records.file_flag`) on every amplifier.
"""

import math
from collections import deque
from typing import NamedTuple

import numpy as np

from ..catalogue.records import file_flag
from ..config import AlertOptions

#: a Gaussian's standard deviation per median absolute deviation
_MAD_TO_SIGMA = 1.4826
#: what ``tailRatio`` is compared with, besides the deviation metrics
_TAIL = "tailRatio"


class Alert(NamedTuple):
    """One flag: the file, the amplifier (``""`` for the whole file) and the reason."""

    path: str
    amp: str
    reason: str

    def __str__(self):
        return f"{self.path} {self.amp or '-'}: {self.reason}"


class RunningBaseline:
    """The last ``window`` values of one metric on one amplifier: their median and robust
    standard deviation."""

    def __init__(self, window):
        self.values = deque(maxlen=window)

    def __len__(self):
        return len(self.values)

    def add(self, value):
        """Take a value in (the oldest leaves a full window)."""
        self.values.append(float(value))

    def median_sigma(self):
        """``(median, standard deviation)`` of the window: 1.4826 × the median absolute
        deviation; NaNs when empty."""
        if not self.values:
            return math.nan, math.nan
        values = np.fromiter(self.values, float, len(self.values))
        median = float(np.median(values))
        return median, _MAD_TO_SIGMA * float(np.median(np.abs(values - median)))


class AlertRules:
    """The alert rules of a campaign and their running baselines (see the module).

    Parameters
    ----------
    options : skipperdask.config.AlertOptions, optional
        The thresholds; default from ``dask.config`` (``skipperdask.alerts``).
    """

    def __init__(self, options=None):
        self.options = options or AlertOptions.from_config()
        self._baselines = {}  # (metric, amp) -> RunningBaseline

    def _baseline(self, metric, amp):
        key = (metric, amp)
        if key not in self._baselines:
            self._baselines[key] = RunningBaseline(self.options.baseline_window)
        return self._baselines[key]

    def check(self, record):
        """Flag one finished image: ``record.metrics["flags"]`` is set (when it has metrics),
        the baselines learn its unflagged amplifiers.

        Parameters
        ----------
        record : skipperdask.catalogue.ImageRecord

        Returns
        -------
        list of Alert
            One per flag, in amplifier order.
        """
        if record.metrics is None:
            return [Alert(record.path, "", file_flag(record.error))]
        metrics = record.metrics
        alerts, flags = [], []
        for index, amp in enumerate(str(a) for a in metrics["amp"].values):
            values = {name: float(metrics[name].values[index]) for name in self._names(metrics)}
            reasons = [*self._fit_failure(metrics, index, values),
                       *self._charge_loss(values), *self._tail(amp, values),
                       *self._deviations(metrics, index, amp, values)]
            # a reason is one item of the "; "-joined flags
            reasons = [reason.replace("; ", ", ") for reason in reasons]
            if not reasons:
                for name in (*self.options.deviation_metrics, _TAIL):
                    if math.isfinite(values.get(name, math.nan)):
                        self._baseline(name, amp).add(values[name])
            flags.append("; ".join(reasons))
            alerts += [Alert(record.path, amp, reason) for reason in reasons]
        metrics["flags"] = ("amp", np.array(flags, dtype=object))
        return alerts

    def bands(self):
        """The running medians and alert bands, for live views.

        Returns
        -------
        dict of (str, str) to (float, float, float)
            ``(metric, amp)`` → ``(median, low, high)``: a value outside ``[low, high]`` is
            flagged (the deviation metrics' bands leave the value's own error out; those of
            ``tailRatio`` start at 0). Only baselines with at least ``baseline-minimum``
            values.
        """
        bands = {}
        for (metric, amp), baseline in self._baselines.items():
            if len(baseline) < self.options.baseline_minimum:
                continue
            median, sigma = baseline.median_sigma()
            if metric == _TAIL:
                bands[metric, amp] = (median, 0.0, self._tail_limit(median))
            else:
                width = self.options.deviation_sigmas * sigma
                bands[metric, amp] = (median, median - width, median + width)
        return bands

    def _names(self, metrics):
        wanted = ("aduConversion", "skNoise", "dSdskip", _TAIL, *self.options.deviation_metrics)
        return [name for name in dict.fromkeys(wanted) if name in metrics]

    @staticmethod
    def _fit_failure(metrics, index, values):
        for name in ("aduConversion", "skNoise"):
            if name in values and not math.isfinite(values[name]):
                reason = f"{name}_reason"
                why = str(metrics[reason].values[index]) if reason in metrics else ""
                yield f"fit failed: {name} missing ({why or 'no reason given'})"
                return

    def _charge_loss(self, values):
        dsdskip = values.get("dSdskip", math.nan)
        if dsdskip < self.options.charge_loss_dsdskip:
            yield (f"charge loss: dSdskip {dsdskip:.3g} < {self.options.charge_loss_dsdskip:g} "
                   "milli-nats per sample")

    def _tail_limit(self, median):
        if not math.isfinite(median):
            return self.options.tail_ratio_minimum
        return max(self.options.tail_ratio_factor * median, self.options.tail_ratio_minimum)

    def _tail(self, amp, values):
        tail = values.get(_TAIL, math.nan)
        baseline = self._baseline(_TAIL, amp)
        median = (baseline.median_sigma()[0] if len(baseline) >= self.options.baseline_minimum
                  else math.nan)
        limit = self._tail_limit(median)
        if tail > limit:
            usual = "" if math.isnan(median) else f", its running median {median:.3g}"
            yield (f"tailRatio {tail:.3g} above {limit:.3g}{usual} (tracks, clusters or a "
                   "transfer problem)")

    def _deviations(self, metrics, index, amp, values):
        for name in self.options.deviation_metrics:
            value = values.get(name, math.nan)
            baseline = self._baseline(name, amp)
            if not math.isfinite(value) or len(baseline) < self.options.baseline_minimum:
                continue
            median, spread = baseline.median_sigma()
            error_name = f"{name}_err"
            error = float(metrics[error_name].values[index]) if error_name in metrics else 0.0
            sigma = math.hypot(spread, error if math.isfinite(error) else 0.0)
            if sigma > 0 and abs(value - median) > self.options.deviation_sigmas * sigma:
                side = "above" if value > median else "below"
                yield (f"{name} {value:.4g} is {abs(value - median) / sigma:.0f} sigma {side} "
                       f"its running median {median:.4g}")
