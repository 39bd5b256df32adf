"""Time and correctness of the per-amplifier analysis over a grid of images.

Run from the repository root::

    python benchmarks/analysis_grid.py            # the full grid: 252 images
    python benchmarks/analysis_grid.py --quick    # 54 of them (3 σ/g × 3 λ)

Every grid point is one simulated amplifier image: the noise of a pixel's value in electrons
(σ/g) × the dark current λ (e⁻/pixel) × the pixels in clusters (tracks, blobs and X-rays:
none, a few %, dense) × the baseline drift (none, 0.6 gain from the first row to the last).
The images are averaged ones (500 × 500, 1000 × 1000 or 2000 × 2000 pixels, gain 1.35
ADU/e⁻ as DAMIC-M's) or raw ones (200 × 250 pixels × 8 samples, gain 10 ADU/e⁻), the layout
cycling over the grid. Each image is written to a temporary directory, its statistics
computed once (``read_chunk_statistics``, as a campaign does), then ``metrics.analyse`` is
timed alone, BLAS pinned to one thread, stopped after ``--timeout`` seconds.

It prints the analysis time's median, 95th percentile and maximum, the slowest points, and
for each point whether the gain is right (within 4 reported standard errors of the truth),
NaN (the analysis says it cannot tell) or wrong.
"""

import argparse
import dataclasses
import itertools
import math
import pathlib
import shutil
import signal
import sys
import tempfile
import time

import numpy as np
from campaign import RAW_PEDESTAL, cluster_counts  # also puts this checkout on sys.path
from threadpoolctl import threadpool_limits

from skipperdask.config import Options
from skipperdask.io import scan_file
from skipperdask.metrics import analyse
from skipperdask.simulate import Truth, cluster_fraction, write_image
from skipperdask.statistics import plan_statistics, read_chunk_statistics

NOISES = (0.05, 0.15, 0.25, 0.35, 0.45, 0.6, 0.8)  # σ/g: noise of a pixel's value, e⁻
DARK_CURRENTS = (0.001, 0.05, 0.3, 1.0, 3.0, 5.0)  # λ, e⁻/pixel
CLUSTERS = {"none": 0.0, "few %": 0.03, "dense": 0.3}  # fraction of pixels in clusters
DRIFTS = {"none": 0.0, "0.6 g": 0.6}  # baseline drift over the image, in gains
QUICK = {"noises": (0.05, 0.25, 0.6), "dark_currents": (0.05, 1.0, 5.0)}
TIME_TARGETS = {"median": 0.05, "max": 0.5}  # seconds
ERRORS_FOR_RIGHT = 4  # |gain - truth| within this many reported standard errors


@dataclasses.dataclass(frozen=True)
class Layout:
    """The shape and gain of a grid image."""

    name: str
    nrows: int
    ncols: int
    nskips: int
    averaged: bool
    gain: float


LAYOUTS = (
    Layout("avg 500x500", 500, 500, 1, True, 1.35),
    Layout("raw 200x250x8", 200, 250, 8, False, 10.0),
    Layout("avg 1000x1000", 1000, 1000, 1, True, 1.35),
    Layout("avg 500x500", 500, 500, 1, True, 1.35),
    Layout("raw 200x250x8", 200, 250, 8, False, 10.0),
    Layout("avg 2000x2000", 2000, 2000, 1, True, 1.35),
)


@dataclasses.dataclass(frozen=True)
class Point:
    """One grid point and its image."""

    noise: float
    dark_current: float
    clusters: str
    drift: str
    layout: Layout
    seed: int

    def truth(self):
        layout = self.layout
        tracks, xrays = cluster_counts(layout.nrows, layout.ncols, CLUSTERS[self.clusters])
        return Truth(
            nrows=layout.nrows, ncols=layout.ncols, nskips=layout.nskips, gain=layout.gain,
            # the noise of the average of nskips samples is σ/g electrons
            read_noise=self.noise * layout.gain * math.sqrt(layout.nskips),
            dark_current=self.dark_current, tracks=tracks, xrays=xrays,
            hot_columns=1 if xrays else 0, averaged=layout.averaged,
            pedestal=10000.0 if layout.averaged else RAW_PEDESTAL,
            drift=DRIFTS[self.drift] * layout.gain / layout.nrows, seed=self.seed,
        )

    def describe(self):
        return (f"σ/g {self.noise:4.2f}  λ {self.dark_current:5.3f}  clusters {self.clusters:5}"
                f"  drift {self.drift:5}  {self.layout.name}")


@dataclasses.dataclass
class Outcome:
    """The analysis of one grid point: seconds (None after the timeout) and the gain."""

    point: Point
    seconds: float | None
    gain: float = math.nan
    gain_err: float = math.nan
    reason: str = ""

    @property
    def verdict(self):
        if self.seconds is None:
            return "timeout"
        if math.isnan(self.gain):
            return "NaN"
        right = abs(self.gain - self.point.layout.gain) <= ERRORS_FOR_RIGHT * self.gain_err
        return "right" if right else "wrong"


def grid(quick=False):
    """Every grid point, the layout cycling so that each combination meets several."""
    noises = QUICK["noises"] if quick else NOISES
    dark_currents = QUICK["dark_currents"] if quick else DARK_CURRENTS
    combinations = itertools.product(CLUSTERS, DRIFTS, noises, dark_currents)
    return [Point(noise, dark, clusters, drift, LAYOUTS[index % len(LAYOUTS)], seed=index)
            for index, (clusters, drift, noise, dark) in enumerate(combinations)]


def statistics_of(point, directory):
    """The statistics of the point's image, through a file as a campaign computes them."""
    name = f"{'Avg_' if point.layout.averaged else ''}Img_{point.seed}.fits"  # the seed's rule
    path = write_image(directory / name, point.truth(), overwrite=True)
    try:
        layout = scan_file(path)
        amp = layout.amps[0]
        plan = plan_statistics(amp.nrows, amp.ncols, amp.nskips, layout.polarity)
        return read_chunk_statistics(amp, 0, amp.nrows, plan)
    finally:
        path.unlink()


class AnalysisTimeout(Exception):
    """The analysis ran past its time limit."""


def _stop_analysis(signum, frame):
    raise AnalysisTimeout


def timed_analysis(point, statistics, timeout):
    """Run ``metrics.analyse`` once, stopped by an alarm after ``timeout`` seconds."""
    signal.signal(signal.SIGALRM, _stop_analysis)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        start = time.perf_counter()
        analysis = analyse(statistics, Options.from_config())
        seconds = time.perf_counter() - start
        signal.setitimer(signal.ITIMER_REAL, 0)
    except AnalysisTimeout:
        return Outcome(point, None)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return Outcome(point, seconds, analysis.values.get("aduConversion", math.nan),
                   analysis.values.get("aduConversion_err", math.nan),
                   analysis.reasons.get("aduConversion", ""))


def print_times(outcomes, timeout):
    seconds = np.array([timeout if o.seconds is None else o.seconds for o in outcomes])
    timeouts = sum(o.seconds is None for o in outcomes)
    capped = f" (counting each of the {timeouts} timeouts as {timeout:g} s)" if timeouts else ""
    print(f"metrics.analyse, one thread, {len(outcomes)} points{capped}:")
    print(f"  p50 {np.median(seconds) * 1000:8.1f} ms   target <= "
          f"{TIME_TARGETS['median'] * 1000:.0f} ms")
    print(f"  p95 {np.percentile(seconds, 95) * 1000:8.1f} ms")
    print(f"  max {seconds.max() * 1000:8.1f} ms   target <= {TIME_TARGETS['max'] * 1000:.0f} ms"
          f"{'' if not timeouts else ' (a timeout: more)'}")
    print(f"  {np.mean(seconds <= TIME_TARGETS['median']):.0%} of the points within "
          f"{TIME_TARGETS['median'] * 1000:.0f} ms, {np.mean(seconds <= TIME_TARGETS['max']):.0%}"
          f" within {TIME_TARGETS['max'] * 1000:.0f} ms")
    print("slowest points:")
    for outcome in sorted(outcomes, key=lambda o: -(o.seconds or math.inf))[:5]:
        time_text = f"> {timeout:g} s" if outcome.seconds is None else f"{outcome.seconds:.3f} s"
        fraction = cluster_fraction(outcome.point.truth())
        print(f"  {time_text:>9}  {outcome.point.describe()}  ({fraction:.1%} of pixels in "
              f"clusters)  gain {outcome.verdict}")


SYMBOLS = {"right": ".", "NaN": "n", "wrong": "W", "timeout": "T"}


def print_verdicts(outcomes):
    """One table of σ/g × λ per clusters × drift, a symbol per point, then the wrong ones."""
    layouts = sorted({o.point.layout.name for o in outcomes})
    print(f"gain: '.' within {ERRORS_FOR_RIGHT} reported errors of the truth, 'n' NaN, "
          f"'W' wrong, 'T' timeout; layouts {', '.join(layouts)}")
    by_key = {(o.point.clusters, o.point.drift, o.point.noise, o.point.dark_current): o
              for o in outcomes}
    noises = sorted({o.point.noise for o in outcomes})
    darks = sorted({o.point.dark_current for o in outcomes})
    for clusters, drift in itertools.product(CLUSTERS, DRIFTS):
        block = [by_key[clusters, drift, n, d] for n in noises for d in darks
                 if (clusters, drift, n, d) in by_key]
        if not block:
            continue
        counts = {v: sum(o.verdict == v for o in block) for v in SYMBOLS}
        print(f"  clusters {clusters}, drift {drift}: "
              + ", ".join(f"{n} {v}" for v, n in counts.items() if n))
        print("    σ/g \\ λ " + "".join(f"{d:>7g}" for d in darks))
        for n in noises:
            cells = [SYMBOLS[by_key[clusters, drift, n, d].verdict] for d in darks]
            print(f"    {n:7.2f}  " + "".join(f"{c:>7}" for c in cells))
    totals = {v: sum(o.verdict == v for o in outcomes) for v in SYMBOLS}
    print("  all points: " + ", ".join(f"{n} {v}" for v, n in totals.items()))
    wrong = [o for o in outcomes if o.verdict == "wrong"]
    for outcome in wrong[:10]:
        print(f"  wrong: {outcome.point.describe()}: gain {outcome.gain:.4f} ± "
              f"{outcome.gain_err:.4f}, truth {outcome.point.layout.gain}")
    if len(wrong) > 10:
        print(f"  ... and {len(wrong) - 10} more wrong")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"σ/g {QUICK['noises']} × λ {QUICK['dark_currents']} only")
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds an analysis may run before it is stopped (default 2: "
                        "four times the target's maximum)")
    parser.add_argument("--workdir", help="where to write the images (default a temp dir)")
    args = parser.parse_args(argv)

    points = grid(args.quick)
    directory = pathlib.Path(tempfile.mkdtemp(prefix="skipperdask-grid-", dir=args.workdir))
    start = time.perf_counter()
    outcomes = []
    try:
        with threadpool_limits(1):
            # the first call compiles and loads what the later ones reuse: not timed
            analyse(statistics_of(points[0], directory), Options.from_config())
            for point in points:
                statistics = statistics_of(point, directory)
                outcomes.append(timed_analysis(point, statistics, args.timeout))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    analysing = sum(args.timeout if o.seconds is None else o.seconds for o in outcomes)
    print(f"{len(points)} grid points in {time.perf_counter() - start:.0f} s "
          f"(analysis {analysing:.0f} s, the rest simulation and statistics)")
    print_times(outcomes, args.timeout)
    print_verdicts(outcomes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
