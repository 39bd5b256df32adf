"""Reading skipper-CCD FITS files: layouts from the headers, the one row reader, the lazy
``(amp, row, col, skip)`` DataArray and the thin xarray backend (``engine="skipperdask"``).

- :mod:`~skipperdask.io.layout`: :func:`scan_file` → :class:`FileLayout` / :class:`AmpLayout`;
- :mod:`~skipperdask.io.rows`: :func:`read_raw_rows`, :func:`read_blocks`, :func:`to_values`;
- :mod:`~skipperdask.io.array`: :func:`open_image`, :class:`PixelArray`;
- :mod:`~skipperdask.io.backend`: the xarray plugin.
"""

from .array import PixelArray, dataset_from_layout, file_layout, open_image
from .layout import DIMS, AmpLayout, FileLayout, averaged_by, resolve_polarity, scan_file
from .rows import read_blocks, read_raw_rows, to_values

__all__ = [
    "DIMS", "AmpLayout", "FileLayout", "PixelArray", "averaged_by", "dataset_from_layout",
    "file_layout", "open_image", "read_blocks", "read_raw_rows", "resolve_polarity",
    "scan_file", "to_values",
]
