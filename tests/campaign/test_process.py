"""Campaigns on a real local cluster (two worker processes on loopback): the catalogue's numbers
are those of :func:`skipperdask.image_metrics` on each file, reruns skip, bad files become
entries, a SIGKILL'ed run resumes, and input files are never written to."""

import csv
import hashlib
import io
import json
import math
import os
import re
import shutil

import dask
import numpy as np
import pytest
import xarray as xr
from distributed import get_task_stream
from distributed.utils import key_split

import skipperdask
from skipperdask.campaign import Progress, Summary, process
from skipperdask.catalogue import SEED_COLUMNS
from skipperdask.catalogue.tables import value_with_error
from skipperdask.config import Options
from skipperdask.simulate import Truth, read_truth, simulate_campaign, write_image
from tests.killed_run import kill_after_commits

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SMALL = {"nrows": 40, "ncols": 80, "nskips": 16}  # 200 kB of stored pixels per amplifier
CHUNK_BYTES = 400_000  # small files whole in one task; the large one in row chunks
LARGE = {"nrows": 400, "ncols": 100, "nskips": 16, "gain": 8.0}  # 2.5 MB: 7 chunks


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """Raw, averaged, two-amplifier, compressed and large (fanned-out) files."""
    directory = tmp_path_factory.mktemp("campaign")
    paths = simulate_campaign(directory, 3, n_averaged=1, **SMALL)  # Img_1, Img_2, Avg_Img_3
    paths.append(write_image(directory / "Img_4.fits", Truth(**SMALL, namps=2, seed=4)))
    paths.append(write_image(directory / "Img_5.fits.fz", Truth(**SMALL, compressed=True, seed=5)))
    paths.append(write_image(directory / "Img_6.fits", Truth(**LARGE, seed=6)))
    return [str(p) for p in paths]


def _snapshot(paths):
    """Every file's bytes (hashed) and modification time in ns."""
    result = {}
    for path in paths:
        with open(path, "rb") as f:
            result[path] = (hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mtime_ns)
    return result


@pytest.fixture(scope="module")
def processed(client, campaign, tmp_path_factory):
    """The campaign processed once: (catalogue path, returned dataset, task stream, inputs)."""
    out = tmp_path_factory.mktemp("out")
    before = _snapshot(campaign)
    store = str(out / "campaign.zarr")
    with get_task_stream(client) as stream:
        ds = process(campaign, store, client=client,
                     options=Options.from_config(chunk_bytes=CHUNK_BYTES),
                     seed_tables={str(out / "table.txt"): campaign}, progress=False)
    return store, ds, stream.data, before


def _expected(path, **options):
    # in this process, not on the cluster: an independent computation of the same file
    with dask.config.set(scheduler="sync"):
        return skipperdask.image_metrics(skipperdask.open_image(path), **options)


def _entry(ds, path):
    matches = np.flatnonzero(ds.path.values == path)
    assert len(matches) == 1, f"{path} is in the catalogue {len(matches)} times"
    return ds.isel(image=int(matches[0]))


def _assert_metrics_equal(ds, path, expected):
    """The catalogue's entry against an independent computation: the same statistics (bit
    for bit, whatever the chunking), then fits that converge to 1e-9 of σ on machines whose
    BLAS may order sums differently (a worker's runs on one thread): equal to 1e-7."""
    entry = _entry(ds, path).sel(amp=expected.amp.values, nsamp=expected.nsamp.values)
    for name, variable in expected.data_vars.items():
        message = f"{os.path.basename(path)} {name}"
        if variable.dtype.kind == "f":
            np.testing.assert_allclose(entry[name].values, variable.values, rtol=1e-7,
                                       atol=0, equal_nan=True, err_msg=message)
        else:
            np.testing.assert_array_equal(entry[name].values, variable.values, err_msg=message)


def _committed(ds):
    return dict(zip(ds.path.values, ds.committed.values, strict=True))


# ----------------------------------------------------------------------------------------------
# The numbers


def test_zarr_holds_image_metrics_of_every_file(processed, campaign):
    store, returned, _, _ = processed
    with xr.open_zarr(store) as stored:
        ds = stored.load()
    assert sorted(ds.path.values) == sorted(campaign)
    assert set(ds.status.values) == {"ok"} and set(ds.error.values) == {""}
    for path in campaign:
        _assert_metrics_equal(ds, path, _expected(path))
        entry = _entry(ds, path)
        assert int(entry["size"]) == os.stat(path).st_size
        assert float(entry.mtime) == os.stat(path).st_mtime
    # two amplifiers of Img_4 and the primary HDU of the others
    assert int(_entry(ds, campaign[3]).amp_present.sum()) == 2
    xr.testing.assert_identical(returned.drop_attrs(), ds.drop_attrs())


def test_gain_and_noise_against_truth(processed, campaign):
    ds = processed[1]
    fitted = 0
    for path in campaign:
        truth = read_truth(path)
        entry = _entry(ds, path)
        for amp in entry.amp.values[entry.amp_present.values]:
            gain = float(entry.aduConversion.sel(amp=amp))
            if math.isnan(gain):
                continue
            fitted += 1
            assert gain == pytest.approx(truth.gain, rel=0.05), path
            # the average of nskips samples (Avg files store it) has noise σ/√nskips
            noise = truth.read_noise / math.sqrt(truth.nskips)
            assert float(entry.skNoise.sel(amp=amp)) == pytest.approx(noise, rel=0.15), path
    assert fitted >= 5  # of 7 amplifiers: the fits work on most simulated images


def test_fanned_out_file_equals_single_task(processed, campaign, client, tmp_path):
    large = campaign[-1]
    ds = process([large], tmp_path / "whole.zarr", client=client, progress=False)
    whole = ds.isel(image=0)
    fanned = _entry(processed[1], large).sel(amp=whole.amp.values, nsamp=whole.nsamp.values)
    for name in _expected(large).data_vars:
        np.testing.assert_array_equal(fanned[name].values, whole[name].values, err_msg=name)


def test_tasks_named_by_stage_and_large_file_spread_over_workers(processed, campaign, client,
                                                                 tmp_path):
    tasks = processed[2]
    stages = {key_split(task["key"]) for task in tasks}
    assert stages == {"image", "statistics", "fit"}  # what the dashboard's panels group by
    # only Img_6 is larger than a chunk, and it is among the last files (as many as threads)
    assert sum(key_split(task["key"]) == "fit" for task in tasks) == 1
    with get_task_stream(client) as stream:
        process([campaign[-1]], tmp_path / "alone.zarr", client=client,
                options=Options.from_config(chunk_bytes=CHUNK_BYTES), progress=False)
    workers = {task["worker"] for task in stream.data if key_split(task["key"]) == "statistics"}
    assert workers == set(client.scheduler_info()["workers"])


def test_files_are_computed_whole_but_the_last_ones(campaign, client, tmp_path):
    """With one file per worker thread or more to come, a large file is one task on one
    worker (nothing to send between workers); the last ones are fanned out."""
    large = campaign[-1]
    with get_task_stream(client) as stream:
        ds = process([large, *campaign[:2]], tmp_path / "whole.zarr", client=client,
                     options=Options.from_config(chunk_bytes=CHUNK_BYTES), progress=False)
    assert set(ds.status.values) == {"ok"}
    assert not any(key_split(task["key"]) in ("statistics", "fit") for task in stream.data)
    # unless its statistics would take more memory than allowed
    with get_task_stream(client) as stream:
        process([large, *campaign[:2]], tmp_path / "bounded.zarr", client=client,
                options=Options.from_config(chunk_bytes=CHUNK_BYTES, whole_file_memory=100_000),
                progress=False)
    assert sum(key_split(task["key"]) == "fit" for task in stream.data) == 1


def test_files_too_large_for_one_worker_fan_out_in_turn(campaign, client, tmp_path):
    """A file whose statistics exceed whole-file-memory fans out at once, within the window
    of files in flight, not at the end with the last files."""
    large = campaign[-1]
    copies = []
    for name in ("L1.fits", "L2.fits"):
        copies.append(str(tmp_path / name))
        shutil.copy(large, copies[-1])
    with get_task_stream(client) as stream:
        ds = process([*copies, *campaign[:2]], tmp_path / "turns.zarr", client=client,
                     options=Options.from_config(chunk_bytes=CHUNK_BYTES,
                                                 whole_file_memory=100_000),
                     window=1, progress=False)
    assert set(ds.status.values) == {"ok"} and ds.sizes["image"] == 4
    starts = {stage: sorted(s["start"] for task in stream.data
                            if key_split(task["key"]) == stage
                            for s in task["startstops"] if s["action"] == "compute")
              for stage in ("image", "fit")}
    # one file in flight: L1's fit comes before L2's image task, the last image task
    assert starts["fit"][0] < starts["image"][-1]


def test_csv_one_row_per_image_and_amplifier(processed):
    store, ds, _, _ = processed
    with open(os.path.splitext(store)[0] + ".csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == int(ds.amp_present.sum())
    for row in rows:
        entry = _entry(ds, row["path"]).sel(amp=row["amp"])
        assert bool(entry.amp_present)
        for name in ("aveImgS", "skNoise", "skNoise_err", "aduConversion", "aduConversion_err",
                     "darkCurrent", "dSdskip", "VDD", "EXPOSURE"):
            value = float(entry[name])
            assert row[name] == ("" if math.isnan(value) else repr(value)), name
        assert row["status"] == "ok"


def _seed_rows(text):
    lines = text.splitlines()
    header = lines[0].split()
    assert set(lines[2].replace(" ", "")) == {"-"}  # below the units line
    return header, [re.split(r"\s{2,}", line.strip()) for line in lines[3:]]


def _fitted_cell(value, error):
    return value_with_error(value, error)


def test_seed_table_shape_and_values(processed, campaign):
    store, ds, _, _ = processed
    with open(os.path.join(os.path.dirname(store), "table.txt")) as f:
        header, rows = _seed_rows(f.read())
    assert header == [*SEED_COLUMNS, "amp"]  # Img_4 has two amplifiers
    assert len(rows) == 7
    averaged = [row for row in rows if row[0] == campaign[2]]
    assert averaged[0][SEED_COLUMNS.index("dSdskip")] == "-1 +/- -1"  # nskips = 1
    for row in rows:
        cells = dict(zip(header, row, strict=False))
        entry = _entry(ds, cells["filename"]).sel(amp=cells.get("amp") or "0")
        assert int(cells["nskips"]) == int(entry.nskips)
        for name in ("aveImgS", "imgNoise", "tailRatio"):
            value = float(entry[name])
            assert cells[name] == ("-1" if math.isnan(value) else f"{value:.4g}"), name
        for name in ("dSdskip", "skNoise", "darkCurrent", "aduConversion"):
            expected = _fitted_cell(float(entry[name]), float(entry[f"{name}_err"]))
            assert cells[name] == expected, name


def test_provenance_in_attributes(processed):
    with xr.open_zarr(processed[0]) as ds:
        assert ds.attrs["skipperdask_version"] == skipperdask.__version__
        assert json.loads(ds.attrs["options"])["chunk_bytes"] == CHUNK_BYTES


def test_inputs_unchanged(processed, campaign, client):
    store, _, _, before = processed
    process(campaign, store, client=client, reprocess=True, progress=False)
    assert _snapshot(campaign) == before


# ----------------------------------------------------------------------------------------------
# Reruns


def test_rerun_skips_all_reprocess_redoes_changed_file_redone(client, tmp_path):
    paths = [str(p) for p in simulate_campaign(tmp_path, 3, **SMALL)]
    store = tmp_path / "cat.zarr"
    seen = []
    first = _committed(process(paths, store, client=client, progress=False,
                               on_record=lambda record: seen.append(record.path)))
    assert sorted(seen) == sorted(paths)  # each finished image, once

    rerun = process(paths, store, client=client, progress=False)
    assert _committed(rerun) == first
    assert rerun.attrs["summary"].startswith("0 images ok, 0 failed, 3 skipped")

    again = _committed(process(paths, store, client=client, reprocess=True, progress=False))
    assert sorted(again) == sorted(paths)
    assert all(again[p] > first[p] for p in paths)

    # other content under the same name, and a file only touched
    write_image(paths[1], Truth(**SMALL, gain=7.0, seed=99), overwrite=True)
    stat = os.stat(paths[2])
    os.utime(paths[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    ds = process(paths, store, client=client, progress=False)
    now = _committed(ds)
    assert sorted(now) == sorted(paths)  # nowhere a duplicate
    assert now[paths[0]] == again[paths[0]]
    assert now[paths[1]] > again[paths[1]] and now[paths[2]] > again[paths[2]]
    _assert_metrics_equal(ds, paths[1], _expected(paths[1]))
    assert float(_entry(ds, paths[2]).mtime) == os.stat(paths[2]).st_mtime
    with open(tmp_path / "cat.csv") as f:
        assert sum(1 for _ in f) == 1 + 3


# ----------------------------------------------------------------------------------------------
# Bad files


def test_corrupt_and_truncated_files_become_entries(client, tmp_path):
    good = [str(p) for p in simulate_campaign(tmp_path, 3, **SMALL)]
    corrupt = tmp_path / "Img_8.fits"
    corrupt.write_bytes(np.random.default_rng(1).bytes(20_000))
    truncated = tmp_path / "Img_9.fits"
    with open(good[0], "rb") as f:
        truncated.write_bytes(f.read()[: os.path.getsize(good[0]) // 2])
    paths = [*good, str(corrupt), str(truncated)]
    before = _snapshot(paths)
    table = str(tmp_path / "table.txt")

    ds = process(paths, tmp_path / "cat.zarr", client=client, seed_tables={table: paths},
                 progress=False)
    assert ds.attrs["summary"].startswith("3 images ok, 2 failed")
    for path in good:
        _assert_metrics_equal(ds, path, _expected(path))
        assert str(_entry(ds, path).status.values) == "ok"
    for path in (str(corrupt), str(truncated)):
        entry = _entry(ds, path)
        error = str(entry.error.values)
        assert entry.status == "failed" and path in error, error
        assert len(error) > len(path) + 5  # and says what is wrong
        assert np.isnan(entry.aveImgS.values).all()
    with open(table) as f:
        _, rows = _seed_rows(f.read())
    failed_rows = [row for row in rows if row[0] in (str(corrupt), str(truncated))]
    assert len(failed_rows) == 2
    assert all(set(row[1:]) <= {"-1", "-1 +/- -1"} for row in failed_rows)
    assert _snapshot(paths) == before


# ----------------------------------------------------------------------------------------------
# Killed midway


def test_sigkill_midway_then_rerun_has_every_image_once(client, tmp_path):
    n = 20
    paths = [str(p) for p in simulate_campaign(tmp_path, n, nrows=20, ncols=40, nskips=8)]
    before = _snapshot(paths)
    store = str(tmp_path / "cat.zarr")
    csv_path = str(tmp_path / "cat.csv")
    def committed():
        if not os.path.exists(csv_path):  # written atomically after each commit
            return 0
        with open(csv_path) as f:
            return sum(1 for _ in f) - 1

    kill_after_commits(client.scheduler.address, store, paths, committed)

    with xr.open_zarr(store) as stored:
        killed = stored.load()
    assert 3 <= killed.sizes["image"] < n
    assert len(set(killed.path.values)) == killed.sizes["image"]
    assert set(killed.status.values) == {"ok"}
    assert not np.isnan(killed.aveImgS.values).any()
    for path in killed.path.values:
        assert path in paths

    ds = process(paths, store, client=client, progress=False)
    assert sorted(ds.path.values) == sorted(paths)
    assert ds.attrs["summary"].startswith(
        f"{n - killed.sizes['image']} images ok, 0 failed, {killed.sizes['image']} skipped")
    with xr.open_zarr(store) as stored:
        assert sorted(stored.path.values) == sorted(paths)
    assert _snapshot(paths) == before


# ----------------------------------------------------------------------------------------------
# While it runs


def test_progress_bar_counts_images():
    stream = io.StringIO()
    bar = Progress(3, enabled=True, stream=stream)
    bar.update(Summary(ok=1, failed=1, bytes=10**6, seconds=1.0), force=True)
    bar.close(Summary(ok=2, failed=1, bytes=10**6, seconds=1.0))
    text = stream.getvalue()
    assert "2/3 images" in text and "1 failed" in text and "3/3 images" in text
    assert text.endswith("\n")
    silent = io.StringIO()
    quiet = Progress(3, enabled=False, stream=silent)
    quiet.update(Summary(ok=1), force=True)
    quiet.close(Summary(ok=3))
    assert silent.getvalue() == ""


def test_process_shows_progress_on_standard_error(client, tmp_path, capsys):
    paths = [str(p) for p in simulate_campaign(tmp_path, 2, **SMALL)]
    process(paths, tmp_path / "cat.zarr", client=client, progress=True)
    assert "2/2 images" in capsys.readouterr().err


def _break_peaks_fit():
    """On a worker: the average-image fit raises, as a LinAlgError deep in scipy would."""
    from skipperdask import fitting

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("Eigenvalues did not converge")

    fitting._working_fit_gauss_poisson = fitting.fit_gauss_poisson
    fitting.fit_gauss_poisson = broken


def _repair_peaks_fit():
    from skipperdask import fitting

    fitting.fit_gauss_poisson = fitting._working_fit_gauss_poisson


def test_internal_error_leaves_the_file_ok(campaign, client, tmp_path):
    client.run(_break_peaks_fit)
    try:
        ds = process(campaign[:1], str(tmp_path / "c.zarr"), client=client, progress=False)
    finally:
        client.run(_repair_peaks_fit)
    entry = _entry(ds, campaign[0])
    assert str(entry.status.values) == "ok"
    assert np.isnan(entry.skNoise.values).all()
    assert str(entry.skNoise_reason.values[0]).startswith("internal error: LinAlgError")
    assert np.isfinite(entry.pixVar.values).all() and np.isfinite(entry.aveImgS.values).all()
    assert str(entry.polarity_source.values[0]) == "data"
