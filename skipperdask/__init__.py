"""skipperdask: image-quality metrics of skipper-CCD images, at campaign scale.

The public API:

- :func:`open_image`: a FITS file as a lazy labelled ``(amp, row, col, skip)`` DataArray;
- :func:`image_metrics`: the quality metrics of one image, as an ``xarray.Dataset`` over ``amp``;
- :func:`process`: the metrics of a whole campaign on a Dask cluster, into a Zarr + CSV catalogue;
- :func:`watch`: a DAQ's directory processed live, each image once it is whole, with alerts;
- :class:`Options`: every setting of a run, read from ``dask.config`` at the edge and carried;
- :class:`SkipperError` and its kinds: what can go wrong;
- :mod:`skipperdask.simulate`: simulated images whose truth is known.

The folders tell the architecture (``docs/architecture.md``): ``io`` → ``statistics`` →
``fitting`` → ``metrics`` → ``catalogue`` → ``campaign`` → ``plots`` → ``cli``.
"""

from . import config  # noqa: F401  (registers the dask.config defaults)
from .errors import BadFileError, BadOptionError, CatalogueError, SkipperError
from .version import __version__

# the heavy modules load on first use, so that `import skipperdask` and `--help` stay fast
_public = {
    "open_image": "io",
    "image_metrics": "metrics",
    "process": "campaign",
    "watch": "campaign",
    "Options": "config",
}

__all__ = [
    "BadFileError", "BadOptionError", "CatalogueError", "SkipperError", "__version__", *_public,
]


def __getattr__(name):
    if name in _public:
        import importlib

        return getattr(importlib.import_module(f".{_public[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
