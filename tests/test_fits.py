"""The fits against known truth: simulated pixel values, and the real DAMIC-M averaged image."""

import numpy as np
import pytest
from scipy import stats

from skipperdask.fits import (
    fit_gauss_poisson,
    fit_gaussian,
    fit_line,
    fit_peaks,
    gauss_poisson_counts,
    tail_ratio,
)

DAMICM = "damicm_avg_Image_5_Low_Temp_109_20250807_170213_15.fz"


def simulate(n, lam, gain, sigma, *, x0=100.3, seed=0, tracks=0.0, loss=0.0):
    """Values x0 + g·q + Normal(0, σ), q ~ Poisson(λ); ``tracks``: that fraction of pixels
    holds 20-2000 electrons (uniform); ``loss``: that fraction of charged pixels keeps a
    uniform fraction of its charge (a continuum between its peak and the zero peak)."""
    rng = np.random.default_rng(seed)
    charge = rng.poisson(lam, n).astype(float)
    if tracks:
        hit = rng.random(n) < tracks
        charge[hit] = rng.integers(20, 2001, hit.sum())
    if loss:
        smeared = (charge > 0) & (rng.random(n) < loss)
        charge[smeared] *= rng.random(smeared.sum())
    return x0 + gain * charge + rng.normal(0.0, sigma, n)


def assert_truth(fit, lam, gain, sigma, *, gain_tol=0.02):
    """Gain within 2 %, σ within 5 %, λ within 5 % or 3 standard errors; no reason given."""
    assert fit.reasons == {}
    assert fit.gain == pytest.approx(gain, rel=gain_tol)
    assert fit.sigma == pytest.approx(sigma, rel=0.05)
    assert abs(fit.lam - lam) < max(0.05 * lam, 3 * fit.lam_err)
    # the errors are real: the truth lies within 5 of them
    assert abs(fit.gain - gain) < 5 * fit.gain_err
    assert abs(fit.sigma - sigma) < 5 * fit.sigma_err


# ---------------------------------------------------------------- the model


def test_model_counts_integrate_over_bins():
    edges = np.arange(90.5, 140.5, 1.0)
    counts = gauss_poisson_counts(edges, 1000.0, 100.2, 0.3, 3.0, 1.0, kmax=9)
    # everything is inside these edges
    assert counts.sum() == pytest.approx(1000.0 * stats.poisson.cdf(9, 1.0), rel=1e-9)
    # σ ≪ bin: the zero peak's bin holds Pois(0)·P(|x - 100.2| within the bin), not a density
    zero_bin = np.searchsorted(edges, 100.2) - 1
    inside = stats.norm.cdf(0.3 / 0.3) - stats.norm.cdf(-0.7 / 0.3)
    assert counts[zero_bin] == pytest.approx(1000 * np.exp(-1) * inside, rel=1e-3)


# ---------------------------------------------------------------- Gaussian-smeared Poisson


@pytest.mark.parametrize("resolution", [0.1, 0.15, 0.25, 0.4])
def test_gain_from_resolved_to_barely_resolved_peaks(resolution):
    values = simulate(300_000, 0.3, 10.0, 10.0 * resolution, seed=1)
    assert_truth(fit_gauss_poisson(values), 0.3, 10.0, 10.0 * resolution)


@pytest.mark.parametrize(
    ("n", "lam", "gain", "sigma"),
    [
        (1_000_000, 0.01, 3.0, 0.6),  # very low dark current; σ = 0.6 of the 1-ADU bin
        (200_000, 1.0, 3.0, 0.6),
        (200_000, 3.0, 3.0, 0.45),
        (300_000, 0.3, 3.0, 0.3),  # σ = 0.3 of the bin
        (200_000, 0.2, 200.0, 30.0),  # large gain, σ = 30 bins
        (200_000, 0.5, 200.0, 50.0),
        (200_000, 0.5, 7.37, 1.1),  # gain not a multiple of the bin
    ],
)
def test_dark_current_bin_width_and_gain_ranges(n, lam, gain, sigma):
    fit = fit_gauss_poisson(simulate(n, lam, gain, sigma, seed=2))
    assert_truth(fit, lam, gain, sigma)
    assert fit.method == "poisson"
    assert fit.chi2_reduced < 2
    assert fit.counts.size + 1 == fit.edges.size


def test_finer_bins_than_one_adu():
    fit = fit_gauss_poisson(simulate(200_000, 0.7, 1.35, 0.21, seed=3), bin_width=0.05)
    assert_truth(fit, 0.7, 1.35, 0.21)
    assert np.diff(fit.edges)[0] == pytest.approx(0.05)


def test_unresolved_peaks_give_no_gain():
    fit = fit_gauss_poisson(simulate(300_000, 0.3, 10.0, 7.0, seed=4))
    assert np.isnan(fit.gain) and np.isnan(fit.lam)
    assert "not resolved" in fit.reasons["gain"]
    assert "not resolved" in fit.reasons["lam"]


def test_too_few_charged_pixels_give_no_gain():
    fit = fit_gauss_poisson(simulate(20_000, 0.0005, 10.0, 1.0, seed=5))
    assert np.isnan(fit.gain)
    assert "not resolved" in fit.reasons["gain"]
    assert fit.sigma == pytest.approx(1.0, rel=0.05)  # the noise is still measured


def test_tracks_do_not_move_the_gain_and_raise_the_tail_ratio():
    values = simulate(300_000, 0.1, 10.0, 1.5, seed=6, tracks=0.01)
    fit = fit_gauss_poisson(values)
    assert_truth(fit, 0.1, 10.0, 1.5)
    ratio, reason = tail_ratio(fit, values)
    assert reason == ""
    assert ratio > 100  # 3000 track pixels against 9.5 expected


def test_clean_tail_ratio_is_one_within_its_poisson_error():
    values = simulate(1_000_000, 0.05, 10.0, 1.5, seed=7)
    fit = fit_gauss_poisson(values)
    ratio, reason = tail_ratio(fit, values)
    expected = values.size * stats.norm.sf(4)
    assert reason == ""
    assert abs(ratio - 1) < 3 / np.sqrt(expected)


@pytest.mark.parametrize(
    ("lam", "gain", "sigma", "loss"),
    [(0.5, 10.0, 1.0, 0.3), (1.0, 3.0, 0.6, 0.3), (0.3, 10.0, 2.5, 0.6), (3.0, 10.0, 1.5, 0.6)],
)
def test_charge_loss_gives_the_right_gain_or_none(lam, gain, sigma, loss):
    fit = fit_gauss_poisson(simulate(200_000, lam, gain, sigma, seed=8, loss=loss))
    if np.isnan(fit.gain):
        assert fit.reasons["gain"]
    else:
        assert fit.gain == pytest.approx(gain, rel=0.05)
        assert fit.method == "free-heights"  # Poisson heights cannot hold the continuum


def test_errors_are_honest():
    """Over 30 small images, the gain's spread matches its reported error within a factor 2."""
    fits = [fit_gauss_poisson(simulate(20_000, 0.5, 10.0, 1.5, seed=100 + i)) for i in range(30)]
    gains = np.array([f.gain for f in fits])
    errors = np.array([f.gain_err for f in fits])
    assert np.all(np.isfinite(gains))
    spread = gains.std(ddof=1)
    assert 0.5 < spread / errors.mean() < 2.0
    lams = np.array([f.lam for f in fits])
    assert 0.5 < lams.std(ddof=1) / np.mean([f.lam_err for f in fits]) < 2.0


def test_deterministic():
    values = simulate(100_000, 0.4, 5.0, 0.8, seed=9)
    first, second = fit_gauss_poisson(values), fit_gauss_poisson(values.copy())
    assert (first.gain, first.sigma, first.lam) == (second.gain, second.sigma, second.lam)


def test_fallback_measures_sigma_and_lambda():
    fit = fit_gauss_poisson(simulate(200_000, 0.5, 10.0, 1.0, seed=10), method="fallback")
    assert fit.method == "fallback"
    assert fit.sigma == pytest.approx(1.0, rel=0.1)
    assert fit.lam == pytest.approx(0.5, rel=0.1)
    assert fit.gain == pytest.approx(10.0, rel=0.02)


def test_fallback_without_peaks_does_not_crash():
    fit = fit_peaks(np.random.default_rng(11).uniform(0, 1000, 5000))
    assert np.isnan(fit.gain)
    assert fit.reasons["gain"]


@pytest.mark.parametrize(
    ("values", "key", "words"),
    [
        (np.array([]), "sigma", "no finite"),
        (np.full(1000, np.nan), "sigma", "no finite"),
        (np.arange(50.0), "sigma", "too few"),
        (np.full(10_000, 7.0), "sigma", "constant"),
        # zero noise: every value exactly on x0 + g·k
        (100 + 3.0 * np.random.default_rng(12).poisson(0.5, 10_000), "sigma", "zero noise"),
    ],
)
def test_degenerate_inputs_are_missing_with_reasons(values, key, words):
    fit = fit_gauss_poisson(values)
    assert np.isnan(fit.sigma) and np.isnan(fit.gain) and np.isnan(fit.lam)
    assert words in fit.reasons[key]
    assert "gain" in fit.reasons and "lam" in fit.reasons
    ratio, reason = tail_ratio(fit, values)
    assert np.isnan(ratio) and reason


# ---------------------------------------------------------------- Gaussian and line


@pytest.mark.parametrize("sigma", [0.4, 2.0, 25.0])
def test_fit_gaussian_against_truth(sigma):
    rng = np.random.default_rng(13)
    values = rng.normal(5.3, sigma, 100_000)
    edges = np.arange(5.3 - 4 * sigma - 0.5, 5.3 + 4 * sigma + 1, 1.0)
    counts, _ = np.histogram(values, edges)
    fit = fit_gaussian(counts, edges)
    assert fit.reason == ""
    assert abs(fit.mu - 5.3) < 4 * fit.mu_err
    assert abs(fit.sigma - sigma) < 4 * fit.sigma_err
    assert fit.sigma == pytest.approx(sigma, rel=0.02)
    assert fit.amplitude == pytest.approx(counts.sum(), rel=0.01)
    assert fit.chi2_reduced < 2


@pytest.mark.parametrize(
    ("counts", "edges", "words"),
    [
        ([], [0.0], "fewer than 3"),
        ([5.0], [0.0, 1.0], "fewer than 3"),
        ([0.0, 0.0, 0.0], [0.0, 1.0, 2.0, 3.0], "empty"),
        ([0.0, 100.0, 0.0], [0.0, 1.0, 2.0, 3.0], "one bin"),
    ],
)
def test_fit_gaussian_failures(counts, edges, words):
    fit = fit_gaussian(counts, edges)
    assert np.isnan(fit.sigma) and words in fit.reason


def test_fit_line_against_truth():
    rng = np.random.default_rng(14)
    x = np.arange(30.0)
    slopes, errors = [], []
    for _ in range(200):
        line = fit_line(x, -0.7 * x + 4 + rng.normal(0, 0.5, x.size))
        slopes.append(line.slope)
        errors.append(line.slope_err)
    # the standard error is the spread of the slope: 0.5 / sqrt(Σ (x - x̄)²)
    true_error = 0.5 / np.sqrt(np.sum((x - x.mean()) ** 2))
    assert np.mean(slopes) == pytest.approx(-0.7, abs=3 * true_error / np.sqrt(200))
    assert np.mean(errors) == pytest.approx(true_error, rel=0.05)
    assert np.std(slopes) == pytest.approx(true_error, rel=0.15)


def test_fit_line_needs_three_points():
    line = fit_line([1.0, 2.0], [3.0, 4.0])
    assert np.isnan(line.slope) and "fewer than 3" in line.reason
    assert "equal" in fit_line([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]).reason


# ---------------------------------------------------------------- real data


@pytest.mark.real_data
def test_real_damicm_averaged_image(real_data):
    from astropy.io import fits as fitsio

    with fitsio.open(real_data / DAMICM) as hdus:
        images = {hdu.name: np.asarray(hdu.data, dtype=float).ravel() for hdu in hdus[1:5]}
    for name, values in images.items():
        # the peaks are 1.35 ADU apart and 0.21 ADU wide: bins of 0.05 ADU resolve them
        fit = fit_gauss_poisson(values, bin_width=0.05)
        print(f"{name}: gain {fit.gain:.4f} ± {fit.gain_err:.4f} ADU/e-, sigma {fit.sigma:.4f} "
              f"± {fit.sigma_err:.4f} ADU ({fit.sigma / fit.gain:.3f} e-), lambda {fit.lam:.4f} "
              f"± {fit.lam_err:.4f}, chi2 {fit.chi2_reduced:.2f}, {fit.method}")
        assert fit.reasons == {}, name
        assert 1.0 < fit.gain < 5.0
        assert fit.sigma / fit.gain < 0.25
        assert 0.3 < fit.lam < 1.5
        assert fit.chi2_reduced < 2
        ratio, _ = tail_ratio(fit, values)
        assert ratio > 10  # X-ray clusters of the Fe-55 source
        # 1-ADU bins cannot resolve 0.21-ADU peaks 1.35 ADU apart: no number rather than a wrong one
        coarse = fit_gauss_poisson(values, bin_width=1.0)
        assert np.isnan(coarse.gain) or coarse.gain == pytest.approx(fit.gain, rel=0.02)
