"""A run's commits: appends, replacements held back for one rewrite, two writers at once."""

import os
import threading

import pytest
import xarray as xr

from skipperdask.catalogue import Catalogue, CatalogueWriter
from skipperdask.catalogue.store import Catalogue as StoreCatalogue
from skipperdask.errors import CatalogueError
from tests.catalogue.test_catalogue import check_consistent, numbered


def counting_rewrites(monkeypatch):
    rewrites = []
    original = StoreCatalogue._replace

    def replace(self, ds):
        rewrites.append(ds.sizes["image"])
        return original(self, ds)

    monkeypatch.setattr(StoreCatalogue, "_replace", replace)
    return rewrites


def test_a_run_appends_and_rewrites_once_for_its_replacements(tmp_path, monkeypatch):
    store, table = str(tmp_path / "catalogue.zarr"), str(tmp_path / "catalogue.csv")
    Catalogue(store).add([numbered(k) for k in range(3)], csv=table)
    rewrites = counting_rewrites(monkeypatch)
    writer = CatalogueWriter(Catalogue(store), {}, table, {str(tmp_path / "t.txt"): []},
                             commit_seconds=0)
    for k in (3, 0, 4, 1, 6, 2):  # new images, and images already there, processed again
        writer.put(numbered(k))
    writer.close()
    assert rewrites == [6]  # one rewrite, at the end, with the three replacements
    assert check_consistent(store) == [0, 1, 2, 3, 4, 6]
    reference = str(tmp_path / "reference.csv")
    Catalogue(store).write_csv(reference)
    with open(table) as mine, open(reference) as theirs:
        assert mine.read() == theirs.read()
    assert os.path.exists(tmp_path / "t.txt")


def test_two_writers_at_once_keep_every_image_once(tmp_path):
    """Two runs on one catalogue: each commit rereads what the other committed (flock)."""
    store = str(tmp_path / "catalogue.zarr")
    Catalogue(store).add([numbered(0), numbered(1), numbered(2)])
    errors = []

    def run(numbers):
        try:
            catalogue = Catalogue(store)
            catalogue.processed()
            for k in numbers:
                catalogue.add([numbered(k)])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    def together(*ranges):
        threads = [threading.Thread(target=run, args=(numbers,)) for numbers in ranges]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    together(*(range(first, 30, 2) for first in (3, 4)))
    assert not errors
    assert sorted(check_consistent(store)) == list(range(30))
    # both wrote the same images again: replaced, never twice
    together(range(25, 30), range(25, 30))
    assert not errors
    assert sorted(check_consistent(store)) == list(range(30))
    assert xr.open_zarr(store).sizes["image"] == 30


def test_a_folder_that_is_no_catalogue_is_left_alone(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a catalogue")
    with pytest.raises(CatalogueError, match="not a skipperdask catalogue"):
        Catalogue(folder).add([numbered(0)])
    assert os.listdir(folder) == ["notes.txt"]


@pytest.mark.parametrize("replace", [False, True], ids=["append", "rewrite"])
def test_a_full_disk_leaves_no_temporary_files_and_the_last_commit(tmp_path, monkeypatch,
                                                                   replace):
    """A disk that fills in the middle of a commit: the error goes up, the store holds its
    last commit, and no half-written object or rewrite is left beside it."""
    import errno

    from skipperdask.catalogue import zarrio

    store = str(tmp_path / "catalogue.zarr")
    Catalogue(store).add([numbered(k) for k in range(3)])
    written = []
    original = zarrio._put

    def put(directory, key, data):
        if len(written) == 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(key)
        return original(directory, key, data)

    monkeypatch.setattr(zarrio, "_put", put)
    batch = [numbered(0), numbered(3)] if replace else [numbered(3), numbered(4)]
    with pytest.raises(OSError, match="No space left"):
        Catalogue(store).add(batch)
    leftovers = [name for name in os.listdir(tmp_path)
                 if name not in ("catalogue.zarr", "catalogue.zarr.lock", "catalogue.csv")]
    assert leftovers == []
    partial = [name for _, _, names in os.walk(store) for name in names
               if name.endswith(".partial")]
    assert partial == []
    monkeypatch.undo()
    assert check_consistent(store) == [0, 1, 2]
