"""The report of a campaign (``skipperdask report``): a self-contained HTML page of a
catalogue, PNG figures beside it, relative links, no script and no server."""


import html
import os
import re

import numpy as np

from ..catalogue import Catalogue
from ..errors import CatalogueError
from .campaign_figures import (
    MAIN_METRICS,
    distributions_figure,
    flagged_images,
    keyword_unit,
    metric_figure,
    ok_images,
    time_sources,
    versus_figure,
    versus_variable,
    x_axis,
)
from .drawing import LABELS, as_datetime, save


def _open_catalogue(catalogue):
    import xarray as xr

    if isinstance(catalogue, xr.Dataset):
        return catalogue
    if not os.path.exists(catalogue):
        raise CatalogueError(f"{catalogue}: no such catalogue")
    try:
        return Catalogue(catalogue).to_dataset()
    except (FileNotFoundError, ValueError, KeyError) as error:  # zarr: "No group found …"
        raise CatalogueError(
            f"{catalogue}: not a skipperdask catalogue (give the .zarr folder a run wrote, "
            "e.g. img_preproc_out.zarr)") from error



def _span(ds):
    x, _ = x_axis(ds)
    if not np.issubdtype(np.asarray(x).dtype, np.datetime64):
        return "no image times"
    times = x[ok_images(ds) & ~np.isnat(x)]
    first, last = times.min(), times.max()
    hours = (last - first) / np.timedelta64(1, "h")
    fmt = "%Y-%m-%d %H:%M:%S"
    sources = time_sources(ds)
    return (f"{as_datetime(first).strftime(fmt)} – {as_datetime(last).strftime(fmt)} UTC, "
            f"{hours:.3g} h" + (f" (processed images' {sources})" if sources else ""))


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
    BadOptionError
        When ``versus`` is not a header keyword of the catalogue (checked before writing).
    CatalogueError
        When there is no such catalogue.
    """
    ds = _open_catalogue(catalogue)
    if versus is not None:
        versus_variable(ds, versus)  # fail before writing anything
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    flags = flagged_images(ds, tail_ratio_limit=tail_ratio_limit, dsdskip_limit=dsdskip_limit)
    ok = ok_images(ds)
    paths = [str(p) for p in ds["path"].values] if "path" in ds else [
        str(i) for i in range(ds.sizes["image"])]
    errors = ds["error"].values if "error" in ds else [""] * len(paths)
    failed_rows = [(paths[i], str(errors[i])) for i in np.flatnonzero(~ok)]
    flag_rows = [(paths[i], amp, "; ".join(why)) for (i, amp), why in sorted(flags.items())]
    limits = {"tailRatio": tail_ratio_limit, "dSdskip": dsdskip_limit}

    def figure_html(figure, stem, title, alt, note=""):
        file = _file_name(f"{stem}.png")
        save(figure, os.path.join(output_dir, file))
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
            versus_figure(ds, versus, flags=flags, unit=keyword_unit(ds, versus)),
            f"versus_{versus}",
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

