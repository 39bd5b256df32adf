"""The polarity: option > header > name > data, decided per amplifier; flipping the statistics
equals computing them with the other polarity; and an internal failure stays in its step."""

import logging

import numpy as np
import pytest
import xarray as xr

from skipperdask import fitting, image_metrics, open_image
from skipperdask.catalogue import Catalogue, ImageRecord, format_csv
from skipperdask.io import scan_file
from skipperdask.simulate import Truth, write_image
from skipperdask.statistics import plan_statistics, read_chunk_statistics

SHAPE = {"nrows": 64, "ncols": 128}


def statistics(path, polarity, baseline="none"):
    layout = scan_file(path)
    amp = layout.amps[0]
    plan = plan_statistics(amp.nrows, amp.ncols, amp.nskips, polarity, baseline=baseline)
    return read_chunk_statistics(amp, 0, amp.nrows, plan)


def assert_close(a, b):
    # different summation orders: a few ulps relative, never bit equality
    np.testing.assert_allclose(a, b, rtol=4 * np.finfo(float).eps, atol=0)


@pytest.mark.parametrize(
    ("name", "truth", "baseline"),
    [
        ("Img_1.fits", Truth(**SHAPE, nskips=16, tracks=2, seed=1), "none"),
        ("Img_2.fits", Truth(**SHAPE, nskips=16, drift=0.3, seed=2), "row-median"),
        ("Img_3.fits", Truth(**SHAPE, nskips=8, dtype="float32", seed=3), "none"),
        ("Img_Avg_4.fits", Truth(**SHAPE, nskips=16, averaged=True, seed=4), "none"),
    ],
    ids=["integers", "integers-row-median", "float-samples", "averaged"],
)
def test_flipped_equals_the_other_polarity(tmp_path, name, truth, baseline):
    path = write_image(tmp_path / name, truth)
    flipped = statistics(path, -1, baseline).flipped()
    direct = statistics(path, 1, baseline)
    assert flipped.plan == direct.plan
    assert_close(flipped.average, direct.average)
    assert_close(flipped.average_values.values, direct.average_values.values)
    np.testing.assert_array_equal(flipped.average_values.counts, direct.average_values.counts)
    assert_close(flipped.partial_averages, direct.partial_averages)
    np.testing.assert_array_equal(flipped.pixel_variance, direct.pixel_variance)
    np.testing.assert_array_equal(flipped.cluster_variance, direct.cluster_variance)
    assert flipped.integer_valued == direct.integer_valued
    for ours, theirs in zip(flipped.histograms, direct.histograms, strict=True):
        if direct.integer_valued or direct.plan.nskips == 1:  # exact
            np.testing.assert_array_equal(ours.values, theirs.values)
            np.testing.assert_array_equal(ours.counts, theirs.counts)
        else:  # only values exactly on a bin edge may move one bin
            assert ours.total == theirs.total
            assert np.abs(np.cumsum(ours.dense(-10**6, 10**6))
                          - np.cumsum(theirs.dense(-10**6, 10**6))).max() <= 0.01 * ours.total


def decided(tmp_path, name, truth, **options):
    path = write_image(tmp_path / name, truth)
    ds = image_metrics(open_image(path), **options).isel(amp=0)
    return int(ds.polarity), ds.polarity_source.item(), ds


@pytest.mark.parametrize(
    ("truth", "expected"),
    [
        # raw images, charge lowering the value: dark current, tracks, λ = 5 e-/pixel
        (Truth(**SHAPE, dark_current=0.1, seed=1), (-1, "data")),
        (Truth(**SHAPE, dark_current=0.001, tracks=4, seed=2), (-1, "data")),
        (Truth(nrows=200, ncols=200, nskips=4, dark_current=5.0, seed=3), (-1, "data")),
        # the same with charge raising the value: the data say so
        (Truth(**SHAPE, dark_current=0.1, polarity=1, seed=4), (1, "data")),
        (Truth(nrows=200, ncols=200, nskips=4, dark_current=5.0, polarity=1, seed=5),
         (1, "data")),
        # a clean image (about one charged pixel): the data cannot tell, the default stands
        (Truth(**SHAPE, dark_current=1e-4, seed=6), (-1, "default")),
        (Truth(**SHAPE, dark_current=1e-4, polarity=1, seed=7), (-1, "default")),
    ],
    ids=["raw", "tracks", "lambda5", "positive", "positive-lambda5", "clean", "clean-positive"],
)
def test_data_decide_when_nothing_else_does(tmp_path, truth, expected):
    polarity, source, _ = decided(tmp_path, "Img_1.fits", truth)
    assert (polarity, source) == expected


def test_positive_raw_image_measured_right_from_the_data(tmp_path):
    truth = Truth(nrows=200, ncols=200, nskips=16, dark_current=0.2, polarity=1, seed=8)
    polarity, source, ds = decided(tmp_path, "Img_1.fits", truth)
    assert (polarity, source) == (1, "data")
    assert float(ds.aduConversion) == pytest.approx(truth.gain, rel=0.03)
    assert float(ds.darkCurrent) == pytest.approx(truth.dark_current, rel=0.15)


def test_option_header_and_name_come_before_the_data(tmp_path):
    positive = Truth(**SHAPE, dark_current=0.1, polarity=1, seed=9)
    assert decided(tmp_path, "Img_1.fits", positive, polarity=-1)[:2] == (-1, "option")
    path = write_image(tmp_path / "Img_2.fits", positive, header={"IMAGE": "averaged"})
    assert int(image_metrics(open_image(path)).polarity[0]) == 1
    assert image_metrics(open_image(path)).polarity_source.values[0] == "header"
    negative = Truth(**SHAPE, dark_current=0.1, polarity=-1, seed=10)
    assert decided(tmp_path, "Img_Avg_3.fits", negative)[:2] == (1, "name")


def test_each_amplifier_decided_and_catalogued(tmp_path):
    # amplifier 1 charge-negative with dark current, amplifier 2 too clean to tell
    dark = write_image(tmp_path / "a.fits", Truth(**SHAPE, dark_current=0.2, seed=11))
    clean = write_image(tmp_path / "b.fits", Truth(**SHAPE, dark_current=1e-4, seed=12))
    pixels = xr.concat([open_image(dark), open_image(clean)], dim="amp")
    pixels = pixels.assign_coords(amp=["A", "B"]).assign_attrs(open_image(dark).attrs)
    ds = image_metrics(pixels)
    assert list(ds.polarity.values) == [-1, -1]
    assert list(ds.polarity_source.values) == ["data", "default"]
    assert ds.attrs["polarity"] == -1

    store = tmp_path / "catalogue.zarr"
    record = ImageRecord(path=str(dark), size=1, mtime=0.0, metrics=ds, elapsed=1.0)
    Catalogue(store).add([record])
    with xr.open_zarr(store) as stored:
        assert stored.polarity.dims == ("image", "amp")
        assert stored.polarity_source.dtype.kind in "OUT"
        assert list(stored.polarity_source.values[0]) == ["data", "default"]
        assert list(stored.polarity.values[0]) == [-1, -1]
        rows = format_csv(stored.load()).splitlines()
    header = rows[0].split(",")
    assert header.index("polarity_source") == header.index("polarity") + 1
    assert [row.split(",")[header.index("polarity_source")] for row in rows[1:]] == [
        "data", "default"]


def test_an_internal_error_stays_in_its_step(tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("Eigenvalues did not converge")

    monkeypatch.setattr(fitting, "fit_gauss_poisson", broken)
    path = write_image(tmp_path / "Img_1.fits", Truth(**SHAPE, nskips=16, namps=2, seed=13))
    with caplog.at_level(logging.WARNING, logger="skipperdask.metrics"):
        ds = image_metrics(open_image(path))
    reason = "internal error: LinAlgError: Eigenvalues did not converge"
    for name in ("skNoise", "darkCurrent", "aduConversion", "pedestal", "resolution",
                 "fitChi2", "tailRatio"):
        assert np.isnan(ds[name].values).all(), name
        assert list(ds[f"{name}_reason"].values) == [reason, reason]
    for name in ("aveImgS", "dSdskip", "imgNoise", "pixVar", "clustVar"):
        assert np.isfinite(ds[name].values).all(), name
    assert np.isfinite(ds.noise_vs_n.values).all()
    failures = [r for r in caplog.records if reason in r.getMessage()]
    assert len(failures) == 2  # once per amplifier
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in failures)
