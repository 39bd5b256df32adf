"""``inspect`` on the real DAMIC-M averaged file (issue 14): the curve drawn is the one the
numbers come from, the Gaussian has the histogram's height, every panel its own letter, and
no panel of a single point."""

import numpy as np
import pytest

from skipperdask.config import Options
from skipperdask.io import open_image
from skipperdask.metrics import analyse_image
from skipperdask.plots import image_figure

DAMICM = "damicm_avg_Image_5_Low_Temp_109_20250807_170213_15.fz"


def axes(figure, gid):
    (found,) = [ax for ax in figure.axes if ax.get_gid() == gid]
    return found


def gids(ax):
    return {item.get_gid() for item in [*ax.get_lines(), *ax.collections, *ax.containers]}


@pytest.fixture(scope="module")
def figure(real_data):
    analyses = analyse_image(open_image(real_data / DAMICM), Options.from_config())
    analysis = analyses[0]  # CCD_A: resolved peaks, accepted with free heights
    assert analysis.peaks_fit.method == "free-heights"
    return analysis, image_figure(analysis, title="CCD_A")


def test_the_free_heights_curve_is_drawn_when_the_numbers_come_from_it(figure):
    analysis, drawn = figure
    peaks = axes(drawn, "peaks-fit")
    assert "heights" in peaks.skipperdask_fit
    assert "free heights" in peaks.get_legend().get_texts()[1].get_text()
    (residuals,) = axes(drawn, "peaks-residuals").patches[:1]  # the pulls' stairs
    pulls = residuals.get_data().values
    fit = analysis.peaks_fit
    inside = fit.counts > 20  # bins with counts to judge: the Poisson curve was 10-20 sigma off
    assert np.abs(pulls[inside]).max() < 6


def test_the_gaussian_has_the_histograms_height(figure):
    _, drawn = figure
    panel = axes(drawn, "sample-noise-fit")
    (gaussian,) = [item for item in panel.get_lines() if item.get_gid() == "gaussian"]
    (histogram,) = [p for p in panel.patches if p.get_gid() == "data"]
    peak = histogram.get_data().values.max()
    assert gaussian.get_ydata().max() == pytest.approx(peak, rel=0.1)


def test_each_panel_has_its_own_letter_and_none_holds_one_point(figure):
    _, drawn = figure
    letters = [ax.get_title(loc="left")[:3] for ax in drawn.axes if ax.get_title(loc="left")]
    assert len(letters) == len(set(letters)) == 6
    for gid, point in (("entropy", "entropies"), ("noise-vs-n", "noise"),
                       ("sample-noise", "sigmas")):
        panel = axes(drawn, gid)
        assert point not in gids(panel), gid
        assert "one sample per pixel" in " ".join(t.get_text() for t in panel.texts)
