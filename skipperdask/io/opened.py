"""FITS files opened for their headers and compressed rows, and kept open across the reads of
one task (:func:`kept_open`).

Opening a tile-compressed file parses (and converts) the headers of every HDU up to the one
read: scanning a file's headers and then reading its 4 amplifiers one by one parsed each
header several times, about a third of a small compressed file's time. A task that scans
and reads a whole file keeps it open: the file is still opened and closed inside the task,
in its own worker. Most files never get here (:mod:`.headers` scans them, :mod:`.tiles`
decodes RICE_1 tiles): only the files and the compressions those do not take are opened with
astropy, which is imported then.
"""

import contextlib
import threading

from .inputs import opened, refuse_whole_file_compression
from .storage import absolute

#: per thread: absolute path or URL -> (HDUList, the ExitStack closing it), None until a
#: reader opens it; and ``raw``: path or URL -> the file opened by :func:`open_input`
_kept = threading.local()


def _files():
    return _kept.__dict__.setdefault("files", {})


def _raw_files():
    return _kept.__dict__.setdefault("raw", {})


@contextlib.contextmanager
def kept_open(path):
    """Within this block, this thread's :func:`open_fits` of ``path`` share one open file,
    and its :func:`open_input` another (the header scan and the RICE_1 tiles' reads: one open,
    not one per amplifier, which is a round trip to an object store), each opened by the first
    of them and closed at the end of the block."""
    key = absolute(path)
    files = _files()
    if key in files:  # nested: the outer block owns it
        yield
        return
    files[key] = None
    try:
        yield
    finally:
        kept = files.pop(key)
        if kept is not None:
            kept[1].close()
        raw = _raw_files().pop(key, None)
        if raw is not None:
            raw.close()


@contextlib.contextmanager
def open_input(path, storage_options=None):
    """The file opened for reading (:func:`.inputs.opened`): within :func:`kept_open`'s block
    the one its first caller opened, left open for the others (every reader seeks before it
    reads), else opened and closed here."""
    key = absolute(path)
    if key not in _files():
        with opened(path, storage_options) as file:
            yield file
        return
    raw = _raw_files()
    if key not in raw:
        raw[key] = opened(path, storage_options)
    yield raw[key]


@contextlib.contextmanager
def open_fits(path, storage_options=None, **options):
    """``astropy.io.fits.open`` of a local file or of a URL read by range (``options`` are
    fits.open's), closed at the end of the block unless :func:`kept_open` keeps it (then
    the first opener's options hold). A whole-file compressed (gzip'ed …) file is a
    :class:`~skipperdask.errors.BadFileError` saying so."""
    from astropy.io import fits  # only here: most files are read without astropy

    key = absolute(path)
    files = _files()
    if files.get(key) is not None:
        yield files[key][0]
        return
    with contextlib.ExitStack() as stack:
        file = stack.enter_context(opened(path, storage_options))
        refuse_whole_file_compression(path, file)
        hdul = stack.enter_context(fits.open(file, mode="readonly", **options))
        if key in files:  # inside kept_open: its block closes the file
            files[key] = (hdul, stack.pop_all())
        yield hdul
