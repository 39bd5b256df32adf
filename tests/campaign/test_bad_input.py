"""Bad input never breaks a campaign (issue 14): every bad entry or file is named with its
problem in one line, never opened when it is not a regular file, never a crash or a hang."""

import gzip
import os
import pathlib

import numpy as np
import pytest
from astropy.io import fits

import skipperdask
from skipperdask.campaign.files import files_to_process, find_files, select_files
from skipperdask.errors import BadFileError, BadOptionError
from skipperdask.io import scan_file

RNG = np.random.default_rng(14)


def write(path, data=None, header=None, names=("A", "B"), compressed=False):
    """A small two-amplifier image, with primary ``header`` cards."""
    data = RNG.normal(1000, 5, (20, 64)).astype(np.float32) if data is None else data
    primary = fits.PrimaryHDU()
    for key, value in (header or {}).items():
        primary.header[key] = value
    kind = fits.CompImageHDU if compressed else fits.ImageHDU
    fits.HDUList([primary, *(kind(data, name=name) for name in names)]).writeto(path)
    return str(path)


def with_card(path, card):
    """The file with one more card in its first extension's header (astropy refuses to
    write the bad values themselves)."""
    raw = bytearray(pathlib.Path(path).read_bytes())
    end = raw.find(b"END" + b" " * 77, 2880)
    raw[end:end + 160] = card.ljust(80).encode() + b"END".ljust(80)
    pathlib.Path(path).write_bytes(raw)
    return path


@pytest.fixture
def messy(tmp_path):
    """Good images among a looping and a broken symlink, a FIFO and a directory named like
    images."""
    write(tmp_path / "Img_1.fits")
    write(tmp_path / "Img_2.fits")
    os.symlink("Img_3.fits", tmp_path / "Img_3.fits")  # points at itself
    os.symlink("gone.fits", tmp_path / "Img_4.fits")
    os.mkfifo(tmp_path / "Img_5.fits")
    (tmp_path / "Img_6.fits").mkdir()
    return tmp_path


def test_bad_entries_are_rejected_with_their_problem_never_opened(messy):
    paths, rejected = find_files(directory=messy)
    assert [os.path.basename(p) for p in paths] == ["Img_1.fits", "Img_2.fits"]
    problems = {os.path.basename(r.path): r.problem for r in rejected}
    assert problems == {
        "Img_3.fits": "looping symbolic link (too many levels of symbolic links)",
        "Img_4.fits": "broken symbolic link (to gone.fits)",
        "Img_5.fits": "is a FIFO (named pipe), not a file",
        "Img_6.fits": "is a directory, not a file",
    }
    assert all("\n" not in str(r) and str(messy) in str(r) for r in rejected)


def test_a_missing_named_file_and_a_pattern_matching_nothing_are_rejected(messy):
    paths, rejected = find_files(["Img_1.fits", "Img_9.fits", r"Run_\d+"], messy)
    assert [os.path.basename(p) for p in paths] == ["Img_1.fits"]
    assert [(os.path.basename(r.path), r.problem) for r in rejected] == [
        ("Img_9.fits", "no such file"), (r"Run_\d+", "the pattern matches no file")]


def test_a_missing_or_file_directory_fails_at_once(messy):
    with pytest.raises(BadOptionError, match="no such directory"):
        select_files(directory=messy / "Img_1s")
    with pytest.raises(BadOptionError, match="is a file, not a directory"):
        select_files(directory=messy / "Img_1.fits")


def test_a_file_is_identified_by_its_real_path(messy, tmp_path_factory):
    link = tmp_path_factory.mktemp("links") / "campaign"
    os.symlink(messy, link)
    via_link = select_files(directory=link)
    assert via_link == select_files(directory=messy)
    assert via_link == [os.path.realpath(p) for p in via_link]
    with_prefix = select_files(["./Img_1.fits", "Img_1.fits"], messy)
    assert len(with_prefix) == 1

    class Empty:
        def processed(self):
            return {}

    todo, _ = files_to_process([str(link / "Img_1.fits"), str(messy / "./Img_1.fits")], Empty())
    assert todo == [os.path.realpath(messy / "Img_1.fits")]


def test_a_fifo_is_refused_by_scan_file_without_blocking(messy):
    with pytest.raises(BadFileError, match="not a regular file"):
        scan_file(messy / "Img_5.fits")


@pytest.mark.parametrize(("card", "problem"), [
    ("NDCMS   =                    T", "NDCMS=True is not a positive integer"),
    ("BSCALE  =                    0", "BSCALE=0"),
    ("BSCALE  = 'abc'", "BSCALE='abc' is not a number"),
])
def test_bad_header_values_name_the_file_and_the_keyword(tmp_path, card, problem):
    data = RNG.integers(0, 1000, (20, 64)).astype(np.int16)
    path = with_card(write(tmp_path / "Img_1.fits", data, names=("A",)), card)
    with pytest.raises(BadFileError, match=problem) as caught:
        scan_file(path)
    assert str(caught.value).startswith(path)


def test_two_amplifiers_with_one_extname_are_refused(tmp_path):
    path = write(tmp_path / "Img_1.fits", names=("A", "A"))
    with pytest.raises(BadFileError, match="same EXTNAME 'A'"):
        scan_file(path)


def test_an_empty_image_is_refused(tmp_path):
    path = write(tmp_path / "Img_1.fits", np.zeros((0, 64), np.float32))
    with pytest.raises(BadFileError, match="empty image"):
        scan_file(path)


def test_an_all_nan_image_says_so(tmp_path):
    path = write(tmp_path / "Img_1.fits", np.full((20, 64), np.nan, np.float32))
    with pytest.raises(BadFileError, match="no finite value") as caught:
        skipperdask.image_metrics(skipperdask.open_image(path)).compute()
    assert str(caught.value).startswith(path)


def test_a_corrupt_tile_names_the_file(tmp_path):
    data = RNG.normal(1000, 5, (50, 200)).astype(np.float32)
    path = write(tmp_path / "Img_1.fz", data, names=("A",), compressed=True)
    raw = bytearray(pathlib.Path(path).read_bytes())
    middle = len(raw) // 2
    raw[middle + 1000:middle + 1400] = bytes(400)
    pathlib.Path(path).write_bytes(raw)
    with pytest.raises(BadFileError, match="cannot be decompressed") as caught:
        skipperdask.image_metrics(skipperdask.open_image(path)).compute()
    assert str(caught.value).startswith(path)


def test_a_gzipped_fits_file_says_so(tmp_path):
    source = write(tmp_path / "Img_1.fits")
    path = tmp_path / "Img_1.fits.gz"
    path.write_bytes(gzip.compress(pathlib.Path(source).read_bytes()))
    with pytest.raises(BadFileError, match="gzip-compressed file: decompress it first"):
        scan_file(path)


def test_astropy_advice_does_not_leak(tmp_path):
    path = tmp_path / "Img_1.fits"
    path.write_text("hello")
    with pytest.raises(BadFileError) as caught:
        scan_file(path)
    message = str(caught.value)
    assert "ignore_missing_simple" not in message and "If this is really" not in message
    assert "\n" not in message
