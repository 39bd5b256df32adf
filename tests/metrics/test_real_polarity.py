"""Real and realistic files from other acquisition systems go through without an exception:
the AstroSkipper/LTA averaged calibration frames (``shared/data/real``) and a CONNIE/LTA-like
single-sample file."""

import numpy as np
import pytest
from astropy.io import fits

from skipperdask import image_metrics, open_image
from skipperdask.campaign import process

ASTROSKIPPER = ("astroskipper_cal_1_6_ave.fits", "astroskipper_image_lta_2_ave.fits")


@pytest.fixture(scope="module")
def astroskipper(real_data):
    return [real_data / name for name in ASTROSKIPPER]


@pytest.mark.real_data
@pytest.mark.parametrize("name", ASTROSKIPPER)
def test_astroskipper_frames_polarity_from_the_data(real_data, name):
    """Neither the name (``_ave``, no ``Avg``) nor the header (no ``IMAGE``) decides: the
    data do, +1 on every amplifier. These illuminated frames sit at 4e4-1.3e5 ADU; about 2 %
    of their pixels (calibration columns, and the first pixels of the readout) sit far
    lower, at 1.5e4-2e4 ADU, a floor no value goes below: the zero-charge level. Tracks
    (runs of adjacent columns) reach 6e5-2e6 ADU, far above the bulk. Charge raises the
    value; the seed's default, -1, would fit the wrong side of the histogram.

    Flat fields have no single-electron peaks: gain and λ are missing with a reason, never
    a number."""
    ds = image_metrics(open_image(real_data / name))
    assert list(ds.polarity.values) == [1, 1, 1, 1]
    assert list(ds.polarity_source.values) == ["data"] * 4
    assert ds.attrs["polarity"] == 1
    assert np.isfinite(ds.aveImgS.values).all()
    for name in ("aduConversion", "darkCurrent"):
        assert np.isnan(ds[name].values).all(), name
        assert all(ds[f"{name}_reason"].values), name


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.cluster
def test_astroskipper_frames_in_a_campaign(astroskipper, tmp_path):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                     dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        ds = process([str(p) for p in astroskipper], str(tmp_path / "c.zarr"), client=client,
                     progress=False)
    assert list(ds.status.values) == ["ok", "ok"]
    assert (ds.polarity.values == 1).all()
    assert (ds.polarity_source.values == "data").all()


def write_connie_like(path):
    """Four single-sample amplifiers (``NSAMP = '1'``, a string, as the LTA writes it) with
    pedestals 136, 5000, 30000 and 69150 ADU, saturated tracks up to 8e6 and a few values
    below 0."""
    rng = np.random.default_rng(0)
    hdus = []
    for index, pedestal in enumerate((136, 5000, 30000, 69150)):
        image = pedestal + rng.normal(0, 30, (60, 200)) + 200 * rng.poisson(0.05, (60, 200))
        image[10 + index, 20:60] = 8e6  # a saturated track
        image[30, 5 + index] = -50.0  # below 0
        data = np.round(image).astype(np.int32)
        header = fits.Header({"NSAMP": "1", "NROW": "60", "NCOL": "200"})
        hdus.append(fits.PrimaryHDU(data, header) if index == 0 else fits.ImageHDU(data, header))
    fits.HDUList(hdus).writeto(path)
    return path


def test_connie_like_single_sample_file(tmp_path):
    ds = image_metrics(open_image(write_connie_like(tmp_path / "connie_runID_1.fits")))
    assert ds.sizes["amp"] == 4
    assert (ds.nskips.values == 1).all()
    assert (ds.polarity.values == 1).all() and (ds.polarity_source.values == "data").all()
    assert np.isfinite(ds.aveImgS.values).all()
