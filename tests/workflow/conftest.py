"""The one smoke run of the whole workflow that every workflow test reading its outputs shares
(``smoke_run``; ``smoke_copy`` for a test that changes files)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from workflow_utils import SMOKE, BackgroundSnakemake, copy_run, copy_workflow, snapshot


@dataclass(frozen=True)
class SmokeRun:
    """A complete run of ``configs/smoke.yaml`` in a temporary copy of the workflow."""

    wd: Path  # the workdir: read it, never change it (use smoke_copy)
    before: frozenset[str]  # paths below wd before the run
    elapsed: float  # wall seconds of the run
    log: str  # Snakemake's stdout and stderr


# The whole workflow on configs/smoke.yaml, once per test session, through the workstation profile
# (profiles/local: its global gpu limit) on 2 cores. When the session collects a test that uses it,
# it starts in the background right after collection (RESCHROM_SMOKE_BACKGROUND=0: when first
# used), so that it runs beside the unit tests, which take one core.
SMOKE_ARGS = ("--profile", "profiles/local", "--cores", "2", *SMOKE)
_smoke: dict = {}


def _start_smoke(tmp_path_factory) -> None:
    if "run" not in _smoke:
        wd = copy_workflow(tmp_path_factory.mktemp("smoke") / "wf")
        _smoke["before"] = frozenset(snapshot(wd))
        _smoke["run"] = BackgroundSnakemake(wd, *SMOKE_ARGS)


@pytest.hookimpl(trylast=True)  # after -m/-k deselection
def pytest_collection_modifyitems(session, config, items):
    if config.option.collectonly or os.environ.get("RESCHROM_SMOKE_BACKGROUND", "1") == "0":
        return
    if any("smoke_run" in getattr(item, "fixturenames", ()) for item in items):
        factory = getattr(config, "_tmp_path_factory", None)  # pytest's tmp_path_factory
        if factory is not None:
            _start_smoke(factory)


def pytest_sessionfinish(session, exitstatus):
    if "run" in _smoke:
        _smoke["run"].kill()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> SmokeRun:
    """The session's smoke run of the whole workflow, finished (see SMOKE_ARGS)."""
    _start_smoke(tmp_path_factory)
    run = _smoke["run"]
    proc = run.wait(timeout=1500)
    return SmokeRun(run.workdir, _smoke["before"], run.elapsed, proc.stdout + proc.stderr)


@pytest.fixture
def smoke_copy(smoke_run, tmp_path) -> Path:
    """A private copy of the finished smoke run's workdir, for a test that changes files."""
    return copy_run(smoke_run.wd, tmp_path / "wf")
