"""Shared pytest configuration: hypothesis profile, repository paths, and the one smoke run of the
workflow that every workflow test reading its outputs shares (``smoke_run``; ``smoke_copy`` for a
test that changes files)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from workflow_utils import SMOKE, copy_run, copy_workflow, snakemake, snapshot

settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@dataclass(frozen=True)
class SmokeRun:
    """A complete run of ``configs/smoke.yaml`` in a temporary copy of the workflow."""

    wd: Path  # the workdir: read it, never change it (use smoke_copy)
    before: frozenset[str]  # paths below wd before the run
    elapsed: float  # wall seconds of the run
    log: str  # Snakemake's stdout and stderr


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> SmokeRun:
    """The whole workflow on configs/smoke.yaml, once per test session, through the workstation
    profile (profiles/local: its global gpu limit) on 2 cores."""
    wd = copy_workflow(tmp_path_factory.mktemp("smoke") / "wf")
    before = frozenset(snapshot(wd))
    t0 = time.monotonic()
    proc = snakemake(wd, "--profile", "profiles/local", "--cores", "2", *SMOKE, timeout=1500)
    return SmokeRun(wd, before, time.monotonic() - t0, proc.stdout + proc.stderr)


@pytest.fixture
def smoke_copy(smoke_run, tmp_path) -> Path:
    """A private copy of the finished smoke run's workdir, for a test that changes files."""
    return copy_run(smoke_run.wd, tmp_path / "wf")
