"""Shared fixtures: where the real data are, and a local Dask cluster with its client."""

import pathlib

import pytest
from distributed import Client, LocalCluster


def _find_real_data():
    """``shared/data/real`` beside the repository (or beside a worktree's parents)."""
    for folder in pathlib.Path(__file__).resolve().parents[1].parents:
        candidate = folder / "shared" / "data" / "real"
        if candidate.is_dir():
            return candidate
    return pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


REAL_DATA = _find_real_data()


@pytest.fixture(scope="session")
def real_data():
    """The directory of real DAMIC-M and SENSEI/LTA files, read in place (never copied)."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data not found at {REAL_DATA} (../shared is absent on this machine)")
    return REAL_DATA


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes on loopback, with a dashboard on a free port
    (so that the command line prints its link), for the tests of one module."""
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def client(cluster):
    """A client of :func:`cluster`."""
    with Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def address(cluster, client):
    """The scheduler's address of :func:`cluster`, its client open."""
    return cluster.scheduler_address
