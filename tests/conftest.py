"""Shared fixtures and helpers: the simulators on loopback (controller.sim.harness), and the
real controller with its admin server running against them."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import looptime
import pytest

from controller.config import Settings
from controller.runtime.admin import AdminServer
from controller.runtime.controller import Controller
from controller.sim.harness import Simulation, simulation, wait_until
from controller.telemetry.logs import configure_logging

Sim = Simulation  # the name the tests use


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first: xdist hands tests out in order, so a long one collected last
    would keep one worker busy while the other idles."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


@dataclass
class Running:
    controller: Controller
    admin: httpx.AsyncClient
    logs: io.StringIO

    async def status(self) -> dict[str, Any]:
        response = await self.admin.get("/status")
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    async def code(self, path: str) -> int:
        return (await self.admin.get(path)).status_code

    async def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.controller.metrics.registry.get_sample_value(name, labels or {})

    def log_events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs.getvalue().splitlines()]


@asynccontextmanager
async def running(
    settings: Settings,
    stop: asyncio.Event | None = None,
    controller_class: type[Controller] = Controller,
    **controller_args: Any,
) -> AsyncIterator[Running]:
    logs = io.StringIO()
    configure_logging("json", "info", settings.secrets(), stream=logs)
    controller = controller_class(settings, **controller_args)
    stop = stop or asyncio.Event()
    async with AdminServer(controller, "127.0.0.1", 0) as admin:
        task = asyncio.create_task(controller.run(stop))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin.port}") as client:
            try:
                yield Running(controller, client, logs)
            finally:
                stop.set()
                await asyncio.wait_for(task, 6.0)


def reason(run: Running) -> str:
    decision = run.controller.decision
    return decision.reason if decision is not None else ""


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    """Wait for `check` to hold; the deadline is generous (a loaded CI machine), it only costs
    time when the test is about to fail anyway."""
    assert await wait_until(check, within), "condition not reached in time"


@pytest.fixture
def minimal_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The least environment `load_settings()` accepts (tests add what they examine)."""
    monkeypatch.setenv("PRESENCE_HEALTH_URL", "http://127.0.0.1:8080/healthz")
    monkeypatch.setenv("PRESENCE_WAWP__INSTANCE_ID", "inst-1")
    monkeypatch.setenv("PRESENCE_WAWP__ACCESS_TOKEN", "s3cr3t-t0ken-value")


async def spawn(env: dict[str, str], quiet: bool = False) -> asyncio.subprocess.Process:
    """`presence-controller run` as a real process with `env`, stdout and stderr piped (or, with
    `quiet`, discarded: a long run nobody reads would fill the pipe and block the process)."""
    output = asyncio.subprocess.DEVNULL if quiet else asyncio.subprocess.PIPE
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller", "run", env=env, stdout=output, stderr=output
    )


def installed(tool: str) -> str:
    """The path of a Debian tool (`make test` installs promtool and prometheus), else skip."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (make test installs Debian's prometheus package)")
    return path


def virtual_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose clock is fake from 0 (looptime): it jumps to the next timer
    whenever nothing else can run."""
    return looptime.patch_event_loop(asyncio.SelectorEventLoop(), start=0.0)


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Any]:
    """The event loop of each async test: a virtual-time one in the modules that say
    `VIRTUAL_TIME = True`, but for tests marked `real_time` (a real process or server outside
    the loop takes real time); asyncio's own for the others."""
    virtual = getattr(getattr(item, "module", None), "VIRTUAL_TIME", False)
    if virtual and item.get_closest_marker("real_time") is None:
        return {"virtual": virtual_loop}
    return {"asyncio": asyncio.new_event_loop}
