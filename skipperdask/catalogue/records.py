"""A finished image (:class:`ImageRecord`) and the catalogue's arrays built from many: every
image is a block of variables with a leading ``image`` dimension; blocks are combined on the
union of their labels, padding what a block does not have (see :mod:`skipperdask.catalogue`
for the layout).
"""

import datetime
import json
import math
import re
from collections import namedtuple
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ..errors import CatalogueError
from ..io.storage import absolute

#: header keywords that date an image, by preference
TIME_KEYWORDS = ("DATE-OBS", "DATEINI", "DATESTART", "DATE")

_digits = re.compile(r"(\d+)")


def natural_key(text):
    """Sort key that orders the numbers inside a string by value (``Img_2`` before ``Img_10``).

    Parameters
    ----------
    text : str

    Returns
    -------
    list
        Alternating text and integer parts; the text parts always sit at even positions, so
        keys of any two strings compare without mixing types.
    """
    return [int(part) if i % 2 else part for i, part in enumerate(_digits.split(text))]

# per-image variables of the catalogue itself; the CSV puts them first, in this order
IMAGE_VARIABLES = (
    "path",
    "status",
    "error",
    "time",
    "time_source",
    "size",
    "mtime",
    "elapsed",
    "committed",
    "polarity",
    "polarity_source",
)
#: the header keywords beyond the limit of keyword variables, per image, as JSON:
#: ``{"primary": {keyword: value}, "amps": {amp: {keyword: value}}}`` ("" when none)
HEADER_JSON = "header_json"
RESERVED = frozenset(IMAGE_VARIABLES) | {"image", "amp", "nsamp", "amp_present", HEADER_JSON}
# bookkeeping the metrics give per amplifier (polarity is decided amplifier by amplifier)
_FROM_METRICS = frozenset({"polarity", "polarity_source"})
_NOT_KEYWORDS = frozenset({"", "COMMENT", "HISTORY"})


@dataclass
class ImageRecord:
    """One finished image, as the pipeline hands it to :meth:`Catalogue.add`.

    Parameters
    ----------
    path : str
        The file (made absolute by the catalogue).
    size : int
        Its size in bytes, ``os.stat().st_size``.
    mtime : float
        Its modification time, ``os.stat().st_mtime``.
    metrics : xarray.Dataset or None
        The result of :func:`skipperdask.metrics.image_metrics`; None when the file failed.
    error : str
        Why the file failed; ``""`` when it did not.
    header : dict
        The primary header's keywords and values.
    amp_headers : dict of str to dict, optional
        Each amplifier's own header keywords, by amplifier name.
    elapsed : float
        Seconds spent on the image.
    """

    path: str
    size: int
    mtime: float
    metrics: xr.Dataset | None = None
    error: str = ""
    header: dict = field(default_factory=dict)
    amp_headers: dict | None = None
    elapsed: float = math.nan

    @property
    def ok(self):
        """Whether the image's metrics were computed."""
        return self.metrics is not None and not self.error


#: what :meth:`Catalogue.processed` says about one file
Entry = namedtuple("Entry", ["size", "mtime", "ok"])

#: the per image × amplifier string of alert reasons (``""``: none), joined by ``"; "``
FLAGS = "flags"


def file_flag(error):
    """The flag of a file that failed, from its error (``path: problem``): ``file failed:
    problem``. The catalogue gives it to every amplifier of the file (to every amplifier of
    the catalogue when the file failed before its amplifiers were known)."""
    problem = error.split(": ", 1)[1] if ": " in error else error
    return f"file failed: {problem or 'no metrics were computed'}"


@dataclass
class _Block:
    nimages: int
    labels: dict  # dim -> list of labels of that block (amp names, nsamp values)
    variables: dict  # name -> (dims, ndarray with image first, attrs)


def storage_dtype(dtype):
    """Strings of any kind become Python objects (variable-length strings in Zarr)."""
    return np.dtype(object) if dtype.kind in "OUST" else dtype


def fill_value(dtype):
    return {"O": "", "f": np.nan, "M": np.datetime64("NaT"), "b": False}.get(dtype.kind, -1)


def _promote(a, b):
    if a == b:
        return a
    if object in (a, b):
        return np.dtype(object)
    return np.result_type(a, b)


def _sorted_labels(labels):
    unique = set(labels)
    if all(isinstance(x, str) for x in unique):
        return sorted(unique, key=natural_key)
    return sorted(unique)


def _outer(index, shape):
    """Outer indexing: slices and one index array do it as they are; more arrays need np.ix_."""
    if sum(isinstance(i, np.ndarray) for i in index) < 2:
        return tuple(index)
    return np.ix_(*(np.arange(n)[i] for i, n in zip(index, shape, strict=True)))


def combine(blocks):
    """One set of arrays from many blocks, on the union of their labels."""
    labels = {}
    for block in blocks:
        for dim, values in block.labels.items():
            labels.setdefault(dim, []).extend(values)
    labels = {dim: _sorted_labels(values) for dim, values in labels.items()}
    positions = {
        dim: {label: i for i, label in enumerate(values)} for dim, values in labels.items()
    }

    specs = {}  # name -> [dims, dtype, attrs]; the widest dims win (header keywords)
    for block in blocks:
        for name, (dims, values, attrs) in block.variables.items():
            spec = specs.setdefault(name, [dims, storage_dtype(values.dtype), {}])
            if len(dims) > len(spec[0]):
                spec[0] = dims
            spec[1] = _promote(spec[1], storage_dtype(values.dtype))
            spec[2] = attrs or spec[2]

    nimages = sum(block.nimages for block in blocks)
    arrays = {}
    for name, (dims, dtype, _) in specs.items():
        shape = (nimages, *(len(labels[dim]) for dim in dims[1:]))
        arrays[name] = np.full(shape, fill_value(dtype), dtype=dtype)

    start = 0
    for block in blocks:
        rows = slice(start, start + block.nimages)
        where = {dim: [positions[dim][x] for x in block.labels[dim]] for dim in block.labels}
        # labels in the union's order: plain slices, much faster than fancy indexing
        where = {
            dim: slice(0, len(w)) if w == list(range(len(w))) else np.array(w, dtype=int)
            for dim, w in where.items()
        }
        for name, (dims, values, _) in block.variables.items():
            full_dims = specs[name][0]
            index = [rows]
            for dim in full_dims[1:]:
                if dim in dims:
                    index.append(where[dim])
                else:  # a primary header keyword that other images have per amplifier:
                    # it applies to the image's own amplifiers (to all when it has none,
                    # a file that failed before they were read)
                    values = np.expand_dims(values, axis=len(index))
                    index.append(where[dim] if block.labels.get(dim) else slice(None))
            arrays[name][_outer(index, arrays[name].shape)] = values
        start += block.nimages

    variables = {name: (spec[0], arrays[name], spec[2]) for name, spec in specs.items()}
    return labels, variables


def block_from_dataset(ds):
    """A stored catalogue as one block."""
    labels = {}
    for dim in ds.dims:
        if dim == "image":
            continue
        values = ds[dim].values if dim in ds.coords else []
        labels[dim] = [str(x) if dim == "amp" else x.item() for x in np.asarray(values)]
    variables = {}
    for name, var in ds.variables.items():
        if name in ds.dims:
            continue
        var = var.transpose("image", ...)
        values = var.values
        if values.dtype.kind in "OUST":
            values = values.astype(object)
        variables[name] = (var.dims, values, dict(var.attrs))
    return _Block(ds.sizes.get("image", 0), labels, variables)


def _number(value):
    """A header value as a float, or None when it is no number (booleans are not numbers)."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _parse_date(value):
    if not isinstance(value, str):
        return None
    try:
        when = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(datetime.UTC).replace(tzinfo=None)
    return np.datetime64(when, "us")  # any year; nanoseconds end in 1678 and 2262


def image_time(record):
    """When an image was taken, and which header keyword said so.

    Parameters
    ----------
    record : ImageRecord

    Returns
    -------
    time : numpy.datetime64
        In microseconds, UTC: the first of :data:`TIME_KEYWORDS` in the primary header, then
        in the amplifiers' headers; else the file's modification time.
    source : str
        That keyword, or ``"mtime"``.
    """
    headers = [record.header or {}, *(record.amp_headers or {}).values()]
    for header in headers:
        for key in TIME_KEYWORDS:
            when = _parse_date(header.get(key))
            if when is not None:
                return when, key
    return np.datetime64(round(record.mtime * 1e6), "us"), "mtime"


def _keyword_variable(key, taken):
    return f"header_{key}" if key in taken else key


class KeywordBudget:
    """Which header keywords become variables: those that already are, and new ones while
    fewer than ``limit`` keyword variables exist (None: no limit); the others are kept per
    image in the ``header_json`` text variable."""

    def __init__(self, existing=(), limit=None):
        self.admitted = set(existing)
        self.limit = limit

    def admit(self, name):
        if name in self.admitted:
            return True
        if self.limit is not None and len(self.admitted) >= self.limit:
            return False
        self.admitted.add(name)
        return True


def block_from_record(record, committed, taken, keywords=None):
    """One finished image as a block of one image; header keywords named as a variable in
    ``taken`` get a prefix; those ``keywords`` (a :class:`KeywordBudget`) does not admit go to
    the ``header_json`` text variable."""
    keywords = keywords or KeywordBudget()
    metrics = record.metrics
    amps = [] if metrics is None else [str(a) for a in metrics["amp"].values]
    amp_headers = {str(a): h for a, h in (record.amp_headers or {}).items()}
    amps += [a for a in amp_headers if a not in amps]
    labels = {"amp": amps}
    variables = {}

    def put(name, dims, values, attrs=None):
        variables[name] = (("image", *dims), np.asarray(values)[np.newaxis], attrs or {})

    if metrics is not None:
        for dim in metrics.dims:
            if dim not in metrics.indexes:
                raise CatalogueError(f"{record.path}: metrics dimension {dim!r} has no coordinate")
            if dim != "amp":
                labels[dim] = [x.item() for x in metrics[dim].values]
        for name, var in metrics.variables.items():
            if name in metrics.dims:
                continue
            if name in RESERVED - _FROM_METRICS:
                raise CatalogueError(
                    f"{record.path}: metrics variable {name!r} is a catalogue name")
            put(name, var.dims, var.values, dict(var.attrs))

    error = record.error or ("" if metrics is not None else "no metrics were computed")
    when, time_source = image_time(record)
    put("path", (), np.array(absolute(record.path), dtype=object))
    put("status", (), np.array("ok" if not error else "failed", dtype=object))
    put("error", (), np.array(error, dtype=object))
    put("time", (), when)
    put("time_source", (), np.array(time_source, dtype=object))
    put("size", (), np.int64(record.size))
    put("mtime", (), np.float64(record.mtime))
    put("elapsed", (), np.float64(record.elapsed))
    put("committed", (), committed)
    if "polarity" not in variables:  # a failed file, or metrics without per-amp polarity
        put("polarity", (), np.int64(0 if metrics is None else metrics.attrs.get("polarity") or 0))
    put("amp_present", ("amp",), np.ones(len(amps), dtype=bool))
    if metrics is None:  # over image only: combine() spreads it over the amplifiers
        put(FLAGS, (), np.array(file_flag(error), dtype=object))

    primary = {}
    for key, value in (record.header or {}).items():
        number = _number(value)
        if key not in _NOT_KEYWORDS and number is not None:
            primary[key] = number
    per_amp = {}
    for a, header in amp_headers.items():
        for key, value in header.items():
            number = _number(value)
            if key not in _NOT_KEYWORDS and number is not None:
                per_amp.setdefault(key, {})[a] = number
    rest = {}
    for key, number in primary.items():
        if key in per_amp:
            continue
        name = _keyword_variable(key, taken)
        if keywords.admit(name):
            put(name, (), np.float64(number), {"header_keyword": key})
        else:
            rest.setdefault("primary", {})[key] = number
    for key, by_amp in per_amp.items():
        name = _keyword_variable(key, taken)
        if not keywords.admit(name):
            for a, number in by_amp.items():
                rest.setdefault("amps", {}).setdefault(a, {})[key] = number
            if key in primary:
                rest.setdefault("primary", {})[key] = primary[key]
            continue
        values = [by_amp.get(a, primary.get(key, np.nan)) for a in amps]
        put(name, ("amp",), np.array(values, dtype=np.float64), {"header_keyword": key})
    if rest:
        put(HEADER_JSON, (), np.array(json.dumps(rest), dtype=object))
    return _Block(1, labels, variables)


def catalogue_dataset(labels, variables, attrs):
    coords = {
        dim: np.array(values, dtype=object if dim == "amp" else None)
        for dim, values in labels.items()
    }
    ds = xr.Dataset(
        {
            name: xr.Variable(dims, values, attrs)
            for name, (dims, values, attrs) in variables.items()
        },
        coords=coords,
        attrs=attrs,
    )
    if "path" in ds:
        ds = ds.set_coords([name for name in ("path", "time") if name in ds])
    return ds

