"""Fault catalogue, part "admin server": idle, slow and too many connections. The kubelet's
probes and the scrapes must keep working, and a flood must cost the pod a bounded amount."""

from __future__ import annotations

import asyncio

import httpx
from conftest import Sim

from controller.runtime.admin import AdminServer
from controller.runtime.controller import Controller

VIRTUAL_TIME = True
"""The async tests of this module wait in virtual time (conftest.pytest_asyncio_loop_factories)."""


async def open_idle(
    port: int, count: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    return [await asyncio.open_connection("127.0.0.1", port) for _ in range(count)]


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except (TimeoutError, ConnectionError):
        return False


async def test_a_slowloris_connection_is_closed_after_the_idle_timeout(sim: Sim) -> None:
    controller = Controller(sim.settings())
    async with AdminServer(controller, "127.0.0.1", 0, idle_timeout=0.5) as admin:
        reader, writer = await asyncio.open_connection("127.0.0.1", admin.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
        await writer.drain()
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(3):  # and keeps trickling bytes
            await asyncio.sleep(0.1)
            writer.write(b"X-Slow: 1\r\n")
        assert await closed_by_server(reader, 10), "closed, not held forever"
        assert loop.time() - started < 10
        writer.close()


async def test_past_the_connection_cap_new_connections_are_closed_and_probes_still_work(
    sim: Sim,
) -> None:
    controller = Controller(sim.settings())
    async with AdminServer(controller, "127.0.0.1", 0, max_connections=8) as admin:
        held = await open_idle(admin.port, 8)
        await asyncio.sleep(0.1)
        extra = await open_idle(admin.port, 20)
        refused = await asyncio.gather(*(closed_by_server(r, 5) for r, _ in extra))
        assert all(refused), "connections past the cap are closed at once"
        for _, writer in held:
            writer.close()
        base = f"http://127.0.0.1:{admin.port}"

        async def answers() -> bool:
            async with httpx.AsyncClient(timeout=2) as client:
                try:
                    return (await client.get(f"{base}/metrics")).status_code == 200
                except httpx.HTTPError:
                    return False

        # Once the idle ones are gone, scrapes are served again.
        ok = False
        for _ in range(50):
            if await answers():
                ok = True
                break
            await asyncio.sleep(0.1)
        assert ok
        for _, writer in extra:
            writer.close()
