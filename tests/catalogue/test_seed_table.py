"""The text table a physicist reads (issue 14): values to their error's precision, a units
line, the header's sample count for averaged files."""

import pytest

from skipperdask.campaign.task import file_task
from skipperdask.catalogue import Catalogue
from skipperdask.catalogue.tables import value_with_error
from skipperdask.config import Options

DAMICM = "damicm_avg_Image_5_Low_Temp_109_20250807_170213_15.fz"


@pytest.mark.parametrize(("value", "error", "cell"), [
    (1.354, 0.0005, "1.35400 +/- 0.00050"),  # %.2g made it 1.4 +/- 0.0005, as 1.402
    (1.402, 0.0005, "1.40200 +/- 0.00050"),
    (123.4, 45.6, "123 +/- 46"),
    (12345.0, 4567.0, "12300 +/- 4600"),
    (-0.00312, 0.00047, "-0.00312 +/- 0.00047"),
    (2.5, float("nan"), "2.5 +/- -1"),
    (float("nan"), 1.0, "-1 +/- -1"),
])
def test_value_with_error_to_the_errors_precision(value, error, cell):
    """Issue 14: the value to the error's precision (two significant digits of the error)."""
    assert value_with_error(value, error) == cell


def test_nskips_of_an_averaged_file_is_the_headers_sample_count(real_data, tmp_path):
    """The DAMIC-M averaged file says NDCM = 500: the original tool's column, not 1."""
    record = file_task(str(real_data / DAMICM), Options.from_config()).record
    assert record.ok
    catalogue = Catalogue(str(tmp_path / "catalogue.zarr"))
    catalogue.add([record], options={})
    lines = catalogue.format_seed_table().splitlines()
    header, units, rows = lines[0].split(), lines[1].split(), lines[3:]
    assert units[header.index("nskips")] == "[samples]"
    assert [row.split()[1] for row in rows] == ["500"] * 4  # four CCDs
    assert int(catalogue.to_dataset().nskips.max()) == 1  # the catalogue keeps what is stored
