"""Watch mode: a DAQ's directory processed live, each image once, as soon as it is whole.

:func:`watch` first takes every matching file already there that the catalogue lacks (or
holds from before a change, or as failed: the rules of :func:`~.files.files_to_process`),
then every file the DAQ writes, until it is stopped. Files are noticed through file-system
events, or by polling on network file systems (:mod:`~.arrivals`), and taken once whole. It
keeps one client and one :class:`~.schedule.Campaign` for its whole life: a new file is one
more task for the cluster, and its record is flagged (:mod:`~.alerts`) and committed as in
:func:`~.schedule.process`. Exactly once, across restarts too: a file is taken when the
catalogue does not hold it as it is now, and not again while its task is in flight.
"""

import os
import time

from ..catalogue import Catalogue
from ..config import Options, WatchOptions
from .alerts import Alert
from .arrivals import Arrivals, observer, polls
from .files import files_to_process, find_files, selects
from .progress import Progress, Summary
from .schedule import ended, finished_record, running


def watch(directory, catalogue, *, patterns=None, recursive=False, client=None, options=None,
          watch_options=None, csv=None, alerts=None, on_alert=None, on_record=None,
          max_images=None, stop=None, window=None, commit_seconds=None):
    """Process the images in ``directory`` as they are written, until stopped.

    Parameters
    ----------
    directory : str or os.PathLike
        The directory the DAQ writes into.
    catalogue : str or os.PathLike
        The Zarr store, as for :func:`~skipperdask.campaign.process` (the CSV beside it).
    patterns : str or list of str, optional
        Which files, as ``run -f`` (default ``Img_[0-9]+.fits``).
    recursive : bool
        The subdirectories too (``-r``).
    client : distributed.Client, optional
        The cluster; default a local cluster on loopback, closed at the end.
    options : skipperdask.config.Options, optional
        Metric options; default from ``dask.config``.
    watch_options : skipperdask.config.WatchOptions, optional
        How files are noticed and judged whole; default from ``dask.config``
        (``skipperdask.watch``).
    csv : str, optional
        As for :func:`~skipperdask.campaign.process`.
    alerts, on_alert, on_record : optional
        As for :func:`~skipperdask.campaign.process`; a file given up on (still not whole
        after ``incomplete-seconds`` unchanged) is an alert too, before its failed entry's.
    max_images : int, optional
        Stop once this many images are finished (ok or failed); default never.
    stop : threading.Event, optional
        Stop when it is set (checked every ``poll-seconds``). On a stop, the images still
        in flight are left out of the catalogue: the next watch takes them.
    window, commit_seconds : optional
        As for :func:`~skipperdask.campaign.process`.

    Returns
    -------
    xarray.Dataset
        The whole catalogue when it stops, ``.attrs["summary"]`` saying how the watch went.

    Raises
    ------
    skipperdask.errors.Interrupted
        On Ctrl-C, after committing what finished.
    """
    options = options or Options.from_config()
    watch_options = watch_options or WatchOptions.from_config()
    directory = os.path.abspath(os.fspath(directory))
    if isinstance(patterns, str | os.PathLike):
        patterns = [patterns]
    find_files(patterns, directory, recursive)  # a bad directory: said at once
    store = Catalogue(catalogue, header_variables=options.header_variables)
    index = Catalogue(catalogue)  # this thread's reader; the writer's thread owns `store`
    summary = Summary()
    arrivals = Arrivals(watch_options.settle_seconds, watch_options.incomplete_seconds)
    finished = finished_record(alerts, on_alert, on_record)
    # started before the first scan: nothing written meanwhile goes unnoticed
    observing, noticed, _ = observer(
        directory, polling=polls(directory, watch_options.observer),
        poll_seconds=watch_options.poll_seconds,
        recursive=recursive or any(os.path.dirname(os.fspath(p)) for p in patterns or ()))
    try:
        _scan(arrivals, index, patterns, directory, recursive)
        scanned = time.monotonic()
        with running(store, summary, Progress(0, enabled=False), client=client,
                     options=options, csv=csv, window=window, commit_seconds=commit_seconds,
                     on_record=finished, resume="watch again to go on") as campaign:
            taken = {}  # path -> (size, mtime) of the files in flight: never taken twice
            while not _stopping(summary, max_images, stop):
                if time.monotonic() - scanned > watch_options.rescan_seconds:
                    # events can be lost (an overflowing inotify queue): the directory again
                    _scan(arrivals, index, patterns, directory, recursive)
                    scanned = time.monotonic()
                while not noticed.empty():
                    path = noticed.get()
                    if selects(path, patterns, directory, recursive):
                        arrivals.notice(os.path.realpath(path))
                whole, given_up = arrivals.due()
                for path, problem in given_up:
                    if on_alert is not None:
                        on_alert(Alert(path, "", f"not whole after "
                                       f"{watch_options.incomplete_seconds:g} s unchanged "
                                       f"({problem}): taken as it is"))
                campaign.add(_new(whole + [p for p, _ in given_up], index, taken))
                campaign.collect(watch_options.poll_seconds)
    finally:
        observing.stop()
        observing.join(timeout=2)
    return ended(store, summary)


def _stopping(summary, max_images, stop):
    if stop is not None and stop.is_set():
        return True
    return max_images is not None and summary.ok + summary.failed >= max_images


def _scan(arrivals, index, patterns, directory, recursive):
    """Wait for the matching files the catalogue does not hold as they are now; those
    unchanged for a while already count as settled that long."""
    todo, _ = files_to_process(find_files(patterns, directory, recursive).paths, index)
    now = time.time()
    for path in todo:
        arrivals.notice(path, quiet_for=now - _mtime(path))


def _mtime(path):
    try:
        return os.stat(path).st_mtime
    except OSError:
        return time.time()


def _new(paths, index, taken):
    """Those of ``paths`` to process: not held by the catalogue as they are now, not in
    flight. ``taken`` forgets the files the catalogue now holds as they were taken."""
    if not paths:
        return []
    held = index.processed()
    for path, state in list(taken.items()):
        entry = held.get(path)
        if entry is not None and (entry.size, entry.mtime) == state:
            del taken[path]
    todo, _ = files_to_process(paths, index)
    new = []
    for path in todo:
        try:
            info = os.stat(path)
        except OSError:
            continue
        state = (info.st_size, info.st_mtime)
        if taken.get(path) != state:
            taken[path] = state
            new.append(path)
    return new
