"""How a campaign goes: its summary, and a one-line progress bar on a terminal."""

import sys
import time
from dataclasses import dataclass, field


@dataclass
class Summary:
    """How a campaign went; ``errors`` holds the message of each file that failed (it names
    the file), ``seconds`` the run's own time: from its first submission, on a cluster ready,
    to its catalogue committed (the original tool's tables included)."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: float = 0.0
    errors: list = field(default_factory=list)

    @property
    def gbps(self):
        """Input read, GB per second."""
        return self.bytes / 1e9 / self.seconds if self.seconds else 0.0

    def __str__(self):
        return (f"{self.ok} images ok, {self.failed} failed, {self.skipped} skipped in "
                f"{self.seconds:.1f} s ({self.gbps:.2f} GB/s)")


class Progress:
    """A one-line progress bar on a terminal: images done / total, GB/s."""

    def __init__(self, total, enabled=None, stream=None):
        # standard error as it is now, not at import (pytest and notebooks replace it)
        stream = sys.stderr if stream is None else stream
        self.total, self.stream = total, stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.start = time.perf_counter()
        self.last = 0.0

    def update(self, summary, force=False):
        """Redraw the bar, at most five times a second unless ``force``."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        done = summary.ok + summary.failed
        width = 30
        filled = int(width * done / self.total) if self.total else width
        rate = summary.bytes / 1e9 / max(now - self.start, 1e-9)
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} images"
                          f"  {summary.failed} failed  {rate:.2f} GB/s ")
        self.stream.flush()

    def close(self, summary):
        """Draw the bar a last time and end its line."""
        if self.enabled:
            self.update(summary, force=True)
            self.stream.write("\n")
