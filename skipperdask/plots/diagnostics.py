"""The diagnostics of one image (``skipperdask inspect``): one figure per amplifier with the
average image, the fitted Gaussian-smeared Poisson, the entropy slope, the noise against the
number of averaged samples and the single-sample noise fits (:func:`image_figure` builds it
from an :class:`~skipperdask.metrics.AmpAnalysis`)."""

import os
import re

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator, ScalarFormatter
from scipy.special import erf

from ..config import Options
from ..errors import BadOptionError
from ..fitting import gauss_poisson_counts
from ..fitting.engine import free_heights_model
from ..io import open_image
from ..metrics import analyse_image, sample_noise_histogram
from .drawing import save, say, value_text


def inspect_image(path, *, amp=None, output=None, polarity=None, baseline=None, options=None):
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
    options : skipperdask.config.Options, optional
        Every option; default from ``dask.config``. The arguments above override it.

    Returns
    -------
    list of str
        The PNG files written.
    """
    options = (options or Options.from_config()).updated(polarity=polarity, baseline=baseline)
    pixels = open_image(path, options=options)
    names = [str(a) for a in pixels["amp"].values]
    if amp is not None:
        pixels = pixels.isel(amp=[_amp_index(names, amp, path)])
        names = [str(a) for a in pixels["amp"].values]
    analyses = analyse_image(pixels, options)
    written = []
    for name, analysis in zip(names, analyses, strict=True):
        title = f"{os.path.basename(os.fspath(path))}  amplifier {name}"
        target = _inspect_output(path, output, name, several=len(names) > 1)
        written.append(save(image_figure(analysis, title=title), target))
    return written


def _amp_index(names, amp, path):
    if str(amp) in names:
        return names.index(str(amp))
    if str(amp).lstrip("-").isdigit() and -len(names) <= int(amp) < len(names):
        return int(amp) % len(names)
    raise BadOptionError(f"{path}: no amplifier {amp!r}; it has {', '.join(names)}")


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
        say(ax, "no finite pixel value")
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
        say(ax, "no histogram: " + (reasons.get("skNoise") or "no finite pixel value"))
        return
    ax.stairs(counts, edges, color="black", linewidth=1.0, label="data", gid="data")
    ax.set_yscale("log")
    ax.set_ylim(0.5, max(counts.max(), 1) * 30)  # room above the peaks for the legend
    params = {p: float(getattr(fit, p, np.nan)) for p in ("x0", "sigma", "gain", "lam", "n")}
    if not all(np.isfinite(v) for v in params.values()):
        # without gain and λ the zero-electron peak's area is unknown too: no curve, but
        # what was measured (σ, say) and why the rest is missing
        say(ax, "no model curve\n" + _peaks_summary(analysis), y=0.8)
        residuals_ax.set_yticks([])
        return
    ax.skipperdask_fit = {**params, "method": fit.method}
    legend = [
        f"gain g = {value_text(values['aduConversion'], values['aduConversion_err'])} ADU/e⁻",
        f"noise σ = {value_text(values['skNoise'], values['skNoise_err'])} ADU",
        f"dark current λ = {value_text(values['darkCurrent'], values['darkCurrent_err'])} e⁻/pixel",
        f"resolution σ/g = {value_text(values['resolution'], values['resolution_err'])} e⁻",
        f"reduced χ² = {fit.chi2_reduced:.3g} ({fit.ndof} d.o.f.), fit: {fit.method}",
    ]
    name = "Gaussian-smeared Poisson"
    style = {"color": "tab:red", "linewidth": 1.5}
    heights = np.asarray(getattr(fit, "heights", ()), float)
    if fit.method == "free-heights" and heights.size:
        # the numbers come from the free-heights fit: its own curve (λ = a₁/a₀)
        name = "Gaussian peaks of free heights (λ = a₁/a₀)"
        ax.skipperdask_fit["heights"] = heights
    elif fit.method != "poisson":
        # a fit whose curve is not kept (the fallback): Poisson heights at its parameters,
        # dashed, and say so
        name = "Poisson heights at the fitted x0, σ, g, λ"
        style["linestyle"] = "--"
        note = (f"against the dashed curve; the {fit.method} fit itself has reduced "
                f"χ² = {fit.chi2_reduced:.3g}")
        residuals_ax.text(0.01, 0.95, note, transform=residuals_ax.transAxes, va="top",
                          fontsize=8, color="0.3")
    fine, model = _smooth_model(params, edges, heights)
    ax.plot(fine, model, gid="model", label=f"{name}\n" + "\n".join(legend), **style)
    ax.legend(loc="upper right", fontsize=9, framealpha=0.9)
    expected = _bin_model(params, edges, heights)
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
            lines.append(f"{name} = {value_text(value, error)} {unit}")
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


def _bin_model(params, edges, heights=()):
    """Counts per bin of the Gaussian-smeared Poisson of ``params``, every peak in ``edges``;
    of the free-heights model when its parameters ``heights`` are given."""
    if len(heights):
        return free_heights_model(np.asarray(edges, float), np.asarray(heights, float))[0]
    kmax = max(9, int(np.ceil((edges[-1] - params["x0"]) / params["gain"])) + 2)
    return gauss_poisson_counts(edges, params["n"], params["x0"], params["sigma"],
                                params["gain"], params["lam"], kmax=kmax)


def _smooth_model(params, edges, heights=()):
    """The model on a grid ten times finer, scaled to counts per fitted bin."""
    fine_edges = np.linspace(edges[0], edges[-1], 10 * (len(edges) - 1) + 1)
    per_fine_bin = _bin_model(params, fine_edges, heights)
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
    if analysis.statistics.plan.nskips == 1:  # an averaged file: one point says nothing
        entropy = analysis.values.get("aveImgS", np.nan)
        reason = analysis.reasons.get("dSdskip") or "no single samples to compare"
        say(ax, f"one sample per pixel:\ndSdskip missing:\n{reason}\n\n"
                f"entropy of the image\naveImgS = {entropy:.4g} nats")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if len(entropies):
        ax.plot(index, entropies, "o", color="black", markersize=4, gid="entropies",
                label="entropy of sample i")
    line = analysis.entropy_line
    reason = analysis.reasons.get("dSdskip")
    if reason or line is None:
        say(ax, f"dSdskip missing: {reason or 'no line fitted'}", y=0.85 if len(index) else 0.5)
        ax.set_xlim(-0.5, max(len(index), 1) - 0.5)
        return
    ax.skipperdask_fit = {"slope": line.slope, "intercept": line.intercept,
                          "slope_err": line.slope_err}
    slope = value_text(analysis.values["dSdskip"], analysis.values["dSdskip_err"])
    label = f"fit: dS/dskip = {slope} milli-nats/sample"
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
        say(ax, "no noise fit: " + (reasons[0] if reasons else "too few pixels"))
        return
    if len(levels) == 1:  # an averaged file: one point, no curve against n
        sk = analysis.values.get("skNoise", np.nan)
        say(ax, "one sample per pixel\n(averaged file):\nnothing averaged here\n\n"
                f"noise of the image\nσ = {value_text(sigma[0], error[0])} ADU"
                + (f"\nskNoise (peaks fit)\n= {sk:.3g} ADU" if np.isfinite(sk) else ""))
        ax.skipperdask_fit = {"n": levels[good], "sigma": sigma[good]}
        ax.set_xticks([])
        ax.set_yticks([])
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
        say(ax, "no fit at n = 1: no ideal line", y=0.15)
    sk = analysis.values.get("skNoise", np.nan)
    if np.isfinite(sk):
        ax.plot([levels[-1]], [sk], "*", color="tab:red", markersize=12, gid="skNoise",
                label=f"skNoise (peaks fit) = {sk:.3g} ADU")
    ax.legend(loc="best", fontsize=9)


def _sample_noise_fit_panel(ax, analysis):
    ax.set_gid("sample-noise-fit")
    ax.set_title("(e) first single-sample image: noise fit", loc="left")
    ax.set_xlabel("sample value (ADU)")
    ax.set_ylabel("pixels per bin")
    if not analysis.sample_noise_fits:
        say(ax, "imgNoise missing: " + analysis.reasons.get("imgNoise", "no fit"))
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
        say(ax, f"Gaussian fit failed: {fit.reason}")
        return
    x = np.linspace(edges[0], edges[-1], 400)
    bin_width = np.diff(edges).mean()
    amplitude = fit.amplitude
    if label.startswith("the image"):
        # the fit counted its own bins of the image: scale the fitted Gaussian (μ, σ) to the
        # histogram drawn, by least squares on its bins
        unit = np.diff(0.5 * (1 + erf((edges - fit.mu) / (np.sqrt(2) * fit.sigma))))
        amplitude = float(unit @ counts / max(unit @ unit, 1e-300))
    y = amplitude * bin_width * np.exp(-0.5 * ((x - fit.mu) / fit.sigma) ** 2) / (
        np.sqrt(2 * np.pi) * fit.sigma)
    ax.plot(x, y, color="tab:red", gid="gaussian",
            label=f"Gaussian σ = {value_text(fit.sigma, fit.sigma_err)} ADU")
    ax.skipperdask_fit = {"mu": fit.mu, "sigma": fit.sigma, "amplitude": amplitude}
    ax.set_ylim(0, counts.max() * 1.35)
    ax.legend(loc="upper left", fontsize=9)


def _sample_noise_panel(ax, analysis):
    ax.set_gid("sample-noise")
    ax.set_title("(f) noise of each single sample", loc="left")
    ax.set_xlabel("sample index")
    ax.set_ylabel("σ (ADU)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    fits = analysis.sample_noise_fits
    sigma = np.array([f.sigma for f in fits], float)
    error = np.array([f.sigma_err for f in fits], float)
    index = np.arange(len(fits))
    good = np.isfinite(sigma)
    if not good.any():
        say(ax, "imgNoise missing: " + analysis.reasons.get("imgNoise", "no fit"))
        return
    if len(fits) == 1:  # one sample per pixel: panel (e) shows its fit
        say(ax, "one sample per pixel:\nits noise fit is panel (e)\n\n"
                f"imgNoise =\n{value_text(sigma[0], error[0])} ADU")
        ax.skipperdask_fit = {"sigma": sigma, "imgNoise": analysis.values.get("imgNoise")}
        ax.set_xticks([])
        ax.set_yticks([])
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
