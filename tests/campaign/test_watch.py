"""Watch mode on a real local cluster: a writer thread writes images slowly, in pieces with
pauses, while ``watch`` runs; each image is catalogued once, only whole; the alert command
runs for the problems only; a file never whole is given up on after the timeout; a restart
takes only what is new."""

import json
import os
import stat
import sys
import threading
import time

import numpy as np
import pytest

from skipperdask.campaign.arrivals import Arrivals, polls
from skipperdask.campaign.files import find_files, selects
from skipperdask.campaign.notify import AlertCommand
from skipperdask.campaign.watch import watch
from skipperdask.config import WatchOptions
from skipperdask.simulate import Truth, write_image
from skipperdask.simulate.daq import Planned, SimulatedDAQ

pytestmark = [pytest.mark.cluster]

IMAGE = {"nrows": 64, "ncols": 128, "nskips": 20}
FAST = WatchOptions.from_config(poll_seconds=0.1, settle_seconds=0.4, incomplete_seconds=2.0)


def _recorder(tmp_path):
    """An alert command: a script appending its arguments to a JSON-lines file."""
    script, log = tmp_path / "on-alert", tmp_path / "alerts.jsonl"
    script.write_text(f"#!{sys.executable}\nimport json, sys\n"
                      f"with open({str(log)!r}, 'a') as f:\n"
                      "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), log


def _entries(ds):
    return dict(zip(map(os.path.basename, ds.path.values), ds["size"].values, strict=True))


def test_watch_takes_each_image_once_whole_alerts_and_resumes(client, tmp_path):
    daq_dir = tmp_path / "daq"
    daq_dir.mkdir()
    catalogue = tmp_path / "cat.zarr"
    # one image there before the watch starts, the others written while it runs
    write_image(daq_dir / "Img_1.fits", Truth(**IMAGE, seed=1))
    plan = [Planned(f"Img_{i}.fits", Truth(**IMAGE, seed=i)) for i in range(2, 7)]
    plan += [Planned("Img_7.fits", Truth(**IMAGE, tracks=10, seed=7), "tracks"),
             Planned("Img_8.fits", Truth(**IMAGE, charge_loss=0.03, dark_current=1.0, seed=8),
                     "charge loss"),
             Planned("Img_9.fits", Truth(**IMAGE, seed=9), "", stall=1.0)]  # > settle-seconds
    daq = SimulatedDAQ(daq_dir, plan, interval=(0.1, 0.3), pieces=5, pause=0.05)
    # a file that never completes: its first half only, written as the watch starts
    never = write_image(tmp_path / "Img_10.fits", Truth(**IMAGE, seed=10))
    script, log = _recorder(tmp_path)
    alerts = []
    with AlertCommand(script) as command:
        def on_alert(alert):
            alerts.append(alert)
            command(alert)

        daq.start()
        (daq_dir / "Img_10.fits").write_bytes(never.read_bytes()[:400_000])
        ds = watch(daq_dir, catalogue, client=client, watch_options=FAST, on_alert=on_alert,
                   max_images=10, commit_seconds=0.5, patterns="Img_*.fits")
    daq.join()
    assert daq.error is None
    sizes = _entries(ds)
    # each image once, as big as the finished file: never taken half-written
    assert len(ds.path) == len(sizes) == 10
    for name, size in sizes.items():
        if name != "Img_10.fits":
            assert size == os.path.getsize(daq_dir / name), name
    failed = {os.path.basename(p) for p, s in zip(ds.path.values, ds.status.values,
                                                  strict=True) if s != "ok"}
    assert failed == {"Img_10.fits"}
    assert ds.attrs["summary"].startswith("9 images ok, 1 failed")
    # the alerts: the problems, the file given up on, nothing for the clean images
    flagged = {os.path.basename(a.path) for a in alerts}
    assert flagged == {"Img_7.fits", "Img_8.fits", "Img_10.fits"}
    given_up = [a.reason for a in alerts if a.reason.startswith("not whole")]
    assert len(given_up) == 1 and "taken as it is" in given_up[0]
    ran = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(ran) == sorted([list(a) for a in alerts])
    flags = dict(zip(map(os.path.basename, ds.path.values), ds.flags.isel(amp=0).values,
                     strict=True))
    assert {n for n, f in flags.items() if f} == flagged

    # a restart: two new images, and the given-up file completed meanwhile
    for i in (11, 12):
        write_image(daq_dir / f"Img_{i}.fits", Truth(**IMAGE, seed=i))
    (daq_dir / "Img_10.fits").write_bytes(never.read_bytes())
    before = dict(zip(ds.path.values, ds.committed.values, strict=True))
    again = watch(daq_dir, catalogue, client=client, watch_options=FAST, max_images=3,
                  commit_seconds=0.5, patterns="Img_*.fits")
    assert again.attrs["summary"].startswith("3 images ok, 0 failed")
    assert sorted(map(str, again.path.values)) == sorted({*map(str, ds.path.values),
                                                          str(daq_dir / "Img_11.fits"),
                                                          str(daq_dir / "Img_12.fits")})
    assert set(again.status.values) == {"ok"}
    redone = {os.path.basename(p) for p, c in zip(again.path.values, again.committed.values,
                                                  strict=True) if before.get(p) != c}
    assert redone == {"Img_10.fits", "Img_11.fits", "Img_12.fits"}


def test_watch_stops_when_asked_and_polls_when_told(client, tmp_path):
    stop = threading.Event()
    write_image(tmp_path / "Img_1.fits", Truth(**IMAGE, seed=1))
    polling = WatchOptions.from_config(observer="polling", poll_seconds=0.1, settle_seconds=0.3,
                                       incomplete_seconds=5.0)
    assert polls(tmp_path, "polling") and not polls(tmp_path, "events")
    done = []

    def on_record(record):
        done.append(record.path)
        if len(done) == 1:  # a file written after the watch started, noticed by polling
            write_image(tmp_path / "Img_2.fits", Truth(**IMAGE, seed=2))
        else:
            stop.set()

    ds = watch(tmp_path, tmp_path / "cat.zarr", client=client, watch_options=polling,
               on_record=on_record, stop=stop, commit_seconds=0.5)
    assert sorted(map(os.path.basename, ds.path.values)) == ["Img_1.fits", "Img_2.fits"]


def test_arrivals_wait_for_a_whole_settled_file_and_give_up_on_a_stalled_one(tmp_path):
    now = [0.0]
    arrivals = Arrivals(settle_seconds=1.0, incomplete_seconds=5.0, clock=lambda: now[0])
    whole = write_image(tmp_path / "whole.fits", Truth(nrows=10, ncols=20, nskips=3))
    data = whole.read_bytes()
    growing = tmp_path / "Img_1.fits"
    growing.write_bytes(data[:3000])
    arrivals.notice(str(growing))
    arrivals.notice(str(growing))  # noticed twice: waited for once
    assert arrivals.due() == ([], []) and len(arrivals) == 1
    now[0] = 2.0
    assert arrivals.due() == ([], [])  # settled, not whole: waits on
    growing.write_bytes(data)
    now[0] = 3.0
    assert arrivals.due() == ([], [])  # it changed: settles again
    now[0] = 4.5
    assert arrivals.due() == ([str(growing)], []) and len(arrivals) == 0
    stalled = tmp_path / "Img_2.fits"
    stalled.write_bytes(data[:-100])
    arrivals.notice(str(stalled))
    now[0] = 10.0
    [(path, problem)] = arrivals.due()[1]
    assert path == str(stalled) and problem.startswith("HDU 0 ends at byte")
    arrivals.notice(str(stalled))  # unchanged: not waited for again
    assert len(arrivals) == 0
    stalled.write_bytes(data)
    arrivals.notice(str(stalled))
    assert len(arrivals) == 1
    os.remove(stalled)
    assert arrivals.due() == ([], []) and len(arrivals) == 0


@pytest.mark.parametrize(("patterns", "recursive", "path", "expected"), [
    (None, False, "Img_3.fits", True),
    (None, False, "Img_3.fits.part", True),  # the seed's regex is anchored at the start only
    (None, False, "Avg_Img_3.fits", False),
    ("*.fz", False, "Img_3.fits.fz", True),
    ("*.fz", False, "sub/Img_3.fits.fz", False),
    ("*.fz", True, "sub/Img_3.fits.fz", True),
    ("run*/Img_*.fits", False, "run2/Img_3.fits", True),
    ("run*/Img_*.fits", False, "Img_3.fits", False),
])
def test_selects_agrees_with_find_files(tmp_path, patterns, recursive, path, expected):
    target = tmp_path / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"")
    assert selects(target, patterns, tmp_path, recursive) is expected
    assert (str(target) in find_files(patterns, tmp_path, recursive).paths) is expected


def test_a_watched_directory_that_does_not_exist_is_said_at_once(tmp_path):
    from skipperdask.errors import BadOptionError

    started = time.monotonic()
    with pytest.raises(BadOptionError, match="no such directory"):
        watch(tmp_path / "missing", tmp_path / "cat.zarr")
    assert time.monotonic() - started < 60  # no cluster was started for it
    assert not np.any([p.name.endswith(".zarr") for p in tmp_path.iterdir()])
