"""The radix sort's distinct values and counts are np.unique's, exactly, on every kind of float."""

import numpy as np
import pytest

from skipperdask.statistics.sorting import distinct_counts

RNG = np.random.default_rng(1)


@pytest.mark.parametrize("values", [
    RNG.normal(size=50_000) * 100,  # all distinct, both signs
    np.round(RNG.normal(size=50_000) * 3) / 7,  # few distinct values, many repeats
    RNG.normal(size=(40, 30)).astype(np.float32),  # float32, 2-D
    np.array([0.0, -0.0, 1, -1, np.nan, np.inf, -np.inf, 3, 3, -2.5, 1e-300, -1e-300,
              5e-324, -5e-324, np.finfo(float).max, -np.finfo(float).max]),
    np.array([-0.0, -0.0]),
    np.array([np.nan, np.inf]),
    np.empty(0),
], ids=["distinct", "repeated", "float32", "special", "negative-zero", "no-finite", "empty"])
def test_distinct_counts_equal_numpy_unique(values):
    flat = np.asarray(values, dtype=np.float64).ravel()
    expected = np.unique(flat[np.isfinite(flat)], return_counts=True)
    distinct, counts = distinct_counts(values)
    np.testing.assert_array_equal(distinct, expected[0])
    np.testing.assert_array_equal(counts, expected[1])
    assert distinct.dtype == np.float64 and counts.dtype == np.int64
