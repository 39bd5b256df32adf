"""What one finished image adds to the live page (:mod:`~.live`): its points per amplifier,
the running medians and alert bands at its time, its failure or its alerts; and the page's
bounded history of them, from which a newly opened page starts."""

import datetime
import math
import os
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..catalogue import image_time
from ..io.storage import absolute
from .drawing import as_datetime

#: the metrics drawn against time, one figure each
LIVE_METRICS = ("aduConversion", "skNoise", "darkCurrent", "tailRatio")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: rows kept in the tables of the last failed files and the last alerts
LAST_ROWS = 20
#: the columns of a point (besides the metrics)
POINT_COLUMNS = ("time", "file", "path", "amp", "flags", "marker", "outline", "size")
BAND_COLUMNS = ("time", *(f"{metric}_{part}" for metric in LIVE_METRICS
                          for part in ("median", "low", "high")))
FAILURE_COLUMNS = ("failed at", "file", "error")
ALERT_COLUMNS = ("image time", "file", "amp", "reasons")


@dataclass
class Update:
    """What one finished image adds to the page.

    ``points`` and ``bands``: amplifier -> one row (column -> value); ``failure`` and
    ``alerts``: rows of the tables; ``summary``: the text above the figures afterwards.
    """

    points: dict = field(default_factory=dict)
    bands: dict = field(default_factory=dict)
    failure: dict | None = None
    alerts: list = field(default_factory=list)
    summary: str = ""


class History:
    """What the page has been shown, bounded: the last ``points`` points and band rows of
    each amplifier, the last :data:`LAST_ROWS` failures and alerts, and the counts.

    :meth:`record` turns a finished image into an :class:`Update` and keeps it; the lock
    is the caller's (:class:`~.live.LivePage` holds it while it hands the update on).
    """

    def __init__(self, points):
        self.points_kept = points
        self.points = {}  # amp -> deque of point rows
        self.bands = {}  # amp -> deque of band rows
        self.failures = deque(maxlen=LAST_ROWS)
        self.alerts = deque(maxlen=LAST_ROWS)
        self.images = self.failed = self.flagged = 0
        self.lock = threading.Lock()

    def record(self, record, bands=None):
        """Keep what ``record`` (an :class:`~skipperdask.catalogue.ImageRecord`) and the
        ``bands`` at its time add (none for a failed file), and return it as an
        :class:`Update`."""
        when, _ = image_time(record)
        millis = float(when.astype("datetime64[us]").astype(np.int64)) / 1e3
        name = os.path.basename(record.path)
        update = Update()
        self.images += 1
        if record.ok:
            update.points = _point_rows(record, millis, name)
            update.bands = _band_rows(bands, millis)
            for amp, row in update.points.items():
                if row["flags"]:
                    self.flagged += 1
                    update.alerts.append({"image time": _text(when), "file": name, "amp": amp,
                                          "reasons": row["flags"]})
        else:  # dated when it failed: a file that cannot be read has no image time
            self.failed += 1
            update.failure = {"failed at": datetime.datetime.now(datetime.UTC).strftime(
                TIME_FORMAT), "file": name, "error": record.error or "no metrics were computed"}
        for amp, row in update.points.items():
            self.points.setdefault(amp, deque(maxlen=self.points_kept)).append(row)
        for amp, row in update.bands.items():
            self.bands.setdefault(amp, deque(maxlen=self.points_kept)).append(row)
        if update.failure:
            self.failures.appendleft(update.failure)
        self.alerts.extendleft(update.alerts)
        update.summary = self.summary(name, when)
        return update

    def summary(self, last=None, when=None):
        """The line above the figures: the counts, and the last image."""
        text = (f"<b>{self.images}</b> images, <b>{self.failed}</b> failed, "
                f"<b>{self.flagged}</b> amplifier entries flagged")
        if last:
            text += f" · last: {last} ({_text(when)} UTC)"
        return text


def columns(rows, names):
    """Rows (dicts) as a ColumnDataSource's columns ``names``."""
    return {name: [row[name] for row in rows] for name in names}


def _point_rows(record, millis, name):
    metrics = record.metrics
    flags = metrics["flags"].values if "flags" in metrics else [""] * metrics.sizes["amp"]
    rows = {}
    for index, amp in enumerate(str(a) for a in metrics["amp"].values):
        flag = str(flags[index] or "")
        row = {"time": millis, "file": name, "path": absolute(record.path), "amp": amp,
               "flags": flag,
               # a flagged point is a larger diamond ringed in red; its reasons show on hover
               "marker": "diamond" if flag else "circle",
               "outline": "crimson" if flag else "white",
               "size": 13 if flag else 7}
        for metric in LIVE_METRICS:
            row[metric] = _number(metrics[metric].values[index]) if metric in metrics else math.nan
        rows[amp] = row
    return rows


def _band_rows(bands, millis):
    """``{(metric, amp): (median, low, high)}`` as one band row per amplifier."""
    rows = {}
    for (metric, amp), (median, low, high) in (bands or {}).items():
        if metric not in LIVE_METRICS:
            continue
        row = rows.setdefault(str(amp), dict.fromkeys(BAND_COLUMNS, math.nan))
        row["time"] = millis
        row[f"{metric}_median"] = _number(median)
        row[f"{metric}_low"] = _number(low)
        row[f"{metric}_high"] = _number(high)
    return rows


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _text(when):
    return as_datetime(when).strftime(TIME_FORMAT)
