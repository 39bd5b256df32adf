"""The seed's file selection rules (SPEC §3, §4) and where its tables go."""

import os

import pytest

from skipperdask.campaign.files import seed_table_path, select_files, tables_for
from skipperdask.catalogue import natural_key
from tests.seed_table import read_processed_from_seed_table


@pytest.fixture
def campaign(tmp_path):
    """A directory of image-like files (empty: selection never opens them)."""
    names = [
        "Img_1.fits",
        "Img_2.fits",
        "Img_10.fits",
        "Img_1.fits.fz",
        "Img_a.fits",
        "img_3.fits",
        "Avg_Img_4.fits",
        "notes.txt",
        "sub/Img_5.fits",
        "sub/deeper/Img_6.fits",
        "run1/Img_7.fits",
        "run2/Img_8.fits",
    ]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "Img_9.fits").mkdir()  # a directory is never selected
    return tmp_path


def names(paths, root):
    return [os.path.relpath(p, root) for p in paths]


def test_natural_key_orders_numbers_by_value():
    assert sorted(["Img_10", "Img_2", "Img_1", "Img_a"], key=natural_key) == [
        "Img_1",
        "Img_2",
        "Img_10",
        "Img_a",
    ]


def test_default_pattern_is_the_seeds_regex_anchored_at_the_start(campaign):
    # re.match: Img_1.fits.fz matches too (anchored at the start only, as in the seed), while
    # Avg_Img_4.fits, img_3.fits and the directory Img_9.fits do not
    selected = select_files(directory=campaign)
    assert names(selected, campaign) == ["Img_1.fits", "Img_1.fits.fz", "Img_2.fits", "Img_10.fits"]
    assert all(os.path.isabs(p) for p in selected)


def test_regex_patterns(campaign):
    assert names(select_files([r"Img_\d\.fits$"], campaign), campaign) == [
        "Img_1.fits",
        "Img_2.fits",
    ]
    assert names(select_files(["Avg"], campaign), campaign) == ["Avg_Img_4.fits"]
    assert select_files(["Img_4"], campaign) == []  # no search inside the name


def test_shell_wildcards(campaign):
    assert names(select_files(["*.fits"], campaign), campaign) == [
        "Avg_Img_4.fits",
        "Img_1.fits",
        "Img_2.fits",
        "Img_10.fits",
        "Img_a.fits",
        "img_3.fits",  # case-sensitive, as `ls` in the C locale
    ]
    assert names(select_files(["Img_?.fits"], campaign), campaign) == [
        "Img_1.fits",
        "Img_2.fits",
        "Img_a.fits",
    ]


def test_a_named_file_is_that_file_only(campaign):
    assert names(select_files(["Img_1.fits"], campaign), campaign) == ["Img_1.fits"]
    absolute = str(campaign / "sub" / "Img_5.fits")
    assert select_files([absolute], "/") == [absolute]
    assert names(select_files(["sub/Img_5.fits"], campaign), campaign) == ["sub/Img_5.fits"]


def test_no_file_twice_and_natural_order_across_patterns(campaign):
    selected = select_files(
        ["Img_10.fits", r"Img_[0-9]+.fits$", "*.fits", "./Img_2.fits"], campaign
    )
    assert names(selected, campaign) == [
        "Avg_Img_4.fits",
        "Img_1.fits",
        "Img_2.fits",
        "Img_10.fits",
        "Img_a.fits",
        "img_3.fits",  # case-sensitive, as `ls` in the C locale
    ]


def test_recursive_walks_subdirectories(campaign):
    pattern = [r"Img_[0-9]+.fits$"]
    top = ["Img_1.fits", "Img_2.fits", "Img_10.fits"]
    assert names(select_files(pattern, campaign), campaign) == top
    assert names(select_files(pattern, campaign, recursive=True), campaign) == [
        *top,
        "run1/Img_7.fits",
        "run2/Img_8.fits",
        "sub/Img_5.fits",
        "sub/deeper/Img_6.fits",
    ]


def test_directory_part_of_a_pattern(campaign):
    assert names(select_files(["run*/Img_.*"], campaign), campaign) == [
        "run1/Img_7.fits",
        "run2/Img_8.fits",
    ]
    assert names(select_files([str(campaign / "sub" / "Img_[0-9]+")], "/"), campaign) == [
        "sub/Img_5.fits"
    ]


def test_seed_table_is_in_the_processed_directory_unless_absolute(tmp_path):
    assert seed_table_path(tmp_path) == str(tmp_path / "img_preproc_out.txt")
    assert seed_table_path(tmp_path, "out/t.txt") == str(tmp_path / "out" / "t.txt")
    assert seed_table_path(tmp_path / "sub", "/abs/t.txt") == "/abs/t.txt"


def test_tables_for_groups_files_by_directory_unless_output_is_absolute(campaign):
    files = select_files([r"Img_[0-9]+.fits$"], campaign, recursive=True)
    groups = tables_for(files, "t.txt")
    assert {names([t], campaign)[0]: names(f, campaign) for t, f in groups.items()} == {
        "t.txt": ["Img_1.fits", "Img_2.fits", "Img_10.fits"],
        "run1/t.txt": ["run1/Img_7.fits"],
        "run2/t.txt": ["run2/Img_8.fits"],
        "sub/t.txt": ["sub/Img_5.fits"],
        "sub/deeper/t.txt": ["sub/deeper/Img_6.fits"],
    }
    one = tables_for(files, str(campaign / "all.txt"))
    assert list(one) == [str(campaign / "all.txt")] and one[str(campaign / "all.txt")] == files


def test_read_processed_from_seed_table(tmp_path):
    table = tmp_path / "img_preproc_out.txt"
    table.write_text(
        "filename                nskips    aveImgS  dSdskip\n"
        "--------------------  --------  ---------  ---------------\n"
        "/data/Img_1.fits             1      5.937  -1 +/- -1\n"
        "\n"
        "/data/Img_10.fits         4000      1.933  0.012 +/- 0.11\n"
    )
    assert read_processed_from_seed_table(table) == {"/data/Img_1.fits", "/data/Img_10.fits"}
    assert read_processed_from_seed_table(tmp_path / "absent.txt") == set()
