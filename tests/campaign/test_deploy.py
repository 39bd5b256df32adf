"""The deployment recipes of deploy/: SLURM for real, Kubernetes manifests and the docs checked."""

import contextlib
import io
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import time

import dask.array as da
import dask.config
import pytest
import yaml

from skipperdask.campaign import connect

ROOT = pathlib.Path(__file__).resolve().parents[2]
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


# --- Kubernetes: the image recipe and the manifests ------------------------------------------

KUBERNETES = DEPLOY / "kubernetes"


def _manifests(name):
    return [doc for doc in yaml.safe_load_all((KUBERNETES / name).read_text()) if doc]


def _validate(resource):
    """Strict validation against the Kubernetes schemas (unknown fields are errors too)."""
    import kubernetes_validate

    kubernetes_validate.validate(resource, kubernetes_validate.latest_version(), strict=True)


def test_volume_claims_validate():
    claims = _manifests("pvc.yaml")
    assert [c["kind"] for c in claims] == ["PersistentVolumeClaim"] * 2
    for claim in claims:
        _validate(claim)
    modes = {c["metadata"]["name"]: c["spec"]["accessModes"] for c in claims}
    # the data are read by many worker pods at once; the catalogue by the job runner only
    assert modes == {
        "skipperdask-data": ["ReadOnlyMany"],
        "skipperdask-catalogue": ["ReadWriteOnce"],
    }


def _as_pod(name, pod_spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": pod_spec}


def test_daskjob_has_the_operators_structure_and_valid_pods():
    (job,) = _manifests("daskjob.yaml")
    assert job["apiVersion"] == "kubernetes.dask.org/v1"
    assert job["kind"] == "DaskJob"
    name = job["metadata"]["name"]
    runner = job["spec"]["job"]["spec"]
    cluster = job["spec"]["cluster"]["spec"]
    pods = {
        "runner": runner,
        "worker": cluster["worker"]["spec"],
        "scheduler": cluster["scheduler"]["spec"],
    }
    assert cluster["worker"]["replicas"] >= 1
    for role, pod in pods.items():
        _validate(_as_pod(f"{name}-{role}", pod))
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
    service = cluster["scheduler"]["service"]
    _validate({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": service})
    assert service["type"] == "ClusterIP"  # not exposed: the dashboard is port-forwarded
    assert service["selector"]["dask.org/cluster-name"] == name

    (container,) = runner["containers"]
    args = container["args"]
    assert args[:2] == ["skipperdask", "run"]
    # the scheduler's address comes from DASK_SCHEDULER_ADDRESS, which the operator sets
    assert "--address" not in args and "--scheduler-file" not in args
    catalogue = pathlib.PurePosixPath(args[args.index("--catalogue") + 1])
    data = pathlib.PurePosixPath(args[args.index("--directory") + 1])
    claims = {c["metadata"]["name"] for c in _manifests("pvc.yaml")}

    def mounts(pod, container):
        volumes = {v["name"]: v for v in pod["volumes"]}
        return {
            m["mountPath"]: (volumes[m["name"]], m.get("readOnly", False))
            for m in container["volumeMounts"]
        }

    runner_mounts = mounts(runner, container)
    volume, read_only = runner_mounts[str(data)]
    assert read_only and volume["persistentVolumeClaim"]["claimName"] in claims
    (catalogue_mount,) = [m for m in runner_mounts if catalogue.is_relative_to(m)]
    volume, read_only = runner_mounts[catalogue_mount]
    assert not read_only and volume["persistentVolumeClaim"]["claimName"] in claims
    # the workers read the pixels: the same data at the same path, read-only
    (worker,) = pods["worker"]["containers"]
    assert mounts(pods["worker"], worker)[str(data)][1] is True


def test_the_bucket_daskjob_reads_and_writes_s3_with_the_secrets_credentials():
    """daskjob-s3.yaml: valid pods, no data or catalogue volume, the campaign and the
    catalogue on buckets, the credentials from a Secret in the runner and the workers."""
    (job,) = _manifests("daskjob-s3.yaml")
    runner = job["spec"]["job"]["spec"]
    cluster = job["spec"]["cluster"]["spec"]
    for role, pod in (("runner", runner), ("worker", cluster["worker"]["spec"]),
                      ("scheduler", cluster["scheduler"]["spec"])):
        _validate(_as_pod(f"{job['metadata']['name']}-{role}", pod))
        assert all("persistentVolumeClaim" not in volume for volume in pod["volumes"])
    args = runner["containers"][0]["args"]
    for option in ("--directory", "--catalogue", "--output"):
        assert args[args.index(option) + 1].startswith("s3://")
    for pod in (runner, cluster["worker"]["spec"]):
        names = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
                 for e in pod["containers"][0]["env"]}
        assert names.keys() >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        assert set(names.values()) == {"skipperdask-s3"}


def test_dockerfile_installs_the_project_from_source_as_non_root():
    lines = [
        line.strip()
        for line in (KUBERNETES / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    copied = [line.split()[1:-1] for line in lines if line.startswith("COPY")]
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, absent from the repo"
    assert any(line.startswith(("RUN pip install .", "RUN pip install '.[")) for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER")]
    assert users and users[-1].split(":")[0] not in {"0", "root"}


# --- the commands the recipes and the guide tell users to run exist ---------------------------


def _shell_commands(text):
    """Token lists of the commands in shell text: continuations joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", text)
    for line in text.splitlines():
        line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0]
        for command in re.split(r"&&|\|\||[;|]|&(?=\s|$)", line):
            if command.strip():
                yield shlex.split(command)


def _recipe_commands():
    """Commands in deploy/README.md (bash blocks and inline code), the sbatch script and the
    DaskJob's containers."""
    readme = (DEPLOY / "README.md").read_text()
    texts = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    prose = re.sub(r"```.*?```", "", readme, flags=re.S)
    texts += [span for span in re.findall(r"`([^`\n]+)`", prose) if " " in span]
    sbatch = (SLURM / "skipperdask.sbatch").read_text()
    # its code, and its usage lines ("#   sbatch deploy/slurm/skipperdask.sbatch …")
    texts.append(sbatch)
    texts += re.findall(r"^#\s+(sbatch .*)$", sbatch, flags=re.M)
    commands = [tokens for text in texts for tokens in _shell_commands(text)]
    (job,) = _manifests("daskjob.yaml")
    for pod in (
        job["spec"]["job"]["spec"],
        job["spec"]["cluster"]["spec"]["worker"]["spec"],
        job["spec"]["cluster"]["spec"]["scheduler"]["spec"],
    ):
        commands += [c.get("command", []) + c.get("args", []) for c in pod["containers"]]
    return commands


def _invocations(program):
    """(sub-command, options) of every call of ``program`` in the recipes."""
    found = []
    for tokens in _recipe_commands():
        for i, token in enumerate(tokens):
            if token == program and i + 1 < len(tokens):
                sub, rest = tokens[i + 1], tokens[i + 2 :]
            elif program == "skipperdask" and token.endswith("skipperdask.sbatch"):
                sub, rest = "run", tokens[i + 1 :]  # the script's arguments go to `run`
            else:
                continue
            options = [t.split("=")[0] for t in rest if re.match(r"--?[A-Za-z]", t)]
            found.append((sub, options))
    return found


def _help_options(help_text):
    return set(re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", help_text))


def _skipperdask_help(sub):
    from skipperdask.cli import build_parser

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([sub, "--help"])
    assert exit_info.value.code == 0, f"`skipperdask {sub}` is not a sub-command"
    return out.getvalue()


def test_skipperdask_commands_in_the_recipes_exist():
    """Every `skipperdask` sub-command and option in deploy/ is in its --help."""
    calls = _invocations("skipperdask")
    assert {"run", "--slurm", "--scheduler-file", "--catalogue"} <= {
        word for sub, options in calls for word in [sub, *options]
    }
    # the sbatch script's client is given --scheduler-file
    assert (
        '$client --scheduler-file "$scheduler_file" "$@"'
        in (SLURM / "skipperdask.sbatch").read_text()
    )
    calls.append(("run", ["--scheduler-file"]))
    missing = set()
    for sub in {sub for sub, _ in calls}:
        known = _help_options(_skipperdask_help(sub))
        missing |= {f"{sub} {o}" for s, options in calls if s == sub for o in options} - {
            f"{sub} {o}" for o in known
        }
    assert not missing, f"not in `skipperdask … --help`: {sorted(missing)}"


@pytest.mark.parametrize("sub", ["scheduler", "worker"])
def test_dask_commands_in_the_recipes_exist(sub):
    calls = [options for s, options in _invocations("dask") if s == sub]
    assert calls
    dask_cli = pathlib.Path(sys.executable).parent / "dask"
    command = (
        [str(dask_cli), sub]
        if dask_cli.exists()
        else [sys.executable, "-m", f"distributed.cli.dask_{sub}"]
    )
    help_text = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, check=True
    ).stdout
    missing = {o for options in calls for o in options} - _help_options(help_text)
    assert not missing, f"not in `dask {sub} --help`: {sorted(missing)}"
