"""The monitoring kit: alert rules and dashboard are valid, name only metrics we export, and the
alerts fire when they should (promtool unit tests)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from controller.runtime.metrics import Metrics

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


def exported_names() -> set[str]:
    """Every sample name the controller can export (labeled series appear only once used)."""
    return {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in SAMPLE_SUFFIXES[family.type]
    }


def test_rule_resource_shape() -> None:
    assert RULES["apiVersion"] == "monitoring.coreos.com/v1" and RULES["kind"] == "PrometheusRule"
    assert RULES["metadata"]["name"] == "presence-controller"
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)) == 8
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        anchor = rule["annotations"]["runbook"].split("#")[1]
        assert anchor == rule["alert"].lower()


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
    assert variables == {"datasource", "namespace", "pod"}
    titles = {panel["title"] for panel in DASHBOARD["panels"]}
    wanted = {"Presence wanted (desired)", "Deciding rule (reason)", "Queue lag vs watermarks"}
    assert wanted | {"Gateway outcomes"} <= titles
    for panel in DASHBOARD["panels"]:
        assert panel["targets"] and {"x", "y", "w", "h"} <= set(panel["gridPos"])


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (make test installs it where apt-get is usable)")
    return path


def test_promtool_checks_the_rules_and_runs_the_alert_unit_tests(
    promtool: str, tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(RULES["spec"]))
    shutil.copy(KIT / "tests" / "alerts.test.yaml", tmp_path / "alerts.test.yaml")
    check = subprocess.run(
        [promtool, "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 8 rules found" in check.stdout
    test = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout


def test_the_observability_doc_covers_every_metric_and_alert() -> None:
    doc = (KIT.parent.parent / "docs" / "observability.md").read_text()
    for family in Metrics().registry.collect():
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
