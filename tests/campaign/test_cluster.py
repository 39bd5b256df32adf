"""skipperdask.campaign.cluster against real clusters: a local one, and one started with
Dask's CLI."""

import json
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import dask.config
import psutil
import pytest
from dask.system import CPU_COUNT
from distributed import as_completed

from skipperdask.campaign import connect, dashboard_link

pytestmark = pytest.mark.cluster

HERE = pathlib.Path(__file__).resolve().parent
REPOSITORY = HERE.parents[1]
LOOPBACK = "127.0.0.1"


def slow_square(x):
    """A task that lasts long enough for a worker to die in the middle of a computation."""
    time.sleep(0.02)
    return x * x


# --- a local cluster -------------------------------------------------------------------------


def listening_addresses(process):
    """The IPs on which a process and its children listen (TCP)."""
    found = set()
    for each in [process, *process.children(recursive=True)]:
        for connection in each.net_connections(kind="inet"):
            if connection.status == psutil.CONN_LISTEN:
                found.add(connection.laddr.ip)
    return found


def test_local_cluster_listens_on_loopback_only():
    # a free port rather than the default 8787, which another run may hold
    with dask.config.set({"skipperdask.dashboard-address": "127.0.0.1:0"}):
        with connect() as client:
            assert client.scheduler.address.startswith(f"tcp://{LOOPBACK}:")
            assert dashboard_link(client).startswith(f"http://{LOOPBACK}:")
            workers = client.scheduler_info()["workers"]
            assert all(address.startswith(f"tcp://{LOOPBACK}:") for address in workers)
            # scheduler, dashboard, workers and nannies: nothing beyond loopback
            assert listening_addresses(psutil.Process()) == {LOOPBACK}
            # process workers, one single-threaded worker per core by default
            worker_pids = client.run(os.getpid)
            assert os.getpid() not in worker_pids.values()
            assert len(workers) == CPU_COUNT
            assert {w["nthreads"] for w in workers.values()} == {1}
            assert client.submit(sum, range(10)).result() == 45
        cluster = client.cluster
    assert cluster.status.name == "closed"


@pytest.mark.parametrize("dashboard", [":0", "0"])
def test_a_dashboard_address_without_host_stays_on_loopback(dashboard):
    """Issue 14: ``--dashboard-address :0`` ("any free port") listened on 0.0.0.0; the link
    printed is the port really bound."""
    with connect(workers=1, dashboard_address=dashboard) as client:
        assert listening_addresses(psutil.Process()) == {LOOPBACK}
        port = client.scheduler_info()["services"]["dashboard"]
        assert dashboard_link(client).startswith(f"http://{LOOPBACK}:{port}/")
        assert port != 0


def test_packaged_defaults_keep_the_cluster_on_loopback():
    assert dask.config.get("skipperdask.host") == LOOPBACK
    assert dask.config.get("skipperdask.dashboard-address").startswith(f"{LOOPBACK}:")


def test_local_cluster_takes_its_size_from_dask_config_and_arguments_win():
    settings = {
        "skipperdask.workers": 1,
        "skipperdask.threads-per-worker": 2,
        "skipperdask.memory-limit": "1GiB",
        "skipperdask.dashboard-address": "127.0.0.1:0",
    }
    with dask.config.set(settings):
        with connect() as client:
            (worker,) = client.scheduler_info()["workers"].values()
            assert worker["nthreads"] == 2
            assert worker["memory_limit"] == 2**30
        with connect(workers=2, threads_per_worker=1, memory_limit="512MiB") as client:
            workers = client.scheduler_info()["workers"].values()
            assert [w["nthreads"] for w in workers] == [1, 1]
            assert {w["memory_limit"] for w in workers} == {2**29}


# --- a cluster started with Dask's own command line ---------------------------------------


def dask_command(name):
    """``dask scheduler`` / ``dask worker`` of this interpreter's environment."""
    dask_cli = pathlib.Path(sys.executable).parent / "dask"
    if dask_cli.exists():
        return [str(dask_cli), name]
    return [sys.executable, "-m", f"distributed.cli.dask_{name}"]


class CommandLineCluster:
    """A scheduler and workers in their own process groups, all on loopback."""

    def __init__(self, directory, tls_options=()):
        self.scheduler_file = directory / "scheduler.json"
        self.directory = directory
        self.tls_options = list(tls_options)
        # the workers import the tasks' functions from the tests and the project's source
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(REPOSITORY)])}
        self.processes = []

    def _start(self, command):
        process = subprocess.Popen(
            command,
            cwd=self.directory,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own group: killing it takes the nanny's worker too
        )
        self.processes.append(process)
        return process

    def start_scheduler(self):
        self._start(
            dask_command("scheduler")
            + ["--host", LOOPBACK, "--port", "0", "--dashboard-address", "127.0.0.1:0"]
            + ["--scheduler-file", str(self.scheduler_file)]
            + (["--protocol", "tls", *self.tls_options] if self.tls_options else [])
        )
        deadline = time.monotonic() + 30
        while not self.scheduler_file.exists():
            assert time.monotonic() < deadline, "dask scheduler wrote no scheduler file in 30 s"
            time.sleep(0.1)
        # the file is written in one go once the scheduler listens, but may be read half-way
        while True:
            try:
                self.address = json.loads(self.scheduler_file.read_text())["address"]
                return
            except json.JSONDecodeError:
                time.sleep(0.1)

    def start_worker(self):
        return self._start(
            dask_command("worker")
            + ["--scheduler-file", str(self.scheduler_file), "--nthreads", "1"]
            + ["--dashboard-address", "127.0.0.1:0", "--local-directory", str(self.directory)]
            + self.tls_options
        )

    @staticmethod
    def kill(process):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _start_cli_cluster(directory, tls_options=()):
    """``dask scheduler`` and two ``dask worker`` processes, stopped whatever happens."""
    cluster = CommandLineCluster(directory, tls_options)
    try:
        cluster.start_scheduler()
        cluster.workers = [cluster.start_worker(), cluster.start_worker()]
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cli_cluster(tmp_path):
    yield from _start_cli_cluster(tmp_path)


def test_explicit_address_scheduler_file_and_environment_reach_a_running_cluster(
    cli_cluster, monkeypatch
):
    assert cli_cluster.address.startswith(f"tcp://{LOOPBACK}:")
    with connect(address=cli_cluster.address) as client:
        client.wait_for_workers(2, timeout=30)
        assert client.cluster is None  # nothing started here
        assert client.submit(sum, range(10)).result() == 45
    # leaving the block closed the client only: the cluster still serves the next one
    with connect(scheduler_file=cli_cluster.scheduler_file) as client:
        assert client.scheduler.address == cli_cluster.address
        assert len(client.scheduler_info()["workers"]) == 2
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cli_cluster.address)
    with connect() as client:
        assert client.scheduler.address == cli_cluster.address
        assert client.cluster is None
    assert all(process.poll() is None for process in cli_cluster.processes)


def test_computation_survives_a_worker_killed_midway(cli_cluster):
    n = 150
    with connect(scheduler_file=cli_cluster.scheduler_file) as client:
        client.wait_for_workers(2, timeout=30)
        futures = client.map(slow_square, range(n))
        done = as_completed(futures)
        for finished, _ in enumerate(done, start=1):
            holding = [keys for keys in client.has_what().values() if keys]
            if finished >= n // 5 and len(holding) == 2:
                break
        # both workers hold results and tasks remain: kill one with its nanny, as a node dies
        assert sum(f.done() for f in futures) < n
        cli_cluster.kill(cli_cluster.workers[0])
        total = client.submit(sum, futures).result(timeout=60)
        assert total == sum(i * i for i in range(n))
        assert len(client.scheduler_info()["workers"]) == 1


# --- TLS, with the certificates and options of deploy/README.md -------------------------------


def make_certificates(directory):
    """A CA and one certificate it signed, as deploy/README.md makes them; their paths."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    common = ["openssl", "req", "-x509", "-newkey", "rsa:3072", "-nodes", "-days", "2"]
    ca, cert, key = (directory / name for name in ("ca.pem", "dask.pem", "dask.key"))
    commands = [
        common
        + ["-subj", "/CN=skipperdask CA", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
        + ["-keyout", str(directory / "ca.key"), "-out", str(ca)],
        common
        + ["-subj", "/CN=dask", "-CA", str(ca), "-CAkey", str(directory / "ca.key")]
        + ["-addext", "basicConstraints=critical,CA:FALSE"]
        + ["-addext", "keyUsage=critical,digitalSignature,keyEncipherment"]
        + ["-addext", "extendedKeyUsage=serverAuth,clientAuth"]
        + ["-keyout", str(key), "-out", str(cert)],
    ]
    for command in commands:
        subprocess.run(command, check=True, capture_output=True)
    return ca, cert, key


@pytest.fixture
def tls_cluster(tmp_path):
    ca, cert, key = make_certificates(tmp_path)
    options = ["--tls-ca-file", str(ca), "--tls-cert", str(cert), "--tls-key", str(key)]
    for cluster in _start_cli_cluster(tmp_path, options):
        cluster.certificates = ca, cert, key
        yield cluster


def test_tls_cluster_takes_clients_with_certificates_only(tls_cluster, tmp_path):
    ca, cert, key = tls_cluster.certificates
    assert tls_cluster.address.startswith(f"tls://{LOOPBACK}:")
    client_tls = {
        "distributed.comm.require-encryption": True,
        "distributed.comm.tls.ca-file": str(ca),
        "distributed.comm.tls.client.cert": str(cert),
        "distributed.comm.tls.client.key": str(key),
    }
    with dask.config.set(client_tls):
        with connect(address=tls_cluster.address) as client:
            client.wait_for_workers(2, timeout=30)
            workers = client.scheduler_info()["workers"]
            assert all(address.startswith(f"tls://{LOOPBACK}:") for address in workers)
            assert client.submit(sum, range(10)).result() == 45
    # a client whose certificate another CA signed is turned away at the handshake
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _, foreign_cert, foreign_key = make_certificates(elsewhere)
    foreign = {
        **client_tls,
        "distributed.comm.tls.client.cert": str(foreign_cert),
        "distributed.comm.tls.client.key": str(foreign_key),
        "distributed.comm.timeouts.connect": "2s",
    }
    with dask.config.set(foreign):
        with pytest.raises(OSError):  # the scheduler ends the TLS handshake
            with connect(address=tls_cluster.address):
                pass


def test_campaign_on_a_running_cluster_survives_a_worker_killed_midway(cli_cluster, tmp_path):
    import threading

    import numpy as np
    import xarray as xr

    from skipperdask.cli import main
    from skipperdask.simulate import simulate_campaign

    data = tmp_path / "data"
    n = 40
    simulate_campaign(data, n, nrows=100, ncols=200, nskips=20, seed=3)
    catalogue = tmp_path / "campaign.zarr"
    with connect(scheduler_file=cli_cluster.scheduler_file) as client:
        client.wait_for_workers(2, timeout=30)

        def images_done():
            # finished tasks are released at once: count them by their prefix's states
            def finished(dask_scheduler):
                prefix = dask_scheduler.task_prefixes.get("image")
                counts = prefix.state_counts if prefix else {}
                return sum(counts.get(s, 0) for s in ("memory", "released", "forgotten"))

            return client.run_on_scheduler(finished)

        status = []
        run = threading.Thread(target=lambda: status.append(main([
            "run", "-d", str(data), "--catalogue", str(catalogue), "--no-progress",
            "--scheduler-file", str(cli_cluster.scheduler_file),
        ])))
        run.start()
        deadline = time.monotonic() + 60
        while images_done() < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run.is_alive(), "the campaign ended before a worker could be killed"
        cli_cluster.kill(cli_cluster.workers[0])
        run.join(timeout=120)
    assert status == [0]
    with xr.open_zarr(catalogue) as done:
        paths = [str(p) for p in done.path.values]
        assert len(paths) == len(set(paths)) == n
        assert set(done.status.values) == {"ok"}
        assert np.isfinite(done.aduConversion.values).all()


def _blas_threads():
    import scipy.linalg  # noqa: F401  (its own OpenBLAS)
    from threadpoolctl import threadpool_info

    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def test_a_ctrl_c_stops_busy_local_workers_at_once(caplog):
    """A worker busy in a long task does not hold the end of an interrupted run: a polite
    close would wait 4 s for it, then kill it with a warning."""
    with pytest.raises(KeyboardInterrupt):
        with connect(workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as client:
            busy = [client.submit(time.sleep, 60, pure=False) for _ in range(2)]
            while sum(len(tasks) for tasks in client.processing().values()) < 2:
                time.sleep(0.05)
            time.sleep(0.5)  # the tasks have started
            pressed = time.perf_counter()
            raise KeyboardInterrupt
    seconds = time.perf_counter() - pressed
    assert seconds < 2, seconds
    assert busy[0].status != "finished"
    assert not [r for r in caplog.records if r.name.startswith("distributed")
                and r.levelno >= logging.WARNING and r.created > time.time() - seconds]


def test_workers_blas_runs_on_one_thread():
    # a worker that would start with two BLAS threads: the plugin of connect limits it
    settings = {"skipperdask.workers": 1, "skipperdask.dashboard-address": "127.0.0.1:0",
                "distributed.nanny.pre-spawn-environ.OPENBLAS_NUM_THREADS": 2,
                "distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": 2}
    with dask.config.set(settings), connect() as client:
        threads = client.submit(_blas_threads, pure=False).result()
    assert threads and set(threads) == {1}


def test_a_script_without_main_guard_gets_the_reason_not_pages_of_tracebacks(tmp_path):
    """Issue 14: ``skipperdask.process`` in a plain script printed 483 lines of "Nanny
    failed to start"; the README's example now has the guard, and without it the user reads
    why."""
    script = tmp_path / "campaign.py"
    script.write_text("import skipperdask\nskipperdask.process([], 'campaign.zarr')\n")
    environment = {**os.environ, "DASK_SKIPPERDASK__WORKERS": "1",
                   "DASK_SKIPPERDASK__DASHBOARD_ADDRESS": "127.0.0.1:0"}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert 'if __name__ == "__main__":' in result.stderr
    assert len(result.stderr.splitlines()) < 40, result.stderr
    assert "Nanny failed to start" not in result.stderr
