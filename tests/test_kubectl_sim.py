"""`presence-controller sim` from the shell, and the real `kubectl` against its API server: every
`kubectl` command the README and docs/*.md show is run as written (through bash, in the docs'
order) against the simulated cluster while a fleet-mode controller runs there, except those that
need what the fake API server is not (a kubelet, a CRD, a protobuf decoder, the OpenAPI
schemas of kubectl apply), which are skipped with their reason."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_docs_commands import DOCS, shell_blocks

from controller.sim.harness import wait_until

CLI = [sys.executable, "-m", "controller"]
NEEDS = {
    "exec": "needs a kubelet (a container to run in)",
    "port-forward": "needs a kubelet (a pod's port)",
    "logs": "needs a kubelet (a container's log)",
    "apply": "kubectl apply -k needs every kind of the overlay and their OpenAPI schemas; the "
    "overlay is validated offline instead (tests/test_k8s.py)",
    "kustomize": "runs no request (tests/test_k8s.py renders it)",
    "prometheus": "needs the Prometheus Operator's CRDs",
    "secret": "kubectl sends a Secret as protobuf, which the fake API server does not read (it "
    "answers 415, as a JSON-only server would)",
}


@dataclass
class Simulated:
    consumer: str
    gateway: str
    kube: str
    kubeconfig: str
    process: asyncio.subprocess.Process


@pytest.fixture
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not installed (make test installs Debian's kubernetes-client)")
    return path


@pytest.fixture
async def simulated() -> AsyncIterator[Simulated]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRESENCE_", "KUBECONFIG"))}
    proc = await asyncio.create_subprocess_exec(
        *CLI, "sim", "--fleet", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    lines = [
        (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().rstrip() for _ in range(4)
    ]
    try:
        assert re.fullmatch(r"consumer http://127\.0\.0\.1:\d+", lines[0]), lines
        assert re.fullmatch(r"gateway wawp http://127\.0\.0\.1:\d+", lines[1]), lines
        assert re.fullmatch(r"kube https://127\.0\.0\.1:\d+", lines[2]), lines
        assert re.fullmatch(r"kubeconfig /\S+", lines[3]), lines
        yield Simulated(
            lines[0].split()[1], lines[1].split()[2], lines[2].split()[1], lines[3].split()[1],
            proc,
        )  # fmt: skip
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 15)


async def test_sim_prints_one_line_each_and_stops_on_sigterm(simulated: Simulated) -> None:
    config = Path(simulated.kubeconfig).read_text()
    assert "certificate-authority-data:" in config and "token:" in config
    assert simulated.kube in config
    simulated.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(simulated.process.wait(), 15) == 0
    assert simulated.process.stdout is not None
    assert await simulated.process.stdout.read() == b"", "nothing more on stdout"
    assert not Path(simulated.kubeconfig).exists(), "its files go with it"


def documented_kubectl_lines() -> list[tuple[str, str]]:
    """(doc, shell line) for each line of the docs' shell blocks that runs kubectl."""
    out = []
    for doc in DOCS:
        for block in shell_blocks(doc):
            for line in re.sub(r"\\\n", " ", block).splitlines():
                line = line.strip()
                if line.startswith("kubectl ") and "..." not in line:
                    out.append((doc.name, line))
    return out


def skip_reason(line: str) -> str | None:
    words = line.split()
    for word, reason in NEEDS.items():
        if word in words[:6]:
            return reason
    return None


async def test_every_documented_kubectl_command_runs_against_the_simulated_cluster(
    kubectl: str, simulated: Simulated, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRESENCE_", "KUBECONFIG"))}
    env["KUBECONFIG"] = simulated.kubeconfig
    # `kubectl presence` is the package's console script, next to this Python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    pod = "whatsapp-bot-7d4b9-x2k9p"
    controller = await asyncio.create_subprocess_exec(
        *CLI, "run",
        env={
            **env,
            "OTEL_TRACES_EXPORTER": "none",
            "PRESENCE_HEALTH_URL": f"{simulated.consumer}/healthz",
            "PRESENCE_METRICS_URL": f"{simulated.consumer}/metrics",
            "PRESENCE_INTERVAL": "200ms",
            "PRESENCE_TIMEOUT": "150ms",
            "PRESENCE_LISTEN": "127.0.0.1:0",
            "PRESENCE_WAWP__BASE_URL": simulated.gateway,
            "PRESENCE_WAWP__INSTANCE_ID": "sim-instance",
            "PRESENCE_WAWP__ACCESS_TOKEN": "sim-secret-token",
            "PRESENCE_WAWP__TIMEOUT": "2",
            "PRESENCE_KUBE__ENABLED": "true",
            "PRESENCE_KUBE__NAMESPACE": "whatsapp-bot",
            "PRESENCE_KUBE__POD_NAME": pod,
        },
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def run(line: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["bash", "-c", line.replace("kubectl ", f"{kubectl} ", 1)],
                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip

        def holder() -> bool:
            lease = "kubectl -n whatsapp-bot get lease whatsapp-bot-presence"
            return run(f"{lease} -o jsonpath='{{.spec.holderIdentity}}'").stdout == pod

        assert await wait_until(holder, 30, poll=0.5), "the controller leads in the sim"
        ran, skipped = [], []
        for doc, line in documented_kubectl_lines():
            reason = skip_reason(line)
            if reason is not None:
                skipped.append((doc, line, reason))
                continue
            done = run(line)
            assert done.returncode == 0, f"{doc}: {line}\n{done.stdout}{done.stderr}"
            ran.append((line, done.stdout))
            if "presence-controller/maintenance=true" in line and "deploy/" in line:
                # The leader turns the bot off and says so in an Event regarding the Deployment.
                def announced() -> bool:
                    events = "kubectl -n whatsapp-bot get events --field-selector"
                    return (
                        "PresenceUnavailable" in run(f"{events} reason=PresenceUnavailable").stdout
                    )

                assert await wait_until(announced, 30, poll=0.5), line
        outputs = dict(ran)
        # What the docs promise these show.
        events = outputs[
            "kubectl -n whatsapp-bot get events --field-selector reason=PresenceUnavailable"
        ]
        assert "PresenceUnavailable" in events and "deployment/whatsapp-bot" in events
        described = run("kubectl -n whatsapp-bot describe deploy/whatsapp-bot").stdout
        assert re.search(r"Warning\s+PresenceUnavailable\s+\S+\s+presence-controller", described)
        holder_line = next(k for k in outputs if "jsonpath='{.spec.holderIdentity}'" in k)
        assert outputs[holder_line] == pod
        leases = outputs[
            "kubectl -n whatsapp-bot get leases -l presence-controller/lease=whatsapp-bot-presence"
        ]
        assert f"whatsapp-bot-presence-{pod}" in leases
        assert (
            "successfully rolled out"
            in outputs["kubectl -n whatsapp-bot rollout status deploy/whatsapp-bot"]
        )
        verbs = {line.split()[3] if line.split()[1] == "-n" else line.split()[1] for line, _ in ran}
        assert {"annotate", "get", "rollout", "describe"} <= verbs
        assert {reason for *_, reason in skipped} <= set(NEEDS.values())
    finally:
        controller.send_signal(signal.SIGTERM)
        await asyncio.wait_for(controller.wait(), 15)
