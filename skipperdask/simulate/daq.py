"""A simulated DAQ: images written into a directory one after the other, slowly, as a real
one writes them while it reads the CCD out, some with problems.

:class:`SimulatedDAQ` (a thread) writes each planned image (a :class:`Planned`) in a staging
directory first, then copies it into the watched directory piece by piece with pauses
(:func:`write_in_pieces`): whoever watches sees it grow. A ``stall`` leaves it half-written
for that long before the rest comes. :func:`live_plan` is the plan of ``skipperdask demo
--live``: clean images whose noise and dark current are known, and among them tracks, charge
lost between samples, a noise jump and a file that stays half-written for a while.
"""

import os
import pathlib
import random
import shutil
import tempfile
import threading
import time
from typing import NamedTuple

from .files import write_image
from .truth import Truth

#: the size of the live demo's images: small, a fraction of a second each
LIVE_SHAPE = {"nrows": 100, "ncols": 200, "nskips": 20}


class Planned(NamedTuple):
    """One image the DAQ writes: its file name, its truth, its problem (``""`` for none),
    and how long it stays half-written (0: never)."""

    name: str
    truth: Truth
    problem: str = ""
    stall: float = 0.0


def write_in_pieces(source, target, pieces=4, pause=0.05, stall=0.0):
    """Copy ``source`` to ``target`` in ``pieces`` appends with ``pause`` seconds between
    them, and ``stall`` seconds after the first half, as a DAQ writes a file.

    Parameters
    ----------
    source, target : str or os.PathLike
    pieces : int
    pause, stall : float
    """
    data = pathlib.Path(source).read_bytes()
    size = len(data)
    bounds = sorted({0, size, *(size * k // pieces for k in range(1, pieces))})
    stalled = False
    with open(target, "wb") as out:
        for start, stop in zip(bounds, bounds[1:], strict=False):
            out.write(data[start:stop])
            out.flush()
            if stop < size:
                halfway = stop >= size // 2 and not stalled
                stalled = stalled or halfway
                time.sleep(stall if halfway and stall else pause)


def live_plan(n_images, seed=0):
    """The images of the live demo: ``n_images`` in all, the problems among them once a
    baseline of six clean ones is in.

    Returns
    -------
    list of Planned
    """
    problems = {
        7: ("many tracks", {"tracks": 30}, 0.0),
        9: ("charge lost between samples", {"charge_loss": 0.03, "dark_current": 1.0}, 0.0),
        11: ("half-written for 8 s, then completed", {}, 8.0),
        13: ("noise jump: twice the read noise", {"read_noise": 8.0}, 0.0),
    }
    plan = []
    for index in range(1, n_images + 1):
        problem, changes, stall = problems.get(index, ("", {}, 0.0))
        truth = Truth(**LIVE_SHAPE, **changes, seed=seed * 1000 + index)
        plan.append(Planned(f"Img_{index}.fits", truth, problem, stall))
    return plan


class SimulatedDAQ(threading.Thread):
    """Writes planned images into ``directory``, one every ``interval`` seconds (see the
    module); a daemon thread: ``start()``, then ``stop()`` to end it early.

    Parameters
    ----------
    directory : str or os.PathLike
    plan : list of Planned
    interval : (float, float)
        Seconds from one image's start to the next, drawn uniformly in this range.
    pieces : int
        Appends per image.
    pause : float
        Seconds between two appends.
    seed : int
        Seed of the intervals.
    """

    def __init__(self, directory, plan, interval=(1.0, 2.0), pieces=4, pause=0.05, seed=0):
        super().__init__(name="simulated-daq", daemon=True)
        self.directory, self.plan = os.fspath(directory), list(plan)
        self.interval, self.pieces, self.pause = interval, pieces, pause
        self.written = []  # the files written whole, in order
        self.error = None
        self._stop_event = threading.Event()
        self._random = random.Random(seed)

    def stop(self):
        """Write nothing more."""
        self._stop_event.set()

    def run(self):
        staging = tempfile.mkdtemp(prefix="skipperdask-daq-")
        try:
            for planned in self.plan:
                began = time.monotonic()
                source = write_image(os.path.join(staging, planned.name), planned.truth)
                target = os.path.join(self.directory, planned.name)
                write_in_pieces(source, target, self.pieces, self.pause, planned.stall)
                os.remove(source)
                self.written.append(target)
                wait = self._random.uniform(*self.interval) - (time.monotonic() - began)
                if self._stop_event.wait(max(wait, 0.0)):
                    return
        except Exception as error:  # noqa: BLE001  (said by whoever joins the thread)
            self.error = error
        finally:
            shutil.rmtree(staging, ignore_errors=True)
