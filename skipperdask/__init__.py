"""skipperdask: image-quality metrics of skipper-CCD images, at campaign scale.

The public API:

- :func:`open_image`: a FITS file as a lazy labelled ``(amp, row, col, skip)`` DataArray;
- :func:`image_metrics`: the quality metrics of one image, as an ``xarray.Dataset`` over ``amp``;
- :func:`process`: the metrics of a whole campaign on a Dask cluster, into a Zarr + CSV catalogue;
- :mod:`skipperdask.simulate`: simulated images whose truth is known.
"""

from importlib.metadata import PackageNotFoundError, version

from . import config  # noqa: F401  (registers the dask.config defaults)
from .errors import SkipperError

try:
    __version__ = version("skipperdask")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

# the heavy modules load on first use, so that `import skipperdask` and `--help` stay fast
_public = {
    "open_image": "reader",
    "image_metrics": "metrics",
    "process": "pipeline",
}

__all__ = ["SkipperError", "__version__", *_public]


def __getattr__(name):
    if name in _public:
        import importlib

        return getattr(importlib.import_module(f".{_public[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
