"""Shared fixtures: a real (temporary, SQLite) Prefect server for flow tests, and output folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("YIVIDEO_GPU_GATE", "auto")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real Prefect API on a temporary database for the whole session (flows record real state), and
    stage results stored for this session only (core/caching.py never reuses an earlier session's)."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    results = {PREFECT_LOCAL_STORAGE_PATH: tmp_path_factory.mktemp("prefect-results")}
    with prefect_test_harness(server_startup_timeout=120), temporary_settings(results):
        yield


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """Generated media shared by the whole session (generation costs seconds; the files are read-only)."""
    return tmp_path_factory.mktemp("media")


def assert_no_partial_outputs(root: Path) -> None:
    """Nothing half-written (temp files of atomic writes) is left anywhere under `root`."""
    leftovers = [p for p in root.rglob("*") if ".part" in p.name]
    assert not leftovers, f"partial outputs left behind: {leftovers}"
