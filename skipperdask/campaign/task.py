"""A campaign's work on one file: the metrics of one image, computed as
:func:`skipperdask.image_metrics` computes them from :func:`skipperdask.open_image`'s lazy
DataArray, and the file's catalogue record.

A file's first task, :func:`file_task`, opens the image on a worker and either computes it
whole there, reading it block by block (:class:`Measured`), or, for a file too large for one
worker or among the last of a campaign, hands its layout back (:class:`Split`): its dask
row chunks (:func:`split_statistics`) then spread over the workers and :func:`fit_task`
combines them and fits. Both ways run the same functions on the same row chunks:
:func:`skipperdask.statistics.row_chunks`, then :func:`skipperdask.metrics.measure`.
"""

import os
import time
from dataclasses import dataclass

from ..catalogue import ImageRecord
from ..errors import BadFileError, SkipperError
from ..io import FileLayout, file_layout, layout_image, open_image
from ..metrics import image_metrics, measure
from ..statistics import STATISTICS_BYTES_PER_PIXEL, ImageStatistics, plan_of, row_chunks


@dataclass(frozen=True)
class Measured:
    """A file computed (or failed) on a worker: its catalogue record."""

    record: ImageRecord


@dataclass(frozen=True)
class Split:
    """A file to spread over the workers, row chunk by row chunk: its layout."""

    layout: FileLayout


def file_task(path, options, whole=True):
    """A campaign's first task of a file: open it, then compute it whole here, block by block,
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
    start = time.perf_counter()
    try:
        pixels = open_image(path, options=options)
    except BadFileError as error:
        return Measured(failed_record(path, error))
    layout = file_layout(pixels)
    large = max(a.nbytes for a in layout.amps) > options.chunk_bytes
    statistics_bytes = sum(a.nrows * a.ncols for a in layout.amps) * STATISTICS_BYTES_PER_PIXEL
    if large and not (whole and statistics_bytes <= options.whole_file_memory):
        return Split(layout)
    # one chunk of every row: the rows are read block by block inside it, in this thread
    metrics = image_metrics(pixels, options=options, rows_per_chunk=layout.amps[0].nrows,
                            scheduler="sync")
    return Measured(file_record(layout, metrics, time.perf_counter() - start))


def split_statistics(layout, options):
    """The row chunks of every amplifier of a file that :func:`file_task` split: those of
    its DataArray (:func:`skipperdask.io.layout_image`, chunks of ``options.chunk_bytes``).

    Returns
    -------
    list of list of skipperdask.statistics.RowChunk
        One list per amplifier; each chunk's ``function(*args)`` is one task.
    """
    pixels = layout_image(layout, chunk_bytes=options.chunk_bytes)
    return row_chunks(pixels, plan_of(layout.shape[1:], layout.polarity, options))


def fit_task(layout, options, parts_per_amp, started):
    """Combine the row chunks of every amplifier of a file and fit: the file's
    :class:`Measured` record (``started``: :func:`time.time` when it was split)."""
    statistics = [ImageStatistics.combine(parts) for parts in parts_per_amp]
    metrics = measure(statistics, options, polarity_source=layout.polarity_source,
                      amp_names=[a.name for a in layout.amps], path=layout.path)
    return Measured(file_record(layout, metrics, time.time() - started))


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


def failed_record(path, error):
    """The catalogue record of a file that failed: its error (the message of a
    :class:`~skipperdask.errors.SkipperError`, else the error's type and message)."""
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
