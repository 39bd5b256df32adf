"""The cluster mask and the rows' zero levels, against simulated images whose truth is known."""

import numpy as np
import pytest

from skipperdask import image_metrics, open_image
from skipperdask.metrics.drift import remove_row_drift, row_levels
from skipperdask.metrics.mask import bright_areas, charge_thresholds, cluster_mask
from skipperdask.simulate import Truth, simulate_pixels, write_image

GAIN, NOISE = 10.0, 2.0


def average_image(**truth):
    """The average image (charge raising the value) and the electrons of each pixel."""
    truth = Truth(**{"nrows": 200, "ncols": 200, "nskips": 1, "gain": GAIN,
                     "read_noise": NOISE, "polarity": 1, "seed": 3, **truth})
    pixels = simulate_pixels(truth)
    return pixels.values[0].mean(axis=2) - truth.pedestal, pixels.electrons[0], truth


def test_thresholds_follow_the_dark_current():
    # dark current alone gives fewer than one pixel of the image at the seed threshold
    from scipy import stats

    for lam in (0.001, 0.1, 1.0, 5.0):
        seed, grow = charge_thresholds(10**6, lam)
        assert 10**6 * stats.poisson.sf(seed - 1, lam) < 1
        assert seed >= 4 and grow >= 2 and grow <= seed


@pytest.mark.parametrize("lam", [0.01, 1.0, 5.0])
def test_dark_current_is_not_masked(lam):
    image, electrons, _ = average_image(dark_current=lam)
    mask = cluster_mask(image, x0=0.0, gain=GAIN, lam=lam, sigma=NOISE)
    assert mask.fraction < 0.001
    assert mask.hot_columns.size == 0 and mask.hot_rows.size == 0


def test_tracks_xrays_and_their_edges_are_masked():
    image, electrons, truth = average_image(dark_current=0.05, tracks=20, xrays=10)
    clusters = electrons >= 4
    mask = cluster_mask(image, x0=0.0, gain=GAIN, lam=truth.dark_current, sigma=NOISE)
    assert mask.masked[clusters].all()
    assert 10 <= mask.clusters <= 60
    # the track edges (1-3 e⁻ next to a cluster pixel) are in the halo
    from scipy import ndimage

    edges = ndimage.binary_dilation(clusters, np.ones((3, 3), bool)) & ~clusters
    assert mask.masked[edges & (electrons > 0)].all()
    # and most of the image is left to the fit
    assert mask.fraction < 0.2


def test_hot_columns_are_masked_whole():
    image, _, _ = average_image(dark_current=0.05, hot_columns=2, hot_column_current=0.5)
    mask = cluster_mask(image, x0=0.0, gain=GAIN, lam=0.05, sigma=NOISE)
    assert mask.hot_columns.size == 2
    assert mask.masked[:, mask.hot_columns].all()


def test_bright_areas_without_a_gain():
    image, electrons, _ = average_image(dark_current=1.0, tracks=40)
    bright = bright_areas(image)
    assert bright[electrons >= 20].all()
    assert bright.mean() < 0.5


def test_mask_is_the_same_for_any_chunking(tmp_path):
    path = write_image(tmp_path / "Img_1.fits", Truth(nrows=120, ncols=100, nskips=8,
                                                      dark_current=0.2, tracks=12, xrays=6))
    results = [image_metrics(open_image(path, chunks={"row": rows})) for rows in (7, 50, 120)]
    for name in ("maskedFraction", "clusters", "hotColumns", "aduConversion", "darkCurrent"):
        values = [float(r[name].isel(amp=0)) for r in results]
        assert values[0] == values[1] == values[2], name
    assert float(results[0].clusters.isel(amp=0)) > 0


def test_tracks_do_not_bias_the_dark_current(tmp_path):
    """The issue's case: track edges raised λ by 7 % (8 % of pixels in tracks) to 113 %."""
    truth = Truth(nrows=300, ncols=300, nskips=4, gain=GAIN, read_noise=4.0,
                  dark_current=0.5, tracks=120, xrays=40, seed=5)
    path = write_image(tmp_path / "Img_1.fits", truth)
    metrics = image_metrics(open_image(path)).isel(amp=0)
    assert float(metrics.maskedFraction) > 0.1
    lam, error = float(metrics.darkCurrent), float(metrics.darkCurrent_err)
    assert abs(lam - truth.dark_current) < 5 * error
    assert float(metrics.tailRatio) > 10  # the tracks still count there


# ---------------------------------------------------------------- the rows' zero levels


def test_no_drift_found_in_a_clean_image():
    image, _, _ = average_image(dark_current=0.5)
    kept = np.ones(image.shape, bool)
    for gain in (GAIN, np.nan):
        levels = row_levels(image, kept, x0=0.0, gain=gain, sigma=NOISE)
        assert not levels.drifts
        assert levels.rms < 0.1 * NOISE


@pytest.mark.parametrize("gain", [GAIN, np.nan])
def test_a_drift_is_found_and_removed(gain):
    image, _, truth = average_image(dark_current=0.3, drift=6.0 / 200)
    kept = np.ones(image.shape, bool)
    corrected, found = remove_row_drift(image, kept, x0=0.0, gain=gain, sigma=NOISE, quantum=0)
    assert found.drifts
    assert found.rms == pytest.approx(6.0 / np.sqrt(12), rel=0.15)
    after = row_levels(corrected, kept, x0=0.0, gain=gain, sigma=NOISE)
    assert not after.drifts


def test_drift_corrected_and_said_so(tmp_path):
    truth = Truth(nrows=300, ncols=300, nskips=4, gain=GAIN, read_noise=5.0, dark_current=0.3,
                  drift=0.6 * GAIN / 300, seed=2)
    path = write_image(tmp_path / "Img_1.fits", truth)
    metrics = image_metrics(open_image(path)).isel(amp=0)
    assert float(metrics.baselineCorrected) == 1
    sigma = np.sqrt(truth.read_noise**2 + 1 / 12) / 2
    assert abs(float(metrics.skNoise) - sigma) < 5 * float(metrics.skNoise_err)
    assert abs(float(metrics.aduConversion) - GAIN) < 5 * float(metrics.aduConversion_err)


@pytest.mark.parametrize("gain", [GAIN, np.nan])
def test_rows_without_a_pixel_left(gain):
    """A row masked whole (a hot row, a track along it) has no level of its own."""
    image, _, _ = average_image(dark_current=0.3, drift=6.0 / 200)
    kept = np.ones(image.shape, bool)
    kept[50:53] = False
    levels = row_levels(image, kept, x0=0.0, gain=gain, sigma=NOISE)
    assert levels.drifts and np.isfinite(levels.levels).all()
