"""The text files beside the store: written whole (atomically) or appended to."""

import contextlib
import os
import uuid

import xarray as xr

from .tables import format_csv


def unique():
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def write_text_atomically(path, text):
    """Write a text file whole or not at all: a temporary file beside it, then a rename."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{unique()}.tmp")
    try:
        # not tempfile.mkstemp: its files are private (0600); the user's umask decides here
        with open(tmp, "x", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


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
