import builtins
import hashlib
import os
import pickle

import dask
import numpy as np
import pytest
from astropy.io import fits

from skipperdask.config import Options
from skipperdask.errors import SkipperError
from skipperdask.io import array, open_image, read_raw_rows, resolve_polarity, scan_file

RNG = np.random.default_rng(20250807)


def write(path, *hdus):
    """Write ``hdus`` (the first one primary) to ``path``; returns the path."""
    hdus = list(hdus)
    if not isinstance(hdus[0], fits.PrimaryHDU):
        hdus.insert(0, fits.PrimaryHDU())
    fits.HDUList(hdus).writeto(path)
    return path


def image(raw, header=None, *, kind=fits.ImageHDU, **cards):
    """An image HDU holding exactly ``raw`` (BSCALE/BZERO in ``cards`` are written as given,
    the stored numbers stay ``raw``)."""
    hdu = kind(raw, header=header)
    for keyword, value in cards.items():
        hdu.header[keyword] = value
    return hdu


def raw_samples(nrows, ncols, nskips, dtype, low=0, high=1000):
    return RNG.integers(low, high, (nrows, ncols * nskips)).astype(dtype)


# Each layout: (file name, function of the directory -> (path, [(amp name, values of the HDU
# as a 2-D (rows, ncols * nskips) array, nskips)])).
def seed_raw(d):
    raw = raw_samples(6, 7, 5, np.int32, -5000, 5000)
    path = write(d / "Img_1.fits", image(raw, kind=fits.PrimaryHDU, NDCMS=5, BZERO=2**31))
    return path, [("0", raw.astype(np.float64) + 2**31, 5)]


def seed_raw_scaled(d):
    raw = raw_samples(4, 3, 8, np.int32)
    path = write(
        d / "Img_2.fits", image(raw, kind=fits.PrimaryHDU, NDCMS=8, BSCALE=0.5, BZERO=-10.0)
    )
    return path, [("0", raw * 0.5 - 10.0, 8)]


def averaged_by_name(d):
    values = RNG.normal(100, 3, (5, 9)).astype(np.float32)
    path = write(d / "Img_Avg_3.fits", image(values, kind=fits.PrimaryHDU, NDCMS=300))
    return path, [("0", values, 1)]


def amps_in_primary_and_extensions_nsamp_string(d):
    raws = [raw_samples(3, 4, 15, np.float32) for _ in range(4)]
    primary = image(raws[0], kind=fits.PrimaryHDU, NSAMP="15")
    path = write(d / "lta_skp.fits", primary, *(image(raw) for raw in raws[1:]))
    return path, [(str(i), raw, 15) for i, raw in enumerate(raws)]


def named_amps_ndcm_uint16(d):
    raws = [raw_samples(4, 5, 4, np.uint16, 0, 65535) for _ in range(2)]
    primary = fits.PrimaryHDU()
    primary.header["NDCM"] = 4
    path = write(
        d / "damic.fits",
        primary,
        *(
            fits.ImageHDU(raw, name=name)
            for raw, name in zip(raws, ["CCD_B", "CCD_A"], strict=True)
        ),
    )
    return path, [("CCD_B", raws[0], 4), ("CCD_A", raws[1], 4)]


def lta_averaged_ncol_string(d):
    values = [raw_samples(3, 8, 1, np.float32) for _ in range(2)]
    hdus = [
        image(values[0], kind=fits.PrimaryHDU, NSAMP="15", NCOL="8"),
        image(values[1], NSAMP="15", NCOL="8"),
    ]
    return write(d / "lta_ave.fits", *hdus), [("0", values[0], 1), ("1", values[1], 1)]


def int16_scaled_and_float64(d):
    raw = raw_samples(2, 3, 2, np.int16, -300, 300)
    values = RNG.normal(0, 1, (2, 6))
    hdus = [image(raw, kind=fits.PrimaryHDU, NDCMS=2, BZERO=100, BSCALE=1), fits.ImageHDU(values)]
    return write(d / "mixed.fits", *hdus), [("0", raw + 100.0, 2), ("1", values, 2)]


def compressed_int_raw(d):
    raws = [raw_samples(9, 6, 3, np.int32, -(2**20), 2**20) for _ in range(2)]
    hdus = [fits.CompImageHDU(raw, name=f"A{i}", tile_shape=(2, 18)) for i, raw in enumerate(raws)]
    for hdu in hdus:
        hdu.header["NDCMS"] = 3
    return write(d / "raw.fz", *hdus), [("A0", raws[0], 3), ("A1", raws[1], 3)]


def compressed_uint16(d):
    raw = raw_samples(5, 4, 2, np.uint16, 0, 65535)
    hdu = fits.CompImageHDU(raw)
    hdu.header["NDCMS"] = 2
    return write(d / "u16.fits.fz", hdu), [("1", raw, 2)]


def compressed_float_averaged(d):
    # quantize_level=0: lossless float compression, so that the values compare exactly
    values = RNG.normal(-40, 3, (6, 10))
    primary = fits.PrimaryHDU()
    primary.header.update(NDCM=500, NCOL=10, IMAGE="averaged")
    hdu = fits.CompImageHDU(values, name="CCD_A", compression_type="GZIP_1", quantize_level=0)
    return write(d / "avg_Image_5.fz", primary, hdu), [("CCD_A", values, 1)]


LAYOUTS = [
    seed_raw,
    seed_raw_scaled,
    averaged_by_name,
    amps_in_primary_and_extensions_nsamp_string,
    named_amps_ndcm_uint16,
    lta_averaged_ncol_string,
    int16_scaled_and_float64,
    compressed_int_raw,
    compressed_uint16,
    compressed_float_averaged,
]


@pytest.mark.parametrize("make", LAYOUTS, ids=lambda make: make.__name__)
def test_layout_round_trip(tmp_path, make):
    path, amps = make(tmp_path)
    pixels = open_image(path)

    nrows, ncols = amps[0][1].shape[0], amps[0][1].shape[1] // amps[0][2]
    assert pixels.dims == ("amp", "row", "col", "skip")
    assert pixels.shape == (len(amps), nrows, ncols, amps[0][2])
    assert list(pixels.amp.values) == [name for name, _, _ in amps]
    assert pixels.attrs["nskips"] == amps[0][2]
    got = pixels.values
    for a, (_, values, nskips) in enumerate(amps):
        corners = [(0, 0, 0), (nrows - 1, ncols - 1, nskips - 1), (1, ncols // 2, nskips // 2)]
        for r, c, s in corners:
            assert got[a, r, c, s] == values[r, c * nskips + s]
        np.testing.assert_array_equal(got[a], values.reshape(nrows, ncols, nskips))


def test_values_keep_astropy_dtypes(tmp_path):
    assert open_image(seed_raw(tmp_path)[0]).dtype == np.uint32
    assert open_image(seed_raw_scaled(tmp_path)[0]).dtype == np.float64
    assert open_image(named_amps_ndcm_uint16(tmp_path)[0]).dtype == np.uint16
    assert open_image(averaged_by_name(tmp_path)[0]).dtype == np.float32
    assert open_image(compressed_int_raw(tmp_path)[0]).dtype == np.int32


def test_lossy_compressed_floats_match_astropy(tmp_path):
    values = RNG.normal(0, 5, (12, 20))
    path = write(tmp_path / "lossy.fz", fits.CompImageHDU(values, quantize_level=16))
    stored = fits.getdata(path, ext=1)
    got = open_image(path).values[0, :, :, 0]
    np.testing.assert_array_equal(got, stored)
    np.testing.assert_allclose(got, values, atol=5 / 16)


@pytest.mark.parametrize("make", LAYOUTS, ids=lambda make: make.__name__)
def test_raw_rows_are_the_stored_numbers(tmp_path, make):
    path, amps = make(tmp_path)
    layout = scan_file(path)
    for amp, (_, values, _) in zip(layout.amps, amps, strict=True):
        rows = read_raw_rows(amp, 1, amp.nrows)
        assert rows.dtype == amp.dtype
        assert rows.shape == (amp.nrows - 1, amp.ncols * amp.nskips)
        np.testing.assert_array_equal(rows * amp.bscale + amp.bzero, values[1:])
        if not amp.compressed:
            assert rows.dtype.byteorder == ">" or rows.dtype.itemsize == 1


def test_raw_rows_fill_a_reused_buffer(tmp_path):
    path, [(_, values, _)] = seed_raw_scaled(tmp_path)
    amp = scan_file(path).amps[0]
    out = np.zeros(10 * amp.row_bytes, np.uint8)
    for start in (0, 2):
        rows = read_raw_rows(amp, start, start + 2, out=out)
        assert np.shares_memory(rows, out)
        np.testing.assert_array_equal(rows * amp.bscale + amp.bzero, values[start : start + 2])
    with pytest.raises(ValueError, match="bytes"):
        read_raw_rows(amp, 0, 4, out=np.zeros(amp.row_bytes, np.uint8))


def test_layout_from_headers(tmp_path):
    path, _ = seed_raw(tmp_path)
    layout = scan_file(path)
    (amp,) = layout.amps
    assert layout.path == os.path.abspath(path)
    assert (layout.size, layout.mtime) == (os.path.getsize(path), os.path.getmtime(path))
    assert layout.primary_header["NDCMS"] == 5
    assert (amp.hdu, amp.nrows, amp.ncols, amp.nskips) == (0, 6, 7, 5)
    assert (amp.bscale, amp.bzero, amp.dtype) == (1, 2**31, np.dtype(">i4"))
    assert amp.data_offset == 2880 and not amp.compressed
    assert amp.nbytes == 6 * 35 * 4 == 6 * amp.row_bytes
    assert pickle.loads(pickle.dumps(layout)) == layout
    assert hash(scan_file(path)) == hash(layout)


def test_compressed_layout(tmp_path):
    path, _ = compressed_int_raw(tmp_path)
    amp = scan_file(path).amps[1]
    assert (amp.name, amp.hdu, amp.compressed, amp.data_offset) == ("A1", 2, True, None)
    assert (amp.dtype, amp.bscale, amp.bzero) == (np.dtype(np.int32), 1, 0)


def test_averaged_files_keep_the_nominal_sample_count_in_the_header(tmp_path):
    amp = scan_file(compressed_float_averaged(tmp_path)[0]).amps[0]
    assert amp.nskips == 1
    assert scan_file(amp.path).primary_header["NDCM"] == 500


class ReadCounter:
    """Records every row range read and every byte read from pixel data."""

    def __init__(self, monkeypatch):
        self.ranges, self.bytes = [], 0
        read = array.read_raw_rows

        def counting_read(amp, row_start, row_stop, out=None):
            self.ranges.append((amp.name, row_start, row_stop))
            rows = read(amp, row_start, row_stop, out)
            self.bytes += rows.nbytes
            return rows

        monkeypatch.setattr(array, "read_raw_rows", counting_read)


@pytest.fixture
def big_file(tmp_path):
    """4 amplifiers of 1000 rows x 50 cols x 20 samples (16 MB)."""
    raws = [raw_samples(1000, 50, 20, np.int32) for _ in range(4)]
    primary = fits.PrimaryHDU()
    primary.header["NDCMS"] = 20
    return write(tmp_path / "big.fits", primary, *(fits.ImageHDU(raw) for raw in raws)), raws


def test_open_reads_nothing_and_a_chunk_reads_only_its_rows(big_file, monkeypatch):
    path, raws = big_file
    counter = ReadCounter(monkeypatch)
    pixels = open_image(path, chunks={"row": 10})
    assert counter.ranges == []

    block = pixels.isel(amp=2, row=slice(30, 40)).values
    assert counter.ranges == [("3", 30, 40)]
    assert counter.bytes == 10 * 50 * 20 * 4
    np.testing.assert_array_equal(block, raws[2][30:40].reshape(10, 50, 20))


def bytes_read_by_this_process():
    with open("/proc/self/io") as f:
        return int(dict(line.split(": ") for line in f.read().splitlines())["rchar"])


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux's /proc/self/io")
def test_bytes_read_from_disk(big_file, tmp_path):
    path, raws = big_file
    # a first, small image loads the modules the reading needs, so that only the file counts
    warm = write(tmp_path / "warm.fits", image(raws[0][:20], NDCMS=20))
    open_image(warm, chunks={"row": 10})[0, :10].values  # noqa: B018

    start = bytes_read_by_this_process()
    pixels = open_image(path, chunks={"row": 10})
    headers = bytes_read_by_this_process() - start
    pixels.isel(amp=1, row=slice(500, 510)).values  # noqa: B018
    chunk = bytes_read_by_this_process() - start - headers

    # astropy reads a few 2880-byte blocks around each of the 5 headers, never 4 MB of data
    assert headers < 20 * 2880
    assert 10 * 50 * 20 * 4 <= chunk < 10 * 50 * 20 * 4 + 4096


def test_a_compressed_chunk_reads_only_its_rows(tmp_path, monkeypatch):
    path, amps = compressed_int_raw(tmp_path)
    counter = ReadCounter(monkeypatch)
    pixels = open_image(path, chunks={"row": 2})
    block = pixels.isel(amp=1, row=slice(4, 6)).values
    assert counter.ranges == [("A1", 4, 6)]
    np.testing.assert_array_equal(block, amps[1][1][4:6].reshape(2, 6, 3))


def test_chunks_argument_and_default(big_file):
    path, _ = big_file
    pixels = open_image(path, chunks={"row": 300, "amp": 2})
    assert pixels.chunks == ((2, 2), (300, 300, 300, 100), (50,), (20,))
    with dask.config.set({"skipperdask.chunk-bytes": "40kB"}):
        # 40 000 bytes hold 10 rows of 50 x 20 int32
        assert open_image(path).chunks == ((1,) * 4, (10,) * 100, (50,), (20,))
    assert open_image(path).chunks == ((1,) * 4, (1000,), (50,), (20,))


def test_dask_names_follow_the_file(big_file):
    path, _ = big_file
    name = open_image(path).data.name
    assert name.startswith("pixels-")
    assert open_image(path).data.name == name
    assert open_image(path, chunks={"row": 10}).data.name != name
    os.utime(path, (0, 12345.0))
    assert open_image(path).data.name != name


def test_headers_in_attrs(tmp_path):
    path, _ = named_amps_ndcm_uint16(tmp_path)
    pixels = open_image(path, polarity=1)
    assert pixels.name == "pixels"
    assert pixels.attrs["path"] == os.path.abspath(path)
    assert pixels.attrs["polarity"] == 1
    assert pixels.attrs["NDCM"] == 4
    assert pixels.attrs["amp_headers"]["CCD_A"]["EXTNAME"] == "CCD_A"
    assert list(pixels.hdu.values) == [1, 2]
    np.testing.assert_array_equal(pixels.skip, np.arange(4))


@pytest.mark.parametrize(
    ("name", "cards", "polarity", "expected", "source"),
    [
        ("Img_1.fits", {}, None, -1, "default"),
        ("Img_Avg_1.fits", {}, None, 1, "name"),
        ("Avg_run/Img_1.fits", {}, None, -1, "default"),
        ("avg_Image_5.fz", {"IMAGE": "averaged"}, None, 1, "header"),
        ("Img_Avg_1.fits", {"IMAGE": "averaged"}, None, 1, "header"),
        ("Img_1.fits", {}, 1, 1, "option"),
        ("Img_Avg_1.fits", {}, -1, -1, "option"),
    ],
)
def test_polarity_rule(tmp_path, name, cards, polarity, expected, source):
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    primary = fits.PrimaryHDU(np.zeros((2, 3), np.int16))
    primary.header.update(cards)
    write(path, primary)
    layout = scan_file(path, polarity=polarity)
    assert (layout.polarity, layout.polarity_source) == (expected, source)
    attrs = open_image(path, polarity=polarity).attrs
    assert (attrs["polarity"], attrs["polarity_source"]) == (expected, source)


def test_polarity_setting_and_bad_value():
    with dask.config.set({"skipperdask.polarity": 1}):
        assert resolve_polarity("Img_1.fits", {}, Options.from_config().polarity) == (1, "option")
        assert resolve_polarity("Img_1.fits", {}, -1) == (-1, "option")
    with pytest.raises(ValueError, match="polarity"):
        resolve_polarity("Img_1.fits", {}, 2)


def truncated(path, nbytes_kept=None):
    """Cut ``path`` to ``nbytes_kept``, by default 10 bytes into the last HDU's data."""
    if nbytes_kept is None:
        with fits.open(path) as hdul:
            nbytes_kept = hdul[-1].fileinfo()["datLoc"] + 10
    path.write_bytes(path.read_bytes()[:nbytes_kept])
    return path


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (
            lambda d: (
                d.joinpath("text.fits").write_text("not a FITS file\n" * 300) and d / "text.fits"
            ),
            "not a FITS file",
        ),
        (
            lambda d: d.joinpath("empty.fits").write_bytes(b"") == 0 and d / "empty.fits",
            "not a FITS file",
        ),
        (
            lambda d: truncated(seed_raw(d)[0]),
            "truncated file: 2890 bytes, but the data of HDU 0 end at byte 3720",
        ),
        (lambda d: truncated(amps_in_primary_and_extensions_nsamp_string(d)[0]), "truncated file"),
        (lambda d: truncated(seed_raw(d)[0], 5760 - 100), "truncated file (File may have"),
        (lambda d: truncated(compressed_int_raw(d)[0]), "truncated file"),
        # the cut falls inside the second HDU's header
        (lambda d: truncated(compressed_int_raw(d)[0], 5000), "truncated or corrupt header"),
        (lambda d: write(d / "header_only.fits", fits.PrimaryHDU()), "no image data"),
        (
            lambda d: write(
                d / "table.fits",
                fits.BinTableHDU.from_columns([fits.Column("x", "E", array=np.ones(3))]),
            ),
            "no image data",
        ),
        (lambda d: write(d / "cube.fits", fits.ImageHDU(np.zeros((2, 3, 4)))), "3-D data"),
        (
            lambda d: write(d / "odd.fits", image(np.zeros((2, 10)), NDCMS=3)),
            "NDCMS=3 does not divide NAXIS1=10",
        ),
        (
            lambda d: write(d / "zero.fits", image(np.zeros((2, 10)), NSAMP=0)),
            "NSAMP=0 is not a positive integer",
        ),
        (
            lambda d: write(d / "negative.fits", image(np.zeros((2, 10)), NDCMS=-3)),
            "NDCMS=-3 is not a positive integer",
        ),
        (
            lambda d: write(d / "word.fits", image(np.zeros((2, 10)), NDCM="abc")),
            "NDCM='abc' is not a positive integer",
        ),
        (
            lambda d: write(d / "half.fits", image(np.zeros((2, 10)), NDCMS=2.5)),
            "NDCMS=2.5 is not a positive integer",
        ),
    ],
    ids=[
        "text",
        "empty",
        "truncated-data",
        "truncated-extension",
        "truncated-padding",
        "truncated-compressed",
        "truncated-header",
        "header-only",
        "table-only",
        "3-D",
        "not-dividing",
        "zero",
        "negative",
        "word",
        "fraction",
    ],
)
def test_bad_input_names_the_file_and_the_problem(tmp_path, make, problem):
    path = make(tmp_path)
    with pytest.raises(SkipperError) as error:
        open_image(path)
    assert str(path) in str(error.value)
    assert problem in error.value.problem


def test_amplifiers_of_different_shapes(tmp_path):
    path = write(
        tmp_path / "shapes.fits", fits.ImageHDU(np.zeros((2, 3))), fits.ImageHDU(np.zeros((2, 4)))
    )
    assert [amp.ncols for amp in scan_file(path).amps] == [3, 4]
    with pytest.raises(SkipperError, match="differ in shape"):
        open_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(SkipperError, match="missing.fits"):
        scan_file(tmp_path / "missing.fits")


def test_file_truncated_after_scanning(tmp_path):
    path, _ = seed_raw(tmp_path)
    amp = scan_file(path).amps[0]
    truncated(path)
    with pytest.raises(SkipperError, match="truncated file"):
        read_raw_rows(amp, 0, amp.nrows)


@pytest.mark.parametrize(
    "make", [seed_raw, compressed_int_raw, named_amps_ndcm_uint16], ids=lambda make: make.__name__
)
def test_inputs_are_only_read(tmp_path, make, monkeypatch):
    path, _ = make(tmp_path)
    before = (os.stat(path).st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    modes = []
    real_open = builtins.open

    def spying_open(file, mode="r", *args, **kwargs):
        if os.fspath(file) == str(path):
            modes.append(mode)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spying_open)
    open_image(path).values  # noqa: B018  (reads every pixel)
    monkeypatch.undo()

    assert modes and set(modes) == {"rb"}
    assert (os.stat(path).st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()) == before


@pytest.mark.real_data
def test_real_damicm_compressed_file(real_data):
    path = real_data / "damicm_avg_Image_5_Low_Temp_109_20250807_170213_15.fz"
    pixels = open_image(path)
    assert pixels.sizes == {"amp": 4, "row": 320, "col": 640, "skip": 1}
    assert list(pixels.amp.values) == ["CCD_A", "CCD_B", "CCD_D", "CCD_C"]
    assert pixels.attrs["polarity"] == 1
    assert pixels.attrs["NDCM"] == 500
    np.testing.assert_array_equal(
        pixels.sel(amp="CCD_D").values[:, :, 0], fits.getdata(path, ext=3)
    )


@pytest.mark.real_data
@pytest.mark.parametrize(
    ("name", "ncols"),
    [("astroskipper_cal_1_6_ave.fits", 4700), ("astroskipper_image_lta_2_ave.fits", 5000)],
)
def test_real_astroskipper_files(real_data, name, ncols):
    pixels = open_image(real_data / name)
    assert pixels.sizes == {"amp": 4, "row": 40, "col": ncols, "skip": 1}
    assert list(pixels.amp.values) == ["0", "1", "2", "3"]
    np.testing.assert_array_equal(pixels.values[3, :, :, 0], fits.getdata(real_data / name, 3))


@pytest.mark.cluster
def test_process_workers_read_compressed_and_plain_files(tmp_path):
    from distributed import Client, LocalCluster

    files = [compressed_int_raw(tmp_path), amps_in_primary_and_extensions_nsamp_string(tmp_path)]
    with (
        LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        for path, amps in files:
            pixels = open_image(path, chunks={"row": 2})
            total = client.compute(pixels.sum(dtype=np.float64).data).result()
            assert total == sum(values.sum(dtype=np.float64) for _, values, _ in amps)


def test_a_rice_file_kept_open_is_scanned_and_read_in_one_open(tmp_path, monkeypatch):
    """A task's scan and RICE_1 reads of a compressed file share one open file (one round
    trip, not one per amplifier, on an object store), and read what reads alone read."""
    from skipperdask.io import inputs
    from skipperdask.io import opened as kept

    data = [RNG.integers(-500, 500, size=(6, 30)).astype(np.int32) for _ in range(2)]
    path = write(tmp_path / "Img_1.fz", *(fits.CompImageHDU(d, compression_type="RICE_1")
                                          for d in data))
    amps = scan_file(path).amps
    alone = [read_raw_rows(amp, 1, 5) for amp in amps]
    calls = []
    real_opened = inputs.opened

    def counted(path, storage_options):
        calls.append(path)
        return real_opened(path, storage_options)

    monkeypatch.setattr(kept, "opened", counted)
    with kept.kept_open(path):
        assert scan_file(path).amps == amps
        shared = [read_raw_rows(amp, 1, 5) for amp in amps]
    assert len(calls) == 1
    for one, other in zip(alone, shared, strict=True):
        np.testing.assert_array_equal(one, other)


def test_a_compressed_file_kept_open_is_scanned_and_read_in_one_open(tmp_path, monkeypatch):
    """A task that scans a compressed file whose tiles astropy decodes (2 rows a tile) and
    reads every amplifier opens it with astropy once (the scan does not), and reads exactly
    what a read that opens the file itself gives."""
    from skipperdask.io import opened as kept

    path, expected = compressed_int_raw(tmp_path)
    amps = scan_file(path).amps
    opened = []
    real_open = fits.open

    def counted_open(file, *args, **kwargs):
        opened.append(file.name)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(fits, "open", counted_open)
    alone = [read_raw_rows(amp, 2, 7) for amp in amps]
    assert len(opened) == len(amps)
    opened.clear()
    with kept.kept_open(path), kept.kept_open(path):  # nested: the outer block owns it
        assert scan_file(path).amps == amps
        shared = [read_raw_rows(amp, 2, 7) for amp in amps]
    assert list(map(os.fspath, opened)) == [os.path.abspath(path)]
    for one, other, (_, raw, _) in zip(alone, shared, expected, strict=True):
        np.testing.assert_array_equal(one, other)
        np.testing.assert_array_equal(other, raw[2:7])
