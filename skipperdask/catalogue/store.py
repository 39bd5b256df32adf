"""The catalogue's store: a plain Zarr (format 3) directory, appended to, never half-written.

Layout
------
``<path>`` is an ordinary Zarr group with consolidated metadata (``xr.open_zarr(path)``
opens it; ``cp -r``, ``rsync`` and ``tar`` copies open too). Every variable over ``image`` is
chunked by :data:`~.zarrio.IMAGE_CHUNK` images (10⁶ images: 245 objects per array), whole
along its other dimensions; images are in the order they were committed (within a commit,
natural order of their paths). Beside it, ``<path>.lock`` serialises commits (``fcntl.flock``).
The path may be a URL of an object store (``s3://bucket/campaign.zarr``, through fsspec:
:mod:`.objects`); ``xr.open_zarr(url, storage_options=…)`` opens it.

The commit protocol
-------------------
The root ``zarr.json`` (the consolidated metadata: every array's shape, the labels' arrays,
the attributes) is the only thing that says what the catalogue holds: the commit point. A
reader that opens the store reads it once and then only the rows it says exist.

Adding N images (an *append*, the usual commit) writes, under the lock:

1. every array's chunks from row ``n`` (the committed count) to ``n + N``: the last, partial
   chunk again (its first rows unchanged) and the new ones, each object whole (a temporary
   file, ``fsync``, :func:`os.replace`; on an object store, a single PUT);
2. every array's own ``zarr.json`` (its new shape), new arrays included;
3. the root ``zarr.json``, with the new shapes and the attributes, ``commit`` and the CSV's
   bookkeeping: **the commit point**.

Why it is atomic. Until step 3, the root metadata still says ``n`` rows: the rows ``< n`` of every
chunk are those of before (step 1 rewrites a partial chunk with the same first rows, and a
chunk is replaced whole, never modified in place), and rows ``>= n`` are invisible. After step 3
everything it refers to is on disk (steps 1-2 were fsync'ed first). Each step writes objects
whole, so a kill at any moment (SIGKILL, a power cut) leaves the old or the new catalogue,
never a mix. On POSIX ``os.replace`` is atomic; on an object store a single object's PUT is,
and nothing else is needed: the protocol never renames or lists a prefix, and a reader that
fetched the old root metadata keeps reading rows ``< n``, which no commit changes. What a killed
append leaves beyond row ``n`` (chunks, arrays' metadata, a new array's directory) is
overwritten or removed by the next commit before its own step 3. The cost of an append is its
own rows plus one partial chunk per array and the metadata: not the catalogue's size.

A *rewrite* replaces the whole store: when a batch replaces entries (a changed or failed file
processed again, ``-a``), brings a new amplifier, a longer ``noise_vs_n`` or a change of a
variable's type, and once to convert a catalogue of an earlier version (a symbolic link into
``<path>.versions/``). The new store is written complete to ``<path>.rewrite-…`` (root
``zarr.json`` last), then exchanged with ``<path>`` by ``renameat2(RENAME_EXCHANGE)`` (Linux:
one atomic step), else moved in by two renames, of which a kill between is repaired on the
next open (a complete ``<path>.rewrite-…`` and no ``<path>``: it is moved in). The pipeline
(:class:`~.writer.CatalogueWriter`) commits the replacements of a run together, once. A lazy
``xr.open_zarr`` kept open across a rewrite may read the new store's chunks (``to_dataset``
and the index read at once).

On an object store
------------------
The append protocol above needs nothing but whole-object PUTs, which S3 and its kind make
atomic; nothing there is fsync'ed or renamed. An object store has no rename, so a rewrite
(:func:`.zarrio.rewrite_in_place`) goes over the store in place without touching what the
committed root refers to: its arrays' chunks use the other chunk key encoding (``c.0.0`` and
``0.0`` alternate from one rewrite to the next), so the new chunks are new objects; then the
arrays' metadata, then the root (the commit point), and only then the old chunks are removed.
A kill before the root leaves the old catalogue and unreferenced objects, which the next
rewrite removes first (an append never reads an array's own metadata, only the root's). The
store stays a plain Zarr store at its URL: ``xr.open_zarr(url, storage_options=…)`` opens it.
A reader that opened the old root lazily and reads after a rewrite finds its chunks gone.

Measured (``python benchmarks/catalogue.py``, 4 amplifiers, 150 header keywords, a busy
2-core machine): adding 50 images to catalogues of 10², 10³, 10⁴ and 10⁵ images takes 0.9-1.2,
0.9, 0.7-1.4 and 0.9 s (the CSV's append 0.2-0.4 s of it); the store holds 0.7, 2.7, 23 and
224 MB in 371, 371, 721 and 4,571 objects; ``xr.open_zarr`` takes 0.07-0.15 s at every size,
reading ``skNoise`` whole 0.035 s at 10⁵.

Exactly once: the lock makes commits one at a time, and each commit first rereads the index
(``path``, ``size``, ``mtime``, ``status``) when another process committed since; a path already
there is replaced, never added twice. Two runs on one catalogue therefore keep each other's
images. ``fcntl.flock`` works on local file systems and most NFS. On an object store the lock is
an object, ``<url>.lock``, created only if absent (a conditional PUT, ``If-None-Match: *``) and
removed after the commit; one left by a killed run is broken at once by a run of the same host
(the owner's process is gone), else after :data:`~.objects.LOCK_LEASE` seconds.

The CSV beside it
-----------------
The CSV (one row per image × amplifier) is appended, as the store is: after the commit, its
rows for the new images are appended. The root attributes record its size before them and the
first image they belong to; a run that finds the CSV shorter (killed before or during the
append) cuts it to that size and appends those images' rows again. A new column (a new
variable), a rewrite or a CSV that does not match rewrites it whole (atomically). A CSV at a
URL cannot be appended to: the campaign (:class:`~.writer.CatalogueWriter`) writes it whole,
once, at the end of each run (one PUT; its cost grows with the catalogue, once per run, not
per commit), and :meth:`Catalogue.add` given one writes it whole at every commit.
"""

import contextlib
import datetime
import json
import os
import uuid
import warnings

import numpy as np
import xarray as xr

from ..errors import CatalogueError
from ..io.storage import absolute, is_url
from ..version import __version__
from . import renames, zarrio
from .objects import LocalObjects, objects_at
from .records import (
    RESERVED,
    Entry,
    KeywordBudget,
    _Block,
    block_from_dataset,
    block_from_record,
    catalogue_dataset,
    combine,
    natural_key,
)
from .tables import format_seed_table
from .textfiles import append_text, csv_text, first_line, write_text_atomically

_US = xr.coders.CFDatetimeCoder(time_unit="us")


def _open(objects, **kwargs):
    """``xr.open_zarr`` of the store in ``objects`` with times in microseconds (any year)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", module="zarr")
        return xr.open_zarr(**objects.zarr_arguments(), consolidated=True, decode_times=_US,
                            **kwargs)


class Catalogue:
    """The Zarr catalogue of a campaign; see the module's docstring for its layout and safety.

    Parameters
    ----------
    path : str or os.PathLike
        The store (``xr.open_zarr(path)`` opens it), or its URL (``s3://bucket/cat.zarr``;
        ``xr.open_zarr(url, storage_options=…)``). It need not exist yet.
    header_variables : int, optional
        At most this many header keywords become variables (``skipperdask.header-variables``
        at the edge); the others are kept per image in ``header_json``. Default: no limit.
    storage_options : dict, optional
        The file system's arguments of a URL (``skipperdask.storage-options``).
    """

    def __init__(self, path, header_variables=None, storage_options=None):
        self.objects = objects_at(path, storage_options)
        self.path = self.objects.path
        self.storage_options = storage_options
        self.header_variables = header_variables
        self._commit = None  # the commit the index below is of
        self._index = {}  # path -> row
        self._entries = {}  # path -> Entry
        self._nimages = 0
        self._csv_checked = None  # the commit after which the CSV was found or made right
        # (commit, Dataset): the last to_dataset or catalogue written whole, for a run's end
        # (the original tool's tables, process's result) until the commit changes
        self._loaded = None

    def __repr__(self):
        return f"Catalogue({self.path!r})"

    # -- the store's state --------------------------------------------------------------------

    def _locked(self):
        return self.objects.locked()

    def _root(self):
        if not (self.objects.remote or os.path.isdir(self.path)):
            return None
        return zarrio.root_metadata(self.objects)

    def _needs_care(self):
        """Whether the store must be repaired or converted (only under the lock)."""
        if self.objects.remote:  # never renamed nor linked there
            return False
        if renames.needs_repair(self.path):
            return True
        root = self._root()
        return root is not None and not _current_format(root)

    def _repair(self):
        """Under the lock: finish a rewrite killed between its renames, convert a catalogue of
        an earlier version (a link into ``<path>.versions``, or a plain directory), and remove
        what killed commits left beside the store."""
        renames.finish(self.path, lambda d: zarrio.root_metadata(LocalObjects(d)) is not None)
        root = self._root()
        if root is not None and not _current_format(root):
            with _open(self.objects, chunks=None) as old:
                ds = old.load()
            for name, var in ds.variables.items():
                if var.dtype.kind in "TUS":  # numpy's StringDType, as zarr gave them
                    ds[name] = var.astype(object)
            ds.attrs["catalogue_format"] = zarrio.FORMAT
            self._replace(ds)
        renames.forget_versions(self.path)

    def _refresh(self, locked=False):
        """The index of what is committed now (``locked``: the caller holds the lock)."""
        if self._needs_care():
            with contextlib.nullcontext() if locked else self._locked():
                if self._needs_care():
                    self._repair()
        root = self._root()
        if root is None and self.objects.holds_foreign_objects():
            # never taken for an empty catalogue: a commit would replace the folder
            raise CatalogueError(f"{self.path}: not a skipperdask catalogue (a folder without "
                                 "zarr.json; give the .zarr folder a run wrote)")
        commit = None if root is None else root.get("attributes", {}).get("commit")
        if root is None:
            self._commit, self._index, self._entries, self._nimages = None, {}, {}, 0
        elif commit != self._commit or self._commit is None:
            with _open(self.objects, chunks=None) as ds:
                self._set_index(ds[["size", "mtime", "status"]].load() if "path" in ds else None,
                                commit)
        return root

    def _set_index(self, index, commit):
        """The index of the catalogue of commit ``commit``, from its ``size``, ``mtime`` and
        ``status`` (a Dataset over its ``path``; None when it has no image)."""
        paths = [] if index is None else [str(p) for p in index.path.values]
        self._entries = {} if index is None else {
            p: Entry(int(s), float(m), st == "ok") for p, s, m, st in zip(
                paths, index["size"].values, index.mtime.values, index.status.values,
                strict=True)}
        self._index = {p: i for i, p in enumerate(paths)}
        self._nimages, self._commit = len(paths), commit

    # -- reading ------------------------------------------------------------------------------

    def to_dataset(self):
        """The whole catalogue, in memory.

        Returns
        -------
        xarray.Dataset
            As ``xr.open_zarr(path)`` gives it (loaded; times in microseconds, any year); an
            empty Dataset when nothing was committed yet.
        """
        if self._refresh() is None:
            return xr.Dataset()
        if self._commit is None or self._loaded is None or self._loaded[0] != self._commit:
            with _open(self.objects, chunks=None) as ds:
                self._loaded = (self._commit, ds.load())
        return self._loaded[1].copy(deep=True)  # the caller's own, to change at will

    def processed(self):
        """The files already in the catalogue, failed ones included.

        Returns
        -------
        dict of str to Entry
            Absolute path → ``Entry(size, mtime, ok)``; a file whose size or mtime differ from
            its entry has changed and must be processed again.
        """
        self._refresh()
        return dict(self._entries)

    def holds(self, path):
        """Whether ``path`` has an entry (as of the last commit this object knows of)."""
        return absolute(path) in self._index

    # -- writing ------------------------------------------------------------------------------

    def add(self, records, options=None, csv=None):
        """Commit a batch of finished images, all at once (atomically).

        Parameters
        ----------
        records : iterable of ImageRecord
            A path already in the catalogue is replaced (a rewrite of the store: see the
            module's docstring); within the batch, the last record of a path wins.
        options : dict, optional
            The run's options, kept as JSON in the ``options`` attribute (default: keep the
            previous ones).
        csv : str or os.PathLike, optional
            The CSV kept beside the store: the batch's rows are appended to it (at a URL,
            it is written whole).
        """
        records = {absolute(r.path): r for r in records}
        if not records:
            return
        records = dict(sorted(records.items(), key=lambda item: natural_key(item[0])))
        committed = np.datetime64(datetime.datetime.now(datetime.UTC).replace(tzinfo=None), "us")
        self._loaded = None  # a commit replaces it, and it may be large
        with self._locked():
            root = self._refresh(locked=True)
            attributes = {} if root is None else root.get("attributes", {})
            labels, stored = ({}, {}) if root is None else zarrio.stored_variables(self.objects,
                                                                                root)
            remote_csv = csv is not None and is_url(csv)
            if csv is not None and not remote_csv:
                self._check_csv(os.path.abspath(csv), attributes)
            keyword_names = [n for n, (_, _, a) in stored.items() if "header_keyword" in a]
            taken = RESERVED.union(
                *(r.metrics.variables for r in records.values() if r.metrics is not None),
                (n for n in stored if n not in keyword_names))
            budget = KeywordBudget(keyword_names, self.header_variables)
            blocks = [block_from_record(r, committed, taken, budget) for r in records.values()]
            now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            attrs = {
                "title": "skipperdask catalogue of skipper-CCD image-quality metrics",
                "skipperdask_version": __version__,
                "catalogue_format": zarrio.FORMAT,
                "options": json.dumps(options, default=str)
                if options is not None else attributes.get("options", "{}"),
                "created": attributes.get("created", now),
                "updated": now,
                "commit": uuid.uuid4().hex,
            }
            new = self._appendable(labels, stored, blocks, attrs, records)
            appended = new is not None
            csv_full = True
            if appended:
                csv_full = csv is None or remote_csv or \
                    first_line(csv) != csv_text(new).split("\n", 1)[0] + "\n"
                attrs["csv"] = json.dumps({"path": None if csv is None else absolute(csv),
                                           "bytes": None if csv_full else os.path.getsize(csv),
                                           "from": self._nimages})
                new.attrs.update(attrs)
                zarrio.append(self.objects, new, self._nimages, root)
            else:
                attrs["csv"] = json.dumps({"path": None, "bytes": None, "from": 0})
                new = self._rewrite(blocks, attrs, records)
            start = self._nimages
            if appended:  # the index follows without reading the store again
                for i, r in enumerate(records.values()):
                    self._index[absolute(r.path)] = start + i
                    self._entries[absolute(r.path)] = Entry(int(r.size), float(r.mtime),
                                                                    r.ok)
                self._nimages, self._commit = start + len(records), attrs["commit"]
            else:  # the index of what was just written, without reading it back
                self._set_index(new[["size", "mtime", "status"]], attrs["commit"])
                # ... and the whole catalogue: what to_dataset would read back (tested)
                self._loaded = (attrs["commit"], new)
            if csv is not None:
                # from the Dataset just written, not read back: the same text (tested), and
                # reading 175 variables back costs a commit of a few images as much again
                if not csv_full:
                    self._append_csv(csv, new)
                elif appended:  # the CSV's columns changed: all of it again
                    self.write_csv(csv)
                else:  # the store was written whole: so is the CSV
                    write_text_atomically(csv, csv_text(new), self.storage_options)
                self._csv_checked = self._commit

    def _appendable(self, labels, stored, blocks, attrs, records):
        """The batch as a Dataset on the stored labels and variables, or None when it cannot be
        appended (nothing stored yet, a replaced entry, a new label, a changed variable)."""
        if self._nimages == 0 or any(p in self._index for p in records):
            return None
        existing = _Block(0, labels, {
            n: (dims, np.empty((0, *(len(labels[d]) for d in dims[1:])), dtype=dtype), attrs)
            for n, (dims, dtype, attrs) in stored.items()})
        new_labels, variables = combine([existing, *blocks])
        if new_labels != labels:
            return None
        for name, (dims, dtype, _) in stored.items():
            if tuple(variables[name][0]) != dims or variables[name][1].dtype != dtype:
                return None
        return catalogue_dataset(new_labels, variables, attrs)

    def _rewrite(self, blocks, attrs, records):
        """Write the whole catalogue with ``blocks`` in place of ``records``' entries; returns
        it (a Dataset)."""
        if self._nimages:
            with _open(self.objects, chunks=None) as stored:
                old = stored.load()
            keep = ~np.isin(old.path.values.astype(object), list(records))
            old_blocks = [block_from_dataset(old.isel(image=keep))]
        else:
            old_blocks = []
        labels, variables = combine(old_blocks + blocks)
        ds = catalogue_dataset(labels, variables, attrs)
        # a replaced entry keeps its place; new ones come after
        rank = {p: i for i, p in enumerate(self._index)}
        for p in records:
            rank.setdefault(p, len(rank))
        ds = ds.isel(image=np.argsort([rank[str(p)] for p in ds.path.values], kind="stable"))
        self._replace(ds)
        return ds

    def _replace(self, ds):
        """A rewrite: the whole store, written beside it, then exchanged with it (on an object
        store, over it: :func:`.zarrio.rewrite_in_place`)."""
        if self.objects.remote:
            zarrio.rewrite_in_place(self.objects, ds, self._root())
            return
        renames.replace_directory(
            self.path, lambda tmp: zarrio.write_new(LocalObjects(tmp, fresh=True), ds))

    # -- the CSV ------------------------------------------------------------------------------

    def _check_csv(self, csv, attributes):
        """Under the lock, before a commit: make the CSV what the last commit says it is."""
        if self._csv_checked is not None and self._csv_checked == self._commit:
            return
        if self._nimages == 0:
            return
        book = json.loads(attributes.get("csv", "null") or "null") or {}
        size = os.path.getsize(csv) if os.path.exists(csv) else -1
        if book.get("path") == csv and book.get("bytes") is not None and size >= book["bytes"]:
            with open(csv, "r+b") as f:
                f.truncate(book["bytes"])
            with _open(self.objects, chunks=None) as ds:
                self._append_csv(csv, ds.isel(image=slice(book["from"], None)).load())
        else:
            self.write_csv(csv)
        self._csv_checked = self._commit

    def _append_csv(self, csv, ds):
        append_text(csv, csv_text(ds, header=False))

    # -- tables -------------------------------------------------------------------------------

    def write_csv(self, path):
        """Write the catalogue as a CSV, one row per image × amplifier (atomically).

        See :func:`format_csv` for the columns (here in the order of their names).

        Parameters
        ----------
        path : str or os.PathLike
        """
        write_text_atomically(path, csv_text(self.to_dataset()), self.storage_options)

    def format_seed_table(self, paths=None):
        """The original tool's text table (``-p`` prints it); see :func:`format_seed_table`."""
        return format_seed_table(self.to_dataset(), paths)

    def write_seed_table(self, path, paths=None):
        """Write the original tool's text table (atomically); see :func:`format_seed_table`.

        Parameters
        ----------
        path : str or os.PathLike
            The table, e.g. from :func:`skipperdask.campaign.files.seed_table_path`.
        paths : iterable of str, optional
            Only these files (e.g. those of one directory); default all.
        """
        write_text_atomically(path, format_seed_table(self.to_dataset(), paths),
                              self.storage_options)


def _current_format(root):
    return root.get("attributes", {}).get("catalogue_format") == zarrio.FORMAT


def _storage(dtype):
    return np.dtype(object) if dtype.kind in "OUST" else dtype

