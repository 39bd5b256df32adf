"""Right or missing, never wrong: the average image's fit over what campaigns hold.

A grid of simulated images (σ/g of the average image × dark current × tracks and X-ray
clusters × baseline drift), each through the statistics pass and :func:`analyse` as a
campaign computes them. Every gain, λ and σ reported must lie within 5 of its own standard
errors of the truth (the errors are the fit's: honest errors make that a test of a few
standard errors of the estimator); where the single-electron peaks are resolved
(σ/g ≤ 0.35 with charge to see) they must be reported. Seeds are fixed; the images hold
90,000 pixels, so that 5 standard errors of the gain are 1-3 % of it.
"""

import math

import numpy as np
import pytest

from skipperdask.config import Options
from skipperdask.metrics import analyse
from skipperdask.simulate import Truth, simulate_pixels
from skipperdask.statistics import chunk_statistics, plan_statistics

GAIN = 10.0
NSKIPS = 4
SIZE = 300
RATIOS = (0.1, 0.25, 0.35, 0.45, 0.6, 0.8)
DARK_CURRENTS = (0.01, 0.3, 1.0, 3.0)
#: tolerance, in the fit's own standard errors
PULL = 5.0
#: (tracks and blobs, X-ray clusters, hot columns) per amplifier: none, a few per cent of
#: the pixels in clusters, half of them
CLUSTERS = {"clean": (0, 0, 0), "a few %": (30, 20, 1), "half the image": (300, 60, 2)}
#: baseline drift along rows over the whole image, in gains
DRIFTS = (0.0, 0.6)


def statistics(ratio, lam, clusters, drift):
    """The statistics of one simulated amplifier image, and the averaged noise σ."""
    sigma = ratio * GAIN
    # the stored values are rounded: the averaged noise holds 1/12 ADU² per sample
    read_noise = math.sqrt(max(sigma**2 * NSKIPS - 1 / 12, 1e-4))
    tracks, xrays, hot = CLUSTERS[clusters]
    truth = Truth(nrows=SIZE, ncols=SIZE, nskips=NSKIPS, gain=GAIN, read_noise=read_noise,
                  dark_current=lam, tracks=tracks, xrays=xrays, hot_columns=hot,
                  drift=drift * GAIN / SIZE, seed=11)
    raw = np.round(simulate_pixels(truth).values[0]).astype(np.int32)
    plan = plan_statistics(SIZE, SIZE, NSKIPS, truth.polarity)
    return chunk_statistics(raw, plan, 0), sigma


def verdict(analysis, name, truth):
    """"missing", "right" or a description of how it is wrong."""
    value = analysis.values.get(name, np.nan)
    error = analysis.values.get(f"{name}_err", np.nan)
    if np.isnan(value):
        assert analysis.reasons.get(name), f"{name} is missing without a reason"
        return "missing"
    if abs(value - truth) <= PULL * error:
        return "right"
    return f"{name} = {value:.4g} ± {error:.2g}, truth {truth:.4g}"


@pytest.mark.slow
@pytest.mark.parametrize("drift", DRIFTS)
@pytest.mark.parametrize("clusters", list(CLUSTERS))
def test_right_or_missing_never_wrong(clusters, drift):
    wrong, unresolved = [], []
    for ratio in RATIOS:
        for lam in DARK_CURRENTS:
            stats, sigma = statistics(ratio, lam, clusters, drift)
            analysis = analyse(stats, Options.from_config(peaks_bin_width="auto"))
            where = f"σ/g = {ratio}, λ = {lam}"
            verdicts = {name: verdict(analysis, name, truth) for name, truth in
                        (("aduConversion", GAIN), ("darkCurrent", lam), ("skNoise", sigma))}
            wrong += [f"{where}: {v}" for v in verdicts.values() if v not in ("right", "missing")]
            # resolved peaks with charge to see give every value; at the limit (σ/g = 0.35)
            # half an image of tracks and a drift together may leave them missing
            hard = ratio == 0.35 and clusters == "half the image" and drift
            if ratio <= 0.35 and not hard and "missing" in verdicts.values():
                unresolved.append(f"{where}: {verdicts} {analysis.reasons}")
    assert not wrong, "\n".join(wrong)
    assert not unresolved, "\n".join(unresolved)
