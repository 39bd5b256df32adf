"""The header reader without astropy gives what astropy gives, card by card and HDU by HDU
(compressed images' image headers included), and gives up on what it does not read; scan_file's
fast path gives the layout that astropy's reading gives."""

import os
import pathlib
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from astropy.io import fits

from skipperdask.io import headers, layout
from skipperdask.io.rows import read_raw_rows
from skipperdask.simulate import Truth, write_image
from tests.io.test_layout_and_array import LAYOUTS

RNG = np.random.default_rng(2880)
SMALL = {"nrows": 6, "ncols": 10, "nskips": 3}


def astropy_cards(*cards):
    """``{keyword: value}`` of astropy's Header of these cards, as layout's dict gives it, or
    the name of the error astropy raises."""
    text = "".join(card.ljust(80) for card in (*cards, "END"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            header = fits.Header.fromstring(text.ljust(-(-len(text) // 2880) * 2880))
            return {keyword: None if isinstance(value, fits.card.Undefined) else value
                    for keyword, value in header.items()
                    if keyword not in ("", "COMMENT", "HISTORY")}
        except fits.VerifyError as error:
            return type(error).__name__


def parsed(*cards):
    result = headers.parse_cards("".join(card.ljust(80) for card in cards))
    return None if result is None else result[0]


def assert_same(got, expected):
    """Equal dicts, in the same order, with values of the same types (1 == 1.0 == True)."""
    assert list(got.items()) == list(expected.items())
    assert [type(value) for value in got.values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize("card", [
    "STR     = 'it''s'", "STR     = 'trailing   '   / comment", "STR     = '   leading'",
    "STR     = ''", "STR     = ''''", "STR     = 'x'/c", "STR     = 'it's ok'",
    "STR     = 'a'' / b'", "STR     = 'o''clock' / it''s", "STR     = 'Note: text'",
    "LOGICAL = T", "LOGICAL = F / comment", "LOGICAL = T/c",
    "INT     = 42", "INT     = -42", "INT     = +0042", "INT     = 99999999999999999999999",
    "REAL    = 1.5D3", "REAL    = 1.5d-3", "REAL    = 1.E5", "REAL    = .5", "REAL    = -.5E-3",
    "REAL    = 1E5", "REAL    = 1.5e+03 / c", "REAL    = 1.", "REAL    = -0.0",
    "UNDEF   =", "UNDEF   =   / comment", "DATE-OBS= '2025-01-01'", "A_B-C9  = 1",
    "        = 'a blank keyword is commentary'", "COMMENT = 'x'", "HISTORY   anything",
], ids=lambda card: card.split("=")[0].strip() + ":" + card.partition("=")[2].strip())
def test_ordinary_cards_read_as_astropy_reads_them(card):
    assert_same(parsed(card), astropy_cards(card))


@pytest.mark.parametrize("cards", [
    ("HIERARCH ESO DET CHIP = 5",), ("HIERARCH eso det = 'x' / c",), ("HIERARCH A=1",),
    ("HIERARCH CLOCKPERIOD = 1E-08",), ("HIERARCH  SPACED KEY   = T",), ("HIERARCH A B = 'it''s'",),
    ("A       = 1", "HIERARCH A = 2"), ("HIERARCH= 5",),
    ("LONG    = 'abc&'", "CONTINUE  'def&'", "CONTINUE  'ghi'"),
    ("LONG    = 'abc &  '", "CONTINUE  '  def'  / comment"), ("LONG    = 'abc'", "CONTINUE  'def'"),
    ("LONG    = 'abc&' / c1", "CONTINUE  'def&' / c2", "CONTINUE  '&' / c3"),
    ("LONG    = '&'", "CONTINUE  '&'"),
], ids=lambda cards: " + ".join(card.split("=")[0].split("'")[0].strip() for card in cards))
def test_hierarch_and_continue_cards_read_as_astropy_reads_them(cards):
    assert_same(parsed(*cards), astropy_cards(*cards))


def test_a_repeated_keyword_keeps_its_last_value_at_its_first_place():
    cards = ("DUP     = 1", "OTHER   = 'x'", "DUP     = 'two'")
    assert_same(parsed(*cards), astropy_cards(*cards))
    assert headers.parse_cards("".join(c.ljust(80) for c in cards))[1] == {"DUP": 1}


@pytest.mark.parametrize("cards", [
    ("COMPLEX = (1, 2)",), ("RECORD  = 'AXIS.1: 2'",), ("RECORD  = 'Note: 12'",),
    ("lower   = 1",), ("WORD    = abc",), ("NOVALUE   5",), ("LOGICAL = TRUE",),
    ("STR     = 'a' junk",), ("SPACED  = 1.5 E3",), ("TAB     = 'a\tb'",),
    ("HIERARCH = 5",), ("HIERARCH A = (1, 2)",), ("hierarch a = 1",), ("HIERARCH NOEQUALS",),
    ("CONTINUE  'orphan'",), ("LONG    = 5", "CONTINUE  'x'"), ("COMMENT x", "CONTINUE  'y'"),
    ("LONG    = 'abc&'", "CONTINUE  5"), ("LONG    = 'abc&'", "CONTINUE'x'"),
    ("LONG    = 'abc&'", "CONTINUE  'd''ef'"), ("HIERARCH LONG = 'abc&'", "CONTINUE  'def'"),
], ids=lambda cards: " + ".join(card[:16].strip() for card in cards))
def test_other_cards_make_the_reader_give_up(cards):
    assert parsed("SIMPLE  =                    T", *cards) is None


def astropy_hdus(path):
    """(kind, header dict, header offset, data offset) of each HDU, as astropy reads them."""
    hdus = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            for hdu in hdul:
                kind = ("compressed" if isinstance(hdu, fits.CompImageHDU) else
                        "image" if isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU) else "other")
                info = hdu.fileinfo()
                cards = {keyword: None if isinstance(value, fits.card.Undefined) else value
                         for keyword, value in hdu.header.items()
                         if keyword not in ("", "COMMENT", "HISTORY")}
                hdus.append((kind, cards, info["hdrLoc"], info["datLoc"]))
    return hdus


def scanned(path):
    with open(path, "rb") as file:
        return headers.scan(file, path.stat().st_size)


def assert_scan_is_astropys(path):
    hdus = scanned(path)
    assert hdus is not None, f"{path.name}: the reader gave up"
    expected = astropy_hdus(path)
    assert len(hdus) == len(expected)
    for hdu, (kind, cards, header_offset, data_offset) in zip(hdus, expected, strict=True):
        assert (hdu.kind, hdu.header.offset, hdu.header.data_offset) == (
            kind, header_offset, data_offset)
        assert_same(hdu.cards, cards)


def _simulated(directory):
    for dtype in ("uint32", "int16", "float32", "float64"):
        averaged = dtype.startswith("float")
        for namps, compressed in ((1, False), (4, False), (1, True), (2, True)):
            truth = Truth(**SMALL, dtype=dtype, namps=namps, compressed=compressed,
                          averaged=averaged)
            name = f"{'Img_Avg' if averaged else 'Img'}_{dtype}_{namps}"
            yield write_image(directory / f"{name}.{'fz' if compressed else 'fits'}", truth)


def test_simulated_files(tmp_path):
    for path in _simulated(tmp_path):
        assert_scan_is_astropys(path)


@pytest.mark.parametrize("make", LAYOUTS, ids=lambda make: make.__name__)
def test_the_layouts_of_the_reading_tests(tmp_path, make):
    assert_scan_is_astropys(make(tmp_path)[0])


def _compressed(data, **options):
    hdu = fits.CompImageHDU(data, **options)
    hdu.header.update(NDCMS=1, STR="it's  ", LEAD="  lead", DEXP=1.5e300, EMPTY="",
                      FLAG=False, UNDEF=None)
    hdu.header.add_comment("a comment")
    hdu.header.add_history("a history")
    return hdu


@pytest.mark.parametrize("options", [
    {"compression_type": "RICE_1"}, {"compression_type": "GZIP_2"},
    {"compression_type": "HCOMPRESS_1"}, {"compression_type": "PLIO_1"},
    {"quantize_level": 16, "quantize_method": 2, "dtype": "float32"},
    {"quantize_method": -1, "dtype": "float64"}, {"dtype": "uint8"}, {"dtype": "uint16"},
    {"name": "CCD_A", "dtype": "int16", "BSCALE": 0.5, "BZERO": 3.0},
], ids=lambda options: "-".join(map(str, options.values())))
def test_compressed_image_headers(tmp_path, options):
    options = dict(options)
    dtype = options.pop("dtype", "int32")
    scaling = {keyword: options.pop(keyword) for keyword in ("BSCALE", "BZERO")
               if keyword in options}
    data = RNG.integers(0, 200, (20, 30)).astype(dtype)
    hdu = _compressed(data, **options)
    hdu.header.update(scaling)
    path = tmp_path / "image.fz"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    assert_scan_is_astropys(path)


def test_images_tables_and_a_cube(tmp_path):
    data = RNG.integers(0, 1000, (20, 30)).astype(np.int32)
    image = fits.ImageHDU(data, name="WEIRD")
    image.header.update(STR="a''b", BSCALE=2.0, BZERO=10.0, BIG=12345678901234567890)
    table = fits.BinTableHDU.from_columns([fits.Column("x", "E", array=np.ones(3))])
    text = fits.TableHDU.from_columns([fits.Column("y", "E10.4", array=np.ones(3))])
    cube = fits.CompImageHDU(np.zeros((3, 4, 5), np.int16))
    path = tmp_path / "mixed.fits"
    fits.HDUList([fits.PrimaryHDU(), image, table, text, cube]).writeto(path)
    assert_scan_is_astropys(path)


@pytest.mark.parametrize("card", ["COMMENT   no EXTEND card", "EXTEND  =                    F"])
@pytest.mark.parametrize("naxis", [0, 2])
def test_astropy_sets_extend_in_a_primary_header_with_extensions(tmp_path, card, naxis):
    primary = fits.PrimaryHDU(np.zeros((2, 3), np.int16) if naxis else None)
    primary.header["NDCMS"] = 1
    path = tmp_path / "extend.fits"
    fits.HDUList([primary, fits.ImageHDU(np.zeros((2, 3), np.int16))]).writeto(path)
    raw = path.read_bytes()
    at = raw.index(b"EXTEND  =")
    path.write_bytes(raw[:at] + card.ljust(80).encode() + raw[at + 80:])
    assert_scan_is_astropys(path)
    assert scanned(path)[0].cards["EXTEND"] is True


@pytest.mark.real_data
def test_real_files(real_data):
    for path in sorted(real_data.glob("*.f*")):
        assert_scan_is_astropys(path)


# scan_file: its fast path gives the layout that astropy's reading gives


def astropy_scan(path, monkeypatch, **options):
    """scan_file as it reads the file with astropy."""
    with monkeypatch.context() as patched:
        patched.setattr(layout, "_images_without_astropy", lambda *args: None)
        return layout.scan_file(path, **options)


def assert_fast_scan_is_astropys(path, monkeypatch):
    found = layout._images_without_astropy(os.path.abspath(path), os.path.getsize(path), None)
    assert found is not None, f"{path}: read by astropy"
    fast, slow = layout.scan_file(path), astropy_scan(path, monkeypatch)
    assert fast == slow
    assert_same(fast.primary_header, slow.primary_header)
    for amp, expected in zip(fast.amps, slow.amps, strict=True):
        assert_same(amp.header, expected.header)
        assert (amp.header_offset, amp.data_offset) == (expected.header_offset,
                                                       expected.data_offset)
    assert pickle.loads(pickle.dumps(fast)) == fast


def test_scan_file_of_simulated_files(tmp_path, monkeypatch):
    for path in _simulated(tmp_path):
        assert_fast_scan_is_astropys(path, monkeypatch)


@pytest.mark.parametrize("make", LAYOUTS, ids=lambda make: make.__name__)
def test_scan_file_of_the_reading_tests_layouts(tmp_path, monkeypatch, make):
    assert_fast_scan_is_astropys(make(tmp_path)[0], monkeypatch)


def test_scan_file_with_bscale_and_bzero(tmp_path, monkeypatch):
    data = RNG.integers(0, 200, (20, 30)).astype(np.int16)
    plain = fits.PrimaryHDU(data)
    plain.header.update(NDCMS=3, BSCALE=0.5, BZERO=-7.0)
    compressed = _compressed(data, compression_type="RICE_1")
    compressed.header.update(NDCMS=3, BSCALE=2.0, BZERO=1.5)
    fits.HDUList([plain]).writeto(tmp_path / "plain.fits")
    fits.HDUList([fits.PrimaryHDU(), compressed]).writeto(tmp_path / "compressed.fz")
    for name in ("plain.fits", "compressed.fz"):
        assert_fast_scan_is_astropys(tmp_path / name, monkeypatch)
    (amp,) = layout.scan_file(tmp_path / "plain.fits").amps
    assert (amp.bscale, amp.bzero) == (0.5, -7.0)


@pytest.mark.parametrize(("cards", "taken"), [
    (("HIERARCH LONG KEYWORD = 5",), True),
    (("LONGSTR = 'a long string &'", "CONTINUE  'continued'"), True),
    (("HIERARCH LONG KEYWORD = (1, 2)",), False),
    (("LONGSTR = 'it''s long &'", "CONTINUE  'continued'"), False),
    (("COMMENT   continued", "CONTINUE  'comment'"), False),
    (("COMPLEX = (1, 2)",), False), (("RECORD  = 'AXIS.1: 2'",), False),
], ids=["hierarch", "continue", "hierarch-complex", "continue-quote", "continue-comment",
        "complex", "record-valued"])
def test_what_the_fast_path_does_not_read_astropy_does(tmp_path, monkeypatch, cards, taken):
    path = tmp_path / "Img_1.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((4, 6), np.int16))]).writeto(path)
    raw = bytearray(path.read_bytes())
    end = raw.find(b"END" + b" " * 77, 2880)  # cards more in the extension's header
    added = "".join(card.ljust(80) for card in (*cards, "END")).encode()
    raw[end:end + len(added)] = added
    path.write_bytes(raw)
    found = layout._images_without_astropy(str(path), len(raw), None)
    assert (found is not None) == taken
    assert_same(layout.scan_file(path).amps[0].header,
                astropy_scan(path, monkeypatch).amps[0].header)


def _outcome(scan):
    try:
        return scan()
    except Exception as error:  # noqa: BLE001 (astropy's own crash on such a header)
        return type(error), str(error)


@pytest.mark.parametrize(("keyword", "value"), [
    ("ZQUANTIZ", "'UNKNOWN_DITHER'"), ("ZNAME1", "5"), ("ZTILE1", "'640'"), ("ZVAL2", "1E400"),
    ("ZPCOUNT", "1E400"), ("BZERO", "1E400"),
], ids=["dither", "name", "tile", "infinite-setting", "infinite-moved", "infinite-bzero"])
def test_compression_keywords_astropy_refuses_are_left_to_it(tmp_path, monkeypatch, keyword,
                                                               value):
    data = RNG.integers(0, 200, (20, 30)).astype(np.int16)
    hdu = fits.CompImageHDU(data, compression_type="RICE_1")
    hdu.header["NDCMS"] = 1
    path = tmp_path / "image.fz"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    raw = bytearray(path.read_bytes())
    at = raw.find(keyword.ljust(8).encode() + b"= ", 2880)
    if at < 0:  # a card more, in place of the END card
        at = raw.find(b"END" + b" " * 77, 2880)
        raw[at + 80:at + 160] = b"END".ljust(80)
    raw[at:at + 80] = f"{keyword:8}= {value}".ljust(80).encode()
    path.write_bytes(raw)
    assert scanned(path) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = _outcome(lambda: astropy_scan(path, monkeypatch))
    assert _outcome(lambda: layout.scan_file(path)) == expected


def test_a_rice_file_is_scanned_and_read_without_astropy(tmp_path, monkeypatch):
    data = RNG.integers(-500, 500, (12, 40)).astype(np.int32)
    path = tmp_path / "rice.fz"
    fits.HDUList([fits.PrimaryHDU(), _compressed(data, compression_type="RICE_1")]).writeto(path)

    def refused(*args, **kwargs):
        raise AssertionError("astropy opened the file")

    monkeypatch.setattr(fits, "open", refused)
    (amp,) = layout.scan_file(path).amps
    np.testing.assert_array_equal(read_raw_rows(amp, 2, 9), data[2:9])


def test_the_layout_module_does_not_import_astropy():
    code = ("import sys, skipperdask.io.layout, skipperdask.io.rows, skipperdask.campaign.task; "
            "print(sorted(m for m in sys.modules if m.startswith('astropy')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=pathlib.Path(__file__).parents[2])
    assert run.stdout.strip() == "[]"


@pytest.mark.real_data
def test_scan_file_of_real_files(real_data, monkeypatch):
    for path in sorted(real_data.glob("*.f*")):
        assert_fast_scan_is_astropys(path, monkeypatch)


@pytest.mark.real_data
def test_the_real_damicm_file_is_scanned_and_read_without_astropy(real_data, monkeypatch):
    path = real_data / "damicm_avg_Image_5_Low_Temp_109_20250807_170213_15.fz"
    expected = [fits.getdata(path, ext=hdu) for hdu in range(1, 5)]

    def refused(*args, **kwargs):
        raise AssertionError("astropy opened the file")

    monkeypatch.setattr(fits, "open", refused)
    amps = layout.scan_file(path).amps
    assert [amp.name for amp in amps] == ["CCD_A", "CCD_B", "CCD_D", "CCD_C"]
    for amp, data in zip(amps, expected, strict=True):
        np.testing.assert_array_equal(read_raw_rows(amp, 0, amp.nrows), data)
