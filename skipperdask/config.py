"""skipperdask's settings, kept in ``dask.config`` under ``skipperdask:``.

The defaults live in ``skipperdask.yaml`` beside this module (read it for what each
setting means); like dask-jobqueue, they are registered once at import and read at
call time, so that ``dask.config.set`` and ``DASK_SKIPPERDASK__*`` variables apply.
"""

import os

import dask.config
import yaml

_defaults_path = os.path.join(os.path.dirname(__file__), "skipperdask.yaml")
with open(_defaults_path) as f:
    defaults = yaml.safe_load(f)

dask.config.update_defaults(defaults)
dask.config.ensure_file(source=_defaults_path)


def get(key, default=None):
    """Read one ``skipperdask.<key>`` setting now.

    Parameters
    ----------
    key : str
        The setting's name in ``skipperdask.yaml`` (e.g. ``"workers"``).
    default : object, optional
        Returned when the setting is absent.
    """
    return dask.config.get(f"skipperdask.{key}", default)
