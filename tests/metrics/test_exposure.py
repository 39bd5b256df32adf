"""darkCurrentRate (issue 14): e-/pixel/day from the header's exposure and readout times,
with the keywords configurable."""

import numpy as np
import pytest

import skipperdask
from skipperdask.config import Options
from skipperdask.metrics.exposure import SECONDS_PER_DAY, collection_seconds
from skipperdask.simulate import Truth, write_image

KEYWORDS = (("EXPOSURE", "EXPTIME"), ("DATEINI", "DATEEND"))


def test_collection_time_is_the_exposure_plus_half_the_readout():
    header = {"EXPOSURE": 600.0, "DATEINI": "2025-01-01T00:00:00",
              "DATEEND": "2025-01-01T01:10:00"}  # 600 s exposure, 3600 s readout
    seconds, how = collection_seconds(header, *KEYWORDS)
    assert seconds == 600 + 3600 / 2
    assert how == "EXPOSURE + half of DATEINI/DATEEND"
    assert collection_seconds({"EXPTIME": "30"}, *KEYWORDS) == (
        30.0, "EXPTIME; no readout time (DATEINI/DATEEND)")
    seconds, reason = collection_seconds({"DATEINI": "2025-01-01T00:00:00"}, *KEYWORDS)
    assert seconds is None and reason == "no exposure time in the header (EXPOSURE, EXPTIME)"


def test_dark_current_rate_per_day_and_its_keywords_from_the_options(tmp_path):
    path = write_image(tmp_path / "Img_1.fits", Truth(nrows=60, ncols=120, nskips=20,
                                                      dark_current=0.2, seed=1),
                       header={"EXPOSURE": 600.0, "DATEINI": "2025-01-01T00:00:00",
                               "DATEEND": "2025-01-01T00:20:00"})
    metrics = skipperdask.image_metrics(skipperdask.open_image(path)).compute()
    expected = metrics.darkCurrent.values * SECONDS_PER_DAY / (600 + 600 / 2)
    np.testing.assert_allclose(metrics.darkCurrentRate.values, expected)
    assert metrics.darkCurrentRate.attrs["units"] == "e-/pixel/day"
    assert metrics.darkCurrentRate_err.values[0] > 0
    # another experiment's keyword: none in this header, so missing with the reason
    options = Options.from_config().updated(exposure_keywords=("EXPTIME",))
    other = skipperdask.image_metrics(skipperdask.open_image(path), options=options).compute()
    assert np.isnan(other.darkCurrentRate.values[0])
    assert other.darkCurrentRate_reason.values[0] == "no exposure time in the header (EXPTIME)"


def test_acquisition_keywords_must_be_two():
    with pytest.raises(skipperdask.BadOptionError, match="two header keywords"):
        Options.from_config(acquisition_keywords=["DATEINI"])
