"""Whether a FITS file still being written is whole: its size against what its headers declare.

A DAQ writes an image as it reads it out, HDU after HDU; a file taken before the last byte
arrived would be a truncated image. :func:`fits_extent` walks the file's headers as they are
on disk now (2880-byte blocks up to each ``END`` card, never the data; the cards read by
:mod:`.headers`, leniently: a card it cannot read is skipped) and adds up what every HDU
declares, compressed ones included: the data of any HDU hold ``|BITPIX| / 8 × GCOUNT ×
(PCOUNT + NAXIS1 × … × NAXISn)`` bytes padded to 2880 (a tile-compressed image is a binary
table: its rows and its heap). The file is whole when its last HDU, padding included (the
reading refuses a file without it), ends where the file ends and the primary header's
``NEXTEND``, when given, counts the extensions found. What comes after the last HDU and is
no extension header (trailing bytes) is no part of the structure, and a file that does not
start as FITS has none: such a file counts as whole and its reading says what is wrong.

A file that ends exactly between two HDUs looks whole while its writer prepares the next
one: whoever waits for files (``skipperdask watch``) also waits for the file to stop
changing.
"""

import os
from typing import NamedTuple

from .headers import BLOCK, data_bytes, padded, read_header


class FitsExtent(NamedTuple):
    """What the headers of a file declare, against its size.

    Attributes
    ----------
    size : int
        The file's size now, in bytes.
    declared : int
        Bytes the HDUs found so far declare (headers and padded data); at least ``size``
        when a header or data are still missing.
    hdus : int
        Headers read whole.
    problem : str
        Why the file is not whole yet (``""`` when it is).
    """

    size: int
    declared: int
    hdus: int
    problem: str

    @property
    def complete(self):
        """Whether every declared byte is there."""
        return not self.problem


def fits_extent(path):
    """What the headers of a FITS file declare now, against its size (see the module).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    FitsExtent

    Raises
    ------
    OSError
        The file cannot be opened or read (it vanished, say).
    """
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size < BLOCK:
            return FitsExtent(size, BLOCK, 0, f"no whole header yet ({size} bytes)")
        if not file.read(6).startswith(b"SIMPLE"):  # no FITS file: its reading will say so
            return FitsExtent(size, size, 0, "")
        offset, hdus, extensions = 0, 0, None
        while offset < size:
            if hdus:  # an extension must start here, else what follows is no HDU
                file.seek(offset)
                if not file.read(8).startswith(b"XTENSION"):
                    break
            header = read_header(file, offset, size, strict=False)
            if header is None:
                return FitsExtent(size, max(size, offset + BLOCK), hdus, f"the header of HDU "
                                  f"{hdus} is not all written ({size} bytes)")
            if hdus == 0:
                extensions = header.integer("NEXTEND", None)
            hdus += 1
            end = header.data_offset + padded(data_bytes(header))
            if end > size:
                return FitsExtent(size, end, hdus, f"HDU {hdus - 1} ends at byte {end}, the "
                                  f"file has {size}")
            offset = end
        if extensions is not None and hdus - 1 < extensions:
            return FitsExtent(size, offset, hdus, f"{hdus - 1} of the {extensions} extensions "
                              "(NEXTEND) are written")
        return FitsExtent(size, offset, hdus, "")
