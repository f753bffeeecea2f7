"""Shared pytest configuration: hypothesis profile, torch threads, the repository path.

Tests mirror the code: ``tests/<subpackage>/`` holds the unit tests of ``reschrom.<subpackage>``,
``tests/project/`` those of the top-level modules and of the repository itself (config, layout,
docs, hygiene), ``tests/workflow/`` the Snakemake runs (with the shared smoke run in its
``conftest.py``), and ``tests/helpers/`` the builders and utilities the tests import (on ``sys.path``
through ``pythonpath`` in pyproject.toml)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config) -> None:
    """Torch's intra-op threads for the whole session: ``RESCHROM_TEST_THREADS`` (default 1: the tiny
    models run fastest on one thread, and the workflow tests' Snakemake jobs take the other core).
    Results that cross a thread count agree up to float32 rounding only (tests/helpers/rounding.py); run the
    suite with ``RESCHROM_TEST_THREADS=2`` to check that nothing depends on it."""
    import torch

    torch.set_num_threads(int(os.environ.get("RESCHROM_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
