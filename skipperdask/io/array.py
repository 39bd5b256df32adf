"""A skipper-CCD FITS file as a lazy ``(amp, row, col, skip)`` DataArray.

:class:`PixelArray` holds only the file's layout (picklable, no open file handle) and reads
the rows it is asked for inside ``__getitem__``, with
:func:`~skipperdask.io.rows.read_raw_rows`: the array travels to worker processes, and each
dask chunk reads only its own rows. :func:`open_image` chunks it with dask;
:mod:`skipperdask.io.backend` gives it to ``xr.open_dataset``.
"""

import dask.base
import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from ..config import Options
from .layout import DIMS, scan_file
from .rows import read_raw_rows, to_values


def default_chunks(layout, chunk_bytes):
    """Chunks of :func:`open_image` when none are given: one amplifier, whole rows, and as
    many rows as fit in ``chunk_bytes``.

    Parameters
    ----------
    layout : FileLayout
    chunk_bytes : int
        Bytes of values a chunk holds at most (the ``skipperdask.chunk-bytes`` setting).

    Returns
    -------
    dict
        Dimension -> chunk size.
    """
    amp = layout.amps[0]
    rows = max(1, min(amp.nrows, chunk_bytes // (amp.row_length * amp.value_dtype.itemsize)))
    return {"amp": 1, "row": rows, "col": amp.ncols, "skip": amp.nskips}


def open_image(path, *, chunks=None, polarity=None, options=None):
    """A skipper-CCD FITS file as a lazy ``(amp, row, col, skip)`` DataArray.

    Nothing is read until computed, and each dask chunk reads only its own rows.

    Parameters
    ----------
    path : str or os.PathLike
        The FITS file.
    chunks : dict, optional
        Dimension name -> chunk size, as in xarray (e.g. ``{"row": 64}``); dimensions left
        out keep :func:`default_chunks` (of ``options.chunk_bytes``).
    polarity : {+1, -1, None}, optional
        Overrides the rule of :func:`~skipperdask.io.layout.resolve_polarity`.
    options : skipperdask.config.Options, optional
        Default: from ``dask.config``, with ``polarity`` when given.

    Returns
    -------
    xarray.DataArray
        Named ``pixels``, dims ``("amp", "row", "col", "skip")`` (length-1 ``skip`` for an
        averaged image), values as stored after BSCALE/BZERO (not sign-flipped). Coordinates:
        ``amp`` (EXTNAME or HDU index), ``hdu``, ``row``, ``col``, ``skip``. Attributes: the
        primary header's numbers and strings, ``path``, ``polarity``, ``polarity_source``,
        ``nskips`` and ``amp_headers`` (amp name -> that HDU's header). Its ``encoding``
        holds the file's ``source`` path and ``layout`` (:func:`file_layout` gives it back
        while the data are the file's own).

    Raises
    ------
    BadFileError
        The file cannot be read (see :func:`~skipperdask.io.layout.scan_file`), or its
        amplifiers differ in shape.
    """
    options = (options or Options.from_config()).updated(polarity=polarity)
    layout = scan_file(path, polarity=options.polarity,
                       storage_options=options.storage_options)
    dataset = dataset_from_layout(layout)
    pixels = dataset["pixels"]
    chunks = default_chunks(layout, options.chunk_bytes) | (chunks or {})
    # the name changes with the file and the chunks, as xr.open_dataset's do
    name = "pixels-" + dask.base.tokenize(layout.path, layout.size, layout.mtime, chunks)
    # chunk the pixels only: the small coordinates stay in memory
    lazy = pixels.variable.chunk(chunks, name=name)
    pixels = pixels.copy(data=lazy.data).assign_attrs(dataset.attrs | pixels.attrs)
    pixels.encoding.update(source=layout.path, layout=layout, dask_name=name)
    return pixels


def file_layout(pixels):
    """The layout of the file a DataArray of :func:`open_image` holds, while its data are the
    file's own, whole and unchanged (the very dask array it made); else None.

    The statistics of such an array are read straight from the file, row chunk by row chunk,
    as a campaign reads them (:func:`skipperdask.statistics.row_chunks`).
    """
    layout = pixels.encoding.get("layout")
    data = pixels.data
    if layout is None or getattr(data, "name", None) != pixels.encoding.get("dask_name"):
        return None
    return layout


class PixelArray(BackendArray):
    """The values of all amplifiers of one file, ``(amp, row, col, skip)``, read on demand.

    Parameters
    ----------
    layout : FileLayout
        The scanned file; its amplifiers must share ``(nrows, ncols, nskips)``.
    """

    def __init__(self, layout):
        self.layout = layout
        self.shape = layout.shape
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


def _attrs(header):
    """The numbers and strings of a header, as attributes (FITS logicals become 0/1)."""
    return {
        keyword: int(value) if isinstance(value, bool) else value
        for keyword, value in header.items()
        if isinstance(value, int | float | str)
    }
