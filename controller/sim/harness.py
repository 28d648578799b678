"""A running simulated consumer and gateway, with settings and environments pointing at them:
shared by the tests and the benchmarks."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from controller.config import Settings
from controller.sim.consumer import SimConsumer
from controller.sim.gateway import SimGateway
from controller.sim.server import LoopbackServer


class Simulation:
    """A simulated consumer and Wawp gateway, served on loopback."""

    def __init__(
        self, consumer: SimConsumer, consumer_url: str, gateway: SimGateway, gateway_url: str
    ) -> None:
        self.consumer, self.consumer_url = consumer, consumer_url
        self.gateway, self.gateway_url = gateway, gateway_url

    def settings(self, **overrides: Any) -> Settings:
        """Fast settings pointing at the simulators (interval 50 ms, rise/fall 2, no hold-down)."""
        values: dict[str, Any] = {
            "health_url": f"{self.consumer_url}/healthz",
            "metrics_url": f"{self.consumer_url}/metrics",
            "interval": 0.05,
            "timeout": 0.04,
            "jitter": 0.0,
            "rise": 2,
            "fall": 2,
            "hold_down": 0,
            "startup_grace": 5,
            "listen": "127.0.0.1:0",
            "wawp": {
                "base_url": self.gateway_url,
                "instance_id": self.gateway.instance_id,
                "access_token": self.gateway.access_token,
                "timeout": 0.5,
            },
        }
        wawp = overrides.pop("wawp", {})
        values.update(overrides)
        values["wawp"].update(wawp)
        return Settings.from_values(**values)

    def env(self, **extra: str) -> dict[str, str]:
        """The same settings as environment variables, for a `presence-controller run` process."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
        env.update(
            OTEL_TRACES_EXPORTER="none",
            PRESENCE_HEALTH_URL=f"{self.consumer_url}/healthz",
            PRESENCE_METRICS_URL=f"{self.consumer_url}/metrics",
            PRESENCE_INTERVAL="50ms",
            PRESENCE_TIMEOUT="40ms",
            PRESENCE_RISE="2",
            PRESENCE_FALL="2",
            PRESENCE_HOLD_DOWN="0",
            PRESENCE_LISTEN="127.0.0.1:0",
            PRESENCE_WAWP__BASE_URL=self.gateway_url,
            PRESENCE_WAWP__INSTANCE_ID=self.gateway.instance_id,
            PRESENCE_WAWP__ACCESS_TOKEN=self.gateway.access_token,
        )
        env.update(extra)
        return env


async def wait_until(check: Callable[[], bool], within: float, poll: float = 0.01) -> bool:
    """Poll `check` until it holds or `within` seconds pass; whether it held."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll)
    return True


@asynccontextmanager
async def simulation() -> AsyncIterator[Simulation]:
    consumer, gateway = SimConsumer(), SimGateway()
    async with (
        LoopbackServer(consumer.app()) as consumer_srv,
        LoopbackServer(gateway.app()) as gateway_srv,
    ):
        yield Simulation(consumer, consumer_srv.url, gateway, gateway_srv.url)
