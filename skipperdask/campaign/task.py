"""A campaign's work on one file: the metrics of one image, computed as
:func:`skipperdask.image_metrics` computes them from :func:`skipperdask.open_image`'s lazy
DataArray, and the file's catalogue record.

An array of :func:`~skipperdask.open_image` is computed row chunk by row chunk, each chunk
read from the file with :func:`~skipperdask.statistics.read_chunk_statistics`
(:func:`~skipperdask.statistics.file_row_chunks`), the chunks combined
(:func:`~skipperdask.metrics.combined`) and measured (:func:`~skipperdask.metrics.measure`).
A campaign calls the same functions on the same row chunks from the file's layout, without
building the DataArray and a dask graph around them (2-5 ms a file, 5-10 % of a small
image's time): the numbers are the same by construction.

A file's first task, :func:`file_task`, scans the file on a worker and either computes it
whole there, in one row chunk read block by block (:class:`Measured`), or, for a file too
large for one worker or among the last of a campaign, hands its layout back
(:class:`Split`): its row chunks (those of its DataArray, :func:`split_statistics`) then
spread over the workers and :func:`fit_task` combines them and fits.
"""

import dataclasses
import os
import time
from dataclasses import dataclass

from ..catalogue import ImageRecord
from ..errors import BadFileError, SkipperError
from ..io.layout import FileLayout, scan_file
from ..io.opened import kept_open
from ..io.storage import is_url, remote_info

# The pixel pass (statistics, io.array: numba and dask.array) and the fits (metrics) are
# imported inside the functions that use them, on the workers: the client that submits
# these tasks starts a second sooner without them.


@dataclass(frozen=True)
class Measured:
    """A file computed (or failed) on a worker: its catalogue record."""

    record: ImageRecord


@dataclass(frozen=True)
class Split:
    """A file to spread over the workers, row chunk by row chunk: its layout."""

    layout: FileLayout


def file_task(path, options, whole=True):
    """A campaign's first task of a file: scan it, then compute it whole here, block by block,
    when it is no larger than one chunk or, with ``whole``, when its statistics fit in
    ``options.whole_file_memory``.

    Parameters
    ----------
    path : str
    options : skipperdask.config.Options
    whole : bool
        Whether the file may be computed whole here when it is larger than one chunk.

    Returns
    -------
    Measured or Split
        A bad file is measured too: its record holds the error (which keeps worker logs free
        of tracebacks for expected failures).
    """
    from ..metrics import combined
    from ..statistics import STATISTICS_BYTES_PER_PIXEL, file_row_chunks

    start = time.perf_counter()
    try:
        with kept_open(path):  # the headers parsed once, for the scan and the reads
            layout = scan_file(path, polarity=options.polarity,
                               storage_options=options.storage_options)
            nrows = layout.shape[1]  # one (amp, row, col, skip) array, as open_image requires
            large = max(a.nbytes for a in layout.amps) > options.chunk_bytes
            statistics_bytes = (sum(a.nrows * a.ncols for a in layout.amps)
                                * STATISTICS_BYTES_PER_PIXEL)
            if large and not (whole and statistics_bytes <= options.whole_file_memory):
                return Split(layout)
            # one chunk of every row: the rows are read block by block inside it, here
            chunks = file_row_chunks(layout, _plan(layout, options), nrows)
            statistics = combined(chunks, scheduler="sync")
        metrics = _measure(layout, statistics, options)
    except BadFileError as error:  # a corrupt tile, no finite value: found while reading
        return Measured(failed_record(path, error, options.storage_options))
    return Measured(file_record(layout, metrics, time.perf_counter() - start))


def split_statistics(layout, options):
    """The row chunks of every amplifier of a file that :func:`file_task` split: those of
    its :func:`skipperdask.open_image` array (:func:`skipperdask.io.array.default_chunks` of
    ``options.chunk_bytes``).

    Returns
    -------
    list of list of skipperdask.statistics.RowChunk
        One list per amplifier; each chunk's ``function(*args)`` is one task.
    """
    from ..io.array import default_chunks
    from ..statistics import file_row_chunks

    rows = default_chunks(layout, options.chunk_bytes)["row"]
    return [[dataclasses.replace(chunk, function=_guarded, args=(chunk.function, *chunk.args))
             for chunk in chunks]
            for chunks in file_row_chunks(layout, _plan(layout, options), rows)]


def _guarded(function, *args):
    """``function(*args)``, or the :class:`BadFileError` it raised: a bad file's expected
    failure travels as a value to :func:`fit_task`, leaving no traceback in worker logs."""
    try:
        return function(*args)
    except BadFileError as error:
        return error


def fit_task(layout, options, parts_per_amp, started):
    """Combine the row chunks of every amplifier of a file and fit: the file's
    :class:`Measured` record (``started``: :func:`time.time` when it was split)."""
    from ..statistics import ImageStatistics

    errors = [part for parts in parts_per_amp for part in parts
              if isinstance(part, BadFileError)]
    try:
        if errors:
            raise errors[0]
        statistics = [ImageStatistics.combine(parts) for parts in parts_per_amp]
        metrics = _measure(layout, statistics, options)
    except BadFileError as error:
        return Measured(failed_record(layout.path, error, layout.storage_options))
    return Measured(file_record(layout, metrics, time.time() - started))


def _plan(layout, options):
    from ..statistics import plan_of

    return plan_of(layout.shape[1:], layout.polarity, options)


def _measure(layout, statistics, options):
    from ..metrics import measure

    return measure(statistics, options, polarity_source=layout.polarity_source,
                   amp_names=[a.name for a in layout.amps], path=layout.path,
                   header=layout.primary_header)


def file_record(layout, metrics, elapsed):
    """The catalogue record of a file whose metrics were computed.

    Parameters
    ----------
    layout : skipperdask.io.FileLayout
    metrics : xarray.Dataset
        Of :func:`skipperdask.image_metrics`.
    elapsed : float
        Seconds spent on it.
    """
    return ImageRecord(
        path=layout.path, size=layout.size, mtime=layout.mtime, metrics=metrics, error="",
        header=layout.primary_header, amp_headers={a.name: a.header for a in layout.amps},
        elapsed=elapsed,
    )


def failed_record(path, error, storage_options=None):
    """The catalogue record of a file that failed: its error (the message of a
    :class:`~skipperdask.errors.SkipperError`, else the error's type and message)."""
    try:
        if is_url(path):
            _, size, mtime = remote_info(path, storage_options)
        else:
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
