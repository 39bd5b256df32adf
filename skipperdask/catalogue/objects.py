"""Where a catalogue's objects are kept: a local directory, or a prefix of an object store.

The commit protocol (:mod:`.store`) needs of its place only: read an object, put an object
whole, remove objects, list them (a rewrite on an object store), make what was put durable,
and a lock that makes commits one at a time.

- :class:`LocalObjects`: a directory; an object is written whole by :func:`write_whole`
  (a temporary file, ``fsync``, :func:`os.replace`), the lock is ``fcntl.flock`` on
  ``<path>.lock``.
- :class:`RemoteObjects`: a URL (``s3://bucket/catalogue.zarr``) through fsspec; an object is
  one PUT (atomic on S3, GCS and the like: readers see the old or the new object). The lock is
  the object ``<url>.lock``, created only if absent (a conditional PUT, ``If-None-Match: *``,
  which S3 and S3-compatible servers honour) and removed after the commit. A lock whose owner
  died (a killed run) is broken: at once by a process of the same host that finds the owner's
  process gone, else after :data:`LOCK_LEASE` seconds (the clocks of the hosts must agree to
  a few seconds, and a commit must take less than that).
"""

import contextlib
import json
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from ..io.storage import absolute, filesystem, is_url

#: seconds after which the lock of a commit on an object store is taken for that of a killed
#: run (a commit at 10⁵ images takes about a second; a rewrite, seconds to a minute)
LOCK_LEASE = 300.0
#: seconds between two attempts at a lock that another process holds
LOCK_POLL = 0.2


def objects_at(path, storage_options=None):
    """The :class:`LocalObjects` or :class:`RemoteObjects` of a catalogue's path or URL."""
    if is_url(path):
        return RemoteObjects(path, storage_options)
    return LocalObjects(path)


def write_durably(path, data):
    """A new file written and fsync'ed in place (its folders made): alone, for a folder nobody
    reads before it is complete."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # not tempfile.mkstemp: its files are private (0600); the user's umask decides here
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_whole(path, data):
    """A file written whole or not at all: a temporary file beside it, fsync'ed, then renamed
    onto its name (a kill or a full disk leaves the old file, and no temporary one)."""
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.partial"
    try:
        write_durably(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalObjects:
    """A catalogue in a local (or shared POSIX) directory."""

    remote = False

    def __init__(self, path, fresh=False):
        self.path = os.path.abspath(os.fspath(path))
        # a rewrite's new folder, read by no one before its root zarr.json is put: the arrays'
        # objects are written in place, without a temporary file and a rename each (a third
        # of a 175-array commit's writes)
        self.fresh = fresh

    def _file(self, key):
        return os.path.join(self.path, *key.split("/"))

    def read(self, key):
        """The object's bytes, or None when there is none."""
        try:
            with open(self._file(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def put(self, key, data):
        if self.fresh and "/" in key:  # not the root: a kill leaves the folder without one
            write_durably(self._file(key), data)
        else:
            write_whole(self._file(key), data)

    def put_many(self, put, items):
        """``put(key, data)`` of every item; the fsyncs of many small files overlap."""
        if len(items) < 4:
            for key, data in items:
                put(key, data)
            return
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda item: put(*item), items))

    def remove(self, key):
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._file(key))

    def remove_tree(self, name):
        import shutil

        shutil.rmtree(self._file(name), ignore_errors=True)

    def make_durable(self, keys):
        """fsync the folders of the objects just put (their renames), the store's too; an
        append touches two folders per variable, whose fsyncs overlap (serially they took
        0.7 s of a 1 s commit)."""
        folders = sorted({os.path.dirname(self._file(key)) for key in keys})
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(fsync_dir, folders))

    def exists(self):
        return os.path.isdir(self.path)

    def holds_foreign_objects(self):
        """Whether the place holds things, though no root metadata (not a catalogue)."""
        return os.path.isdir(self.path) and bool(os.listdir(self.path))

    def zarr_arguments(self):
        """How zarr and xarray open the store: ``{"store": …}`` (and its storage options)."""
        return {"store": self.path}

    @contextlib.contextmanager
    def locked(self):
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class RemoteObjects:
    """A catalogue under a URL of an object store, through fsspec."""

    remote = True

    def __init__(self, url, storage_options=None):
        self.path = absolute(url)
        self.storage_options = dict(storage_options or {})
        self.fs, self._root = filesystem(self.path, self.storage_options)

    def _key(self, key):
        return f"{self._root}/{key}"

    def read(self, key):
        try:
            return self.fs.cat_file(self._key(key))
        except FileNotFoundError:
            return None

    def put(self, key, data):
        self.fs.pipe_file(self._key(key), data)

    def put_many(self, put, items):
        with ThreadPoolExecutor(8) as pool:  # each PUT is a round trip: they overlap
            list(pool.map(lambda item: put(*item), items))

    def remove(self, key):
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._key(key))

    def remove_tree(self, name):
        for key in self.keys(name):
            self.remove(key)

    def keys(self, under=""):
        """Every object's key (relative to the store), fresh from the listing."""
        top = self._key(under).rstrip("/")
        self.fs.invalidate_cache(top)
        try:
            found = self.fs.find(top)
        except FileNotFoundError:
            return []
        return [name[len(self._root) + 1:] for name in found if name.startswith(self._root + "/")]

    def make_durable(self, keys):
        """Nothing to do: a PUT is durable when it returns."""

    def exists(self):
        return bool(self.keys())

    def holds_foreign_objects(self):
        """Objects under the prefix that no killed commit of a catalogue leaves: anything but
        arrays' ``<name>/zarr.json`` and chunks."""
        return any(key.count("/") != 1 for key in self.keys())

    def zarr_arguments(self):
        return {"store": self.path, "storage_options": self.storage_options}

    @contextlib.contextmanager
    def locked(self):
        lock = self._root + ".lock"
        owner = json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                            "time": time.time()}).encode()
        while True:
            try:
                self.fs.pipe_file(lock, owner, mode="create")  # If-None-Match: *
                break
            except FileExistsError:
                if self._stale(lock):
                    with contextlib.suppress(FileNotFoundError):
                        self.fs.rm_file(lock)
                    continue
                time.sleep(LOCK_POLL)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(lock)

    def _stale(self, lock):
        """Whether the lock's owner is dead: a process of this host that is gone, or a lock
        older than :data:`LOCK_LEASE`."""
        try:
            owner = json.loads(self.fs.cat_file(lock))
        except FileNotFoundError:
            return True
        except ValueError:  # being written? PUTs are whole: a foreign object; wait the lease
            owner = {}
        if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
            try:
                os.kill(owner["pid"], 0)
            except ProcessLookupError:
                return True
            except PermissionError:  # alive, another user's
                pass
        return time.time() - float(owner.get("time", 0)) > LOCK_LEASE
