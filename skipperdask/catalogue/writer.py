"""A campaign's commits to its catalogue, from a thread of their own."""

import os
import threading
import time
from queue import Empty, SimpleQueue

from ..io.storage import is_url

#: seconds between catalogue commits, at least: a killed run loses no more work than this
DEFAULT_COMMIT_SECONDS = 5.0
#: records replacing entries are held back and committed together (one rewrite of the store)
#: at the end of the run, or when this many are waiting
REPLACEMENTS_HELD = 20_000


class CatalogueWriter:
    """Commits finished images to the catalogue from a thread of its own, so that the
    submission loop never waits on a commit (which rewrites the store).

    Parameters
    ----------
    store : Catalogue
    options : dict
        The run's options, kept in the catalogue's provenance.
    csv : str
        The CSV table, appended at each commit; at a URL (an object store, where nothing is
        appended), written whole at the end of the run.
    seed_tables : dict of str to list of str
        The original tool's text tables written at the end: table path -> its files.
    commit_seconds : float, optional
        See below.

    Records are committed in batches: every ``commit_seconds``, or by default every 5 s
    or ten times the last commit's duration when that is longer, so that commits stay a
    small share of the run (they share the client's process with the scheduler). A commit
    appends its images to the store and its rows to the CSV, at a cost of its own size. Records
    that replace an entry (a file processed again) need a rewrite of the store: they are held
    back and committed together at the end (or every :data:`REPLACEMENTS_HELD`), so a run
    rewrites the store once, not at every commit. The original tool's tables are written at the end.
    :meth:`close` commits what is left and raises the writer's error, if any.
    """

    _END = object()

    def __init__(self, store, options, csv, seed_tables, commit_seconds=None):
        self.store, self.csv, self.seed_tables = store, csv, seed_tables or {}
        self.options = options
        self.commit_seconds = commit_seconds
        self.error = None
        self._held = []
        self._records = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="catalogue-writer", daemon=True)
        self._thread.start()

    def put(self, record):
        """Queue a finished image's record; raises the writer's error if it failed."""
        if self.error is not None:
            raise self.error
        self._records.put(record)

    def close(self):
        """Commit what is queued, write the tables, stop the thread."""
        self._records.put(self._END)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _interval(self, cost):
        if self.commit_seconds is not None:
            return self.commit_seconds
        return max(DEFAULT_COMMIT_SECONDS, 10 * cost)

    def _run(self):
        last, cost, ending = time.perf_counter(), 0.0, False
        self.store.processed()  # the index: which records replace an entry
        try:
            while not ending:
                batch = []
                item = self._records.get()
                while True:
                    if item is self._END:
                        ending = True
                        break
                    batch.append(item)
                    remaining = last + self._interval(cost) - time.perf_counter()
                    if remaining <= 0:
                        break
                    try:
                        item = self._records.get(timeout=remaining)
                    except Empty:
                        break
                started = time.perf_counter()
                self._commit(batch, ending)
                last = time.perf_counter()
                cost = last - started
        except Exception as error:  # a full disk, say: the run must stop and say so
            self.error = error

    def _commit(self, batch, ending):
        held = self._held
        held.extend(r for r in batch if self.store.holds(r.path))
        new = [r for r in batch if not self.store.holds(r.path)]
        # an object has no append: a CSV on one is written whole, once, at the end
        csv = None if is_url(self.csv) else self.csv
        if new:
            self.store.add(new, options=self.options, csv=csv)
        if held and (ending or len(held) >= REPLACEMENTS_HELD):
            self.store.add(held, options=self.options, csv=csv)
            held.clear()
        if ending and self.store.objects.exists():
            if csv is None or not os.path.exists(csv):
                self.store.write_csv(self.csv)
            for table, listed in self.seed_tables.items():
                self.store.write_seed_table(table, listed)
