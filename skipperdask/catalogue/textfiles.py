"""The text files beside the store: written whole (atomically) or appended to."""

import os
import uuid

import xarray as xr

from ..io.storage import is_url, write_remote
from .objects import write_whole
from .tables import format_csv


def unique():
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def write_text_atomically(path, text, storage_options=None):
    """Write a text file whole or not at all (:func:`.objects.write_whole`; at a URL, one
    PUT)."""
    if is_url(path):
        write_remote(path, text.encode("utf-8"), storage_options)
    else:
        write_whole(os.path.abspath(path), text.encode("utf-8"))


def csv_text(ds, header=True):
    """The CSV of ``ds``, its variables in one fixed order (by name), with or without header."""
    names = sorted(n for n in ds.variables if n not in ds.dims)
    view = xr.Dataset({n: ds.variables[n] for n in names},
                      coords={d: ds[d] for d in ds.dims if d in ds.coords})
    text = format_csv(view)
    return text if header else text.split("\n", 1)[1]


def first_line(path):
    try:
        with open(path, newline="") as f:
            return f.readline()
    except FileNotFoundError:
        return None


def append_text(path, text):
    """Append ``text`` to the file and fsync it (the store's commit says what must be there)."""
    with open(path, "a", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
