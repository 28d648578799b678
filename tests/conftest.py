"""Shared fixtures: the simulated consumer and gateway on loopback (controller.sim.harness)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from controller.sim.harness import Simulation, simulation

Sim = Simulation  # the name the tests use


@pytest.fixture(autouse=True)
def _clean_presence_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees a PRESENCE_* variable it did not set itself."""
    for name in list(os.environ):
        if name.startswith("PRESENCE_"):
            monkeypatch.delenv(name)


@pytest.fixture
async def sim() -> AsyncIterator[Simulation]:
    async with simulation() as running:
        yield running
