"""Where input files and catalogues live: local paths, or URLs of object stores (``s3://``,
``gs://``, …) reached through fsspec.

Local paths, and ``file://`` URLs (made paths), stay on plain ``os`` files: nothing of fsspec
on the local path. A URL is opened with the file system fsspec gives its protocol (s3fs for
``s3://``: ``pip install 'skipperdask[s3]'``), with the ``skipperdask.storage-options`` setting
as its arguments (carried by :class:`~skipperdask.config.Options` to the workers, never
written to a catalogue or a log) on top of what the file system reads from the environment
(s3fs: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, …).

A remote file is known by its normalised URL (``s3://bucket/key``), its size and
modification time by its listing. Its bytes are read by range: :func:`read_range` fetches
exactly the bytes asked for (one ranged GET), :func:`open_remote` gives a file whose reads go
through a small read-ahead block (:data:`HEADER_BLOCK`), for astropy's header and tile reads.
"""

import datetime
import os
import posixpath
from typing import NamedTuple

from ..errors import BadOptionError

#: bytes fetched at a time by a file of :func:`open_remote`: 22 FITS header blocks, so that
#: reading a header costs one request, and skipping to the next header no more than that
HEADER_BLOCK = 64 * 2**10

_LOCAL_PROTOCOLS = ("file", "local")


def is_url(path):
    """Whether ``path`` is the URL of a remote file system (``s3://…``, ``gs://…``);
    ``file://`` URLs and plain paths are local."""
    scheme, separator, _ = os.fspath(path).partition("://")
    return bool(separator) and scheme.isalnum() and scheme.lower() not in _LOCAL_PROTOCOLS


def location(path):
    """``path`` as skipperdask keeps it: a URL normalised (``s3://bucket/a/../b/`` →
    ``s3://bucket/b``), a ``file://`` URL as its local path, a local path unchanged."""
    path = os.fspath(path)
    scheme, separator, rest = path.partition("://")
    if not separator or not scheme.isalnum():
        return path
    if scheme.lower() in _LOCAL_PROTOCOLS:
        return rest or "/"
    rest = posixpath.normpath("/" + rest).lstrip("/")
    return f"{scheme.lower()}://{rest}"


def absolute(path):
    """:func:`location`, made absolute when local (``os.path.abspath``)."""
    path = location(path)
    return path if is_url(path) else os.path.abspath(path)


def join(base, *parts):
    """``os.path.join`` for a local ``base``, ``/``-joined for a URL; an absolute part (a path
    or a URL) replaces what comes before it, as in ``os.path.join``."""
    urls = [i for i, part in enumerate((base, *parts)) if is_url(part)]
    if not urls:
        return os.path.join(base, *parts)
    base, *parts = (base, *parts)[urls[-1]:]
    return location(posixpath.join(base, *parts))


def dirname(path):
    """The folder of a file (a URL's parent prefix)."""
    if not is_url(path):
        return os.path.dirname(path)
    scheme, _, rest = location(path).partition("://")
    return f"{scheme}://{posixpath.dirname(rest)}"


def filesystem(url, storage_options=None):
    """The fsspec file system of a URL and the URL's path in it.

    Parameters
    ----------
    url : str
    storage_options : dict, optional
        The file system's arguments (``skipperdask.storage-options``); fsspec reuses one
        instance per protocol and arguments.

    Returns
    -------
    (fsspec.AbstractFileSystem, str)

    Raises
    ------
    BadOptionError
        No file system is installed for the protocol (e.g. ``s3://`` without s3fs).
    """
    import fsspec

    protocol = location(url).partition("://")[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as error:  # not installed, or unknown
        raise BadOptionError(f"{url}: no file system for {protocol}:// ({error}; for s3://: "
                             "pip install 'skipperdask[s3]')") from error
    return fsspec.core.url_to_fs(location(url), **(storage_options or {}))


def url_of(fs, path):
    """The URL of ``path`` of the file system ``fs`` (as listings give paths)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return location(f"{protocol}://{path}")


class FileInfo(NamedTuple):
    """An entry's kind (``"file"``, ``"directory"``), size in bytes and modification time
    (seconds since 1970)."""

    kind: str
    size: int
    mtime: float


def info_of(entry):
    """The :class:`FileInfo` of an fsspec listing's entry (``fs.info``, ``fs.ls(detail=True)``):
    its time is S3's ``LastModified``, else a ``mtime``/``updated``/``created`` field."""
    kind = "directory" if entry.get("type") == "directory" else "file"
    when = next((entry[k] for k in ("LastModified", "mtime", "updated", "created")
                 if entry.get(k) is not None), 0.0)
    if isinstance(when, str):
        when = datetime.datetime.fromisoformat(when.replace("Z", "+00:00"))
    if isinstance(when, datetime.datetime):
        when = when.timestamp()
    return FileInfo(kind, int(entry.get("size") or 0), float(when))


def remote_info(url, storage_options=None):
    """The :class:`FileInfo` of a URL (``FileNotFoundError`` when there is nothing)."""
    fs, path = filesystem(url, storage_options)
    return info_of(fs.info(path))


def read_range(url, start, stop, storage_options=None):
    """Bytes ``start … stop - 1`` of a remote file, in one ranged request (fewer when the file
    is shorter)."""
    fs, path = filesystem(url, storage_options)
    return fs.cat_file(path, start=start, end=stop)


def open_remote(url, storage_options=None):
    """A remote file opened for reading, fetched :data:`HEADER_BLOCK` bytes ahead at a time
    (not fsspec's default of several MiB at each seek: a header would fetch a whole image)."""
    fs, path = filesystem(url, storage_options)
    return fs.open(path, "rb", block_size=HEADER_BLOCK, cache_type="readahead")


def write_remote(url, data, storage_options=None):
    """A remote object written whole (one PUT: it is the old or the new, never a part)."""
    fs, path = filesystem(url, storage_options)
    fs.pipe_file(path, data)
