"""BLAS on one thread: the fits' small SVDs and eigendecompositions are 5-30 times slower
with OpenBLAS's threads on a busy machine, whose cores the Dask workers already share.

:func:`single_threaded_blas` limits the process's BLAS libraries (for the analysis in
:func:`skipperdask.image_metrics` and ``skipperdask inspect``); :class:`SingleThreadedBLAS`
does it once on every worker of a cluster, whoever started it (a local cluster, ``--address``,
SLURM), which environment variables set at a worker's start cannot do.
"""

from distributed.diagnostics.plugin import WorkerPlugin
from threadpoolctl import threadpool_limits


def single_threaded_blas():
    """Limit the BLAS libraries of this process to one thread.

    Returns
    -------
    threadpoolctl.threadpool_limits
        Use it in a ``with`` block to restore the previous limits at its end; otherwise the
        limit stays.
    """
    # numpy and scipy each bring their own OpenBLAS: load scipy's before limiting
    import scipy.linalg  # noqa: F401

    return threadpool_limits(limits=1, user_api="blas")


class SingleThreadedBLAS(WorkerPlugin):
    """A worker plugin that limits the worker's BLAS to one thread when it starts (or joins
    the cluster after :meth:`distributed.Client.register_plugin`)."""

    name = "skipperdask-single-threaded-blas"

    def setup(self, worker):
        single_threaded_blas()
