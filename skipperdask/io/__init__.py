"""Reading skipper-CCD FITS files: layouts from the headers, the one row reader, the lazy
``(amp, row, col, skip)`` DataArray and the thin xarray backend (``engine="skipperdask"``).

- :mod:`~skipperdask.io.layout`: :func:`scan_file` → :class:`FileLayout` / :class:`AmpLayout`;
- :mod:`~skipperdask.io.rows`: :func:`read_raw_rows`, :func:`read_blocks`, :func:`to_values`;
- :mod:`~skipperdask.io.array`: :func:`open_image`, :class:`PixelArray`;
- :mod:`~skipperdask.io.backend`: the xarray plugin.
"""

import importlib

# Imported on first use: a campaign's client reads no pixel, and importing dask.array and
# numba would add about a second to every command's start-up.
_EXPORTS = {
    ".array": ("PixelArray", "dataset_from_layout", "file_layout", "open_image"),
    ".layout": ("DIMS", "AmpLayout", "FileLayout", "averaged_by", "resolve_polarity",
                "scan_file"),
    ".rows": ("read_blocks", "read_raw_rows", "to_values"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name], __name__), name)


def __dir__():
    return __all__
