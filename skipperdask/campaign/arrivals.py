"""Files as a DAQ writes them: noticed through file-system events or polling, taken once whole.

An :func:`observer` (watchdog's) reports the paths that were created, written, closed or
moved into a watched directory; on network file systems, which deliver no events (NFS, CIFS,
Lustre, GPFS, …), a polling observer scans the directory instead. :class:`Arrivals` holds the
files noticed until each is *whole*: what its headers declare is all there
(:func:`~skipperdask.io.completeness.fits_extent`) and it has not changed (size and
modification time, as seen here) for ``settle_seconds``; the wait covers a writer paused
between two HDUs. A file that stays unchanged and not whole for ``incomplete_seconds`` is
given up on: reported once, and taken as it is (its reading then says what is missing);
it is noticed again only if it changes.
"""

import os
import queue
import time
from typing import NamedTuple

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from ..io.completeness import fits_extent

#: file systems that deliver no file-system events to a client (``/proc/mounts`` types)
NETWORK_FILE_SYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "fuse.ceph",
    "glusterfs", "fuse.glusterfs", "afs", "9p", "panfs", "fuse.sshfs", "fuse.s3fs",
    "fuse.gcsfuse", "fuse.juicefs", "cvmfs", "fuse.cvmfs2", "wekafs", "orangefs", "pvfs2",
})


def file_system_type(directory):
    """The type of the file system ``directory`` is on (``/proc/mounts``), or ``""`` when
    unknown (not Linux)."""
    path = os.path.realpath(directory)
    best, kind = "", ""
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = path == point or path.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        return ""
    return kind


def polls(directory, observer):
    """Whether files in ``directory`` are noticed by polling: ``observer`` is ``"polling"``,
    or ``"auto"`` on a network file system."""
    if observer == "auto":
        return file_system_type(directory) in NETWORK_FILE_SYSTEMS
    return observer == "polling"


class _Events(FileSystemEventHandler):
    """Queues the paths written or moved in."""

    def __init__(self, paths):
        super().__init__()
        self.paths = paths

    def on_any_event(self, event):
        if event.is_directory or event.event_type in ("deleted", "opened", "closed_no_write"):
            return
        path = event.dest_path or event.src_path
        self.paths.put(os.fsdecode(path))


def observer(directory, *, polling, poll_seconds, recursive):
    """A started watchdog observer of ``directory`` and the queue of paths it reports.

    Parameters
    ----------
    directory : str
    polling : bool
        Scan every ``poll_seconds`` (watchdog's ``PollingObserver``) instead of the
        platform's events (inotify on Linux).
    poll_seconds : float
    recursive : bool
        Watch the subdirectories too.

    Returns
    -------
    (watchdog.observers.api.BaseObserver, queue.SimpleQueue, bool)
        The observer (stop it with ``stop()`` and ``join()``), the paths, and whether it
        polls: events fall back to polling when the system refuses more (inotify's
        ``max_user_watches`` reached, say).
    """
    paths = queue.SimpleQueue()
    while True:
        watching = PollingObserver(timeout=poll_seconds) if polling else Observer()
        watching.daemon = True  # never what keeps a stopped program alive
        try:
            watching.schedule(_Events(paths), directory, recursive=recursive)
            watching.start()
        except OSError:
            if polling:
                raise
            polling = True
            continue
        return watching, paths, polling


class GivenUp(NamedTuple):
    """A file not whole after ``incomplete_seconds`` unchanged, and what is missing."""

    path: str
    problem: str


class _Waiting:
    __slots__ = ("state", "since")

    def __init__(self, state, since):
        self.state, self.since = state, since


def _state(path):
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


class Arrivals:
    """The files noticed and not yet whole (see the module).

    Parameters
    ----------
    settle_seconds : float
        A whole file is taken once unchanged this long.
    incomplete_seconds : float
        A file unchanged this long and still not whole is given up on.
    clock : callable
        Seconds, monotonic.
    """

    def __init__(self, settle_seconds, incomplete_seconds, clock=time.monotonic):
        self.settle_seconds, self.incomplete_seconds = settle_seconds, incomplete_seconds
        self.clock = clock
        self.waiting = {}  # path -> _Waiting
        self.given_up = {}  # path -> its (size, mtime) when given up on

    def __len__(self):
        return len(self.waiting)

    def notice(self, path, quiet_for=0.0):
        """A file to wait for (again, if it changed since it was given up on).

        ``quiet_for``: seconds it is already known to have been unchanged (a file there
        before the watch started, by its modification time).
        """
        if path in self.waiting:
            return
        try:
            state = _state(path)
        except OSError:  # gone already
            return
        if self.given_up.get(path) == state:
            return
        self.given_up.pop(path, None)
        self.waiting[path] = _Waiting(state, self.clock() - max(quiet_for, 0.0))

    def due(self):
        """The files to take now: those whole and settled, and those given up on.

        Returns
        -------
        (list of str, list of GivenUp)
        """
        now = self.clock()
        whole, given_up = [], []
        for path, waiting in list(self.waiting.items()):
            try:
                state = _state(path)
            except OSError:  # deleted or moved away: nothing to take
                del self.waiting[path]
                continue
            if state != waiting.state:
                waiting.state, waiting.since = state, now
                continue
            quiet = now - waiting.since
            if quiet < self.settle_seconds:
                continue
            try:
                extent = fits_extent(path)
            except OSError:
                continue
            if extent.complete:
                whole.append(path)
            elif quiet >= self.incomplete_seconds:
                given_up.append(GivenUp(path, extent.problem))
                self.given_up[path] = state
            else:
                continue
            del self.waiting[path]
        return whole, given_up
