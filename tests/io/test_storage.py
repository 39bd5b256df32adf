"""Input files on an object store (a real S3 server on loopback): their headers and rows are
read by byte range, a row chunk fetching its own bytes only, and give what the local file
gives."""

import dataclasses

import numpy as np
import pytest
import xarray as xr

import skipperdask
from skipperdask.config import Options
from skipperdask.errors import BadFileError, BadOptionError
from skipperdask.io.layout import scan_file
from skipperdask.io.rows import read_raw_rows
from skipperdask.io.storage import (
    HEADER_BLOCK,
    absolute,
    dirname,
    filesystem,
    is_url,
    join,
    location,
)
from skipperdask.simulate import Truth, write_image


@pytest.mark.parametrize(("given", "kept"), [
    ("s3://bucket/a/../b//Img_1.fits", "s3://bucket/b/Img_1.fits"),
    ("S3://bucket/campaign/", "s3://bucket/campaign"),
    ("file:///data/Img_1.fits", "/data/Img_1.fits"),
    ("data/Img_1.fits", "data/Img_1.fits"),
])
def test_a_url_is_normalised_and_a_file_url_is_a_path(given, kept):
    assert location(given) == kept
    assert is_url(given) == kept.startswith("s3://")


def test_urls_join_and_split_as_paths_do():
    assert join("s3://bucket/campaign", "run1", "Img_1.fits") == "s3://bucket/campaign/run1/Img_1.fits"
    assert join("s3://bucket/campaign", "s3://other/out.txt") == "s3://other/out.txt"
    assert join("/data", "s3://other/out.txt") == "s3://other/out.txt"
    assert dirname("s3://bucket/campaign/Img_1.fits") == "s3://bucket/campaign"
    assert absolute("s3://bucket/x/./y") == "s3://bucket/x/y"


def test_a_protocol_without_its_file_system_is_a_bad_option():
    with pytest.raises(BadOptionError, match="no file system for nosuchfs://"):
        filesystem("nosuchfs://bucket/Img_1.fits")


@pytest.fixture(scope="module")
def uploaded(s3, tmp_path_factory):
    """A raw image of 1.3 MB and a compressed one, on disk and in a bucket."""
    directory = tmp_path_factory.mktemp("files")
    raw = write_image(directory / "Img_1.fits", Truth(nrows=200, ncols=100, nskips=16, seed=1))
    packed = write_image(directory / "Img_2.fits.fz",
                         Truth(nrows=40, ncols=80, nskips=8, compressed=True, seed=2))
    bucket = s3.new_bucket()
    fs = s3.filesystem()
    for path in (raw, packed):
        fs.put_file(str(path), f"{bucket}/campaign/{path.name}")
    return {path.name: (str(path), f"s3://{bucket}/campaign/{path.name}") for path in (raw, packed)}


def test_headers_are_read_by_range_and_give_the_local_layout(s3, uploaded):
    local, url = uploaded["Img_1.fits"]
    key = url.removeprefix("s3://")
    before = s3.served[key]
    remote = scan_file(url, storage_options=s3.storage_options)
    fetched = s3.served[key] - before
    on_disk = scan_file(local)
    assert remote.path == url and remote.size == on_disk.size
    assert remote.primary_header == on_disk.primary_header
    assert [(a.hdu, a.name, a.nrows, a.ncols, a.nskips, a.data_offset, a.dtype)
            for a in remote.amps] == [(a.hdu, a.name, a.nrows, a.ncols, a.nskips,
                                       a.data_offset, a.dtype) for a in on_disk.amps]
    assert 0 < fetched <= 2 * HEADER_BLOCK < remote.size / 4
    assert "testing" not in repr(remote)  # the storage options (credentials) are never shown


@pytest.mark.parametrize("name", ["Img_1.fits", "Img_2.fits.fz"])
def test_remote_headers_are_read_without_astropy(s3, uploaded, name, monkeypatch):
    from astropy.io import fits

    local, url = uploaded[name]
    on_disk = scan_file(local)

    def refused(*args, **kwargs):
        raise AssertionError("astropy opened the file")

    monkeypatch.setattr(fits, "open", refused)
    remote = scan_file(url, storage_options=s3.storage_options)
    assert remote.amps == tuple(dataclasses.replace(amp, path=url) for amp in on_disk.amps)


def test_a_row_chunk_fetches_exactly_its_own_bytes(s3, uploaded):
    local, url = uploaded["Img_1.fits"]
    key = url.removeprefix("s3://")
    amp = scan_file(url, storage_options=s3.storage_options).amps[0]
    before = s3.served[key]
    rows = read_raw_rows(amp, 37, 61)
    assert s3.served[key] - before == 24 * amp.row_bytes
    np.testing.assert_array_equal(rows, read_raw_rows(scan_file(local).amps[0], 37, 61))


@pytest.mark.parametrize("name", ["Img_1.fits", "Img_2.fits.fz"])
def test_metrics_of_a_remote_file_are_those_of_the_local_file(s3, uploaded, name):
    local, url = uploaded[name]
    options = Options.from_config().updated(storage_options=s3.storage_options)
    remote = skipperdask.image_metrics(skipperdask.open_image(url, options=options))
    on_disk = skipperdask.image_metrics(skipperdask.open_image(local))
    xr.testing.assert_allclose(remote.drop_vars("path", errors="ignore"),
                               on_disk.drop_vars("path", errors="ignore"), rtol=1e-12)


def test_a_missing_remote_file_is_a_bad_file(s3, uploaded):
    _, url = uploaded["Img_1.fits"]
    with pytest.raises(BadFileError, match="Img_9.fits: cannot be read"):
        scan_file(url.replace("Img_1", "Img_9"), storage_options=s3.storage_options)
