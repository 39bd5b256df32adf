"""The sufficient statistics of one amplifier image (or of a row chunk of it)."""

import dataclasses
from dataclasses import dataclass

import numpy as np

from .distributions import Histogram, ValueCounts
from .plan import StatisticsPlan


@dataclass
class ImageStatistics:
    """Sufficient statistics of rows ``row_start … row_stop - 1`` of one amplifier image.

    A whole image is the combination (:meth:`combine`) of its row chunks.

    Attributes
    ----------
    plan : StatisticsPlan
    row_start, row_stop : int
    average : ndarray (rows, ncols)
        Mean over samples: the cluster mask is found on it (1/nskips of the raw data).
    average_values : ValueCounts
        The distinct values of ``average`` and their counts: all that the fits need of it.
    partial_averages : ndarray (len(plan.levels), sampled rows, ncols)
        Mean over the first ``n`` samples, ``n`` in ``plan.levels``, of the rows whose
        index is a multiple of ``plan.partial_stride``.
    pixel_variance : ndarray of float32 (rows, ncols), or (rows, 0) when nskips < 4
        Variance (ddof=1) of each pixel's samples with index ≥ 2.
    histograms : list of Histogram
        1-ADU histograms of the single-sample images ``0 … plan.nhist - 1``.
    cluster_variance : ndarray of float32 (nclusters, nskips - 2)
        Variance (ddof=1) of each cluster in each single-sample image with index ≥ 2.
    integer_valued : bool
        Whether every histogrammed value is a whole number of ADU (digitised data):
        its 1-ADU bins are then centred on the integers.
    """

    plan: StatisticsPlan
    row_start: int
    row_stop: int
    average: np.ndarray
    average_values: ValueCounts
    partial_averages: np.ndarray
    pixel_variance: np.ndarray
    histograms: list
    cluster_variance: np.ndarray
    integer_valued: bool

    @classmethod
    def combine(cls, parts):
        """Statistics of contiguous row chunks combined into those of their union (one chunk
        is its own union: returned as it is, not copied)."""
        if len(parts) == 1:
            return parts[0]
        parts = sorted(parts, key=lambda part: part.row_start)
        for before, after in zip(parts, parts[1:], strict=False):
            if before.row_stop != after.row_start:
                raise ValueError(
                    f"row chunks are not contiguous: {before.row_stop} != {after.row_start}"
                )
        return cls(
            plan=parts[0].plan,
            row_start=parts[0].row_start,
            row_stop=parts[-1].row_stop,
            average=np.concatenate([p.average for p in parts]),
            average_values=ValueCounts.merge([p.average_values for p in parts]),
            partial_averages=np.concatenate([p.partial_averages for p in parts], axis=1),
            pixel_variance=np.concatenate([p.pixel_variance for p in parts]),
            histograms=[
                Histogram.merge(same_sample)
                for same_sample in zip(*(p.histograms for p in parts), strict=True)
            ],
            cluster_variance=np.concatenate([p.cluster_variance for p in parts]),
            integer_valued=all(p.integer_valued for p in parts),
        )

    def flipped(self):
        """The statistics of the same pixels in the frame of the other polarity.

        Values (average image, its distinct values, partial averages, histograms) are
        negated; variances do not change. The 1-ADU histograms follow exactly for whole
        numbers (digitised data) and for an averaged image (``nskips = 1``: its only
        histogram is rebuilt from its exact distinct values); for other fractional samples a
        value exactly on a bin edge moves one bin down (see :meth:`Histogram.negated`).
        A row-median baseline negates with the values (the median of the negated values is
        the negated median, and rounding is symmetric).
        """
        average_values = self.average_values.negated()
        if self.plan.nskips == 1 and not self.integer_valued:
            histograms = [Histogram.of_value_counts(average_values) for _ in self.histograms]
        else:
            histograms = [h.negated(integer_valued=self.integer_valued)
                          for h in self.histograms]
        return dataclasses.replace(
            self,
            plan=dataclasses.replace(self.plan, polarity=-self.plan.polarity),
            average=-self.average,
            average_values=average_values,
            partial_averages=-self.partial_averages,
            histograms=histograms,
        )
