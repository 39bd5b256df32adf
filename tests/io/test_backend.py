import io
import pickle

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from xarray.core import indexing

from skipperdask.io import array, scan_file
from skipperdask.io.array import PixelArray
from skipperdask.io.backend import SkipperBackendEntrypoint

NROWS, NCOLS, NSKIPS = 12, 5, 3


def write_raw_image(path, seed):
    """Two named amplifiers of int16 samples with BZERO = 32768 (stored as uint16); returns
    the values, ``(amp, row, col, skip)``."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 65535, (2, NROWS, NCOLS * NSKIPS)).astype(np.uint16)
    primary = fits.PrimaryHDU()
    primary.header.update(NDCMS=NSKIPS, RUNID=f"run {seed}", EXPTIME=1.5, CCDON=True)
    primary.header["COMMENT"] = "a comment card"
    hdus = [fits.ImageHDU(amp, name=name) for amp, name in zip(values, ["L", "U"], strict=True)]
    fits.HDUList([primary, *hdus]).writeto(path)
    return values.reshape(2, NROWS, NCOLS, NSKIPS)


@pytest.fixture
def raw_image(tmp_path):
    path = tmp_path / "Img_7.fits"
    return path, write_raw_image(path, 7)


@pytest.fixture
def read_ranges(monkeypatch):
    """Every (amp, row_start, row_stop) the backend reads."""
    ranges = []
    read = array.read_raw_rows

    def recording_read(amp, row_start, row_stop, out=None):
        ranges.append((amp.name, row_start, row_stop))
        return read(amp, row_start, row_stop, out)

    monkeypatch.setattr(array, "read_raw_rows", recording_read)
    return ranges


def test_open_dataset_is_lazy_and_labelled(raw_image, read_ranges):
    path, values = raw_image
    ds = xr.open_dataset(path, engine="skipperdask")
    assert read_ranges == []
    assert ds.pixels.dims == ("amp", "row", "col", "skip")
    assert ds.pixels.dtype == np.uint16
    assert list(ds.amp.values) == ["L", "U"]
    assert list(ds.hdu.values) == [1, 2]
    np.testing.assert_array_equal(ds.skip, np.arange(NSKIPS))

    np.testing.assert_array_equal(ds.pixels.sel(amp="U", row=4).values, values[1, 4])
    assert read_ranges == [("U", 4, 5)]


def test_header_values_are_dataset_attributes(raw_image):
    path, _ = raw_image
    ds = xr.open_dataset(path, engine="skipperdask")
    assert ds.attrs["RUNID"] == "run 7"
    assert ds.attrs["EXPTIME"] == 1.5
    assert ds.attrs["CCDON"] == 1 and type(ds.attrs["CCDON"]) is int
    assert "COMMENT" not in ds.attrs
    assert ds.pixels.attrs["polarity"] == -1
    assert ds.pixels.attrs["amp_headers"]["U"]["EXTNAME"] == "U"
    assert xr.open_dataset(path, engine="skipperdask", polarity=1).pixels.attrs["polarity"] == 1


def test_chunked_open_dataset(raw_image):
    path, values = raw_image
    ds = xr.open_dataset(path, engine="skipperdask", chunks={})
    assert ds.pixels.chunks == ((1, 1), (NROWS,), (NCOLS,), (NSKIPS,))
    ds = xr.open_dataset(path, engine="skipperdask", chunks={"row": 5})
    assert ds.pixels.chunks == ((1, 1), (5, 5, 2), (NCOLS,), (NSKIPS,))
    np.testing.assert_array_equal(ds.pixels.values, values)


@pytest.mark.parametrize(
    "key",
    [
        (1, slice(None, None, -3), slice(2, 7, 2), 0),
        (slice(None), slice(3, 3), slice(None), slice(None)),
        (slice(0, 0), slice(None), 1, slice(None)),
        (0, 11, -1, 2),
        (slice(None), [7, 1, 3], slice(None), [2, 0]),
        (slice(None, None, -1), slice(1, None, 4), [4, 0], slice(1, 2)),
    ],
)
def test_indexing_matches_numpy(raw_image, key):
    path, values = raw_image
    pixels = xr.open_dataset(path, engine="skipperdask").pixels.variable
    expected = values
    for axis in reversed(range(4)):  # xarray indexes each dimension on its own
        expected = expected[(slice(None),) * axis + (key[axis],)]
    np.testing.assert_array_equal(pixels[key].values, expected)


def test_pixel_array_pickles_without_a_file_handle(raw_image):
    path, values = raw_image
    array = pickle.loads(pickle.dumps(PixelArray(scan_file(path))))
    key = indexing.BasicIndexer((slice(None), slice(2, 4), 1, slice(None)))
    np.testing.assert_array_equal(array[key], values[:, 2:4, 1])


def test_drop_variables(raw_image):
    path, _ = raw_image
    ds = xr.open_dataset(path, engine="skipperdask", drop_variables="pixels")
    assert "pixels" not in ds and ds.sizes["amp"] == 2


def test_open_mfdataset_stacks_images(tmp_path):
    paths = [tmp_path / f"Img_{i}.fits" for i in range(3)]
    values = [write_raw_image(path, i) for i, path in enumerate(paths)]
    ds = xr.open_mfdataset(
        paths,
        engine="skipperdask",
        combine="nested",
        concat_dim="image",
    )
    assert ds.pixels.dims == ("image", "amp", "row", "col", "skip")
    np.testing.assert_array_equal(ds.pixels.values, np.stack(values))


def test_engine_is_registered_and_recognises_fits_names(tmp_path):
    engine = xr.backends.list_engines()["skipperdask"]
    assert isinstance(engine, SkipperBackendEntrypoint)
    for name in ["a.fits", "b.fz", "c.fits.fz", "D.FITS"]:
        assert engine.guess_can_open(tmp_path / name)
    for name in ["a.nc", "b.zarr", "fits.txt"]:
        assert not engine.guess_can_open(tmp_path / name)
    assert not engine.guess_can_open(io.BytesIO(b"SIMPLE"))


def test_file_objects_are_refused(raw_image):
    path, _ = raw_image
    with pytest.raises(TypeError, match="by path"):
        SkipperBackendEntrypoint().open_dataset(io.BytesIO(path.read_bytes()))
