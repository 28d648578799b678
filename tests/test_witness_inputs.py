"""Everything the witness takes from outside is hostile until bounded: its settings (refused at
start with the field and the reason), its gateway's replies (huge, endless, malformed, slow:
reported as a sight of nothing, never a crash, never quoted)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from controller.config import ConfigError, Settings, load_settings
from controller.core.witness import Blind, Failure
from controller.gateway.witness import build_witness
from controller.sim.server import LoopbackServer

VIRTUAL_TIME = False
KEY = "witness-key-0123456789"
BOT = "15551234567@c.us"


def witness_settings(url: str = "http://127.0.0.1:1", **witness: Any) -> Settings:
    return Settings.from_values(
        health_url="http://127.0.0.1:1/healthz",
        provider="waha",
        waha={"base_url": "http://127.0.0.1:1", "api_key": "bot-key-0123456789"},
        witness={"enabled": True, "base_url": url, "session": "witness", "api_key": KEY,
                 "bot_chat_id": BOT, "timeout": 1.0, **witness},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PRESENCE_WITNESS__ENABLED": "true"}, "PRESENCE_WITNESS__BOT_CHAT_ID"),
        (
            {"PRESENCE_WITNESS__ENABLED": "true", "PRESENCE_WITNESS__BOT_CHAT_ID": BOT},
            "requires PRESENCE_WITNESS__INSTANCE_ID and PRESENCE_WITNESS__ACCESS_TOKEN",
        ),
        (
            {"PRESENCE_WITNESS__BOT_CHAT_ID": "bot"},
            "PRESENCE_WITNESS__BOT_CHAT_ID: 'bot': expected",
        ),
        ({"PRESENCE_WITNESS__POLL": "100ms"}, "PRESENCE_WITNESS__POLL"),
        ({"PRESENCE_WITNESS__RESUBSCRIBE": "5m"}, "presence subscriptions last 20-60 s"),
        (
            {
                "PRESENCE_WITNESS__PROVIDER": "evolution",
                "PRESENCE_WITNESS__ENABLED": "true",
                "PRESENCE_WITNESS__BOT_CHAT_ID": BOT,
                "PRESENCE_WITNESS__BASE_URL": "http://e:8080",
                "PRESENCE_WITNESS__INSTANCE": "w",
                "PRESENCE_WITNESS__API_KEY": KEY,
            },
            "PRESENCE_WITNESS__WEBHOOK_TOKEN",
        ),
        ({"PRESENCE_WITNESS__WEBHOOK_TOKEN": "short-token-1"}, "at least 16 characters"),
        ({"PRESENCE_WITNESS__API_KEY": "has space inside"}, "whitespace"),
    ],
)
def test_a_bad_witness_setting_is_refused_at_start_with_its_name(
    minimal_env: None, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = str(caught.value)
    assert expected in text, text
    assert "has space inside" not in text and "short-token-1" not in text


def test_witness_secrets_are_masked_and_scrubbed(tmp_path: Any) -> None:
    file = tmp_path / "webhook"
    file.write_text("a-webhook-secret-0123456789\n")
    s = witness_settings(webhook_token_file=str(file))
    assert KEY in s.secrets() and "a-webhook-secret-0123456789" in s.secrets()
    shown = str(s.masked())
    assert KEY not in shown and "a-webhook-secret-0123456789" not in shown


def hostile_app() -> web.Application:
    async def huge(request: web.Request) -> web.Response:
        return web.json_response({"presences": [], "pad": "x" * 100_000})

    async def endless(request: web.Request) -> web.StreamResponse:
        reply = web.StreamResponse()
        reply.enable_chunked_encoding()
        await reply.prepare(request)
        for _ in range(10_000):
            await reply.write(b"x" * 1024)
        return reply

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({})

    async def echo(request: web.Request) -> web.Response:
        # A hostile gateway that quotes the key back, in a malformed reply.
        return web.Response(text=f"error: bad key {request.headers.get('X-Api-Key')}", status=500)

    replies: dict[str, Any] = {
        "garbage": web.Response(text="<html>not json</html>"),
        "list": web.json_response([1, 2, 3]),
        "no-list": web.json_response({"presences": "nope"}),
        "nested": web.Response(text="[" * 5_000 + "]" * 5_000),  # under the size limit
    }
    app = web.Application()
    app.router.add_get("/api/huge/presence/{chat}", huge)
    app.router.add_get("/api/endless/presence/{chat}", endless)
    app.router.add_get("/api/slow/presence/{chat}", slow)
    app.router.add_get("/api/echo/presence/{chat}", echo)
    for name, reply in replies.items():

        async def handler(request: web.Request, reply: web.Response = reply) -> web.Response:
            return web.Response(
                body=reply.body, status=reply.status, content_type="application/json"
            )

        app.router.add_get(f"/api/{name}/presence/{{chat}}", handler)
    return app


@pytest.fixture
async def hostile() -> AsyncIterator[str]:
    async with LoopbackServer(hostile_app()) as server:
        yield server.url


@pytest.mark.parametrize(
    ("session", "reason"),
    [
        ("huge", Failure.GATEWAY),
        ("endless", Failure.GATEWAY),
        ("slow", Failure.GATEWAY),
        ("echo", Failure.GATEWAY),
        ("garbage", Failure.GATEWAY),
        ("list", Failure.GATEWAY),
        ("no-list", Failure.MALFORMED),
        ("nested", Failure.GATEWAY),
    ],
)
async def test_a_hostile_witness_reply_is_a_sight_of_nothing(
    hostile: str, session: str, reason: Failure
) -> None:
    reader = build_witness(witness_settings(hostile, session=session))
    started = time.monotonic()
    try:
        sight = await reader.read(0.0)
    finally:
        await reader.aclose()
    assert isinstance(sight, Blind) and sight.reason is reason, sight
    assert KEY not in sight.message and "x" * 100 not in sight.message
    assert time.monotonic() - started < 5.0  # the 1 s timeout, never the reply's pace
