"""The one pass over the pixels: small sufficient statistics of one amplifier image.

Every metric is computed from these statistics, never from the pixels again
("reduce first, fit second"). One row chunk of one amplifier goes through a fused,
compiled kernel (:mod:`~skipperdask.statistics.kernel`) that reads every sample once and
produces (:class:`~skipperdask.statistics.image.ImageStatistics`):

- the average image (mean over samples) and its partial averages over the first
  1, 2, 4, … samples (for the noise against the number of averaged samples);
- per pixel, the variance of its samples with index ≥ 2 (``pixVar``);
- exact 1-ADU histograms of the first single-sample images (entropy, ``imgNoise``);
- the variance of every compact cluster of ``nskips - 2`` adjacent pixels in every
  single-sample image with index ≥ 2 (``clustVar``).

All values are in the frame where charge raises the value (the polarity applied),
with the optional per-row baseline subtracted. Chunks along rows combine exactly:
images, variances and cluster variances concatenate, histograms add. Clusters are
tiles aligned to absolute rows, and row chunks start on a tile boundary, so the
numbers are the same for any chunking and any number of workers.

Modules: :mod:`~.distributions` (histograms, distinct values), :mod:`~.plan` (what to
compute), :mod:`~.image` (the statistics, combined and flipped), :mod:`~.kernel` (the
compiled pass), :mod:`~.chunk` (one row chunk, from memory or from its file).
"""

from .chunk import (
    RowChunk,
    chunk_statistics,
    file_row_chunks,
    read_chunk_statistics,
    row_chunks,
)
from .distributions import Histogram, ValueCounts, uniform_histogram
from .image import ImageStatistics
from .plan import (
    STATISTICS_BYTES_PER_PIXEL,
    StatisticsPlan,
    cluster_shape,
    plan_of,
    plan_statistics,
)

__all__ = [
    "STATISTICS_BYTES_PER_PIXEL", "Histogram", "ImageStatistics", "RowChunk", "StatisticsPlan",
    "ValueCounts", "chunk_statistics", "cluster_shape", "file_row_chunks", "plan_of",
    "plan_statistics", "read_chunk_statistics", "row_chunks", "uniform_histogram",
]
