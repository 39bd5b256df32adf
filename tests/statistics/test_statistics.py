"""The one-pass statistics against a plain numpy computation of the same quantities."""

import numpy as np
import pytest

from skipperdask.statistics import (
    Histogram,
    ImageStatistics,
    ValueCounts,
    chunk_statistics,
    cluster_shape,
    plan_statistics,
    uniform_histogram,
)


def reference_statistics(values, plan):
    """The statistics of a whole image computed the obvious way, with numpy."""
    v = plan.polarity * values.astype(np.float64)
    if plan.baseline == "row-median":
        v = v - np.round(np.median(v.mean(axis=2), axis=1))[:, None, None]
    average = v.mean(axis=2)
    sampled = np.arange(plan.nrows) % plan.partial_stride == 0
    partial = np.stack([v[sampled, :, :n].mean(axis=2) for n in plan.levels])
    pixel_variance = np.empty((plan.nrows, 0))
    if plan.nskips >= 4:
        pixel_variance = v[:, :, 2:].var(axis=2, ddof=1)
    histograms = [Histogram.of_values(v[:, :, s]) for s in range(plan.nhist)]
    rows, cols = plan.cluster_shape
    variances = []
    if rows:
        for top in range(0, plan.nrows // rows * rows, rows):
            for left in range(0, plan.ncols // cols * cols, cols):
                tile = v[top : top + rows, left : left + cols, 2:].reshape(rows * cols, -1)
                variances.append(tile[: plan.cluster_pixels].var(axis=0, ddof=1))
    cluster_variance = np.array(variances).reshape(len(variances), max(plan.nskips - 2, 0))
    return average, partial, pixel_variance, histograms, cluster_variance


def make_image(rng, nrows=24, ncols=40, nskips=12, dtype=np.int32, tracks=True):
    charge = rng.poisson(0.3, (nrows, ncols)) * 10
    if tracks:
        charge[3, 5:9] += 40000  # far outside the dense histogram window
    values = 5000 - charge[:, :, None] + rng.normal(0, 3, (nrows, ncols, nskips))
    if np.issubdtype(dtype, np.integer):
        values = np.round(values)
    return values.astype(dtype)


@pytest.mark.parametrize("nskips", [1, 2, 3, 5, 12])
@pytest.mark.parametrize("baseline", ["none", "row-median"])
def test_one_chunk_equals_numpy(nskips, baseline):
    rng = np.random.default_rng(nskips)
    values = make_image(rng, nskips=nskips)
    plan = plan_statistics(*values.shape, polarity=-1, baseline=baseline)
    stats = chunk_statistics(values, plan, 0)
    reference = reference_statistics(values, plan)
    average, partial, pixel_variance, histograms, cluster_variance = reference
    np.testing.assert_allclose(stats.average, average, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(stats.partial_averages, partial, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(stats.pixel_variance, pixel_variance, rtol=1e-6)  # float32
    for got, expected in zip(stats.histograms, histograms, strict=True):
        np.testing.assert_array_equal(got.values, expected.values)
        np.testing.assert_array_equal(got.counts, expected.counts)
    np.testing.assert_allclose(stats.cluster_variance, cluster_variance, rtol=1e-6)  # float32
    assert stats.integer_valued


@pytest.mark.parametrize("partial_pixels", [250_000, 100])
def test_chunks_combine_to_the_whole(monkeypatch, partial_pixels):
    # with few partial-average pixels, only every k-th row keeps them: chunks must agree
    monkeypatch.setattr("skipperdask.statistics.plan.PARTIAL_AVERAGE_PIXELS", partial_pixels)
    rng = np.random.default_rng(7)
    values = make_image(rng, nrows=50, nskips=20)
    plan = plan_statistics(*values.shape, polarity=-1, baseline="row-median")
    assert (plan.partial_stride > 1) == (partial_pixels == 100)
    whole = chunk_statistics(values, plan, 0)
    # deliberately unequal chunks, each starting on a cluster-tile boundary
    parts = [chunk_statistics(values[a:b], plan, a) for a, b in plan.row_chunks(plan.row_multiple)]
    assert len(parts) > 3
    combined = ImageStatistics.combine(parts[::-1])
    np.testing.assert_array_equal(combined.average, whole.average)
    np.testing.assert_array_equal(combined.partial_averages, whole.partial_averages)
    average, partial, *_ = reference_statistics(values, plan)
    np.testing.assert_allclose(combined.partial_averages, partial, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(combined.pixel_variance, whole.pixel_variance)
    np.testing.assert_array_equal(combined.cluster_variance, whole.cluster_variance)
    for got, expected in zip(combined.histograms, whole.histograms, strict=True):
        np.testing.assert_array_equal(got.counts, expected.counts)
    # the distinct values of the average image, with the image or without it
    exact = ValueCounts.of_values(whole.average)
    for distribution in (whole.average_values, combined.average_values):
        np.testing.assert_array_equal(distribution.values, exact.values)
        np.testing.assert_array_equal(distribution.counts, exact.counts)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.int16])
def test_unsigned_and_short_integers(dtype):
    # differences of unsigned samples must not wrap around
    rng = np.random.default_rng(2)
    values = make_image(rng, nskips=12, tracks=False).astype(dtype)
    plan = plan_statistics(*values.shape, polarity=-1)
    stats = chunk_statistics(values, plan, 0)
    average, partial, pixel_variance, _, cluster_variance = reference_statistics(values, plan)
    np.testing.assert_allclose(stats.pixel_variance, pixel_variance, rtol=1e-6)
    np.testing.assert_allclose(stats.cluster_variance, cluster_variance, rtol=1e-6)  # float32
    np.testing.assert_allclose(stats.average, average, rtol=1e-12)


def test_float_data_are_not_integer_valued():
    rng = np.random.default_rng(1)
    values = make_image(rng, dtype=np.float32)
    plan = plan_statistics(*values.shape, polarity=1)
    stats = chunk_statistics(values, plan, 0)
    assert not stats.integer_valued
    np.testing.assert_allclose(stats.average, values.astype(np.float64).mean(axis=2), rtol=1e-12)


def test_wide_image_histograms_are_exact():
    # a bright frame: values spread far wider than the dense histogram and its overflow
    rng = np.random.default_rng(3)
    values = rng.integers(0, 10**7, (300, 300, 1)).astype(np.int32)
    plan = plan_statistics(*values.shape, polarity=1)
    stats = chunk_statistics(values, plan, 0)
    expected = Histogram.of_values(values[:, :, 0])
    np.testing.assert_array_equal(stats.histograms[0].counts, expected.counts)


def test_scale_and_zero_applied():
    values = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    plan = plan_statistics(2, 3, 4, polarity=1)
    stats = chunk_statistics(values, plan, 0, scale=2.0, zero=32768.0)
    np.testing.assert_allclose(stats.average, values.mean(axis=2) * 2 + 32768)


def test_cluster_shape_is_as_square_as_possible():
    assert cluster_shape(100, 100, 98) == (10, 10)
    assert cluster_shape(20, 600, 3998) == (20, 200)
    assert cluster_shape(5, 10, 98) == (0, 0)  # does not fit
    assert cluster_shape(100, 100, 1) == (0, 0)


def test_histogram_entropy_and_quantile():
    h = Histogram(np.array([0, 1, 2, 3]), np.array([1, 1, 1, 1]))
    assert h.entropy() == pytest.approx(np.log(4))
    assert h.quantile(0.5) == pytest.approx(1.5)
    merged = Histogram.merge([h, Histogram(np.array([3, 10]), np.array([2, 5]))])
    np.testing.assert_array_equal(merged.values, [0, 1, 2, 3, 10])
    np.testing.assert_array_equal(merged.counts, [1, 1, 1, 3, 5])


def test_fast_path_keeps_the_fractions_of_a_large_offset(tmp_path):
    # uint32 stored as int32 with BZERO = 2**31: the average's fractions (k/nskips) must
    # survive the offset, or quantised bins get a comb of misplaced values
    from skipperdask.io import open_image, scan_file
    from skipperdask.simulate import Truth, write_image
    from skipperdask.statistics import read_chunk_statistics

    path = write_image(tmp_path / "Img_1.fits", Truth(nrows=30, ncols=40, nskips=25, seed=4))
    layout = scan_file(path)
    amp = layout.amps[0]
    assert amp.bzero == 2**31
    plan = plan_statistics(amp.nrows, amp.ncols, amp.nskips, layout.polarity)
    fast = read_chunk_statistics(amp, 0, amp.nrows, plan)
    values = open_image(path).isel(amp=0).values.astype(np.float64)
    exact = -values.mean(axis=2)
    np.testing.assert_allclose(fast.average, exact, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast.average * 25, np.round(fast.average * 25), rtol=0, atol=1e-8)


@pytest.mark.parametrize("baseline", ["none", "row-median"])
def test_reading_a_chunk_block_by_block_changes_nothing(tmp_path, monkeypatch, baseline):
    # blocks of 7 rows: cluster tiles (5 rows here) and sampled rows straddle the blocks
    from skipperdask.io import open_image, scan_file
    from skipperdask.simulate import Truth, write_image
    from skipperdask.statistics import read_chunk_statistics

    monkeypatch.setattr("skipperdask.statistics.plan.PARTIAL_AVERAGE_PIXELS", 200)
    path = write_image(tmp_path / "Img_1.fits",
                       Truth(nrows=60, ncols=40, nskips=27, tracks=3, seed=5, drift=0.5))
    layout = scan_file(path)
    amp = layout.amps[0]
    plan = plan_statistics(amp.nrows, amp.ncols, amp.nskips, layout.polarity, baseline=baseline)
    assert plan.partial_stride > 1 and plan.cluster_shape == (5, 5)
    whole = read_chunk_statistics(amp, 0, amp.nrows, plan)
    monkeypatch.setattr("skipperdask.io.rows.READ_BLOCK_BYTES", 7 * amp.row_bytes)
    blocked = read_chunk_statistics(amp, 0, amp.nrows, plan)
    values = open_image(path).isel(amp=0).values
    reference = chunk_statistics(np.ascontiguousarray(values), plan, 0)
    for got in (whole, blocked):
        np.testing.assert_allclose(got.average, reference.average, rtol=0, atol=1e-9)
        np.testing.assert_allclose(got.partial_averages, reference.partial_averages, atol=1e-9)
        np.testing.assert_allclose(got.pixel_variance, reference.pixel_variance, rtol=1e-6)
        np.testing.assert_allclose(got.cluster_variance, reference.cluster_variance, rtol=1e-6)
        for mine, theirs in zip(got.histograms, reference.histograms, strict=True):
            np.testing.assert_array_equal(mine.values, theirs.values)
            np.testing.assert_array_equal(mine.counts, theirs.counts)


def test_wide_histograms_from_a_file_read_again(tmp_path, monkeypatch):
    from astropy.io import fits as astropy_fits

    from skipperdask.io import scan_file
    from skipperdask.statistics import read_chunk_statistics

    rng = np.random.default_rng(6)
    data = rng.integers(0, 10**7, (60, 40 * 3)).astype(np.int32)
    path = tmp_path / "Img_1.fits"
    header = astropy_fits.Header({"NDCMS": 3})
    astropy_fits.PrimaryHDU(data, header=header).writeto(path)
    monkeypatch.setattr("skipperdask.statistics.chunk.OVERFLOW_CAPACITY", 100)
    monkeypatch.setattr("skipperdask.io.rows.READ_BLOCK_BYTES", 9 * 40 * 3 * 4)
    layout = scan_file(path)
    amp = layout.amps[0]
    plan = plan_statistics(amp.nrows, amp.ncols, amp.nskips, layout.polarity)
    stats = read_chunk_statistics(amp, 0, amp.nrows, plan)
    for s in range(3):
        expected = Histogram.of_values(-data.reshape(60, 40, 3)[:, :, s])
        np.testing.assert_array_equal(stats.histograms[s].values, expected.values)
        np.testing.assert_array_equal(stats.histograms[s].counts, expected.counts)


def _value_samples(n):
    """Continuous values, quantised values (many on bin edges) and a track tail."""
    rng = np.random.default_rng(n)
    return (rng.normal(0, 1, n), np.rint(rng.normal(0, 3, n)) / 4,
            np.r_[10 * rng.poisson(0.5, n) + rng.normal(0, 1, n), rng.uniform(1e3, 1e5, 9)])


@pytest.mark.parametrize("n", [100, 1000, 600_000])
def test_value_counts_equal_numpy(n):
    """Histograms, quantiles and counts of the distinct values equal numpy's on the pixels."""
    for values in _value_samples(n):
        distribution = ValueCounts.of_values(np.r_[values, np.nan, np.inf])
        assert distribution.size == values.size
        assert (distribution.min, distribution.max) == (values.min(), values.max())
        quantiles = [0.001, 0.004, 0.25, 0.5, 1.0]
        assert distribution.quantile(quantiles) == pytest.approx(
            np.quantile(values, quantiles), rel=1e-14, abs=1e-12)
        # edges on multiples of 1/4 fall on the quantised values: the same side as numpy
        for bins, low, high in ((40, -5.0, 5.0), (7, -0.75, 1.0), (1, 0.25, 0.25 + 1e-9)):
            counts, edges = distribution.histogram(bins, (low, high))
            expected, expected_edges = np.histogram(values, bins, (low, high))
            np.testing.assert_array_equal(counts, expected)
            np.testing.assert_array_equal(edges, expected_edges)
        for x in (-1.0, 0.25, 3.0, 500.0):
            assert distribution.count_above(x) == np.count_nonzero(values > x)
            above = distribution.above(x)
            assert above.size == np.count_nonzero(values > x)
            if above.size:
                assert above.quantile(0.25) == pytest.approx(np.quantile(values[values > x], 0.25))


@pytest.mark.parametrize("n", [100, 1000, 600_000])
def test_uniform_histogram_equals_numpy(n):
    """The compiled histogram counts as np.histogram does: values on edges, the closed last
    bin, values outside the range and NaN."""
    rng = np.random.default_rng(n)
    for values in _value_samples(n):
        values = np.r_[values, np.nan, -np.inf, np.inf, rng.choice(values, 5) * (1 + 1e-16)]
        for bins, low, high in ((40, -5.0, 5.0), (7, -0.75, 1.0), (1, 0.25, 0.25 + 1e-9),
                                (333, -3.1, 2.9), (64, 0.1, 0.1 + 64 / 3)):
            counts, edges = uniform_histogram(values, bins, (low, high))
            expected, expected_edges = np.histogram(values[np.isfinite(values)], bins,
                                                    (low, high))
            np.testing.assert_array_equal(counts, expected)
            np.testing.assert_array_equal(edges, expected_edges)


@pytest.mark.parametrize("dtype", [">i2", ">u2", ">i4", ">u4", ">f4", ">i8", ">f8"])
def test_byteswap_inplace_gives_native_values(dtype):
    from skipperdask.io.rows import _byteswap_inplace

    stored = np.random.default_rng(3).normal(0, 1e4, (4, 5, 6)).astype(dtype)
    native = _byteswap_inplace(stored.copy())
    assert native.dtype.isnative
    np.testing.assert_array_equal(native, stored.astype(stored.dtype.newbyteorder("=")))


def test_value_counts_counted_on_a_grid_equal_a_sort():
    """Large images are counted on a grid (float32's, or 1/nskips) instead of sorted: the
    same distinct values and counts, and a sort where a grid step would hold two values."""
    rng = np.random.default_rng(3)
    float32_image = (1e4 + rng.normal(0, 0.3, 300_000) + 1.35 * rng.poisson(1, 300_000)
                     ).astype(np.float32).astype(float)
    float32_image[::997] = np.nan
    raw_averages = np.rint(rng.normal(-1e6, 30, 300_000) * 8) / 8
    continuous = rng.normal(0, 1, 300_000)  # every value a distinct float64: sorted
    for values, spacing in ((float32_image, None), (-float32_image, None),
                            (raw_averages, 1 / 8), (raw_averages, None), (continuous, None),
                            (np.r_[raw_averages, 0.3], 1 / 8)):
        distribution = ValueCounts.of_values(values, spacing=spacing)
        unique, counts = np.unique(values[np.isfinite(values)], return_counts=True)
        np.testing.assert_array_equal(distribution.values, unique)
        np.testing.assert_array_equal(distribution.counts, counts)
