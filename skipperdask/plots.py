"""Pictures an analyst looks at: the diagnostics of one image and the report of a campaign.

- :func:`inspect_image` (``skipperdask inspect``): one figure per amplifier with the average
  image, the fitted Gaussian-smeared Poisson, the entropy slope, the noise against the number
  of averaged samples and the single-sample noise fits (:func:`image_figure` builds it from an
  :class:`~skipperdask.metrics.AmpAnalysis`).
- :func:`write_report` (``skipperdask report``): a self-contained HTML page of a catalogue,
  PNG figures beside it, relative links, no script and no server.

Figures are :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas: no pyplot
state, no display, safe in threads. What a panel plots is kept on its axes, so that tests (and
curious users) can check it against the metrics: ``ax.skipperdask_fit`` is a dict of the
parameters of the curve drawn, and lines carry a ``gid`` naming what they show. A metric that is
missing is not a blank panel: its reason is written in it.
"""

import datetime
import html
import os
import re

import numpy as np
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator, ScalarFormatter

#: axis labels of the metrics the report shows
LABELS = {
    "skNoise": "noise of the average image, skNoise (ADU)",
    "aduConversion": "gain, aduConversion (ADU/e⁻)",
    "darkCurrent": "dark current (e⁻/pixel)",
    "imgNoise": "single-sample noise, imgNoise (ADU)",
    "dSdskip": "entropy slope, dSdskip (milli-nats/sample)",
    "tailRatio": "tailRatio (observed / expected tail pixels)",
    "resolution": "resolution σ/g (e⁻)",
    "pixVar": "variance of a pixel's samples, pixVar (ADU²)",
    "clustVar": "variance of a pixel cluster, clustVar (ADU²)",
}
#: the metrics of the report's distributions and plots against a header keyword
MAIN_METRICS = tuple(LABELS)[:-1]
#: metrics whose missing value flags an image (dSdskip, pixVar, clustVar only when the image
#: has the samples they need: their absence for nskips < 4 is expected, not a failure)
FLAG_METRICS = ("skNoise", "aduConversion", "darkCurrent", "imgNoise", "tailRatio")
NEED_SAMPLES = ("dSdskip", "pixVar", "clustVar")
FLAG_COLOUR = "crimson"
DPI = 100
MARKERS = {"o": "circles", "s": "squares", "^": "triangles", "D": "diamonds"}


# --------------------------------------------------------------------------- helpers

def _say(ax, text, *, y=0.5, **kwargs):
    """Write ``text`` across a panel, in the middle by default (why a curve is missing)."""
    options = {"ha": "center", "va": "center", "wrap": True, "fontsize": 10,
               "color": "0.25", "gid": "reason",
               "bbox": {"boxstyle": "round", "facecolor": "lightyellow", "edgecolor": "0.6"}}
    options.update(kwargs)
    return ax.text(0.5, y, text, transform=ax.transAxes, **options)


def _value(value, error, digits=3):
    """``value ± error`` with the error's significant digits deciding the precision."""
    if not np.isfinite(value):
        return "missing"
    if not np.isfinite(error) or error <= 0:
        return f"{value:.{digits}g}"
    decimals = max(0, 1 - int(np.floor(np.log10(error))))
    return f"{value:.{decimals}f} ± {error:.{decimals}f}"


def _log_if_wide(ax, values):
    """Log y axis when the positive values span more than a factor 30 (tailRatio, say)."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() > 30 * values.min():
        ax.set_yscale("log")


def _save(figure, path):
    figure.savefig(path, dpi=DPI)
    return os.fspath(path)


# --------------------------------------------------------------------------- inspect

def inspect_image(path, *, amp=None, output=None, polarity=None, baseline=None):
    """Diagnostic figures of one image, one PNG per amplifier.

    Parameters
    ----------
    path : str or os.PathLike
        The FITS file.
    amp : str or int, optional
        Only this amplifier: its name (EXTNAME) or its position in the file.
    output : str or os.PathLike, optional
        The PNG to write. With several amplifiers, ``_<amp>`` is added before the suffix.
        Default: ``<file name>_<amp>.png`` in the current directory.
    polarity : {+1, -1}, optional
        Sign that makes charge raise the value (default: the rule of
        :func:`skipperdask.image_metrics`: header, name, else the data of each amplifier).
    baseline : {"none", "row-median"}, optional
        Per-row baseline subtraction, as for the metrics.

    Returns
    -------
    list of str
        The PNG files written.
    """
    from .metrics import analyse_image
    from .reader import open_image

    pixels = open_image(path, polarity=polarity)
    names = [str(a) for a in pixels["amp"].values]
    if amp is not None:
        pixels = pixels.isel(amp=[_amp_index(names, amp, path)])
        names = [str(a) for a in pixels["amp"].values]
    analyses = analyse_image(pixels, polarity=polarity, baseline=baseline)
    written = []
    for name, analysis in zip(names, analyses, strict=True):
        title = f"{os.path.basename(os.fspath(path))}  amplifier {name}"
        target = _inspect_output(path, output, name, several=len(names) > 1)
        written.append(_save(image_figure(analysis, title=title), target))
    return written


def _amp_index(names, amp, path):
    if str(amp) in names:
        return names.index(str(amp))
    if str(amp).lstrip("-").isdigit() and -len(names) <= int(amp) < len(names):
        return int(amp) % len(names)
    raise ValueError(f"{path}: no amplifier {amp!r}; it has {', '.join(names)}")


def _inspect_output(path, output, amp, several):
    if output is None:
        stem = re.sub(r"\.fits(\.fz|\.gz)?$", "", os.path.basename(os.fspath(path)))
        return f"{stem}_{amp}.png"
    output = os.fspath(output)
    if not several:
        return output
    stem, suffix = os.path.splitext(output)
    return f"{stem}_{amp}{suffix or '.png'}"


def image_figure(analysis, *, title=""):
    """The diagnostic figure of one amplifier.

    Parameters
    ----------
    analysis : skipperdask.metrics.AmpAnalysis
        What :func:`skipperdask.metrics.analyse_image` gives for the amplifier.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Panels (axes ``gid``): ``average-image``, ``peaks-fit`` with ``peaks-residuals``,
        ``entropy``, ``noise-vs-n``, ``sample-noise-fit`` and ``sample-noise``. The fitted
        parameters of each curve are in ``ax.skipperdask_fit``.
    """
    stats = analysis.statistics
    figure = Figure(figsize=(18, 10.5), layout="constrained")
    plan = stats.plan
    subtitle = (f"{plan.nrows} rows × {plan.ncols} columns × {plan.nskips} samples, "
                f"polarity {plan.polarity:+d}, baseline {plan.baseline}; "
                "values in the frame where charge raises them")
    figure.suptitle(f"{title}\n{subtitle}" if title else subtitle, fontsize=13)
    grid = figure.add_gridspec(2, 4, height_ratios=(1.15, 1))
    _average_image_panel(figure.add_subplot(grid[0, :2]), stats, analysis.mask)
    peaks = grid[0, 2:].subgridspec(2, 1, height_ratios=(3, 1), hspace=0)
    histogram = figure.add_subplot(peaks[0])
    _peaks_panel(histogram, figure.add_subplot(peaks[1], sharex=histogram), analysis)
    _entropy_panel(figure.add_subplot(grid[1, 0]), analysis)
    _noise_vs_n_panel(figure.add_subplot(grid[1, 1]), analysis)
    _sample_noise_fit_panel(figure.add_subplot(grid[1, 2]), analysis)
    _sample_noise_panel(figure.add_subplot(grid[1, 3]), analysis)
    return figure


def _average_image_panel(ax, stats, mask):
    ax.set_gid("average-image")
    image = stats.average
    finite = image[np.isfinite(image)]
    title = "(a) average image"
    if mask is not None:
        title += (f"; outlined in red: masked for the fit ({100 * mask.fraction:.1f} %, "
                  f"{mask.clusters} clusters, {mask.hot_columns.size} hot columns)")
    ax.set_title(title, loc="left")
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    if finite.size == 0:
        _say(ax, "no finite pixel value")
        return
    # a robust scale: tracks must not wash out the single electrons
    low, high = np.percentile(finite, (1, 99))
    if high <= low:
        high = low + 1
    shown = ax.imshow(image, origin="lower", aspect="auto", interpolation="nearest",
                      cmap="viridis", vmin=low, vmax=high)
    ax.figure.colorbar(shown, ax=ax, label="ADU (colour scale: 1st to 99th percentile)",
                       extend="both", pad=0.01)
    if mask is not None and mask.masked.any():
        ax.contour(mask.masked, levels=[0.5], colors="red", linewidths=0.6)


def _peaks_panel(ax, residuals_ax, analysis):
    ax.set_gid("peaks-fit")
    residuals_ax.set_gid("peaks-residuals")
    ax.set_title("(b) histogram of the average image and Gaussian-smeared Poisson fit",
                 loc="left")
    ax.set_ylabel("pixels per bin")
    residuals_ax.set_xlabel("average pixel value (ADU)")
    residuals_ax.set_ylabel("(data − curve)\n/ √curve")
    ax.tick_params(labelbottom=False)
    residuals_ax.ticklabel_format(axis="x", useOffset=False)
    fit = analysis.peaks_fit
    values = analysis.values
    reasons = analysis.reasons
    edges, counts = _fitted_histogram(analysis)
    if counts.size == 0:
        _say(ax, "no histogram: " + (reasons.get("skNoise") or "no finite pixel value"))
        return
    ax.stairs(counts, edges, color="black", linewidth=1.0, label="data", gid="data")
    ax.set_yscale("log")
    ax.set_ylim(0.5, max(counts.max(), 1) * 30)  # room above the peaks for the legend
    params = {p: float(getattr(fit, p, np.nan)) for p in ("x0", "sigma", "gain", "lam", "n")}
    if not all(np.isfinite(v) for v in params.values()):
        # without gain and λ the zero-electron peak's area is unknown too: no curve, but
        # what was measured (σ, say) and why the rest is missing
        _say(ax, "no model curve\n" + _peaks_summary(analysis), y=0.8)
        residuals_ax.set_yticks([])
        return
    ax.skipperdask_fit = {**params, "method": fit.method}
    legend = [
        f"gain g = {_value(values['aduConversion'], values['aduConversion_err'])} ADU/e⁻",
        f"noise σ = {_value(values['skNoise'], values['skNoise_err'])} ADU",
        f"dark current λ = {_value(values['darkCurrent'], values['darkCurrent_err'])} e⁻/pixel",
        f"resolution σ/g = {_value(values['resolution'], values['resolution_err'])} e⁻",
        f"reduced χ² = {fit.chi2_reduced:.3g} ({fit.ndof} d.o.f.), fit: {fit.method}",
    ]
    name = "Gaussian-smeared Poisson"
    style = {"color": "tab:red", "linewidth": 1.5}
    if fit.method != "poisson":
        # the accepted fit has free peak areas (and a continuum) that the fit result does not
        # keep: draw Poisson heights at its parameters, dashed, and say so
        name = "Poisson heights at the fitted x0, σ, g, λ"
        style["linestyle"] = "--"
        note = (f"against the dashed curve; the {fit.method} fit itself has reduced "
                f"χ² = {fit.chi2_reduced:.3g}")
        residuals_ax.text(0.01, 0.95, note, transform=residuals_ax.transAxes, va="top",
                          fontsize=8, color="0.3")
    fine, model = _smooth_model(params, edges)
    ax.plot(fine, model, gid="model", label=f"{name}\n" + "\n".join(legend), **style)
    ax.legend(loc="upper right", fontsize=9, framealpha=0.9)
    expected = _bin_model(params, edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        pulls = np.where(expected > 0, (counts - expected) / np.sqrt(expected), 0.0)
    residuals_ax.stairs(pulls, edges, color="black", linewidth=1.0, gid="residuals")
    residuals_ax.axhline(0, color="tab:red", linewidth=1)
    limit = max(3.0, min(np.abs(pulls).max() * 1.1, 20.0))
    residuals_ax.set_ylim(-limit, limit)
    x0, gain = params["x0"], params["gain"]
    electrons = ax.secondary_xaxis(
        "top", functions=(lambda x: (x - x0) / gain, lambda e: x0 + gain * e))
    electrons.set_xlabel("electrons, (x − x0) / g")


def _peaks_summary(analysis):
    """What the peaks fit measured and why the rest is missing, one line per metric."""
    lines = []
    for name, unit in (("skNoise", "ADU"), ("aduConversion", "ADU/e⁻"),
                       ("darkCurrent", "e⁻/pixel")):
        value = analysis.values.get(name, np.nan)
        if np.isfinite(value):
            error = analysis.values.get(f"{name}_err", np.nan)
            lines.append(f"{name} = {_value(value, error)} {unit}")
        else:
            lines.append(f"{name} missing: {analysis.reasons.get(name, 'no fit')}")
    return "\n".join(dict.fromkeys(lines))


def _fitted_histogram(analysis):
    """The histogram the peaks fit saw; the average image's own when the fit kept none."""
    fit = analysis.peaks_fit
    if fit is not None and len(fit.counts):
        return np.asarray(fit.edges, float), np.asarray(fit.counts, float)
    values = analysis.statistics.average
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.zeros(1), np.zeros(0)
    low, high = np.percentile(values, (0.1, 99.9))
    counts, edges = np.histogram(values, bins=np.arange(np.floor(low), np.ceil(high) + 2) - 0.5)
    return edges, counts.astype(float)


def _bin_model(params, edges):
    """Counts per bin of the Gaussian-smeared Poisson of ``params``, every peak in ``edges``."""
    from .fitting import gauss_poisson_counts

    kmax = max(9, int(np.ceil((edges[-1] - params["x0"]) / params["gain"])) + 2)
    return gauss_poisson_counts(edges, params["n"], params["x0"], params["sigma"],
                                params["gain"], params["lam"], kmax=kmax)


def _smooth_model(params, edges):
    """The model on a grid ten times finer, scaled to counts per fitted bin."""
    fine_edges = np.linspace(edges[0], edges[-1], 10 * (len(edges) - 1) + 1)
    per_fine_bin = _bin_model(params, fine_edges)
    scale = np.diff(edges).mean() / np.diff(fine_edges).mean()
    return 0.5 * (fine_edges[:-1] + fine_edges[1:]), per_fine_bin * scale


def _entropy_panel(ax, analysis):
    ax.set_gid("entropy")
    ax.set_title("(c) entropy of the single-sample images", loc="left")
    ax.set_xlabel("sample index")
    ax.set_ylabel("entropy S (nats)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    entropies = analysis.entropies if analysis.entropies is not None else np.zeros(0)
    index = np.arange(len(entropies))
    if len(entropies):
        ax.plot(index, entropies, "o", color="black", markersize=4, gid="entropies",
                label="entropy of sample i")
    line = analysis.entropy_line
    reason = analysis.reasons.get("dSdskip")
    if reason or line is None:
        _say(ax, f"dSdskip missing: {reason or 'no line fitted'}", y=0.85 if len(index) else 0.5)
        ax.set_xlim(-0.5, max(len(index), 1) - 0.5)
        return
    ax.skipperdask_fit = {"slope": line.slope, "intercept": line.intercept,
                          "slope_err": line.slope_err}
    label = (f"fit: dS/dskip = {_value(analysis.values['dSdskip'], analysis.values['dSdskip_err'])}"
             " milli-nats/sample")
    ax.plot(index, line.intercept + line.slope * index, color="tab:red", gid="entropy-line",
            label=label)
    ax.legend(loc="best", fontsize=9)
    ax.margins(y=0.3)


def _noise_vs_n_panel(ax, analysis):
    ax.set_gid("noise-vs-n")
    ax.set_title("(d) noise against averaged samples", loc="left")
    ax.set_xlabel("number of averaged samples n")
    ax.set_ylabel("noise of the average (ADU)")
    levels = np.asarray(analysis.statistics.plan.levels, float)
    fits = analysis.noise_fits
    sigma = np.array([f.sigma if f is not None and not f.reason else np.nan for f in fits])
    error = np.array([f.sigma_err if f is not None and not f.reason else np.nan for f in fits])
    good = np.isfinite(sigma)
    if not good.any():
        reasons = [f.reason for f in fits if f is not None and f.reason]
        _say(ax, "no noise fit: " + (reasons[0] if reasons else "too few pixels"))
        return
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(levels, [f"{n:g}" for n in levels])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.errorbar(levels[good], sigma[good], yerr=error[good], fmt="o", color="black",
                markersize=5, label="σ of the zero-electron peak", gid="noise")
    ax.skipperdask_fit = {"n": levels[good], "sigma": sigma[good]}
    if good[0]:
        n = np.geomspace(1, levels[-1], 50)
        ax.plot(n, sigma[0] / np.sqrt(n), "--", color="tab:blue", gid="ideal",
                label=f"ideal σ₁/√n, σ₁ = {sigma[0]:.3g} ADU")
        ax.skipperdask_fit["sigma1"] = sigma[0]
    else:
        _say(ax, "no fit at n = 1: no ideal line", y=0.15)
    sk = analysis.values.get("skNoise", np.nan)
    if np.isfinite(sk):
        ax.plot([levels[-1]], [sk], "*", color="tab:red", markersize=12, gid="skNoise",
                label=f"skNoise (peaks fit) = {sk:.3g} ADU")
    if len(levels) == 1:
        _say(ax, "one sample per pixel: nothing averaged", y=0.9)
    ax.legend(loc="best", fontsize=9)


def _sample_noise_fit_panel(ax, analysis):
    from .metrics import sample_noise_histogram

    ax.set_gid("sample-noise-fit")
    ax.set_title("(e) first single-sample image: noise fit", loc="left")
    ax.set_xlabel("sample value (ADU)")
    ax.set_ylabel("pixels per bin")
    if not analysis.sample_noise_fits:
        _say(ax, "imgNoise missing: " + analysis.reasons.get("imgNoise", "no fit"))
        return
    stats, fit = analysis.statistics, analysis.sample_noise_fits[0]
    if stats.plan.nskips == 1 and not stats.integer_valued and not fit.reason:
        # an averaged file: imgNoise is the zero peak of the image itself, on fine bins
        edges = np.arange(fit.mu - 5 * fit.sigma, fit.mu + 3 * fit.sigma, fit.sigma / 4)
        counts, _ = np.histogram(stats.average.ravel(), edges)
        label = "the image (one sample per pixel)"
    else:
        counts, edges = sample_noise_histogram(stats, 0)
        label = "sample 0, median − 3 MAD … median + 1 MAD"
    ax.stairs(counts, edges, color="black", label=label, gid="data")
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.ticklabel_format(axis="x", useOffset=False)
    if fit.reason:
        _say(ax, f"Gaussian fit failed: {fit.reason}")
        return
    x = np.linspace(edges[0], edges[-1], 400)
    bin_width = np.diff(edges).mean()
    y = fit.amplitude * bin_width * np.exp(-0.5 * ((x - fit.mu) / fit.sigma) ** 2) / (
        np.sqrt(2 * np.pi) * fit.sigma)
    ax.plot(x, y, color="tab:red", gid="gaussian",
            label=f"Gaussian σ = {_value(fit.sigma, fit.sigma_err)} ADU")
    ax.skipperdask_fit = {"mu": fit.mu, "sigma": fit.sigma, "amplitude": fit.amplitude}
    ax.set_ylim(0, counts.max() * 1.35)
    ax.legend(loc="upper left", fontsize=9)


def _sample_noise_panel(ax, analysis):
    ax.set_gid("sample-noise")
    ax.set_title("(e) noise of each single sample", loc="left")
    ax.set_xlabel("sample index")
    ax.set_ylabel("σ (ADU)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    fits = analysis.sample_noise_fits
    sigma = np.array([f.sigma for f in fits], float)
    error = np.array([f.sigma_err for f in fits], float)
    index = np.arange(len(fits))
    good = np.isfinite(sigma)
    if not good.any():
        _say(ax, "imgNoise missing: " + analysis.reasons.get("imgNoise", "no fit"))
        return
    ax.errorbar(index[good], sigma[good], yerr=error[good], fmt="o", color="black",
                markersize=4, gid="sigmas", label="σ of sample i")
    img_noise = analysis.values.get("imgNoise", np.nan)
    ax.axhline(img_noise, color="tab:red", gid="imgNoise",
               label=f"imgNoise (mean) = {img_noise:.3g} ADU")
    ax.skipperdask_fit = {"sigma": sigma, "imgNoise": img_noise}
    ax.set_xlim(-0.5, len(fits) - 0.5)
    ax.margins(y=0.4)
    ax.legend(loc="upper right", fontsize=9)


# --------------------------------------------------------------------------- report

def _open_catalogue(catalogue):
    import xarray as xr

    if isinstance(catalogue, xr.Dataset):
        return catalogue
    from .catalogue import Catalogue

    if not os.path.exists(catalogue):
        raise FileNotFoundError(f"{catalogue}: no such catalogue")
    return Catalogue(catalogue).to_dataset()


def header_keywords(ds):
    """Names of the catalogue variables holding FITS header keywords."""
    return sorted(name for name, var in ds.data_vars.items() if "header_keyword" in var.attrs)


def _versus_variable(ds, key):
    """The catalogue variable of header keyword ``key``, or a ValueError naming the choices."""
    for name in (key, f"header_{key}"):
        if name in ds and "header_keyword" in ds[name].attrs:
            return name
    keys = header_keywords(ds)
    listed = ", ".join(keys) if keys else "none"
    raise ValueError(f"header keyword {key!r} is not in the catalogue; its keywords: {listed}")


def _x_axis(ds):
    """(x values, label): the images' times, or their index when they have none.

    A failed file's time is often only its modification time, so the label names where the
    processed images' times come from, and plots keep failed files out of their range.
    """
    ok = _ok(ds)
    if "time" in ds.coords:
        times = ds["time"].values
        if np.issubdtype(times.dtype, np.datetime64) and not np.isnat(times[ok]).all():
            sources = _time_sources(ds)
            return times, "time, UTC" + (f" (from {sources})" if sources else "")
    return np.arange(ds.sizes["image"]), "image index"


def _time_sources(ds):
    """Where the processed images' times come from: header keywords, or mtime."""
    if "time_source" not in ds:
        return ""
    return ", ".join(sorted({str(s) for s in ds["time_source"].values[_ok(ds)] if str(s)}))


def _ok(ds):
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
    ok = _ok(ds)
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
    x, xlabel = _x_axis(ds)
    ok = _ok(ds)
    markers = list(MARKERS)
    flagged_label = "flagged (see the table)"
    for m, name in enumerate(names):
        if name not in ds:
            _say(ax, f"{name} is not in the catalogue")
            continue
        for a, amp in enumerate(ds["amp"].values):
            keep = ok & _present(ds, amp)
            values = ds[name].sel(amp=amp).values[keep]
            error = ds[f"{name}_err"].sel(amp=amp).values[keep] if f"{name}_err" in ds else None
            label = f"{name}, amplifier {amp}" if len(names) > 1 else f"amplifier {amp}"
            colour = f"C{a}"
            ax.errorbar(x[keep], values, yerr=error, fmt=markers[m % len(markers)] + "-",
                        color=colour, markersize=4, linewidth=0.8, capsize=0,
                        markerfacecolor=colour if m == 0 else "white", label=label,
                        gid=f"{name}:{amp}")
            flagged = np.array([(int(i), str(amp)) in flags for i in np.flatnonzero(keep)],
                               bool)
            if flagged.any():
                ax.plot(x[keep][flagged], values[flagged], "o", markersize=11,
                        markerfacecolor="none", markeredgecolor=FLAG_COLOUR,
                        markeredgewidth=1.8, label=flagged_label, gid=f"flagged:{name}:{amp}")
                flagged_label = None
    _log_if_wide(ax, ds[[n for n in names if n in ds]].to_array().values)
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
        _say(ax, f"{names[0]} missing in every image" + (
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
    return figure


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
    ok = _ok(ds)
    for k, name in enumerate(names):
        ax = figure.add_subplot(rows, columns, k + 1)
        ax.set_gid(f"distribution:{name}")
        ax.set_xlabel(LABELS[name], fontsize=9)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_ylabel("amplifier images")
        if name not in ds:
            _say(ax, f"{name} is not in the catalogue")
            continue
        samples = {str(amp): ds[name].sel(amp=amp).values[ok & _present(ds, amp)]
                   for amp in ds["amp"].values}
        samples = {amp: v[np.isfinite(v)] for amp, v in samples.items()}
        everything = np.concatenate(list(samples.values())) if samples else np.zeros(0)
        if everything.size == 0:
            _say(ax, f"{name} missing in every image")
            continue
        bins = np.histogram_bin_edges(everything, bins="auto")
        if len(bins) > 41:
            bins = np.linspace(bins[0], bins[-1], 41)
        for a, (amp, values) in enumerate(samples.items()):
            ax.hist(values, bins=bins, histtype="stepfilled", alpha=0.3, color=f"C{a}")
            ax.hist(values, bins=bins, histtype="step", linewidth=1.5, color=f"C{a}",
                    label=f"amplifier {amp}")
        if len(samples) > 1:
            ax.legend(fontsize=8)
    return figure


def versus_figure(ds, key, *, flags=None):
    """The main metrics against the header keyword ``key``, per amplifier.

    Raises
    ------
    ValueError
        When the catalogue has no such keyword (the message lists those it has).
    """
    variable = _versus_variable(ds, key)
    flags = flags or {}
    names = MAIN_METRICS
    columns = 4
    rows = int(np.ceil(len(names) / columns))
    figure = Figure(figsize=(16, 3.6 * rows), layout="constrained")
    figure.suptitle(f"metrics against the header keyword {key}", fontsize=13)
    ok = _ok(ds)
    for k, name in enumerate(names):
        ax = figure.add_subplot(rows, columns, k + 1)
        ax.set_gid(f"versus:{name}")
        ax.set_xlabel(key)
        ax.set_ylabel(LABELS[name], fontsize=9)
        ax.grid(alpha=0.3)
        if name not in ds:
            _say(ax, f"{name} is not in the catalogue")
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
        _log_if_wide(ax, ds[name].values)
        if k == 0 and ds.sizes["amp"] > 1:
            ax.legend(fontsize=8)
    return figure


def _span(ds):
    x, _ = _x_axis(ds)
    if not np.issubdtype(np.asarray(x).dtype, np.datetime64):
        return "no image times"
    times = x[_ok(ds) & ~np.isnat(x)]
    first, last = times.min(), times.max()
    hours = (last - first) / np.timedelta64(1, "h")
    fmt = "%Y-%m-%d %H:%M:%S"
    sources = _time_sources(ds)
    return (f"{_as_datetime(first).strftime(fmt)} – {_as_datetime(last).strftime(fmt)} UTC, "
            f"{hours:.3g} h" + (f" (processed images' {sources})" if sources else ""))


def _as_datetime(t):
    return datetime.datetime(1970, 1, 1) + datetime.timedelta(
        microseconds=int(t.astype("datetime64[us]").astype(np.int64)))


def _table(header, rows):
    """An HTML table of escaped cells; ``header`` None for a table of name, value rows."""
    head = ""
    if header:
        cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        head = f"<thead><tr>{cells}</tr></thead>\n"
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                     for row in rows)
    return f"<table>\n{head}<tbody>\n{body}\n</tbody>\n</table>"


def _file_name(text):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1400px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-top: 0.6em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0; }
.note { color: #555; font-size: 0.9em; }
"""


def write_report(catalogue, output_dir, *, versus=None, tail_ratio_limit=10.0,
                 dsdskip_limit=-10.0):
    """A self-contained HTML report of a campaign: ``index.html`` and PNG figures beside it.

    Parameters
    ----------
    catalogue : str, os.PathLike or xarray.Dataset
        The Zarr catalogue (see :mod:`skipperdask.catalogue`) or its dataset.
    output_dir : str or os.PathLike
        Created if needed; existing figures of the same names are replaced.
    versus : str, optional
        A header keyword (e.g. ``"VDD"``): the main metrics are also plotted against it.
    tail_ratio_limit, dsdskip_limit : float
        Images with ``tailRatio`` above or ``dSdskip`` below these are flagged.

    Returns
    -------
    str
        The path of ``index.html``.

    Raises
    ------
    ValueError
        When ``versus`` is not a header keyword of the catalogue (checked before writing).
    """
    ds = _open_catalogue(catalogue)
    if versus is not None:
        _versus_variable(ds, versus)  # fail before writing anything
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    flags = flagged_images(ds, tail_ratio_limit=tail_ratio_limit, dsdskip_limit=dsdskip_limit)
    ok = _ok(ds)
    paths = [str(p) for p in ds["path"].values] if "path" in ds else [
        str(i) for i in range(ds.sizes["image"])]
    errors = ds["error"].values if "error" in ds else [""] * len(paths)
    failed_rows = [(paths[i], str(errors[i])) for i in np.flatnonzero(~ok)]
    flag_rows = [(paths[i], amp, "; ".join(why)) for (i, amp), why in sorted(flags.items())]
    limits = {"tailRatio": tail_ratio_limit, "dSdskip": dsdskip_limit}

    def figure_html(figure, stem, title, alt, note=""):
        file = _file_name(f"{stem}.png")
        _save(figure, os.path.join(output_dir, file))
        note = f' <span class="note">({html.escape(note)})</span>' if note else ""
        return (f"<h3>{html.escape(title)}{note}</h3>\n"
                f'<img src="{html.escape(file)}" alt="{html.escape(alt)}">')

    over_time = []
    for names in [[name] for name in MAIN_METRICS if name != "pixVar"] + [["pixVar", "clustVar"]]:
        limit = limits.get(names[0])
        note = "" if limit is None else (
            f"flagged {'above' if names[0] == 'tailRatio' else 'below'} {limit:g}")
        figure = metric_figure(ds, names, flags=flags, limit=limit)
        title = " and ".join(LABELS.get(name, name) for name in names)
        over_time.append(figure_html(figure, "_".join(names), title,
                                     f"{' and '.join(names)} against time", note))
    sections = [
        ("summary", "Summary", _table(None, [
            ("images", len(paths)),
            ("processed", int(ok.sum())),
            ("failed", len(failed_rows)),
            ("amplifiers", ", ".join(str(a) for a in ds["amp"].values)),
            ("image × amplifier entries flagged", len(flag_rows)),
            ("campaign span", _span(ds)),
            ("catalogue", os.fspath(catalogue) if isinstance(catalogue, (str, os.PathLike))
             else "(dataset)"),
            ("skipperdask", ds.attrs.get("skipperdask_version", "")),
            ("catalogue updated", ds.attrs.get("updated", "")),
        ])),
        ("time", "Metrics against time",
         '<p class="note">One colour per amplifier; ringed in red: flagged images (see the '
         "table below); dotted grey lines: files that failed. Error bars: one standard "
         "deviation.</p>\n" + "\n".join(over_time)),
        ("distributions", "Distributions",
         figure_html(distributions_figure(ds), "distributions", "main metrics over the campaign",
                     "histograms of the main metrics")),
    ]
    if versus is not None:
        sections.append(("versus", f"Against {versus}", figure_html(
            versus_figure(ds, versus, flags=flags), f"versus_{versus}",
            f"main metrics against the header keyword {versus}", f"metrics against {versus}")))
    sections += [
        ("failed", f"Failed files ({len(failed_rows)})",
         _table(("file", "error"), failed_rows) if failed_rows else "<p>None.</p>"),
        ("flagged", f"Flagged images ({len(flag_rows)})",
         _table(("file", "amplifier", "why"), flag_rows) if flag_rows else "<p>None.</p>"),
    ]
    contents = " · ".join(f'<a href="#{anchor}">{html.escape(title)}</a>'
                          for anchor, title, _ in sections)
    body = "\n".join(f'<h2 id="{anchor}">{html.escape(title)}</h2>\n{content}'
                     for anchor, title, content in sections)
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<title>skipperdask campaign report</title>\n"
            f"<style>{_STYLE}</style>\n</head>\n<body>\n<h1>skipperdask campaign report</h1>\n"
            f"<p>{contents}</p>\n{body}\n</body>\n</html>\n")
    index = os.path.join(output_dir, "index.html")
    with open(index, "w", encoding="utf-8") as f:
        f.write(page)
    return index
