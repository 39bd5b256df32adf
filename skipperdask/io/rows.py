"""The one row reader: rows of one amplifier, read from the file inside the call.

- :func:`read_raw_rows`: a row range as stored (opened and closed inside the call, so that it
  runs in any worker process);
- :func:`to_values`: the stored numbers as values (BSCALE, BZERO);
- :func:`read_blocks`: a row range block by block, native byte order, in a reused buffer:
  each block stays in the processor's cache from the read through the byte swap to the
  statistics kernel.
"""

import threading

import numba
import numpy as np

from ..errors import BadFileError
from .opened import open_fits, open_input
from .storage import is_url, read_range
from .tiles import rice_rows

#: rows a campaign's task reads at a time: a block stays in the processor's cache
#: from the read through the byte swap to the kernel
READ_BLOCK_BYTES = 4 * 2**20


def read_raw_rows(amp, row_start, row_stop, out=None):
    """Read rows ``row_start:row_stop`` of one amplifier, as stored.

    The file is opened and closed inside the call. Uncompressed data are read straight from
    their byte range (nothing else of the file is read; from a URL, one ranged request);
    compressed data tile by tile, only the tiles of these rows (:mod:`.tiles` for RICE_1,
    else astropy's ``CompImageHDU.section``).

    Parameters
    ----------
    amp : AmpLayout
        The amplifier.
    row_start, row_stop : int
        The rows, ``0 <= row_start <= row_stop <= amp.nrows``.
    out : numpy.ndarray, optional
        A contiguous buffer of at least the rows' bytes (any shape and dtype), reused across
        calls: touching fresh memory is slow.

    Returns
    -------
    numpy.ndarray
        Shape ``(row_stop - row_start, amp.ncols * amp.nskips)``, dtype ``amp.dtype``
        (a view of ``out`` when given). The values are ``raw * amp.bscale + amp.bzero``.

    Raises
    ------
    BadFileError
        The file has changed since it was scanned (truncated, not readable).
    """
    if not 0 <= row_start <= row_stop <= amp.nrows:
        raise ValueError(f"rows {row_start}:{row_stop} outside 0:{amp.nrows} of {amp.name}")
    shape = (row_stop - row_start, amp.row_length)
    nbytes = shape[0] * amp.row_bytes
    if out is None:
        buffer = np.empty(nbytes, np.uint8)
    else:
        buffer = out.reshape(-1).view(np.uint8)
        if buffer.size < nbytes:
            raise ValueError(f"out holds {buffer.size} bytes, the rows need {nbytes}")
        buffer = buffer[:nbytes]
    rows = buffer.view(amp.dtype).reshape(shape)
    if amp.compressed:
        rows[...] = _read_compressed_rows(amp, row_start, row_stop)
        return rows
    start = amp.data_offset + row_start * amp.row_bytes
    try:
        if is_url(amp.path):  # one ranged request for exactly these bytes
            fetched = read_range(amp.path, start, start + nbytes, amp.storage_options)
            nread = min(len(fetched), nbytes)
            buffer[:nread] = np.frombuffer(fetched, np.uint8, nread)
        else:
            with open(amp.path, "rb") as f:
                f.seek(start)
                nread = f.readinto(buffer)
    except OSError as error:
        raise BadFileError(amp.path, f"cannot be read: {error}") from error
    if nread != nbytes:
        raise BadFileError(
            amp.path,
            f"truncated file: HDU {amp.hdu} rows {row_start}:{row_stop} need {nbytes} bytes, "
            f"only {nread} could be read",
        )
    return rows


def to_values(raw, amp):
    """The values of raw stored numbers: ``raw * amp.bscale + amp.bzero`` in
    ``amp.value_dtype``, native byte order.

    Parameters
    ----------
    raw : numpy.ndarray
        Numbers from :func:`read_raw_rows`.
    amp : AmpLayout
        Their amplifier.
    """
    dtype = amp.value_dtype
    if amp.bscale == 1 and amp.bzero == 0:
        return raw.astype(dtype, copy=False)
    if dtype.kind in "iu":
        # the usual BZERO offset is 2**(bits-1): flipping the top bit adds it exactly
        unsigned = np.dtype(f"u{dtype.itemsize}")
        top_bit = unsigned.type(1 << (8 * dtype.itemsize - 1))
        return (raw.astype(raw.dtype.newbyteorder("=")).view(unsigned) ^ top_bit).view(dtype)
    return (raw * np.float64(amp.bscale) + np.float64(amp.bzero)).astype(dtype, copy=False)



def _read_compressed_rows(amp, row_start, row_stop):
    """Rows of a tile-compressed amplifier: RICE_1 tiles decoded by :mod:`.tiles`, from the
    header offset the scan stored; other tiles by astropy's ``CompImageHDU.section``."""
    try:
        with open_input(amp.path, amp.storage_options) as file:
            rows = rice_rows(file, amp.header_offset, row_start, row_stop)
        if rows is None:
            with open_fits(amp.path, amp.storage_options) as hdul:
                rows = hdul[amp.hdu].section[row_start:row_stop]
        return rows
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 (astropy's CfitsioException is no OSError)
        raise BadFileError(
            amp.path,
            f"HDU {amp.hdu} rows {row_start}:{row_stop} cannot be "
            f"decompressed (truncated or corrupt file?): {' '.join(str(error).split())}",
        ) from error


@numba.njit(cache=True, nogil=True)
def _swap16(words):
    for i in range(words.size):
        x = words[i]
        words[i] = ((x >> 8) & 0xFF) | ((x & 0xFF) << 8)


@numba.njit(cache=True, nogil=True)
def _swap32(words):
    for i in range(words.size):
        x = words[i]
        words[i] = (((x >> 24) & 0xFF) | ((x >> 8) & 0xFF00) | ((x & 0xFF00) << 8)
                    | ((x & 0xFF) << 24))


#: the raw images' types (16- and 32-bit integers, float32); others use ndarray.byteswap
_SWAPS = {2: (_swap16, np.uint16), 4: (_swap32, np.uint32)}


def _byteswap_inplace(raw):
    """``raw`` (an array of foreign byte order) as native values, swapped in place: for
    2- and 4-byte values a vectorised loop, 7 times faster than ``ndarray.byteswap``
    (FITS is big-endian)."""
    native = raw.dtype.newbyteorder("=")
    if raw.dtype.itemsize not in _SWAPS or not raw.flags.c_contiguous:
        return raw.byteswap(inplace=True).view(native)
    swap, words = _SWAPS[raw.dtype.itemsize]
    swap(raw.reshape(-1).view(words))
    return raw.view(native)


_thread_buffers = threading.local()


def _reusable_buffer(nbytes):
    """A per-thread read buffer: fresh memory costs far more to touch than to reuse."""
    buffer = getattr(_thread_buffers, "buffer", None)
    if buffer is None or buffer.nbytes < nbytes:
        buffer = np.empty(nbytes, dtype=np.uint8)
        _thread_buffers.buffer = buffer
    return buffer



def read_blocks(amp, row_start, row_stop):
    """Rows ``row_start … row_stop - 1`` of one amplifier, block by block
    (``READ_BLOCK_BYTES``; a compressed amplifier in one block, as astropy decompresses
    whole tiles).

    Parameters
    ----------
    amp : skipperdask.io.AmpLayout
    row_start, row_stop : int

    Yields
    ------
    start : int
        The block's first row.
    block : numpy.ndarray
        ``(rows, ncols, nskips)`` stored numbers in native byte order; uncompressed rows are
        in a per-thread buffer, valid until the next block is read.
    """
    if amp.compressed:
        rows_per_block = row_stop - row_start
    else:
        rows_per_block = max(1, READ_BLOCK_BYTES // amp.row_bytes)
    for start in range(row_start, row_stop, rows_per_block):
        stop = min(start + rows_per_block, row_stop)
        yield start, _read_block(amp, start, stop)


def _read_block(amp, start, stop):
    """Rows ``start … stop - 1`` as (rows, ncols, nskips), native byte order, in the reused
    buffer when uncompressed."""
    if amp.compressed:
        raw = read_raw_rows(amp, start, stop)
    else:
        nbytes = (stop - start) * amp.row_bytes
        raw = read_raw_rows(amp, start, stop, out=_reusable_buffer(nbytes)[:nbytes].view(amp.dtype))
    if not raw.dtype.isnative:
        raw = _byteswap_inplace(raw)
    return raw.reshape(stop - start, amp.ncols, amp.nskips)
