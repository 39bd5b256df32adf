"""FITS headers read without astropy: the cards of a header, the HDUs of a file, and the image
header of a tile-compressed HDU, as astropy gives them.

Why it exists: speed. astropy's ``fits.open`` and ``CompImageHDU`` (every card parsed through
its ``Card`` and settings, the table header turned into the image header) cost about 25 ms of
CPU per compressed file, a fifth of a campaign's work on a DAMIC-M image; this reads the same
headers in about a millisecond, without importing astropy. It is the package's one reader of
header cards (:func:`.layout.scan_file`, :func:`.completeness.fits_extent`, :mod:`.tiles`).

It gives what astropy's ``Header`` gives, keyword by keyword: strings unquoted (``''`` a
quote, trailing spaces stripped, long strings joined from ``CONTINUE`` cards), ``T``/``F`` as
bool, integers as int, reals (``E`` or ``D`` exponent) as float, an empty value as None,
``HIERARCH`` keywords as written, commentary cards left out; and None for anything else, for
the caller to ask astropy, whose messages say what is wrong: complex or record-valued cards,
values astropy would not read, non-ASCII or control characters (:func:`parse_cards`);
truncated files, trailing bytes, random groups, unusual extensions, structural or
compression keywords (:func:`scan`).
"""

import math
import re
from typing import NamedTuple

#: FITS headers and data come in blocks of this many bytes
BLOCK = 2880
CARD = 80
_END_CARD = "END" + " " * 77
#: blocks read at a time while looking for the END card
_READ_BLOCKS = 2

_KEYWORD = re.compile(r"[A-Z0-9_-]{1,8}\Z")
_NUMBER = re.compile(r"([+-]?(?:\.\d+|\d+(?:\.\d*)?))(?:([DEde])([+-]?\d+))? *(?:/.*)?\Z")
# astropy reads 'field: number' strings as record-valued keyword cards (DP1.AXIS.1 = 1)
_RECORD_VALUED = re.compile(r"'[a-zA-Z_]\w*(\.\d+)?(\.[a-zA-Z_]\w*(\.\d+)?)*: +[+-]?(\.\d+|\d+)")
_COMMENTARY = frozenset(("", "COMMENT", "HISTORY"))
#: keywords that decide an HDU's kind and size: astropy reads the first of repeated ones
_STRUCTURAL = frozenset(("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "GROUPS",
                         "EXTEND", "EXTNAME", "ZIMAGE"))
_BITPIX = (8, 16, 32, 64, -32, -64)
_GIVE_UP = object()


class Header(NamedTuple):
    """The cards of one header.

    Attributes
    ----------
    cards : dict
        keyword -> value, commentary cards left out; a repeated keyword keeps its last value
        at its first place (as ``{k: v for k, v in astropy_header.items()}``).
    first : dict
        keyword -> first value, of the repeated keywords only (astropy's ``header[keyword]``).
    opening : str
        The keyword of the first card (``SIMPLE``, ``XTENSION``).
    offset, data_offset : int
        Where the header starts in the file, and where its data start.
    """

    cards: dict
    first: dict
    opening: str
    offset: int
    data_offset: int

    def get(self, keyword, default=None):
        """The value of ``keyword``'s first card, else ``default``."""
        if keyword in self.first:
            return self.first[keyword]
        return self.cards.get(keyword, default)

    def integer(self, keyword, default):
        """The first value of ``keyword`` as an int (a real truncated), else ``default``."""
        value = self.get(keyword)
        return int(value) if _finite(value) else default


def _string(text):
    """The raw content of a quoted value field up to the earliest closing quote followed by
    nothing, spaces or a comment (astropy's rule), or None."""
    quote = 0
    while True:
        quote = text.find("'", quote + 1)
        if quote < 0:
            return None
        rest = text[quote + 1:].lstrip(" ")
        if not rest or rest[0] == "/":
            return text[1:quote]


def _value(text):
    """The value of a card's value field (after ``= ``, stripped), or ``_GIVE_UP``."""
    first = text[:1]
    if first in ("", "/"):
        return None
    if first == "'":
        content = _string(text)
        if content is None or (": " in content and _RECORD_VALUED.match(text)):
            return _GIVE_UP
        return content.replace("''", "'").rstrip(" ")
    if first in ("T", "F") and (len(text) == 1 or text[1:].lstrip(" ")[:1] in ("", "/")):
        return first == "T"
    number = _NUMBER.match(text)
    if number is None:
        return _GIVE_UP
    mantissa, exponent = number.group(1), number.group(3)
    if exponent is None and "." not in mantissa:
        return int(mantissa)
    return float(mantissa if exponent is None else f"{mantissa}e{exponent}")


def parse_cards(text, strict=True):
    """``(cards, first)`` (:class:`Header`) of a header's text, whole 80-character cards up to
    its END card, as astropy's ``Header`` gives them; None when ``strict`` and a card is not
    one this reads (module docstring), else such a card is skipped."""
    cards, first = {}, {}
    if strict and not (text.isascii() and text.isprintable()):
        return None
    start = 0
    while start < len(text):
        card = text[start:start + CARD]
        following = start = start + CARD
        while text.startswith("CONTINUE", following):  # astropy joins them to this card
            following += CARD
        continuations, start = text[start:following], following
        keyword, value = card[:8].rstrip(" "), _GIVE_UP
        if keyword in _COMMENTARY:
            if not continuations:  # (continued commentary is astropy's)
                continue
        elif card[8:10] == "= " and _KEYWORD.match(keyword) and keyword != "CONTINUE":
            value = _value(card[10:].strip(" "))
            if continuations:
                value = _continued(card[10:], continuations) if isinstance(value, str) else _GIVE_UP
        elif card.startswith("HIERARCH ") and "=" in card and not continuations:
            keyword, _, field = card[9:].partition("=")  # its keyword as written
            keyword = keyword.strip(" ")
            value = _value(field.strip(" ")) if keyword else _GIVE_UP
        if value is _GIVE_UP:
            if strict:
                return None
            continue
        if keyword in cards and keyword not in first:
            first[keyword] = cards[keyword]
        cards[keyword] = value
    return cards, first


def _continued(field, continuations):
    """A string value continued on ``CONTINUE`` cards, joined as astropy joins it (the parts'
    trailing spaces and one trailing ``&`` dropped), or ``_GIVE_UP`` when a part is no string
    or holds a quote."""
    fields = [field, *(continuations[at + 8:at + CARD] if continuations[at + 8] == " " else ""
                       for at in range(0, len(continuations), CARD))]
    parts = []
    for field in fields:
        field = field.strip(" ")
        content = _string(field) if field[:1] == "'" else None
        if content is None or "'" in content:
            return _GIVE_UP
        content = content.rstrip(" ")
        parts.append(content[:-1] if content.endswith("&") else content)
    return "".join(parts).rstrip(" ")


def read_header(file, offset, size=None, strict=True):
    """The header that starts at ``offset`` of a binary file.

    Parameters
    ----------
    file : binary file object
        Seekable and readable (a local file, or a remote one of :mod:`.storage`).
    offset : int
    size : int, optional
        The file's size, beyond which nothing is read; by default, as far as the file goes.
    strict : bool
        :func:`parse_cards`'s; a strict header also ends with a standard END card.

    Returns
    -------
    Header or None
        None without an END card before ``size`` (a header not all written, no FITS header),
        or when ``strict`` and a card is not one this reads.
    """
    chunks, position, blocks = [], offset, _READ_BLOCKS
    while True:
        wanted = blocks * BLOCK if size is None else min(blocks * BLOCK, size - position)
        wanted -= wanted % BLOCK
        if wanted <= 0:
            return None
        file.seek(position)
        raw = file.read(wanted)
        raw = raw[:len(raw) - len(raw) % BLOCK]
        if not raw:
            return None
        end = _find_end(raw)
        if end is None:
            chunks.append(raw)
            position += len(raw)
            blocks *= 2
            continue
        chunks.append(raw[:end + CARD])  # (a non-ASCII byte: U+FFFD, which strict refuses)
        text = b"".join(chunks).decode("ascii", "replace")
        parsed = parse_cards(text[:-CARD], strict)
        if parsed is None or strict and text[-CARD:] != _END_CARD:
            return None
        return Header(*parsed, text[:8].rstrip(" "), offset,
                      position + (end // BLOCK + 1) * BLOCK)


def _find_end(raw):
    """Where the first card whose keyword is END starts in ``raw`` (bytes), or None."""
    at = raw.find(b"END")
    while at >= 0:
        start = at - at % CARD
        if raw[start:start + 8].strip(b" ") == b"END":
            return start
        at = raw.find(b"END", at + 1)
    return None


def data_bytes(header):
    """Bytes of an HDU's data before padding, as its header declares them:
    ``|BITPIX| / 8 × GCOUNT × (PCOUNT + NAXIS1 × … × NAXISn)``, 0 without axes (values that
    are no numbers count as 0 axes, 8 bits, one group, no parameters)."""
    naxis = header.integer("NAXIS", 0)
    if naxis <= 0:
        return 0
    values = 1
    for axis in range(1, naxis + 1):
        values *= header.integer(f"NAXIS{axis}", 0)
    bitpix = abs(header.integer("BITPIX", 8))
    return bitpix // 8 * header.integer("GCOUNT", 1) * (header.integer("PCOUNT", 0) + values)


def padded(nbytes):
    """``nbytes`` rounded up to whole blocks."""
    return nbytes + (-nbytes % BLOCK)


class HDU(NamedTuple):
    """One HDU of a file, as :func:`scan` reads it.

    Attributes
    ----------
    index : int
    kind : {"image", "compressed", "other"}
        The primary HDU or an ``IMAGE`` extension, a ``ZIMAGE = T`` binary table, a table.
    cards : dict
        The header as astropy gives it: a compressed image's image header (:func:`image_cards`),
        ``EXTEND = T`` in the primary header of a file with extensions (``update_extend``).
    header : Header
        The header as stored (a compressed image's table header).
    """

    index: int
    kind: str
    cards: dict
    header: Header


def scan(file, size):
    """The HDUs of a whole, ordinary FITS file, as astropy reads them, or None.

    Parameters
    ----------
    file : binary file object
        Seekable and readable.
    size : int
        The file's size.

    Returns
    -------
    list of HDU or None
        None unless the file is a primary HDU and extensions (``IMAGE``, ``BINTABLE``,
        ``TABLE``) of cards :func:`parse_cards` reads, with usual structural keywords, that
        end exactly where the file ends (module docstring).
    """
    hdus, offset = [], 0
    while offset < size:
        header = read_header(file, offset, size)
        if header is None or header.first.keys() & _STRUCTURAL:
            return None
        kind, cards = _kind(header, not hdus), header.cards
        if kind is None or not _well_formed(header) or kind == "compressed" and (
                header.first or (cards := image_cards(cards)) is None):
            return None
        offset = header.data_offset + padded(data_bytes(header))
        hdus.append(HDU(len(hdus), kind, cards, header))
    if offset != size or not hdus:
        return None
    primary = _extended(hdus[0].cards) if len(hdus) > 1 else hdus[0].cards
    if primary is None:
        return None
    return [hdus[0]._replace(cards=primary), *hdus[1:]]


def _kind(header, primary):
    """What astropy makes of a header: its HDU kind (:class:`HDU`), or None when it is no
    kind this module reads."""
    cards = header.cards
    if primary:
        simple = header.opening == "SIMPLE" and cards["SIMPLE"] is True
        return "image" if simple and "GROUPS" not in cards else None
    extension = cards.get("XTENSION") if header.opening == "XTENSION" else None
    if extension == "BINTABLE":  # ZIMAGE = T: a tile-compressed image
        extension = {True: "ZIMAGE", False: "TABLE"}.get(cards.get("ZIMAGE", False))
    return {"IMAGE": "image", "ZIMAGE": "compressed", "TABLE": "other"}.get(extension)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value):
    """An int or a finite float (no bool)."""
    return _is_int(value) or isinstance(value, float) and math.isfinite(value)


def _well_formed(header):
    """Whether the keywords of :func:`data_bytes` are all there and usual integers."""
    naxis, bitpix = header.get("NAXIS"), header.get("BITPIX")
    if not (_is_int(naxis) and 0 <= naxis <= 999 and _is_int(bitpix) and bitpix in _BITPIX):
        return False
    counts = [header.get(f"NAXIS{axis}") for axis in range(1, naxis + 1)]
    counts += [header.get("PCOUNT", 0), header.get("GCOUNT", 1)]
    return all(_is_int(count) and count >= 0 for count in counts)


def _extended(primary):
    """The primary header of a file with extensions, as astropy's ``update_extend`` leaves
    it: ``EXTEND = T`` (after the last ``NAXISn`` when missing), or None."""
    extend = primary.get("EXTEND")
    if extend is True or extend is False:
        return {**primary, "EXTEND": True}
    if "EXTEND" in primary:
        return None
    after, extended = f"NAXIS{primary['NAXIS'] or ''}", {}
    for keyword, value in primary.items():
        extended[keyword] = value
        if keyword == after:
            extended["EXTEND"] = True
    return extended


# astropy.io.fits.hdu.compressed.header: the table and compression keywords of a
# tile-compressed HDU, left out of its image header
_TABLE_DEFINITION = re.compile(r"(?P<label>^T[A-Z]*)(?P<num>[1-9][0-9 ]*$)")
_ZDEFINITION = re.compile(r"(?P<label>^[Zz][a-zA-Z]*)(?P<num>[1-9][0-9 ]*$)?")
_TABLE_LABELS = frozenset(("TTYPE", "TFORM", "TUNIT", "TNULL", "TSCAL", "TZERO", "TDISP",
                           "TBCOL", "TDIM", "TCTYP", "TCUNI", "TCRPX", "TCRVL", "TCDLT",
                           "TRPOS"))
_INDEXED_LABELS = frozenset(("ZNAXIS", "ZTILE", "ZNAME", "ZVAL"))
_RESERVED = frozenset(("TFIELDS", "THEAP", "CHECKSUM", "DATASUM", "ZSIMPLE", "ZTENSION",
                       "ZBITPIX", "ZNAXIS", "ZEXTEND", "ZBLOCKED", "ZPCOUNT", "ZGCOUNT",
                       "ZHECKSUM", "ZDATASUM", "ZIMAGE", "ZCMPTYPE", "ZMASKCMP", "ZQUANTIZ",
                       "ZDITHER0", "ZBLANK", "ZSCALE", "ZZERO"))
# Header.strip: what an image header takes from no other kind of header
_STRIPPED = frozenset(("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT",
                       "GROUPS", "BSCALE", "BZERO", "TFIELDS"))
_DITHERS = ("NONE", "NO_DITHER", "SUBTRACTIVE_DITHER_1", "SUBTRACTIVE_DITHER_2")
_STRIPPED_INDEXED = ("TFORM", "TSCAL", "TZERO", "TNULL", "TTYPE", "TUNIT", "TDISP", "TDIM",
                     "THEAP", "TBCOL")


def _reserved(keyword):
    if keyword in _RESERVED:
        return True
    match = _TABLE_DEFINITION.match(keyword)
    if match and match.group("label") in _TABLE_LABELS:
        return True
    match = _ZDEFINITION.match(keyword)
    return bool(match and match.group("label").upper() in _INDEXED_LABELS)


def image_cards(table):
    """The image header of a tile-compressed HDU from its table header's cards, as astropy's
    ``CompImageHDU.header`` gives it (``_bintable_header_to_image_header``), or None when
    they are unusual (a ``HIERARCH`` keyword, a missing ``ZNAXISn`` or ``TTYPEn``, an infinite
    value astropy refuses to move, …).

    The table and compression keywords (``TTYPEn``, ``TFORMn``, ``TFIELDS``, ``THEAP``,
    ``ZIMAGE``, ``ZCMPTYPE``, ``ZTILEn``, ``ZNAMEn``/``ZVALn``, …) and the table's
    ``CHECKSUM``/``DATASUM`` are left out; ``XTENSION = 'IMAGE'`` (``SIMPLE`` from
    ``ZSIMPLE``), ``BITPIX``, ``NAXIS``, ``NAXISn``, ``PCOUNT``, ``GCOUNT`` come first from their
    ``Z`` keywords (``PCOUNT = 0``, ``GCOUNT = 1`` by default, neither for a primary image);
    ``BSCALE``/``BZERO`` (unless 0), ``EXTEND``, ``BLOCKED``, ``CHECKSUM``, ``DATASUM``,
    ``BLANK`` come last; ``EXTNAME = 'COMPRESSED_IMAGE'``, astropy's default, is dropped.
    """
    zbitpix, znaxis = table.get("ZBITPIX"), table.get("ZNAXIS")
    naxis, tfields = table.get("NAXIS", 0), table.get("TFIELDS")
    if not all(_is_int(count) and 0 <= count <= 999 for count in (znaxis, naxis, tfields)):
        return None
    names = [table.get(f"TTYPE{column}") for column in range(1, tfields + 1)]
    if not (_is_int(zbitpix) and None not in names
            and all(f"ZNAXIS{axis}" in table for axis in range(1, znaxis + 1))
            and all(_KEYWORD.match(keyword) for keyword in table) and _usual_compression(table)
            and all(_finite(value) for value in table.values() if isinstance(value, float))
            and not ({"BSCALE", "BZERO"} & table.keys() and None in (
                table.get("BSCALE", 1), table.get("BZERO", 0)))):
        return None
    stripped = _STRIPPED | {f"NAXIS{axis}" for axis in range(1, naxis + 1)} | {
        f"{label}{column}" for label in _STRIPPED_INDEXED for column in range(1, tfields + 1)}
    head = {"SIMPLE": table["ZSIMPLE"]} if "ZSIMPLE" in table else {"XTENSION": "IMAGE"}
    head.update(BITPIX=zbitpix, NAXIS=znaxis)
    for axis in range(1, znaxis + 1):
        head[f"NAXIS{axis}"] = table[f"ZNAXIS{axis}"]
    if "ZSIMPLE" not in table:
        head.update(PCOUNT=table.get("ZPCOUNT", 0), GCOUNT=table.get("ZGCOUNT", 1))
    image = dict(head)
    for keyword, value in table.items():
        if not (keyword in stripped or keyword in head or _reserved(keyword)
                or _spurious_axis(keyword, znaxis)):
            image[keyword] = value
    image.update({keyword: table[keyword] for keyword in ("BSCALE", "BZERO") if table.get(keyword)})
    image.update({keyword: table[source] for keyword, source in (
        ("EXTEND", "ZEXTEND"), ("BLOCKED", "ZBLOCKED"), ("CHECKSUM", "ZHECKSUM"),
        ("DATASUM", "ZDATASUM")) if source in table})
    if image.get("EXTNAME") == "COMPRESSED_IMAGE":
        del image["EXTNAME"]
    if zbitpix > 0 and "BLANK" not in image:
        if "ZBLANK" in table:
            image["BLANK"] = table["ZBLANK"]
        elif "ZBLANK" in names:
            image["BLANK"] = -(1 << (zbitpix - 1))
    return image


def _usual_compression(table):
    """Whether astropy's ``CompImageHDU`` reads the compression keywords without an error:
    integer ``ZTILEn``, string ``ZNAMEn`` (with their ``ZVALn``, a number for ``SCALE``),
    a known ``ZQUANTIZ``."""
    if not (all(_is_int(table.get(f"ZTILE{axis}")) for axis in range(1, table["ZNAXIS"] + 1))
            and table.get("ZQUANTIZ", "NONE") in _DITHERS):
        return False
    for index in range(1, 1000):
        if f"ZNAME{index}" not in table:
            return True
        name, value = table[f"ZNAME{index}"], table.get(f"ZVAL{index}", _GIVE_UP)
        if not isinstance(name, str) or name.lower() in ("scale", "smooth", "noisebit") and (
                value is _GIVE_UP or name.lower() == "scale" and not _finite(value)):
            return False
    return True


def _spurious_axis(keyword, naxis):
    """An ``NAXISn`` beyond the image's axes (astropy deletes them)."""
    try:
        return keyword.startswith("NAXIS") and len(keyword) > 5 and int(keyword[5:]) > naxis
    except ValueError:
        return False
