"""A campaign read from a bucket into a catalogue on the bucket, on a real local cluster and a
real S3 server (moto's, on loopback): the seed's file rules on a prefix, the numbers of the
local files, a rerun that skips, the README's follow-up on the bucket's catalogue, a SIGKILL'ed
run resumed with each image once, and the command line."""

import json
import os

import numpy as np
import pytest
import s3fs
import xarray as xr

from skipperdask.campaign import process
from skipperdask.campaign.files import find_files
from skipperdask.catalogue import Catalogue
from skipperdask.cli import main
from skipperdask.config import Options
from skipperdask.simulate import Truth, simulate_campaign, write_image
from tests.killed_run import kill_after_commits

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SMALL = {"nrows": 20, "ncols": 40, "nskips": 8}


def _upload(s3, paths, prefix):
    fs = s3.filesystem()
    for path in paths:
        fs.put_file(str(path), f"{prefix}/{os.path.basename(path)}")
    return [f"s3://{prefix}/{os.path.basename(path)}" for path in paths]


@pytest.fixture(scope="module")
def campaign(s3, tmp_path_factory):
    """Four raw images, one compressed, and a large one split over the workers, on disk and
    under ``s3://<bucket>/campaign``."""
    directory = tmp_path_factory.mktemp("campaign")
    paths = simulate_campaign(directory, 4, **SMALL)
    paths.append(write_image(directory / "Img_5.fits.fz", Truth(**SMALL, compressed=True, seed=5)))
    large = Truth(nrows=200, ncols=50, nskips=8, seed=6)
    paths.append(write_image(directory / "Img_6.fits", large))
    bucket = s3.new_bucket()
    return bucket, [str(p) for p in paths], _upload(s3, paths, f"{bucket}/campaign")


def _options(s3):
    # a small chunk: Img_6 (160 kB) is split in row chunks, each read by range on its worker
    return Options.from_config(chunk_bytes=40_000).updated(storage_options=s3.storage_options)


def test_the_seed_rules_select_the_same_files_on_a_bucket(s3, campaign):
    bucket, _, urls = campaign
    fs = s3.filesystem()
    fs.pipe_file(f"{bucket}/campaign/notes.txt", b"x")
    fs.pipe_file(f"{bucket}/campaign/run2/Img_7.fits", b"x")
    selection = find_files(None, f"s3://{bucket}/campaign/", storage_options=s3.storage_options)
    # as on disk: re.match also takes Img_5.fits.fz; notes.txt and run2/ are not selected
    assert selection.paths == urls
    assert selection.rejected == []
    recursive = find_files(["Img_[0-9]+.fits"], f"s3://{bucket}/campaign", True,
                           s3.storage_options).paths
    assert recursive == urls + [f"s3://{bucket}/campaign/run2/Img_7.fits"]
    named = find_files(["Img_2.fits", "Img_9.fits"], f"s3://{bucket}/campaign",
                       storage_options=s3.storage_options)
    assert named.paths == [urls[1]]
    assert [str(r) for r in named.rejected] == [
        f"s3://{bucket}/campaign/Img_9.fits: no such file"]


def test_the_environment_reaches_the_bucket(s3, campaign, monkeypatch):
    """No storage options: s3fs (botocore) reads the usual AWS_* variables."""
    bucket, _, urls = campaign
    for name, value in s3.environment.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    assert find_files("Img_1.fits", f"s3://{bucket}/campaign").paths == [urls[0]]


def test_a_campaign_from_a_bucket_into_a_bucket(s3, campaign, client):
    """The numbers of the local files, each file's bytes fetched once, a rerun that skips,
    and the README's follow-up on the bucket's catalogue."""
    bucket, paths, urls = campaign
    store = f"s3://{bucket}/catalogue.zarr"
    missing = urls[0].replace("Img_1", "Img_404")
    served = {u: s3.served[u.removeprefix("s3://")] for u in urls}
    ds = process(urls + [missing], store, client=client, options=_options(s3), progress=False)
    assert ds.attrs["summary"].startswith("6 images ok, 1 failed, 0 skipped")
    # the files were read by range: their data once, and a few header blocks
    for url, size in zip(urls, map(os.path.getsize, paths), strict=True):
        fetched = s3.served[url.removeprefix("s3://")] - served[url]
        assert size * 0.5 < fetched < size + 4 * 2**16, url
    local = process(paths, os.path.join(os.path.dirname(paths[0]), "local.zarr"), client=client,
                    options=_options(s3), progress=False)
    assert sorted(ds.path.values) == sorted(urls + [missing])  # in the order of their commits
    remote = ds.isel(image=[list(ds.path.values).index(u) for u in urls])
    local = local.isel(image=[list(local.path.values).index(p) for p in paths])
    for name in ("aduConversion", "skNoise", "darkCurrent", "aveImgS"):
        np.testing.assert_allclose(remote[name].values, local[name].values, rtol=1e-12,
                                   equal_nan=True)
    assert "testing" not in json.dumps(dict(ds.attrs), default=str)  # no credentials stored
    fs = s3.filesystem()
    rows = fs.cat_file(f"{bucket}/catalogue.csv").decode().splitlines()
    assert len(rows) == 1 + 7  # one amplifier each, one row for the missing file
    assert not fs.exists(f"{bucket}/catalogue.zarr.lock")

    # the README's follow-up
    cat = xr.open_zarr(store, storage_options=s3.storage_options)
    assert list(cat.path.values) == list(ds.path.values)
    assert list(cat.amp.values) == ["0", "AMP1"]  # HDU 0, and the .fz file's EXTNAME
    good = cat.where(cat.status == "ok")
    assert int(good["size"].notnull().sum()) == 6
    counts = {status: images.sizes["image"] for status, images in cat.load().groupby("status")}
    assert counts == {"ok": 6, "failed": 1}
    frame = cat.to_dataframe()
    assert len(frame) == 7 * cat.sizes["amp"] * cat.sizes["nsamp"]
    assert set(frame.status) == {"ok", "failed"} and frame.path.str.startswith("s3://").all()

    again = process(urls, store, client=client, options=_options(s3), progress=False)
    assert again.attrs["summary"].startswith("0 images ok, 0 failed, 6 skipped")


def _committed(fs, store):
    """The images the store's committed root says it holds (0 before the first commit)."""
    try:
        root = json.loads(fs.cat_file(f"{store.removeprefix('s3://')}/zarr.json"))
    except FileNotFoundError:
        return 0
    return root["consolidated_metadata"]["metadata"]["path"]["shape"][0]


def test_sigkill_midway_then_rerun_on_a_bucket_has_every_image_once(s3, client, tmp_path):
    """The storage options reach the run (and its workers) through the setting, in the
    environment; the rerun breaks the lock the killed run may have held."""
    n = 10
    bucket = s3.new_bucket()
    urls = _upload(s3, simulate_campaign(tmp_path, n, **SMALL), f"{bucket}/campaign")
    store = f"s3://{bucket}/cat.zarr"
    fs = s3.filesystem()
    setting = json.dumps(s3.storage_options)
    kill_after_commits(client.scheduler.address, store, urls, lambda: _committed(fs, store),
                       env={"DASK_SKIPPERDASK__STORAGE_OPTIONS": setting})

    with xr.open_zarr(store, storage_options=s3.storage_options) as stored:
        killed = stored.load()
    assert 3 <= killed.sizes["image"] < n
    assert len(set(killed.path.values)) == killed.sizes["image"]
    assert set(killed.status.values) == {"ok"}

    ds = process(urls, store, client=client, options=_options(s3), progress=False)
    assert ds.attrs["summary"].startswith(
        f"{n - killed.sizes['image']} images ok, 0 failed, {killed.sizes['image']} skipped")
    with xr.open_zarr(store, storage_options=s3.storage_options) as stored:
        assert sorted(stored.path.values) == sorted(urls)
    assert sorted(Catalogue(store, storage_options=s3.storage_options).processed()) == \
        sorted(urls)


def test_the_command_line_runs_a_bucket_campaign(s3, campaign, address, capsys, monkeypatch):
    bucket, _, urls = campaign
    monkeypatch.setenv("DASK_SKIPPERDASK__STORAGE_OPTIONS", json.dumps(s3.storage_options))
    import dask.config

    dask.config.refresh()
    try:
        status = main(["run", "-d", f"s3://{bucket}/campaign", "-f", "Img_[12].fits",
                       "--catalogue", f"s3://{bucket}/cli.zarr", "--address", address,
                       "--no-progress"])
    finally:
        monkeypatch.undo()
        dask.config.refresh()
    out = capsys.readouterr().out
    assert status == 0, out
    assert f"2 files, catalogue s3://{bucket}/cli.zarr" in out
    fs = s3.filesystem()
    table = fs.cat_file(f"{bucket}/campaign/img_preproc_out.txt").decode()
    assert "Img_1.fits" in table and "Img_2.fits" in table
    assert fs.exists(f"{bucket}/cli.csv")
