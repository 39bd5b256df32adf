"""A campaign on a ``distributed`` cluster: files in, catalogue out.

Work is submitted as the cluster frees up, never as one giant graph: at most a window of
files is in flight. Each file starts with one task, ``image-…`` (:func:`~.task.file_task`),
that opens it on a worker and computes it whole, reading it block by block: the workers then
share the campaign file by file, with nothing to send between them. A file larger than one
chunk comes back split instead (:class:`~.task.Split`) when it is among the last files of
the campaign (as many as worker threads: whole files would leave workers idle at the end) or
when its statistics would need more than ``whole_file_memory``; its row chunks become
``statistics-…`` tasks spread over the workers, and one ``fit-…`` task combines them and
fits. Results reach the client as they finish and are committed to the catalogue in batches
by :class:`~skipperdask.catalogue.CatalogueWriter`; a file that fails becomes a catalogue
entry holding its error. Before its commit each record is flagged by the alert rules
(:mod:`~.alerts`).

:func:`process` and :func:`skipperdask.campaign.watch.watch` share the loop: :func:`running`
(the cluster, the writer, the Ctrl-C) around a :class:`Campaign` they feed.
"""

import contextlib
import errno
import os
import time
import uuid
from collections import deque

from distributed import LocalCluster, as_completed

from ..blas import SingleThreadedBLAS
from ..catalogue import Catalogue, CatalogueWriter
from ..config import ClusterOptions, Options
from ..errors import CatalogueError, Interrupted
from ..io.storage import location
from .alerts import AlertRules
from .cluster import distributed_logs_silenced, sigint_ignored, stop_local_workers
from .files import files_to_process
from .progress import Progress, Summary
from .task import Measured, Split, failed_record, file_task, fit_task, split_statistics


def process(paths, catalogue, *, client=None, reprocess=False, options=None, csv=None,
            seed_tables=None, progress=None, window=None, commit_seconds=None, on_record=None,
            alerts=None, on_alert=None):
    """Compute the metrics of many files on a Dask cluster into a catalogue.

    Parameters
    ----------
    paths : iterable of str
        The FITS files: paths, or URLs (``s3://bucket/campaign/Img_1.fits``, read by byte
        range on the workers, with ``options.storage_options``).
    catalogue : str or os.PathLike
        The Zarr store; created, or extended and updated. A URL puts it on an object store
        (``s3://bucket/campaign.zarr``), its CSV beside it written whole at the end of the run.
    client : distributed.Client, optional
        The cluster to use; default a local cluster on loopback, closed at the end (see
        :func:`skipperdask.campaign.connect`).
    reprocess : bool
        Recompute files already in the catalogue (the original tool's ``-a``). By default they are
        skipped unless their size or modification time changed.
    options : skipperdask.config.Options, optional
        Metric options; default from ``dask.config``.
    csv : str, optional
        The CSV table written beside the store, one row per image × amplifier; default the
        store's path with ``.csv``.
    seed_tables : dict of str to list of str, optional
        The original tool's text tables to write: table path -> the files it lists.
    progress : bool, optional
        Show a progress bar; default when standard error is a terminal.
    window : int, optional
        Files in flight at once; default four per worker thread.
    commit_seconds : float, optional
        Commit finished images to the catalogue this often, and at the end, so a killed run
        loses at most that much work; default every 5 s, or ten times the last commit's
        duration when longer (a commit appends the finished images to the store and the CSV).
    on_record : callable, optional
        Called in this process with each finished :class:`~skipperdask.catalogue.ImageRecord`
        (failed files included) as it comes back, after ``alerts`` flagged it and before it
        is committed: live views watch the campaign through it.
    alerts : skipperdask.campaign.alerts.AlertRules, optional
        Flags each image (the catalogue's ``flags``); default the rules of ``dask.config``
        (``skipperdask.alerts``). Pass your own to read its running baselines (``bands()``).
    on_alert : callable, optional
        Called with each :class:`~skipperdask.campaign.alerts.Alert`, in this process, as its
        image finishes (e.g. :func:`~skipperdask.campaign.notify.print_alert`).

    Returns
    -------
    xarray.Dataset
        The whole catalogue. ``.attrs["summary"]`` says how the run went.
    """
    options = options or Options.from_config()
    store = Catalogue(catalogue, header_variables=options.header_variables,
                      storage_options=options.storage_options)
    todo, skipped = files_to_process(paths, store, reprocess, options.storage_options)
    summary = Summary(skipped=len(skipped))
    bar = Progress(len(todo), enabled=progress)
    with running(store, summary, bar, client=client, options=options, csv=csv,
                 seed_tables=seed_tables, window=window, commit_seconds=commit_seconds,
                 on_record=finished_record(alerts, on_alert, on_record)) as campaign:
        campaign.add(todo)
        campaign.run()
    return ended(store, summary)


def finished_record(alerts=None, on_alert=None, on_record=None):
    """What a campaign does with each finished record before its commit: flag it with
    ``alerts`` (default the rules of ``dask.config``), give each alert to ``on_alert``, then
    the record to ``on_record``.

    Returns
    -------
    callable
        ``f(record)``.
    """
    alerts = alerts or AlertRules()

    def finished(record):
        for alert in alerts.check(record):
            if on_alert is not None:
                on_alert(alert)
        if on_record is not None:
            on_record(record)

    return finished


@contextlib.contextmanager
def running(store, summary, bar, *, client=None, options, csv=None, seed_tables=None,
            window=None, commit_seconds=None, on_record=None, resume="run again to resume"):
    """A campaign's cluster, catalogue writer and submission loop, for the ``with`` block.

    The client (default a local cluster, closed at the end), a
    :class:`~skipperdask.catalogue.CatalogueWriter` that commits what is left when the block
    ends, and the :class:`Campaign` the block feeds. A Ctrl-C in the block stops the
    submissions, commits what finished, and raises
    :class:`~skipperdask.errors.Interrupted` saying how many images are committed, and
    ``resume``.
    """
    interrupted = False
    owned = client is None
    with contextlib.ExitStack() as guard, contextlib.ExitStack() as stack:
        if owned:
            from .cluster import connect

            client = stack.enter_context(connect(options=ClusterOptions.from_config()))
        else:  # a client of the caller's: its workers too
            client.register_plugin(SingleThreadedBLAS())
        writer = CatalogueWriter(store, options.provenance(),
                                 csv or _default_csv(store.path), seed_tables, commit_seconds)
        campaign = None

        def finish():
            writer.close()  # commits what is left
            if campaign is not None:  # the run's time: until its catalogue is whole
                summary.seconds = time.perf_counter() - campaign.start

        stack.callback(_disk_full_named, finish, store.path)
        campaign = Campaign(client, options, writer, summary, bar, window, on_record)
        try:
            yield campaign
        except KeyboardInterrupt:
            campaign.stop()
            interrupted = True
            if owned:  # its workers' tasks are abandoned: no need to wait for them
                guard.enter_context(distributed_logs_silenced())  # until the cluster closed
                stop_local_workers(client)
        finally:
            # the last commit and the cluster's close run to their end: a Ctrl-C now (a
            # second one, or one as the run ends) would lose finished images
            guard.enter_context(sigint_ignored())
    bar.close(summary)
    if interrupted:
        raise Interrupted(f"interrupted: {summary.ok + summary.failed} images committed to "
                          f"{store.path}; {resume}")


def ended(store, summary):
    """The whole catalogue, with how the campaign went in ``attrs["summary"]`` and
    ``attrs["errors"]``."""
    dataset = store.to_dataset()
    dataset.attrs["summary"] = str(summary)
    dataset.attrs["errors"] = list(summary.errors)
    return dataset


class Campaign:
    """The submission loop of a campaign: files submitted as results come back.

    :meth:`add` queues files (more can come at any time: ``watch`` adds them as they are
    written); :meth:`run` works until nothing is left, :meth:`collect` for a while. Each
    finished record goes to ``on_record`` then to ``writer``, and is counted in ``summary``.
    """

    def __init__(self, client, options, writer, summary, bar, window=None, on_record=None):
        self.client, self.options, self.on_record = client, options, on_record
        self.writer, self.summary, self.bar = writer, summary, bar
        self.threads = sum(client.nthreads().values())
        self.window = max(4, 4 * self.threads) if window is None else window
        self.queue = deque()
        self.running = 0  # files of the queue in flight
        self.last = set()
        self.waiting = deque()  # the Split of the last files, until every other is submitted
        # results travel with their completion, gathered concurrently, not one round trip each
        self.futures = as_completed(with_results=True, raise_errors=False)
        self.path_of = {}  # future key -> its file
        self.start = time.perf_counter()

    def add(self, paths):
        """Queue files for the cluster.

        The last files of a batch (as many as worker threads) are spread over the workers
        chunk by chunk, so that no worker waits for another one's whole file at the end
        (measured: better than fanning out two or three files per thread). Their headers are
        read first, while the workers are free (a short task queued behind a whole file held
        its fan-out back and left the other workers idle), and they fan out once every other
        file is submitted.
        """
        paths = list(paths)
        split = max(len(paths) - self.threads, 0)
        self.queue.extend(paths[:split])
        for path in paths[split:]:
            self.last.add(path)
            self._submit(path, "image", file_task, path, self.options, False)
        self._fill()

    @property
    def in_flight(self):
        """Files submitted or queued and not finished."""
        return len(self.path_of) + len(self.queue)

    def run(self):
        """Work until every file added is finished."""
        for future, result in self.futures:
            self._finished(future, result)
        self.summary.seconds = time.perf_counter() - self.start

    def collect(self, seconds):
        """Take the results that come back in the next ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            while self.futures.has_ready():
                self._finished(*next(self.futures))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(0.05, remaining))

    def stop(self):
        """Submit nothing more (a Ctrl-C). The files in flight end with the cluster; the
        workers of a local cluster, whose logs share this terminal, are silenced first: each
        would log its cancelled task and its lost scheduler while the cluster closes."""
        self.queue.clear()
        self.waiting.clear()
        if isinstance(getattr(self.client, "cluster", None), LocalCluster):
            with contextlib.suppress(Exception):
                self.client.run(_silence_distributed_logs)

    def _finished(self, future, result):
        path = self.path_of.pop(future.key)
        if _is_error(result):  # the file's own failure: record it, go on
            result = Measured(failed_record(path, _error_of(result),
                                              self.options.storage_options))
        future.release()
        summary = self.summary
        match result:
            case Measured(record):
                if self.on_record is not None:
                    self.on_record(record)
                self.writer.put(record)
                if record.ok:
                    summary.ok += 1
                    summary.bytes += record.size
                else:
                    summary.failed += 1
                    summary.errors.append(record.error)
                if path in self.last:  # the last files came on top of the window
                    self.last.discard(path)
                else:
                    self.running -= 1
                    self._fill()
            case Split() if path in self.last:
                self.waiting.append((path, result))
            case Split():  # statistics too large for one worker: still in flight
                self._fan_out(path, result)
        while self.waiting and not self.queue:
            self._fan_out(*self.waiting.popleft())
        summary.seconds = time.perf_counter() - self.start
        self.bar.update(summary)

    def _submit(self, path, stage, function, *args):
        # a fresh key per run, so a rerun recomputes instead of reusing a cached result
        future = self.client.submit(function, *args, key=f"{stage}-{uuid.uuid4().hex}")
        self.path_of[future.key] = path
        self.futures.add(future)

    def _fill(self):
        """Submit queued files while fewer than ``window`` are in flight."""
        while self.queue and self.running < self.window:
            path = self.queue.popleft()
            self.running += 1
            self._submit(path, "image", file_task, path, self.options, True)

    def _fan_out(self, path, split):
        """Submit the row-chunk statistics of a split file, and the fit that gathers them."""
        started = time.time()
        parts_per_amp = [
            [self.client.submit(chunk.function, *chunk.args, key=f"statistics-{uuid.uuid4().hex}")
             for chunk in chunks]
            for chunks in split_statistics(split.layout, self.options)
        ]
        self._submit(path, "fit", fit_task, split.layout, self.options, parts_per_amp, started)


def _is_error(result):
    """Whether ``as_completed(raise_errors=False)`` gave an error, not a result: the error
    or its (type, value, traceback). Not the future's status: a result already gathered
    stays good when its worker dies afterwards, though the future is then rescheduled."""
    return isinstance(result, BaseException) or (
        isinstance(result, tuple) and len(result) == 3 and isinstance(result[1], BaseException))


def _error_of(result):
    return result[1] if isinstance(result, tuple) else result


def _silence_distributed_logs():
    """On a worker about to be closed: no more log lines from distributed."""
    import logging

    logging.getLogger("distributed").setLevel(logging.CRITICAL + 1)


def _disk_full_named(close, path):
    """``close()``, a full disk said in one line naming the catalogue."""
    try:
        close()
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise CatalogueError(
            f"{path}: {error.strerror} while committing; the catalogue keeps "
            "its last committed version: free some space (or give another --catalogue) and "
            "run again to resume") from error


def _default_csv(catalogue):
    root, _ = os.path.splitext(location(catalogue).rstrip("/"))
    return root + ".csv"
