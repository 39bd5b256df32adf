"""``skipperdask watch`` as a user runs it (a process of its own on a running cluster, stopped
with Ctrl-C), ``run --on-alert``, and ``skipperdask demo --live``."""

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from skipperdask.cli import main
from skipperdask.simulate import Truth, write_image
from skipperdask.simulate.daq import write_in_pieces

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

IMAGE = {"nrows": 64, "ncols": 128, "nskips": 20}


def _recorder(tmp_path):
    """An alert command: a shell script appending its arguments, one alert a line."""
    script, log = tmp_path / "on-alert.sh", tmp_path / "alerts.txt"
    script.write_text(f'#!/bin/sh\nprintf "%s|%s|%s\\n" "$1" "$2" "$SKIPPERDASK_REASON" >> {log}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def _wait_for(condition, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_watch_alerts_then_ctrl_c_ends_it_with_one_line(address, tmp_path):
    daq = tmp_path / "daq"
    daq.mkdir()
    write_image(daq / "Img_1.fits", Truth(**IMAGE, seed=1))
    script, log = _recorder(tmp_path)
    environment = {**os.environ, "DASK_SKIPPERDASK__WATCH__POLL_SECONDS": "0.1",
                   "DASK_SKIPPERDASK__WATCH__SETTLE_SECONDS": "0.3"}
    watching = subprocess.Popen(
        [sys.executable, "-m", "skipperdask", "watch", str(daq), "--address", address,
         "--on-alert", f"{script}"], env=environment, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        source = write_image(tmp_path / "Img_2.fits", Truth(**IMAGE, tracks=10, seed=2))
        write_in_pieces(source, daq / "Img_2.fits", pieces=4, pause=0.1)
        _wait_for(lambda: log.exists() and "Img_2.fits" in log.read_text())
        _wait_for(lambda: os.path.exists(daq / "img_preproc_out.csv"))
        watching.send_signal(signal.SIGINT)
        out, err = watching.communicate(timeout=30)
    finally:
        watching.kill()
    assert watching.returncode == 130, err
    assert f"Watching {daq} (file-system events)" in out
    [alert] = [line for line in out.splitlines() if line.startswith("alert:")]
    assert alert.startswith(f"alert: {daq / 'Img_2.fits'} 0: tailRatio ")
    assert log.read_text().startswith(f"{daq / 'Img_2.fits'}|0|tailRatio ")
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"skipperdask watch: interrupted: 2 images committed to "
                     f"{daq / 'img_preproc_out.zarr'}; watch again to go on"], err


def test_run_prints_each_alert_and_runs_the_command(address, tmp_path, capsys):
    write_image(tmp_path / "Img_1.fits", Truth(**IMAGE, seed=1))
    write_image(tmp_path / "Img_2.fits", Truth(**IMAGE, charge_loss=0.03, dark_current=1.0,
                                                seed=2))
    script, log = _recorder(tmp_path)
    assert main(["run", "-d", str(tmp_path), "--address", address, "--no-progress",
                 "--on-alert", str(script)]) == 0
    out = capsys.readouterr().out
    assert [line.split(": ")[1] for line in out.splitlines() if line.startswith("alert:")] == [
        f"{tmp_path / 'Img_2.fits'} 0"] * 2
    assert [line.split("|")[:2] for line in log.read_text().splitlines()] == [
        [str(tmp_path / "Img_2.fits"), "0"]] * 2


def test_a_missing_alert_command_is_a_usage_error(tmp_path, capsys):
    assert main(["watch", str(tmp_path), "--on-alert", str(tmp_path / "nothing")]) == 2
    assert "no such program" in capsys.readouterr().err


def test_demo_live_watches_a_simulated_daq(address, tmp_path, capsys):
    assert main(["demo", str(tmp_path / "live"), "--live", "-n", "7", "--address", address]) == 0
    out = capsys.readouterr().out
    assert "Img_7.fits: many tracks" in out
    assert [line for line in out.splitlines() if line.startswith("alert:")] != []
    assert all("Img_7.fits" in line for line in out.splitlines() if line.startswith("alert:"))
    assert "7 images ok, 0 failed" in out
    assert sorted(os.listdir(tmp_path / "live")) == [
        *(f"Img_{i}.fits" for i in (1, 2, 3, 4, 5, 6, 7)), "img_preproc_out.csv",
        "img_preproc_out.zarr", "img_preproc_out.zarr.lock"]
