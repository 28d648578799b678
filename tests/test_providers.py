"""WAHA and Evolution API against their simulators: the contract calls, session states, the
whole error taxonomy, hostile replies, credentials (in a header, from a rotating file) that never
leak. Wawp has its own file (test_wawp.py); what all three share (the error taxonomy, the key
that never leaks) is checked here for all three."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from conftest import running, until
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest

from controller.config import ConfigError, Settings, load_settings
from controller.core.types import Presence
from controller.gateway import (
    AuthError,
    Gateway,
    GatewayError,
    PermanentError,
    QuotaRefused,
    RateLimited,
    SessionNotReady,
    TransientError,
    Unsupported,
)
from controller.gateway.factory import build_gateway
from controller.gateway.http import MAX_REPLY_BYTES
from controller.sim import LoopbackServer
from controller.sim.downward_api import DownwardAPIVolume
from controller.sim.gateway import Fault
from controller.sim.harness import Simulation, simulation

VIRTUAL_TIME = True
"""The async tests of this module wait in virtual time (conftest.pytest_asyncio_loop_factories)."""

SELF_HOSTED = ("waha", "evolution")
ALL = ("wawp", *SELF_HOSTED)


@pytest.fixture(params=SELF_HOSTED)
async def psim(request: pytest.FixtureRequest) -> AsyncIterator[Simulation]:
    async with simulation(request.param) as running_sim:
        yield running_sim


@pytest.fixture(params=ALL)
async def any_sim(request: pytest.FixtureRequest) -> AsyncIterator[Simulation]:
    async with simulation(request.param) as running_sim:
        yield running_sim


def client(sim: Simulation, **block: object) -> Gateway:
    provider = sim.gateway.provider
    return build_gateway(sim.settings(**{provider: {"timeout": 0.3, **block}}))


async def test_the_contract_calls(psim: Simulation) -> None:
    gw = client(psim)
    assert await gw.session_status() == "WORKING"
    assert await gw.set_presence(Presence.AVAILABLE) == 201
    assert await gw.set_presence(Presence.UNAVAILABLE) == 201
    await gw.aclose()
    name, key = psim.gateway.instance_id, psim.gateway.access_token
    expected = {
        "waha": [
            ("GET", f"/api/sessions/{name}", None),
            ("POST", f"/api/{name}/presence", "online"),
            ("POST", f"/api/{name}/presence", "offline"),
        ],
        "evolution": [
            ("GET", f"/instance/connectionState/{name}", None),
            ("POST", f"/instance/setPresence/{name}", "available"),
            ("POST", f"/instance/setPresence/{name}", "unavailable"),
        ],
    }[psim.gateway.provider]
    assert [(c.method, c.path, c.value) for c in psim.gateway.calls] == expected
    assert all(c.credential == key for c in psim.gateway.calls)
    assert all(c.field in (None, "presence") for c in psim.gateway.calls)
    assert psim.gateway.presence == "unavailable"


async def test_waha_without_an_api_key_sends_no_header() -> None:
    async with simulation("waha") as sim:
        sim.gateway.access_token = None
        gw = client(sim)
        await gw.set_presence(Presence.AVAILABLE)
        await gw.aclose()
        assert sim.gateway.calls[-1].credential is None
        assert sim.gateway.presence == "available"


@pytest.mark.parametrize("state", ["WORKING", "STARTING", "SCAN_QR_CODE", "STOPPED", "FAILED"])
async def test_waha_session_states(state: str) -> None:
    async with simulation("waha") as sim:
        sim.gateway.session_state = state
        gw = client(sim)
        assert await gw.session_status() == state
        await gw.aclose()


@pytest.mark.parametrize(
    ("state", "normalised"),
    [("open", "WORKING"), ("connecting", "STARTING"), ("close", "STOPPED"), ("refused", "STOPPED")],
)
async def test_evolution_connection_states(state: str, normalised: str) -> None:
    async with simulation("evolution") as sim:
        body = json.dumps({"instance": {"instanceName": "sim-instance", "state": state}})
        sim.gateway.session_faults.append(Fault(200, body=body))
        gw = client(sim)
        assert await gw.session_status() == normalised
        await gw.aclose()


WAHA_NOT_READY = json.dumps(
    {
        "error": "Session status is not as expected. Try again later or restart the session",
        "session": "sim-instance",
        "status": "SCAN_QR_CODE",
        "expected": ["WORKING"],
    }
)


def _evolution_400(message: str) -> dict[str, object]:
    return {"status": 400, "error": "Bad Request", "response": {"message": [message]}}


EVOLUTION_CLOSED = json.dumps(
    {"status": 400, "error": "Bad Request", "response": {"message": ["Error: Connection Closed"]}}
)

TAXONOMY = [
    (
        Fault(401),
        AuthError,
        "set presence available: HTTP 401: the gateway rejected the credentials",
    ),
    (Fault(429, {"Retry-After": "7"}), RateLimited, "HTTP 429: rate limited, retry after 7s"),
    (Fault(429), RateLimited, "HTTP 429: rate limited"),
    (Fault(500), TransientError, "HTTP 500"),
    (Fault(502), TransientError, "HTTP 502"),
    (Fault(503), TransientError, "HTTP 503"),
    (Fault(400), PermanentError, "HTTP 400"),
    (Fault(201, delay=1.0), TransientError, "set presence available: timed out after 0.3s"),
    (Fault(201, reset=True), TransientError, "set presence available: connection failed"),
]


SPECIFIC = [
    ("waha", Fault(403), AuthError, "HTTP 403: the gateway rejected the credentials"),
    ("evolution", Fault(403), AuthError, "HTTP 403: the gateway rejected the credentials"),
    # Wawp's 403 is "Quota or Limit Reached" / subscription_required: the plan, not the token.
    ("wawp", Fault(403), QuotaRefused, "HTTP 403: quota or limit reached"),
    ("wawp", Fault(422), SessionNotReady, "HTTP 422: session not ready"),
    ("wawp", Fault(404), PermanentError, "HTTP 404"),
    (
        "waha",
        Fault(422, body=WAHA_NOT_READY),
        SessionNotReady,
        "session not ready (session is SCAN_QR_CODE)",
    ),
    (
        "waha",
        Fault(422, body='{"error":"The method is not implemented by the engine."}'),
        PermanentError,
        "does not implement presence",
    ),
    ("waha", Fault(422, body=""), SessionNotReady, "HTTP 422: session not ready"),
    (
        "waha",
        Fault(422, body='{"error":"Session \\"bot\\" does not exist","session":"bot"}'),
        PermanentError,
        "HTTP 422: WAHA has no session",
    ),
    (
        "waha",
        Fault(
            422, body='{"statusCode":422,"message":"WAHA Core support only \'default\' session"}'
        ),
        PermanentError,
        "WAHA Core supports only the session 'default'",
    ),
    (
        "evolution",
        Fault(
            400, body=json.dumps(_evolution_400("Method not available on WhatsApp Business API"))
        ),
        Unsupported,
        "this Evolution API instance cannot set presence",
    ),
    (
        "evolution",
        Fault(400, body=json.dumps(_evolution_400("Error: Timed Out"))),
        TransientError,
        "HTTP 400: WhatsApp timed out",
    ),
    (
        "evolution",
        Fault(400, body=EVOLUTION_CLOSED),
        SessionNotReady,
        "instance is not connected",
    ),
    (
        "evolution",
        Fault(400, body='{"status":400,"response":{"message":["bad"]}}'),
        PermanentError,
        "HTTP 400",
    ),
]
"""Answers each provider gives its own meaning (not-ready statuses and bodies)."""


@pytest.mark.parametrize(
    ("provider", "fault", "error", "message"),
    [(provider, *row) for provider in ALL for row in TAXONOMY] + SPECIFIC,
)
async def test_error_taxonomy(
    provider: str, fault: Fault, error: type[GatewayError], message: str
) -> None:
    async with simulation(provider) as sim:
        sim.gateway.set_faults.append(fault)
        gw = client(sim)
        with pytest.raises(error) as caught:
            await gw.set_presence(Presence.AVAILABLE)
        await gw.aclose()
    assert message in str(caught.value)
    assert sim.gateway.access_token is not None
    assert sim.gateway.access_token not in str(caught.value)
    if fault.headers:
        assert isinstance(caught.value, RateLimited) and caught.value.retry_after == 7.0


async def test_a_session_that_is_not_working_is_refused_with_the_provider_answer(
    psim: Simulation,
) -> None:
    """No scripted fault: the simulator answers as the real gateway does (WAHA 422 with the
    session state, Evolution 400 "Connection Closed")."""
    psim.gateway.session_state = "SCAN_QR_CODE"
    gw = client(psim)
    with pytest.raises(SessionNotReady):
        await gw.set_presence(Presence.AVAILABLE)
    await gw.aclose()
    assert psim.gateway.presence is None


async def test_an_unknown_session_or_instance_is_named(psim: Simulation) -> None:
    provider = psim.gateway.provider
    key = "session" if provider == "waha" else "instance"
    gw = client(psim, **{key: "no-such-one"})
    with pytest.raises(PermanentError) as caught:
        await gw.set_presence(Presence.AVAILABLE)
    with pytest.raises(PermanentError) as session:
        await gw.session_status()
    await gw.aclose()
    # Current WAHA answers a set call for an unknown session 422 "does not exist" (not the
    # 422 of a session that is not ready), its session read 404.
    set_status = "HTTP 422" if provider == "waha" else "HTTP 404"
    assert "'no-such-one'" in caught.value.message and set_status in caught.value.message
    assert "'no-such-one'" in session.value.message and "HTTP 404" in session.value.message
    for raised in (caught.value, session.value):
        assert f"PRESENCE_{provider.upper()}__{key.upper()}" in raised.message


async def test_a_wrong_key_is_an_auth_error(psim: Simulation) -> None:
    gw = client(psim, api_key="definitely-wrong-key")
    with pytest.raises(AuthError):
        await gw.session_status()
    await gw.aclose()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "reply is not JSON"),
        ("[1, 2]", "reply is not a JSON object"),
        ('{"nothing": 1}', "reply has no"),
        ('{"status": "DANCING", "instance": {"state": "dancing"}}', "unknown session status (7"),
    ],
)
async def test_malformed_session_replies(psim: Simulation, body: str, message: str) -> None:
    psim.gateway.session_faults.append(Fault(200, body=body))
    gw = client(psim)
    with pytest.raises(PermanentError, match=message.replace("(", r"\(")):
        await gw.session_status()
    await gw.aclose()


async def endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    while True:
        await response.write(b" " * 65536)


@pytest.mark.parametrize("provider", SELF_HOSTED)
async def test_an_endless_reply_is_cut_at_the_cap(provider: str) -> None:
    app = web.Application()
    path = {"waha": "/api/sessions/s1", "evolution": "/instance/connectionState/s1"}[provider]
    app.router.add_get(path, endless)
    async with LoopbackServer(app) as server:
        block = {"base_url": server.url, "timeout": 5.0}
        block.update(
            {"session": "s1"}
            if provider == "waha"
            else {"instance": "s1", "api_key": "k-123456789"}
        )
        gw = build_gateway(
            Settings.from_values(health_url="http://h/", provider=provider, **{provider: block})
        )
        with pytest.raises(PermanentError) as caught:
            await gw.session_status()
        await gw.aclose()
    assert f"reply refused past {MAX_REPLY_BYTES // 1024} KiB" in caught.value.message


async def test_a_gateway_that_echoes_the_key_leaks_it_nowhere(any_sim: Simulation) -> None:
    """The key comes back as the session state and in every error body: it must not reach
    /status, the logs, the spans or the metrics."""
    key = any_sim.gateway.access_token
    assert key is not None
    echo = json.dumps({"error": key, "message": key, "response": {"message": [key]}})
    any_sim.gateway.set_faults.extend(
        [Fault(503, body=echo), Fault(429, {"Retry-After": "0"}, body=echo)]
    )
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with running(any_sim.settings(), tracer=provider.get_tracer("test")) as run:
        await until(lambda: len(any_sim.gateway.sets(None)) >= 2)
        any_sim.gateway.session_state = key  # read again after the 429
        await until(
            lambda: "unknown session status" in (run.controller.actuator.state.last_error or "")
        )
        status_text = (await run.admin.get("/status")).text
        metrics_text = (await run.admin.get("/metrics")).text
        registry = generate_latest(run.controller.metrics.registry).decode()
    logs = run.logs.getvalue()
    assert "unknown session status (" in logs
    spans = " ".join(
        f"{s.name} {s.status.description} {s.attributes} {[e.attributes for e in s.events]}"
        for s in exporter.get_finished_spans()
    )
    assert "presence.gateway.set" in spans
    for text in (status_text, metrics_text, registry, logs, spans):
        for variant in (key, key.upper(), key.lower()):
            assert variant not in text


async def test_a_rotated_api_key_file_is_followed(psim: Simulation, tmp_path: Path) -> None:
    psim.gateway.access_token = "First-Key-0001"
    volume = DownwardAPIVolume(tmp_path / "key", name="api-key")
    volume.write_text("First-Key-0001\n")
    provider = psim.gateway.provider
    settings = psim.settings(
        **{provider: {"api_key": None, "api_key_file": volume.file}}, reassert_available=0.2
    )
    async with running(settings) as run:
        await until(lambda: psim.gateway.presence == "available")
        psim.gateway.access_token = "Second-Key-0002"
        volume.write_text("Second-Key-0002\n")
        await until(
            lambda: any(
                c.credential == "Second-Key-0002" and c.status == 201 for c in psim.gateway.sets()
            )
        )
    assert "API key file changed: using the new API key" in run.logs.getvalue()
    assert "Second-Key-0002" not in run.logs.getvalue()


@pytest.mark.parametrize(
    ("env", "error"),
    [
        (
            {"PRESENCE_PROVIDER": "waha"},
            "PRESENCE_WAHA: provider waha requires PRESENCE_WAHA__BASE_URL",
        ),
        (
            {"PRESENCE_PROVIDER": "evolution", "PRESENCE_EVOLUTION__BASE_URL": "http://e:8080"},
            "PRESENCE_EVOLUTION: provider evolution requires PRESENCE_EVOLUTION__INSTANCE and "
            "PRESENCE_EVOLUTION__API_KEY (or ..._FILE)",
        ),
        (
            {
                "PRESENCE_PROVIDER": "waha",
                "PRESENCE_WAHA__BASE_URL": "http://w",
                "PRESENCE_WAHA__API_KEY": "YOUR_API_KEY",
            },
            "placeholder",
        ),
        (
            {
                "PRESENCE_PROVIDER": "waha",
                "PRESENCE_WAHA__BASE_URL": "http://w",
                "PRESENCE_WAHA__SESSION": "a/b",
            },
            "PRESENCE_WAHA__SESSION",
        ),
        (
            {"PRESENCE_PROVIDER": "evolution", "PRESENCE_EVOLUTION__INSTANCE": "<instance>"},
            "placeholder",
        ),
        (
            {"PRESENCE_PROVIDER": "gupshup"},
            "PRESENCE_PROVIDER: Input should be 'wawp', 'waha' or 'evolution'",
        ),
        ({"PRESENCE_WAHA__APIKEY": "x"}, "did you mean PRESENCE_WAHA__API_KEY?"),
    ],
)
def test_provider_settings_are_checked_at_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], error: str
) -> None:
    monkeypatch.setenv("PRESENCE_HEALTH_URL", "http://127.0.0.1:8080/healthz")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert any(error in line for line in caught.value.errors), caught.value.errors


def test_the_other_providers_need_no_wawp_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESENCE_HEALTH_URL", "http://127.0.0.1:8080/healthz")
    monkeypatch.setenv("PRESENCE_PROVIDER", "evolution")
    monkeypatch.setenv("PRESENCE_EVOLUTION__BASE_URL", "http://evolution:8080")
    monkeypatch.setenv("PRESENCE_EVOLUTION__INSTANCE", "bot")
    monkeypatch.setenv("PRESENCE_EVOLUTION__API_KEY", "evo-key-123456")
    settings = load_settings()
    assert settings.secrets() == ["evo-key-123456"]
    assert settings.masked()["evolution"]["api_key"] == "**********"
