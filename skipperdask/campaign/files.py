"""Which files a run processes, and where the original tool's text table of each goes.

The original tool's rules, kept so that its users' command lines select the same files:

- every ``-f`` pattern is a regular expression matched with :func:`re.match` (anchored at the
  start only, as in the original tool) against the base names of the files in the directory;
- shell wildcards (``*.fits``, ``Img_?.fits``) select what :func:`fnmatch.fnmatchcase` selects;
  a pattern counts as both, a file is selected when either matches;
- a pattern naming an existing file selects that file only, in each searched directory (the
  original tool's regex reading of ``Img_1.fits`` would also pick ``Img_1.fits.fz``: not what a user
  naming one file means);
- a pattern may carry a directory part (``run3/Img_.*``, ``/data/run*/Img_[0-9]+.fits``), relative
  to the processed directory; wildcards in that part select directories;
- ``-r`` applies the name patterns in every subdirectory too;
- the result is absolute paths, each file once, sorted naturally (``Img_2`` before ``Img_10``);
  a file is identified by its resolved real path, so that a symlinked directory or a ``./``
  prefix does not select it twice;
- the same rules hold on an object store (``-d s3://bucket/campaign``, listed through
  fsspec, its prefixes as directories); a file there is its normalised URL.

Entries that match but cannot be images (a directory named ``Img_5.fits``, a broken or
looping symbolic link, a FIFO or device, an unreadable entry) and a ``-f`` pattern that
matches nothing are never opened: :func:`find_files` returns them as :class:`Rejected`, one
problem each, so that a run reports them and goes on. A ``directory`` that does not exist
or is a file is a :class:`~skipperdask.errors.BadOptionError` at once.

The original tool writes its table (default ``img_preproc_out.txt``) in the processed
directory, so with ``-r`` each directory gets its own table unless ``-o`` is absolute:
:func:`tables_for` groups the selected files by the table they belong to.
"""

import fnmatch
import glob
import os
import posixpath
import re
import stat
from typing import NamedTuple

from ..catalogue import natural_key
from ..errors import BadOptionError
from ..io.storage import (
    absolute,
    dirname,
    filesystem,
    is_url,
    join,
    location,
    remote_info,
    url_of,
)

DEFAULT_PATTERN = r"Img_[0-9]+.fits"
DEFAULT_OUTPUT = "img_preproc_out.txt"

def _name_matches(pattern, name):
    """Whether a base name is selected by one name pattern (regex or shell wildcard)."""
    if fnmatch.fnmatchcase(name, pattern):
        return True
    try:
        return re.match(pattern, name) is not None
    except re.error:  # "*.fits" is no regex, only a wildcard
        return False


class Rejected(NamedTuple):
    """A selected entry that is not processed, or a pattern that selects nothing."""

    path: str
    problem: str

    def __str__(self):
        return f"{self.path}: {self.problem}"


class Selection(NamedTuple):
    """What :func:`find_files` found: the files to process and the entries rejected."""

    paths: list
    rejected: list


def _search_dirs(directory, dir_part, recursive):
    """The directories whose files a pattern's name part is matched against."""
    base = os.path.join(directory, dir_part)  # an absolute dir_part stays as it is
    tops = sorted(glob.glob(base)) if glob.has_magic(dir_part) else [base]
    for top in tops:
        if not os.path.isdir(top):
            continue
        if not recursive:
            yield top
            continue
        # onerror: an unreadable subdirectory is left out, never the end of the selection
        for root, subdirs, _ in os.walk(top, onerror=lambda error: None):
            subdirs.sort(key=natural_key)
            yield root


class _LocalFolders:
    """The local file system, as :func:`find_files` walks it."""

    search_dirs = staticmethod(_search_dirs)
    isdir = staticmethod(os.path.isdir)
    isfile = staticmethod(os.path.isfile)
    exists = staticmethod(os.path.exists)
    identity = staticmethod(os.path.realpath)  # a symlinked folder selects nothing twice
    absolute = staticmethod(os.path.abspath)

    @staticmethod
    def entries(folder):
        """``(name, path, problem)`` of every entry of a folder (problem None for a file)."""
        return [(e.name, e.path, entry_problem(e.path)) for e in os.scandir(folder)]


class _RemoteFolders:
    """An object store's prefixes as folders (:mod:`skipperdask.io.storage`), walked as
    :func:`find_files` walks local ones; a file is known by its normalised URL."""

    def __init__(self, storage_options):
        self.storage_options = storage_options
        self.identity = self.absolute = location

    def _fs(self, url):
        return filesystem(url, self.storage_options)

    def isdir(self, url):
        fs, path = self._fs(url)
        return fs.isdir(path)

    def isfile(self, url):
        fs, path = self._fs(url)
        return fs.isfile(path)

    def exists(self, url):
        fs, path = self._fs(url)
        return fs.exists(path)

    def search_dirs(self, directory, dir_part, recursive):
        fs, _ = self._fs(directory)
        base = join(directory, dir_part)
        tops = sorted(url_of(fs, p) for p in fs.glob(self._fs(base)[1])) \
            if glob.has_magic(dir_part) else [base]
        for top in tops:
            if not self.isdir(top):
                continue
            yield top
            if recursive:
                folders = fs.find(self._fs(top)[1], withdirs=True, detail=True)
                yield from sorted((url_of(fs, p) for p, e in folders.items()
                                   if e.get("type") == "directory"), key=natural_key)

    def entries(self, folder):
        fs, path = self._fs(folder)
        return [(posixpath.basename(e["name"].rstrip("/")), url_of(fs, e["name"]),
                 "is a directory, not a file" if e.get("type") == "directory" else None)
                for e in fs.ls(path, detail=True)]


def entry_problem(path):
    """Why an entry cannot be an image file, in a few words, or None for a regular file.

    Never opens the entry (a FIFO would block): it is only ``stat``-ed.
    """
    try:
        info = os.stat(path)
    except OSError as error:
        if os.path.islink(path):
            if error.errno == 40:  # ELOOP
                return "looping symbolic link (too many levels of symbolic links)"
            return f"broken symbolic link (to {os.readlink(path)})"
        return f"cannot be read ({error.strerror})"
    if stat.S_ISREG(info.st_mode):
        return None
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not a file"
    if stat.S_ISFIFO(info.st_mode):
        return "is a FIFO (named pipe), not a file"
    if stat.S_ISSOCK(info.st_mode):
        return "is a socket, not a file"
    return "is a device, not a file"


def _looks_like_a_name(pattern):
    """Whether a pattern reads as one file's name rather than a regex or a wildcard."""
    return re.fullmatch(r"[\w.+-]+", pattern) is not None


def find_files(patterns=None, directory=".", recursive=False, storage_options=None):
    """The files a run processes, by the original tool's rules, and what was rejected.

    Parameters are those of :func:`select_files`.

    Returns
    -------
    Selection
        ``paths``: resolved absolute paths of regular files, each once, sorted naturally;
        ``rejected``: a :class:`Rejected` for every matching entry that is not a regular
        file and for every pattern that matches nothing.

    Raises
    ------
    BadOptionError
        ``directory`` does not exist or is not a directory.
    """
    if patterns is None:
        patterns = [DEFAULT_PATTERN]
    elif isinstance(patterns, str | os.PathLike):
        patterns = [patterns]
    directory = location(directory)
    folders = _RemoteFolders(storage_options) if is_url(directory) else _LocalFolders()
    if not folders.isdir(directory):
        problem = "is a file, not a directory" if folders.exists(directory) else \
            "no such directory"
        raise BadOptionError(f"{folders.absolute(directory)}: {problem}")
    found, rejected = set(), {}
    for pattern in map(os.fspath, patterns):
        dir_part, name_part = os.path.split(pattern)
        matched = False
        for folder in folders.search_dirs(directory, dir_part, recursive):
            named = join(folder, name_part)
            if name_part and folders.isfile(named):
                found.add(folders.identity(named))
                matched = True
                continue
            try:
                entries = folders.entries(folder)
            except OSError as error:
                rejected[folder] = f"cannot be listed ({error.strerror or error})"
                continue
            for name, path, problem in entries:
                if not _name_matches(name_part, name):
                    continue
                matched = True
                if problem is None:
                    found.add(folders.identity(path))
                else:
                    rejected.setdefault(folders.absolute(path), problem)
        if not matched:
            where = folders.absolute(join(directory, dir_part))
            if _looks_like_a_name(name_part):
                rejected[join(where, name_part)] = "no such file"
            else:
                rejected[join(where, name_part)] = "the pattern matches no file"
    return Selection(sorted(found, key=natural_key),
                     [Rejected(path, problem) for path, problem
                      in sorted(rejected.items(), key=lambda item: natural_key(item[0]))])


def selects(path, patterns=None, directory=".", recursive=False):
    """Whether :func:`find_files` with these arguments selects a file of this name, by its
    name and folder only (it need not exist): for a file that just appeared.

    Parameters
    ----------
    path : str or os.PathLike
        The file, absolute or relative to the current directory.
    patterns, directory, recursive
        As for :func:`select_files` (a local directory).

    Returns
    -------
    bool
    """
    if patterns is None:
        patterns = [DEFAULT_PATTERN]
    elif isinstance(patterns, str | os.PathLike):
        patterns = [patterns]
    folder, name = os.path.split(os.path.abspath(path))
    for pattern in map(os.fspath, patterns):
        dir_part, name_part = os.path.split(pattern)
        base = os.path.abspath(os.path.join(os.fspath(directory), dir_part))
        tops = map(os.path.abspath, glob.glob(base)) if glob.has_magic(dir_part) else [base]
        if not any(folder == top or (recursive and folder.startswith(top + os.sep))
                   for top in tops):
            continue
        if name == name_part:
            return True
        # a pattern naming an existing file selects that file only (find_files)
        if not os.path.isfile(os.path.join(folder, name_part)) and _name_matches(name_part,
                                                                                 name):
            return True
    return False


def select_files(patterns=None, directory=".", recursive=False, storage_options=None):
    """The files a run processes, by the original tool's rules (see the module's docstring).

    Parameters
    ----------
    patterns : str or list of str, optional
        Regular expressions, shell wildcards or file names (``-f``); default
        ``Img_[0-9]+.fits``.
    directory : str or os.PathLike
        The processed directory (``-d``); relative patterns are taken in it. A URL
        (``s3://bucket/campaign``) is listed through fsspec, with the same rules; its files
        are known by their normalised URLs.
    recursive : bool
        Also look in every subdirectory (``-r``).
    storage_options : dict, optional
        The file system's arguments of a URL (``skipperdask.storage-options``).

    Returns
    -------
    list of str
        Resolved absolute paths of regular files, each once, sorted naturally (the rejected
        entries of :func:`find_files` left out).
    """
    return find_files(patterns, directory, recursive, storage_options).paths


def seed_table_path(directory, output=DEFAULT_OUTPUT):
    """Where the original tool writes the table of the files of one directory.

    Parameters
    ----------
    directory : str or os.PathLike
        The directory the files are in.
    output : str or os.PathLike
        ``-o``: an absolute path is used as it is; a relative one is taken in ``directory``
        (not in the current directory), as the original tool does.

    Returns
    -------
    str
        Absolute path (or URL) of the table.
    """
    return absolute(join(directory, output))


def tables_for(paths, output=DEFAULT_OUTPUT):
    """Group files by the original tool's table they belong to (one per directory unless
    ``-o`` is absolute).

    Parameters
    ----------
    paths : iterable of str
        Files, e.g. from :func:`select_files`.
    output : str or os.PathLike
        ``-o``.

    Returns
    -------
    dict of str to list of str
        Table path → absolute paths of its files, in natural order; tables in natural order.
    """
    groups = {}
    for path in sorted(map(absolute, paths), key=natural_key):
        groups.setdefault(seed_table_path(dirname(path), output), []).append(path)
    return dict(sorted(groups.items(), key=lambda item: natural_key(item[0])))


def files_to_process(paths, catalogue, reprocess=False, storage_options=None):
    """The paths to process: not yet in the catalogue, failed before (a transient failure
    or a file since repaired), or changed since (size or mtime; of a URL, its listing's);
    all of them to reprocess.

    Returns
    -------
    (todo, skipped) : (list of str, list of str)
    """
    done = {} if reprocess else catalogue.processed()
    todo, skipped = [], []
    seen = set()
    for path in paths:
        path = location(path) if is_url(path) else os.path.realpath(path)
        if path in seen:
            continue
        seen.add(path)
        entry = done.get(path)
        if entry is not None and entry.ok:
            if _size_and_mtime(path, storage_options) == tuple(entry[:2]):
                skipped.append(path)
                continue
        todo.append(path)
    return todo, skipped


def _size_and_mtime(path, storage_options):
    try:
        if is_url(path):
            return tuple(remote_info(path, storage_options)[1:])
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime
