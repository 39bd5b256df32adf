"""FITS files kept open across the reads of one task (:func:`kept_open`).

Opening a tile-compressed file parses (and converts) the headers of every HDU up to the one
read: scanning a file's headers and then reading its 4 amplifiers one by one parsed each
header several times, about a third of a small compressed file's time. A task that scans
and reads a whole file keeps it open: the file is still opened and closed inside the task,
in its own worker.
"""

import contextlib
import os
import threading

from astropy.io import fits

#: per thread: absolute path -> the HDUList kept open (None until a reader opens it)
_kept = threading.local()


def _files():
    return _kept.__dict__.setdefault("files", {})


@contextlib.contextmanager
def kept_open(path):
    """Within this block, this thread's :func:`open_fits` of ``path`` share one open file,
    opened by the first of them and closed at the end of the block."""
    path = os.path.abspath(os.fspath(path))
    files = _files()
    if path in files:  # nested: the outer block owns it
        yield
        return
    files[path] = None
    try:
        yield
    finally:
        hdul = files.pop(path)
        if hdul is not None:
            hdul.close()


@contextlib.contextmanager
def open_fits(path, **options):
    """``astropy.io.fits.open(path, mode="readonly", **options)``, closed at the end of the
    block unless :func:`kept_open` keeps it (then the first opener's options hold)."""
    path = os.path.abspath(os.fspath(path))
    files = _files()
    if path not in files:
        with fits.open(path, mode="readonly", **options) as hdul:
            yield hdul
        return
    if files[path] is None:
        files[path] = fits.open(path, mode="readonly", **options)
    yield files[path]
