"""The deployment recipes of deploy/: SLURM for real, Kubernetes manifests and the docs checked."""

import os
import pathlib
import shutil
import subprocess
import sys
import time

import dask.array as da
import dask.config
import pytest
import yaml

from skipperdask.cluster import connect

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SLURM = DEPLOY / "slurm"
# where deploy/slurm/start-local-slurm.sh writes its slurm.conf
STARTED_SLURM_CONF = pathlib.Path("/var/lib/skipperdask-slurm/slurm.conf")


# --- SLURM: a single-node SLURM started by deploy/slurm/start-local-slurm.sh ----------------


def _slurm_unavailable():
    """Why SLURM cannot run jobs here, or None when it can."""
    if shutil.which("sinfo") is None:
        return "SLURM is not installed (as root, deploy/slurm/start-local-slurm.sh installs one)"
    try:
        result = subprocess.run(
            ["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 20 s"
    if result.returncode != 0:
        return f"SLURM is not running: {result.stderr.strip()}"
    if not {"idle", "mixed"} & set(result.stdout.split()):
        return f"no SLURM node can take jobs (node states: {result.stdout.split()})"
    return None


@pytest.fixture(scope="module")
def slurm_env():
    """The environment SLURM commands and jobs run in; skips where SLURM does not run."""
    env = dict(os.environ)
    if "SLURM_CONF" not in env and STARTED_SLURM_CONF.exists():
        env["SLURM_CONF"] = str(STARTED_SLURM_CONF)
    # the jobs find dask, skipperdask and python of this environment, and this source tree
    env["PATH"] = os.pathsep.join([str(pathlib.Path(sys.executable).parent), env["PATH"]])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    saved = os.environ.copy()
    os.environ.update(env)  # dask-jobqueue submits with sbatch from this process
    try:
        reason = _slurm_unavailable()
        if reason:
            if os.environ.get("CI") and os.geteuid() == 0:
                # .ci/run starts SLURM as root: a skip there would hide a broken recipe
                pytest.fail(f"SLURM should run in CI: {reason}")
            pytest.skip(reason)
        yield env
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _jobqueue_profile():
    """deploy/slurm/jobqueue.yaml as dotted dask.config keys."""
    profile = yaml.safe_load((SLURM / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    return {f"jobqueue.slurm.{key}": value for key, value in profile.items()}


def _live_jobs(env, job_name):
    """Ids of the jobs of that name still pending or running."""
    result = subprocess.run(
        ["squeue", "--noheader", f"--name={job_name}", "--states=PENDING,RUNNING", "--format=%i"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return result.stdout.split()


def _wait_until_gone(env, job_name):
    """The jobs of that name left after up to 30 s (scancel takes effect asynchronously)."""
    for _ in range(60):
        jobs = _live_jobs(env, job_name)
        if not jobs:
            break
        time.sleep(0.5)
    return jobs


@pytest.mark.slurm
def test_connect_slurm_runs_workers_as_jobs(slurm_env, tmp_path):
    settings = {
        **_jobqueue_profile(),
        "jobqueue.slurm.name": "skipperdask-test-worker",
        "jobqueue.slurm.memory": "1GiB",
        "jobqueue.slurm.walltime": "00:10:00",
        "jobqueue.slurm.log-directory": str(tmp_path),
    }
    with dask.config.set(settings):
        # the scheduler on loopback: the workers run on this same node
        with connect(
            slurm=True, workers=2, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as client:
            client.wait_for_workers(2, timeout=120)
            jobs = _live_jobs(slurm_env, "skipperdask-test-worker")
            assert len(jobs) == 2
            workers = client.scheduler_info()["workers"].values()
            assert {w["nthreads"] for w in workers} == {1}
            assert client.scheduler.address.startswith("tcp://127.0.0.1:")
            total = da.arange(10_000, chunks=500).sum().compute()
            assert total == 10_000 * 9_999 // 2
    # leaving the block cancelled the worker jobs
    assert _wait_until_gone(slurm_env, "skipperdask-test-worker") == []


def _sbatch(env, tmp_path, *arguments, client=None, timeout=180):
    """Run deploy/slurm/skipperdask.sbatch to its end on the single node; its output."""
    env = {
        **env,
        "SKIPPERDASK_SCHEDULER_HOST": "127.0.0.1",
        "SKIPPERDASK_DASHBOARD_ADDRESS": "127.0.0.1:0",
    }
    if client is not None:
        env["SKIPPERDASK_CLIENT"] = client
    output = tmp_path / "job.out"
    command = [
        "sbatch",
        "--wait",
        "--job-name=skipperdask-test",
        f"--chdir={tmp_path}",
        f"--output={output}",
        "--ntasks=2",
        "--cpus-per-task=1",
        "--mem-per-cpu=1G",
        "--time=00:10:00",
        str(SLURM / "skipperdask.sbatch"),
        *arguments,
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    log = output.read_text() if output.exists() else ""
    assert result.returncode == 0, f"{result.stderr}\n--- job output ---\n{log}"
    return log


SUM_CLIENT = """\
import sys
import dask.array as da
from distributed import Client

scheduler_file = sys.argv[sys.argv.index("--scheduler-file") + 1]
with Client(scheduler_file=scheduler_file) as client:
    client.wait_for_workers(2, timeout=60)
    print("workers", len(client.scheduler_info()["workers"]))
    print("sum", da.arange(10_000, chunks=500).sum().compute())
    print("arguments", *sys.argv[sys.argv.index(scheduler_file) + 1:])
"""


@pytest.mark.slurm
def test_sbatch_script_runs_a_client_on_its_own_cluster(slurm_env, tmp_path):
    client_script = tmp_path / "sum_client.py"
    client_script.write_text(SUM_CLIENT)
    log = _sbatch(slurm_env, tmp_path, "-d", "/data", client=f"python {client_script}")
    assert "workers 2" in log
    assert f"sum {10_000 * 9_999 // 2}" in log
    assert "arguments -d /data" in log
    # the cluster went with the job: no scheduler file left, no step running
    assert not list(tmp_path.glob("skipperdask-scheduler-*.json"))
    assert _live_jobs(slurm_env, "skipperdask-test") == []


@pytest.mark.slurm
def test_sbatch_runs_skipperdask(slurm_env, tmp_path):
    """The real thing: `skipperdask run` on the sbatch script's cluster (needs the pipeline)."""
    import xarray as xr

    campaign = tmp_path / "campaign"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "skipperdask",
            "simulate",
            str(campaign),
            "-n",
            "3",
            "--nrows",
            "20",
            "--ncols",
            "40",
            "--nskips",
            "8",
        ],
        env=slurm_env,
        check=True,
        capture_output=True,
    )
    catalogue = tmp_path / "catalogue.zarr"
    _sbatch(
        slurm_env, tmp_path, "-d", str(campaign), "--catalogue", str(catalogue), "--no-progress"
    )
    assert xr.open_zarr(catalogue).sizes["image"] == 3
