"""Simulated images on disk: one image, its truth read back, a campaign."""

import csv
import dataclasses
import datetime
import os
import pathlib

import numpy as np
from astropy.io import fits

from ..errors import BadOptionError, OutputExistsError
from .pixels import AmpSimulation, stored_values
from .truth import STORAGE, Truth

# Truth field -> (header keyword, comment)
_TRUTH_KEYWORDS = {
    "nrows": ("SIMNROW", "simulated rows"),
    "ncols": ("SIMNCOL", "simulated columns"),
    "nskips": ("SIMNSKIP", "simulated samples per pixel"),
    "gain": ("SIMGAIN", "simulated gain [ADU/e-]"),
    "read_noise": ("SIMNOISE", "simulated single-sample noise [ADU]"),
    "dark_current": ("SIMDC", "simulated dark current [e-/pixel]"),
    "pedestal": ("SIMPED", "simulated pedestal [ADU]"),
    "polarity": ("SIMPOL", "simulated polarity (-1: charge lowers value)"),
    "drift": ("SIMDRIFT", "simulated baseline drift [ADU/row]"),
    "drift_kind": ("SIMDKIND", "simulated drift: linear or random_walk"),
    "tracks": ("SIMTRACK", "simulated tracks and blobs per amplifier"),
    "track_charge": ("SIMTRCHG", "simulated track charge [e-/pixel]"),
    "charge_loss": ("SIMCLOSS", "simulated loss probability per e- per sample"),
    "xrays": ("SIMXRAY", "simulated X-ray clusters per amplifier"),
    "hot_columns": ("SIMHOTC", "simulated hot columns per amplifier"),
    "hot_column_current": ("SIMHOTI", "simulated hot-column current [e-/pixel]"),
    "namps": ("SIMNAMPS", "simulated amplifiers"),
    "dtype": ("SIMDTYPE", "simulated storage type"),
    "averaged": ("SIMAVG", "simulated averaged image"),
    "compressed": ("SIMCOMPR", "simulated tile compression"),
    "seed": ("SIMSEED", "simulation seed"),
}

# Truth fields written in the header only when they differ from their default: images
# without them keep the bytes they had before these fields existed
_WRITTEN_WHEN_SET = ("xrays", "hot_columns", "hot_column_current")

# Acquisition keywords of a simulated image, those analysts correlate metrics with;
# write_image(header=...) overrides them.
ACQUISITION_HEADER = {
    "EXPOSURE": 600.0,
    "DATE-OBS": "2025-01-01T00:00:00",
    "DATEINI": "2025-01-01T00:00:00",
    "DATEEND": "2025-01-01T00:10:00",
    "VDD": -22.0,
    "VR": -7.0,
    "VSUB": 70.0,
    "H1AH": 5.0,
    "H1AL": -2.5,
    "V1AH": 3.5,
    "V1AL": -2.0,
    "TEMP": 140.0,
}
_SAMPLE_TIME = 10e-6  # s per sample, for the DATEEND of a campaign's images
_FITS_BLOCK = 2880  # bytes: headers and data are padded to multiples of it
_BLOCK_VALUES = 4_000_000  # values per written block: 32 MB of float64, whatever the image


def write_image(path, truth=Truth(), *, header=None, overwrite=False,  # noqa: B008 (frozen)
                block_rows=None):
    """Write one simulated FITS image.

    Uncompressed images are generated and written in blocks of rows, so memory stays bounded
    whatever the image size; a compressed image holds one amplifier in memory at a time
    (astropy compresses whole arrays). The file is written under a temporary name and renamed
    when complete, so a file with the final name is never half-written.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. Averaged images should have ``Avg`` in their name (the original tool's
        polarity rule); compressed ones conventionally end with ``.fz``.
    truth : Truth
    header : dict, optional
        Keywords added to, or replacing, :data:`ACQUISITION_HEADER` in the primary header.
    overwrite : bool
        Replace an existing file; without it an existing file is an error.
    block_rows : int, optional
        Rows generated and written at a time (default: about 4 million values).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = pathlib.Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists; pass overwrite=True to replace it")
    if block_rows is None:
        block_rows = max(1, _BLOCK_VALUES // (truth.ncols * truth.nskips))
    primary = fits.Header()
    primary.update(ACQUISITION_HEADER)
    primary.update(header or {})
    if not truth.averaged:
        primary["NDCMS"] = (truth.nskips, "samples per pixel")
    partial = path.with_name(path.name + ".part")
    try:
        if truth.compressed:
            _write_compressed(partial, truth, primary, block_rows)
        else:
            _write_streamed(partial, truth, primary, block_rows)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def read_truth(path):
    """The truth of a simulated file, from the ``SIM*`` keywords of its first image header.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Truth
    """
    with fits.open(path) as hdus:
        for hdu in hdus:
            if "SIMGAIN" in hdu.header:
                return Truth(
                    **{
                        field: hdu.header.get(keyword, getattr(Truth, field))
                        if field in _WRITTEN_WHEN_SET
                        else hdu.header[keyword]
                        for field, (keyword, _) in _TRUTH_KEYWORDS.items()
                    }
                )
    raise BadOptionError(f"{path}: no SIM* truth keywords (not a simulated file)")


def simulate_campaign(
    directory, n_images=5, *, seed=0, n_averaged=0, overwrite=False, noise_ramp=0.2,
    **truth_overrides
):
    """Write a small simulated campaign, and its truth as ``truth.csv``.

    Over the campaign the output-drain voltage ``VDD`` rises by 1 V and the read noise with it
    (by ``noise_ramp``, 20 % by default), and the exposure cycles through 300, 600 and 900 s
    with the dark current proportional to it, so that metrics plotted against header keywords
    show something.

    Parameters
    ----------
    directory : str or os.PathLike
        Created if needed. Files are named ``Img_1.fits``, ``Img_2.fits``, ... (the original tool's
        default pattern); averaged ones ``Avg_Img_<i>.fits``; compressed ones end in ``.fz``.
    n_images : int
    seed : int
        Seed of the campaign; each image gets its own seed derived from it.
    n_averaged : int
        The last ``n_averaged`` images are written averaged.
    overwrite : bool
        Replace existing files; without it an existing file is an error (nothing is written).
    noise_ramp : float
        The read noise of the last image is ``1 + noise_ramp`` times that of the first; 0
        gives every image the same noise.
    **truth_overrides
        Fields of :class:`Truth` for every image; ``read_noise`` and ``dark_current`` are the
        values at the start of the campaign and at 600 s exposure.

    Returns
    -------
    list of pathlib.Path
        The images, in order.
    """
    directory = pathlib.Path(directory)
    image_seeds = np.random.SeedSequence(seed).generate_state(n_images)
    base = Truth(**truth_overrides)
    start = datetime.datetime(2025, 1, 1)
    plan = []
    for index in range(n_images):
        fraction = index / max(n_images - 1, 1)
        exposure = (300.0, 600.0, 900.0)[index % 3]
        averaged = base.averaged or index >= n_images - n_averaged
        truth = Truth(
            **{
                **truth_overrides,
                "read_noise": base.read_noise * (1 + noise_ramp * fraction),
                "dark_current": base.dark_current * exposure / 600.0,
                "averaged": averaged,
                "seed": int(image_seeds[index]),
            }
        )
        end = start + datetime.timedelta(
            seconds=exposure + truth.nrows * truth.ncols * truth.nskips * _SAMPLE_TIME
        )
        header = {
            "EXPOSURE": exposure,
            "DATE-OBS": start.isoformat(timespec="seconds"),
            "DATEINI": start.isoformat(timespec="seconds"),
            "DATEEND": end.isoformat(timespec="seconds"),
            "VDD": round(ACQUISITION_HEADER["VDD"] + fraction, 3),
        }
        name = f"{'Avg_' if averaged else ''}Img_{index + 1}.fits"
        if truth.compressed:
            name += ".fz"
        plan.append((directory / name, truth, header))
        start = end
    truth_table = directory / "truth.csv"
    existing = [str(p) for p in [truth_table, *(p for p, _, _ in plan)] if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"already exist: {', '.join(existing)}; pass overwrite=True")
    directory.mkdir(parents=True, exist_ok=True)
    paths = [write_image(p, t, header=h, overwrite=overwrite) for p, t, h in plan]
    with open(truth_table, "w", newline="") as table:
        writer = csv.DictWriter(table, ["filename", *_TRUTH_KEYWORDS, *ACQUISITION_HEADER])
        writer.writeheader()
        for p, t, h in plan:
            writer.writerow(
                {"filename": p.name, **dataclasses.asdict(t), **ACQUISITION_HEADER, **h}
            )
    return paths




def _image_header(truth, amp):
    """Keywords of one amplifier's image HDU: the sample count and the truth."""
    header = fits.Header()
    if truth.namps > 1 or truth.compressed:
        header["EXTNAME"] = f"AMP{amp + 1}"
    if not truth.averaged:
        header["NDCMS"] = (truth.nskips, "samples per pixel")
    for field, (keyword, comment) in _TRUTH_KEYWORDS.items():
        value = getattr(truth, field)
        if field not in _WRITTEN_WHEN_SET or value != getattr(Truth, field):
            header[keyword] = (value, comment)
    return header


def _blocks(truth, amp, block_rows):
    """The stored values of one amplifier (see `stored_values`), block by block of rows."""
    simulation = AmpSimulation(truth, amp)
    for start in range(0, truth.nrows, block_rows):
        stop = min(start + block_rows, truth.nrows)
        values = np.empty((stop - start, truth.ncols, truth.nskips))
        electrons = np.empty((stop - start, truth.ncols), np.int64)
        simulation.rows(start, stop, values, electrons)
        yield stored_values(values, truth)


def _write_streamed(path, truth, primary, block_rows):
    disk_type, bitpix, bzero = STORAGE[truth.dtype]
    shape = (truth.ncols * (1 if truth.averaged else truth.nskips), truth.nrows)  # NAXIS1, 2
    structure = [("BITPIX", bitpix), ("NAXIS", 2), ("NAXIS1", shape[0]), ("NAXIS2", shape[1])]
    scaling = [("BSCALE", 1), ("BZERO", bzero)] if bzero else []
    with open(path, "wb") as out:
        if truth.namps == 1:  # the original tool's layout: the image in the primary HDU
            cards = [("SIMPLE", True), *structure, ("EXTEND", True), *scaling]
            out.write(_header_bytes(cards, primary, _image_header(truth, 0)))
        else:
            cards = [("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0), ("EXTEND", True)]
            out.write(_header_bytes(cards, primary))
        for amp in range(truth.namps):
            if truth.namps > 1:
                cards = [("XTENSION", "IMAGE"), *structure, ("PCOUNT", 0), ("GCOUNT", 1), *scaling]
                out.write(_header_bytes(cards, _image_header(truth, amp)))
            for block in _blocks(truth, amp, block_rows):
                (block - bzero).astype(disk_type).tofile(out)
            size = shape[0] * shape[1] * np.dtype(disk_type).itemsize
            out.write(bytes(-size % _FITS_BLOCK))  # data are padded with zeros


def _header_bytes(structure, *headers):
    """A FITS header block: the mandatory cards in their order, then the given headers."""
    header = fits.Header(structure)
    for extra in headers:
        header.update(extra)
    return header.tostring().encode("ascii")


def _write_compressed(path, truth, primary, block_rows):
    disk_type, _, bzero = STORAGE[truth.dtype]
    # the numbers as astropy holds them in memory: native order, unsigned where BZERO says so
    memory_type = np.dtype(disk_type).newbyteorder("=")
    if bzero:
        memory_type = np.dtype(f"u{memory_type.itemsize}")
    fits.PrimaryHDU(header=primary).writeto(path)
    naxis1 = truth.ncols * (1 if truth.averaged else truth.nskips)
    for amp in range(truth.namps):
        data = np.empty((truth.nrows, naxis1), memory_type)
        for start, block in zip(
            range(0, truth.nrows, block_rows), _blocks(truth, amp, block_rows), strict=True
        ):
            data[start : start + len(block)] = block
        compressed = fits.CompImageHDU(
            data,
            header=_image_header(truth, amp),
            compression_type="GZIP_2" if truth.dtype.startswith("float") else "RICE_1",
            quantize_level=0.0,  # lossless for floats too: the truth must survive
        )
        # one amplifier at a time: closing the file writes the appended HDU and frees it
        with fits.open(path, mode="append") as hdus:
            hdus.append(compressed)

