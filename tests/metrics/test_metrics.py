"""Every metric against simulated images whose truth is known (issue 4)."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from skipperdask import image_metrics, open_image
from skipperdask.simulate import Truth, write_image

ROUNDING = 1 / 12  # variance that digitising to whole ADU adds to every sample


def median_variance_factor(dof):
    """Median of a sample variance with ``dof`` degrees of freedom, in units of the variance."""
    return scipy_stats.chi2.median(dof) / dof


def measure(tmp_path, name="Img_1.fits", read_polarity=None, baseline=None, chunks=None,
            **truth):
    truth = Truth(**truth)
    path = write_image(tmp_path / name, truth)
    pixels = open_image(path, chunks=chunks, polarity=read_polarity)
    return truth, image_metrics(pixels, baseline=baseline).isel(amp=0)


def value(metrics, name):
    return float(metrics[name])


def assert_fit(metrics, truth, *, gain=0.03, noise=0.05, lam=0.05):
    """Gain, averaged noise and dark current against the truth."""
    averaged_noise = math.sqrt(truth.read_noise**2 + (ROUNDING if not truth.averaged else 0))
    averaged_noise /= math.sqrt(truth.nskips)
    assert value(metrics, "aduConversion") == pytest.approx(truth.gain, rel=gain)
    assert value(metrics, "skNoise") == pytest.approx(averaged_noise, rel=noise)
    lam_err = value(metrics, "darkCurrent_err")
    assert abs(value(metrics, "darkCurrent") - truth.dark_current) < max(
        lam * truth.dark_current, 3 * lam_err
    )
    assert value(metrics, "resolution") == pytest.approx(averaged_noise / truth.gain, rel=0.08)
    for name in ("aduConversion", "skNoise", "darkCurrent"):
        assert metrics[f"{name}_reason"].item() == ""
        assert 0 < value(metrics, f"{name}_err") < 0.1 * abs(value(metrics, name)) + 1e-3


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A clean raw image, σ/g = 0.4 after averaging 25 samples."""
    return measure(tmp_path_factory.mktemp("clean"), nrows=400, ncols=500, nskips=25, gain=10.0,
                   read_noise=20.0, dark_current=0.1, seed=11)


def test_clean_raw_image(clean):
    truth, metrics = clean
    assert_fit(metrics, truth)
    single = math.sqrt(truth.read_noise**2 + ROUNDING)
    assert value(metrics, "imgNoise") == pytest.approx(single, rel=0.03)
    assert int(metrics["nskips"]) == 25
    # pixVar: median of per-pixel variances of samples 2 … 24
    expected = single**2 * median_variance_factor(truth.nskips - 3)
    assert value(metrics, "pixVar") == pytest.approx(expected, rel=0.05)
    # clustVar adds the charge's variance g²λ to the readout's
    expected_cluster = (single**2 + truth.gain**2 * truth.dark_current) * median_variance_factor(
        truth.nskips - 3
    )
    assert value(metrics, "clustVar") == pytest.approx(expected_cluster, rel=0.05)
    assert value(metrics, "tailRatio") == pytest.approx(1, abs=0.5)
    assert abs(value(metrics, "dSdskip")) < 4 * value(metrics, "dSdskip_err")
    assert value(metrics, "fitChi2") < 2
    assert value(metrics, "pedestal") == pytest.approx(-truth.pedestal, abs=0.1)


def test_noise_falls_as_one_over_root_n(clean):
    truth, metrics = clean
    noise = metrics["noise_vs_n"]
    n = noise["nsamp"].values
    assert list(n) == [1, 2, 4, 8, 16, 25]
    # the 1-electron peaks widen the zero peak a little at small noise: 5% at most here
    expected = math.sqrt(truth.read_noise**2 + ROUNDING) / np.sqrt(n)
    np.testing.assert_allclose(noise.values, expected, rtol=0.05)


def test_entropy_of_average_image(clean):
    truth, metrics = clean
    # a Gaussian of σ ADU sampled on 1-ADU bins has entropy ln(σ√(2πe)); charge adds a little
    sigma = truth.read_noise / math.sqrt(truth.nskips)
    gaussian = math.log(sigma * math.sqrt(2 * math.pi * math.e))
    assert gaussian < value(metrics, "aveImgS") < gaussian + 0.6


def test_deep_image(tmp_path):
    truth, metrics = measure(tmp_path, nrows=300, ncols=400, nskips=100, gain=10.0,
                             read_noise=15.0, dark_current=0.1, seed=12)
    assert_fit(metrics, truth, gain=0.02)


def test_averaged_image(tmp_path):
    truth, metrics = measure(tmp_path, name="Avg_Img_1.fits", averaged=True, nrows=400, ncols=500,
                             nskips=16, gain=8.0, read_noise=10.0, dark_current=0.2, seed=13)
    assert_fit(metrics, truth)
    assert int(metrics["nskips"]) == 1
    for name in ("dSdskip", "pixVar", "clustVar"):
        assert np.isnan(value(metrics, name))
        assert "nskips = 1" in metrics[f"{name}_reason"].item()
    # the seed's rule for averaged files: imgNoise is the noise of the average
    assert value(metrics, "imgNoise") == pytest.approx(truth.read_noise / 4, rel=0.05)


@pytest.mark.parametrize("dark_current", [1.0, 0.01])
def test_high_and_low_dark_current(tmp_path, dark_current):
    truth, metrics = measure(tmp_path, nrows=400, ncols=500, nskips=16, gain=10.0,
                             read_noise=10.0, dark_current=dark_current, seed=14)
    assert_fit(metrics, truth)


def test_positive_polarity_with_override(tmp_path):
    truth, metrics = measure(tmp_path, read_polarity=1, polarity=1, nrows=300, ncols=400,
                             nskips=16, gain=10.0, read_noise=10.0, dark_current=0.2, seed=15)
    assert_fit(metrics, truth)


def test_wrong_polarity_does_not_give_a_gain(tmp_path):
    # charge raises the values but the seed's rule flips them: no peaks above the zero peak
    truth, metrics = measure(tmp_path, polarity=1, nrows=300, ncols=400, nskips=16, gain=10.0,
                             read_noise=10.0, dark_current=0.2, seed=15)
    gain = value(metrics, "aduConversion")
    assert np.isnan(gain) or gain == pytest.approx(truth.gain, rel=0.03)


def test_tracks(tmp_path):
    truth, metrics = measure(tmp_path, nrows=400, ncols=500, nskips=16, gain=10.0,
                             read_noise=10.0, dark_current=0.1, tracks=40, seed=16)
    assert value(metrics, "tailRatio") > 10
    assert value(metrics, "aduConversion") == pytest.approx(truth.gain, rel=0.03)


def test_charge_loss_gives_negative_entropy_slope(tmp_path):
    truth, metrics = measure(tmp_path, nrows=200, ncols=300, nskips=30, gain=10.0,
                             read_noise=4.0, dark_current=1.0, charge_loss=0.02, seed=17)
    assert value(metrics, "dSdskip") < -5 * value(metrics, "dSdskip_err")


def test_heavy_charge_loss_gain_right_or_missing(tmp_path):
    truth, metrics = measure(tmp_path, nrows=300, ncols=400, nskips=30, gain=10.0,
                             read_noise=15.0, dark_current=1.0, charge_loss=0.1, seed=18)
    gain = value(metrics, "aduConversion")
    if np.isnan(gain):
        assert metrics["aduConversion_reason"].item()
    else:
        assert gain == pytest.approx(truth.gain, rel=0.05)


def test_baseline_drift_with_row_median(tmp_path):
    truth, metrics = measure(tmp_path, baseline="row-median", nrows=400, ncols=500, nskips=16,
                             gain=10.0, read_noise=10.0, dark_current=0.1, drift=0.2, seed=19)
    assert_fit(metrics, truth)


def test_single_sample_image(tmp_path):
    truth, metrics = measure(tmp_path, nrows=100, ncols=200, nskips=1, gain=10.0,
                             read_noise=3.0, dark_current=0.1, seed=20)
    assert int(metrics["nskips"]) == 1
    for name in ("dSdskip", "pixVar", "clustVar"):
        assert np.isnan(value(metrics, name)) and metrics[f"{name}_reason"].item()
    assert value(metrics, "imgNoise") == pytest.approx(math.sqrt(9 + ROUNDING), rel=0.05)


@pytest.mark.parametrize("case", ["zero-noise", "constant"])
def test_degenerate_images_give_reasons(tmp_path, case):
    truth = {"zero-noise": dict(read_noise=0.0, dark_current=0.2),
             "constant": dict(read_noise=0.0, dark_current=0.0)}[case]
    _, metrics = measure(tmp_path, nrows=50, ncols=60, nskips=8, gain=10.0, seed=21, **truth)
    for name in ("skNoise", "aduConversion", "darkCurrent", "tailRatio"):
        if np.isnan(value(metrics, name)):
            assert metrics[f"{name}_reason"].item(), name
    assert np.isnan(value(metrics, "aduConversion")) or value(metrics, "aduConversion") == (
        pytest.approx(10, rel=0.02)
    )


def test_chunking_does_not_change_the_numbers(tmp_path):
    truth = Truth(nrows=120, ncols=200, nskips=20, gain=10.0, read_noise=10.0, seed=22, tracks=3)
    path = write_image(tmp_path / "Img_1.fits", truth)
    whole = image_metrics(open_image(path, chunks={"row": 120}))
    for rows in (7, 33):
        chunked = image_metrics(open_image(path, chunks={"row": rows}))
        for name in whole.data_vars:
            np.testing.assert_array_equal(chunked[name].values, whole[name].values, err_msg=name)


def test_numpy_backed_array_gives_the_same_numbers(tmp_path):
    truth = Truth(nrows=60, ncols=100, nskips=10, seed=23)
    path = write_image(tmp_path / "Img_1.fits", truth)
    lazy = open_image(path)
    np.testing.assert_array_equal(
        image_metrics(lazy.compute())["aduConversion"], image_metrics(lazy)["aduConversion"]
    )


@pytest.mark.real_data
def test_real_damicm_image(real_data):
    path = real_data / "damicm_avg_Image_5_Low_Temp_109_20250807_170213_15.fz"
    metrics = image_metrics(open_image(path))
    assert list(metrics["amp"].values) == ["CCD_A", "CCD_B", "CCD_D", "CCD_C"]
    # the peaks of this file are 1.35 ADU apart (a 0.05-ADU histogram shows them with empty
    # valleys between); its README's "~2.7 ADU" read-off took every other peak
    gain = metrics["aduConversion"].values
    assert np.all((gain > 1.2) & (gain < 1.5)), gain
    assert np.all(metrics["aduConversion_err"].values < 0.01 * gain)
    assert np.all(metrics["resolution"].values < 0.3), metrics["resolution"].values
    assert np.all(metrics["fitChi2"].values < 5)  # a real detector: peaks not quite Gaussian
    # an averaged file's imgNoise is the noise of its average: the zero peak's width
    np.testing.assert_allclose(metrics["imgNoise"].values, metrics["skNoise"].values, rtol=0.1)


@pytest.mark.parametrize("n", [1, 2, 7, 8, 100_001, 300_000])
def test_median_equals_nanmedian(n):
    from skipperdask.metrics.measurements import _median

    values = np.random.default_rng(n).chisquare(98, n).astype(np.float32)
    values[1::5] = np.nan
    assert _median(values) == pytest.approx(float(np.nanmedian(values)), rel=1e-6)
    assert np.isnan(_median(np.full(3, np.nan)))


# ---------------------------------------------------------------- the real DAMIC-M image

DAMICM = "damicm_avg_Image_5_Low_Temp_109_20250807_170213_15.fz"


@pytest.mark.real_data
def test_real_damicm_per_ccd(real_data):
    """The real DAMIC-M averaged image (4 CCDs, a dense Fe-55 exposure): its X-ray clusters
    masked, each CCD's single-electron peaks are 1.33-1.40 ADU apart (a 0.05-ADU histogram
    shows them), the fit holds (χ²ᵣ < 2) and the tail ratio flags the clusters."""
    metrics = image_metrics(open_image(real_data / DAMICM))
    for amp in metrics.amp.values:
        ccd = metrics.sel(amp=amp)
        print(amp, {name: round(float(ccd[name]), 4) for name in (
            "aduConversion", "aduConversion_err", "skNoise", "darkCurrent", "fitChi2",
            "tailRatio", "maskedFraction", "clusters", "hotColumns", "baselineDrift")})
        assert 1.3 < value(ccd, "aduConversion") < 1.42, amp
        assert value(ccd, "aduConversion_err") < 0.005
        assert 0.15 < value(ccd, "skNoise") / value(ccd, "aduConversion") < 0.18
        assert 0.6 < value(ccd, "darkCurrent") < 0.8
        assert value(ccd, "fitChi2") < 2
        assert value(ccd, "tailRatio") > 100
        assert 0.05 < value(ccd, "maskedFraction") < 0.2
        assert value(ccd, "clusters") > 50
