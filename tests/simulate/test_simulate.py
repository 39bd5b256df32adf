"""The simulator: layout on disk, statistics against the truth, determinism, the command line.

Files are checked with astropy directly, not with the package's reader.
"""

import csv
import dataclasses

import numpy as np
import pytest
from astropy.io import fits

from skipperdask.cli import main
from skipperdask.simulate import (
    ACQUISITION_HEADER,
    XRAY_ELECTRONS,
    Truth,
    cluster_fraction,
    read_truth,
    simulate_campaign,
    simulate_pixels,
    write_image,
)


def image_hdus(path):
    """(name, data, header) of every HDU of ``path`` that holds an image, data in memory."""
    with fits.open(path) as hdus:
        hdus.verify("exception")
        return [(h.name, np.array(h.data), h.header.copy()) for h in hdus if h.data is not None]


def stored_samples(path, truth, amp=0):
    """The raw samples of one amplifier of ``path`` as ``(nrows, ncols, nskips)`` float64."""
    data = image_hdus(path)[amp][1].astype(np.float64)
    return data.reshape(truth.nrows, truth.ncols, truth.nskips)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A clean raw image large enough for percent-level statistics, its truth and pixels."""
    truth = Truth(nrows=200, ncols=200, nskips=16, seed=7)
    path = write_image(tmp_path_factory.mktemp("clean") / "Img_1.fits", truth)
    return truth, path, simulate_pixels(truth)


def test_same_seed_gives_the_same_bytes(tmp_path):
    truth = Truth(
        nrows=30,
        ncols=20,
        nskips=5,
        tracks=3,
        charge_loss=0.02,
        drift=1.0,
        drift_kind="random_walk",
        namps=2,
    )
    first = write_image(tmp_path / "a.fits", truth).read_bytes()
    assert write_image(tmp_path / "b.fits", truth).read_bytes() == first
    other_seed = dataclasses.replace(truth, seed=1)
    assert write_image(tmp_path / "c.fits", other_seed).read_bytes() != first


def test_samples_of_a_pixel_are_consecutive_along_the_row(tmp_path):
    truth = Truth(nrows=5, ncols=7, nskips=3, dark_current=1.0)
    ((_, data, header),) = image_hdus(write_image(tmp_path / "Img_1.fits", truth))
    values = simulate_pixels(truth).values
    assert data.shape == (5, 7 * 3)
    assert header["NDCMS"] == 3
    for r in range(5):
        for c in range(7):
            for s in range(3):
                assert data[r, c * 3 + s] == np.rint(values[0, r, c, s])
    # the pixels are not all alike, so the check above could fail
    assert len(np.unique(data)) > 20


def test_file_is_valid_fits_padded_to_2880_bytes(clean):
    _, path, _ = clean
    assert path.stat().st_size % 2880 == 0
    with fits.open(path) as hdus:
        hdus.verify("exception")
        assert hdus[0].header["BZERO"] == 2**31  # uint32, the default
        assert hdus[0].header["BITPIX"] == 32


def test_empty_pixels_average_to_the_pedestal(clean):
    truth, path, pixels = clean
    average = stored_samples(path, truth).mean(axis=-1)
    empty = pixels.electrons[0] == 0
    # 36,000 empty pixels of noise 1 ADU each after averaging: the mean is known to 0.005 ADU
    assert average[empty].mean() == pytest.approx(truth.pedestal, abs=0.03)


def test_single_sample_noise_is_the_read_noise(clean):
    truth, path, pixels = clean
    samples = stored_samples(path, truth)[pixels.electrons[0] == 0]
    # rounding to integers adds a uniform variance of 1/12 ADU²
    expected = np.sqrt(truth.read_noise**2 + 1 / 12)
    assert samples.var(axis=-1, ddof=1).mean() ** 0.5 == pytest.approx(expected, rel=0.01)


def test_charge_gain_and_polarity_from_the_file(clean):
    truth, path, pixels = clean
    average = stored_samples(path, truth).mean(axis=-1)
    # averaged noise is 1 ADU against a gain of 10: every pixel's electrons read back exactly
    electrons = np.rint(truth.polarity * (average - truth.pedestal) / truth.gain)
    np.testing.assert_array_equal(electrons, pixels.electrons[0])
    fraction = np.mean(electrons > 0)
    expected = 1 - np.exp(-truth.dark_current)
    assert fraction == pytest.approx(expected, abs=4 * np.sqrt(expected / electrons.size))
    one_electron = truth.polarity * (average[electrons == 1] - truth.pedestal)
    assert one_electron.mean() == pytest.approx(truth.gain, abs=0.1)


@pytest.mark.parametrize("polarity", [-1, 1])
def test_polarity_sets_the_direction_of_charge(tmp_path, polarity):
    truth = Truth(nrows=40, ncols=50, nskips=16, dark_current=0.5, polarity=polarity)
    average = stored_samples(write_image(tmp_path / "Img_1.fits", truth), truth).mean(-1)
    electrons = simulate_pixels(truth).electrons[0]
    residual = average - truth.pedestal - polarity * truth.gain * electrons
    assert np.abs(residual).max() < 5  # five standard deviations of the averaged noise
    assert read_truth(tmp_path / "Img_1.fits").polarity == polarity


def test_linear_drift_along_rows(tmp_path):
    truth = Truth(nrows=100, ncols=100, nskips=4, drift=0.5)
    average = stored_samples(write_image(tmp_path / "Img_1.fits", truth), truth).mean(-1)
    slope = np.polyfit(np.arange(truth.nrows), np.median(average, axis=1), 1)[0]
    assert slope == pytest.approx(0.5, abs=0.01)


def test_random_walk_drift_along_rows(tmp_path):
    truth = Truth(
        nrows=400, ncols=100, nskips=4, dark_current=0.0, drift=2.0, drift_kind="random_walk"
    )
    average = stored_samples(write_image(tmp_path / "Img_1.fits", truth), truth).mean(-1)
    baseline = average.mean(axis=1)
    assert baseline[0] == pytest.approx(truth.pedestal, abs=0.5)
    # 399 steps: their standard deviation is known to about 4%
    assert np.diff(baseline).std() == pytest.approx(2.0, rel=0.15)


def test_charge_loss_lowers_later_samples(tmp_path):
    truth = Truth(nrows=100, ncols=100, nskips=20, dark_current=1.0, charge_loss=0.05)
    samples = stored_samples(write_image(tmp_path / "Img_1.fits", truth), truth)
    charge = truth.polarity * (samples - truth.pedestal) / truth.gain
    per_sample = charge.reshape(-1, truth.nskips).mean(axis=0)
    expected = truth.dark_current * (1 - truth.charge_loss) ** np.arange(truth.nskips)
    # 10,000 pixels, Poisson and 0.4 e- noise: each sample's mean is known to about 0.011 e-
    np.testing.assert_allclose(per_sample, expected, atol=0.05)
    # the electron image is the charge the first sample sees: what is left is its noise
    residual = charge[..., 0] - simulate_pixels(truth).electrons[0]
    assert residual.std() == pytest.approx(truth.read_noise / truth.gain, rel=0.03)


def test_without_charge_loss_every_sample_sees_the_same_charge(clean):
    truth, _, pixels = clean
    charge = truth.polarity * (pixels.values[0] - truth.pedestal)
    noise = charge - truth.gain * pixels.electrons[0][..., None]
    assert np.abs(noise).max() < 6 * truth.read_noise


def test_tracks_add_large_charges():
    quiet = simulate_pixels(Truth(nrows=100, ncols=100, nskips=2)).electrons
    with_tracks = simulate_pixels(Truth(nrows=100, ncols=100, nskips=2, tracks=6)).electrons
    assert quiet.max() < 6
    assert np.sum(with_tracks > 20) >= 20
    # tracks come on top of the same dark current
    assert np.mean(with_tracks == quiet) > 0.9


def test_xrays_hold_their_electrons_in_small_clusters():
    truth = Truth(nrows=300, ncols=300, nskips=2, dark_current=0.0, xrays=20, seed=3)
    electrons = simulate_pixels(truth).electrons[0]
    # 20 X-rays of Fano-limited charge, none far enough out to lose electrons at the edge
    assert electrons.sum() == pytest.approx(20 * XRAY_ELECTRONS, rel=0.02)
    hit = np.count_nonzero(electrons)
    assert hit == cluster_fraction(truth) * electrons.size
    assert 20 <= hit <= 20 * 13**2  # each X-ray within its window, point-like or diffused
    assert electrons.max() > 100


def test_hot_columns_carry_their_current():
    truth = Truth(nrows=400, ncols=50, nskips=2, dark_current=0.0, hot_columns=2,
                  hot_column_current=3.0)
    column_means = simulate_pixels(truth).electrons[0].mean(axis=0)
    assert np.count_nonzero(column_means) == 2
    # 400 pixels of Poisson(3) each: the mean is known to 0.09 e-
    np.testing.assert_allclose(column_means[column_means > 0], 3.0, atol=0.4)
    assert cluster_fraction(truth) == 0  # hot columns are not clusters


def test_new_truth_fields_round_trip_and_default_images_keep_their_header(tmp_path):
    truth = Truth(nrows=20, ncols=20, nskips=2, xrays=3, hot_columns=1, hot_column_current=7.5)
    assert read_truth(write_image(tmp_path / "a.fits", truth)) == truth
    header = fits.getheader(write_image(tmp_path / "b.fits", Truth(nrows=2, ncols=2, nskips=2)))
    assert not {"SIMXRAY", "SIMHOTC", "SIMHOTI"} & set(header)


def test_amplifiers_are_extensions_named_and_distinct(tmp_path):
    truth = Truth(nrows=10, ncols=12, nskips=4, namps=3, tracks=2)
    path = write_image(tmp_path / "Img_1.fits", truth)
    with fits.open(path) as hdus:
        assert hdus[0].data is None
        assert hdus[0].header["NDCMS"] == 4
        assert "EXPOSURE" in hdus[0].header
    hdus = image_hdus(path)
    values = simulate_pixels(truth).values
    assert [name for name, _, _ in hdus] == ["AMP1", "AMP2", "AMP3"]
    for amp, (_, data, header) in enumerate(hdus):
        np.testing.assert_array_equal(data, np.rint(values[amp]).reshape(10, 48))
        assert header["SIMGAIN"] == truth.gain
    assert not np.array_equal(hdus[0][1], hdus[1][1])
    assert read_truth(path) == truth


def test_compressed_file_holds_the_same_integers(tmp_path):
    truth = Truth(nrows=20, ncols=30, nskips=5, namps=2, tracks=2, compressed=True)
    path = write_image(tmp_path / "Img_1.fits.fz", truth)
    plain = write_image(tmp_path / "plain.fits", dataclasses.replace(truth, compressed=False))
    with fits.open(path) as hdus:
        assert [type(h) for h in hdus[1:]] == [fits.CompImageHDU] * 2
    compressed_hdus = image_hdus(path)
    assert [name for name, _, _ in compressed_hdus] == ["AMP1", "AMP2"]
    for (_, packed, _), (_, unpacked, _) in zip(compressed_hdus, image_hdus(plain), strict=True):
        assert packed.dtype == np.uint32
        np.testing.assert_array_equal(packed, unpacked)
    assert path.stat().st_size < plain.stat().st_size


def test_streamed_blocks_equal_the_simulation_in_memory(tmp_path):
    truth = Truth(nrows=23, ncols=15, nskips=6, tracks=4, charge_loss=0.02, drift=0.3)
    small_blocks = write_image(tmp_path / "a.fits", truth, block_rows=4)
    one_block = write_image(tmp_path / "b.fits", truth, block_rows=truth.nrows)
    assert small_blocks.read_bytes() == one_block.read_bytes()
    np.testing.assert_array_equal(
        stored_samples(small_blocks, truth), np.rint(simulate_pixels(truth).values[0])
    )


@pytest.mark.parametrize(
    ("dtype", "bitpix", "bzero"),
    [
        ("uint32", 32, 2**31),
        ("int32", 32, None),
        ("uint16", 16, 2**15),
        ("int16", 16, None),
        ("float32", -32, None),
    ],
)
def test_storage_types(tmp_path, dtype, bitpix, bzero):
    truth = Truth(nrows=8, ncols=9, nskips=3, dtype=dtype)
    ((_, data, header),) = image_hdus(write_image(tmp_path / "Img_1.fits", truth))
    assert header["BITPIX"] == bitpix
    assert header.get("BZERO") == bzero
    values = simulate_pixels(truth).values[0].reshape(8, 27)
    if dtype.startswith("float"):
        np.testing.assert_allclose(data, values, rtol=1e-6)
    else:
        np.testing.assert_array_equal(data, np.rint(values))


def test_integers_saturate_like_an_adc(tmp_path):
    truth = Truth(
        nrows=50, ncols=50, nskips=2, dtype="int16", pedestal=32400.0, polarity=1, tracks=4
    )
    ((_, data, _),) = image_hdus(write_image(tmp_path / "Img_1.fits", truth))
    values = np.rint(simulate_pixels(truth).values[0].reshape(50, 100))
    assert values.max() > 32767
    np.testing.assert_array_equal(data, np.minimum(values, 32767))


def test_averaged_image_is_the_mean_over_samples(tmp_path):
    truth = Truth(nrows=10, ncols=12, nskips=8, averaged=True)
    assert (truth.polarity, truth.dtype) == (1, "float32")
    ((_, data, header),) = image_hdus(write_image(tmp_path / "Avg_Img_1.fits", truth))
    assert data.shape == (10, 12)
    assert "NDCMS" not in header
    assert header["SIMNSKIP"] == 8
    np.testing.assert_allclose(data, simulate_pixels(truth).values[0].mean(-1), rtol=1e-6)


def test_averaged_compressed_floats_are_lossless(tmp_path):
    truth = Truth(nrows=10, ncols=12, nskips=8, averaged=True, compressed=True, namps=2)
    packed = image_hdus(write_image(tmp_path / "Avg_Img_1.fits.fz", truth))
    plain = image_hdus(
        write_image(tmp_path / "Avg_plain.fits", dataclasses.replace(truth, compressed=False))
    )
    for (_, a, _), (_, b, _) in zip(packed, plain, strict=True):
        np.testing.assert_array_equal(a, b)


def test_headers_hold_acquisition_keywords_and_overrides(tmp_path):
    path = write_image(
        tmp_path / "Img_1.fits",
        Truth(nrows=2, ncols=2, nskips=2),
        header={"VDD": -21.5, "RUNID": 12},
    )
    header = fits.getheader(path)
    assert header["VDD"] == -21.5
    assert header["RUNID"] == 12
    assert header["EXPOSURE"] == ACQUISITION_HEADER["EXPOSURE"]


def test_an_existing_file_is_never_replaced_silently(tmp_path):
    path = tmp_path / "Img_1.fits"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="Img_1.fits"):
        write_image(path, Truth(nrows=2, ncols=2, nskips=2))
    assert path.read_bytes() == b"precious"
    write_image(path, Truth(nrows=2, ncols=2, nskips=2), overwrite=True)
    assert fits.getheader(path)["NDCMS"] == 2
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"read_noise": -1.0}, "negative"),
        ({"averaged": True, "dtype": "int16"}, "float"),
        ({"charge_loss": 1.5}, "probability"),
        ({"dtype": "int8"}, "dtype"),
        ({"polarity": 0}, "polarity"),
        ({"xrays": -1}, "negative"),
        ({"ncols": 3, "hot_columns": 4}, "hot_columns"),
    ],
)
def test_impossible_truth_is_refused(fields, problem):
    with pytest.raises(ValueError, match=problem):
        Truth(**fields)


def test_campaign_files_truth_table_and_trends(tmp_path):
    paths = simulate_campaign(tmp_path, 4, seed=3, n_averaged=1, nrows=8, ncols=10, nskips=4)
    assert [p.name for p in paths] == ["Img_1.fits", "Img_2.fits", "Img_3.fits", "Avg_Img_4.fits"]
    with open(tmp_path / "truth.csv", newline="") as table:
        rows = list(csv.DictReader(table))
    assert [row["filename"] for row in rows] == [p.name for p in paths]
    truths = [read_truth(p) for p in paths]
    for row, truth in zip(rows, truths, strict=True):
        assert float(row["read_noise"]) == truth.read_noise
        assert int(row["seed"]) == truth.seed
    assert [t.averaged for t in truths] == [False, False, False, True]
    assert truths[0].read_noise == 4.0
    assert truths[-1].read_noise == pytest.approx(4.8)
    assert len({t.seed for t in truths}) == 4
    vdd = [fits.getheader(p)["VDD"] for p in paths]
    assert vdd == sorted(vdd) and vdd[-1] - vdd[0] == pytest.approx(1.0)
    dark = [
        t.dark_current / fits.getheader(p)["EXPOSURE"] for t, p in zip(truths, paths, strict=True)
    ]
    assert np.allclose(dark, dark[0])


def test_campaign_is_deterministic_and_refuses_to_overwrite(tmp_path):
    first = simulate_campaign(tmp_path / "a", 2, seed=5, nrows=4, ncols=4, nskips=2)
    second = simulate_campaign(tmp_path / "b", 2, seed=5, nrows=4, ncols=4, nskips=2)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").iterdir()}
    with pytest.raises(FileExistsError, match="Img_1.fits"):
        simulate_campaign(tmp_path / "a", 3, seed=6, nrows=4, ncols=4, nskips=2)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "a").iterdir()} == before


def test_command_line_writes_a_campaign(tmp_path, capsys):
    status = main(
        [
            "simulate",
            str(tmp_path),
            "-n",
            "2",
            "--nrows",
            "8",
            "--ncols",
            "10",
            "--nskips",
            "4",
            "--gain",
            "7.5",
            "--noise",
            "2",
            "--amps",
            "2",
            "--compress",
            "--dtype",
            "int32",
            "--seed",
            "3",
        ]
    )
    assert status == 0
    paths = sorted(tmp_path.glob("Img_*.fits.fz"))
    assert [p.name for p in paths] == ["Img_1.fits.fz", "Img_2.fits.fz"]
    assert capsys.readouterr().out.split() == [str(p) for p in paths]
    truth = read_truth(paths[0])
    assert (truth.gain, truth.read_noise, truth.namps, truth.dtype) == (7.5, 2.0, 2, "int32")
    assert truth.compressed
    # a second run into the same directory is refused with a message, not a traceback
    assert main(["simulate", str(tmp_path), "-n", "2"]) == 2
    assert "already exist" in capsys.readouterr().err


def test_command_line_help_describes_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = capsys.readouterr().out
    for option in (
        "--nrows",
        "--ncols",
        "--nskips",
        "--gain",
        "--noise",
        "--dark-current",
        "--pedestal",
        "--polarity",
        "--drift",
        "--tracks",
        "--charge-loss",
        "--xrays",
        "--hot-columns",
        "--hot-column-current",
        "--amps",
        "--averaged",
        "--compress",
        "--dtype",
        "--seed",
        "-n",
    ):
        assert option in out
    assert "(default: 10.0)" in out  # the gain's default, from Truth
