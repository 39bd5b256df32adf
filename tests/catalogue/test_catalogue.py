"""The catalogue: Zarr, CSV and seed-table round trips of hand-made metrics, and its safety."""

import csv
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import xarray as xr

from skipperdask.catalogue import Catalogue, ImageRecord, format_seed_table
from skipperdask.catalogue.tables import value_with_error
from tests.seed_table import read_processed_from_seed_table

WORKTREE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VALUES = [
    "aveImgS",
    "dSdskip",
    "dSdskip_err",
    "imgNoise",
    "skNoise",
    "skNoise_err",
    "darkCurrent",
    "darkCurrent_err",
    "aduConversion",
    "aduConversion_err",
    "pedestal",
    "pedestal_err",
    "resolution",
    "resolution_err",
    "fitChi2",
    "pixVar",
    "clustVar",
    "tailRatio",
]
REASONS = [
    "aveImgS",
    "dSdskip",
    "imgNoise",
    "skNoise",
    "darkCurrent",
    "aduConversion",
    "resolution",
    "pixVar",
    "clustVar",
    "tailRatio",
]


def fake_metrics(amps, nskips, seed):
    """What metrics.image_metrics returns, by hand: values drawn from `seed`; with one sample
    only, the metrics that need several are NaN with a reason, as the metrics module does."""
    rng = np.random.default_rng(seed)
    nsamp = [1]  # 1, 2, 4, ... and nskips itself
    while nsamp[-1] < nskips:
        nsamp.append(min(2 * nsamp[-1], nskips))
    variables = {name: ("amp", rng.uniform(0.5, 50, len(amps))) for name in VALUES}
    variables["nskips"] = ("amp", np.full(len(amps), nskips, dtype=np.int64))
    variables["noise_vs_n"] = (("amp", "nsamp"), rng.uniform(0.1, 5, (len(amps), len(nsamp))))
    for name in REASONS:
        variables[f"{name}_reason"] = ("amp", np.array([""] * len(amps), dtype=object))
    if nskips == 1:
        for name in ("dSdskip", "pixVar", "clustVar"):
            variables[name][1][:] = np.nan
            variables[f"{name}_reason"][1][:] = "nskips = 1: no single samples"
        variables["dSdskip_err"][1][:] = np.nan
    return xr.Dataset(
        variables,
        coords={"amp": amps, "nsamp": nsamp},
        attrs={"path": "ignored", "polarity": -1, "max_entropy_samples": 30},
    )


def record(path, amps=("CCD_A", "CCD_B"), nskips=16, seed=0, **kwargs):
    kwargs.setdefault("header", {"EXPOSURE": 500.0, "DATE-OBS": "2025-08-07T17:02:13"})
    return ImageRecord(
        path=path,
        size=1000 + seed,
        mtime=1.7e9 + seed + 0.25,
        metrics=fake_metrics(list(amps), nskips, seed),
        elapsed=1.5,
        **kwargs,
    )


def failed(path, error="truncated file: 2880 of 5760 bytes"):
    return ImageRecord(path=path, size=2880, mtime=1.6e9, error=error, header={"EXPOSURE": 1.0})


def image(ds, path):
    """The catalogue entry of one file."""
    (index,) = np.flatnonzero(ds.path.values == path)
    return ds.isel(image=index)


@pytest.fixture
def store(tmp_path):
    return str(tmp_path / "catalogue.zarr")


def test_empty_catalogue(store):
    catalogue = Catalogue(store)
    assert catalogue.processed() == {}
    assert len(catalogue.to_dataset().data_vars) == 0
    table = catalogue.format_seed_table().splitlines()
    assert len(table) == 3 and table[0].split() == ["filename", *table[0].split()[1:]]


def test_zarr_round_trip_has_every_value(store, tmp_path):
    records = [record(str(tmp_path / f"Img_{i}.fits"), seed=i) for i in (1, 2, 10)]
    Catalogue(store).add(records, options={"polarity": None, "chunk-bytes": "64MiB"})

    ds = xr.open_zarr(store).load()  # warnings are errors here: none is emitted
    assert ds.sizes["image"] == 3 and list(ds.amp.values) == ["CCD_A", "CCD_B"]
    assert list(ds.path.values) == [r.path for r in records]  # natural order: 2 before 10
    for r in records:
        entry = image(ds, r.path)
        for name in [*VALUES, "nskips"]:
            np.testing.assert_array_equal(entry[name].values, r.metrics[name].values, name)
        for name in REASONS:
            assert list(entry[f"{name}_reason"].values) == ["", ""]
        np.testing.assert_array_equal(entry.noise_vs_n.values, r.metrics.noise_vs_n.values)
        assert int(entry["size"]) == r.size and float(entry.mtime) == r.mtime
        assert str(entry.status.values) == "ok" and str(entry.error.values) == ""
        assert entry.time.values == np.datetime64("2025-08-07T17:02:13")
        assert str(entry.time_source.values) == "DATE-OBS"
        assert int(entry.polarity) == -1 and float(entry.elapsed) == 1.5
        assert float(entry.EXPOSURE) == 500.0
    assert ds.attrs["options"] == '{"polarity": null, "chunk-bytes": "64MiB"}'
    assert ds.attrs["skipperdask_version"] and ds.attrs["created"] <= ds.attrs["updated"]
    assert "path" in ds.coords and "time" in ds.coords  # ds.skNoise.plot(x="time")


def test_store_reads_back_whole_with_python_strings(store):
    """``xr.open_zarr`` gives back the Dataset the catalogue built (failed files, differing
    amplifiers, header keywords, times), its strings as Python strings (dtype object, not
    numpy's StringDType): ``where``, ``groupby`` and ``to_dataframe`` work on all of it."""
    records = [record("/d/a.fits", seed=1), record("/d/b.fits", amps=("0",), nskips=1, seed=2,
                                                  header={"EXPOSURE": 2.0, "TEMP": "140.5"}),
               failed("/d/c.fits"), record("/d/d.fits", amps=("CCD_C",), header={})]
    Catalogue(store).add(records, options={"polarity": -1})
    mine = xr.open_zarr(store, chunks=None).load()
    assert mine.time.dtype == np.dtype("datetime64[ns]") and mine.amp_present.dtype == bool
    assert mine.status.dtype == object and mine.skNoise_reason.dtype == object
    assert mine.nskips.dtype == np.int64 and mine.skNoise.dtype == np.float64
    assert list(mine.status.values) == ["ok", "ok", "failed", "ok"]
    lazy = xr.open_zarr(store)
    ok = lazy.where(lazy.status == "ok")
    assert int(ok.skNoise.count()) == int(mine.amp_present.sum())
    groups = {status: group.sizes["image"] for status, group in mine.groupby("status")}
    assert groups == {"failed": 1, "ok": 3}
    frame = lazy.to_dataframe()
    assert len(frame) == 4 * mine.sizes["amp"] * mine.sizes["nsamp"]
    assert set(frame.status) == {"ok", "failed"}


def test_time_falls_back_to_mtime_and_reads_other_keywords(store):
    records = [
        record("/d/a.fits", seed=1, header={}),
        record("/d/b.fits", seed=2, header={"DATEINI": "2025-08-07T17:02:13.5"}),
        record("/d/c.fits", seed=3, header={"DATESTART": "2023-03-31T10:00:00+02:00"}),
        record("/d/d.fits", seed=4, header={"DATE-OBS": "31/03/23", "DATE": "2023-04-01"}),
    ]
    Catalogue(store).add(records)
    ds = Catalogue(store).to_dataset()
    assert list(ds.time_source.values) == ["mtime", "DATEINI", "DATESTART", "DATE"]
    assert list(ds.time.values) == [
        np.datetime64("2023-11-14T22:13:21.250", "ns"),  # mtime 1.7e9 + 1.25 s
        np.datetime64("2025-08-07T17:02:13.5", "ns"),
        np.datetime64("2023-03-31T08:00:00", "ns"),  # UTC
        np.datetime64("2023-04-01T00:00:00", "ns"),
    ]


def test_a_replaced_path_gives_no_duplicate(store):
    catalogue = Catalogue(store)
    catalogue.add([record("/d/Img_1.fits", seed=1), record("/d/Img_2.fits", seed=2)])
    catalogue.add([record("/d/Img_1.fits", seed=5), record("/d/Img_1.fits", seed=6)])
    ds = xr.open_zarr(store).load()
    assert list(ds.path.values) == ["/d/Img_1.fits", "/d/Img_2.fits"]
    expected = fake_metrics(["CCD_A", "CCD_B"], 16, 6)  # the last record of a batch wins
    np.testing.assert_array_equal(image(ds, "/d/Img_1.fits").skNoise.values, expected.skNoise)
    assert Catalogue(store).processed()["/d/Img_1.fits"] == (1006, 1.7e9 + 6.25, True)


def test_failed_entries_carry_their_error(store):
    catalogue = Catalogue(store)
    catalogue.add([failed("/d/Img_3.fits")])  # a first batch of failures only
    catalogue.add([record("/d/Img_1.fits", seed=1), failed("/d/Img_2.fits", "not a FITS file")])
    ds = xr.open_zarr(store).load()
    bad = image(ds, "/d/Img_2.fits")
    assert str(bad.status.values) == "failed" and str(bad.error.values) == "not a FITS file"
    assert np.isnan(bad.skNoise.values).all() and (bad.nskips.values == -1).all()
    assert not bad.amp_present.values.any() and float(bad.EXPOSURE) == 1.0
    assert str(image(ds, "/d/Img_3.fits").error.values).startswith("truncated file")
    assert Catalogue(store).processed() == {
        "/d/Img_1.fits": (1001, 1.7e9 + 1.25, True),
        "/d/Img_2.fits": (2880, 1.6e9, False),
        "/d/Img_3.fits": (2880, 1.6e9, False),
    }


def test_differing_amplifiers_and_sample_counts_are_padded(store):
    catalogue = Catalogue(store)
    catalogue.add([record("/d/a.fits", amps=("CCD_A", "CCD_B"), nskips=16, seed=1)])
    catalogue.add([record("/d/b.fits", amps=("0",), nskips=1, seed=2)])
    catalogue.add([record("/d/c.fits", amps=("CCD_C", "CCD_A", "CCD_D", "CCD_B"), nskips=5)])
    ds = xr.open_zarr(store).load()
    assert list(ds.amp.values) == ["0", "CCD_A", "CCD_B", "CCD_C", "CCD_D"]
    assert list(ds.nsamp.values) == [1, 2, 4, 5, 8, 16]
    np.testing.assert_array_equal(
        ds.amp_present.values,
        [
            [False, True, True, False, False],
            [True, False, False, False, False],
            [False] + [True] * 4,
        ],
    )
    a, b, c = (image(ds, p) for p in ("/d/a.fits", "/d/b.fits", "/d/c.fits"))
    np.testing.assert_array_equal(b.nskips.values, [1, -1, -1, -1, -1])
    assert np.isnan(b.dSdskip.values[0]) and np.isfinite(b.aveImgS.values[0])
    assert str(b.dSdskip_reason.values[0]) == "nskips = 1: no single samples"
    assert list(b.aveImgS_reason.values) == [""] * 5
    assert np.isnan(a.skNoise.sel(amp="0")) and np.isnan(b.skNoise.sel(amp="CCD_A"))
    # c.fits lists its amplifiers out of order: each value stays with its amplifier
    expected = fake_metrics(["CCD_C", "CCD_A", "CCD_D", "CCD_B"], 5, 0)
    for amp in ("CCD_A", "CCD_B", "CCD_C", "CCD_D"):
        assert float(c.skNoise.sel(amp=amp)) == float(expected.skNoise.sel(amp=amp))
    np.testing.assert_array_equal(
        c.noise_vs_n.sel(amp="CCD_D", nsamp=[1, 2, 4, 5]).values,
        expected.noise_vs_n.sel(amp="CCD_D").values,
    )
    assert np.isnan(c.noise_vs_n.sel(amp="CCD_D", nsamp=[8, 16]).values).all()
    np.testing.assert_array_equal(b.noise_vs_n.sel(amp="0").values[1:], [np.nan] * 5)
    # a.fits lacks nsamp = 5 between its values: reindexed on both amp and nsamp
    expected = fake_metrics(["CCD_A", "CCD_B"], 16, 1).noise_vs_n
    np.testing.assert_array_equal(
        a.noise_vs_n.sel(amp=["CCD_A", "CCD_B"], nsamp=[1, 2, 4, 8, 16]), expected
    )
    assert np.isnan(a.noise_vs_n.sel(nsamp=5)).all()


def test_numeric_header_keywords_are_variables(store):
    header = {
        "EXPOSURE": "500.0",  # the LTA writes numbers as strings
        "NDCM": 500,
        "VDD": -22.0,
        "DATEINI": "2025-08-07T17:02:13",
        "BINNAME": "Image_5_Low_Temp",
        "EXTEND": True,
        "size": 7,  # clashes with the catalogue's own variable
        "COMMENT": "1",
        "NAXIS": 0,
    }
    amp_headers = {
        "CCD_A": {"NAXIS": 2, "NAXIS1": 640, "OGH": 1.5, "EXTNAME": "CCD_A"},
        "CCD_B": {"NAXIS": 2, "NAXIS1": "641"},
    }
    Catalogue(store).add(
        [
            record("/d/a.fits", seed=1, header=header, amp_headers=amp_headers),
            record("/d/b.fits", seed=2, header={"NAXIS": 0, "NDCM": 4}),
        ]
    )
    added = Catalogue(store).to_dataset()
    reopened = xr.open_zarr(store).load()
    for ds in (added, reopened):
        a, b = image(ds, "/d/a.fits"), image(ds, "/d/b.fits")
        assert float(a.EXPOSURE) == 500.0 and float(a.NDCM) == 500 and float(a.VDD) == -22.0
        assert float(a.header_size) == 7 and int(a["size"]) == 1001
        for name in ("BINNAME", "EXTEND", "COMMENT", "EXTNAME", "DATEINI"):
            assert name not in ds
        assert ds.NAXIS.dims == ("image", "amp") and ds.EXPOSURE.dims == ("image",)
        np.testing.assert_array_equal(a.NAXIS1.values, [640, 641])
        np.testing.assert_array_equal(a.OGH.values, [1.5, np.nan])
        np.testing.assert_array_equal(a.NAXIS.values, [2, 2])
        # b.fits has NAXIS in its primary header only: it applies to all its amplifiers
        np.testing.assert_array_equal(b.NAXIS.values, [0, 0])
        assert np.isnan(float(b.EXPOSURE)) and float(b.NDCM) == 4
        assert ds.NAXIS1.attrs["header_keyword"] == "NAXIS1"
        assert ds.header_size.attrs["header_keyword"] == "size"


def test_primary_keyword_applies_to_the_images_own_amplifiers(tmp_path):
    """A keyword in a primary header only, that other images have per amplifier, fills the
    image's own amplifiers, whether the images are committed together or one by one."""
    per_amp = record("/d/a.fits", amps=("CCD_A", "CCD_B"), header={},
                     amp_headers={"CCD_A": {"OGH": 1.5}, "CCD_B": {"OGH": 2.5}})
    primary = record("/d/b.fits", amps=("0",), seed=2, header={"OGH": 7.0})
    together = Catalogue(str(tmp_path / "together.zarr"))
    together.add([per_amp, primary])
    together = together.to_dataset()
    apart = Catalogue(str(tmp_path / "apart.zarr"))
    apart.add([primary])
    apart.add([per_amp])
    apart = apart.to_dataset()
    for ds in (together, apart):
        assert ds.OGH.dims == ("image", "amp") and list(ds.amp.values) == ["0", "CCD_A", "CCD_B"]
        np.testing.assert_array_equal(image(ds, "/d/b.fits").OGH.values, [7.0, np.nan, np.nan])
        np.testing.assert_array_equal(image(ds, "/d/a.fits").OGH.values, [np.nan, 1.5, 2.5])


def parse_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_one_row_per_image_and_amplifier(store, tmp_path):
    catalogue = Catalogue(store)
    good = record("/d/Img_1.fits", seed=1, amp_headers={"CCD_A": {"OGH": 1.5}})
    one = record("/d/Img_2.fits", amps=("0",), nskips=1, seed=2)
    catalogue.add([good, one, failed("/d/Img_3.fits")])
    catalogue.write_csv(tmp_path / "catalogue.csv")
    rows = parse_csv(tmp_path / "catalogue.csv")
    assert [(r["path"], r["amp"]) for r in rows] == [
        ("/d/Img_1.fits", "CCD_A"),
        ("/d/Img_1.fits", "CCD_B"),
        ("/d/Img_2.fits", "0"),
        ("/d/Img_3.fits", ""),
    ]
    columns = list(rows[0])
    assert columns.index("skNoise_err") == columns.index("skNoise") + 1
    for k, amp in enumerate(("CCD_A", "CCD_B")):
        for name in [*VALUES, "nskips"]:
            assert float(rows[k][name]) == float(good.metrics[name].sel(amp=amp)), name
        assert float(rows[k]["noise_vs_n_16"]) == float(good.metrics.noise_vs_n[k, 4])
    assert rows[0]["OGH"] == "1.5" and rows[1]["OGH"] == "" and rows[1]["EXPOSURE"] == "500.0"
    assert rows[0]["time"] == "2025-08-07T17:02:13" and rows[0]["status"] == "ok"
    assert float(rows[0]["mtime"]) == good.mtime and rows[0]["size"] == "1001"
    assert rows[2]["dSdskip"] == "" and rows[2]["dSdskip_reason"].startswith("nskips = 1")
    assert rows[2]["noise_vs_n_2"] == ""
    assert rows[3]["status"] == "failed" and rows[3]["error"].startswith("truncated")
    assert rows[3]["skNoise"] == "" and rows[3]["EXPOSURE"] == "1.0"
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


SEED_HEADER = [
    "filename",
    "nskips",
    "aveImgS",
    "dSdskip",
    "imgNoise",
    "skNoise",
    "tailRatio",
    "darkCurrent",
    "aduConversion",
]


def parse_seed_table(text):
    lines = text.splitlines()
    header, units, dashes, *body = lines
    assert units.split()[:3] == ["-", "[samples]", "[nats]"]  # the units line
    assert set(dashes.replace(" ", "")) == {"-"}
    # two or more spaces separate the columns; no cell holds two spaces in a row
    columns = [len(d) for d in dashes.split("  ")]
    assert [len(c) for c in re.split(r"(?<=-)  (?=-)", dashes)] == columns
    return header.split(), [re.split(r"\s{2,}", line.strip()) for line in body]


def test_seed_table_has_the_seeds_shape(store, tmp_path):
    catalogue = Catalogue(store)
    one = record("/d/Img_2.fits", amps=("0",), nskips=1, seed=2)
    catalogue.add([record("/d/Img_10.fits", amps=("0",), seed=10), one, failed("/d/Img_3.fits")])
    out = tmp_path / "img_preproc_out.txt"
    catalogue.write_seed_table(out)
    header, rows = parse_seed_table(out.read_text())
    assert header == SEED_HEADER  # single-amplifier files: exactly the seed's columns
    assert [r[0] for r in rows] == ["/d/Img_2.fits", "/d/Img_3.fits", "/d/Img_10.fits"]
    m = one.metrics.isel(amp=0)
    assert rows[0][1:] == [
        "1",
        f"{float(m.aveImgS):.4g}",
        "-1 +/- -1",  # nskips = 1
        f"{float(m.imgNoise):.4g}",
        value_with_error(float(m.skNoise), float(m.skNoise_err)),
        f"{float(m.tailRatio):.4g}",
        value_with_error(float(m.darkCurrent), float(m.darkCurrent_err)),
        value_with_error(float(m.aduConversion), float(m.aduConversion_err)),
    ]
    assert rows[1][1:] == ["-1", "-1", "-1 +/- -1", "-1", "-1 +/- -1", "-1", "-1 +/- -1"] + [
        "-1 +/- -1"
    ]
    assert read_processed_from_seed_table(out) == {
        "/d/Img_2.fits",
        "/d/Img_3.fits",
        "/d/Img_10.fits",
    }
    assert catalogue.format_seed_table() == out.read_text()


def test_seed_table_lists_files_in_natural_order_whatever_the_commits(store, tmp_path):
    catalogue = Catalogue(store)
    for name in ("Img_10", "Img_2", "Img_1"):  # three commits, in this order
        catalogue.add([record(f"/d/{name}.fits", amps=("0",), seed=len(name))])
    _, rows = parse_seed_table(catalogue.format_seed_table())
    assert [r[0] for r in rows] == ["/d/Img_1.fits", "/d/Img_2.fits", "/d/Img_10.fits"]


def test_seed_table_of_multi_amplifier_files_names_the_amplifier(store):
    catalogue = Catalogue(store)
    catalogue.add([record("/d/a/Img_1.fits", seed=1), failed("/d/b/Img_2.fits")])
    header, rows = parse_seed_table(catalogue.format_seed_table())
    assert header == [*SEED_HEADER, "amp"]
    assert [(r[0], r[-1]) for r in rows[:2]] == [
        ("/d/a/Img_1.fits", "CCD_A"),
        ("/d/a/Img_1.fits", "CCD_B"),
    ]
    assert rows[2][0] == "/d/b/Img_2.fits" and len(rows[2]) == len(SEED_HEADER)  # amp unknown
    # one table per directory: only the files asked for
    header, rows = parse_seed_table(format_seed_table(catalogue.to_dataset(), ["/d/b/Img_2.fits"]))
    assert header == SEED_HEADER and [r[0] for r in rows] == ["/d/b/Img_2.fits"]


def plain(store):
    """Whether the store is a plain directory of plain files: no link, nothing beside it."""
    links = [root for root, dirs, files in os.walk(store)
             for name in dirs + files if os.path.islink(os.path.join(root, name))]
    beside = sorted(n for n in os.listdir(os.path.dirname(store)) if n.startswith("catalogue"))
    return not os.path.islink(store) and not links and beside == [
        "catalogue.zarr", "catalogue.zarr.lock"]


def test_a_new_catalogue_object_sees_the_committed_images(store):
    Catalogue(store).add([record("/d/Img_1.fits", seed=1)])
    other = Catalogue(store)
    other.add([record("/d/Img_2.fits", seed=2)])
    first = Catalogue(store)
    assert sorted(first.processed()) == ["/d/Img_1.fits", "/d/Img_2.fits"]
    assert plain(store)


def test_an_append_writes_its_own_rows_only(store):
    """Rows are appended: the committed chunks of a full chunk's worth are not written again,
    the arrays' chunk size along image stays the same."""
    catalogue = Catalogue(store)
    catalogue.add([numbered(k) for k in range(3)])
    written = {}
    for root, _, files in os.walk(store):
        for name in files:
            path = os.path.join(root, name)
            written[path] = os.stat(path).st_mtime_ns, os.stat(path).st_ino
    time.sleep(0.01)
    catalogue.add([numbered(3)])
    changed = {p for p, stamp in written.items()
               if (os.stat(p).st_mtime_ns, os.stat(p).st_ino) != stamp}
    # the partial chunk of every image array and the metadata; not the labels' arrays
    assert os.path.join(store, "amp", "c.0") not in changed
    assert os.path.join(store, "skNoise", "c.0.0") in changed
    assert check_consistent(store) == list(range(4))
    assert xr.open_zarr(store).skNoise.encoding["chunks"][0] >= 1024


def test_recovers_from_leftovers_of_a_killed_append(store):
    catalogue = Catalogue(store)
    catalogue.add([numbered(0), numbered(1), numbered(2)])
    # what an append killed before its commit point leaves: its chunks written (rows 2, 3
    # beyond the committed shape), a new array never published, a partial object
    stale = Catalogue(str(store) + ".scratch")
    stale.add([numbered(k) for k in range(5)])
    for name in ("skNoise", "EXPOSURE"):
        shutil.copy(os.path.join(str(store) + ".scratch", name, "c.0.0" if name == "skNoise"
                                 else "c.0"), os.path.join(store, name))
    os.makedirs(os.path.join(store, "NEWKEY"))
    with open(os.path.join(store, "NEWKEY", "c.0"), "wb") as f:
        f.write(b"garbage")
    with open(os.path.join(store, "skNoise", "c.0.0.dead.partial"), "wb") as f:
        f.write(b"garbage")
    os.makedirs(store + ".rewrite-dead")  # a rewrite killed before it was complete
    shutil.rmtree(str(store) + ".scratch")
    os.remove(str(store) + ".scratch.lock")
    assert check_consistent(store) == [0, 1, 2]  # the committed state, unchanged
    Catalogue(store).add([numbered(3)])
    assert check_consistent(store) == [0, 1, 2, 3]
    assert not os.path.exists(store + ".rewrite-dead")


def test_copies_open_and_carry_on(store, tmp_path):
    """cp -r, rsync and tar copy a plain directory: the copy opens and takes commits."""
    Catalogue(store).add([numbered(0), numbered(1)])
    copy = str(tmp_path / "copy" / "catalogue.zarr")
    shutil.copytree(store, copy)
    archive = shutil.make_archive(str(tmp_path / "archive"), "tar", tmp_path, "catalogue.zarr")
    shutil.unpack_archive(archive, tmp_path / "untarred")
    untarred = str(tmp_path / "untarred" / "catalogue.zarr")
    for path in (copy, untarred):
        assert check_consistent(path) == [0, 1]
        Catalogue(path).add([numbered(2)])
        assert check_consistent(path) == [0, 1, 2]
    assert check_consistent(store) == [0, 1]


def test_a_kill_between_the_renames_of_a_rewrite_is_recovered(store):
    Catalogue(store).add([numbered(0)])
    # where renameat2 cannot exchange: the old store moved aside, the new one not yet in
    new = store + ".rewrite-123-abcd"
    shutil.copytree(store, new)
    os.rename(store, store + ".rewrite-old-123-abcd")
    catalogue = Catalogue(store)
    assert list(catalogue.processed()) == ["/campaign/Img_0.fits"]
    catalogue.add([numbered(1)])
    assert check_consistent(store) == [0, 1] and plain(store)


def test_a_catalogue_of_the_previous_version_is_converted_once(store):
    """A store written by the previous version (a link into <path>.versions, made by its code
    into tests/catalogue/data) is read, converted to a plain store once, and carries on."""
    shutil.copytree(os.path.join(os.path.dirname(__file__), "data"),
                    os.path.dirname(store), symlinks=True, dirs_exist_ok=True)
    for name in ("v1.zarr", "v1.zarr.versions"):
        os.rename(os.path.join(os.path.dirname(store), name),
                  os.path.join(os.path.dirname(store), name.replace("v1", "catalogue")))
    os.symlink("catalogue.zarr.versions/v000002", store + ".new")
    os.replace(store + ".new", store)
    before = xr.open_zarr(store).load()
    catalogue = Catalogue(store)
    assert sorted(catalogue.processed()) == ["/d/Img_1.fits", "/d/Img_2.fits", "/d/Img_3.fits"]
    assert plain(store)
    after = xr.open_zarr(store).load()
    assert after.status.dtype == object and list(after.path.values) == list(before.path.values)
    for name in ("skNoise", "noise_vs_n", "nskips", "amp_present", "VDD", "EXPOSURE", "time"):
        xr.testing.assert_equal(after[name], before[name])
    assert after.attrs["created"] == before.attrs["created"]
    catalogue.add([record("/d/Img_4.fits", seed=4)])
    assert list(xr.open_zarr(store).path.values) == [*before.path.values, "/d/Img_4.fits"]


def test_dates_of_any_year_are_stored(store):
    records = [record(f"/d/{i}.fits", seed=i, header={"DATE-OBS": date})
               for i, date in enumerate(["2300-01-02T03:04:05", "1600-06-07T00:00:00.5"])]
    Catalogue(store).add(records)
    coder = xr.coders.CFDatetimeCoder(time_unit="us")
    ds = xr.open_zarr(store, decode_times=coder)
    assert list(ds.time.values) == [np.datetime64("2300-01-02T03:04:05"),
                                    np.datetime64("1600-06-07T00:00:00.5")]
    assert list(Catalogue(store).to_dataset().time.values) == list(ds.time.values)


def test_header_keywords_beyond_the_limit_are_kept_as_json(store):
    header = {f"K{i}": float(i) for i in range(10)}
    amp_headers = {"CCD_A": {"GAIN": 1.5, "A1": 1.0}, "CCD_B": {"GAIN": 2.5}}
    catalogue = Catalogue(store, header_variables=5)
    catalogue.add([record("/d/a.fits", header=header, amp_headers=amp_headers)])
    catalogue.add([record("/d/b.fits", seed=2, header={"K0": 7.0, "K9": 9.5, "NEW": 1.0})])
    ds = xr.open_zarr(store).load()
    keywords = sorted(n for n in ds.variables if "header_keyword" in ds[n].attrs)
    assert len(keywords) == 5 and keywords == ["K0", "K1", "K2", "K3", "K4"]
    a, b = image(ds, "/d/a.fits"), image(ds, "/d/b.fits")
    rest = json.loads(str(a.header_json.values))
    assert rest["primary"] == {f"K{i}": float(i) for i in range(5, 10)}
    assert rest["amps"] == {"CCD_A": {"GAIN": 1.5, "A1": 1.0}, "CCD_B": {"GAIN": 2.5}}
    assert float(b.K0) == 7.0 and json.loads(str(b.header_json.values)) == {
        "primary": {"K9": 9.5, "NEW": 1.0}}


def read(path):
    with open(path) as f:
        return f.read()


def test_the_csv_is_appended_and_repaired_after_a_kill(store, tmp_path):
    table = str(tmp_path / "catalogue.csv")
    catalogue = Catalogue(store)
    catalogue.add([numbered(0), numbered(1), numbered(2)], csv=table)
    inode = os.stat(table).st_ino
    catalogue.add([numbered(3)], csv=table)
    assert os.stat(table).st_ino == inode  # appended, not replaced
    whole = read(table)
    reference = str(tmp_path / "reference.csv")
    Catalogue(store).write_csv(reference)
    assert whole == read(reference)
    # killed in the middle of the CSV's append of the last commit
    with open(table, "r+") as f:
        f.truncate(len(whole) - 7)
    Catalogue(store).add([numbered(4)], csv=table)
    Catalogue(store).write_csv(reference)
    assert read(table) == read(reference)
    # a new column (a new header keyword) rewrites it whole
    Catalogue(store).add([ImageRecord("/campaign/Img_9.fits", 9, 9.0, None,
                                      header={"NEWKEY": 1.0})], csv=table)
    Catalogue(store).write_csv(reference)
    assert read(table) == read(reference)
    assert "NEWKEY" in read(table).split(chr(10))[0]


def test_the_csv_written_from_memory_equals_the_stores_own(store, tmp_path):
    """A commit formats its CSV rows from the Dataset it wrote, not read back, and keeps a
    catalogue it wrote whole for to_dataset: the text and the Dataset are the store's own,
    through appends, failures, padding, keywords beyond the limit, a new amplifier and a
    rewrite."""
    table, reference = str(tmp_path / "catalogue.csv"), str(tmp_path / "reference.csv")
    header = {f"K{i}": float(i) for i in range(8)} | {"DATE-OBS": "2025-08-07T17:02:13",
                                                      "NAME": "run 7"}
    batches = [
        [record("/d/Img_2.fits", seed=1, header=header,
                amp_headers={"CCD_A": {"GAIN": 1.5}}), failed("/d/Img_1.fits")],
        [record("/d/Img_3.fits", seed=2), record("/d/Img_10.fits", seed=3, nskips=1)],
        [record("/d/Img_4.fits", amps=("CCD_C",), nskips=5, seed=4)],  # a new amplifier
        [record("/d/Img_1.fits", seed=5), failed("/d/Img_5.fits", "not a FITS file")],
        [record("/d/Img_6.fits", seed=6, header={"K0": 7.5, "NEW": 2})],
    ]
    catalogue = Catalogue(store, header_variables=5)
    for batch in batches:
        catalogue.add(batch, csv=table)
        Catalogue(store, header_variables=5).write_csv(reference)
        assert read(table) == read(reference)
        # a catalogue written whole is kept, not read back: the same Dataset
        xr.testing.assert_identical(catalogue.to_dataset(), Catalogue(store).to_dataset())


def numbered(k):
    """Image number k, whose values all derive from k: any mix of versions or half-written
    batch shows in check_consistent."""
    nsamp = [1, 2, 4][: 1 + k % 3]
    metrics = xr.Dataset(
        {
            "skNoise": ("amp", [k, 2.0 * k]),
            "nskips": ("amp", np.array([k, k], dtype=np.int64)),
            "noise_vs_n": (("amp", "nsamp"), np.full((2, len(nsamp)), float(k))),
        },
        coords={"amp": ["L", "U"], "nsamp": nsamp},
    )
    return ImageRecord(f"/campaign/Img_{k}.fits", k, float(k), metrics, header={"EXPOSURE": k})


# commits batches of three images, numbered on from what the catalogue holds, until killed
CHILD = textwrap.dedent(
    """
    import sys
    from skipperdask.catalogue import Catalogue
    from tests.catalogue.test_catalogue import numbered

    catalogue = Catalogue(sys.argv[1])
    k = len(catalogue.processed())
    print("ready", flush=True)
    while True:
        catalogue.add([numbered(k), numbered(k + 1), numbered(k + 2)])
        k += 3
        print("committed", flush=True)
    """
)


def check_consistent(store, storage_options=None):
    """The images in the store (a path, or a URL with its storage options), checked value by
    value; returns their numbers."""
    if storage_options is None and not os.path.lexists(store):  # killed before its first commit
        return []
    ds = xr.open_zarr(store, **({"storage_options": storage_options} if storage_options else
                                {})).load()
    assert len(set(ds.path.values)) == ds.sizes["image"]
    numbers = []
    for i, path in enumerate(ds.path.values):
        k = int(re.fullmatch(r"/campaign/Img_(\d+).fits", path)[1])
        entry = ds.isel(image=i)
        assert int(entry["size"]) == k and float(entry.mtime) == k and float(entry.EXPOSURE) == k
        np.testing.assert_array_equal(entry.skNoise.values, [k, 2.0 * k])
        np.testing.assert_array_equal(entry.nskips.values, [k, k])
        curve = entry.noise_vs_n.values
        assert (curve[:, : 1 + k % 3] == k).all() and np.isnan(curve[:, 1 + k % 3 :]).all()
        numbers.append(k)
    return numbers


@pytest.mark.slow
def test_sigkill_at_any_moment_leaves_a_valid_catalogue(store):
    rng = random.Random(5)
    env = {**os.environ, "PYTHONPATH": WORKTREE}
    before = 0
    for kill in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, store], stdout=subprocess.PIPE, env=env, text=True
        )
        assert child.stdout.readline() == "ready\n"
        # killed at a random moment after its first commit (however slow the machine)
        assert child.stdout.readline() == "committed\n"
        delay = rng.uniform(0.0, 0.6)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        numbers = check_consistent(store)
        # every image committed before survives, in whole batches, each once
        message = f"kill {kill} after {delay:.2f} s"
        assert numbers == list(range(len(numbers))), message
        assert len(numbers) >= before and (len(numbers) - before) % 3 == 0, message
        # a new writer carries on from the killed one's state
        Catalogue(store).add([numbered(len(numbers))])
        before = len(numbers) + 1
        assert check_consistent(store) == list(range(before))
    assert before > 3 + 3  # the children did commit


def test_files_are_readable_as_the_umask_allows(store, tmp_path):
    old = os.umask(0o022)
    try:
        catalogue = Catalogue(store)
        catalogue.add([record("/d/Img_1.fits", seed=1)])
        catalogue.add([record("/d/Img_2.fits", seed=1)])
        catalogue.write_seed_table(tmp_path / "table.txt")
    finally:
        os.umask(old)
    assert os.stat(store).st_mode & 0o777 == 0o755
    assert os.stat(os.path.join(store, "skNoise", "c.0.0")).st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "table.txt").st_mode & 0o777 == 0o644
