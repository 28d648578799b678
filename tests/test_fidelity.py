"""Client fidelity: each way the real gateways differ from what our clients once assumed, against
simulators that behave that way (README, "Gateway facts")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from conftest import running, until
from test_cli import cli

from controller.core.types import Presence
from controller.gateway import (
    AuthError,
    PermanentError,
    SessionNotReady,
    TransientError,
    Unsupported,
)
from controller.gateway.base import Gateway
from controller.gateway.factory import build_gateway
from controller.gateway.probe import Vocabulary, probe
from controller.sim.gateway import Fault
from controller.sim.harness import Simulation, simulation


def client(sim: Simulation, **block: object) -> Gateway:
    provider = sim.gateway.provider
    return build_gateway(sim.settings(**{provider: {"timeout": 0.3, **block}}))


@pytest.fixture
async def waha() -> AsyncIterator[Simulation]:
    async with simulation("waha") as sim:
        yield sim


@pytest.fixture
async def evolution() -> AsyncIterator[Simulation]:
    async with simulation("evolution") as sim:
        yield sim


@pytest.fixture
async def wawp() -> AsyncIterator[Simulation]:
    async with simulation("wawp") as sim:
        yield sim


# Wawp.


async def test_wawp_credentials_go_in_the_query_and_in_the_body_of_posts(wawp: Simulation) -> None:
    wawp.gateway.credential_in = frozenset({"body"})  # a Wawp that reads them from the body only
    gw = client(wawp)
    assert await gw.set_presence(Presence.AVAILABLE) == 200
    wawp.gateway.credential_in = frozenset({"query"})
    assert await gw.set_presence(Presence.UNAVAILABLE) == 200
    await gw.aclose()
    assert [c.status for c in wawp.gateway.sets(None)] == [200, 200]
    assert [c.field for c in wawp.gateway.sets(None)] == ["presence", "presence"]


async def test_wawp_session_info_falls_back_to_post_and_keeps_it(wawp: Simulation) -> None:
    wawp.gateway.session_methods = frozenset({"POST"})  # as Wawp's API reference lists it
    wawp.gateway.credential_in = frozenset({"body"})
    gw = client(wawp)
    assert await gw.session_status() == "WORKING"
    assert await gw.session_status() == "WORKING"
    await gw.aclose()
    reads = [(c.method, c.status) for c in wawp.gateway.calls if c.operation == "session"]
    assert reads == [("GET", 405), ("POST", 200), ("POST", 200)], "one GET, then POST only"


async def test_wawp_unknown_instance_on_get_is_not_mistaken_for_a_method(wawp: Simulation) -> None:
    gw = client(wawp, instance_id="no-such-instance")
    with pytest.raises(PermanentError, match="HTTP 404"):
        await gw.session_status()
    await gw.aclose()
    reads = [c.method for c in wawp.gateway.calls if c.operation == "session"]
    assert reads == ["GET", "POST"], "the POST is tried once, and GET is kept"


async def test_the_probe_finds_wawp_legacy_mixed_pair(wawp: Simulation) -> None:
    wawp.gateway.accepted = frozenset({"online", "unavailable"})
    gw = client(wawp)
    lines: list[str] = []
    configured = Vocabulary("presence", "available", "unavailable")
    result = await probe(gw, configured, False, lines.append, pause=0.0)
    await gw.aclose()
    assert result.use == Vocabulary("presence", "online", "unavailable") and result.definite
    assert "use: PRESENCE_WAWP__FIELD=presence PRESENCE_WAWP__VALUES=online,unavailable" in (
        result.lines
    )
    assert wawp.gateway.presence == "unavailable"


async def test_check_gateway_names_a_wawp_plan_limit_in_plain_words(wawp: Simulation) -> None:
    wawp.gateway.quota_exceeded = True
    code, out, err = await cli("check-gateway", env=wawp.env())
    assert code == 1
    assert "quota or limit reached" in err and "check the Wawp plan" in err
    assert "Secret" not in err and "rejected the credentials" not in err
    assert wawp.gateway.access_token not in out + err  # type: ignore[operator]


# WAHA.


async def test_waha_holds_a_not_ready_set_call_and_the_client_calls_it_not_ready(
    waha: Simulation,
) -> None:
    """Real WAHA waits up to 15 s for the session before its 422; our client's timeout is
    shorter, and a timeout while the session is not WORKING is a session not ready."""
    waha.gateway.session_state = "STARTING"
    gw = client(waha)
    started = time.monotonic()
    with pytest.raises(SessionNotReady) as caught:
        await gw.set_presence(Presence.AVAILABLE)
    await gw.aclose()
    assert time.monotonic() - started < 5.0
    assert "while the session is STARTING" in caught.value.message
    assert "WAHA holds such calls up to 15s" in caught.value.message
    waha.gateway.session_state = "WORKING"  # ends the simulator's hold


async def test_a_waha_set_call_and_its_session_read_never_outlast_the_timeout(
    waha: Simulation,
) -> None:
    """Fleet mode starts a call only if it can end before a takeover: the read that follows a
    timed-out set call comes out of the same timeout, even when that read hangs too."""
    waha.gateway.session_state = "STARTING"
    waha.gateway.session_faults.append(Fault(200, delay=5.0, body='{"status": "STARTING"}'))
    gw = client(waha, timeout=2.0)
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"timed out after 2s$"):
        await gw.set_presence(Presence.AVAILABLE)
    took = time.monotonic() - started
    await gw.aclose()
    assert 1.5 <= took < 3.5, f"took {took:.2f}s: a 2 s call plus a hung 2 s read would be 4 s"
    waha.gateway.session_state = "WORKING"


async def test_waha_answers_422_after_its_hold(waha: Simulation) -> None:
    waha.gateway.session_state = "SCAN_QR_CODE"
    waha.gateway.hold = 0.5
    gw = client(waha, timeout=5.0)
    started = time.monotonic()
    with pytest.raises(SessionNotReady, match=r"session not ready \(session is SCAN_QR_CODE\)"):
        await gw.set_presence(Presence.AVAILABLE)
    assert time.monotonic() - started >= 0.5, "held, not answered at once"
    await gw.aclose()


async def test_waha_lets_a_held_call_through_once_the_session_works(waha: Simulation) -> None:
    waha.gateway.session_state = "STARTING"
    gw = client(waha, timeout=5.0)
    call = asyncio.create_task(gw.set_presence(Presence.AVAILABLE))
    await asyncio.sleep(0.3)
    waha.gateway.session_state = "WORKING"
    assert await call == 201
    await gw.aclose()
    assert waha.gateway.presence == "available"


async def test_waha_core_refuses_a_session_not_called_default(waha: Simulation) -> None:
    waha.gateway.core = True  # the simulator's session is not called "default"
    gw = client(waha)
    with pytest.raises(PermanentError) as caught:
        await gw.set_presence(Presence.AVAILABLE)
    await gw.aclose()
    assert "WAHA Core supports only the session 'default'" in caught.value.message
    assert "PRESENCE_WAHA__SESSION=default" in caught.value.message


async def test_waha_requires_its_key_and_says_how_to_get_it(waha: Simulation) -> None:
    gw = client(waha, api_key=None)
    with pytest.raises(AuthError) as caught:
        await gw.session_status()
    await gw.aclose()
    assert "current WAHA requires an API key" in caught.value.message
    assert "WAHA_NO_API_KEY=True" in caught.value.message


# Evolution API.


async def test_evolution_looks_the_instance_up_before_the_key(evolution: Simulation) -> None:
    gw = client(evolution, instance="no-such-instance", api_key="wrong-key-1")
    with pytest.raises(PermanentError, match="HTTP 404: Evolution API has no instance"):
        await gw.set_presence(Presence.AVAILABLE)
    await gw.aclose()


@pytest.mark.parametrize("integration", ["WHATSAPP-BUSINESS", "EVOLUTION"])
async def test_evolution_without_baileys_reads_open_and_cannot_set_presence(
    evolution: Simulation, integration: str
) -> None:
    evolution.gateway.integration = integration
    gw = client(evolution)
    assert await gw.session_status() == "WORKING", "the Cloud API and the channel read open"
    with pytest.raises(Unsupported) as caught:
        await gw.set_presence(Presence.AVAILABLE)
    await gw.aclose()
    assert "cannot set presence" in caught.value.message
    assert "only WHATSAPP-BAILEYS instances" in caught.value.message
    assert caught.value.as_failure().retry_after == 300.0
    assert evolution.gateway.presence is None


async def test_evolution_unsupported_is_retried_once_per_five_minutes(
    evolution: Simulation,
) -> None:
    evolution.gateway.integration = "WHATSAPP-BUSINESS"
    async with running(evolution.settings()) as run:
        await until(lambda: run.controller.actuator.state.failures >= 1)
        status = await run.status()
        assert "cannot set presence" in status["gateway"]["last_error"]
        left = run.controller.actuator.state.backoff_until - time.monotonic()
        assert 290 < left <= 300
        await asyncio.sleep(0.5)
        assert len(evolution.gateway.sets(None)) == 1


async def test_evolution_reply_without_state_is_named(evolution: Simulation) -> None:
    evolution.gateway.loaded = False
    gw = client(evolution)
    with pytest.raises(SessionNotReady, match="knows the instance 'sim-instance' but has not"):
        await gw.session_status()
    await gw.aclose()


# Re-assert from evidence: a reconnect seen is written at once.


async def test_check_gateway_names_an_evolution_instance_without_presence(
    evolution: Simulation,
) -> None:
    evolution.gateway.integration = "WHATSAPP-BUSINESS"
    code, out, _ = await cli("check-gateway", env=evolution.env())
    assert code == 0 and "only Baileys instances (WHATSAPP-BAILEYS) can set presence" in out
    code, out, err = await cli("check-gateway", "--set", "unavailable", env=evolution.env())
    assert code == 1
    assert "this Evolution API instance cannot set presence" in err
    assert "WhatsApp Business (Meta Cloud) API" in err


async def test_check_gateway_set_says_what_contacts_see(wawp: Simulation) -> None:
    code, out, _ = await cli("check-gateway", "--set", "available", env=wawp.env())
    assert code == 0
    assert "no push notifications" in out and "fades after about 10 s" in out
