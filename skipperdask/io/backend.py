"""The xarray backend: ``xr.open_dataset(path, engine="skipperdask")``.

A thin plugin over :func:`~skipperdask.io.array.dataset_from_layout`: the Dataset has one
variable, ``pixels``, over ``(amp, row, col, skip)``, lazily indexed and picklable.
"""

import os

from xarray.backends import BackendEntrypoint

from .array import dataset_from_layout
from .layout import scan_file


class SkipperBackendEntrypoint(BackendEntrypoint):
    """Skipper-CCD FITS images (``.fits``, ``.fz``, ``.fits.fz``) as a lazy Dataset."""

    description = "Skipper-CCD FITS images as a lazy (amp, row, col, skip) array of pixels"
    url = "https://github.com/skipperdask/skipperdask"
    open_dataset_parameters = ("filename_or_obj", "drop_variables", "polarity")

    def open_dataset(self, filename_or_obj, *, drop_variables=None, polarity=None):
        """Open one file; see :func:`~skipperdask.io.array.dataset_from_layout` for what the
        Dataset holds.

        Parameters
        ----------
        filename_or_obj : str or os.PathLike
            The FITS file (a path: the file is reopened inside every read).
        drop_variables : str or iterable of str, optional
            Variables to leave out (``"pixels"`` is the only one).
        polarity : {+1, -1, None}, optional
            Overrides the rule of :func:`skipperdask.io.layout.resolve_polarity` (the
            ``skipperdask.polarity`` setting is not read here: pass it).
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
