"""The Wawp client against the simulated gateway: calls, the error taxonomy, no token leaks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from aiohttp import web
from conftest import Sim

from controller.config import WawpSettings
from controller.core.types import Presence
from controller.gateway import (
    AuthError,
    PermanentError,
    RateLimited,
    SessionNotReady,
    TransientError,
)
from controller.gateway.wawp import WawpGateway
from controller.sim import LoopbackServer
from controller.sim.gateway import Fault

VIRTUAL_TIME = True
"""The async tests of this module wait in virtual time (conftest.pytest_asyncio_loop_factories)."""


def client(sim: Sim, **overrides: object) -> WawpGateway:
    values: dict[str, object] = {
        "base_url": sim.gateway_url,
        "instance_id": sim.gateway.instance_id,
        "access_token": sim.gateway.access_token,
        "timeout": 0.3,
    }
    values.update(overrides)
    return WawpGateway(WawpSettings.model_validate(values))


async def test_set_presence_sends_the_contract_call(sim: Sim) -> None:
    gw = client(sim)
    await gw.set_presence(Presence.AVAILABLE)
    await gw.set_presence(Presence.UNAVAILABLE)
    await gw.aclose()
    assert [(c.operation, c.presence, c.status) for c in sim.gateway.calls] == [
        ("set", "available", 200),
        ("set", "unavailable", 200),
    ]
    assert sim.gateway.calls[0].credential == sim.gateway.access_token
    assert sim.gateway.presence == "unavailable"


async def test_field_and_values_are_configurable(sim: Sim) -> None:
    sim.gateway.field_name = "state"
    sim.gateway.accepted = frozenset({"online", "offline"})
    gw = client(sim, field="state", values=("online", "offline"))
    await gw.set_presence(Presence.AVAILABLE)
    await gw.aclose()
    assert sim.gateway.presence == "available" and sim.gateway.calls[-1].value == "online"


@pytest.mark.parametrize("state", ["WORKING", "STARTING", "SCAN_QR_CODE", "STOPPED", "FAILED"])
async def test_session_status(sim: Sim, state: str) -> None:
    sim.gateway.session_state = state
    gw = client(sim)
    assert await gw.session_status() == state
    await gw.aclose()


# The error taxonomy, for Wawp as for the other providers: tests/test_providers.py.


async def test_retry_after_as_http_date(sim: Sim) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    sim.gateway.set_faults.append(Fault(429, {"Retry-After": when}))
    gw = client(sim)
    with pytest.raises(RateLimited) as caught:
        await gw.set_presence(Presence.AVAILABLE)
    await gw.aclose()
    assert caught.value.retry_after is not None and 27 <= caught.value.retry_after <= 30


async def test_wrong_token_and_unknown_instance(sim: Sim) -> None:
    gw = client(sim, access_token="wrong-token")
    with pytest.raises(AuthError):
        await gw.session_status()
    await gw.aclose()
    gw = client(sim, instance_id="nope")
    with pytest.raises(PermanentError, match="HTTP 404"):
        await gw.set_presence(Presence.AVAILABLE)
    await gw.aclose()


async def test_set_while_session_not_working_is_session_not_ready(sim: Sim) -> None:
    sim.gateway.session_state = "STARTING"
    gw = client(sim)
    with pytest.raises(SessionNotReady):
        await gw.set_presence(Presence.AVAILABLE)
    await gw.aclose()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "reply is not JSON"),
        ('["WORKING"]', "reply is not a JSON object"),
        ('{"state": "WORKING"}', "reply has no string 'status' field"),
        ('{"status": "DANCING"}', r"unknown session status \(7 characters, not one of FAILED,"),
    ],
)
async def test_malformed_session_replies(body: str, message: str) -> None:
    async def info(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v2/session/info", info)
    async with LoopbackServer(app) as server:
        gw = WawpGateway(
            WawpSettings(
                base_url=server.url, instance_id="i", access_token="token-123", timeout=0.5
            )  # type: ignore[arg-type]
        )
        with pytest.raises(PermanentError, match=message):
            await gw.session_status()
        await gw.aclose()


async def test_connection_refused_is_transient() -> None:
    gw = WawpGateway(
        WawpSettings(
            base_url="http://127.0.0.1:9", instance_id="i", access_token="tok-secret", timeout=0.5
        )  # type: ignore[arg-type]
    )
    with pytest.raises(
        TransientError, match=r"connection failed \(ConnectError: All connection attempts failed\)"
    ) as caught:
        await gw.session_status()
    await gw.aclose()
    assert "tok-secret" not in str(caught.value)


def test_a_transport_error_keeps_its_cause_without_urls() -> None:
    from controller.gateway.base import transport_error

    exc = httpx.ConnectError(
        "[Errno 111] Connection refused: http://gw/v2/presence?instance_id=i&access_token=S3CRET"
    )
    error = transport_error("set presence available", exc, 5.0)
    assert error.message.startswith(
        "set presence available: connection failed (ConnectError: [Errno 111] Connection refused:"
    )
    assert "S3CRET" not in error.message and "://" not in error.message
