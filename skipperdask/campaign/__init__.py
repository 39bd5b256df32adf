"""A campaign: many files' metrics on a Dask cluster into a catalogue.

- :mod:`~.files`: which files a run processes (the original tool's rules) and which are new;
- :mod:`~.cluster`: the client (a local cluster on loopback, a running scheduler, SLURM);
- :mod:`~.task`: the work on one file, as :func:`skipperdask.image_metrics` does it;
- :mod:`~.schedule`: :func:`process`, the submission loop it shares with :func:`watch`;
- :mod:`~.alerts`: the alert rules and their running baselines; :mod:`~.notify`: alerts
  printed, and a user's command run for each;
- :mod:`~.arrivals`: files noticed (events or polling) and taken once whole;
  :mod:`~.watch`: :func:`watch`, a directory processed live;
- :mod:`~.progress`: the summary and the progress bar.
"""

from .alerts import Alert, AlertRules
from .cluster import connect, dashboard_link
from .files import files_to_process, select_files, tables_for
from .progress import Progress, Summary
from .schedule import process
from .task import Measured, Split, file_task
from .watch import watch

__all__ = [
    "Alert", "AlertRules", "Measured", "Progress", "Split", "Summary", "connect",
    "dashboard_link", "file_task", "files_to_process", "process", "select_files", "tables_for",
    "watch",
]
