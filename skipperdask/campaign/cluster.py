"""The Dask client a campaign runs on: a running scheduler, SLURM jobs or a local cluster.

:func:`connect` picks, in this order:

1. ``address``: a running scheduler (``tcp://host:8786``, ``tls://…``);
2. ``scheduler_file``: the JSON file written by ``dask scheduler --scheduler-file``;
3. the ``DASK_SCHEDULER_ADDRESS`` environment variable (Dask's ``scheduler-address``
   setting), which the Dask Kubernetes operator sets in a ``DaskJob``'s job pod;
4. ``slurm=True``: workers as SLURM jobs through dask-jobqueue's ``SLURMCluster``;
5. otherwise a :class:`~distributed.LocalCluster` of worker processes on this machine.

A cluster that :func:`connect` starts is closed when the ``with`` block ends; a running
cluster it only connects to is left running. Unless the user asks otherwise, everything
started here listens on 127.0.0.1 only: distributed's own default dashboard listens on
every interface, which exposes the cluster to the network.
"""

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading

import dask.config
from distributed import Client, LocalCluster

from ..blas import SingleThreadedBLAS
from ..config import ClusterOptions
from ..errors import BadOptionError


@contextlib.contextmanager
def connect(
    address=None,
    scheduler_file=None,
    *,
    slurm=False,
    workers=None,
    threads_per_worker=None,
    memory_limit=None,
    host=None,
    dashboard_address=None,
    options=None,
):
    """A :class:`distributed.Client` for a campaign, as a context manager.

    Parameters
    ----------
    address : str, optional
        Address of a running scheduler, e.g. ``"tcp://10.0.0.5:8786"``.
    scheduler_file : str or os.PathLike, optional
        Scheduler file of a running scheduler (``dask scheduler --scheduler-file``).
    slurm : bool
        Start the workers as SLURM jobs with dask-jobqueue (the ``jobqueue.slurm``
        dask.config profile sizes the jobs; see ``deploy/slurm/jobqueue.yaml``).
    workers : int, optional
        Number of workers. Local cluster: default ``skipperdask.workers``, and when that is
        null, one per core. SLURM: default ``skipperdask.workers``, else one worker job.
    threads_per_worker : int, optional
        Threads of each worker (default ``skipperdask.threads-per-worker``). On SLURM,
        given here it makes each job one worker of that many cores.
    memory_limit : str or int, optional
        Memory of each worker, e.g. ``"4GiB"`` (default ``skipperdask.memory-limit``;
        ``"auto"`` splits the machine's memory between the local workers). On SLURM,
        the memory each job asks for.
    host : str, optional
        Interface the scheduler listens on (default ``skipperdask.host``, 127.0.0.1,
        for a local cluster; on SLURM, the ``jobqueue.slurm`` profile decides unless
        given here, since workers on other nodes must reach the scheduler).
    dashboard_address : str, optional
        Where the dashboard listens (default ``skipperdask.dashboard-address``,
        ``127.0.0.1:8787``; ``":8787"`` would be every interface).
    options : skipperdask.config.ClusterOptions, optional
        The settings the arguments above default to; default from ``dask.config``.

    Yields
    ------
    distributed.Client
        Closed on exit, together with any cluster started here. Its workers' BLAS runs on
        one thread (:class:`skipperdask.blas.SingleThreadedBLAS`, also on a running cluster).

    Raises
    ------
    ImportError
        ``slurm=True`` without dask-jobqueue installed.
    """
    options = (options or ClusterOptions.from_config()).updated(
        threads_per_worker=threads_per_worker, memory_limit=memory_limit, host=host,
        dashboard_address=dashboard_address)
    # ":0" or "8787" names no host: distributed would listen on every interface
    options = options.updated(dashboard_address=on_host(options.dashboard_address,
                                                        options.host or "127.0.0.1"))
    address = address or (None if scheduler_file else _address_from_environment())
    if address is not None or scheduler_file is not None:
        # a running cluster: closing the client leaves it running for its other users
        with Client(address, scheduler_file=_optional_str(scheduler_file)) as client:
            client.register_plugin(SingleThreadedBLAS())
            yield client
        return

    _refuse_in_a_starting_worker()
    if slurm:
        cluster = _slurm_cluster(options, workers, threads_per_worker, memory_limit, host,
                                 dashboard_address)
    else:
        with dask.config.set(worker_allocator_environment(options)), sigint_ignored():
            try:
                cluster = LocalCluster(
                    n_workers=workers if workers is not None else options.workers,
                    threads_per_worker=options.threads_per_worker,
                    memory_limit=options.memory_limit,
                    processes=True,
                    host=options.host,
                    dashboard_address=options.dashboard_address,
                )
            except RuntimeError:
                if _script_without_main_guard():
                    raise BadOptionError(MAIN_GUARD) from None  # the reason, not the trace
                raise
    quiet = contextlib.ExitStack()
    with quiet, cluster, Client(cluster) as client:
        client.register_plugin(SingleThreadedBLAS())
        try:
            yield client
        except BaseException:  # Ctrl-C, an error: what the workers are computing is not wanted
            quiet.enter_context(distributed_logs_silenced())  # until the cluster is closed
            stop_local_workers(client)
            raise


@contextlib.contextmanager
def distributed_logs_silenced():
    """No log lines from distributed in this process inside the block: a local cluster's
    scheduler and nannies, stopping workers on purpose, would warn of lost tasks and of
    workers they kill."""
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def stop_local_workers(client, timeout=0.5):
    """Stop the worker processes of the local cluster of ``client`` within about ``timeout``
    seconds, abandoning their tasks (a Ctrl-C). A polite close waits 4 s for a worker busy in
    a compiled loop before killing it; a run that is over has no use for that task.

    Nothing happens when the cluster is not a :class:`~distributed.LocalCluster`.
    """
    cluster = getattr(client, "cluster", None)
    if not isinstance(cluster, LocalCluster):
        return

    async def close_all():
        await asyncio.gather(*(nanny.close(timeout=timeout) for nanny in cluster.workers.values()),
                             return_exceptions=True)

    with contextlib.suppress(Exception):
        cluster.sync(close_all)


def on_host(address, host):
    """A listening address with ``host`` added when it names none (``":0"``, ``"8787"``):
    nothing listens beyond the host the cluster was given (127.0.0.1 by default) unless a
    host is named explicitly."""
    if address is None:
        return None
    address = str(address).strip()
    if "://" in address:
        return address
    name, _, port = address.rpartition(":")
    if not name:
        return f"{host}:{port or address}"
    return address


MAIN_GUARD = (
    "the local cluster's workers could not start because this script starts a campaign when "
    "it is imported: each worker process imports the script again. Put the call under "
    "`if __name__ == \"__main__\":` (see the README's Python example)"
)


def _script_without_main_guard():
    """Whether ``__main__`` is a script that a worker process would run again on import."""
    main = sys.modules.get("__main__")
    return getattr(main, "__file__", None) is not None and not hasattr(sys, "ps1")


def _refuse_in_a_starting_worker():
    """A worker process importing a script with no main guard would start a cluster of its
    own: end it with one line instead of a traceback per worker."""
    # set while a spawned process imports its parent's script (multiprocessing's own check)
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise SystemExit(f"skipperdask: {MAIN_GUARD}")


@contextlib.contextmanager
def sigint_ignored():
    """Ctrl-C (SIGINT) ignored inside the block, in the main thread only (elsewhere Python
    cannot change a signal's handler).

    Processes started inside inherit the ignored signal: :func:`connect` starts the local
    workers so, since a terminal's Ctrl-C reaches every process of the foreground group and
    would kill them with tracebacks, their nannies restarting them while the client commits
    and closes. :func:`~skipperdask.campaign.process` ignores a second Ctrl-C so while it
    commits after the first.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _allocator_settings(options):
    """glibc malloc settings of a worker: ``MALLOC_TRIM_THRESHOLD_`` and
    ``MALLOC_MMAP_THRESHOLD_`` (bytes) from ``skipperdask.malloc-*``."""
    return {
        "MALLOC_TRIM_THRESHOLD_": str(options.malloc_trim_threshold),
        "MALLOC_MMAP_THRESHOLD_": str(options.malloc_mmap_threshold),
    }


def worker_allocator_environment(options):
    """The ``distributed.nanny.pre-spawn-environ`` settings that keep freed memory for reuse.

    distributed gives each worker ``MALLOC_TRIM_THRESHOLD_=65536`` so that memory goes back
    to the system at once; that also fixes glibc's threshold for ``mmap`` at 128 KiB, so
    every array above it is fresh memory, zeroed by the kernel page by page on first
    touch. The fits of one image make hundreds of such temporaries: measured 2.5 times
    slower (185 against 75 ms for a 200 MB image). Keeping up to 64 MiB of freed memory,
    and serving arrays up to 16 MiB from it, removes that cost.

    Parameters
    ----------
    options : skipperdask.config.ClusterOptions
    """
    return {f"distributed.nanny.pre-spawn-environ.{name}": value
            for name, value in _allocator_settings(options).items()}


def dashboard_link(client):
    """The URL of the client's dashboard, or None when the scheduler serves none.

    Parameters
    ----------
    client : distributed.Client

    Returns
    -------
    str or None
    """
    try:
        return client.dashboard_link
    except KeyError:  # the scheduler runs without the dashboard (bokeh missing)
        return None


def _address_from_environment():
    # read now rather than at import: a job's environment may be set after dask loaded
    return os.environ.get("DASK_SCHEDULER_ADDRESS") or dask.config.get("scheduler-address", None)


def _optional_str(path):
    return None if path is None else os.fspath(path)


def _slurm_cluster(options, workers, threads_per_worker, memory_limit, host, dashboard_address):
    """A dask-jobqueue ``SLURMCluster`` scaled to the requested number of workers.

    Explicit arguments win over the ``jobqueue.slurm`` profile, which wins over the
    ``skipperdask.*`` settings; the profile keeps everything else (queue, account,
    walltime, job directives, interface).
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as error:
        raise ImportError(
            "skipperdask on SLURM needs dask-jobqueue: pip install 'skipperdask[slurm]'"
        ) from error

    profile = dask.config.get("jobqueue.slurm")
    job = {}
    if threads_per_worker is not None:
        job.update(cores=threads_per_worker, processes=1)
    elif profile.get("cores") is None:
        job.update(cores=options.threads_per_worker, processes=1)
    memory = memory_limit or profile.get("memory") or options.memory_limit
    if memory == "auto":
        raise BadOptionError(
            "SLURM jobs need a size of memory: set jobqueue.slurm.memory "
            "(see deploy/slurm/jobqueue.yaml) or give --memory-limit"
        )
    job["memory"] = memory

    scheduler_options = dict(profile.get("scheduler-options") or {})
    if dashboard_address is not None or "dashboard_address" not in scheduler_options:
        scheduler_options["dashboard_address"] = options.dashboard_address
    if host is not None:
        scheduler_options["host"] = host
    exports = [f"export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__{name}={value}"
               for name, value in _allocator_settings(options).items()]
    prologue = [*(profile.get("job-script-prologue") or []), *exports]
    cluster = SLURMCluster(**job, scheduler_options=scheduler_options,
                           job_script_prologue=prologue)
    try:
        cluster.scale(n=workers or options.workers or 1)
    except BaseException:
        cluster.close()
        raise
    return cluster
