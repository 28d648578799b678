"""Real Prometheus and Alertmanager servers on loopback (Debian's `prometheus` and
`prometheus-alertmanager`), loaded with the shipped monitoring kit, for the live tests."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

KIT = Path(__file__).resolve().parent.parent / "k8s" / "monitoring"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rule_list() -> list[dict[str, Any]]:
    spec = yaml.safe_load((KIT / "prometheus-rule.yaml").read_text())["spec"]
    return [rule for group in spec["groups"] for rule in group["rules"]]


def rule_key(rule: dict[str, Any]) -> str:
    """An alert's name, with its severity where one name has several rules."""
    same = [r for r in rule_list() if r["alert"] == rule["alert"]]
    return rule["alert"] if len(same) == 1 else f"{rule['alert']}/{rule['labels']['severity']}"


def dashboard_targets() -> dict[str, str]:
    board = json.loads((KIT / "grafana-dashboard.json").read_text())
    return {
        f"{panel['title']} [{target['refId']}]": target["expr"]
        for panel in board["panels"]
        for target in panel["targets"]
    }


_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> float:
    return sum(int(n) * _UNIT[u] for n, u in _DURATION.findall(text))


def scaled(expr: str, window: Callable[[float], str]) -> str:
    """`expr` with every range `[...]` replaced by `window(seconds)`."""
    return re.sub(r"\[(\d+[smhd])\]", lambda m: f"[{window(seconds(m[1]))}]", expr)


class Prometheus:
    """A real Prometheus on loopback: `targets` (address -> target labels) scraped every
    `scrape`, `rules` (plain rule groups) evaluated every `scrape` too, alerts sent to
    `alertmanager` (an address) if given."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        targets: dict[str, dict[str, str]],
        rules: dict[str, Any],
        scrape: str = "500ms",
        alertmanager: str | None = None,
    ) -> None:
        self.binary, self.workdir, self.targets = binary, workdir, targets
        self.rules, self.scrape, self.alertmanager = rules, scrape, alertmanager
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def configure(self, scraping: bool = True) -> None:
        (self.workdir / "rules.yaml").write_text(yaml.safe_dump(self.rules))
        static = [
            {"targets": [address], "labels": labels}
            for address, labels in (self.targets.items() if scraping else [])
        ]
        scrape = self.scrape
        interval_ms = int(scrape[:-2]) if scrape.endswith("ms") else int(seconds(scrape) * 1000)
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape,
                "scrape_timeout": f"{int(interval_ms * 0.8)}ms",
                "evaluation_interval": self.scrape,
            },
            "rule_files": ["rules.yaml"],
            # What the PodMonitor's relabelling produces: job, namespace, pod, workload.
            "scrape_configs": [{"job_name": "presence-controller", "static_configs": static}],
        }
        if self.alertmanager is not None:
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": [self.alertmanager]}]}]
            }
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))

    def start(self) -> None:
        self.configure()
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                # Alerts reach Alertmanager at once, not a minute later.
                "--rules.alert.resend-delay=500ms",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "prometheus.log").open("wb"),
        )

    def stop(self) -> None:
        stop(self.process)


class Alertmanager:
    """A real Alertmanager on loopback with `inhibit_rules`, grouping and waiting briefly."""

    def __init__(self, binary: str, workdir: Path, inhibit_rules: list[dict[str, Any]]) -> None:
        self.binary, self.workdir = binary, workdir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.inhibit_rules = inhibit_rules
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = {
            "route": {
                "receiver": "nobody",
                "group_by": ["alertname", "namespace", "workload"],
                "group_wait": "100ms",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [{"name": "nobody"}],
            "inhibit_rules": self.inhibit_rules,
        }
        (self.workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.workdir / 'alertmanager.yml'}",
                f"--storage.path={self.workdir / 'am-data'}",
                f"--web.listen-address={self.address}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "alertmanager.log").open("wb"),
        )

    def stop(self) -> None:
        stop(self.process)


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def ready(client: httpx.AsyncClient, log: Path, within: float = 30) -> None:
    """Wait for a Prometheus or Alertmanager to answer /-/ready (the test fails with its log)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            if (await client.get("/-/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert loop.time() < deadline, log.read_text() if log.exists() else "no log"
        await asyncio.sleep(0.2)


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
