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
import json
import re
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import Sim, installed, spawn

from controller.sim.downward_api import DownwardAPIVolume
from controller.sim.gateway import Fault
from controller.sim.harness import wait_until

KIT = Path(__file__).resolve().parent.parent / "k8s" / "monitoring"
NAMESPACE, POD = "whatsapp-bot", "whatsapp-bot-0"
WINDOW = "5s"
P = "presence-controller/"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shorten(expr: str) -> str:
    expr = expr.replace("$__rate_interval", WINDOW)
    expr = expr.replace('"$namespace"', f'"{NAMESPACE}"').replace('"$pod"', f'"{POD}"')
    return re.sub(r"\[\d+[smhd]\]", f"[{WINDOW}]", expr)


def alerts() -> dict[str, str]:
    spec = yaml.safe_load((KIT / "prometheus-rule.yaml").read_text())["spec"]
    return {r["alert"]: shorten(r["expr"]) for g in spec["groups"] for r in g["rules"]}


def dashboard() -> dict[str, str]:
    board = json.loads((KIT / "grafana-dashboard.json").read_text())
    return {
        f"{panel['title']} [{target['refId']}]": shorten(target["expr"])
        for panel in board["panels"]
        for target in panel["targets"]
    }


class Prometheus:
    """A real Prometheus server on loopback with the shipped rules."""

    def __init__(self, binary: str, workdir: Path, target: str) -> None:
        self.binary, self.workdir, self.target = binary, workdir, target
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def configure(self, scraping: bool) -> None:
        spec = yaml.safe_load((KIT / "prometheus-rule.yaml").read_text())["spec"]
        (self.workdir / "rules.yaml").write_text(yaml.safe_dump(spec))
        targets = [self.target] if scraping else []
        config = {
            "global": {
                "scrape_interval": "500ms",
                "scrape_timeout": "400ms",
                "evaluation_interval": "1s",
            },
            "rule_files": ["rules.yaml"],
            "scrape_configs": [
                {
                    # What the PodMonitor's relabelling produces.
                    "job_name": "presence-controller",
                    "static_configs": [
                        {"targets": targets, "labels": {"namespace": NAMESPACE, "pod": POD}}
                    ],
                }
            ],
        }
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))

    def start(self) -> None:
        self.configure(scraping=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "prometheus.log").open("wb"),
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def prometheus_binary() -> str:
    return installed("prometheus")


@pytest.fixture
def volume(tmp_path: Path) -> DownwardAPIVolume:
    volume = DownwardAPIVolume(tmp_path / "podinfo")
    volume.write({"app": "bot"})
    return volume


@pytest.fixture
async def controller(sim: Sim, volume: DownwardAPIVolume) -> AsyncIterator[tuple[Any, str]]:
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


async def query(client: httpx.AsyncClient, expr: str, at: float | None = None) -> list[Any]:
    params: dict[str, Any] = {"query": expr}
    if at is not None:
        params["time"] = at
    response = await client.get("/api/v1/query", params=params)
    body = response.json()
    assert body["status"] == "success", (expr, body)
    result: list[Any] = body["data"]["result"]
    return result


async def returns(client: httpx.AsyncClient, expr: str, data: bool, within: float = 30) -> bool:
    """Whether `expr` comes to return data (or nothing, with data=False) within the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if bool(await query(client, expr)) is data:
            return True
        await asyncio.sleep(0.25)
    return False


async def test_every_dashboard_and_alert_expression_against_a_real_prometheus(
    sim: Sim,
    volume: DownwardAPIVolume,
    controller: tuple[Any, str],
    prometheus_binary: str,
    tmp_path: Path,
) -> None:
    proc, admin = controller
    server = Prometheus(prometheus_binary, tmp_path, admin)
    server.start()
    rules = alerts()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            ready = await wait_until(lambda: sim.gateway.presence == "available", 15)
            assert ready, "the controller made the bot available"

            async def prometheus_ready() -> bool:
                try:
                    return (await client.get("/-/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while not await prometheus_ready():
                assert loop.time() < deadline, (tmp_path / "prometheus.log").read_text()
                await asyncio.sleep(0.2)
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
            sim.gateway.set_faults.clear()
            sim.gateway.session_faults.clear()
            sim.consumer.health_status = 200
            assert await returns(client, rules["PresenceNotApplied"], False)

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

            # Hung (SIGSTOP): scrapes time out, up is 0, the series go stale.
            proc.send_signal(signal.SIGSTOP)
            assert await returns(client, rules["PresenceControllerDown"], True)
            assert await returns(client, "presence_last_tick_timestamp_seconds", False)
            assert not await query(client, rules["PresenceControllerNotTicking"])
            proc.send_signal(signal.SIGCONT)
            assert await returns(client, rules["PresenceControllerDown"], False)

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
        "PresenceControllerDown",
        "PresenceControllerAbsent",
    }
    assert checked == set(rules), "every alert expression was driven to return data"
