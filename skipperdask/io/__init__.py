"""Reading skipper-CCD FITS files: layouts from the headers, the one row reader, the lazy
``(amp, row, col, skip)`` DataArray and the thin xarray backend (``engine="skipperdask"``).

- :mod:`~skipperdask.io.layout`: :func:`scan_file` → :class:`FileLayout` / :class:`AmpLayout`;
- :mod:`~skipperdask.io.rows`: :func:`read_raw_rows`, :func:`read_blocks`, :func:`to_values`;
- :mod:`~skipperdask.io.array`: :func:`open_image`, :class:`PixelArray`;
- :mod:`~skipperdask.io.backend`: the xarray plugin.
"""

from ..lazy import lazy_exports

# imported on first use: a campaign's client reads no pixel (no numba, no dask.array)
_EXPORTS = {
    ".array": ("PixelArray", "dataset_from_layout", "file_layout", "open_image"),
    ".layout": ("DIMS", "AmpLayout", "FileLayout", "averaged_by", "resolve_polarity",
                "scan_file"),
    ".rows": ("read_blocks", "read_raw_rows", "to_values"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
