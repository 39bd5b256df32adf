"""The catalogue on an object store (a real S3 server on loopback): appends, a rewrite without
rename, a commit that dies after any of its PUTs, and the lock object of concurrent runs."""

import json
import os
import subprocess
import threading

import pytest

from skipperdask.catalogue import Catalogue, objects
from skipperdask.catalogue.objects import RemoteObjects
from tests.catalogue.test_catalogue import check_consistent, numbered


@pytest.fixture
def store(s3):
    return f"s3://{s3.new_bucket()}/catalogue.zarr"


def _chunk_keys(s3, store):
    fs = s3.filesystem()
    fs.invalidate_cache()
    return [k for k in fs.find(store.removeprefix("s3://")) if not k.endswith("zarr.json")]


def _encodings(keys):
    """Which chunk key encodings the keys use: ``c.0.0`` (True) or ``0.0`` (False)."""
    return {key.rpartition("/")[2].startswith("c.") for key in keys}


def test_appends_and_a_rewrite_without_rename(s3, store):
    catalogue = Catalogue(store, storage_options=s3.storage_options)
    catalogue.add([numbered(k) for k in range(3)])
    catalogue.add([numbered(3), numbered(4)])  # an append: the same chunk keys
    first = _encodings(_chunk_keys(s3, store))
    assert check_consistent(store, s3.storage_options) == [0, 1, 2, 3, 4]
    catalogue.add([numbered(0), numbered(5)])  # replaces an entry: a rewrite
    assert check_consistent(store, s3.storage_options) == [0, 1, 2, 3, 4, 5]
    # the rewrite wrote the other chunk keys (c.0.0 <-> 0.0) and removed the old ones
    second = _encodings(_chunk_keys(s3, store))
    assert len(first) == 1 == len(second) and first != second
    assert sorted(Catalogue(store, storage_options=s3.storage_options).processed()) == \
        sorted(f"/campaign/Img_{k}.fits" for k in range(6))


@pytest.mark.parametrize("replace", [False, True], ids=["append", "rewrite"])
@pytest.mark.parametrize("puts", [5, 25])  # among the chunks; some arrays' metadata too
def test_a_commit_that_dies_after_any_put_leaves_the_last_commit(s3, store, monkeypatch, puts,
                                                                 replace):
    """The process dies (here: an error) after ``puts`` objects of a commit: the store holds
    its last commit, and the next commit carries on from it."""
    Catalogue(store, storage_options=s3.storage_options).add([numbered(k) for k in range(3)])
    written = []
    original = RemoteObjects.put

    def put(self, key, data):
        if len(written) >= puts:
            raise OSError("the connection is lost")
        written.append(key)
        return original(self, key, data)

    monkeypatch.setattr(RemoteObjects, "put", put)
    batch = [numbered(0), numbered(3)] if replace else [numbered(3), numbered(4)]
    with pytest.raises(OSError, match="connection"):
        Catalogue(store, storage_options=s3.storage_options).add(batch)
    monkeypatch.undo()
    assert check_consistent(store, s3.storage_options) == [0, 1, 2]
    # an append after it: from the committed metadata, not what the dead commit put
    Catalogue(store, storage_options=s3.storage_options).add([numbered(5)])
    assert check_consistent(store, s3.storage_options) == [0, 1, 2, 5]


def _lock_of(s3, store, pid, time):
    owner = {"host": os.uname().nodename, "pid": pid, "time": time}
    s3.filesystem().pipe_file(store.removeprefix("s3://") + ".lock", json.dumps(owner).encode())


def test_a_lock_held_by_a_live_run_waits_and_one_of_a_dead_run_is_broken(s3, store):
    import socket
    import time

    assert os.uname().nodename == socket.gethostname()
    catalogue = Catalogue(store, storage_options=s3.storage_options)
    _lock_of(s3, store, os.getpid(), time.time())  # a live owner
    committing = threading.Thread(target=catalogue.add, args=([numbered(0)],))
    committing.start()
    committing.join(1.0)
    root = store.removeprefix("s3://") + "/zarr.json"
    assert committing.is_alive() and not s3.filesystem().exists(root)
    s3.filesystem().rm_file(store.removeprefix("s3://") + ".lock")  # the live run commits
    committing.join(30)
    assert not committing.is_alive() and check_consistent(store, s3.storage_options) == [0]

    dead = subprocess.Popen(["true"])
    dead.wait()
    _lock_of(s3, store, dead.pid, time.time())  # a killed run of this host: broken at once
    catalogue.add([numbered(1)])
    _lock_of(s3, store, 0, time.time() - objects.LOCK_LEASE - 1)  # another host's, expired
    catalogue.add([numbered(2)])
    assert check_consistent(store, s3.storage_options) == [0, 1, 2]
    assert not s3.filesystem().exists(store.removeprefix("s3://") + ".lock")
