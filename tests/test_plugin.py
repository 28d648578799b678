"""`kubectl presence`, the real console script in a real process, against the fake API server on
loopback through the real client library (and through the real kubectl's plugin discovery where
kubectl is installed): what it writes, what it refuses before sending anything, dry runs, what
`status` shows, kubectl's conventions and exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.core.fleet import DECISION_KEY, DECISION_REASON_KEY, LEASE_LABEL, VERDICT_KEY
from controller.kube.wire import micro_time
from controller.sim.kube import SimKube
from controller.sim.kube_discovery import write_kubeconfig
from controller.sim.server import LoopbackServer

BIN = Path(sys.executable).parent
PLUGIN = str(BIN / "kubectl-presence")
P = "presence-controller/"
D = "deploy/whatsapp-bot"


@dataclass
class Cluster:
    fake: SimKube
    kubeconfig: Path

    def annotations(
        self, plural: str = "deployments", name: str = "whatsapp-bot"
    ) -> dict[str, str]:
        obj = self.fake.get(plural, "" if plural == "namespaces" else "shop", name)
        assert obj is not None
        return dict(obj["metadata"].get("annotations") or {})

    def patches(self) -> list[str]:
        return [c.plural for c in self.fake.calls if c.verb == "patch"]

    async def run(self, *args: str, command: str = PLUGIN) -> tuple[int, str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PRESENCE_", "KUBE"))}
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        words = [command, *args] if command == PLUGIN else [command, "presence", *args]
        proc = await asyncio.create_subprocess_exec(
            *words, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    fake = SimKube(tokens={"sre-token": "sre"})
    fake.workload("shop", "whatsapp-bot", ["bot-a", "bot-b"])
    fake.put("namespaces", {"metadata": {"name": "shop"}})
    async with LoopbackServer(fake.app()) as server:
        path = write_kubeconfig(tmp_path / "kubeconfig", server.url, "sre-token", "shop")
        yield Cluster(fake, path)


def stamp(at: datetime) -> datetime:
    return datetime.fromisoformat(at.isoformat())


async def test_maintenance_for_two_hours_writes_the_controllers_annotations(
    cluster: Cluster,
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    code, out, err = await cluster.run(
        "maintenance", "start", "deploy/whatsapp-bot", "--for", "2h", "--reason", "DB migration"
    )
    assert code == 0, err
    notes = cluster.annotations()
    end = datetime.fromisoformat(notes[P + "maintenance"])
    assert before + timedelta(hours=2) <= end <= datetime.now(UTC) + timedelta(hours=2)
    assert notes[P + "maintenance-reason"] == "DB migration"
    until = notes[P + "maintenance"]
    assert out == f"deployment/whatsapp-bot annotated: maintenance until {until}: DB migration\n"
    code, out, _ = await cluster.run("maintenance", "end", "deploy/whatsapp-bot")
    assert code == 0 and out == "deployment/whatsapp-bot annotated: no maintenance\n"
    assert P + "maintenance" not in cluster.annotations()
    assert P + "maintenance-reason" not in cluster.annotations()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["maintenance", "start", D], "maintenance needs an end: one of --for 2h"),
        (["maintenance", "start", "deploy/whatsapp-bot", "--for", "2h", "--indefinitely"],
         "(got --for and --indefinitely)"),
        (["maintenance", "start", D, "--for", "soon"], "--for: invalid duration 'soon'"),
        (["maintenance", "start", "deploy/whatsapp-bot", "--until", "2020-01-01T00:00:00Z"],
         "--until: 2020-01-01T00:00:00Z has passed already"),
        (["maintenance", "start", D, "--windows", "Sat 02:00-04:00 UTC; Sun 25:00-26:00 UTC"],
         "--windows: window 2 of 2 'Sun 25:00-26:00 UTC': invalid time '25:00'"),
        (["maintenance", "start", D, "--windows", "true"], "'true' has no end"),
        (["force", "available", "deploy/whatsapp-bot"], "force available needs an end"),
        (["force", "clear", "deploy/whatsapp-bot", "--for", "1h"], "force clear takes no end"),
        (["maintenance", "start", "--for", "1h"], "which workload? deploy/NAME"),
        (["maintenance", "start", "cm/settings", "--for", "1h"], "expected deploy/NAME"),
        (["force", "maybe", "deploy/whatsapp-bot"], "invalid choice: 'maybe'"),
    ],
)  # fmt: skip
async def test_invalid_requests_are_refused_with_why_and_nothing_is_sent(
    cluster: Cluster, args: list[str], error: str
) -> None:
    code, out, err = await cluster.run(*args)
    assert code == 2 and error in err and out == ""
    assert cluster.patches() == []


async def test_force_with_an_expiry_and_clear(cluster: Cluster) -> None:
    code, out, _ = await cluster.run("force", "unavailable", "deploy/whatsapp-bot", "--for", "30m")
    notes = cluster.annotations()
    assert code == 0 and notes[P + "force"] == "unavailable"
    until = datetime.fromisoformat(notes[P + "force-until"])
    assert timedelta(minutes=29) < until - datetime.now(UTC) <= timedelta(minutes=30)
    assert out.endswith(f"force unavailable until {notes[P + 'force-until']}\n")
    code, out, _ = await cluster.run("force", "clear", "deploy/whatsapp-bot")
    assert code == 0 and not {P + "force", P + "force-until"} & set(cluster.annotations())


async def test_dry_runs_store_nothing(cluster: Cluster) -> None:
    code, out, _ = await cluster.run(
        "maintenance", "start", "deploy/whatsapp-bot", "--indefinitely", "--dry-run", "-o", "json"
    )
    body = json.loads(out)
    assert code == 0 and body["dry_run"] == "client"
    assert body["results"][0]["patch"]["metadata"]["annotations"][P + "maintenance"] == "true"
    assert cluster.patches() == []
    code, out, _ = await cluster.run(
        "maintenance", "start", "deploy/whatsapp-bot", "--for", "1h", "--dry-run=server"
    )
    assert code == 0 and "annotated (server dry run): maintenance until" in out
    assert cluster.patches() == ["deployments"], "the server saw it..."
    assert P + "maintenance" not in cluster.annotations(), "...and stored nothing"


async def test_namespace_wide(cluster: Cluster) -> None:
    code, out, _ = await cluster.run(
        "maintenance", "start", "--namespace-wide", "--windows", "Sat 02:00-04:00 Europe/Berlin"
    )
    assert code == 0 and out.startswith("namespace/shop annotated: maintenance in the windows")
    assert (
        cluster.annotations("namespaces", "shop")[P + "maintenance"]
        == "Sat 02:00-04:00 Europe/Berlin"
    )
    assert P + "maintenance" not in cluster.annotations()


async def test_without_fleet_mode_the_pods_are_annotated(cluster: Cluster) -> None:
    meta = {"name": "presence-controller", "namespace": "shop"}
    cluster.fake.put("configmaps", {"metadata": meta, "data": {"PRESENCE_KUBE__ENABLED": "false"}})
    code, out, err = await cluster.run("maintenance", "start", "deploy/whatsapp-bot", "--for", "1h")
    assert code == 0 and "without fleet mode" in err and "annotating its 2 pod(s)" in err
    assert out.count("annotated: maintenance until") == 2
    for pod in ("bot-a", "bot-b"):
        assert P + "maintenance" in cluster.annotations("pods", pod)
    assert P + "maintenance" not in cluster.annotations()


def leases(fake: SimKube, holder: str, decision: tuple[str, str]) -> None:
    now = micro_time(datetime.now(UTC))
    spec = {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": now,
            "acquireTime": now}  # fmt: skip
    fake.put("leases", {"metadata": {"name": "whatsapp-bot-presence", "namespace": "shop"},
                        "spec": spec})  # fmt: skip
    for pod in ("bot-a", "bot-b"):
        notes: dict[str, Any] = {VERDICT_KEY: "available"}
        if pod == holder:
            notes |= {DECISION_KEY: decision[0], DECISION_REASON_KEY: decision[1]}
        fake.put("leases", {
            "metadata": {"name": f"whatsapp-bot-presence-{pod}", "namespace": "shop",
                         "labels": {LEASE_LABEL: "whatsapp-bot-presence"}, "annotations": notes},
            "spec": {**spec, "holderIdentity": pod},
        })  # fmt: skip


async def test_status_shows_the_decision_the_schedule_and_what_changes_next(
    cluster: Cluster,
) -> None:
    leases(cluster.fake, "bot-a", ("available", "fleet: 2/2 members available"))
    start = (datetime.now(UTC) + timedelta(minutes=30)).replace(microsecond=0)
    cluster.fake.annotate(
        "deployments", "shop", "whatsapp-bot",
        **{P + "maintenance": f"{start.strftime('%Y-%m-%dT%H:%M:%SZ')}/PT2H",
           P + "maintenance-reason": "Kernel upgrade"},
    )  # fmt: skip
    code, out, err = await cluster.run("force", "available", "deploy/whatsapp-bot", "--for", "5m")
    assert code == 0, err
    code, out, err = await cluster.run("status", "deploy/whatsapp-bot", "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["mode"] == "fleet" and doc["leader"] == {"pod": "bot-a", "expired": False}
    assert doc["decision"] == {"presence": "available", "reason": "fleet: 2/2 members available"}
    assert doc["members"] == {"available": 2}
    assert not doc["maintenance"]["active"]
    assert doc["maintenance"]["next"]["start"] == start.isoformat()
    assert doc["maintenance"]["next"]["reason"].startswith(
        "Kernel upgrade (deployment/whatsapp-bot"
    )
    assert doc["override"]["force"] == "available" and doc["override"]["expires"] is not None
    assert doc["next_change"] == doc["override"]["expires"]
    assert {n["reason"] for n in doc["notices"]} == {"MaintenanceScheduled", "ForceExpiring"}
    code, text, _ = await cluster.run("status", "deploy/whatsapp-bot")
    assert code == 0
    assert "deployment/whatsapp-bot in namespace shop (fleet mode)" in text
    assert "lease:        whatsapp-bot-presence (leader bot-a)" in text
    assert "decided:      available: fleet: 2/2 members available" in text
    assert f"next window:  {start.isoformat()} -> " in text
    assert "notice:       MaintenanceScheduled: maintenance starts at" in text


async def test_the_pod_templates_settings_count(cluster: Cluster) -> None:
    settings = {
        "PRESENCE_KUBE__ENABLED": "true",
        "PRESENCE_ONLINE_HOURS": "Mon-Fri 09:00-17:00 Europe/Berlin",
        "PRESENCE_ONLINE_HOURS_HOLIDAYS": "DE-BY",
    }
    meta = {"name": "presence-controller", "namespace": "shop"}
    cluster.fake.put("configmaps", {"metadata": meta, "data": settings})
    code, out, _ = await cluster.run("status", "deploy/whatsapp-bot", "-o", "json")
    hours = json.loads(out)["online_hours"]
    assert code == 0 and hours["configured"] == "Mon-Fri 09:00-17:00 Europe/Berlin"
    assert hours["holidays"] == "DE-BY" and hours["next_change"] is not None


async def test_kubectl_conventions_and_failures(cluster: Cluster, tmp_path: Path) -> None:
    code, _, err = await cluster.run("status", "deploy/whatsapp-bot", "-n", "elsewhere")
    assert code == 1 and "deployment/whatsapp-bot not found in namespace elsewhere" in err
    cluster.fake.denied.add(("patch", "deployments"))
    code, _, err = await cluster.run("force", "clear", "deploy/whatsapp-bot")
    assert code == 1 and "forbidden:" in err and "needs get and patch" in err
    # --context picks a context of the kubeconfig; the current one here is refused (401).
    two = tmp_path / "two-contexts"
    text = cluster.kubeconfig.read_text()
    two.write_text(
        text.replace("current-context: fake", "current-context: other")
        .replace("users: [", 'users: [{name: other, user: {token: "wrong"}}, ')
        .replace("contexts: [", "contexts: [{name: other, context: {cluster: fake, user: other}}, ")
    )
    code, _, err = await cluster.run("status", "deploy/whatsapp-bot", "--kubeconfig", str(two))
    assert code == 1 and "Unauthorized" in err
    code, out, err = await cluster.run(
        "status", "deploy/whatsapp-bot", "--kubeconfig", str(two), "--context", "fake"
    )
    assert code == 0 and "in namespace shop" in out, err
    code, _, err = await cluster.run("status", "deploy/whatsapp-bot", "--context", "nope")
    assert code == 2 and "kubeconfig:" in err


async def test_kubectl_finds_the_plugin(cluster: Cluster) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (make test installs Debian's kubernetes-client)")
    code, out, err = await cluster.run("status", "deploy/whatsapp-bot", command=kubectl)
    assert code == 0, err
    assert out.startswith("deployment/whatsapp-bot in namespace shop (fleet mode)")
    code, out, err = await cluster.run(
        "maintenance", "start", "deploy/whatsapp-bot", "--for", "1h", command=kubectl
    )
    assert code == 0 and P + "maintenance" in cluster.annotations(), err
