"""The monitoring kit against a real Prometheus scraping the real controller.

Debian's `prometheus` (the package that brings promtool) scrapes a `presence-controller run`
process every 500 ms, with the shipped rules loaded, while the test drives scenarios through the
simulated consumer, gateway and Downward API volume. Every dashboard expression must return data
on a healthy bot; every alert expression must return nothing on a healthy bot and data in the
scenario it is written for. Range windows (`[10m]`, `[1h]`, `$__rate_interval`) are shortened to
5 s so that the scenarios take seconds; the `for:` durations and the windows themselves are
covered by the promtool unit tests (k8s/monitoring/tests).
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web
from conftest import Sim, installed, spawn
from live import (
    KIT,
    Prometheus,
    dashboard_targets,
    free_port,
    query,
    ready,
    returns,
    rule_key,
    rule_list,
    scaled,
)

from controller.core.types import Presence
from controller.sim.downward_api import DownwardAPIVolume
from controller.sim.gateway import Fault
from controller.sim.harness import wait_until
from controller.sim.server import LoopbackServer
from controller.sim.whatsapp import WhatsApp
from controller.sim.witness import BOT_CHAT_ID, SimWitness

NAMESPACE, WORKLOAD, POD = "whatsapp-bot", "whatsapp-bot", "whatsapp-bot-0"
WINDOW = "5s"
P = "presence-controller/"
FLEET_ONLY = {
    "PresenceNoLeader",
    "PresenceKubeAPIUnreachable",
    "PresenceFleetDegraded",
    "PresenceControllerDown/warning",
}
"""Alerts a single replica cannot raise (test_alerting_live drives them with a fleet)."""


def shorten(expr: str) -> str:
    expr = expr.replace("$__rate_interval", WINDOW)
    for name, value in (("namespace", NAMESPACE), ("workload", WORKLOAD), ("pod", POD)):
        expr = expr.replace(f'"${name}"', f'"{value}"')
    return scaled(expr, lambda _: WINDOW)


def alerts() -> dict[str, str]:
    return {rule_key(r): shorten(r["expr"]) for r in rule_list()}


def readme_health_query() -> str:
    """The `replay --health-query` the README shows, with its windows shortened."""
    readme = (KIT.parent.parent / "README.md").read_text()
    found = re.search(r"--health-query '([^']+)'", readme)
    assert found is not None, "the README shows a health query"
    return shorten(found[1])


def dashboard(fleet: bool = False) -> dict[str, str]:
    return {
        title: shorten(expr)
        for title, expr in dashboard_targets().items()
        if fleet
        or not title.startswith("Fleet: ")
        or title.startswith("Fleet: which replica leads")
        or title.startswith("Fleet: handovers")
    }


@pytest.fixture
def prometheus_binary() -> str:
    return installed("prometheus")


@pytest.fixture
def volume(tmp_path: Path) -> DownwardAPIVolume:
    volume = DownwardAPIVolume(tmp_path / "podinfo")
    volume.write({"app": "bot"})
    return volume


@pytest.fixture
async def witness(sim: Sim) -> AsyncIterator[str]:
    """The witness session beside the simulated gateway: it sees the bot's WhatsApp model."""
    session = SimWitness(sim.gateway)
    app = web.Application()
    session.routes(app)
    async with LoopbackServer(app) as server:
        yield server.url


@pytest.fixture
async def controller(
    sim: Sim, volume: DownwardAPIVolume, witness: str
) -> AsyncIterator[tuple[Any, str]]:
    admin = f"127.0.0.1:{free_port()}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_collector = s.getsockname()[1]
    env = sim.env(
        PRESENCE_LISTEN=admin,
        PRESENCE_INTERVAL="100ms",
        PRESENCE_TIMEOUT="80ms",
        PRESENCE_REASSERT_AVAILABLE="3s",
        PRESENCE_REASSERT_UNAVAILABLE="1s",
        PRESENCE_SESSION_CHECK="500ms",
        PRESENCE_ANNOTATIONS_FILE=str(volume.file),
        # A witness that reports what it sees and leaves it (ACT off): the lies stay visible.
        PRESENCE_WITNESS__ENABLED="true",
        PRESENCE_WITNESS__BASE_URL=witness,
        PRESENCE_WITNESS__INSTANCE_ID="witness",
        PRESENCE_WITNESS__ACCESS_TOKEN="sim-witness-token",
        PRESENCE_WITNESS__BOT_CHAT_ID=BOT_CHAT_ID,
        PRESENCE_WITNESS__POLL="1s",
        PRESENCE_WITNESS__ACT="false",
        # Spans go nowhere: presence_trace_spans_total{result="dropped"} grows.
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{dead_collector}",
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_EXPORTER_OTLP_TIMEOUT="0.2",
    )
    proc = await spawn(env, quiet=True)
    try:
        yield proc, admin
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 15)


@pytest.mark.slow
async def test_every_dashboard_and_alert_expression_against_a_real_prometheus(
    sim: Sim,
    volume: DownwardAPIVolume,
    controller: tuple[Any, str],
    prometheus_binary: str,
    tmp_path: Path,
) -> None:
    proc, admin = controller
    spec = yaml.safe_load((KIT / "prometheus-rule.yaml").read_text())["spec"]
    labels = {"namespace": NAMESPACE, "workload": WORKLOAD, "pod": POD}
    server = Prometheus(prometheus_binary, tmp_path, {admin: labels}, spec)
    server.start()
    rules = alerts()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            available = await wait_until(lambda: sim.gateway.presence == "available", 15)
            assert available, "the controller made the bot available"

            await ready(client, tmp_path / "prometheus.log")
            up = f'up{{job="presence-controller", namespace="{NAMESPACE}"}} == 1'
            assert await returns(client, up, True), "Prometheus scrapes the controller"
            # Healthy and steady for a full window, with at least one re-assert in it.
            available = f'presence_desired_state{{state="available", pod="{POD}"}} == 1'
            assert await returns(client, available, True)
            await asyncio.sleep(6)

            empty = {name: e for name, e in dashboard().items() if not await query(client, e)}
            assert empty == {}, "every dashboard expression returns data on a healthy bot"
            firing = {name for name, e in rules.items() if await query(client, e)}
            assert firing == {"PresenceTraceExportDropping"}, "a healthy bot raises nothing else"

            # The loop stuck while the admin port answers: seen 90 s on, last tick is stale.
            response = await client.get("/api/v1/query", params={"query": "time()"})
            now = float(response.json()["data"]["result"][0])
            assert await query(client, rules["PresenceControllerNotTicking"], at=now + 90)
            assert not await query(client, rules["PresenceControllerNotTicking"], at=now)

            # An invalid maintenance annotation, for as long as it stays.
            volume.write({"app": "bot", P + "maintenance": "sometimes"})
            assert await returns(client, rules["PresenceAnnotationErrors"], True)
            volume.write({"app": "bot"})
            assert await returns(client, rules["PresenceAnnotationErrors"], False)

            # The WhatsApp session disconnects; the session reads still succeed.
            sim.gateway.session_state = "SCAN_QR_CODE"
            assert await returns(client, rules["PresenceGatewaySessionNotWorking"], True)
            sim.gateway.session_state = "WORKING"
            assert await returns(client, rules["PresenceGatewaySessionNotWorking"], False)

            # The consumer goes down while the gateway fails every call: stuck offline on
            # health, the desired presence never applied nor confirmed, most calls failing.
            sim.gateway.set_faults.extend(Fault(status=503) for _ in range(10_000))
            sim.gateway.session_faults.extend(Fault(status=503) for _ in range(10_000))
            sim.consumer.health_status = 503
            for name in (
                "PresenceStuckUnavailable",
                "PresenceNotApplied",
                "PresenceNotConfirmed",
                "PresenceGatewayErrors",
            ):
                assert await returns(client, rules[name], True), name
            # The README's replay --health-query follows the health endpoint: 0 while it fails.
            health = f"{readme_health_query()} == 0"
            assert await returns(client, health, True), "the README's health query sees it"
            sim.gateway.set_faults.clear()
            sim.gateway.session_faults.clear()
            sim.consumer.health_status = 200
            assert await returns(client, rules["PresenceNotApplied"], False)
            assert await returns(client, f"{readme_health_query()} == 1", True)

            # Flapping: health toggles faster than a person would tolerate. Meanwhile the
            # gateway stops accepting the token (seen at the first call past the back-off).
            async def flap() -> None:
                for _ in range(20):
                    sim.consumer.health_status = 503 if sim.consumer.health_status == 200 else 200
                    await asyncio.sleep(0.3)
                sim.consumer.health_status = 200

            flapping = asyncio.create_task(flap())
            sim.gateway.access_token = "rotated-elsewhere-0000"
            assert await returns(client, rules["PresenceFlapping"], True)
            await flapping
            assert await returns(client, rules["PresenceGatewayAuthFailure"], True, within=90)

            # Maintenance: the inhibition's source (test_alerting_live: what it mutes).
            volume.write({"app": "bot", P + "maintenance": "true"})
            assert await returns(client, rules["PresenceMaintenance"], True)

            # The witness: during maintenance the gateway keeps marking the bot online.
            async def mark_online() -> None:
                while True:
                    sim.gateway.whatsapp.write(Presence.AVAILABLE)
                    await asyncio.sleep(1)

            marking = asyncio.create_task(mark_online())
            lie = rules["PresenceShownOnlineWhileUnavailable"]
            assert await returns(client, lie, True, within=60)
            marking.cancel()
            volume.write({"app": "bot"})
            assert await returns(client, rules["PresenceMaintenance"], False)
            assert await returns(client, lie, False, within=60)
            # Writes that show nothing (an account without a push name): the bot is meant to be
            # online and contacts do not see it.
            model = sim.gateway.whatsapp
            sim.gateway.whatsapp = WhatsApp("silent")
            unseen = rules["PresenceNotShownWhileAvailable"]
            assert await returns(client, unseen, True, within=120)
            sim.gateway.whatsapp = model

            # Hung (SIGSTOP): scrapes time out, up is 0, the series go stale. One replica: the
            # whole bot is down (critical), not "one replica of several" (warning).
            down = rules["PresenceControllerDown/critical"]
            proc.send_signal(signal.SIGSTOP)
            assert await returns(client, down, True)
            assert await returns(client, "presence_last_tick_timestamp_seconds", False)
            assert not await query(client, rules["PresenceControllerNotTicking"])
            assert not await query(client, rules["PresenceControllerDown/warning"])
            proc.send_signal(signal.SIGCONT)
            assert await returns(client, down, False)

            # No target at all (the PodMonitor matches nothing): up goes stale, absent() fires.
            assert not await query(client, rules["PresenceControllerAbsent"])
            server.configure(scraping=False)
            assert (await client.post("/-/reload")).status_code == 200
            assert await returns(client, rules["PresenceControllerAbsent"], True)
    finally:
        server.stop()
    checked = {
        "PresenceTraceExportDropping",
        "PresenceControllerNotTicking",
        "PresenceAnnotationErrors",
        "PresenceGatewaySessionNotWorking",
        "PresenceStuckUnavailable",
        "PresenceNotApplied",
        "PresenceNotConfirmed",
        "PresenceGatewayErrors",
        "PresenceFlapping",
        "PresenceGatewayAuthFailure",
        "PresenceControllerDown/critical",
        "PresenceControllerAbsent",
        "PresenceMaintenance",
        "PresenceShownOnlineWhileUnavailable",
        "PresenceNotShownWhileAvailable",
    }
    assert checked | FLEET_ONLY == set(rules), "every alert expression was driven to return data"
