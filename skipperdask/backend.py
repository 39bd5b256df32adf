"""The xarray backend: ``xr.open_dataset(path, engine="skipperdask")``.

The Dataset has one variable, ``pixels``, over ``(amp, row, col, skip)``, lazily indexed:
:class:`PixelArray` holds only the file's layout (picklable, no open file handle) and reads
the rows it is asked for inside ``__getitem__``, with :func:`~skipperdask.reader.read_raw_rows`.
So the array travels to worker processes, and each dask chunk reads only its own rows.
"""

import os

import numpy as np
import xarray as xr
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.core import indexing

from .errors import SkipperError
from .reader import DIMS, read_raw_rows, scan_file, to_values


class PixelArray(BackendArray):
    """The values of all amplifiers of one file, ``(amp, row, col, skip)``, read on demand.

    Parameters
    ----------
    layout : FileLayout
        The scanned file; its amplifiers must share ``(nrows, ncols, nskips)``.
    """

    def __init__(self, layout):
        first = layout.amps[0]
        shapes = {(amp.nrows, amp.ncols, amp.nskips) for amp in layout.amps}
        if len(shapes) > 1:
            described = ", ".join(
                f"{amp.name}: {amp.nrows} rows x {amp.ncols} cols x {amp.nskips} samples"
                for amp in layout.amps
            )
            raise SkipperError(
                layout.path,
                "the amplifiers differ in shape and cannot form "
                f"one (amp, row, col, skip) array ({described})",
            )
        self.layout = layout
        self.shape = (len(layout.amps), first.nrows, first.ncols, first.nskips)
        self.dtype = np.result_type(*(amp.value_dtype for amp in layout.amps))

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._getitem
        )

    def _getitem(self, key):
        # integers select one index and drop the dimension: read them as length-1 slices
        amp_key, row_key, col_key, skip_key = (
            k if isinstance(k, slice) else slice(k, k + 1 or None) for k in key
        )
        amps = self.layout.amps[amp_key]
        rows, cols, skips = (
            range(*k.indices(n))
            for k, n in zip((row_key, col_key, skip_key), self.shape[1:], strict=True)
        )
        values = np.empty((len(amps), len(rows), len(cols), len(skips)), self.dtype)
        if rows:
            for i, amp in enumerate(amps):
                values[i] = self._read_rows(amp, rows)[:, col_key, skip_key]
        return values[tuple(slice(None) if isinstance(k, slice) else 0 for k in key)]

    def _read_rows(self, amp, rows):
        """``rows`` (a non-empty range) of one amplifier as values, ``(rows, ncols, nskips)``."""
        low, high = min(rows), max(rows) + 1
        raw = read_raw_rows(amp, low, high)[rows.start - low :: rows.step][: len(rows)]
        return to_values(raw, amp).reshape(len(rows), amp.ncols, amp.nskips)


def dataset_from_layout(layout):
    """The lazily indexed Dataset of a scanned file.

    Parameters
    ----------
    layout : FileLayout

    Returns
    -------
    xarray.Dataset
        Variable ``pixels`` ``(amp, row, col, skip)`` with attributes ``path``, ``polarity``,
        ``polarity_source``, ``nskips`` and ``amp_headers`` (amp name -> header dict);
        coordinates ``amp``, ``hdu`` (on ``amp``), ``row``, ``col``, ``skip``; the primary
        header's numbers and strings as the Dataset's attributes.
    """
    array = PixelArray(layout)
    nskips = array.shape[3]
    pixels = xr.Variable(
        DIMS,
        indexing.LazilyIndexedArray(array),
        attrs={
            "path": layout.path,
            "polarity": layout.polarity,
            "polarity_source": layout.polarity_source,
            "nskips": nskips,
            "amp_headers": {amp.name: amp.header for amp in layout.amps},
        },
        # one amplifier per chunk is the least xr.open_dataset(..., chunks={}) should do
        encoding={"preferred_chunks": {"amp": 1}, "dtype": array.dtype},
    )
    coords = {
        "amp": [amp.name for amp in layout.amps],
        "hdu": ("amp", [amp.hdu for amp in layout.amps]),
        "row": np.arange(array.shape[1]),
        "col": np.arange(array.shape[2]),
        "skip": np.arange(nskips),
    }
    return xr.Dataset({"pixels": pixels}, coords=coords, attrs=_attrs(layout.primary_header))


class SkipperBackendEntrypoint(BackendEntrypoint):
    """Skipper-CCD FITS images (``.fits``, ``.fz``, ``.fits.fz``) as a lazy Dataset."""

    description = "Skipper-CCD FITS images as a lazy (amp, row, col, skip) array of pixels"
    url = "https://github.com/skipperdask/skipperdask"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "polarity")

    def open_dataset(self, filename_or_obj, *, drop_variables=None, polarity=None):
        """Open one file; see :func:`dataset_from_layout` for what the Dataset holds.

        Parameters
        ----------
        filename_or_obj : str or os.PathLike
            The FITS file (a path: the file is reopened inside every read).
        drop_variables : str or iterable of str, optional
            Variables to leave out (``"pixels"`` is the only one).
        polarity : {+1, -1, None}, optional
            Overrides the rule of :func:`skipperdask.reader.resolve_polarity`.
        """
        if not isinstance(filename_or_obj, str | os.PathLike):
            raise TypeError(
                "the skipperdask engine reads FITS files by path, "
                f"not {type(filename_or_obj).__name__}"
            )
        dataset = dataset_from_layout(scan_file(filename_or_obj, polarity=polarity))
        return dataset.drop_vars(drop_variables or [], errors="ignore")

    def guess_can_open(self, filename_or_obj):
        """True for paths ending in ``.fits``, ``.fz`` or ``.fits.fz``."""
        if not isinstance(filename_or_obj, str | os.PathLike):
            return False
        return os.fspath(filename_or_obj).lower().endswith((".fits", ".fz"))


def _attrs(header):
    """The numbers and strings of a header, as attributes (FITS logicals become 0/1)."""
    return {
        keyword: int(value) if isinstance(value, bool) else value
        for keyword, value in header.items()
        if isinstance(value, int | float | str)
    }
