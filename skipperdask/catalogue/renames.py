"""A local store replaced whole by renames, and the repair of what a kill between two renames
(or a catalogue of an earlier version, a link into ``<path>.versions``) left beside it.

A rewrite of a local store is written complete to ``<path>.rewrite-…`` and exchanged with
``<path>`` in one step (Linux ``renameat2(RENAME_EXCHANGE)``), else moved in by two renames;
a complete ``<path>.rewrite-…`` and no ``<path>`` (a kill between the two) is moved in on the
next open. Object stores have no rename: see :func:`.zarrio.rewrite_in_place`.
"""

import contextlib
import ctypes
import glob
import os
import shutil

from .objects import fsync_dir
from .textfiles import unique


def needs_repair(path):
    """Whether a rewrite was killed beside the store, or it is an earlier version's link."""
    if glob.glob(glob.escape(path) + ".rewrite-*"):
        return True
    if not os.path.lexists(path):
        return os.path.isdir(path + ".versions")
    return os.path.islink(path)


def finish(path, is_complete):
    """Move in the last complete rewrite when a kill left no store (``is_complete(folder)``
    says which are), or link the last version of an earlier version's switch; remove the
    other leftovers."""
    rewrites = sorted(glob.glob(glob.escape(path) + ".rewrite-*"), key=os.path.getmtime)
    if not os.path.lexists(path):
        complete = [d for d in rewrites if is_complete(d)]
        if complete:
            os.rename(complete[-1], path)
        elif os.path.isdir(path + ".versions"):  # killed in an earlier version's switch
            versions = sorted(glob.glob(os.path.join(path + ".versions", "v[0-9]*")))
            if versions:
                os.symlink(versions[-1], path)
    for leftover in glob.glob(glob.escape(path) + ".rewrite-*"):
        _remove(leftover)


def forget_versions(path):
    """Remove an earlier version's ``<path>.versions`` once the store is converted."""
    shutil.rmtree(path + ".versions", ignore_errors=True)


def replace_directory(path, write):
    """Replace the store ``path`` by the one ``write(folder)`` writes complete into a new
    folder beside it: exchanged in one step where the system can, else by two renames."""
    tmp = f"{path}.rewrite-{unique()}"
    try:
        write(tmp)
    except BaseException:  # a full disk, say: no half-written rewrite left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not os.path.lexists(path):
        os.rename(tmp, path)
        return
    if not exchange(tmp, path):
        aside = f"{path}.rewrite-old-{unique()}"
        os.rename(path, aside)
        os.rename(tmp, path)  # a kill before this: repaired on the next open
        tmp = aside
    with contextlib.suppress(OSError):
        fsync_dir(os.path.dirname(path))
    _remove(tmp)


def _remove(entry):
    if os.path.islink(entry) or not os.path.isdir(entry):
        os.remove(entry)
    else:
        shutil.rmtree(entry, ignore_errors=True)


_RENAME_EXCHANGE = 2


def exchange(a, b):
    """Swap two directory entries atomically (Linux ``renameat2(RENAME_EXCHANGE)``); returns
    False where the system cannot, and the caller falls back to two renames."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0
