"""The installed version of skipperdask (kept in a catalogue's provenance)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("skipperdask")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
