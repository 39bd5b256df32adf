"""The campaign catalogue: a Zarr store that ``xr.open_zarr`` opens, a CSV, and the text table
of the original tool (damicm-image-preproc).

Layout of the catalogue (one entry per image × amplifier)
---------------------------------------------------------
Dimensions ``image`` (positional, images in the order they were committed, each commit's in
natural order of their paths), ``amp`` (the union
of the amplifier names of all images, naturally sorted: ``ds.skNoise.sel(amp="CCD_A")``) and
``nsamp`` (the union of the sample counts of ``noise_vs_n``). Values an image does not have
(an amplifier it lacks, a longer ``noise_vs_n``, a failed file) are padded: NaN for floats,
``""`` for strings, ``-1`` for integers (``nskips``), ``False`` for ``amp_present``.

- coordinates ``path`` and ``time`` (image): the file, and when it was taken (the first of the
  ``DATE-OBS``, ``DATEINI``, ``DATESTART``, ``DATE`` header keywords that parses, taken as UTC,
  else the file's modification time; ``time_source`` says which), so that
  ``ds.skNoise.plot.line(x="time")`` works. Times of any year are stored exactly (microseconds
  since 1970): ``xr.open_zarr`` gives datetime64[ns] for years 1678-2262, and
  ``decode_times=xr.coders.CFDatetimeCoder(time_unit="us")`` reads any year;
- strings (``path``, ``status``, ``error``, the ``_reason``s...) read back as Python strings
  (dtype object), so that ``cat.where(cat.status == "ok")``, ``groupby`` and
  ``to_dataframe()`` work on the whole Dataset;
- ``size`` (bytes), ``mtime`` (``os.stat().st_mtime``, seconds), ``status`` (``"ok"`` or
  ``"failed"``), ``error`` (the file-level error message, ``""`` when ok), ``elapsed`` (seconds
  spent on the image), ``committed`` (when it entered the catalogue) over ``image``;
- ``polarity`` (±1; 0 when unknown, as for a failed file; -1 padding where ``amp_present`` is
  False) and ``polarity_source`` (``"option"``, ``"header"``, ``"name"``, ``"data"`` or
  ``"default"``: what decided it) over (image, amp), as the metrics give them (catalogues of
  earlier versions hold one ``polarity`` per image: it spreads over the amplifiers);
- ``amp_present`` (image, amp): whether the file has that amplifier;
- every variable of :func:`skipperdask.metrics.image_metrics`, over (image, amp) or
  (image, amp, nsamp): the metrics, their ``_err`` and their ``_reason``;
- ``flags`` (image, amp): the alerts of :mod:`skipperdask.campaign.alerts`, the reasons joined
  by ``"; "``, ``""`` when none (and for images committed without alerts); a file that failed
  has ``file failed: <problem>`` on every amplifier it has, or on every amplifier of the
  catalogue when it failed before its amplifiers were known (its one CSV row shows it);
- every numeric FITS header keyword (numbers, and strings that read as numbers, as the LTA
  writes them), as float64 variables named as the keyword, with attribute ``header_keyword``
  (a keyword clashing with a name above gets the prefix ``header_``), up to
  ``header-variables`` keyword variables per catalogue (``skipperdask.yaml``, default 400);
  a keyword beyond that limit is kept per image in ``header_json`` (text, JSON
  ``{"primary": {keyword: value}, "amps": {amp: {keyword: value}}}``, ``""`` when none), so no
  file's header can widen the catalogue without bound. A keyword found in any
  amplifier's header is a variable over (image, amp) whose value is the amplifier's, or the
  primary header's when the amplifier's header lacks it (FITS ``INHERIT``); a keyword only ever
  found in primary headers is a variable over ``image``;
- attributes: ``skipperdask_version``, ``options`` (JSON of the last run's options),
  ``created`` and ``updated`` (UTC).

Modules: :mod:`~.records` (a finished image, and the catalogue's arrays built from many),
:mod:`~.store` (the plain Zarr store, appended to, never half-written: the commit protocol),
:mod:`~.zarrio` (how its variables are encoded and its objects written), :mod:`~.tables`
(the CSV and the original tool's text table), :mod:`~.textfiles` (text files written whole or
appended), :mod:`~.writer` (a run's commits, from a thread of their own).
"""

from .records import Entry, ImageRecord, image_time, natural_key
from .store import Catalogue
from .tables import SEED_COLUMNS, format_csv, format_seed_table
from .writer import CatalogueWriter

__all__ = [
    "SEED_COLUMNS", "Catalogue", "CatalogueWriter", "Entry", "ImageRecord", "format_csv",
    "format_seed_table", "image_time", "natural_key",
]
