"""The monitoring kit: alert rules and dashboard are valid, name only metrics we export, and the
alerts fire when they should (promtool unit tests)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import promql_parser
import pytest
import yaml
from conftest import installed

from controller.telemetry.metrics import Metrics, WitnessMetrics

KIT = Path(__file__).resolve().parent.parent / "k8s" / "monitoring"
RULES = yaml.safe_load((KIT / "prometheus-rule.yaml").read_text())
DASHBOARD = json.loads((KIT / "grafana-dashboard.json").read_text())


def rules() -> list[dict[str, Any]]:
    return [rule for group in RULES["spec"]["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    return [t["expr"] for panel in DASHBOARD["panels"] for t in panel["targets"]]


SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
}


def families() -> list[Any]:
    """Every metric family the controller can export, the witness's included."""
    metrics = Metrics()
    WitnessMetrics(metrics.registry)
    return list(metrics.registry.collect())


def exported_names() -> set[str]:
    """Every sample name the controller can export (labeled series appear only once used)."""
    return {
        family.name + suffix for family in families() for suffix in SAMPLE_SUFFIXES[family.type]
    }


def test_rule_resource_shape() -> None:
    assert RULES["apiVersion"] == "monitoring.coreos.com/v1" and RULES["kind"] == "PrometheusRule"
    assert RULES["metadata"]["name"] == "presence-controller"
    names = [rule["alert"] for rule in rules()]
    assert len(names) == 19 and len(set(names)) == 18
    # One name, two severities: the whole bot down (critical), one replica of several (warning).
    down = [r["labels"]["severity"] for r in rules() if r["alert"] == "PresenceControllerDown"]
    assert down == ["critical", "warning"]
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]
        url = urlsplit(rule["annotations"]["runbook_url"])
        assert url.scheme == "https" and url.path.endswith("/docs/observability.md"), url
        assert url.fragment == rule["alert"].lower()


@pytest.mark.parametrize("expr", [r["expr"] for r in rules()] + dashboard_exprs())
def test_every_expression_is_valid_promql(expr: str) -> None:
    promql_parser.parse(expr.replace("$__rate_interval", "5m"))


def test_rules_and_dashboard_name_only_metrics_we_export() -> None:
    exported = exported_names()
    used = set()
    for expr in [r["expr"] for r in rules()] + dashboard_exprs():
        used |= set(re.findall(r"\bpresence_[a-z_]+\b", expr))
    assert used, "found the metric names"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_dashboard_shape() -> None:
    assert DASHBOARD["uid"] == "presence-controller"
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in DASHBOARD["templating"]["list"]}
    assert variables == {"datasource", "namespace", "workload", "pod"}
    titles = {panel["title"] for panel in DASHBOARD["panels"]}
    wanted = {"Presence wanted (desired)", "Deciding rule (reason)", "Queue lag vs watermarks"}
    assert wanted | {"Gateway outcomes"} <= titles
    for panel in DASHBOARD["panels"]:
        assert panel["targets"] and {"x", "y", "w", "h"} <= set(panel["gridPos"])


@pytest.fixture
def promtool() -> str:
    return installed("promtool")


def test_promtool_checks_the_rules_and_runs_the_alert_unit_tests(promtool: str) -> None:
    """The same script as `make alerts`: no manual extraction step."""
    script = KIT / "tests" / "promtool.py"
    done = subprocess.run(
        [sys.executable, str(script), promtool], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 19 rules found" in done.stdout
    for tests in ("alerts.test.yaml", "annotations.test.yaml", "fleet.test.yaml"):
        assert f"Unit Testing:  {tests}\n  SUCCESS" in done.stdout, done.stdout


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    sys.path.insert(0, str(KIT / "tests"))
    import fleet_scenarios

    tests = [
        *yaml.safe_load((KIT / "tests" / "alerts.test.yaml").read_text())["tests"],
        *fleet_scenarios.document()["tests"],
    ]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert fired == {rule["alert"] for rule in rules()}
    assert set(fleet_scenarios.ALERTS) == {rule["alert"] for rule in rules()}


def test_the_inhibition_mutes_only_what_maintenance_explains() -> None:
    """The shipped Alertmanager inhibition: maintenance mutes the bot's offline, not-applied,
    unconfirmed, flapping and degraded alerts; never those about the controller, the
    credentials, the session, the API server or a missing leader."""
    inhibit = yaml.safe_load((KIT / "alertmanager-inhibit-rules.yaml").read_text())
    (rule,) = inhibit["inhibit_rules"]
    assert rule["source_matchers"] == ['alertname="PresenceMaintenance"']
    assert rule["equal"] == ["namespace", "workload"]
    (target,) = rule["target_matchers"]
    muted = set(re.fullmatch(r'alertname=~"(.*)"', target)[1].split("|"))  # type: ignore[index]
    names = {r["alert"] for r in rules()}
    assert muted <= names
    assert muted == {
        "PresenceStuckUnavailable", "PresenceNotApplied", "PresenceNotConfirmed",
        "PresenceFlapping", "PresenceFleetDegraded",
    }  # fmt: skip


def test_the_observability_doc_covers_every_metric_and_alert() -> None:
    doc = (KIT.parent.parent / "docs" / "observability.md").read_text()
    for family in families():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}`" in doc, name
    for rule in rules():
        assert f"\n### {rule['alert']}\n" in doc, rule["alert"]


def test_the_runbook_covers_every_alert_and_is_linked() -> None:
    root = KIT.parent.parent
    runbook = (root / "docs" / "operations.md").read_text()
    for rule in rules():
        assert f"| {rule['alert']} |" in runbook, rule["alert"]
    assert "(docs/operations.md)" in (root / "README.md").read_text()
