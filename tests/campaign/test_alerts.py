"""Alerts: the rules on hand-made records, then on a real campaign (flags in the catalogue and
its CSV, one alert per problem and none for clean images), and the user's alert command."""

import csv
import json
import os
import re
import stat
import sys

import numpy as np
import pytest
import xarray as xr

from skipperdask.campaign import process
from skipperdask.campaign.alerts import AlertRules
from skipperdask.campaign.notify import AlertCommand, print_alert
from skipperdask.catalogue import ImageRecord
from skipperdask.config import AlertOptions
from skipperdask.errors import BadOptionError
from skipperdask.simulate import Truth, write_image

CLEAN = {"aduConversion": 10.0, "aduConversion_err": 0.03, "skNoise": 0.9, "skNoise_err": 0.007,
         "darkCurrent": 0.1, "darkCurrent_err": 0.004, "tailRatio": 0.0, "dSdskip": 0.1}


def _record(name, amps=("A", "B"), **changes):
    """A finished image whose every amplifier has the clean values, ``changes`` on ``A``."""
    variables = {}
    for metric, value in CLEAN.items():
        values = np.full(len(amps), value)
        values[0] = changes.get(metric, value)
        variables[metric] = ("amp", values)
        if not metric.endswith("_err"):
            reasons = [""] * len(amps)
            reasons[0] = changes.get(f"{metric}_reason", "")
            variables[f"{metric}_reason"] = ("amp", np.array(reasons, dtype=object))
    metrics = xr.Dataset(variables, coords={"amp": list(amps)})
    return ImageRecord(path=f"/data/{name}.fits", size=1, mtime=0.0, metrics=metrics)


def _jitter(i):
    """Small, different values for the clean images: a baseline with a spread."""
    return {"aduConversion": 10.0 + 0.01 * (i % 3 - 1), "skNoise": 0.9 + 0.002 * (i % 5 - 2)}


def test_each_rule_flags_its_problem_and_clean_images_nothing():
    rules = AlertRules(AlertOptions.from_config())
    clean = [rules.check(_record(f"clean_{i}", **_jitter(i))) for i in range(8)]
    assert clean == [[]] * 8
    problems = {
        "tracks": ({"tailRatio": 550.0}, r"tailRatio 550 above 100, its running median 0 "),
        "loss": ({"dSdskip": -13.4, "aduConversion": np.nan, "skNoise": np.nan,
                  "aduConversion_reason": "model does not describe the data"},
                 r"fit failed: aduConversion missing \(model does not describe the data\)"
                 "; charge loss: dSdskip -13.4 < -10 milli-nats per sample$"),
        "noise": ({"skNoise": 1.8}, r"skNoise 1.8 is \d+ sigma above its running median 0.899"),
        "gain": ({"aduConversion": 9.0}, r"aduConversion 9 is \d+ sigma below its running "
                 "median 10"),
        "dark": ({"darkCurrent": 0.2}, r"darkCurrent 0.2 is \d+ sigma above its running "
                 "median 0.1"),
    }
    for name, (changes, expected) in problems.items():
        record = _record(name, **changes)
        alerts = rules.check(record)
        flags = list(record.metrics["flags"].values)
        assert flags[1] == "" and re.match(expected, flags[0]), (name, flags)
        assert [(a.path, a.amp) for a in alerts] == [(record.path, "A")] * len(alerts)
        assert "; ".join(a.reason for a in alerts) == flags[0]
    # the flagged images did not move the baseline: a clean image is still clean
    assert rules.check(_record("clean_again")) == []


def test_no_deviation_before_the_baseline_has_its_minimum():
    rules = AlertRules(AlertOptions.from_config(baseline_minimum=5))
    for i in range(4):
        rules.check(_record(f"clean_{i}", **_jitter(i)))
    assert rules.bands() == {}
    assert rules.check(_record("early", skNoise=5.0)) == []  # and it is learnt: unflagged
    assert rules.bands()["skNoise", "A"][0] == pytest.approx(0.9, abs=0.01)


def test_the_baseline_is_a_bounded_window_that_follows_a_lasting_change():
    options = AlertOptions.from_config(baseline_window=10, baseline_minimum=5,
                                       deviation_metrics=["skNoise"])
    rules = AlertRules(options)
    for i in range(30):
        rules.check(_record(f"clean_{i}", **_jitter(i)))
    median, low, high = rules.bands()["skNoise", "A"]
    assert median == pytest.approx(0.9, abs=0.002) and low < median < high
    assert all(len(baseline) == 10 for baseline in rules._baselines.values())
    assert rules.bands()["tailRatio", "B"] == (0.0, 0.0, 100.0)
    assert set(rules.bands()) == {(m, a) for m in ("skNoise", "tailRatio") for a in "AB"}


def test_a_failed_file_is_one_alert_without_amplifier():
    record = ImageRecord(path="/data/bad.fits", size=10, mtime=0.0,
                         error="/data/bad.fits: truncated file (12 bytes)")
    [alert] = AlertRules(AlertOptions.from_config()).check(record)
    assert (alert.amp, alert.reason) == ("", "file failed: truncated file (12 bytes)")
    assert str(alert) == "/data/bad.fits -: file failed: truncated file (12 bytes)"


def test_thresholds_come_from_the_settings():
    import dask

    with dask.config.set({"skipperdask.alerts.charge-loss-dsdskip": -20.0}):
        options = AlertOptions.from_config()
    assert options.charge_loss_dsdskip == -20.0
    assert AlertRules(options).check(_record("loss", dSdskip=-13.4)) == []
    with pytest.raises(BadOptionError, match="baseline-minimum"):
        AlertOptions.from_config(baseline_minimum=60)


# ----------------------------------------------------------------------------------------------
# On a real campaign

IMAGE = {"nrows": 64, "ncols": 128, "nskips": 20}


@pytest.mark.cluster
def test_a_campaign_flags_its_problems_into_the_catalogue(client, tmp_path):
    clean = [write_image(tmp_path / f"Img_{i}.fits", Truth(**IMAGE, seed=i)) for i in range(1, 7)]
    tracks = write_image(tmp_path / "Img_7.fits", Truth(**IMAGE, tracks=10, seed=7))
    loss = write_image(tmp_path / "Img_8.fits",
                       Truth(**IMAGE, charge_loss=0.03, dark_current=1.0, seed=8))
    truncated = tmp_path / "Img_9.fits"
    truncated.write_bytes(clean[0].read_bytes()[:5000])
    noisy = write_image(tmp_path / "Img_10.fits", Truth(**IMAGE, read_noise=8.0, seed=10))
    store = tmp_path / "cat.zarr"
    rules, alerts = AlertRules(), []
    process([*clean, tracks, loss, truncated], store, client=client, alerts=rules,
            on_alert=alerts.append, progress=False)
    # the same rules go on learning: the noise jump is measured against the clean images
    ds = process([noisy], store, client=client, alerts=rules, on_alert=alerts.append,
                 progress=False)
    flagged = {os.path.basename(a.path) for a in alerts}
    assert flagged == {"Img_7.fits", "Img_8.fits", "Img_9.fits", "Img_10.fits"}
    flags = dict(zip(map(os.path.basename, ds.path.values),
                     ds.flags.isel(amp=0).values, strict=True))
    assert {name for name, flag in flags.items() if flag} == flagged
    assert flags["Img_7.fits"].startswith("tailRatio")
    assert "charge loss: dSdskip" in flags["Img_8.fits"]
    assert flags["Img_8.fits"].startswith("fit failed: aduConversion missing")
    assert flags["Img_9.fits"].startswith("file failed: ")
    assert flags["Img_10.fits"].startswith("skNoise")
    with open(tmp_path / "cat.csv") as f:
        rows = {os.path.basename(row["path"]): row["flags"] for row in csv.DictReader(f)}
    assert rows == flags


# ----------------------------------------------------------------------------------------------
# The user's command


def _recorder(tmp_path):
    """A small script that appends its arguments and environment to a JSON-lines file."""
    script = tmp_path / "record-alert"
    log = tmp_path / "alerts.jsonl"
    script.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                      f"with open({str(log)!r}, 'a') as f:\n"
                      "    names = ('SKIPPERDASK_FILE', 'SKIPPERDASK_AMP', 'SKIPPERDASK_REASON')\n"
                      "    f.write(json.dumps({'argv': sys.argv[1:], "
                      "'env': [os.environ[k] for k in names]}) + '\\n')\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def test_the_alert_command_gets_file_amp_and_reason_and_no_shell(tmp_path, capsys):
    from skipperdask.campaign.alerts import Alert

    script, log = _recorder(tmp_path)
    marker = tmp_path / "injected"
    hostile = Alert(f"/data/x; touch {marker}.fits", "A", f"$(touch {marker}) `touch {marker}`")
    with AlertCommand(f"{script} --tag 'two words'") as command:
        command(hostile)
        command(Alert("/data/y.fits", "", "file failed: truncated"))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines == [
        {"argv": ["--tag", "two words", *hostile], "env": list(hostile)},
        {"argv": ["--tag", "two words", "/data/y.fits", "", "file failed: truncated"],
         "env": ["/data/y.fits", "", "file failed: truncated"]},
    ]
    assert not marker.exists()
    print_alert(hostile)
    assert capsys.readouterr().out == f"alert: {hostile}\n"


def test_a_bad_alert_command_is_a_bad_option(tmp_path):
    with pytest.raises(BadOptionError, match="no such program"):
        AlertCommand(str(tmp_path / "missing-script"))
    with pytest.raises(BadOptionError, match="--on-alert"):
        AlertCommand("post 'unbalanced")
