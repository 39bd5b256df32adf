"""skipperdask's settings: defaults in ``skipperdask.yaml``, read once at the edge.

The defaults live in ``skipperdask.yaml`` beside this module (read it for what each setting
means) and nowhere else; ``skipperdask-schema.yaml`` is their JSON schema (a test checks the
one against the other, as distributed does for its own settings). Like dask-jobqueue, they are
registered in ``dask.config`` at import, so that ``~/.config/dask/skipperdask.yaml``,
``DASK_SKIPPERDASK__*`` variables and ``dask.config.set`` apply.

The public entry points (the command line, :func:`skipperdask.process`,
:func:`skipperdask.image_metrics`, :func:`skipperdask.open_image`,
:func:`skipperdask.campaign.connect`) read them once, into :class:`Options` and
:class:`ClusterOptions`, and pass those objects down: nothing below them reads
``dask.config``, so a worker computes with the settings its client chose.
"""

import dataclasses
import os

import dask.config
import yaml
from dask.utils import parse_bytes

from .errors import BadOptionError

_here = os.path.dirname(__file__)
_defaults_path = os.path.join(_here, "skipperdask.yaml")
#: the JSON schema of the settings
SCHEMA_PATH = os.path.join(_here, "skipperdask-schema.yaml")
with open(_defaults_path) as f:
    defaults = yaml.safe_load(f)

dask.config.update_defaults(defaults)
dask.config.ensure_file(source=_defaults_path)

BASELINES = ("none", "row-median")
#: how ``watch`` notices new files
OBSERVERS = ("auto", "events", "polling")


def settings():
    """The ``skipperdask`` section of ``dask.config`` as it is now: setting name -> value.

    Names are given with hyphens whatever their spelling: an environment variable
    (``DASK_SKIPPERDASK__DASHBOARD_ADDRESS``) spells them with underscores, and dask keeps the
    defaults under that spelling when it came first."""
    return {name.replace("_", "-"): value
            for name, value in dask.config.get("skipperdask").items()}


class _FromSettings:
    """Options dataclasses built from the settings: each field ``a_b`` is the setting ``a-b``
    (in the section ``_section`` of the settings when a class names one)."""

    _section = None

    @classmethod
    def from_config(cls, **overrides):
        """The options in ``dask.config`` (``skipperdask.*``) now, overridden by the arguments
        that are not None (e.g. ``Options.from_config(baseline="row-median")``)."""
        current = settings()
        if cls._section is not None:
            current = {name.replace("_", "-"): value
                       for name, value in current[cls._section].items()}
        values = {f.name: current[f.name.replace("_", "-")] for f in dataclasses.fields(cls)}
        return cls(**values).updated(**overrides)

    def updated(self, **overrides):
        """These options with the arguments that are not None instead."""
        overrides = {name: value for name, value in overrides.items() if value is not None}
        return dataclasses.replace(self, **overrides) if overrides else self


@dataclasses.dataclass(frozen=True)
class Options(_FromSettings):
    """How the metrics of an image are computed and its pixels read (stored in a catalogue's
    provenance). Build it with :meth:`from_config`; ``skipperdask.yaml`` says what each
    option means.
    """

    polarity: int | None
    baseline: str
    chunk_bytes: int
    whole_file_memory: int
    max_entropy_samples: int
    max_noise_samples: int
    peaks_bin_width: float | str
    fit_acceptance: float
    fit_chi2_tolerance: float
    mask_seed_electrons: int
    mask_halo: int
    mask_hot_threshold: float
    exposure_keywords: tuple
    acquisition_keywords: tuple
    header_variables: int
    #: fsspec's arguments for URL inputs (credentials, perhaps): not compared, not shown, and
    #: left out of :meth:`provenance`
    storage_options: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.polarity not in (None, 1, -1):
            raise BadOptionError(f"polarity must be +1 or -1, not {self.polarity!r}")
        if self.baseline not in BASELINES:
            raise BadOptionError(f"baseline must be one of {BASELINES}, not {self.baseline!r}")
        for name in ("chunk_bytes", "whole_file_memory"):
            value = getattr(self, name)
            if isinstance(value, str):  # "64MiB": frozen, so through object.__setattr__
                object.__setattr__(self, name, parse_bytes(value))
        for name in ("exposure_keywords", "acquisition_keywords"):  # hashable, from YAML lists
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        if len(self.acquisition_keywords) != 2:
            raise BadOptionError("acquisition-keywords must be two header keywords (start, "
                                 f"end), not {list(self.acquisition_keywords)}")
        object.__setattr__(self, "storage_options", dict(self.storage_options or {}))

    def provenance(self):
        """The options as a catalogue keeps them: without the storage options (secrets)."""
        values = dataclasses.asdict(self)
        del values["storage_options"]
        return values



@dataclasses.dataclass(frozen=True)
class ClusterOptions(_FromSettings):
    """Where and how a local or SLURM cluster starts (:func:`skipperdask.campaign.connect`).
    Build it with :meth:`from_config`."""

    workers: int | None
    threads_per_worker: int
    memory_limit: str | int
    host: str
    dashboard_address: str
    malloc_trim_threshold: int
    malloc_mmap_threshold: int

    def __post_init__(self):
        for name in ("malloc_trim_threshold", "malloc_mmap_threshold"):
            object.__setattr__(self, name, parse_bytes(str(getattr(self, name))))


@dataclasses.dataclass(frozen=True)
class AlertOptions(_FromSettings):
    """When an image's amplifier is flagged (``skipperdask.alerts``; docs/watch.md). Build it
    with :meth:`from_config`."""

    _section = "alerts"

    charge_loss_dsdskip: float
    tail_ratio_factor: float
    tail_ratio_minimum: float
    deviation_sigmas: float
    deviation_metrics: tuple
    baseline_window: int
    baseline_minimum: int

    def __post_init__(self):
        metrics = self.deviation_metrics
        object.__setattr__(self, "deviation_metrics",
                           (metrics,) if isinstance(metrics, str) else tuple(metrics))
        if not 1 <= self.baseline_minimum <= self.baseline_window:
            raise BadOptionError("alerts: baseline-minimum must be at least 1 and at most "
                                 f"baseline-window ({self.baseline_window}), not "
                                 f"{self.baseline_minimum}")


@dataclasses.dataclass(frozen=True)
class WatchOptions(_FromSettings):
    """How ``watch`` notices files and decides they are whole (``skipperdask.watch``;
    docs/watch.md). Build it with :meth:`from_config`."""

    _section = "watch"

    observer: str
    poll_seconds: float
    settle_seconds: float
    incomplete_seconds: float
    rescan_seconds: float

    def __post_init__(self):
        if self.observer not in OBSERVERS:
            raise BadOptionError(f"watch: observer must be one of {OBSERVERS}, not "
                                 f"{self.observer!r}")
        if min(self.poll_seconds, self.settle_seconds, self.incomplete_seconds,
               self.rescan_seconds) <= 0:
            raise BadOptionError("watch: poll-seconds, settle-seconds, incomplete-seconds and "
                                 "rescan-seconds must be positive")
