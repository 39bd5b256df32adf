"""Rows of a RICE_1 tile-compressed image (fpack's default, DAMIC-M's ``.fz`` files), decoded
by compiled loops.

astropy decodes each tile through a few dozen Python calls (its settings, codec and
quantisation objects): for a DAMIC-M file, one tile per row and 1,280 tiles, that took
about 27 ms of CPU per file, against 8 ms here. This reader takes the common case
only: RICE_1 tiles of whole rows, integer images or floating-point images quantised with
``ZSCALE``/``ZZERO`` (no dither, ``SUBTRACTIVE_DITHER_1`` or ``_2``), and every tile in the
``COMPRESSED_DATA`` column. Anything else (GZIP, HCOMPRESS, tiles stored losslessly beside the
quantised ones) is left to astropy: :func:`rice_rows` then returns None.

The algorithms are those of the FITS tiled-image convention (Pence et al. 2009, and
cfitsio's ``ricecomp.c`` and ``quantize.c``): Rice codes of the differences of successive
pixels in blocks of ``BLOCKSIZE``; quantised values restored as
``(q - r + 0.5) · ZSCALE + ZZERO`` with ``r`` from the convention's table of 10,000 random
numbers, started per tile from ``ZDITHER0``.
"""

import re

import numba
import numpy as np

from .headers import read_header

_ZERO_VALUE = -2147483646  # SUBTRACTIVE_DITHER_2's flag of an exact 0.0
_DITHER = {"NO_DITHER": -1, "SUBTRACTIVE_DITHER_1": 1, "SUBTRACTIVE_DITHER_2": 2}
_N_RANDOM = 10000
_NO_BLANK = 1 << 62  # no stored value equals it
_FORM = re.compile(r"\s*(\d*)([BIJKEDPQ])")


def _random_table():
    """The tiled-image convention's 10,000 random numbers (float32, as cfitsio keeps them)."""
    values = np.empty(_N_RANDOM, np.float32)
    seed, a, m = 1.0, 16807.0, 2147483647.0
    for i in range(_N_RANDOM):
        temp = a * seed
        seed = temp - m * int(temp / m)
        values[i] = seed / m
    return values


_RANDOM = _random_table()

# bits needed to write each byte value: the Rice decoder counts leading zeros with it
_NONZERO_COUNT = np.array([0] + [int(v).bit_length() for v in range(1, 256)], np.int64)


def _columns(cards):
    """name -> (byte offset in a row, type code) of each table column; None when a format
    is not one this reader knows."""
    sizes = {"B": 1, "I": 2, "J": 4, "K": 8, "E": 4, "D": 8, "P": 8, "Q": 16}
    columns, offset = {}, 0
    for index in range(1, int(cards.get("TFIELDS", 0)) + 1):
        form = _FORM.match(str(cards.get(f"TFORM{index}", "")))
        if form is None:
            return None
        repeat, code = int(form.group(1) or 1), form.group(2)
        columns[cards.get(f"TTYPE{index}", "")] = (offset, code)
        offset += sizes[code] * repeat
    return columns


def rice_rows(file, header_offset, row_start, row_stop):
    """Rows ``row_start … row_stop - 1`` of a RICE_1 tile-compressed image HDU, or None when
    this reader does not take it (module docstring), or its header (:mod:`.headers`).

    Parameters
    ----------
    file : binary file object
        The FITS file, open for reading (seekable).
    header_offset : int
        Where the HDU's header starts (astropy's ``fileinfo()["hdrLoc"]``).
    row_start, row_stop : int

    Returns
    -------
    ndarray (rows, columns) or None
        Integer images as int16/int32, floating-point images as float32/float64 (NaN where
        the data say so), as astropy's section gives them.
    """
    header = read_header(file, header_offset)
    if header is None or header.first:  # a card it does not read, or a repeated keyword
        return None
    cards, table_offset = header.cards, header.data_offset
    ncols, nrows = cards.get("ZNAXIS1"), cards.get("ZNAXIS2")
    columns = _columns(cards)
    if (cards.get("ZCMPTYPE") not in ("RICE_1", "RICE_ONE") or cards.get("ZNAXIS") != 2
            or cards.get("ZTILE1", ncols) != ncols or cards.get("ZTILE2", 1) != 1
            or columns is None or "COMPRESSED_DATA" not in columns
            or columns.keys() - {"COMPRESSED_DATA", "ZSCALE", "ZZERO", "ZBLANK",
                                 "GZIP_COMPRESSED_DATA", "UNCOMPRESSED_DATA"}):
        return None
    zbitpix = cards.get("ZBITPIX")
    options = {cards.get(f"ZNAME{i}"): cards.get(f"ZVAL{i}") for i in range(1, 10)}
    blocksize, bytepix = int(options.get("BLOCKSIZE", 32)), int(options.get("BYTEPIX", 4))
    quantised = "ZSCALE" in columns and "ZZERO" in columns
    if zbitpix not in ((8, 16, 32) if not quantised else (-32, -64)) or bytepix not in (1, 2, 4):
        return None
    if not quantised and (cards.get("BSCALE", 1) != 1 or cards.get("BZERO", 0) != 0):
        return None  # astropy's section applies them (unsigned integers): its dtype then
    dither = _DITHER.get(cards.get("ZQUANTIZ", "NO_DITHER"))
    if dither is None:
        return None
    row_bytes = int(cards["NAXIS1"])
    file.seek(table_offset + row_start * row_bytes)
    table = np.frombuffer(file.read((row_stop - row_start) * row_bytes), np.uint8)
    table = table.reshape(row_stop - row_start, row_bytes)
    offset, code = columns["COMPRESSED_DATA"]
    width = 4 if code == "P" else 8
    descriptors = table[:, offset:offset + 2 * width].copy().view(f">i{width}").astype(np.int64)
    sizes, starts = descriptors[:, 0], descriptors[:, 1]
    if (sizes <= 0).any():  # tiles stored otherwise (GZIP_COMPRESSED_DATA, raw): astropy's
        return None
    heap = table_offset + int(cards.get("THEAP", row_bytes * nrows))
    first, last = int(starts.min()), int((starts + sizes).max())
    file.seek(heap + first)
    compressed = np.frombuffer(file.read(last - first), np.uint8)
    if compressed.size < last - first:
        raise ValueError("the compressed data end before their last tile (truncated file?)")
    quantities = np.empty((row_stop - row_start, ncols), np.int64)
    # int64 bytes: the decoder's arithmetic in one signed type (numba would mix in floats)
    _decode_tiles(compressed.astype(np.int64), starts - first, sizes, blocksize, bytepix,
                  quantities, _NONZERO_COUNT)
    blank = cards.get("ZBLANK")
    if not quantised:
        return quantities.astype(f"i{zbitpix // 8}" if zbitpix > 8 else np.uint8)

    def column(name):
        at = columns[name][0]
        return table[:, at:at + 8].copy().view(">f8").astype(np.float64)[:, 0]
    if "ZBLANK" in columns:
        at = columns["ZBLANK"][0]
        blanks = table[:, at:at + 4].copy().view(">i4").astype(np.int64)[:, 0]
    else:
        blanks = np.full(row_stop - row_start, _NO_BLANK if blank is None else int(blank))
    out = np.empty((row_stop - row_start, ncols), np.float32 if zbitpix == -32 else np.float64)
    tiles = np.arange(row_start, row_stop, dtype=np.int64) + int(cards.get("ZDITHER0", 0))
    _unquantise(quantities, column("ZSCALE"), column("ZZERO"), blanks, tiles, dither,
                _RANDOM, out)
    return out


@numba.njit(cache=True, nogil=True)
def _decode_tiles(data, starts, sizes, blocksize, bytepix, out, nonzero_count):
    """Rice-decode each tile (one row of ``out``): ``ricecomp.c``'s ``fits_rdecomp``."""
    fsbits = 5 if bytepix == 4 else (4 if bytepix == 2 else 3)
    fsmax = 25 if bytepix == 4 else (14 if bytepix == 2 else 6)
    bbits = 1 << fsbits
    mask = (1 << (8 * bytepix)) - 1
    sign = 1 << (8 * bytepix - 1)
    nx = out.shape[1]
    for tile in range(out.shape[0]):
        pos = starts[tile]
        end = pos + sizes[tile]
        lastpix = 0
        for _ in range(bytepix):  # the first pixel, big-endian
            lastpix = (lastpix << 8) | data[pos]
            pos += 1
        b = data[pos]
        pos += 1
        nbits = 8
        i = 0
        while i < nx:
            imax = min(i + blocksize, nx)
            nbits -= fsbits
            while nbits < 0:
                b = (b << 8) | (data[pos] if pos < end else 0)
                pos += 1
                nbits += 8
            fs = (b >> nbits) - 1
            b &= (1 << nbits) - 1
            if fs < 0:  # low entropy: every difference is 0
                for k in range(i, imax):
                    out[tile, k] = lastpix
            elif fs == fsmax:  # high entropy: the differences stored on bbits bits
                for k in range(i, imax):
                    k2 = bbits - nbits
                    diff = b << k2
                    k2 -= 8
                    while k2 >= 0:
                        b = data[pos] if pos < end else 0
                        pos += 1
                        diff |= b << k2
                        k2 -= 8
                    if nbits > 0:
                        b = data[pos] if pos < end else 0
                        pos += 1
                        diff |= b >> (-k2)
                        b &= (1 << nbits) - 1
                    else:
                        b = 0
                    diff &= mask
                    diff = (diff >> 1) if diff & 1 == 0 else (~(diff >> 1)) & mask
                    lastpix = (diff + lastpix) & mask
                    out[tile, k] = lastpix
            else:
                for k in range(i, imax):
                    while b == 0:
                        if pos >= end:  # zeros to the end: a corrupt tile, not a code
                            raise ValueError("a Rice code runs past the end of its tile")
                        nbits += 8
                        b = data[pos]
                        pos += 1
                    nzero = nbits - nonzero_count[b]
                    nbits -= nzero + 1
                    b ^= 1 << nbits
                    nbits -= fs
                    while nbits < 0:
                        b = (b << 8) | (data[pos] if pos < end else 0)
                        pos += 1
                        nbits += 8
                    diff = (nzero << fs) | (b >> nbits)
                    b &= (1 << nbits) - 1
                    diff = (diff >> 1) if diff & 1 == 0 else (~(diff >> 1)) & mask
                    lastpix = (diff + lastpix) & mask
                    out[tile, k] = lastpix
            i = imax
        if pos > end + 1:  # cfitsio's check: the codes ran past the tile's bytes
            raise ValueError("the Rice codes run past the end of their tile")
        for k in range(nx):  # two's complement of the stored width
            if out[tile, k] & sign:
                out[tile, k] -= mask + 1


@numba.njit(cache=True, nogil=True)
def _unquantise(quantities, scales, zeros, blanks, tiles, dither, randoms, out):
    """``quantize.c``'s ``unquantize_i4r8``, tile by tile (one row each)."""
    n_random = randoms.size
    for row in range(quantities.shape[0]):
        scale, zero, blank = scales[row], zeros[row], blanks[row]
        iseed = (tiles[row] - 1) % n_random
        nextrand = int(randoms[iseed] * 500)
        for k in range(quantities.shape[1]):
            q = quantities[row, k]
            if q == blank:
                out[row, k] = np.nan
            elif dither == -1:
                out[row, k] = q * scale + zero
            elif dither == 2 and q == _ZERO_VALUE:
                out[row, k] = 0.0
            else:
                out[row, k] = (q - np.float64(randoms[nextrand]) + 0.5) * scale + zero
            if dither != -1:
                nextrand += 1
                if nextrand == n_random:
                    iseed += 1
                    if iseed == n_random:
                        iseed = 0
                    nextrand = int(randoms[iseed] * 500)
