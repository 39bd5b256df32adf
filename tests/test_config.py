"""The settings: their defaults against their schema, as distributed checks its own, and the
options objects built from them at the edge."""

import os
import subprocess
import sys

import dask
import jsonschema
import pytest
import yaml

from skipperdask import config
from skipperdask.config import ClusterOptions, Options
from skipperdask.errors import BadOptionError


def schema():
    with open(config.SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def test_the_defaults_follow_the_schema():
    jsonschema.validate(config.defaults, schema())


def test_every_setting_is_described_and_has_a_default():
    described = schema()["properties"]["skipperdask"]["properties"]
    assert set(described) == set(config.defaults["skipperdask"])
    assert all(entry.get("description") for entry in described.values())


@pytest.mark.parametrize(("key", "value"), [
    ("polarity", 2), ("baseline", "row-mean"), ("workers", 0), ("peaks-bin-width", "fine"),
    ("unknown-setting", 1),
])
def test_the_schema_refuses_a_bad_setting(key, value):
    settings = {"skipperdask": config.defaults["skipperdask"] | {key: value}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(settings, schema())


def test_options_come_from_the_settings_once_and_arguments_win():
    with dask.config.set({"skipperdask.baseline": "row-median", "skipperdask.chunk-bytes": "1MiB"}):
        options = Options.from_config(max_noise_samples=7)
        cluster = ClusterOptions.from_config(workers=3)
    assert (options.baseline, options.chunk_bytes, options.max_noise_samples) == (
        "row-median", 2**20, 7)
    assert cluster.workers == 3 and cluster.malloc_trim_threshold == 64 * 2**20
    # built once: a later change of the settings does not reach it
    assert Options.from_config().baseline == "none" and options.baseline == "row-median"
    assert options.updated(baseline=None) is options


def test_a_bad_option_is_a_bad_option_error():
    with pytest.raises(BadOptionError, match="polarity"):
        Options.from_config(polarity=2)
    with pytest.raises(BadOptionError, match="baseline"):
        Options.from_config().updated(baseline="row-mean")


def test_a_setting_from_an_environment_variable_with_underscores(tmp_path):
    """``DASK_SKIPPERDASK__DASHBOARD_ADDRESS`` (underscores, as environment variables are
    written) made every command fail with KeyError: 'dashboard-address'."""
    code = ("from skipperdask.config import ClusterOptions; "
            "print(ClusterOptions.from_config().dashboard_address)")
    environment = {**os.environ, "DASK_SKIPPERDASK__DASHBOARD_ADDRESS": "127.0.0.1:9999"}
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.stdout.strip() == "127.0.0.1:9999", result.stderr
