"""``skipperdask run`` with the seed's flags, and ``skipperdask demo``, in-process on a real local
cluster (``--address``); the example script runs on the catalogue the demo writes."""

import importlib.util
import os
import re
import shutil

import pytest
import xarray as xr

from skipperdask.catalogue import SEED_COLUMNS
from skipperdask.cli import build_parser, main
from skipperdask.simulate import Truth, simulate_campaign, write_image

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SMALL = {"nrows": 30, "ncols": 60, "nskips": 8}
REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPOSITORY, "examples", "follow_up.py")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Img_1, Img_2, Img_10, and files the default pattern leaves out; a copy per test."""
    directory = tmp_path_factory.mktemp("images")
    simulate_campaign(directory, 2, **SMALL)
    write_image(directory / "Img_10.fits", Truth(**SMALL, seed=10))
    write_image(directory / "Avg_Img_3.fits", Truth(**SMALL, averaged=True, seed=3))
    write_image(directory / "Other_1.fits", Truth(**SMALL, seed=11))
    return directory


@pytest.fixture
def campaign(images, tmp_path):
    directory = tmp_path / "run"
    shutil.copytree(images, directory)
    return directory


def run(capsys, address, *args):
    status = main(["run", *args, "--address", address, "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0, out
    return out


def table_files(path):
    """The first token of each data line of a seed table, as the seed reads it back."""
    with open(path) as f:
        lines = f.read().splitlines()
    assert lines[0].split() == list(SEED_COLUMNS)
    return [os.path.basename(line.split()[0]) for line in lines[3:]]  # header, units, dashes


def test_default_pattern_output_and_catalogue(campaign, address, capsys, monkeypatch):
    monkeypatch.chdir(campaign)  # -d defaults to the current directory
    out = run(capsys, address)
    assert "Dask dashboard: http://127.0.0.1:" in out
    assert "3 images ok, 0 failed, 0 skipped" in out
    # natural order, Img_[0-9]+.fits only
    assert table_files(campaign / "img_preproc_out.txt") == ["Img_1.fits", "Img_2.fits",
                                                             "Img_10.fits"]
    with xr.open_zarr(campaign / "img_preproc_out.zarr") as ds:
        assert sorted(map(os.path.basename, ds.path.values)) == [
            "Img_1.fits", "Img_10.fits", "Img_2.fits"]
    assert (campaign / "img_preproc_out.csv").is_file()


def test_the_live_page_is_printed_beside_the_dashboard(campaign, address, capsys):
    out = run(capsys, address, "-d", str(campaign))
    assert re.search(r"Dask dashboard: http://127\.0\.0\.1:\d+/status\n"
                     r"Live page: http://127\.0\.0\.1:\d+/\n", out), out
    assert "Live page" not in run(capsys, address, "-d", str(campaign), "-a", "--no-live-page")


def test_rerun_skips_and_all_reprocesses(campaign, address, capsys):
    run(capsys, address, "-d", str(campaign))
    assert "0 images ok, 0 failed, 3 skipped" in run(capsys, address, "-d", str(campaign))
    assert "3 images ok, 0 failed, 0 skipped" in run(capsys, address, "-d", str(campaign), "-a")
    with xr.open_zarr(campaign / "img_preproc_out.zarr") as ds:
        assert ds.sizes["image"] == 3
    assert len(table_files(campaign / "img_preproc_out.txt")) == 3


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["Img_[12].fits"], ["Img_1.fits", "Img_2.fits"]),  # a regex
        (["*_1.fits"], ["Img_1.fits", "Other_1.fits"]),  # a wildcard
        (["Avg.*", "Img_1.fits", "Img_[1].fits"], ["Img_1.fits", "Avg_Img_3.fits"]),  # once each
    ],
)
def test_filenames_regex_and_wildcards(campaign, address, capsys, patterns, expected):
    run(capsys, address, "-d", str(campaign), "-o", "table.txt", "-f", *patterns)
    assert sorted(table_files(campaign / "table.txt")) == sorted(expected)


def test_absolute_output_and_catalogue_path(campaign, address, capsys, tmp_path):
    output = tmp_path / "tables" / "mine.txt"
    output.parent.mkdir()
    store = tmp_path / "store" / "cat.zarr"
    run(capsys, address, "-d", str(campaign), "-o", str(output), "--catalogue", str(store))
    assert len(table_files(output)) == 3
    assert not (campaign / "img_preproc_out.txt").exists()
    with xr.open_zarr(store) as ds:
        assert ds.sizes["image"] == 3


def test_print_shows_the_table_and_writes_none(campaign, address, capsys):
    out = run(capsys, address, "-d", str(campaign), "-p")
    assert not (campaign / "img_preproc_out.txt").exists()
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["filename"])
    assert lines[header].split() == list(SEED_COLUMNS)
    assert [os.path.basename(line.split()[0]) for line in lines[header + 3:]] == [  # units, dashes
        "Img_1.fits", "Img_2.fits", "Img_10.fits"]


def test_recursive_writes_one_table_per_directory(campaign, address, capsys):
    sub = campaign / "night2"
    sub.mkdir()
    shutil.copy(campaign / "Img_1.fits", sub / "Img_7.fits")
    run(capsys, address, "-d", str(campaign), "-r")
    assert table_files(campaign / "img_preproc_out.txt") == ["Img_1.fits", "Img_2.fits",
                                                             "Img_10.fits"]
    assert table_files(sub / "img_preproc_out.txt") == ["Img_7.fits"]
    with xr.open_zarr(campaign / "img_preproc_out.zarr") as ds:
        assert ds.sizes["image"] == 4


def test_no_matching_file_is_an_error(tmp_path, address, capsys):
    assert main(["run", "-d", str(tmp_path), "--address", address, "--no-progress"]) == 1
    assert "no file matches" in capsys.readouterr().err


def _subcommand(name):
    parser = build_parser()
    actions = parser._subparsers._group_actions[0]  # argparse keeps subparsers here
    return actions.choices[name]


@pytest.mark.parametrize("command", ["run", "demo"])
def test_help_lists_every_option(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in _subcommand(command)._actions:
        assert action.help, action.dest
        for option in action.option_strings:
            assert re.search(rf"(^|[\s,\[]){re.escape(option)}\b", text), option
    if command == "run":
        for flag in ("-f", "--filenames", "-o", "--output", "-d", "--directory", "-a", "--all",
                     "-r", "--recursive", "-p", "--print", "-h", "--help", "--catalogue",
                     "--address", "--scheduler-file", "--workers"):
            assert flag in text


def _load_example():
    spec = importlib.util.spec_from_file_location("follow_up", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_end_to_end_then_the_follow_up_example(tmp_path, address, capsys):
    directory = tmp_path / "demo"
    assert main(["demo", str(directory), "-n", "3", "--address", address, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Dask dashboard: http://127.0.0.1:" in out
    # three clean images, one with tracks, one with charge loss, one truncated file
    assert "5 images ok, 1 failed, 0 skipped" in out
    comparison = re.findall(r"^(Img_\d+\.fits)\s+([\d.]+) \(([\d.]+)\)\s+([\d.]+) \(([\d.]+)\)",
                            out, flags=re.MULTILINE)
    assert len(comparison) == 3
    for _, gain, true_gain, noise, true_noise in comparison:
        assert float(gain) == pytest.approx(float(true_gain), rel=0.05)
        assert float(noise) == pytest.approx(float(true_noise), rel=0.15)
    assert len(table_files(directory / "img_preproc_out.txt")) == 6
    with xr.open_zarr(directory / "img_preproc_out.zarr") as catalogue:
        by_name = {os.path.basename(str(p)): i for i, p in enumerate(catalogue.path.values)}
        problems = catalogue.isel(amp=0).load()
    assert float(problems.tailRatio[by_name["Img_101.fits"]]) > 10
    assert float(problems.dSdskip[by_name["Img_102.fits"]]) < -10
    assert "truncated" in str(problems.error[by_name["Img_103.fits"]].values)

    figure = tmp_path / "follow_up.png"
    follow_up = _load_example()
    store = str(directory / "img_preproc_out.zarr")
    assert follow_up.main([store, "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    assert "6 images (5 ok)" in out
    assert figure.stat().st_size > 10_000


def test_follow_up_flags_failed_files_and_handles_amplifiers(tmp_path, address, capsys):
    simulate_campaign(tmp_path, 3, **SMALL)
    write_image(tmp_path / "Img_4.fits", Truth(**SMALL, namps=2, seed=4))
    (tmp_path / "Img_5.fits").write_bytes(b"not a FITS file at all" * 200)
    run(capsys, address, "-d", str(tmp_path))
    follow_up = _load_example()
    with xr.open_zarr(tmp_path / "img_preproc_out.zarr") as ds:
        flags = follow_up.flagged_images(ds.load())
    failed = [f for f in flags if f[2].startswith("failed")]
    assert [os.path.basename(f[0]) for f in failed] == ["Img_5.fits"]
    assert follow_up.main([str(tmp_path / "img_preproc_out.zarr"),
                           "--figure", str(tmp_path / "f.png")]) == 0
    out = capsys.readouterr().out
    assert "5 images (4 ok)" in out and "Img_5.fits" in out


def test_bad_entries_are_named_and_the_good_files_processed(campaign, address, capsys):
    """Issue 14: a looping symlink, a FIFO, a directory named like an image, a missing -f
    file and a file that is no FITS: the good files are processed, each bad one named."""
    os.symlink("Img_7.fits", campaign / "Img_7.fits")
    os.mkfifo(campaign / "Img_8.fits")
    (campaign / "Img_9.fits").mkdir()
    (campaign / "Img_11.fits").write_text("not a FITS file")
    status = main(["run", "-d", str(campaign), "-f", r"Img_[0-9]+.fits$", "Img_12.fits",
                   "--address", address, "--no-progress"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert [line.split(":")[1].strip().rsplit("/", 1)[1] for line in warnings] == [
        "Img_7.fits", "Img_8.fits", "Img_9.fits", "Img_12.fits"]
    assert "3 images ok, 1 failed, 0 skipped" in captured.out
    assert "4 not processed (warnings above)" in captured.out
    failed = [line for line in captured.err.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and "Img_11.fits: not a FITS file" in failed[0]
    assert "Traceback" not in captured.err


def test_a_misspelled_directory_fails_at_once(tmp_path, capsys):
    assert main(["run", "-d", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such directory" in capsys.readouterr().err


def test_fz_files_get_a_hint(tmp_path, capsys):
    write_image(tmp_path / "run3_1.fz", Truth(**SMALL, seed=1))
    assert main(["run", "-d", str(tmp_path)]) == 1
    assert "try -f '*.fz'" in capsys.readouterr().err


def test_demo_says_how_many_files_and_cleans_its_temporary_images(tmp_path, address, capsys,
                                                                 monkeypatch):
    """Issue 14: it said "Simulating 12 images" and processed 15; it left 113 MB in /tmp."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["demo", "-n", "2", "--address", address, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "Simulating 2 clean images and 3 with problems (5 files)" in out
    assert "4 images ok, 1 failed" in out
    assert "--keep-open" in out
    (directory,) = tmp_path.glob("skipperdask-demo-*")
    assert not list(directory.glob("*.fits"))
    assert (directory / "img_preproc_out.zarr").exists()
    assert (directory / "report").is_dir()
