"""The catalogue's Zarr (format 3) objects: how its variables are encoded, and the two ways a
commit writes them, each object whole (see :mod:`~.store` for the protocol they serve).

- :func:`append`: a batch of images added along ``image``: every array's last, partial chunk
  and the batch's new chunks, each array's metadata (its new shape), then the root
  ``zarr.json`` holding the consolidated metadata: the commit point.
- :func:`write_new`: a whole catalogue into an empty directory (root ``zarr.json`` last).
- :func:`rewrite_in_place`: a whole catalogue over the one on an object store, which has no
  rename: its chunks under the other chunk key encoding (``name/c.0.0`` and ``name/0.0``
  alternate), so that they never overwrite a chunk the committed root refers to; then the
  arrays' metadata, the root (the commit point), and last the old chunks are removed.

They compute every object in memory (a :class:`zarr.storage.MemoryStore`, through zarr's own
codecs) and then put them one by one with :func:`_put` (:mod:`.objects`): locally a temporary
file, ``fsync``, then :func:`os.replace` onto its name; on an object store a PUT. Every object
is at every instant either its old or its new content, never a part.
"""

import asyncio
import contextlib
import json
import os
import re
import warnings

import numpy as np
import zarr
import zarr.api.asynchronous as zarr_async
from xarray import conventions
from xarray.backends.zarr import FillValueCoder, encode_zarr_variable
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync as zarr_sync
from zarr.errors import UnstableSpecificationWarning
from zarr.storage import MemoryStore

from .records import fill_value

#: the chunk key encodings a store's arrays use; a rewrite on an object store alternates them
KEY_ENCODINGS = ("default", "v2")

#: images per chunk along ``image``: 10⁶ images make 245 chunks per array, and an append
#: rewrites at most one partial chunk per array besides its own rows
IMAGE_CHUNK = 4096
#: the layout version, in the root's attributes; older catalogues are converted once
FORMAT = 2
TIME_UNITS = "microseconds since 1970-01-01"
ROOT = "zarr.json"


class Encoded:
    """One variable as stored: its dims, the stored values, attributes, zarr dtype and fill."""

    def __init__(self, dims, values, attrs, dtype, fill):
        self.dims, self.values, self.attrs, self.dtype, self.fill = dims, values, attrs, dtype, fill


def encode(ds):
    """The Dataset's variables as the catalogue stores them, and the group's attributes.

    Strings are variable-length UTF-8 bytes with xarray's ``_Encoding`` (they read back as
    Python strings, dtype object); times are integer microseconds since 1970 (any year);
    everything else as xarray's own Zarr encoder stores it (CF ``_FillValue`` and ``dtype``
    attributes, ``coordinates``)."""
    variables, attrs = conventions.encode_dataset_coordinates(ds)
    encoded = {}
    for name, variable in variables.items():
        raw = variable.dtype
        if raw.kind in "OTUS":
            values = np.empty(variable.shape, dtype=object)
            values.ravel()[:] = [str(x).encode() for x in np.asarray(variable.values).ravel()]
            encoded[name] = Encoded(variable.dims, values, {**variable.attrs, "_Encoding": "utf-8"},
                                    zarr.dtype.VariableLengthBytes(), b"")
            continue
        if raw.kind == "M":
            values = variable.values.astype("datetime64[us]").astype(np.int64)
            encoded[name] = Encoded(
                variable.dims, values,
                {**variable.attrs, "units": TIME_UNITS, "calendar": "proleptic_gregorian"},
                np.dtype(np.int64), 0)
            continue
        variable = encode_zarr_variable(variable, name=name, zarr_format=3)
        variable.attrs = dict(variable.attrs)
        if "_FillValue" in variable.attrs:
            variable.attrs["_FillValue"] = FillValueCoder.encode(variable.attrs["_FillValue"],
                                                                 variable.dtype)
        fill = fill_value(raw)
        encoded[name] = Encoded(variable.dims, variable.values, variable.attrs, variable.dtype,
                                np.asarray(fill).astype(variable.dtype).item())
    return encoded, attrs


async def _create(group, name, enc, shape, key_encoding):
    chunks = (IMAGE_CHUNK, *(max(n, 1) for n in shape[1:])) if len(enc.dims) and \
        enc.dims[0] == "image" else tuple(max(n, 1) for n in shape)
    return await group.create_array(
        name, shape=shape, dtype=enc.dtype, chunks=chunks, dimension_names=enc.dims,
        attributes=enc.attrs, fill_value=enc.fill, overwrite=True,
        chunk_key_encoding={"name": key_encoding, "separator": "."})


def _chunk_key(name, index, ndim, key_encoding="default"):
    prefix = "c." if key_encoding == "default" else ""
    return f"{name}/{prefix}" + ".".join([str(index)] + ["0"] * (ndim - 1))


def _is_chunk(key, key_encoding):
    """Whether a store's key is a chunk of an array under this chunk key encoding."""
    last = key.rpartition("/")[2]
    pattern = r"c(\.\d+)*" if key_encoding == "default" else r"\d+(\.\d+)*"
    return "/" in key and re.fullmatch(pattern, last) is not None


def key_encoding(root):
    """The chunk key encoding of the arrays of a store (its root metadata)."""
    for meta in root["consolidated_metadata"]["metadata"].values():
        if meta.get("node_type") == "array":
            return meta.get("chunk_key_encoding", {}).get("name", "default")
    return "default"


async def _fill(store, encoded, attrs, n_old, key_encoding="default"):
    """Write ``encoded`` (rows ``n_old`` on of every ``image`` variable; coordinates without
    ``image`` whole) into ``store``, whose group holds the first ``n_old`` rows already."""
    group = await zarr_async.open_group(store=store, mode="a", zarr_format=3)
    await group.update_attributes(attrs)

    async def one(name, enc):
        along_image = len(enc.dims) > 0 and enc.dims[0] == "image"
        n_new = enc.values.shape[0] if along_image else 0
        shape = (n_old + n_new, *enc.values.shape[1:]) if along_image else enc.values.shape
        array = None
        if n_old and along_image:
            with contextlib.suppress(Exception):
                array = await zarr_async.open_array(store=store, path=name, zarr_format=3)
        if array is None:
            array = await _create(group, name, enc, shape, key_encoding)
        elif array.shape != shape:
            await array.resize(shape)
        if enc.values.size:
            region = slice(n_old, n_old + n_new) if along_image else Ellipsis
            await array.setitem(region, enc.values)

    await asyncio.gather(*(one(name, enc) for name, enc in encoded.items()))
    await zarr_async.consolidate_metadata(store, zarr_format=3)


def _put(objects, key, data):
    """One object of the store, whole (:mod:`.objects`)."""
    objects.put(key, data)


def _publish(objects, before, after):
    """Put what changed from ``before`` to ``after`` (key -> bytes): chunks, then arrays'
    metadata, then the root ``zarr.json``; chunks that became empty are removed first."""
    for key in before.keys() - after.keys():
        if not key.endswith(ROOT):
            objects.remove(key)
    changed = [(k, v) for k, v in after.items() if before.get(k) != v]
    chunks = [(k, v) for k, v in changed if not k.endswith(ROOT)]
    metadata = [(k, v) for k, v in changed if k.endswith(ROOT) and k != ROOT]
    objects.put_many(lambda key, data: _put(objects, key, data), chunks)
    objects.put_many(lambda key, data: _put(objects, key, data), metadata)
    objects.make_durable([k for k, _ in chunks + metadata])
    if ROOT in after:
        _put(objects, ROOT, after[ROOT])  # the commit point
        objects.make_durable([ROOT])


def _as_bytes(contents):
    return {key: buffer.to_bytes() for key, buffer in contents.items()}


def _to_buffers(contents):
    proto = default_buffer_prototype()
    return {key: proto.buffer.from_bytes(data) for key, data in contents.items()}


def _sync_fill(contents, encoded, attrs, n_old, key_encoding="default"):
    with warnings.catch_warnings():
        # consolidated metadata and variable-length bytes are zarr-python's own extensions of
        # the format 3 specification (as xarray's to_zarr uses them)
        warnings.filterwarnings("ignore", message="Consolidated metadata", module="zarr")
        warnings.filterwarnings("ignore", category=UnstableSpecificationWarning)
        # metadata JSON on one line: with an indent Python's json takes its pure-Python
        # encoder, half of a 40-image first commit's time (175 arrays, their consolidated copy)
        with zarr.config.set({"json_indent": None}):
            zarr_sync(_fill(MemoryStore(store_dict=contents), encoded, attrs, n_old,
                            key_encoding))


def write_new(objects, ds):
    """Write the catalogue ``ds`` as a new store in the empty (or new) place ``objects``."""
    encoded, attrs = encode(ds)
    contents = {}
    _sync_fill(contents, encoded, attrs, 0)
    if not objects.remote:
        os.makedirs(objects.path, exist_ok=True)
    _publish(objects, {}, _as_bytes(contents))


def rewrite_in_place(objects, ds, root):
    """Write the catalogue ``ds`` over the store of an object store (``root``: its root
    metadata, None when nothing was committed), never touching an object the committed root
    refers to before the new root is put (see the module's docstring)."""
    current = "v2" if root is None else key_encoding(root)
    other = next(e for e in KEY_ENCODINGS if e != current)
    encoded, attrs = encode(ds)
    contents = {}
    _sync_fill(contents, encoded, attrs, 0, other)
    after = _as_bytes(contents)
    existing = objects.keys()
    # what a killed rewrite left under the new encoding: removed first (nothing refers to it)
    _publish(objects, {k: b"" for k in existing if _is_chunk(k, other)}, after)
    for key in existing:
        if key not in after and not key.endswith(ROOT):
            objects.remove(key)


def root_metadata(objects):
    """The root ``zarr.json`` of a store, as a dict (None when there is none)."""
    data = objects.read(ROOT)
    return None if data is None else json.loads(data)


def append(objects, ds, n_old, root):
    """Append the images of ``ds`` (whose variables include every stored one, on the stored
    labels) after the ``n_old`` committed ones of the store in ``objects``; ``root`` is its
    root metadata, as :func:`root_metadata` read it under the lock."""
    encoded, attrs = encode(ds)
    stored = root["consolidated_metadata"]["metadata"]
    encoding = key_encoding(root)
    before = {ROOT: json.dumps(root).encode()}
    for name, meta in stored.items():
        # the committed metadata, not the array's own object: a killed rewrite may have
        # replaced that (on an object store)
        before[f"{name}/{ROOT}"] = json.dumps(meta).encode()
        if meta.get("node_type") != "array" or not meta.get("dimension_names") or \
                meta["dimension_names"][0] != "image":
            continue
        if n_old % IMAGE_CHUNK:
            key = _chunk_key(name, n_old // IMAGE_CHUNK, len(meta["shape"]), encoding)
            data = objects.read(key)
            if data is not None:
                before[key] = data
    for name in encoded.keys() - stored.keys():
        # an array of a killed commit, never published: its chunks must not show through
        objects.remove_tree(name)
    contents = _to_buffers(before)
    encoded = {n: e for n, e in encoded.items() if e.dims and e.dims[0] == "image"}
    _sync_fill(contents, encoded, attrs, n_old, encoding)
    after = _as_bytes(contents)
    # chunks of the batch that are all fill: zarr writes none, but a killed commit may have
    n_new = ds.sizes["image"]
    for name, enc in encoded.items():
        for index in range(n_old // IMAGE_CHUNK, (n_old + n_new - 1) // IMAGE_CHUNK + 1):
            key = _chunk_key(name, index, enc.values.ndim, encoding)
            if key not in after:
                before.setdefault(key, b"")
    _publish(objects, before, after)


_CODING = ("_FillValue", "_Encoding", "dtype", "coordinates")


def stored_variables(objects, root):
    """What the store holds, from its root metadata: the labels of ``amp`` and ``nsamp``, and
    every other variable's ``(dims, dtype, attrs)`` as xarray decodes them (dtype object for
    strings, datetime64[us] for times)."""
    metadata = root["consolidated_metadata"]["metadata"]
    labels, variables = {}, {}
    group = None
    for name, meta in metadata.items():
        if meta.get("node_type") != "array":
            continue
        dims = tuple(meta.get("dimension_names") or ())
        attrs = dict(meta.get("attributes", {}))
        if dims == (name,):
            if group is None:  # the arrays as the committed (consolidated) metadata has them
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Consolidated metadata",
                                            module="zarr")
                    group = zarr.open_group(**objects.zarr_arguments(), mode="r",
                                            zarr_format=3, use_consolidated=True)
            values = group[name][...]
            labels[name] = [x.decode() if isinstance(x, bytes) else
                            (str(x) if name == "amp" else x.item()) for x in values]
            continue
        if "_Encoding" in attrs:
            dtype = np.dtype(object)
        elif attrs.get("units") == TIME_UNITS:
            dtype = np.dtype("datetime64[us]")
            attrs.pop("units")
            attrs.pop("calendar", None)
        elif attrs.get("dtype") == "bool":
            dtype = np.dtype(bool)
        else:
            dtype = np.dtype(meta["data_type"])
        variables[name] = (dims, dtype, {k: v for k, v in attrs.items() if k not in _CODING})
    return labels, variables
