"""The headers of a file as astropy reads them: :func:`~.layout.scan_file`'s fallback for the
files :mod:`.headers` does not take (cards it does not read, damaged or truncated files,
trailing bytes), whose problems astropy's errors and warnings name.

astropy is imported here only when a file needs it: a campaign's client, which scans no file
itself, starts without it.
"""

import warnings

from ..errors import BadFileError
from .opened import open_fits


def astropy_images(path, storage_options):
    """The primary header and the image HDUs of a file, read by astropy.

    Parameters
    ----------
    path : str
        Absolute path or URL.
    storage_options : dict or None

    Returns
    -------
    primary_header : dict
    images : list of tuple
        ``(index, EXTNAME, header, header offset, data offset, compressed)`` of each image HDU
        with data (the primary HDU, image extensions, tile-compressed ones), in file order;
        a compressed image's offsets are those of its table.
    truncated : str or None
        astropy's warning that the file is truncated, for the caller to raise once it has
        said what else is wrong.

    Raises
    ------
    BadFileError
        Not a FITS file, a damaged one, or a header that is truncated or corrupt.
    """
    from astropy.io import fits

    # astropy reports truncated or damaged files with warnings: catch them and say what is wrong
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with open_fits(path, storage_options, memmap=False, lazy_load_hdus=True) as hdul:
                primary_header = _header_dict(hdul[0].header)
                images = [
                    (
                        index,
                        hdu.header.get("EXTNAME"),
                        _header_dict(hdu.header),
                        hdu.fileinfo()["hdrLoc"],
                        hdu.fileinfo()["datLoc"],
                        isinstance(hdu, fits.CompImageHDU),
                    )
                    for index, hdu in enumerate(hdul)
                    if isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU)
                    and hdu.header.get("NAXIS", 0) > 0
                ]
        except (OSError, ValueError, fits.VerifyError) as error:
            raise BadFileError(path, "not a FITS file, or a damaged one "
                               f"({_astropy_message(error)})") from error
    # astropy stops at a header it cannot read, and only warns about it and about missing data
    damaged = _complaint(caught, "Error validating header", "END card")
    if damaged:
        raise BadFileError(path, f"truncated or corrupt header ({damaged})")
    return primary_header, images, _complaint(caught, "truncated")


def _header_dict(header):
    """keyword -> python value, leaving out COMMENT/HISTORY/blank cards; undefined values
    become None."""
    from astropy.io import fits

    return {
        keyword: None if isinstance(value, fits.card.Undefined) else value
        for keyword, value in header.items()
        if keyword not in ("", "COMMENT", "HISTORY")
    }


def _astropy_message(error):
    """astropy's message on one line, without its advice on its own arguments."""
    message = " ".join(str(error).split())
    for hint in (" If this is really", " If so, try", " try with ", " Try "):
        if hint in message:
            message = message[: message.index(hint)].rstrip(" ,;")
    return message


def _complaint(caught, *phrases):
    """The first of astropy's warnings that says one of ``phrases``, on one line, or None."""
    for warning in caught:
        message = " ".join(str(warning.message).split())
        if any(phrase in message for phrase in phrases):
            return message
    return None
