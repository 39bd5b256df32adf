"""Skipper-CCD FITS files: their layout from the headers, their rows on demand, a lazy array.

A file holds one or more amplifiers, one image HDU each (the primary HDU when it has data,
then every image extension, tile-compressed ones included). Along a row of one amplifier the
``nskips`` samples of a pixel are consecutive: the value of row ``r``, column ``c``, sample
``s`` is at ``data[r, c * nskips + s]``.

- :func:`scan_file` reads the headers only and gives a picklable :class:`FileLayout`;
- :func:`read_raw_rows` reads one row range of one amplifier, opening and closing the file
  inside the call (so that it runs in any worker process);
- :func:`open_image` gives the lazy, dask-backed ``(amp, row, col, skip)`` DataArray.

Every problem with an input file raises :class:`~skipperdask.errors.SkipperError`, whose
message names the file and the problem. Files are only ever opened read-only.
"""

import dataclasses
import os
import warnings

import dask.base
import dask.utils
import numpy as np
from astropy.io import fits

from . import config
from .errors import SkipperError

#: header keywords holding the number of samples per pixel, in order of precedence
SAMPLE_KEYWORDS = ("NDCMS", "NDCM", "NSAMP")

DIMS = ("amp", "row", "col", "skip")

# the stored (big-endian) type of each FITS BITPIX
_STORED_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


@dataclasses.dataclass(frozen=True)
class AmpLayout:
    """Where one amplifier's image is in its file, and how to read it.

    Holds no file handle, so that it pickles to any worker.

    Attributes
    ----------
    path : str
        Absolute path of the file.
    hdu : int
        Index of the image HDU in the file.
    name : str
        ``EXTNAME`` of the HDU, else ``str(hdu)``.
    nrows, ncols, nskips : int
        Rows, columns (pixels) and samples per pixel.
    header : dict
        The HDU's header, keyword -> value (commentary cards left out).
    dtype : numpy.dtype
        The type :func:`read_raw_rows` returns: big-endian as stored for uncompressed data,
        native and already scaled for compressed data.
    bscale, bzero : float
        Value = raw * bscale + bzero (1 and 0 for compressed data, scaled by astropy).
    data_offset : int or None
        Byte offset of the data in the file; None when compressed.
    compressed : bool
        Tile-compressed HDU (``CompImageHDU``).
    """

    path: str
    hdu: int
    name: str
    nrows: int
    ncols: int
    nskips: int
    header: dict = dataclasses.field(hash=False)
    dtype: np.dtype
    bscale: float
    bzero: float
    data_offset: int | None
    compressed: bool

    @property
    def row_length(self):
        """Stored numbers per row: ``ncols * nskips``."""
        return self.ncols * self.nskips

    @property
    def row_bytes(self):
        """Bytes of one row as :func:`read_raw_rows` returns it."""
        return self.row_length * self.dtype.itemsize

    @property
    def nbytes(self):
        """Bytes of the whole amplifier as :func:`read_raw_rows` returns it (stored bytes
        when uncompressed)."""
        return self.nrows * self.row_bytes

    @property
    def value_dtype(self):
        """The type of the values after BSCALE/BZERO, as astropy gives them: the stored type
        without scaling, unsigned (signed for 8 bits) integers for the usual BZERO offset,
        else float32 for 8/16-bit and float64 for 32/64-bit integers."""
        dtype = self.dtype.newbyteorder("=")
        if self.bscale == 1 and self.bzero == 0:
            return dtype
        if dtype.kind == "f":
            return dtype
        offset_dtype = _offset_integer_dtype(dtype, self.bscale, self.bzero)
        if offset_dtype is not None:
            return offset_dtype
        return np.dtype(np.float32 if dtype.itemsize <= 2 else np.float64)


@dataclasses.dataclass(frozen=True)
class FileLayout:
    """The headers of one file and the layout of its amplifiers (no pixel data).

    Attributes
    ----------
    path : str
        Absolute path.
    size : int
        Bytes, when scanned.
    mtime : float
        Modification time, when scanned.
    primary_header : dict
        The primary header, keyword -> value (commentary cards left out).
    polarity : int
        +1 when charge raises the value, -1 when it lowers it (see :func:`resolve_polarity`).
    polarity_source : {"option", "header", "name", "default"}
        What decided ``polarity``; ``"default"`` leaves the decision to the data.
    amps : tuple of AmpLayout
        The image HDUs, in file order.
    """

    path: str
    size: int
    mtime: float
    primary_header: dict = dataclasses.field(hash=False)
    polarity: int
    polarity_source: str
    amps: tuple


def resolve_polarity(path, primary_header, polarity=None):
    """The sign of charge in a file's values, as far as the option, the header and the name
    say: +1 when charge raises the value, -1 when it lowers it; and what decided it.

    The rule, in order:

    1. ``polarity`` when given (+1 or -1), else the ``skipperdask.polarity`` setting of
       ``dask.config`` when not null: source ``"option"``;
    2. +1 when the primary header says ``IMAGE = 'averaged'`` (DAMIC-M's acquisition writes
       averaged images in which charge raises the value): source ``"header"``;
    3. +1 when the file's base name contains ``Avg`` (the seed's rule, applied to the name
       only, not to its directories): source ``"name"``;
    4. else -1, the seed's default (in a raw skipper image more charge gives a lower value),
       source ``"default"``: provisional, the data decide after the pass over the pixels
       (:func:`skipperdask.metrics.settle_polarity`).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    primary_header : mapping
        Its primary header.
    polarity : {+1, -1, None}, optional
        An explicit choice.

    Returns
    -------
    polarity : int
        +1 or -1.
    source : {"option", "header", "name", "default"}
    """
    if polarity is None:
        polarity = config.get("polarity")
    if polarity is not None:
        if polarity not in (1, -1):
            raise ValueError(f"polarity must be +1 or -1, not {polarity!r}")
        return int(polarity), "option"
    if _is_averaged(primary_header):
        return 1, "header"
    if "Avg" in os.path.basename(os.fspath(path)):
        return 1, "name"
    return -1, "default"


def scan_file(path, *, polarity=None):
    """Read the headers of a skipper-CCD FITS file, never its pixels.

    Parameters
    ----------
    path : str or os.PathLike
        The FITS file (``.fits``, ``.fz``, ``.fits.fz``).
    polarity : {+1, -1, None}, optional
        Overrides the rule of :func:`resolve_polarity`.

    Returns
    -------
    FileLayout

    Raises
    ------
    SkipperError
        Not a FITS file, truncated, no image data, a sample count that is not a positive
        integer or does not divide ``NAXIS1``, or data that are not 2-D.

    Notes
    -----
    The amplifiers are the image HDUs with data, in file order. Samples per pixel come from
    ``NDCMS``, else ``NDCM``, else ``NSAMP``, in the HDU's header, else in the primary header
    (1 when none is there; strings such as ``NSAMP = '15'`` are read as numbers). The samples
    were already averaged, and ``nskips`` is 1 (the headers keep the nominal count), when the
    file's name contains ``Avg``, when the primary header says ``IMAGE = 'averaged'``, or
    when ``NAXIS1`` equals the header's ``NCOL``.
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    try:
        stat = os.stat(path)
    except OSError as error:
        raise SkipperError(path, f"cannot be read: {error.strerror}") from error
    # astropy reports truncated or damaged files with warnings: catch them and say what is wrong
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, mode="readonly", memmap=False, lazy_load_hdus=True) as hdul:
                primary_header = _header_dict(hdul[0].header)
                images = [
                    (
                        index,
                        hdu.header.get("EXTNAME"),
                        _header_dict(hdu.header),
                        hdu.fileinfo()["datLoc"],
                        isinstance(hdu, fits.CompImageHDU),
                    )
                    for index, hdu in enumerate(hdul)
                    if isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU)
                    and hdu.header.get("NAXIS", 0) > 0
                ]
        except (OSError, ValueError, fits.VerifyError) as error:
            raise SkipperError(path, f"not a FITS file, or a damaged one ({error})") from error
    # astropy stops at a header it cannot read, and only warns about it and about missing data
    damaged = _complaint(caught, "Error validating header", "END card")
    if damaged:
        raise SkipperError(path, f"truncated or corrupt header ({damaged})")
    if not images:
        raise SkipperError(path, "no image data: no HDU holds a 2-D image")
    amps = tuple(_amp_layout(path, primary_header, stat.st_size, *image) for image in images)
    truncated = _complaint(caught, "truncated")  # compressed data, or the last padding
    if truncated:
        raise SkipperError(path, f"truncated file ({truncated})")
    polarity, polarity_source = resolve_polarity(path, primary_header, polarity)
    return FileLayout(
        path=path,
        size=stat.st_size,
        mtime=stat.st_mtime,
        primary_header=primary_header,
        polarity=polarity,
        polarity_source=polarity_source,
        amps=amps,
    )


def read_raw_rows(amp, row_start, row_stop, out=None):
    """Read rows ``row_start:row_stop`` of one amplifier, as stored.

    The file is opened and closed inside the call. Uncompressed data are read straight from
    their byte range (nothing else of the file is read); compressed data through astropy's
    ``CompImageHDU.section``, which decompresses only the tiles of these rows.

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
    SkipperError
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
    try:
        with open(amp.path, "rb") as f:
            f.seek(amp.data_offset + row_start * amp.row_bytes)
            nread = f.readinto(buffer)
    except OSError as error:
        raise SkipperError(amp.path, f"cannot be read: {error}") from error
    if nread != nbytes:
        raise SkipperError(
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


def default_chunks(layout):
    """Chunks of :func:`open_image` when none are given: one amplifier, whole rows, and as
    many rows as fit in the ``skipperdask.chunk-bytes`` setting (64 MiB by default).

    Parameters
    ----------
    layout : FileLayout

    Returns
    -------
    dict
        Dimension -> chunk size.
    """
    amp = layout.amps[0]
    target = dask.utils.parse_bytes(config.get("chunk-bytes", "64MiB"))
    rows = max(1, min(amp.nrows, target // (amp.row_length * amp.value_dtype.itemsize)))
    return {"amp": 1, "row": rows, "col": amp.ncols, "skip": amp.nskips}


def open_image(path, *, chunks=None, polarity=None):
    """A skipper-CCD FITS file as a lazy ``(amp, row, col, skip)`` DataArray.

    Nothing is read until computed, and each dask chunk reads only its own rows.

    Parameters
    ----------
    path : str or os.PathLike
        The FITS file.
    chunks : dict, optional
        Dimension name -> chunk size, as in xarray (e.g. ``{"row": 64}``); dimensions left
        out keep :func:`default_chunks`.
    polarity : {+1, -1, None}, optional
        Overrides the rule of :func:`resolve_polarity`.

    Returns
    -------
    xarray.DataArray
        Named ``pixels``, dims ``("amp", "row", "col", "skip")`` (length-1 ``skip`` for an
        averaged image), values as stored after BSCALE/BZERO (not sign-flipped). Coordinates:
        ``amp`` (EXTNAME or HDU index), ``hdu``, ``row``, ``col``, ``skip``. Attributes: the
        primary header's numbers and strings, ``path``, ``polarity``, ``polarity_source``,
        ``nskips`` and ``amp_headers`` (amp name -> that HDU's header).

    Raises
    ------
    SkipperError
        The file cannot be read (see :func:`scan_file`), or its amplifiers differ in shape.
    """
    from .backend import dataset_from_layout  # the backend builds on this module

    layout = scan_file(path, polarity=polarity)
    dataset = dataset_from_layout(layout)
    pixels = dataset["pixels"]
    chunks = default_chunks(layout) | (chunks or {})
    # the name changes with the file and the chunks, as xr.open_dataset's do
    name = "pixels-" + dask.base.tokenize(layout.path, layout.size, layout.mtime, chunks)
    # chunk the pixels only: the small coordinates stay in memory
    lazy = pixels.variable.chunk(chunks, name=name)
    return pixels.copy(data=lazy.data).assign_attrs(dataset.attrs | pixels.attrs)


def _amp_layout(path, primary_header, file_size, index, extname, header, data_offset, compressed):
    naxis = header["NAXIS"]
    if naxis != 2:
        shape = " x ".join(str(header[f"NAXIS{i}"]) for i in range(naxis, 0, -1))
        raise SkipperError(
            path, f"HDU {index} holds {naxis}-D data ({shape}): only 2-D images are supported"
        )
    nrows, naxis1 = header["NAXIS2"], header["NAXIS1"]
    keyword, nskips = _samples_per_pixel(path, index, header, primary_header)
    ncol = _integer_or_none(header.get("NCOL", primary_header.get("NCOL")))
    averaged = (
        "Avg" in os.path.basename(path)
        or _is_averaged(primary_header)
        or (ncol == naxis1 and nskips > 1)
    )
    if averaged:
        nskips = 1
    if naxis1 % nskips:
        raise SkipperError(path, f"HDU {index}: {keyword}={nskips} does not divide NAXIS1={naxis1}")

    bitpix = header["BITPIX"]
    if bitpix not in _STORED_DTYPES:
        raise SkipperError(path, f"HDU {index}: BITPIX={bitpix} is not a FITS image type")
    stored = np.dtype(_STORED_DTYPES[bitpix])
    bscale, bzero = float(header.get("BSCALE", 1)), float(header.get("BZERO", 0))
    amp = AmpLayout(
        path=path,
        hdu=index,
        name=extname or str(index),
        nrows=nrows,
        ncols=naxis1 // nskips,
        nskips=nskips,
        header=header,
        dtype=stored,
        bscale=bscale,
        bzero=bzero,
        data_offset=None if compressed else data_offset,
        compressed=compressed,
    )
    if compressed:
        # astropy decompresses and scales: the rows come as it gives them
        return dataclasses.replace(amp, dtype=amp.value_dtype, bscale=1.0, bzero=0.0)
    if file_size < data_offset + amp.nbytes:
        raise SkipperError(
            path,
            f"truncated file: {file_size} bytes, but the data of HDU "
            f"{index} end at byte {data_offset + amp.nbytes}",
        )
    return amp


def _samples_per_pixel(path, index, header, primary_header):
    """The keyword and the nominal samples per pixel, from the HDU's header, else the
    primary header; ``(None, 1)`` when neither has any."""
    for source in (header, primary_header):
        for keyword in SAMPLE_KEYWORDS:
            if keyword in source:
                value = source[keyword]
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    number = float("nan")
                if not (number.is_integer() and number >= 1):
                    raise SkipperError(
                        path,
                        f"HDU {index}: {keyword}={value!r} is not a "
                        "positive integer number of samples per pixel",
                    )
                return keyword, int(number)
    return None, 1


def _integer_or_none(value):
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _is_averaged(primary_header):
    return str(primary_header.get("IMAGE", "")).strip().lower() == "averaged"


def _offset_integer_dtype(dtype, bscale, bzero):
    """The integer type FITS means by the usual BZERO offset (unsigned 16/32/64-bit, signed
    8-bit), or None."""
    if bscale != 1 or dtype.kind not in "iu":
        return None
    bits = 8 * dtype.itemsize
    if dtype.kind == "u" and bzero == -(2 ** (bits - 1)):
        return np.dtype(f"i{dtype.itemsize}")
    if dtype.kind == "i" and bzero == 2 ** (bits - 1):
        return np.dtype(f"u{dtype.itemsize}")
    return None


def _header_dict(header):
    """keyword -> python value, leaving out COMMENT/HISTORY/blank cards; undefined values
    become None."""
    return {
        keyword: None if isinstance(value, fits.card.Undefined) else value
        for keyword, value in header.items()
        if keyword not in ("", "COMMENT", "HISTORY")
    }


def _complaint(caught, *phrases):
    """The first of astropy's warnings that says one of ``phrases``, on one line, or None."""
    for warning in caught:
        message = " ".join(str(warning.message).split())
        if any(phrase in message for phrase in phrases):
            return message
    return None


def _read_compressed_rows(amp, row_start, row_stop):
    try:
        with fits.open(amp.path, mode="readonly") as hdul:
            return hdul[amp.hdu].section[row_start:row_stop]
    except (OSError, ValueError, TypeError, IndexError) as error:
        raise SkipperError(
            amp.path,
            f"HDU {amp.hdu} rows {row_start}:{row_stop} cannot be "
            f"decompressed (truncated or corrupt file?): {error}",
        ) from error
