"""Skipper-CCD FITS files: their layout, from the headers only.

A file holds one or more amplifiers, one image HDU each (the primary HDU when it has data,
then every image extension, tile-compressed ones included). Along a row of one amplifier the
``nskips`` samples of a pixel are consecutive: the value of row ``r``, column ``c``, sample
``s`` is at ``data[r, c * nskips + s]``.

:func:`scan_file` reads the headers only and gives a picklable :class:`FileLayout`; every
problem with an input file raises :class:`~skipperdask.errors.BadFileError`, whose message
names the file and the problem. Files are only ever opened read-only. The headers are read by
:mod:`.headers`, without astropy; a file it does not take (unusual cards, a damaged or
truncated file) is read by astropy (:mod:`.astropy_headers`), whose errors and warnings say
what is wrong.
"""

import dataclasses
import os

import numpy as np

from ..errors import BadFileError, BadOptionError
from .headers import scan
from .inputs import regular_file
from .opened import open_input

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
        Absolute path of the file, or its URL (:mod:`.storage`).
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
        Value = raw * bscale + bzero (1 and 0 for compressed data, scaled when decoded).
    header_offset : int
        Byte offset of the HDU's header in the file (of a compressed image, its table's
        header: where :func:`.tiles.rice_rows` reads how its tiles are stored).
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
    header_offset: int
    data_offset: int | None
    compressed: bool
    #: the file system's arguments of a URL (:mod:`.storage`); not shown, not compared
    storage_options: dict | None = dataclasses.field(default=None, repr=False, compare=False)

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
        Absolute path, or URL.
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
    storage_options: dict | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def shape(self):
        """``(amps, rows, cols, samples)``: the shape of the file's ``(amp, row, col, skip)``
        array.

        Raises
        ------
        BadFileError
            The amplifiers differ in shape and cannot form one array.
        """
        shapes = {(amp.nrows, amp.ncols, amp.nskips) for amp in self.amps}
        if len(shapes) > 1:
            described = ", ".join(
                f"{amp.name}: {amp.nrows} rows x {amp.ncols} cols x {amp.nskips} samples"
                for amp in self.amps
            )
            raise BadFileError(
                self.path,
                "the amplifiers differ in shape and cannot form "
                f"one (amp, row, col, skip) array ({described})",
            )
        return (len(self.amps), *shapes.pop())


def averaged_by(path, primary_header):
    """What says that a file holds averaged images, in which charge raises the value:
    ``"header"`` when its primary header says ``IMAGE = 'averaged'`` (as DAMIC-M's acquisition
    writes), ``"name"`` when its base name contains ``Avg`` (the original tool's rule, on the name
    only, not on its directories), else None."""
    if str(primary_header.get("IMAGE", "")).strip().lower() == "averaged":
        return "header"
    if "Avg" in os.path.basename(os.fspath(path)):
        return "name"
    return None


def resolve_polarity(path, primary_header, polarity=None):
    """The sign of charge in a file's values, as far as the option, the header and the name
    say: +1 when charge raises the value, -1 when it lowers it; and what decided it.

    The rule, in order:

    1. ``polarity`` when given (+1 or -1; the ``skipperdask.polarity`` setting, carried by
       :class:`skipperdask.config.Options`): source ``"option"``;
    2. and 3. +1 when the file holds averaged images (:func:`averaged_by`): source
       ``"header"`` or ``"name"``;
    4. else -1, the original tool's default (in a raw skipper image more charge gives a lower
       value), source ``"default"``: provisional, the data decide after the pass over the pixels
       (:func:`skipperdask.metrics.polarity.settle_polarity`).

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
    if polarity is not None:
        if polarity not in (1, -1):
            raise BadOptionError(f"polarity must be +1 or -1, not {polarity!r}")
        return int(polarity), "option"
    source = averaged_by(path, primary_header)
    return (1, source) if source else (-1, "default")


def scan_file(path, *, polarity=None, storage_options=None):
    """Read the headers of a skipper-CCD FITS file, never its pixels.

    Parameters
    ----------
    path : str or os.PathLike
        The FITS file (``.fits``, ``.fz``, ``.fits.fz``), or its URL (``s3://…``: its headers
        read by range, :func:`.storage.open_remote`).
    polarity : {+1, -1, None}, optional
        Overrides the rule of :func:`resolve_polarity`.
    storage_options : dict, optional
        The file system's arguments of a URL (:func:`.storage.filesystem`).

    Returns
    -------
    FileLayout

    Raises
    ------
    BadFileError
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
    path, size, mtime = regular_file(path, storage_options)
    truncated = None
    found = _images_without_astropy(path, size, storage_options)
    if found is None:  # a file headers.py does not take: astropy reads it or says what is wrong
        from .astropy_headers import astropy_images

        primary_header, images, truncated = astropy_images(path, storage_options)
    else:
        primary_header, images = found
    if not images:
        raise BadFileError(path, "no image data: no HDU holds a 2-D image")
    amps = tuple(dataclasses.replace(_amp_layout(path, primary_header, size, *image),
                                     storage_options=storage_options) for image in images)
    _refuse_duplicate_names(path, amps)
    if truncated:  # astropy's warning: compressed data, or the last padding
        raise BadFileError(path, f"truncated file ({truncated})")
    polarity, polarity_source = resolve_polarity(path, primary_header, polarity)
    return FileLayout(
        path=path,
        size=size,
        mtime=mtime,
        primary_header=primary_header,
        polarity=polarity,
        polarity_source=polarity_source,
        amps=amps,
        storage_options=storage_options,
    )


def _images_without_astropy(path, size, storage_options):
    """The primary header and the image HDUs (as :func:`.astropy_headers.astropy_images`
    gives them) of a file that :func:`.headers.scan` takes, else None."""
    try:
        with open_input(path, storage_options) as file:
            hdus = scan(file, size)
    except OSError:  # astropy's reading says what is wrong
        return None
    if hdus is None:
        return None
    images = [(hdu.index, hdu.cards.get("EXTNAME"), dict(hdu.cards), hdu.header.offset,
               hdu.header.data_offset, hdu.kind == "compressed")
              for hdu in hdus if hdu.kind != "other" and hdu.cards.get("NAXIS", 0) > 0]
    return hdus[0].cards, images


def _amp_layout(path, primary_header, file_size, index, extname, header, header_offset,
                data_offset, compressed):
    naxis = header["NAXIS"]
    if naxis != 2:
        shape = " x ".join(str(header[f"NAXIS{i}"]) for i in range(naxis, 0, -1))
        raise BadFileError(
            path, f"HDU {index} holds {naxis}-D data ({shape}): only 2-D images are supported"
        )
    nrows, naxis1 = header["NAXIS2"], header["NAXIS1"]
    if not (nrows > 0 and naxis1 > 0):
        raise BadFileError(path, f"HDU {index} is an empty image (NAXIS1={naxis1}, "
                           f"NAXIS2={nrows})")
    keyword, nskips = _samples_per_pixel(path, index, header, primary_header)
    ncol = _integer_or_none(header.get("NCOL", primary_header.get("NCOL")))
    if averaged_by(path, primary_header) or (ncol == naxis1 and nskips > 1):
        nskips = 1
    if naxis1 % nskips:
        raise BadFileError(path, f"HDU {index}: {keyword}={nskips} does not divide NAXIS1={naxis1}")

    bitpix = header["BITPIX"]
    if bitpix not in _STORED_DTYPES:
        raise BadFileError(path, f"HDU {index}: BITPIX={bitpix} is not a FITS image type")
    stored = np.dtype(_STORED_DTYPES[bitpix])
    bscale = _scaling(path, index, header, "BSCALE", 1)
    bzero = _scaling(path, index, header, "BZERO", 0)
    if bscale == 0:
        raise BadFileError(path, f"HDU {index}: BSCALE=0 would make every value BZERO")
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
        header_offset=header_offset,
        data_offset=None if compressed else data_offset,
        compressed=compressed,
    )
    if compressed:
        # decoded and scaled (.tiles, else astropy): the rows come as astropy gives them
        return dataclasses.replace(amp, dtype=amp.value_dtype, bscale=1.0, bzero=0.0)
    if file_size < data_offset + amp.nbytes:
        raise BadFileError(
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
                try:  # a logical (NDCMS = T) is no count, though bool is an int in Python
                    number = float("nan") if isinstance(value, bool) else float(value)
                except (TypeError, ValueError):
                    number = float("nan")
                if not (number.is_integer() and number >= 1):
                    raise BadFileError(
                        path,
                        f"HDU {index}: {keyword}={value!r} is not a "
                        "positive integer number of samples per pixel",
                    )
                return keyword, int(number)
    return None, 1


def _scaling(path, index, header, keyword, default):
    """A finite number from BSCALE or BZERO, else a BadFileError naming it."""
    value = header.get(keyword, default)
    try:
        number = float("nan") if isinstance(value, bool | str) else float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number):
        raise BadFileError(path, f"HDU {index}: {keyword}={value!r} is not a number")
    return number


def _refuse_duplicate_names(path, amps):
    """Two image HDUs with one EXTNAME would make one amplifier of two."""
    seen = {}
    for amp in amps:
        if amp.name in seen:
            raise BadFileError(path, f"HDUs {seen[amp.name]} and {amp.hdu} have the same "
                               f"EXTNAME {amp.name!r}: the amplifiers cannot be told apart")
        seen[amp.name] = amp.hdu


def _integer_or_none(value):
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


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
