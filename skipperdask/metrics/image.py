"""The metrics of one image from its ``(amp, row, col, skip)`` DataArray: the statistics of
its row chunks (read from its file when :func:`skipperdask.open_image` made it), combined,
then analysed amplifier by amplifier."""

import dask

from ..blas import single_threaded_blas
from ..config import Options
from ..errors import BadOptionError
from ..io.layout import resolve_polarity
from ..statistics import ImageStatistics, plan_of, row_chunks
from .analysis import analyse, measure


def image_statistics(pixels, options, *, rows_per_chunk=None, scheduler=None):
    """The statistics of every amplifier of one image, and what decided their polarity.

    Each row chunk is one dask task (:func:`skipperdask.statistics.row_chunks`: an array of
    :func:`skipperdask.open_image` is read from its file as a campaign reads it), the chunks
    of an amplifier combined into its statistics (:func:`combined`).

    Parameters
    ----------
    pixels : xarray.DataArray
        Dims ``(amp, row, col, skip)``.
    options : skipperdask.config.Options
        Polarity (when ``pixels`` does not say it), baseline, samples used.
    rows_per_chunk : int, optional
        Rows of one task; default the array's own row chunks.
    scheduler : str, optional
        The dask scheduler (``"sync"`` inside a worker); default dask's.

    Returns
    -------
    statistics : list of skipperdask.statistics.ImageStatistics
        One per amplifier, in the order of ``pixels["amp"]``, with the provisional polarity.
    polarity_source : {"option", "header", "name", "default"}
    """
    if pixels.dims != ("amp", "row", "col", "skip"):
        raise BadOptionError(f"pixels must have dims (amp, row, col, skip), not {pixels.dims}")
    polarity, source = _polarity(pixels, options.polarity)
    plan = plan_of(pixels.shape[1:], polarity, options)
    return combined(row_chunks(pixels, plan, rows_per_chunk), scheduler=scheduler), source


def combined(chunks, *, scheduler=None):
    """The statistics of every amplifier from the statistics of its row chunks.

    Parameters
    ----------
    chunks : list of list of skipperdask.statistics.RowChunk
        One list per amplifier (:func:`skipperdask.statistics.row_chunks`).
    scheduler : str, optional
        The dask scheduler; ``"sync"`` computes the chunks in this thread, one after the
        other, as dask's synchronous scheduler would, but without building a graph (a
        campaign's task on its worker: a few milliseconds less per file).

    Returns
    -------
    list of skipperdask.statistics.ImageStatistics
    """
    if scheduler == "sync":
        return [ImageStatistics.combine([chunk.compute() for chunk in amp]) for amp in chunks]
    delayed = [
        dask.delayed(ImageStatistics.combine)([dask.delayed(c.function)(*c.args) for c in amp])
        for amp in chunks
    ]
    return list(dask.compute(*delayed, scheduler=scheduler))


def analyse_image(pixels, options, *, rows_per_chunk=None, scheduler=None):
    """The measurements of every amplifier of one image: what :func:`image_metrics` tabulates.

    Parameters are those of :func:`image_statistics`.

    Returns
    -------
    list of AmpAnalysis
        One per amplifier, in the order of ``pixels["amp"]``; each holds the statistics and
        the fits behind the metrics (the diagnostic plots draw them).
    """
    statistics, source = image_statistics(pixels, options, rows_per_chunk=rows_per_chunk,
                                          scheduler=scheduler)
    with single_threaded_blas():
        return [analyse(s, options, polarity_source=source) for s in statistics]




def _polarity(pixels, polarity):
    """The polarity and what decided it: the image's own (as :func:`skipperdask.open_image`
    resolved it), else :func:`resolve_polarity` on its attributes with ``polarity``."""
    if "polarity" in pixels.attrs:
        # a polarity given with the array, without saying where from, was chosen for it
        return int(pixels.attrs["polarity"]), pixels.attrs.get("polarity_source", "option")
    return resolve_polarity(pixels.attrs.get("path", ""), pixels.attrs, polarity)


def image_metrics(pixels, *, polarity=None, baseline=None, bin_width=None, rows_per_chunk=None,
                  options=None, scheduler=None):
    """The quality metrics of one image.

    Parameters
    ----------
    pixels : xarray.DataArray
        Dims ``(amp, row, col, skip)`` as :func:`skipperdask.open_image` returns, backed by
        dask or numpy. Each amplifier is a separate image.
    polarity : {+1, -1}, optional
        Sign that makes charge raise the value; default ``pixels.attrs["polarity"]`` as
        ``pixels.attrs["polarity_source"]`` says it was decided, and when nothing but the
        default decided it, the data of each amplifier (:func:`settle_polarity`).
    baseline : {"none", "row-median"}, optional
        Per-row baseline subtraction (default ``skipperdask.baseline``). Use
        ``"row-median"`` when the baseline drifts along rows: it subtracts each row's
        median average-image value, which is the zero-charge level wherever most
        pixels are empty.
    bin_width : float or "auto", optional
        Bin width (ADU) of the average image's histogram for the peaks fit; default
        ``skipperdask.peaks-bin-width`` ("auto": 1 ADU unless the averaged noise is
        below 1 ADU).
    rows_per_chunk : int, optional
        Rows of one statistics task (rounded to the cluster tile's height); default the
        array's own row chunks.
    options : skipperdask.config.Options, optional
        Every option; default from ``dask.config``. The arguments above override it.
    scheduler : str, optional
        The dask scheduler of the pass over the pixels; default dask's.

    Returns
    -------
    xarray.Dataset
        Over ``amp``: the metrics (``aveImgS``, ``dSdskip``, ``dSdskip_err``,
        ``imgNoise``, ``skNoise``, …), ``pedestal``, ``resolution`` (e⁻), ``fitChi2``,
        ``noise_vs_n`` over ``(amp, nsamp)``, ``<name>_reason`` strings, and ``polarity``
        with ``polarity_source`` ("option", "header", "name", "data" or "default").
    """
    options = (options or Options.from_config()).updated(baseline=baseline,
                                                          peaks_bin_width=bin_width)
    if polarity is not None:
        pixels = pixels.assign_attrs(polarity=polarity, polarity_source="option")
    statistics, source = image_statistics(pixels, options, rows_per_chunk=rows_per_chunk,
                                          scheduler=scheduler)
    with single_threaded_blas():
        return measure(statistics, options, polarity_source=source,
                       amp_names=[str(a) for a in pixels["amp"].values],
                       path=pixels.attrs.get("path", ""), header=pixels.attrs)
