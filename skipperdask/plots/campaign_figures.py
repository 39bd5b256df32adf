"""The figures of a campaign's catalogue: metrics against time or a header keyword per
amplifier, their distributions, and the images flagged."""

import numpy as np
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..errors import BadOptionError
from .drawing import LABELS, log_if_positive, log_if_wide, say

#: the metrics of the report's distributions and plots against a header keyword
MAIN_METRICS = tuple(LABELS)[:-1]
#: metrics whose missing value flags an image (dSdskip, pixVar, clustVar only when the image
#: has the samples they need: their absence for nskips < 4 is expected, not a failure)
FLAG_METRICS = ("skNoise", "aduConversion", "darkCurrent", "imgNoise", "tailRatio")
NEED_SAMPLES = ("dSdskip", "pixVar", "clustVar")
FLAG_COLOUR = "crimson"
MARKERS = {"o": "circles", "s": "squares", "^": "triangles", "D": "diamonds"}


def keyword_unit(ds, key):
    """The unit of header keyword ``key`` as its comment gives it (``[V]``, ``(V)``, ``V``,
    or the whole comment when short), read from the header of the first processed file that
    still exists; None when none says.
    """
    import os

    from astropy.io import fits

    paths = [str(p) for p in ds["path"].values[ok_images(ds)]] if "path" in ds else []
    for path in paths:
        if not os.path.isfile(path):
            continue
        try:
            with fits.open(path, mode="readonly", lazy_load_hdus=True) as hdul:
                comments = [hdu.header.comments[key] for hdu in hdul if key in hdu.header]
        except (OSError, ValueError):
            continue
        for comment in comments:
            unit = _unit_of_comment(comment)
            if unit:
                return unit
        return None
    return None


def _unit_of_comment(comment):
    import re

    comment = str(comment).strip()
    bracketed = re.search(r"[\[(]([^\])]{1,12})[\])]", comment)
    if bracketed:
        return bracketed.group(1).strip()
    if comment and len(comment) <= 12 and " " not in comment:
        return comment
    return comment[:40] or None


def header_keywords(ds):
    """Names of the catalogue variables holding FITS header keywords."""
    return sorted(name for name, var in ds.data_vars.items() if "header_keyword" in var.attrs)


def versus_variable(ds, key):
    """The catalogue variable of header keyword ``key``, or a BadOptionError naming the
    choices."""
    for name in (key, f"header_{key}"):
        if name in ds and "header_keyword" in ds[name].attrs:
            return name
    keys = header_keywords(ds)
    listed = ", ".join(keys) if keys else "none"
    raise BadOptionError(f"header keyword {key!r} is not in the catalogue; its keywords: {listed}")


def x_axis(ds):
    """(x values, label): the images' times, or their index when they have none.

    A failed file's time is often only its modification time, so the label names where the
    processed images' times come from, and plots keep failed files out of their range.
    """
    ok = ok_images(ds)
    if "time" in ds.coords:
        times = ds["time"].values
        if np.issubdtype(times.dtype, np.datetime64) and not np.isnat(times[ok]).all():
            sources = time_sources(ds)
            return times, "time, UTC" + (f" (from {sources})" if sources else "")
    return np.arange(ds.sizes["image"]), "image index"


def time_sources(ds):
    """Where the processed images' times come from: header keywords, or mtime."""
    if "time_source" not in ds:
        return ""
    return ", ".join(sorted({str(s) for s in ds["time_source"].values[ok_images(ds)] if str(s)}))


def ok_images(ds):
    if "status" not in ds:
        return np.ones(ds.sizes["image"], bool)
    return np.asarray(ds["status"].values == "ok")


def _present(ds, amp):
    if "amp_present" not in ds:
        return np.ones(ds.sizes["image"], bool)
    return np.asarray(ds["amp_present"].sel(amp=amp).values, bool)


def flagged_images(ds, *, tail_ratio_limit=10.0, dsdskip_limit=-10.0):
    """Images × amplifiers that need a look, and why.

    Flagged: a missing fitted metric (its reason), ``tailRatio > tail_ratio_limit`` (tracks,
    charge-transfer trouble), ``dSdskip < dsdskip_limit`` (charge lost between samples).
    dSdskip, pixVar and clustVar flag only images with at least 4 samples per pixel, where
    they are defined. Failed files are not listed here (see the failures table).

    Parameters
    ----------
    ds : xarray.Dataset
        The catalogue.
    tail_ratio_limit, dsdskip_limit : float

    Returns
    -------
    dict
        ``(image index, amp) -> list of str``.
    """
    flags = {}
    ok = ok_images(ds)
    for amp in ds["amp"].values:
        present = _present(ds, amp) & ok
        one = ds.sel(amp=amp)
        nskips = one["nskips"].values if "nskips" in one else np.full(ds.sizes["image"], 99)
        for i in np.flatnonzero(present):
            why = []
            for name in (*FLAG_METRICS, *NEED_SAMPLES):
                reason = f"{name}_reason"
                if reason not in one or (name in NEED_SAMPLES and nskips[i] < 4):
                    continue
                text = str(one[reason].values[i])
                if text:
                    why.append(f"{name} missing: {text}")
            if "tailRatio" in one and one["tailRatio"].values[i] > tail_ratio_limit:
                why.append(f"tailRatio = {one['tailRatio'].values[i]:.3g} > {tail_ratio_limit:g}")
            if "dSdskip" in one and one["dSdskip"].values[i] < dsdskip_limit:
                why.append(f"dSdskip = {one['dSdskip'].values[i]:.3g} < {dsdskip_limit:g} "
                           "milli-nats/sample")
            if why:
                flags[(int(i), str(amp))] = why
    return flags


def metric_figure(ds, names, *, flags=None, limit=None, ylabel=None, title=None):
    """One or several metrics of a catalogue against time (or image index), per amplifier.

    Parameters
    ----------
    ds : xarray.Dataset
        The catalogue.
    names : str or sequence of str
        The metrics (several share the axes, e.g. ``("pixVar", "clustVar")``).
    flags : dict, optional
        :func:`flagged_images`; flagged points are ringed.
    limit : float, optional
        A flagging limit, drawn as a dashed line.
    ylabel, title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        One axes; the line of metric ``m`` of amplifier ``a`` has ``gid`` ``"m:a"`` and holds
        the catalogue's values of the images where the file was processed and has the
        amplifier (x: their times).
    """
    names = [names] if isinstance(names, str) else list(names)
    flags = flags or {}
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    ax = figure.add_subplot()
    x, xlabel = x_axis(ds)
    ok = ok_images(ds)
    markers = list(MARKERS)
    flagged_label = "flagged (see the table)"
    for m, name in enumerate(names):
        if name not in ds:
            say(ax, f"{name} is not in the catalogue")
            continue
        for a, amp in enumerate(ds["amp"].values):
            # in the order of x: files come in name order, lines must not run back in time
            rows = np.flatnonzero(ok & _present(ds, amp))
            rows = rows[np.argsort(x[rows], kind="stable")]
            values = ds[name].sel(amp=amp).values[rows]
            error = ds[f"{name}_err"].sel(amp=amp).values[rows] if f"{name}_err" in ds else None
            label = f"{name}, amplifier {amp}" if len(names) > 1 else f"amplifier {amp}"
            colour = f"C{a}"
            ax.errorbar(x[rows], values, yerr=error, fmt=markers[m % len(markers)] + "-",
                        color=colour, markersize=4, linewidth=0.8, capsize=0,
                        markerfacecolor=colour if m == 0 else "white", label=label,
                        gid=f"{name}:{amp}")
            flagged = np.array([(int(i), str(amp)) in flags for i in rows], bool)
            if flagged.any():
                ax.plot(x[rows][flagged], values[flagged], "o", markersize=11,
                        markerfacecolor="none", markeredgecolor=FLAG_COLOUR,
                        markeredgewidth=1.8, label=flagged_label, gid=f"flagged:{name}:{amp}")
                flagged_label = None
    shown = ds[[n for n in names if n in ds]].to_array().values
    if "tailRatio" in names:
        log_if_positive(ax, shown)  # ~1 for a normal image, 10-1000 with tracks
    else:
        log_if_wide(ax, shown)
    if limit is not None:  # a limit far from the data must not squash them
        low, high = ax.get_ylim()
        inside = low <= limit <= high
        ax.axhline(limit, color=FLAG_COLOUR, linestyle="--", linewidth=1, gid="limit",
                   label=f"flag limit {limit:g}" + ("" if inside else " (off scale)"))
        ax.set_ylim(low, high)
    if ok.any():  # failed files only where they fall among the processed ones
        first, last = x[ok].min(), x[ok].max()
        failed = [i for i in np.flatnonzero(~ok) if first <= x[i] <= last]
        for j, i in enumerate(failed):
            ax.axvline(x[i], color="0.6", linestyle=":", linewidth=1.2, gid="failed",
                       label="failed file" if j == 0 else None)
    if not np.isfinite(np.asarray(ds[names[0]].values, float)).any() and names[0] in ds:
        reasons = {str(r) for r in ds[f"{names[0]}_reason"].values.ravel() if str(r)} if (
            f"{names[0]}_reason" in ds) else set()
        say(ax, f"{names[0]} missing in every image" + (
            ": " + "; ".join(sorted(reasons)[:3]) if reasons else ""))
    ax.set_xlabel(xlabel)
    if ylabel is None:
        ylabel = "variance (ADU²)" if names == ["pixVar", "clustVar"] else LABELS.get(
            names[0], names[0])
    ax.set_ylabel(ylabel)
    if title is None:
        title = names[0] if len(names) == 1 else " and ".join(
            f"{name} ({'filled' if m == 0 else 'open'} {MARKERS[markers[m]]})"
            for m, name in enumerate(names))
    ax.set_title(title, loc="left")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    if np.issubdtype(np.asarray(x).dtype, np.datetime64):
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    _narrow_axis_around_one_time(ax, x[ok])
    return figure


def _narrow_axis_around_one_time(ax, x):
    """One image (or one time): an hour either side, an index ± 1, not matplotlib's default
    span of years."""
    x = np.asarray(x)
    if x.size == 0:
        return
    if np.issubdtype(x.dtype, np.datetime64):
        x = x[~np.isnat(x)]
        if x.size and x.min() == x.max():
            hour = np.timedelta64(1, "h")
            ax.set_xlim(x.min() - hour, x.max() + hour)
    elif x.min() == x.max():
        ax.set_xlim(x.min() - 1, x.max() + 1)


def distributions_figure(ds):
    """Histograms of the main metrics over the campaign, one panel per metric, per amplifier.

    Returns
    -------
    matplotlib.figure.Figure
        Panel ``gid`` ``"distribution:<metric>"``.
    """
    names = MAIN_METRICS
    columns = 4
    rows = int(np.ceil(len(names) / columns))
    figure = Figure(figsize=(16, 3.6 * rows), layout="constrained")
    ok = ok_images(ds)
    for k, name in enumerate(names):
        ax = figure.add_subplot(rows, columns, k + 1)
        ax.set_gid(f"distribution:{name}")
        ax.set_xlabel(LABELS[name], fontsize=9)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_ylabel("amplifier images")
        if name not in ds:
            say(ax, f"{name} is not in the catalogue")
            continue
        samples = {str(amp): ds[name].sel(amp=amp).values[ok & _present(ds, amp)]
                   for amp in ds["amp"].values}
        samples = {amp: v[np.isfinite(v)] for amp, v in samples.items()}
        everything = np.concatenate(list(samples.values())) if samples else np.zeros(0)
        if everything.size == 0:
            say(ax, f"{name} missing in every image")
            continue
        bins = np.histogram_bin_edges(everything, bins="auto")
        if len(bins) > 41:
            bins = np.linspace(bins[0], bins[-1], 41)
        for a, (amp, values) in enumerate(samples.items()):
            # outlines only: translucent fills overlapping made colours no legend explains
            ax.hist(values, bins=bins, histtype="step", linewidth=1.5, color=f"C{a}",
                    label=f"amplifier {amp}")
        ax.legend(fontsize=8)
    return figure


def versus_figure(ds, key, *, flags=None, unit=None):
    """The main metrics against the header keyword ``key``, per amplifier; ``unit`` (say
    from :func:`keyword_unit`) labels its axis.

    Raises
    ------
    ValueError
        When the catalogue has no such keyword (the message lists those it has).
    """
    variable = versus_variable(ds, key)
    flags = flags or {}
    names = MAIN_METRICS
    columns = 4
    rows = int(np.ceil(len(names) / columns))
    figure = Figure(figsize=(16, 3.6 * rows), layout="constrained")
    figure.suptitle(f"metrics against the header keyword {key}", fontsize=13)
    ok = ok_images(ds)
    for k, name in enumerate(names):
        ax = figure.add_subplot(rows, columns, k + 1)
        ax.set_gid(f"versus:{name}")
        ax.set_xlabel(f"{key} ({unit})" if unit else f"{key} (no unit in the header)")
        ax.set_ylabel(LABELS[name], fontsize=9)
        ax.grid(alpha=0.3)
        if name not in ds:
            say(ax, f"{name} is not in the catalogue")
            continue
        for a, amp in enumerate(ds["amp"].values):
            keep = ok & _present(ds, amp)
            x = ds[variable]
            x = (x.sel(amp=amp) if "amp" in x.dims else x).values[keep]
            y = ds[name].sel(amp=amp).values[keep]
            ax.plot(x, y, "o", color=f"C{a}", markersize=5, label=f"amplifier {amp}",
                    gid=f"{name}:{amp}")
            flagged = np.array([(int(i), str(amp)) in flags for i in np.flatnonzero(keep)],
                               bool)
            if flagged.any():
                ax.plot(x[flagged], y[flagged], "o", markersize=11, markerfacecolor="none",
                        markeredgecolor=FLAG_COLOUR, markeredgewidth=1.8)
        log_if_wide(ax, ds[name].values)
        if k == 0 and ds.sizes["amp"] > 1:
            ax.legend(fontsize=8)
    return figure
