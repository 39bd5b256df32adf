"""Faults a user meets (issue 14): Ctrl-C in the middle of a run, a full disk. Each ends in
one line saying what happened and leaves the catalogue safe."""

import errno
import os
import signal
import subprocess
import sys
import time

import pytest
import xarray as xr

from skipperdask.cli import main
from skipperdask.simulate import simulate_campaign

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


#: small images, so many that a run on two workers lasts well past its first commit (5 s of
#: results) on any machine: each costs a worker 10-20 ms whatever its size
IMAGES = 800


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """Enough images that a run on two workers lasts several seconds."""
    directory = tmp_path_factory.mktemp("campaign")
    simulate_campaign(directory, IMAGES, nrows=20, ncols=30, nskips=4)
    return directory


def test_ctrl_c_ends_at_once_in_one_line_and_the_catalogue_resumes(campaign):
    command = [sys.executable, "-m", "skipperdask", "run", "-d", str(campaign), "--workers",
               "2", "--dashboard-address", "127.0.0.1:0", "--no-progress"]
    # its own process group, as a terminal's Ctrl-C reaches the workers too
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    store = campaign / "img_preproc_out.zarr"
    started = time.perf_counter()
    while not store.exists() and time.perf_counter() - started < 60:
        time.sleep(0.05)  # the first commit (after 5 s of results), the run going on
    assert run.poll() is None, "the run ended before it could be interrupted"
    pressed = time.perf_counter()
    os.killpg(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=60)
    seconds = time.perf_counter() - pressed
    assert run.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("skipperdask run: interrupted: ")
    assert lines[0].endswith(f"images committed to {campaign / 'img_preproc_out.zarr'}; "
                             "run again to resume")
    committed = int(lines[0].split("interrupted: ")[1].split()[0])
    assert 0 < committed < IMAGES
    assert seconds < 2.5, seconds  # 2 s asked, 0.8 s measured; margin for a loaded machine
    with xr.open_zarr(store) as catalogue:
        assert catalogue.sizes["image"] == committed
    # run again: the rest, each image once
    subprocess.run(command, capture_output=True, check=True, timeout=300)
    with xr.open_zarr(store) as catalogue:
        assert catalogue.sizes["image"] == IMAGES
        assert len(set(catalogue.path.values.tolist())) == IMAGES


def test_a_full_disk_ends_in_one_line_naming_the_catalogue(campaign, tmp_path, capsys,
                                                            monkeypatch):
    from skipperdask.catalogue import Catalogue

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Catalogue, "add", full)
    catalogue = tmp_path / "full.zarr"
    status = main(["run", "-d", str(campaign), "-f", "Img_1.fits", "--catalogue",
                   str(catalogue), "--workers", "1", "--dashboard-address", "127.0.0.1:0",
                   "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"skipperdask run: {catalogue}: No space left on device")
    assert "run again" in lines[0]
