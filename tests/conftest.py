"""Shared fixtures: where the real data are, and a temporary directory for FITS files."""

import pathlib

import pytest

REAL_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data():
    """The directory of real DAMIC-M and SENSEI/LTA files, read in place (never copied)."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data not found at {REAL_DATA} (../shared is absent on this machine)")
    return REAL_DATA
