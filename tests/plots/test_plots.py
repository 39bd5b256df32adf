"""The diagnostic figures and the campaign report (issue 8): files written, and the data drawn
are the metrics' and the catalogue's."""

import html.parser
import os

import numpy as np
import pytest
import xarray as xr

from skipperdask import image_metrics, open_image
from skipperdask.cli import main
from skipperdask.config import Options
from skipperdask.metrics import analyse_image
from skipperdask.plots import (
    distributions_figure,
    flagged_images,
    image_figure,
    inspect_image,
    keyword_unit,
    metric_figure,
    versus_figure,
    write_report,
)
from skipperdask.simulate import Truth, simulate_campaign, write_image

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# small images whose single-electron peaks are resolved (σ/g ≈ 0.1 after 16 samples)
SMALL = {"nrows": 48, "ncols": 96, "nskips": 16, "gain": 10.0, "read_noise": 4.0,
         "dark_current": 0.1}


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG_MAGIC


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def axes(figure, gid):
    (found,) = [ax for ax in figure.axes if ax.get_gid() == gid]
    return found


def line(ax, gid):
    (found,) = [item for item in ax.get_lines() if item.get_gid() == gid]
    return found


def texts(ax):
    return " ".join(t.get_text() for t in ax.texts)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """A two-amplifier image with a track, its analyses and its metrics."""
    path = write_image(tmp_path_factory.mktemp("image") / "Img_1.fits",
                       Truth(**SMALL, tracks=1, namps=2, seed=3))
    analyses = analyse_image(open_image(path), Options.from_config())
    return path, analyses, image_metrics(open_image(path))


@pytest.fixture(scope="module")
def campaign(client, tmp_path_factory):
    """A catalogue of four simulated images of two amplifiers and one file that fails."""
    from skipperdask.campaign import process

    directory = tmp_path_factory.mktemp("campaign")
    paths = [str(p) for p in simulate_campaign(directory, 4, **SMALL, tracks=1, namps=2)]
    broken = directory / "Img_<5>.fits"  # a name that must be escaped in HTML
    broken.write_text("not a FITS file")
    paths.append(str(broken))
    catalogue = directory / "catalogue.zarr"
    process(paths, catalogue, client=client, progress=False)
    return catalogue, xr.open_zarr(catalogue).load()


# --------------------------------------------------------------------------- inspect

def test_inspect_writes_one_png_per_amplifier(image, tmp_path):
    path, _, _ = image
    written = inspect_image(path, output=tmp_path / "figure.png")
    assert written == [str(tmp_path / "figure_AMP1.png"), str(tmp_path / "figure_AMP2.png")]
    assert all(is_png(p) for p in written)


def test_inspect_one_amplifier_and_unknown_amplifier(image, tmp_path, capsys):
    path, _, _ = image
    assert main(["inspect", str(path), "--amp", "AMP2", "-o", str(tmp_path / "one.png")]) == 0
    assert is_png(tmp_path / "one.png")
    assert capsys.readouterr().out.strip() == str(tmp_path / "one.png")
    assert sorted(os.listdir(tmp_path)) == ["one.png"]
    with pytest.raises(ValueError, match="no amplifier 'AMP9'; it has AMP1, AMP2"):
        inspect_image(path, amp="AMP9")


def test_curves_drawn_are_the_metrics(image):
    _, analyses, metrics = image
    m = metrics.isel(amp=1)
    figure = image_figure(analyses[1], title="Img_1.fits AMP2")

    peaks = axes(figure, "peaks-fit")
    drawn = peaks.skipperdask_fit
    for key, name in (("x0", "pedestal"), ("sigma", "skNoise"), ("gain", "aduConversion"),
                      ("lam", "darkCurrent")):
        assert drawn[key] == pytest.approx(float(m[name]), rel=1e-12), key
    model = line(peaks, "model")
    x, y = model.get_xdata(), model.get_ydata()
    assert x[np.argmax(y)] == pytest.approx(drawn["x0"], abs=0.1)  # the 0 e⁻ peak
    # the curve holds the fitted pixels: the model per bin summed over the window
    fit = analyses[1].peaks_fit
    per_bin = y.sum() * np.diff(x).mean() / np.diff(fit.edges).mean()
    assert per_bin == pytest.approx(fit.counts.sum(), rel=0.02)
    legend = peaks.get_legend().get_texts()[1].get_text()
    assert f"{float(m['aduConversion']):.3f}"[:4] in legend and "ADU/e⁻" in legend

    entropy = axes(figure, "entropy")
    assert 1000 * entropy.skipperdask_fit["slope"] == pytest.approx(float(m["dSdskip"]))
    fitted = line(entropy, "entropy-line")
    expected = (entropy.skipperdask_fit["intercept"]
                + entropy.skipperdask_fit["slope"] * fitted.get_xdata())
    np.testing.assert_allclose(fitted.get_ydata(), expected)
    np.testing.assert_allclose(line(entropy, "entropies").get_ydata(), analyses[1].entropies)

    noise = axes(figure, "noise-vs-n")
    np.testing.assert_allclose(noise.skipperdask_fit["sigma"], m["noise_vs_n"].values)
    np.testing.assert_allclose(noise.skipperdask_fit["n"], m["nsamp"].values)
    ideal = line(noise, "ideal")
    np.testing.assert_allclose(ideal.get_ydata() * np.sqrt(ideal.get_xdata()),
                               float(m["noise_vs_n"][0]))
    assert noise.get_xscale() == noise.get_yscale() == "log"

    samples = axes(figure, "sample-noise")
    assert line(samples, "imgNoise").get_ydata()[0] == pytest.approx(float(m["imgNoise"]))
    first = axes(figure, "sample-noise-fit").skipperdask_fit
    assert first["sigma"] == pytest.approx(samples.skipperdask_fit["sigma"][0])


def test_missing_metrics_say_why_in_the_panel(tmp_path):
    one_sample = write_image(tmp_path / "Img_1.fits", Truth(nrows=40, ncols=60, nskips=1))
    (analysis,) = analyse_image(open_image(one_sample), Options.from_config())
    figure = image_figure(analysis)
    reason = analysis.reasons["dSdskip"]
    assert reason and reason in texts(axes(figure, "entropy"))
    assert "one sample per pixel" in texts(axes(figure, "noise-vs-n"))

    # σ/g = 10/10 after 4 samples of 20 ADU: the peaks are not resolved
    merged = write_image(tmp_path / "Img_2.fits",
                         Truth(nrows=40, ncols=60, nskips=4, read_noise=20.0, gain=10.0))
    (analysis,) = analyse_image(open_image(merged), Options.from_config())
    reason = analysis.reasons["aduConversion"]
    assert reason
    peaks = axes(image_figure(analysis), "peaks-fit")
    assert reason in texts(peaks)
    assert not hasattr(peaks, "skipperdask_fit")


# --------------------------------------------------------------------------- report

class _Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_report_references_existing_figures_and_lists_failures(campaign, tmp_path):
    catalogue, ds = campaign
    index = write_report(catalogue, tmp_path / "report", versus="VDD")
    assert index == str(tmp_path / "report" / "index.html")
    page = read(index)
    parser = _Images()
    parser.feed(page)
    assert len(parser.sources) == 10  # 8 against time, distributions, against VDD
    for source in parser.sources:
        assert not os.path.isabs(source)
        assert is_png(tmp_path / "report" / source), source
    (failed,) = np.flatnonzero(ds["status"].values == "failed")
    error = str(ds["error"].values[failed])
    assert "not a FITS file" in error
    failures = page[page.index('<h2 id="failed">'):page.index('<h2 id="flagged">')]
    assert html.escape(error) in failures
    assert "Img_&lt;5&gt;.fits" in failures and "Img_<5>" not in page
    assert "<td>images</td><td>5</td>" in page and "<td>failed</td><td>1</td>" in page


def test_report_points_are_the_catalogue_values(campaign):
    _, ds = campaign
    ok = ds["status"].values == "ok"
    figure = metric_figure(ds, "skNoise")
    for amp in ("AMP1", "AMP2"):
        drawn = line(figure.axes[0], f"skNoise:{amp}")
        np.testing.assert_array_equal(drawn.get_ydata(), ds["skNoise"].sel(amp=amp).values[ok])
    figure = metric_figure(ds, ["pixVar", "clustVar"])
    drawn = line(figure.axes[0], "clustVar:AMP1")
    np.testing.assert_array_equal(drawn.get_ydata(), ds["clustVar"].sel(amp="AMP1").values[ok])

    figure = versus_figure(ds, "VDD")
    drawn = line(axes(figure, "versus:darkCurrent"), "darkCurrent:AMP2")
    vdd = ds["VDD"].values if "amp" not in ds["VDD"].dims else ds["VDD"].sel(amp="AMP2").values
    np.testing.assert_array_equal(drawn.get_xdata(), vdd[ok])
    np.testing.assert_array_equal(drawn.get_ydata(), ds["darkCurrent"].sel(amp="AMP2").values[ok])


def test_images_without_times_are_plotted_against_their_index(campaign):
    _, ds = campaign
    ok = ds["status"].values == "ok"
    ax = metric_figure(ds.drop_vars("time"), "imgNoise").axes[0]
    assert ax.get_xlabel() == "image index"
    np.testing.assert_array_equal(line(ax, "imgNoise:AMP1").get_xdata(), np.flatnonzero(ok))


def test_flagged_images_are_ringed_and_tabled(campaign, tmp_path):
    catalogue, ds = campaign
    ok = np.flatnonzero(ds["status"].values == "ok")
    # the simulated tracks give tailRatio ≫ 1: every entry beyond a limit of 1
    flags = flagged_images(ds, tail_ratio_limit=1.0)
    assert set(flags) == {(int(i), amp) for i in ok for amp in ("AMP1", "AMP2")}
    assert all(any(w.startswith("tailRatio = ") for w in why) for why in flags.values())
    assert flagged_images(ds, tail_ratio_limit=np.inf, dsdskip_limit=-np.inf) == {}

    ringed = line(metric_figure(ds, "tailRatio", flags=flags).axes[0], "flagged:tailRatio:AMP1")
    np.testing.assert_array_equal(ringed.get_ydata(), ds["tailRatio"].sel(amp="AMP1").values[ok])

    page = read(write_report(catalogue, tmp_path, tail_ratio_limit=1.0))
    flagged = page[page.index('<h2 id="flagged">'):]
    assert flagged.count("<tr><td>") == len(flags)
    assert "tailRatio = " in flagged and "&gt; 1" in flagged


def test_missing_header_keyword_is_a_clear_error(campaign, tmp_path, capsys):
    catalogue, _ = campaign
    with pytest.raises(ValueError, match="'NOPE' is not in the catalogue; its keywords: .*VDD"):
        write_report(catalogue, tmp_path / "report", versus="NOPE")
    assert not (tmp_path / "report").exists()
    assert main(["report", str(catalogue), "-o", str(tmp_path / "r"), "--versus", "NOPE"]) == 2
    assert "skipperdask report: header keyword 'NOPE' is not in the catalogue" in (
        capsys.readouterr().err)


def test_report_command_prints_the_page(campaign, tmp_path, capsys):
    catalogue, _ = campaign
    assert main(["report", str(catalogue), "-o", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.strip() == f"Report: {(tmp_path / 'r' / 'index.html').as_uri()}"


def test_report_on_a_folder_that_is_no_catalogue_says_so(tmp_path, capsys):
    """Issue 14: it said "No group found in store … at path ''"."""
    (tmp_path / "notes.txt").write_text("not a catalogue")
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}: not a skipperdask catalogue" in err
    assert len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- issue 14


def test_time_plots_join_points_in_time_order(campaign):
    _, ds = campaign
    shuffled = ds.isel(image=np.argsort(ds["time"].values)[::-1])  # latest first
    ax = metric_figure(shuffled, "skNoise").axes[0]
    x = line(ax, "skNoise:AMP1").get_xdata()
    assert len(x) > 1 and np.all(np.diff(np.asarray(x, "datetime64[ns]")) >= np.timedelta64(0))


def test_one_image_gets_an_axis_of_hours_not_years(campaign):
    _, ds = campaign
    one = ds.isel(image=[int(np.flatnonzero(ds["status"].values == "ok")[0])])
    ax = metric_figure(one, "skNoise").axes[0]
    low, high = ax.get_xlim()  # matplotlib's days
    assert 0 < high - low <= 2 / 24 + 1e-9


def test_tail_ratio_is_on_a_log_scale(campaign):
    _, ds = campaign
    ax = metric_figure(ds, "tailRatio", limit=10).axes[0]
    assert ax.get_yscale() in ("log", "symlog")


def test_histograms_are_outlines_with_a_legend(campaign):
    _, ds = campaign
    figure = distributions_figure(ds)
    for ax in figure.axes:
        if ax.patches:
            assert all(not patch.get_fill() for patch in ax.patches), ax.get_gid()
            assert ax.get_legend() is not None, ax.get_gid()


def test_versus_axis_has_the_unit_of_the_header_comment(tmp_path, campaign):
    from astropy.io import fits

    _, ds = campaign
    path = tmp_path / "Img_1.fits"
    primary = fits.PrimaryHDU()
    primary.header["VDD"] = (-22.0, "[V] output drain voltage")
    fits.HDUList([primary, fits.ImageHDU(np.zeros((4, 4), np.float32))]).writeto(path)
    one = ds.isel(image=[0]).assign(path=("image", [str(path)]),
                                    status=("image", ["ok"]))
    assert keyword_unit(one, "VDD") == "V"
    figure = versus_figure(ds, "VDD", unit="V")
    assert figure.axes[0].get_xlabel() == "VDD (V)"
    assert versus_figure(ds, "VDD").axes[0].get_xlabel() == "VDD (no unit in the header)"


def test_report_reads_in_chromium(campaign, tmp_path, browser):
    """Issue 14: the report in a real browser, as a physicist opens it: no console error,
    every figure loaded, the failed file's escaped name shown as text."""
    from tests.browser import DEEP_TEXT, console_errors, screenshot, wait_for

    catalogue, _ = campaign
    index = write_report(catalogue, tmp_path / "report", versus="VDD")
    browser.get(f"file://{index}")
    assert browser.title == "skipperdask campaign report"
    images = wait_for(browser, "return Array.from(document.images).map(i => "
                      "[i.getAttribute('src'), i.complete, i.naturalWidth])",
                      lambda found: found and all(complete for _, complete, _ in found))
    assert len(images) == len(os.listdir(tmp_path / "report")) - 1  # every PNG, shown
    assert all(width >= 400 for _, _, width in images), images
    text = wait_for(browser, DEEP_TEXT)
    assert "Img_<5>.fits" in text and "Failed files (1)" in text
    assert not console_errors(browser)
    screenshot(browser, tmp_path, "report.png")
