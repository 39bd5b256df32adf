"""A FITS file is whole when its headers' declared sizes, padding included, end where it
ends: every prefix of a file being written is not, whatever its HDUs (compressed ones too)."""

import pytest
from astropy.io import fits

from skipperdask.io.completeness import BLOCK, fits_extent
from skipperdask.simulate import Truth, write_image

SMALL = {"nrows": 10, "ncols": 20, "nskips": 3}


def _hdu_ends(path):
    with fits.open(path) as hdus:
        return [info["datLoc"] + info["datSpan"] for info in (h.fileinfo() for h in hdus)]


@pytest.mark.parametrize("truth", [
    Truth(**SMALL), Truth(**SMALL, namps=4), Truth(**SMALL, namps=2, compressed=True),
], ids=["primary", "four-extensions", "compressed"])
def test_a_prefix_is_whole_only_where_an_hdu_ends(tmp_path, truth):
    path = write_image(tmp_path / "whole.fits", truth)
    data = path.read_bytes()
    assert fits_extent(path) == (len(data), len(data), truth.namps + (truth.namps > 1 or
                                                                       truth.compressed), "")
    ends = set(_hdu_ends(path))
    cut = tmp_path / "cut.fits"
    for size in sorted({*range(0, len(data), 313), *(e - 1 for e in ends), *ends}):
        cut.write_bytes(data[:size])
        extent = fits_extent(cut)
        assert extent.complete == (size in ends), (size, extent)
        assert extent.size == size and (extent.complete or extent.declared >= size)


def test_nextend_asks_for_every_extension(tmp_path):
    path = tmp_path / "four.fits"
    write_image(path, Truth(**SMALL, namps=4), header={"NEXTEND": 4})
    data = path.read_bytes()
    first_two = _hdu_ends(path)[2]
    path.write_bytes(data[:first_two])
    assert fits_extent(path).problem == "2 of the 4 extensions (NEXTEND) are written"
    path.write_bytes(data)
    assert fits_extent(path).complete


def test_what_is_no_fits_file_is_left_to_the_reading(tmp_path):
    path = tmp_path / "notes.fits"
    path.write_bytes(b"not a FITS file at all" * 200)
    assert fits_extent(path).complete
    path.write_bytes(b"SIMPLE  =")
    assert fits_extent(path).problem.startswith("no whole header yet")
    assert BLOCK == 2880


@pytest.mark.real_data
def test_real_files_are_whole_and_their_prefixes_not(real_data, tmp_path):
    for source in sorted(real_data.glob("*.f*")):
        assert fits_extent(source).complete, source
        with open(source, "rb") as f:
            head = f.read(3 * BLOCK + 7)
        cut = tmp_path / source.name
        cut.write_bytes(head)
        assert not fits_extent(cut).complete, source
