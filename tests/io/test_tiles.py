"""The compiled RICE_1 tile reader gives exactly what astropy's section gives, on every kind of
tile-compressed image it takes (integers; floats quantised with and without dither, NaN and
exact zeros), on any row range, and on the real DAMIC-M file; what it does not take is left
to astropy."""

import numpy as np
import pytest
from astropy.io import fits

from skipperdask.errors import BadFileError
from skipperdask.io import read_raw_rows, scan_file
from skipperdask.io.tiles import rice_rows

DAMICM = "damicm_avg_Image_5_Low_Temp_109_20250807_170213_15.fz"
RNG = np.random.default_rng(3)
ROW_RANGES = [(0, None), (7, 19), (-1, None)]


def _compare(path, taken=True):
    with fits.open(path) as hdul, open(path, "rb") as file:
        for hdu in hdul:
            if not isinstance(hdu, fits.CompImageHDU):
                continue
            nrows = hdu.shape[0]
            for start, stop in ROW_RANGES:
                start, stop = start % nrows, nrows if stop is None else stop
                rows = rice_rows(file, hdu.fileinfo()["hdrLoc"], start, stop)
                if not taken:
                    assert rows is None
                    continue
                expected = hdu.section[start:stop]
                assert rows.dtype == expected.dtype
                np.testing.assert_array_equal(rows, expected)


@pytest.mark.parametrize("dtype", ["int32", "int16", "uint8"])
def test_integer_images(tmp_path, dtype):
    data = (RNG.normal(size=(50, 70)) * 30 + (100 if dtype == "uint8" else 0)).astype(dtype)
    if dtype == "int32":
        data[3, 4:6] = 2**31 - 1, -(2**31)  # the extremes of the stored width
    path = tmp_path / "image.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1")]
                 ).writeto(path)
    _compare(path)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("dither", [1, 2, -1], ids=["dither-1", "dither-2", "no-dither"])
def test_quantised_float_images(tmp_path, dtype, dither):
    data = (RNG.normal(size=(30, 2500)) * 5).astype(dtype)  # > 10,000 values: the table wraps
    data[10, 10] = np.nan
    data[11, :5] = 0.0
    path = tmp_path / "image.fz"
    compressed = fits.CompImageHDU(data, compression_type="RICE_1", quantize_level=4.0,
                                   quantize_method=dither, dither_seed=1234)
    fits.HDUList([fits.PrimaryHDU(), compressed]).writeto(path)
    _compare(path)


def test_what_it_does_not_take_is_read_by_astropy(tmp_path):
    unsigned = tmp_path / "unsigned.fz"  # BZERO: astropy's section returns uint16
    data = (RNG.normal(size=(20, 30)) * 30 + 40000).astype("uint16")
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1")]
                 ).writeto(unsigned)
    gzip = tmp_path / "gzip.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="GZIP_2")]
                 ).writeto(gzip)
    for path in (unsigned, gzip):
        _compare(path, taken=False)
        (amp,) = scan_file(path).amps
        np.testing.assert_array_equal(read_raw_rows(amp, 0, amp.nrows), data)


def test_the_real_damicm_file(real_data):
    _compare(real_data / DAMICM)


def test_a_corrupt_tile_is_a_bad_file(tmp_path):
    data = (RNG.normal(size=(40, 500)) * 30).astype("int32")
    path = tmp_path / "image.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1")]
                 ).writeto(path)
    (amp,) = scan_file(path).amps
    raw = bytearray(path.read_bytes())
    with fits.open(path) as hdul:
        heap = hdul[1].fileinfo()["datLoc"] + 8 * 40  # the table: 40 tiles of 2 descriptors
    raw[heap + 2000:heap + 2600] = bytes(600)  # zeros: codes running past their tile
    path.write_bytes(raw)
    with pytest.raises(BadFileError, match="cannot be decompressed") as caught:
        read_raw_rows(amp, 0, amp.nrows)
    assert str(caught.value).startswith(str(path))
