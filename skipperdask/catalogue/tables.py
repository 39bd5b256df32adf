"""The catalogue as tables: the CSV (one row per image × amplifier) and the text table of the
original tool (damicm-image-preproc)."""

import csv
import io

import numpy as np

from ..io.layout import SAMPLE_KEYWORDS
from ..io.storage import absolute
from .records import IMAGE_VARIABLES, fill_value, natural_key, storage_dtype

#: the original tool's columns, in its order (the original image_preproc.py's table)
SEED_COLUMNS = (
    "filename",
    "nskips",
    "aveImgS",
    "dSdskip",
    "imgNoise",
    "skNoise",
    "tailRatio",
    "darkCurrent",
    "aduConversion",
)
#: seed columns printed as ``value +/- error``
SEED_WITH_ERRORS = frozenset({"dSdskip", "skNoise", "darkCurrent", "aduConversion"})

#: the unit of each column, on the table's second line (``-`` under the file name, so that the
#: original tool's readers, which skip a line whose first token is all dashes, skip it too)
SEED_UNITS = {
    "filename": "-", "nskips": "samples", "aveImgS": "nats", "dSdskip": "mnats/sample",
    "imgNoise": "ADU", "skNoise": "ADU", "tailRatio": "1", "darkCurrent": "e-/pixel",
    "aduConversion": "ADU/e-", "amp": "",
}


def value_with_error(value, error):
    """``value +/- error`` with the error to two significant digits and the value to the
    same decimal place (``1.354 +/- 0.00050``, ``123 +/- 45``, ``12300 +/- 4500``); the value
    to 4 significant digits when the error is missing (``-1``) or zero."""
    if _missing(value):
        return "-1 +/- -1"
    value = float(value)
    if _missing(error) or not np.isfinite(error) or error <= 0 or not np.isfinite(value):
        return f"{value:.4g} +/- " + ("-1" if _missing(error) else f"{float(error):.2g}")
    error = float(f"{float(error):.2g}")  # two significant digits, rounded as printed
    decimals = 1 - int(np.floor(np.log10(error)))
    if decimals > 0:
        return f"{value:.{decimals}f} +/- {error:.{decimals}f}"
    step = 10.0 ** -decimals
    return f"{round(value / step) * step:.0f} +/- {error:.0f}"



class _Cells:
    """The value of one variable for one row, read from numpy arrays (xarray's indexing, cell by
    cell, makes a table of thousands of rows take seconds)."""

    def __init__(self, ds):
        self.values = {name: var.values for name, var in ds.variables.items()}
        self.per_amp = {name for name, var in ds.variables.items() if "amp" in var.dims}
        self.keywords = {var.attrs["header_keyword"]: name for name, var in ds.variables.items()
                         if "header_keyword" in var.attrs}

    def rows(self, paths=None):
        """(image index, amp index or None) of every row: the amplifiers an image has, or one
        row for an image that has none (a file that failed before its amplifiers were known)."""
        if "path" not in self.values:
            return []
        wanted = None if paths is None else {absolute(p) for p in paths}
        present = self.values["amp_present"]
        rows = []
        for i, path in enumerate(self.values["path"]):
            if wanted is not None and str(path) not in wanted:
                continue
            amps = np.flatnonzero(present[i])
            rows.extend([(i, a) for a in amps] if len(amps) else [(i, None)])
        return rows

    def column(self, name, rows):
        """The values of one variable for ``rows`` (as :meth:`rows` gives them): one array,
        a row of it per table row (as :meth:`__call__` gives them one by one)."""
        values = self.values.get(name)
        if values is None:
            return np.full(len(rows), None, dtype=object)
        images = np.fromiter((i for i, _ in rows), np.int64, len(rows))
        if name not in self.per_amp:
            return values[images]
        if not values.shape[1]:  # no amplifier at all: what was spread over all of them
            fill = fill_value(storage_dtype(values.dtype))
            return np.full((len(rows), *values.shape[2:]), fill, dtype=values.dtype)
        # a row without amplifiers (a failed file) reads the first: all hold its spread value
        amps = np.fromiter((0 if a is None else a for _, a in rows), np.int64, len(rows))
        return values[images, amps]

    def __call__(self, name, i, a):
        """The value, None when the catalogue has no such variable."""
        values = self.values.get(name)
        if values is None:
            return None
        if name not in self.per_amp:
            return values[i]
        if a is None:  # an image without amplifiers: what was spread over all of them
            return values[i, 0] if values.shape[1] else fill_value(storage_dtype(values.dtype))
        return values[i, a]


def _missing(x):
    return x is None or (isinstance(x, float | np.floating) and np.isnan(x))


def _header_samples(cells, i, a):
    """The samples per pixel the header gives (an averaged file keeps the nominal count), or
    None."""
    for keyword in SAMPLE_KEYWORDS:
        name = cells.keywords.get(keyword)
        if name is not None:
            number = cells(name, i, a)
            if not _missing(number) and number >= 1:
                return int(number)
    return None


def _seed_cell(cells, name, i, a):
    value = cells(name, i, a)
    if name == "nskips":
        if value is None or value < 0:
            return "-1"
        if value == 1:  # an averaged file: the original tool's column is the header's count
            value = _header_samples(cells, i, a) or value
        return str(int(value))
    if name not in SEED_WITH_ERRORS:
        return "-1" if _missing(value) else f"{value:.4g}"
    return value_with_error(value, cells(f"{name}_err", i, a))


def format_seed_table(ds, paths=None):
    """The text table of a catalogue, as the original tool's ``image_preproc.py`` writes it.

    tabulate's "simple" format, written without tabulate: a header line, a dashes line, columns
    separated by two spaces, each column at least its header's width + 2, numbers right-aligned,
    text left-aligned. Columns ``filename nskips aveImgS dSdskip imgNoise skNoise tailRatio
    darkCurrent aduConversion``; the file's full path comes first (the original tool's readers
    take the first token); a units line under the header (``-`` under the file name, which the
    original tool's readers skip as they skip the dashes line); plain numbers ``%.4g``; fitted
    values ``value +/- error``, the error to two significant digits and the value to the same
    decimal place (:func:`value_with_error`: ``%.2g`` made gains 1.354 and 1.402 both ``1.4``);
    ``-1`` (``-1 +/- -1``) where missing, and for every value of a failed file. One row per
    image × amplifier; when any file of the table has more than one amplifier, a trailing
    ``amp`` column names it (empty for a failed file whose amplifiers are unknown), so that
    single-amplifier campaigns get exactly the original tool's columns.

    Parameters
    ----------
    ds : xarray.Dataset
        A catalogue (:meth:`Catalogue.to_dataset` or ``xr.open_zarr``).
    paths : iterable of str, optional
        Only these files; default all.

    Returns
    -------
    str
    """
    cells = _Cells(ds)
    # images are stored in commit order; the table lists them in the files' natural order,
    # as the original tool processes them, however the run's commits fell
    rows = sorted(cells.rows(paths), key=lambda row: natural_key(str(cells("path", row[0], None))))
    columns = list(SEED_COLUMNS)
    amp_names = ds.amp.values if "amp" in ds.dims else []
    images = [i for i, _ in rows]
    with_amp = len(set(images)) < len(images)
    if with_amp:
        columns.append("amp")
    table = []
    for i, a in rows:
        line = [str(cells("path", i, a))]
        line += [_seed_cell(cells, name, i, a) for name in SEED_COLUMNS[1:]]
        if with_amp:
            line.append("" if a is None else str(amp_names[a]))
        table.append(line)
    right = [name not in SEED_WITH_ERRORS and name not in ("filename", "amp") for name in columns]
    units = [f"[{SEED_UNITS[name]}]" if SEED_UNITS[name] not in ("-", "") else SEED_UNITS[name]
             for name in columns]
    widths = [
        max([len(name) + 2, len(units[k]), *(len(line[k]) for line in table)])
        for k, name in enumerate(columns)
    ]

    def join(line):
        return "  ".join(
            cell.rjust(w) if r else cell.ljust(w)
            for cell, w, r in zip(line, widths, right, strict=True)
        )

    lines = [join(columns), join(units), "  ".join("-" * w for w in widths), *map(join, table)]
    return "\n".join(lines) + "\n"


def _csv_cell(x):
    if isinstance(x, np.datetime64):
        return "" if np.isnat(x) else np.datetime_as_string(x, unit="auto")
    if isinstance(x, float | np.floating):
        return "" if np.isnan(x) else repr(float(x))
    if isinstance(x, np.integer):
        return str(int(x))
    return str(x)


def _csv_column(values):
    """:func:`_csv_cell` of every value of a 1-D array, a whole column of a kind at once (cell
    by cell, the CSV of a commit of a few hundred images took a third of a second)."""
    kind = values.dtype.kind
    if kind == "f":
        return ["" if x != x else repr(x) for x in values.tolist()]
    if kind in "iubU":
        return [str(x) for x in values.tolist()]
    if kind == "O":
        return [x if type(x) is str else _csv_cell(x) for x in values]
    return [_csv_cell(x) for x in values]


def format_csv(ds):
    """The catalogue as CSV text, one row per image × amplifier.

    Columns: ``path, amp``, the bookkeeping (``status, error, time, time_source, size, mtime,
    elapsed, committed, polarity, polarity_source``), every metric followed by its ``_err``,
    every ``_reason``, ``noise_vs_n_<n>`` for each number of averaged samples, then the header
    keywords. Missing numbers are empty cells; times are ISO 8601 (UTC); floats are written
    with all their digits.

    Parameters
    ----------
    ds : xarray.Dataset
        A catalogue.

    Returns
    -------
    str
    """
    names = [name for name in ds.variables if name not in ds.dims and name != "amp_present"]
    header_names = [n for n in names if "header_keyword" in ds[n].attrs]
    reasons = [n for n in names if n.endswith("_reason")]
    errors = {n for n in names if n.endswith("_err")}
    special = set(IMAGE_VARIABLES) | set(header_names) | set(reasons) | errors | {"noise_vs_n"}
    metric_columns = []
    for name in names:
        if name not in special:
            metric_columns.append(name)
            if f"{name}_err" in errors:
                metric_columns.append(f"{name}_err")
    metric_columns += [n for n in sorted(errors) if n not in metric_columns]
    value_columns = [n for n in IMAGE_VARIABLES[1:] if n in ds] + metric_columns + reasons
    nsamp = ds.nsamp.values if "noise_vs_n" in ds else []
    amp_names = ds.amp.values if "amp" in ds.dims else []

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["path", "amp", *value_columns, *(f"noise_vs_n_{n}" for n in nsamp), *header_names]
    )
    cells = _Cells(ds)
    rows = cells.rows()
    columns = [[str(p) for p in cells.column("path", rows)],
               ["" if a is None else str(amp_names[a]) for _, a in rows]]
    columns += [_csv_column(cells.column(name, rows)) for name in value_columns]
    if len(nsamp) and rows:
        curves = cells.column("noise_vs_n", rows).reshape(len(rows), -1)
        curves = np.broadcast_to(curves, (len(rows), len(nsamp)))
        columns += [_csv_column(curves[:, k]) for k in range(len(nsamp))]
    columns += [_csv_column(cells.column(name, rows)) for name in header_names]
    writer.writerows(zip(*columns, strict=True))
    return out.getvalue()

