"""Shared fixtures: where the real data are, and a temporary directory for FITS files."""

import pathlib

import pytest


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
