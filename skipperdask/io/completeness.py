"""Whether a FITS file still being written is whole: its size against what its headers declare.

A DAQ writes an image as it reads it out, HDU after HDU; a file taken before the last byte
arrived would be a truncated image. :func:`fits_extent` walks the file's headers as they are
on disk now (2880-byte blocks up to each ``END`` card, never the data) and adds up what every
HDU declares, compressed ones included: the data of any HDU hold ``|BITPIX| / 8 × GCOUNT ×
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

#: FITS headers and data come in blocks of this many bytes
BLOCK = 2880
_CARD = 80


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


def _header(file, offset, size, index):
    """The cards of the header at ``offset`` up to ``END``, and where it ends, or
    ``(None, problem)`` when it is not all written yet."""
    cards = {}
    position = offset
    while True:
        if position + BLOCK > size:
            return None, f"the header of HDU {index} is not all written ({size} bytes)"
        file.seek(position)
        block = file.read(BLOCK)
        position += BLOCK
        for start in range(0, BLOCK, _CARD):
            card = block[start:start + _CARD]
            keyword = card[:8].decode("ascii", "replace").strip()
            if keyword == "END":
                return (cards, position), ""
            if card[8:10] == b"= " and keyword not in cards:
                cards[keyword] = card[10:].split(b"/", 1)[0].strip().decode("ascii", "replace")


def _integer(cards, keyword, default):
    if keyword not in cards:
        return default
    try:
        return int(float(cards[keyword]))
    except ValueError:
        return default


def _data_bytes(cards):
    """Bytes of an HDU's data before padding, as its header declares them."""
    naxis = _integer(cards, "NAXIS", 0)
    if naxis == 0:
        return 0
    values = 1
    for axis in range(1, naxis + 1):
        values *= _integer(cards, f"NAXIS{axis}", 0)
    bitpix = abs(_integer(cards, "BITPIX", 8))
    return bitpix // 8 * _integer(cards, "GCOUNT", 1) * (_integer(cards, "PCOUNT", 0) + values)


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
            found, problem = _header(file, offset, size, hdus)
            if found is None:
                return FitsExtent(size, max(size, offset + BLOCK), hdus, problem)
            cards, data_start = found
            if hdus == 0:
                extensions = _integer(cards, "NEXTEND", None)
            hdus += 1
            data = _data_bytes(cards)
            end = data_start + data + (-data % BLOCK)
            if end > size:
                return FitsExtent(size, end, hdus, f"HDU {hdus - 1} ends at byte {end}, the "
                                  f"file has {size}")
            offset = end
        if extensions is not None and hdus - 1 < extensions:
            return FitsExtent(size, offset, hdus, f"{hdus - 1} of the {extensions} extensions "
                              "(NEXTEND) are written")
        return FitsExtent(size, offset, hdus, "")
