"""A campaign on a ``distributed`` cluster: files in, catalogue out.

Work is submitted as the cluster frees up, never as one giant graph: at most a
window of files is in flight. Each file starts with one task, ``image-…``, that reads
its headers on a worker and computes the file whole, reading it block by block: the
workers then share the campaign file by file, with nothing to send between them. A
file larger than one chunk comes back as its layout instead when it is among the last
files of the campaign (as many as worker threads: whole files would leave workers idle
at the end) or when its statistics would need more than ``whole_file_memory``; it fans
out into ``statistics-…`` tasks, one per row chunk of each amplifier, spread over the
workers, and one ``fit-…`` task that combines them and fits. Results reach the client as
they finish and are committed to the catalogue in batches; a file that fails becomes a
catalogue entry holding its error.
"""

import dataclasses
import os
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from queue import Empty, SimpleQueue

import dask
from dask.utils import parse_bytes
from distributed import as_completed

from . import config
from .blas import SingleThreadedBLAS
from .catalogue import Catalogue, ImageRecord
from .errors import SkipperError
from .metrics import analyse, metrics_dataset
from .reader import scan_file
from .stats import (
    STATISTICS_BYTES_PER_PIXEL,
    ImageStatistics,
    plan_statistics,
    read_chunk_statistics,
)

#: seconds between catalogue commits, at least: a killed run loses no more work than this
DEFAULT_COMMIT_SECONDS = 5.0


@dataclass(frozen=True)
class Options:
    """The metric options of a campaign (stored in the catalogue's provenance)."""

    polarity: int | None = None
    baseline: str = "none"
    chunk_bytes: int = 64 * 2**20
    whole_file_memory: int = 256 * 2**20
    max_entropy_samples: int = 30
    max_noise_samples: int = 50
    bin_width: object = "auto"

    @classmethod
    def from_config(cls, **overrides):
        """Options from ``dask.config`` (``skipperdask.*``), with explicit overrides."""
        settings = {
            "polarity": config.get("polarity"),
            "baseline": config.get("baseline", "none"),
            "chunk_bytes": parse_bytes(str(config.get("chunk-bytes", "64MiB"))),
            "whole_file_memory": parse_bytes(str(config.get("whole-file-memory", "256MiB"))),
            "max_entropy_samples": config.get("max-entropy-samples", 30),
            "max_noise_samples": config.get("max-noise-samples", 50),
            "bin_width": config.get("peaks-bin-width", "auto"),
        }
        settings.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("chunk_bytes", "whole_file_memory"):
            if isinstance(settings[name], str):
                settings[name] = parse_bytes(settings[name])
        return cls(**settings)

    def plan(self, amp, polarity):
        """The statistics plan of one amplifier."""
        return plan_statistics(
            amp.nrows, amp.ncols, amp.nskips, polarity, baseline=self.baseline,
            max_entropy_samples=self.max_entropy_samples, max_noise_samples=self.max_noise_samples,
        )

    def row_chunks(self, amp, plan):
        """Row ranges of one amplifier, about ``chunk_bytes`` of stored pixels each."""
        rows = max(1, self.chunk_bytes // max(amp.row_bytes, 1))
        return plan.row_chunks(rows)


def _check_same_shape(layout):
    shapes = {(a.nrows, a.ncols, a.nskips) for a in layout.amps}
    if len(shapes) > 1:
        raise SkipperError(layout.path, f"amplifiers of different shapes {sorted(shapes)}")


def _metrics(layout, statistics, options):
    """The metrics of a file from the statistics of its amplifiers, computed with the
    polarity of its layout (the data settle it where only the default decided it)."""
    with dask.config.set({"skipperdask.max-entropy-samples": options.max_entropy_samples,
                          "skipperdask.max-noise-samples": options.max_noise_samples}):
        analyses = [analyse(s, bin_width=options.bin_width,
                            polarity_source=layout.polarity_source) for s in statistics]
    attrs = {"path": layout.path, "baseline": options.baseline}
    return metrics_dataset(analyses, [a.name for a in layout.amps], attrs=attrs)


def _record(layout, metrics, elapsed):
    return ImageRecord(
        path=layout.path, size=layout.size, mtime=layout.mtime, metrics=metrics, error="",
        header=layout.primary_header, amp_headers={a.name: a.header for a in layout.amps},
        elapsed=elapsed,
    )


def image_task(path, options, whole=True):
    """Read a file's headers and compute it whole, block by block, when it is no larger than
    one chunk or, with ``whole``, when its statistics fit in ``options.whole_file_memory``.

    Returns the file's :class:`ImageRecord` (or, for a bad file, a record holding the error,
    which keeps worker logs free of tracebacks for expected failures) or its layout (any
    other file, to be fanned out into row chunks).
    """
    start = time.perf_counter()
    try:
        layout = scan_file(path, polarity=options.polarity)
        _check_same_shape(layout)
    except SkipperError as error:
        return _failed(path, error)
    large = max(a.nbytes for a in layout.amps) > options.chunk_bytes
    statistics_bytes = sum(a.nrows * a.ncols for a in layout.amps) * STATISTICS_BYTES_PER_PIXEL
    if large and not (whole and statistics_bytes <= options.whole_file_memory):
        return layout
    statistics = []
    for amp in layout.amps:
        plan = options.plan(amp, layout.polarity)
        statistics.append(read_chunk_statistics(amp, 0, amp.nrows, plan))
    return _record(layout, _metrics(layout, statistics, options), time.perf_counter() - start)


def fit_task(layout, options, parts_per_amp, started):
    """Combine the row chunks of every amplifier of a file and fit: the file's record."""
    statistics = [ImageStatistics.combine(parts) for parts in parts_per_amp]
    return _record(layout, _metrics(layout, statistics, options), time.time() - started)


@dataclass
class Summary:
    """How a campaign went."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def gbps(self):
        """Input read, GB per second."""
        return self.bytes / 1e9 / self.seconds if self.seconds else 0.0

    def __str__(self):
        return (f"{self.ok} images ok, {self.failed} failed, {self.skipped} skipped in "
                f"{self.seconds:.1f} s ({self.gbps:.2f} GB/s)")


class Progress:
    """A one-line progress bar on a terminal: images done / total, GB/s."""

    def __init__(self, total, enabled=None, stream=None):
        # standard error as it is now, not at import (pytest and notebooks replace it)
        stream = sys.stderr if stream is None else stream
        self.total, self.stream = total, stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.start = time.perf_counter()
        self.last = 0.0

    def update(self, summary, force=False):
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        done = summary.ok + summary.failed
        width = 30
        filled = int(width * done / self.total) if self.total else width
        rate = summary.bytes / 1e9 / max(now - self.start, 1e-9)
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} images"
                          f"  {summary.failed} failed  {rate:.2f} GB/s ")
        self.stream.flush()

    def close(self, summary):
        if self.enabled:
            self.update(summary, force=True)
            self.stream.write("\n")


def files_to_process(paths, catalogue, reprocess=False):
    """The paths to process: not yet in the catalogue, failed before (a transient failure
    or a file since repaired), or changed since (size or mtime); all of them to reprocess.

    Returns
    -------
    (todo, skipped) : (list of str, list of str)
    """
    done = {} if reprocess else catalogue.processed()
    todo, skipped = [], []
    seen = set()
    for path in paths:
        path = os.path.abspath(path)
        if path in seen:
            continue
        seen.add(path)
        entry = done.get(path)
        if entry is not None and entry.ok:
            try:
                stat = os.stat(path)
            except OSError:
                stat = None
            if stat is not None and (stat.st_size, stat.st_mtime) == tuple(entry[:2]):
                skipped.append(path)
                continue
        todo.append(path)
    return todo, skipped


def process(paths, catalogue, *, client=None, reprocess=False, options=None, csv=None,
            seed_tables=None, progress=None, window=None, commit_seconds=None):
    """Compute the metrics of many files on a Dask cluster into a catalogue.

    Parameters
    ----------
    paths : iterable of str
        The FITS files.
    catalogue : str or os.PathLike
        The Zarr store; created, or extended and updated.
    client : distributed.Client, optional
        The cluster to use; default a local cluster on loopback (see
        :func:`skipperdask.cluster.connect`).
    reprocess : bool
        Recompute files already in the catalogue (the seed's ``-a``). By default they are
        skipped unless their size or modification time changed.
    options : Options, optional
        Metric options; default from ``dask.config``.
    csv : str, optional
        The CSV table written beside the store, one row per image × amplifier; default the
        store's path with ``.csv``.
    seed_tables : dict of str to list of str, optional
        The seed's text tables to write: table path -> the files it lists.
    progress : bool, optional
        Show a progress bar; default when standard error is a terminal.
    window : int, optional
        Files in flight at once; default four per worker thread.
    commit_seconds : float, optional
        Commit finished images to the catalogue this often, and at the end, so a killed run
        loses at most that much work; default every 5 s, or ten times the last commit's
        duration when longer (a commit rewrites the catalogue).

    Returns
    -------
    xarray.Dataset
        The whole catalogue. ``.attrs["summary"]`` says how the run went.
    """
    if client is None:
        from .cluster import connect

        with connect() as client:
            return process(paths, catalogue, client=client, reprocess=reprocess, options=options,
                           csv=csv, seed_tables=seed_tables, progress=progress, window=window,
                           commit_seconds=commit_seconds)
    options = options or Options.from_config()
    client.register_plugin(SingleThreadedBLAS())  # a client of the caller's: its workers too
    store = Catalogue(catalogue)
    todo, skipped = files_to_process(paths, store, reprocess)
    summary = Summary(skipped=len(skipped))
    bar = Progress(len(todo), enabled=progress)
    threads = sum(client.nthreads().values())
    if window is None:
        window = max(4, 4 * threads)
    writer = CatalogueWriter(store, options, csv or _default_csv(catalogue), seed_tables,
                             commit_seconds)
    # The last files (as many as worker threads) are spread over the workers chunk by chunk,
    # so that no worker waits for another one's whole file at the end (measured: better
    # than fanning out two or three files per thread). Their headers are read first, while
    # the workers are free (a short task queued behind a whole file held its fan-out back
    # and left the other workers idle), and they fan out once every other file is submitted.
    split = max(len(todo) - threads, 0)
    queue = deque(todo[:split])
    last = set(todo[split:])
    waiting = deque()  # (path, layout) of the last files, until every other is submitted
    # results travel with their completion, gathered concurrently, not one round trip each
    futures = as_completed(with_results=True, raise_errors=False)
    path_of = {}  # future key -> its file
    start = time.perf_counter()

    def submit(path, function, *args, stage="image"):
        # a fresh key per run, so a rerun recomputes instead of reusing a cached result
        future = client.submit(function, *args, key=f"{stage}-{uuid.uuid4().hex}")
        path_of[future.key] = path
        futures.add(future)

    def submit_next():
        if queue:
            path = queue.popleft()
            submit(path, image_task, path, options, True)

    def fan_out(path, layout):
        submit(path, *_fan_out(client, layout, options), stage="fit")

    try:
        for path in todo[split:]:
            submit(path, image_task, path, options, False)
        for _ in range(window):
            submit_next()
        for future, result in futures:
            path = path_of.pop(future.key)
            if _is_error(result):  # the file's own failure: record it, go on
                result = _failed(path, result[1] if isinstance(result, tuple) else result)
            future.release()
            if isinstance(result, ImageRecord):
                writer.put(result)
                if result.ok:
                    summary.ok += 1
                    summary.bytes += result.size
                else:
                    summary.failed += 1
                if path not in last:  # the last files came on top of the window
                    submit_next()
            elif path in last:
                waiting.append((path, result))
            else:  # statistics too large for one worker: the file is still in flight
                fan_out(path, result)
            while waiting and not queue:
                fan_out(*waiting.popleft())
            summary.seconds = time.perf_counter() - start
            bar.update(summary)
    finally:
        writer.close()
    summary.seconds = time.perf_counter() - start
    bar.close(summary)
    dataset = store.to_dataset()
    dataset.attrs["summary"] = str(summary)
    return dataset


class CatalogueWriter:
    """Commits finished images to the catalogue from a thread of its own, so that the
    submission loop never waits on a commit (which rewrites the store).

    Records are committed in batches: every ``commit_seconds``, or by default every 5 s
    or ten times the last commit's duration when that is longer, so that commits stay a
    small share of the run (they share the client's process with the scheduler) however
    large the catalogue grows. The CSV and the seed's
    tables are rewritten after each commit. :meth:`close` commits what is left and
    raises the writer's error, if any.
    """

    _END = object()

    def __init__(self, store, options, csv, seed_tables, commit_seconds=None):
        self.store, self.csv, self.seed_tables = store, csv, seed_tables or {}
        self.options = dataclasses.asdict(options)
        self.commit_seconds = commit_seconds
        self.error = None
        self._records = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="catalogue-writer", daemon=True)
        self._thread.start()

    def put(self, record):
        """Queue a finished image's record; raises the writer's error if it failed."""
        if self.error is not None:
            raise self.error
        self._records.put(record)

    def close(self):
        """Commit what is queued, write the tables, stop the thread."""
        self._records.put(self._END)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _interval(self, cost):
        if self.commit_seconds is not None:
            return self.commit_seconds
        return max(DEFAULT_COMMIT_SECONDS, 10 * cost)

    def _run(self):
        last, cost, ending = time.perf_counter(), 0.0, False
        try:
            while not ending:
                batch = []
                item = self._records.get()
                while True:
                    if item is self._END:
                        ending = True
                        break
                    batch.append(item)
                    remaining = last + self._interval(cost) - time.perf_counter()
                    if remaining <= 0:
                        break
                    try:
                        item = self._records.get(timeout=remaining)
                    except Empty:
                        break
                started = time.perf_counter()
                self._commit(batch, tables=bool(batch) or ending)
                last = time.perf_counter()
                cost = last - started
        except Exception as error:  # a full disk, say: the run must stop and say so
            self.error = error

    def _commit(self, batch, tables):
        if batch:
            self.store.add(batch, options=self.options)
        if tables and os.path.exists(self.store.path):
            self.store.write_csv(self.csv)
            for table, listed in self.seed_tables.items():
                self.store.write_seed_table(table, listed)


def _fan_out(client, layout, options):
    """Submit the row-chunk statistics of a large file: the function and arguments of the
    fit task that gathers them."""
    started = time.time()
    parts_per_amp = []
    for amp in layout.amps:
        plan = options.plan(amp, layout.polarity)
        parts_per_amp.append([
            client.submit(read_chunk_statistics, amp, start, stop, plan,
                          key=f"statistics-{uuid.uuid4().hex}")
            for start, stop in options.row_chunks(amp, plan)
        ])
    return fit_task, layout, options, parts_per_amp, started


def _is_error(result):
    """Whether ``as_completed(raise_errors=False)`` gave an error, not a result: the error
    or its (type, value, traceback). Not the future's status: a result already gathered
    stays good when its worker dies afterwards, though the future is then rescheduled."""
    return isinstance(result, BaseException) or (
        isinstance(result, tuple) and len(result) == 3 and isinstance(result[1], BaseException))


def _failed(path, error):
    try:
        stat = os.stat(path)
        size, mtime = stat.st_size, stat.st_mtime
    except OSError:
        size, mtime = 0, 0.0
    if isinstance(error, SkipperError):
        message = str(error)
    else:
        message = f"{path}: {type(error).__name__}: {error}"
    return ImageRecord(path=path, size=size, mtime=mtime, metrics=None, error=message, header={},
                       amp_headers={}, elapsed=0.0)


def _default_csv(catalogue):
    root, _ = os.path.splitext(os.fspath(catalogue).rstrip("/"))
    return root + ".csv"
