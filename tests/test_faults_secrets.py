"""Fault catalogue, part "token and secrets": a gateway that echoes the token, and a token that
rotates under a running controller (the kubelet swaps the Secret volume's `..data` link)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Sim, running, until
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from controller.config import Settings
from controller.redaction import MASK, scrub, scrub_document
from controller.sim.downward_api import DownwardAPIVolume

VIRTUAL_TIME = True
"""The async tests of this module wait in virtual time (conftest.pytest_asyncio_loop_factories)."""

TOKEN = "Rotated-Token-0001"
OTHER = "Rotated-Token-0002"


def test_scrubbing_ignores_letter_case() -> None:
    text = f"status {TOKEN.upper()} and {TOKEN.lower()} and {TOKEN}"
    assert scrub(text, [TOKEN]) == f"status {MASK} and {MASK} and {MASK}"
    document = {"a": [TOKEN.upper(), {"b": f"x{TOKEN.lower()}y"}], "n": float("inf")}
    assert scrub_document(document, [TOKEN]) == {"a": [MASK, {"b": f"x{MASK}y"}], "n": None}


async def test_a_gateway_that_echoes_the_token_leaks_it_nowhere(sim: Sim) -> None:
    """`{"status": "<token>"}`: the reply, upper-cased and quoted in an error, would reach
    /status, the logs and the span status."""
    token = sim.gateway.access_token
    sim.gateway.session_state = token
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    async with running(sim.settings(), tracer=tracer) as run:
        await until(lambda: run.controller.actuator.state.last_error is not None)
        status_text = (await run.admin.get("/status")).text
        error = (await run.status())["gateway"]["last_error"]
    assert "unknown session status (" in error and "characters, not one of" in error
    logs = run.logs.getvalue()
    spans = " ".join(
        f"{s.status.description} {s.attributes} {[e.attributes for e in s.events]}"
        for s in exporter.get_finished_spans()
    )
    for text in (status_text, logs, spans):
        for variant in (token, token.upper(), token.lower()):
            assert variant not in text


@pytest.fixture
def volume(sim: Sim, tmp_path: Path) -> DownwardAPIVolume:
    """A kubelet-style Secret volume holding TOKEN, which the gateway accepts."""
    sim.gateway.access_token = TOKEN
    volume = DownwardAPIVolume(tmp_path / "wawp", name="access-token")
    volume.write_text(TOKEN + "\n")
    return volume


def following(sim: Sim, volume: DownwardAPIVolume, reassert: float) -> Settings:
    """Settings that read the token from the kubelet-style Secret volume."""
    token_file = {"access_token": None, "access_token_file": volume.file}
    return sim.settings(wawp=token_file, reassert_available=reassert)


async def test_a_rotated_token_is_picked_up_without_a_restart(
    sim: Sim, volume: DownwardAPIVolume
) -> None:
    settings = following(sim, volume, 0.2)
    async with running(settings) as run:
        await until(lambda: sim.gateway.presence == "available")
        # The gateway's token is rotated; the kubelet then updates the mounted Secret.
        sim.gateway.access_token = OTHER
        await until(lambda: run.controller.actuator.state.auth_failed)
        calls = len(sim.gateway.calls)
        volume.write_text(OTHER + "\n")
        await until(lambda: not run.controller.actuator.state.auth_failed)
        await until(
            lambda: any(c.credential == OTHER and c.status == 200 for c in sim.gateway.sets())
        )
        assert all(c.credential == OTHER for c in sim.gateway.calls[calls:])
        assert await run.metric("presence_gateway_auth_failed") == 0
        status = (await run.admin.get("/status")).text
    messages = [e["msg"] for e in run.log_events() if e.get("event") == "secret"]
    assert messages == [
        "access token file changed: using the new token; retrying the gateway at once"
    ]
    for text in (run.logs.getvalue(), status):
        assert TOKEN not in text and OTHER not in text, "old and new token both scrubbed"


async def test_a_token_rotated_before_the_gateway_notices_is_used_at_once(
    sim: Sim, volume: DownwardAPIVolume
) -> None:
    """The Secret changes first (both tokens valid for a while): the next call uses the new one."""
    settings = following(sim, volume, 0.1)
    async with running(settings) as run:
        await until(lambda: sim.gateway.presence == "available")
        volume.write_text(OTHER + "\n")
        sim.gateway.access_token = OTHER
        seen = len(sim.gateway.calls)
        await until(lambda: any(c.credential == OTHER for c in sim.gateway.calls[seen:]))
        assert not run.controller.actuator.state.auth_failed


async def test_an_unreadable_or_placeholder_rotation_keeps_the_last_good_token(
    sim: Sim, volume: DownwardAPIVolume
) -> None:
    settings = following(sim, volume, 0.1)
    async with running(settings) as run:
        await until(lambda: sim.gateway.presence == "available")
        volume.write_text("REPLACE-WITH-YOUR-WAWP-ACCESS-TOKEN\n")
        await until(lambda: any(e.get("event") == "secret" for e in run.log_events()))
        seen = len(sim.gateway.calls)
        await until(lambda: len(sim.gateway.calls) >= seen + 3)
        assert all(c.status == 200 for c in sim.gateway.calls[seen:]), "still the good token"
    (line,) = [e for e in run.log_events() if e.get("event") == "secret"]
    assert line["level"] == "error" and "keeping the last good token" in line["msg"]
    assert "placeholder" in line["msg"] and "REPLACE" not in line["msg"]


@pytest.mark.parametrize("provider", ["waha", "evolution"])
async def test_an_api_key_with_a_trailing_newline_works_and_leaks_nowhere(
    provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `echo key > f; kubectl create secret --from-file` plus an env `secretKeyRef` gives:
    the HTTP library refuses such a header and quotes it escaped (`b'key\\n'`), past the
    scrubber, into logs, /status and spans, unless the value is checked first. Loaded through
    the environment like in a pod."""
    from conftest import simulation

    from controller.config import load_settings

    async with simulation(provider) as sim:
        key = sim.gateway.access_token
        for name, value in sim.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv(f"PRESENCE_{provider.upper()}__API_KEY", key + "\n")
        exporter = InMemorySpanExporter()
        traces = TracerProvider()
        traces.add_span_processor(SimpleSpanProcessor(exporter))
        async with running(load_settings(), tracer=traces.get_tracer("test")) as run:
            await until(lambda: sim.gateway.presence == "available")
            status = (await run.admin.get("/status")).text
        assert all(c.credential == key for c in sim.gateway.calls), "sent without the newline"
        spans = " ".join(
            f"{s.status.description} {s.attributes}" for s in exporter.get_finished_spans()
        )
        for text in (status, run.logs.getvalue(), spans):
            assert key not in text and key.encode().hex() not in text


def test_an_illegal_header_is_never_quoted_and_every_form_of_a_secret_is_scrubbed() -> None:
    """Defence in depth: a transport error that quotes a refused header is not quoted, and the
    scrubber masks the escaped, bytes, JSON and percent-encoded forms of each secret."""
    import httpx

    from controller.gateway.base import transport_error

    secret = "k3y-secret\n"
    refused = httpx.LocalProtocolError(f"Illegal header value {secret.encode()!r}")
    assert transport_error("set presence", refused, 5.0).message == (
        "set presence: connection failed (LocalProtocolError)"
    )
    for text in (
        f"Illegal header value {secret.encode()!r}",
        f"value {secret!r}",
        '{"key": "k3y-secret\\n"}',
        "key=k3y-secret%0A&x=1",
        "K3Y-SECRET",
    ):
        assert "k3y" not in scrub(text, [secret]).lower(), text
    assert scrub("a short word: key", ["key"]) == "a short word: key", "too short to mask"
