"""A running simulated consumer and gateway, with settings and environments pointing at them:
shared by the tests and the benchmarks."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from controller.config import Settings
from controller.sim.consumer import SimConsumer
from controller.sim.gateway import SimGateway
from controller.sim.server import LoopbackServer

TEST_DEFAULTS: dict[str, Any] = {
    "interval": 0.05,
    "timeout": 0.04,
    "jitter": 0.0,
    "rise": 2,
    "fall": 2,
    "hold_down": 0,
    "startup_grace": 5,
    "listen": "127.0.0.1:0",
    # The tests flip the consumer many times a minute on purpose: damping (which would hold the
    # bot offline after the third outage) is tested on its own.
    "damping": {"enabled": False},
}
"""The one set of fast settings the tests and benchmarks run the controller with (interval
50 ms, rise/fall 2, no hold-down, no jitter, no damping)."""


class Simulation:
    """A simulated consumer and gateway (Wawp, WAHA or Evolution API), served on loopback."""

    def __init__(
        self, consumer: SimConsumer, consumer_url: str, gateway: SimGateway, gateway_url: str
    ) -> None:
        self.consumer, self.consumer_url = consumer, consumer_url
        self.gateway, self.gateway_url = gateway, gateway_url

    def settings(self, **overrides: Any) -> Settings:
        """Fast settings pointing at the simulators (TEST_DEFAULTS), `overrides` on top."""
        values: dict[str, Any] = {
            "health_url": f"{self.consumer_url}/healthz",
            "metrics_url": f"{self.consumer_url}/metrics",
            **TEST_DEFAULTS,
            **gateway_values(self.gateway, self.gateway_url, timeout=0.5),
        }
        provider = self.gateway.provider
        block = overrides.pop(provider, {})
        values.update(overrides)
        values[provider].update(block)
        return Settings.from_values(**values)

    def env(self, **extra: str) -> dict[str, str]:
        """The same settings as environment variables, for a `presence-controller run` process
        (the gateway's own timeout left at its default)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
        values = {
            "health_url": f"{self.consumer_url}/healthz",
            "metrics_url": f"{self.consumer_url}/metrics",
            **TEST_DEFAULTS,
            **gateway_values(self.gateway, self.gateway_url),
        }
        env.update(OTEL_TRACES_EXPORTER="none", **as_environment(values))
        env.update(extra)
        return env


def as_environment(values: dict[str, Any], prefix: str = "PRESENCE_") -> dict[str, str]:
    """Settings values as PRESENCE_* variables: nested blocks joined with `__`, booleans in
    lower case."""
    out: dict[str, str] = {}
    for name, value in values.items():
        key = f"{prefix}{name.upper()}"
        if isinstance(value, dict):
            out.update(as_environment(value, f"{key}__"))
        else:
            out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def gateway_values(gateway: SimGateway, url: str, **block: Any) -> dict[str, Any]:
    """The settings that point a controller at `gateway` (served at `url`): the provider and
    its block (`wawp: {...}`, `waha: {...}`, `evolution: {...}`), `block` added to it."""
    provider = gateway.provider
    values: dict[str, Any] = {"base_url": url}
    if provider == "wawp":
        values.update(instance_id=gateway.instance_id, access_token=gateway.access_token)
    elif provider == "waha":
        values["session"] = gateway.instance_id
        if gateway.access_token is not None:
            values["api_key"] = gateway.access_token
    else:
        values.update(instance=gateway.instance_id, api_key=gateway.access_token)
    values.update(block)
    return {"provider": provider, provider: values}


async def wait_until(check: Callable[[], bool], within: float, poll: float = 0.01) -> bool:
    """Poll `check` until it holds or `within` seconds pass, by the event loop's clock (so in
    virtual time under a fake one); whether it held."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(poll)
    return True


@asynccontextmanager
async def simulation(provider: str = "wawp") -> AsyncIterator[Simulation]:
    consumer, gateway = SimConsumer(), SimGateway(provider=provider)
    async with (
        LoopbackServer(consumer.app()) as consumer_srv,
        LoopbackServer(gateway.app()) as gateway_srv,
    ):
        yield Simulation(consumer, consumer_srv.url, gateway, gateway_srv.url)


def witness_values(gateway: SimGateway, url: str, **extra: Any) -> dict[str, Any]:
    """The `witness` block that points a controller at the witness session of `gateway`
    (served at `url`), `extra` added to it."""
    w = gateway.witness
    assert w is not None, "the gateway has no witness session"
    provider = gateway.provider
    values: dict[str, Any] = {
        "enabled": True, "provider": provider, "base_url": url, "bot_chat_id": w.bot_chat_id,
    }  # fmt: skip
    if provider == "wawp":
        values.update(instance_id=w.name, access_token=w.token)
    elif provider == "waha":
        values.update(session=w.name, api_key=w.token)
    else:
        values.update(instance=w.name, api_key=w.token, webhook_token=w.webhook_token)
    values.update(extra)
    return {"witness": values}
