"""An input file, before its headers are read: where it is (a local path or a URL), that it
is a regular file, opened plainly or by range (:mod:`.storage`), and not compressed whole."""

import os
from stat import S_ISDIR, S_ISREG

from ..errors import BadFileError
from .storage import is_url, location, open_remote, remote_info


def regular_file(path, storage_options):
    """The path (absolute, or a normalised URL), size and mtime of an input file, or a
    BadFileError saying why it is none."""
    if is_url(path):
        path = location(path)
        try:
            kind, size, mtime = remote_info(path, storage_options)
        except OSError as error:
            raise BadFileError(path, f"cannot be read: {error}") from error
        if kind != "file":
            raise BadFileError(path, "is a directory")
        return path, size, mtime
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    try:
        stat = os.stat(path)
    except OSError as error:
        raise BadFileError(path, f"cannot be read: {error.strerror}") from error
    if not S_ISREG(stat.st_mode):  # a FIFO would block the open; a directory is no image
        kind = "a directory" if S_ISDIR(stat.st_mode) else "not a regular file (FIFO or device)"
        raise BadFileError(path, f"is {kind}")
    return path, stat.st_size, stat.st_mtime


def opened(path, storage_options):
    """The input file opened for reading: a plain file, or a remote one read by range."""
    try:
        return open_remote(path, storage_options) if is_url(path) else open(path, "rb")
    except OSError as error:
        raise BadFileError(path, f"cannot be read: {error.strerror or error}") from error


_WHOLE_FILE_COMPRESSION = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"PK\x03\x04": "zip",
                           b"\xfd7zXZ": "xz"}


def refuse_whole_file_compression(path, file):
    """A gzip'ed (bzip2, zip, xz) FITS file: say so instead of "truncated file"."""
    try:
        start = file.read(6)
        file.seek(0)
    except OSError as error:
        raise BadFileError(path, f"cannot be read: {error.strerror or error}") from error
    for magic, kind in _WHOLE_FILE_COMPRESSION.items():
        if start.startswith(magic):
            raise BadFileError(path, f"a {kind}-compressed file: decompress it first (only "
                               "tile-compressed FITS, fpack's .fz, is read directly)")
