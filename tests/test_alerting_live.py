"""The monitoring kit against a fleet: three `presence-controller run` processes in fleet mode
(the fake API server on loopback, one simulated consumer each, one simulated gateway), scraped by
a real Prometheus with the shipped rules, which sends its alerts to a real Alertmanager with the
shipped inhibition (Debian's `prometheus` and `prometheus-alertmanager`).

Time is scaled: every `for:` is divided by 480 (30m -> 3.75 s) and every range window by 240
(at least 1 s), so a scenario takes seconds; the unscaled durations are covered by the promtool
tests (k8s/monitoring/tests). Checked: a healthy fleet raises no alert, followers included; one
consumer down raises PresenceFleetDegraded and nothing else; all down raises
PresenceStuckUnavailable once; maintenance mutes what it explains in Alertmanager and nothing
else; an API server that answers nobody raises PresenceNoLeader and PresenceKubeAPIUnreachable; a
dead follower is a warning; a former leader's credential failure stops alerting once it hands
over; every dashboard panel returns data.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import Sim, installed, spawn
from live import (
    KIT,
    Alertmanager,
    Prometheus,
    dashboard_targets,
    free_port,
    query,
    ready,
    rule_list,
    scaled,
    seconds,
)

from controller.sim.consumer import SimConsumer
from controller.sim.harness import wait_until
from controller.sim.kube import SimKube
from controller.sim.kube_discovery import write_kubeconfig
from controller.sim.server import LoopbackServer

NS, WORKLOAD = "whatsapp-bot", "whatsapp-bot"
PODS = ("pod-a", "pod-b", "pod-c")
BOT = {"namespace": NS, "workload": WORKLOAD}


def window(seconds: float) -> str:
    return f"{round(max(1.0, seconds / 240) * 1000)}ms"


def scaled_rules() -> dict[str, Any]:
    """The shipped rule groups with time scaled down (module docstring)."""
    spec = yaml.safe_load((KIT / "prometheus-rule.yaml").read_text())["spec"]
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule["expr"] = scaled(rule["expr"], window)
            if "for" in rule:
                rule["for"] = f"{round(max(0.5, seconds(rule['for']) / 480) * 1000)}ms"
    return dict(spec)


@dataclass
class Fleet:
    fake: SimKube
    consumers: dict[str, SimConsumer]
    admins: dict[str, str]
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)


@asynccontextmanager
async def fleet_of_three(sim: Sim, tmp_path: Path) -> AsyncIterator[Fleet]:
    fake = SimKube(tokens={f"token-{p}": p for p in PODS})
    fake.workload(NS, WORKLOAD, list(PODS))
    async with AsyncExitStack() as stack:
        api = await stack.enter_async_context(LoopbackServer(fake.app()))
        fleet = Fleet(fake, {}, {})
        for pod in PODS:
            consumer = SimConsumer()
            served = await stack.enter_async_context(LoopbackServer(consumer.app()))
            fleet.consumers[pod] = consumer
            fleet.admins[pod] = f"127.0.0.1:{free_port()}"
            config = write_kubeconfig(tmp_path / f"kubeconfig-{pod}", api.url, f"token-{pod}", NS)
            env = sim.env(
                KUBECONFIG=str(config),
                PRESENCE_HEALTH_URL=f"{served.url}/healthz",
                PRESENCE_METRICS_URL=f"{served.url}/metrics",
                PRESENCE_LISTEN=fleet.admins[pod],
                PRESENCE_INTERVAL="100ms",
                PRESENCE_TIMEOUT="80ms",
                PRESENCE_REASSERT_AVAILABLE="2s",
                PRESENCE_REASSERT_UNAVAILABLE="1s",
                PRESENCE_SESSION_CHECK="500ms",
                PRESENCE_WAWP__TIMEOUT="0.5",
                PRESENCE_KUBE__ENABLED="true",
                PRESENCE_KUBE__NAMESPACE=NS,
                PRESENCE_KUBE__POD_NAME=pod,
                PRESENCE_KUBE__WORKLOAD=f"deployment/{WORKLOAD}",
                PRESENCE_KUBE__LEASE_DURATION="3",
                PRESENCE_KUBE__RENEW_DEADLINE="2",
                PRESENCE_KUBE__RETRY_PERIOD="0.3",
                PRESENCE_KUBE__HEARTBEAT="0.5",
            )
            fleet.procs[pod] = await spawn(env, quiet=True)
        try:
            yield fleet
        finally:
            for proc in fleet.procs.values():
                if proc.returncode is None:
                    proc.send_signal(signal.SIGCONT)
                    proc.send_signal(signal.SIGTERM)
            for proc in fleet.procs.values():
                await asyncio.wait_for(proc.wait(), 15)


@pytest.fixture
def binaries() -> tuple[str, str]:
    return installed("prometheus"), installed("prometheus-alertmanager")


async def firing(client: httpx.AsyncClient) -> list[dict[str, str]]:
    """The firing alerts' labels, as Prometheus has them."""
    return [r["metric"] for r in await query(client, 'ALERTS{alertstate="firing"}')]


def names(alerts: list[dict[str, str]]) -> set[str]:
    return {a["alertname"] for a in alerts}


async def until(check: Any, within: float = 40) -> None:
    """Wait for the async `check` to hold (generous: a loaded machine runs 6 processes here)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.25)


async def leader(admins: dict[str, str]) -> str | None:
    for pod, admin in admins.items():
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                status = (await client.get(f"http://{admin}/status")).json()
        except (httpx.HTTPError, ValueError):
            continue
        if status["fleet"].get("is_leader"):
            return pod
    return None


@pytest.mark.slow
async def test_a_fleet_against_a_real_prometheus_and_alertmanager(
    sim: Sim, binaries: tuple[str, str], tmp_path: Path
) -> None:
    prometheus_binary, alertmanager_binary = binaries
    inhibit = yaml.safe_load((KIT / "alertmanager-inhibit-rules.yaml").read_text())
    manager = Alertmanager(alertmanager_binary, tmp_path, inhibit["inhibit_rules"])
    manager.start()
    async with fleet_of_three(sim, tmp_path) as fleet, AsyncExitStack() as stack:
        targets = {
            admin: {"namespace": NS, "workload": WORKLOAD, "pod": pod}
            for pod, admin in fleet.admins.items()
        }
        server = Prometheus(
            prometheus_binary, tmp_path, targets, scaled_rules(), scrape="250ms",
            alertmanager=manager.address,
        )  # fmt: skip
        server.start()
        stack.callback(server.stop)
        stack.callback(manager.stop)
        prom = await stack.enter_async_context(httpx.AsyncClient(base_url=server.url, timeout=5))
        am = await stack.enter_async_context(httpx.AsyncClient(base_url=manager.url, timeout=5))
        await ready(prom, tmp_path / "prometheus.log")
        await ready(am, tmp_path / "alertmanager.log")

        async def alertmanager() -> list[dict[str, Any]]:
            alerts: list[dict[str, Any]] = (await am.get("/api/v2/alerts")).json()
            return alerts

        # A healthy fleet: every replica scraped, a leader, the bot online; then longer than
        # the longest scaled `for:` (3.75 s) with no alert at all.
        assert await wait_until(lambda: sim.gateway.presence == "available", 30)
        up = f'count(up{{job="presence-controller", namespace="{NS}"}} == 1) == 3'

        async def scraped() -> bool:
            return bool(await query(prom, up))

        async def quiet() -> bool:
            return await firing(prom) == []

        await until(scraped)
        # PresenceControllerAbsent may have fired before the first scrape (scaled: 2.5 s).
        await until(quiet)
        lead = await leader(fleet.admins)
        assert lead is not None
        followers = [p for p in PODS if p != lead]
        for _ in range(24):  # 6 s
            assert await firing(prom) == [], "a healthy fleet raises no alert"
            await asyncio.sleep(0.25)
        assert await alertmanager() == []
        # Every dashboard panel returns data on a healthy fleet (fleet panels included).
        empty = [
            title
            for title, expr in dashboard_targets().items()
            if not await query(prom, _dashboard(expr, followers[0]))
        ]
        assert empty == [], "every dashboard expression returns data"

        # One follower's consumer down: the bot stays online, only PresenceFleetDegraded.
        fleet.consumers[followers[0]].health_status = 503

        async def degraded() -> bool:
            return names(await firing(prom)) == {"PresenceFleetDegraded"}

        await until(degraded)
        await asyncio.sleep(5)  # longer than StuckUnavailable's scaled `for:`
        alerts = await firing(prom)
        assert [a["alertname"] for a in alerts] == ["PresenceFleetDegraded"], alerts
        assert {k: alerts[0][k] for k in ("namespace", "workload", "severity")} == {
            **BOT,
            "severity": "warning",
        }
        assert sim.gateway.presence == "available"

        # Every consumer down: the bot goes offline; PresenceStuckUnavailable, once.
        for consumer in fleet.consumers.values():
            consumer.health_status = 503

        async def stuck() -> bool:
            return "PresenceStuckUnavailable" in names(await firing(prom))

        await until(stuck)
        alerts = await firing(prom)
        assert [a for a in alerts if a["alertname"] == "PresenceStuckUnavailable"] == [
            {"__name__": "ALERTS", "alertname": "PresenceStuckUnavailable",
             "alertstate": "firing", "severity": "warning", **BOT}
        ]  # fmt: skip
        for consumer in fleet.consumers.values():
            consumer.health_status = 200
        await until(quiet)

        # Maintenance while the WhatsApp session is disconnected: the bot should go offline and
        # cannot. PresenceMaintenance fires; Alertmanager mutes PresenceNotConfirmed (maintenance
        # explains it); whatever else fires stays active (below: a credential failure).
        sim.gateway.session_state = "SCAN_QR_CODE"
        maintenance = {"presence-controller/maintenance": "true"}
        fleet.fake.annotate("deployments", NS, WORKLOAD, **maintenance)
        wanted = {"PresenceMaintenance", "PresenceNotConfirmed"}

        async def muted() -> bool:
            return wanted <= {a["labels"]["alertname"] for a in await alertmanager()}

        await until(muted)
        states = {a["labels"]["alertname"]: a["status"] for a in await alertmanager()}
        assert states["PresenceNotConfirmed"]["state"] == "suppressed"
        assert states["PresenceNotConfirmed"]["inhibitedBy"]
        for name, status in states.items():
            if name not in {"PresenceNotApplied", "PresenceNotConfirmed"}:
                assert status["state"] == "active", (name, status)
        sim.gateway.session_state = "WORKING"
        ended: dict[str, Any] = {"presence-controller/maintenance": None}
        fleet.fake.annotate("deployments", NS, WORKLOAD, **ended)
        await until(quiet)

        # The API server answers nobody: the leader steps down, nobody leads.
        fleet.fake.partitioned.update(PODS)

        async def leaderless() -> bool:
            found = names(await firing(prom))
            return {"PresenceNoLeader", "PresenceKubeAPIUnreachable"} <= found

        await until(leaderless)
        alerts = [a for a in await firing(prom) if a["alertname"] == "PresenceNoLeader"]
        assert alerts == [
            {"__name__": "ALERTS", "alertname": "PresenceNoLeader", "alertstate": "firing",
             "severity": "critical", **BOT}
        ]  # fmt: skip
        fleet.fake.partitioned.clear()
        await until(quiet, within=60)

        # A dead (stopped) follower: a warning naming it, not the bot's critical.
        lead = await leader(fleet.admins)
        assert lead is not None
        stopped = next(p for p in PODS if p != lead)
        fleet.procs[stopped].send_signal(signal.SIGSTOP)

        async def follower_down() -> bool:
            return "PresenceControllerDown" in names(await firing(prom))

        await until(follower_down)
        down = [a for a in await firing(prom) if a["alertname"] == "PresenceControllerDown"]
        assert [(a["severity"], a.get("pod")) for a in down] == [("warning", stopped)]
        fleet.procs[stopped].send_signal(signal.SIGCONT)
        await until(quiet, within=60)

        # In maintenance, the leader's credential is refused: PresenceGatewayAuthFailure, which
        # maintenance does not mute. The leader loses the Lease (cut off from the API server)
        # while the Secret is fixed: once another replica leads, its failure stops alerting.
        fleet.fake.annotate("deployments", NS, WORKLOAD, **maintenance)
        token = sim.gateway.access_token
        sim.gateway.access_token = "rotated-elsewhere-0000"

        async def auth_failure() -> bool:
            states = {a["labels"]["alertname"]: a["status"] for a in await alertmanager()}
            return {"PresenceGatewayAuthFailure", "PresenceMaintenance"} <= set(states)

        await until(auth_failure, within=60)
        states = {a["labels"]["alertname"]: a["status"] for a in await alertmanager()}
        assert states["PresenceGatewayAuthFailure"]["state"] == "active", states
        lead = await leader(fleet.admins)
        assert lead is not None
        fleet.fake.partitioned.add(lead)
        sim.gateway.access_token = token

        async def handed_over() -> bool:
            now = await leader({p: a for p, a in fleet.admins.items() if p != lead})
            return now is not None and "PresenceGatewayAuthFailure" not in names(await firing(prom))

        await until(handed_over, within=60)
        fleet.fake.partitioned.clear()
    checked = {
        "PresenceFleetDegraded", "PresenceStuckUnavailable", "PresenceMaintenance",
        "PresenceNotConfirmed", "PresenceNoLeader",
        "PresenceKubeAPIUnreachable", "PresenceControllerDown", "PresenceGatewayAuthFailure",
    }  # fmt: skip
    assert checked <= {r["alert"] for r in rule_list()}


def _dashboard(expr: str, pod: str) -> str:
    expr = expr.replace("$__rate_interval", "2s").replace("[1h]", "[30s]")
    for name, value in (("namespace", NS), ("workload", WORKLOAD), ("pod", ".*")):
        expr = expr.replace(f'"${name}"', f'"{value}"')
    return expr
