"""The Kubernetes manifests, offline: schema validation against a current release, the kustomize
render, and the sidecar wiring (annotations file, token, probes, hardening) really holding."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from controller.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
KUBERNETES_VERSION = "1.37.0"
CRD_KINDS = {"PrometheusRule", "ServiceMonitor"}


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBERNETES_VERSION]
    return subprocess.run([*command, *map(str, paths)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    command = [kubectl, "kustomize", str(K8S / "overlays" / "example")]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def sidecar(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "presence-controller"]
    return pod, container


def env_of(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The sidecar's environment as the kubelet would build it (ConfigMap, literals, secrets)."""
    configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            secret = secrets[ref["name"]]
            env[var["name"]] = (secret.get("stringData") or {}).get(ref["key"]) or ref["key"]
    return env


def mount_for(
    pod: dict[str, Any], container: dict[str, Any], path: str
) -> tuple[dict[str, Any], str]:
    """The volume whose mount holds `path`, and the path inside that volume."""
    for mount in container["volumeMounts"]:
        base = PurePosixPath(mount["mountPath"])
        if PurePosixPath(path).is_relative_to(base):
            (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
            return volume, str(PurePosixPath(path).relative_to(base))
    raise AssertionError(f"{path} is not inside any mount")


def test_every_manifest_file_validates_strictly() -> None:
    files = sorted(p for p in K8S.rglob("*.yaml") if "kustomization" not in p.name)
    built_in = [p for p in files if yaml.safe_load(p.read_text()).get("kind") not in CRD_KINDS]
    built_in = [p for p in built_in if "tests" not in p.parts]
    result = validate(*built_in)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(built_in)


def test_the_rendered_overlay_validates(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all([d for d in rendered if d["kind"] not in CRD_KINDS]))
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = sorted(d["kind"] for d in rendered)
    expected = "ConfigMap ConfigMap Deployment Namespace PrometheusRule Secret Service"
    assert kinds == [*expected.split(), "ServiceAccount", "ServiceMonitor"]
    assert {d["metadata"].get("namespace") for d in rendered if d["kind"] != "Namespace"} == {
        "whatsapp-bot"
    }


def test_the_annotations_file_lies_in_the_downward_api_mount(
    rendered: list[dict[str, Any]],
) -> None:
    pod, container = sidecar(rendered)
    path = env_of(rendered, container)["PRESENCE_ANNOTATIONS_FILE"]
    volume, inner = mount_for(pod, container, path)
    items = volume["downwardAPI"]["items"]
    assert {"path": inner, "fieldRef": {"fieldPath": "metadata.annotations"}} in items


def test_the_token_comes_from_a_secret_file_never_a_literal(rendered: list[dict[str, Any]]) -> None:
    pod, container = sidecar(rendered)
    literal = [v for v in container["env"] if "TOKEN" in v["name"] and "FILE" not in v["name"]]
    assert literal == [], "no token in the pod spec"
    path = env_of(rendered, container)["PRESENCE_WAWP__ACCESS_TOKEN_FILE"]
    volume, inner = mount_for(pod, container, path)
    secret_name = volume["secret"]["secretName"]
    assert {"key": "access-token", "path": inner} in volume["secret"]["items"]
    secret = next(
        d for d in rendered if d["kind"] == "Secret" and d["metadata"]["name"] == secret_name
    )
    values = [base64.b64decode(value).decode() for value in secret["data"].values()]
    assert values and all("REPLACE" in value for value in values), "a visible placeholder"


def test_probes_hit_the_admin_port(rendered: list[dict[str, Any]]) -> None:
    _, container = sidecar(rendered)
    listen = env_of(rendered, container)["PRESENCE_LISTEN"]
    (port,) = [p for p in container["ports"] if p["containerPort"] == int(listen.rsplit(":", 1)[1])]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    service = one(rendered, "Service")
    assert port["name"] in {p["targetPort"] for p in service["spec"]["ports"]}
    monitor = one(rendered, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()


def test_the_pod_is_hardened(rendered: list[dict[str, Any]]) -> None:
    pod, container = sidecar(rendered)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    account = one(rendered, "ServiceAccount")
    assert account["metadata"]["name"] == pod["serviceAccountName"]
    assert account["automountServiceAccountToken"] is False
    for each in pod["containers"]:
        sc = each["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert each["resources"]["requests"] and each["resources"]["limits"]["memory"]
    uid = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert uid is not None
    sc = container["securityContext"]
    assert (str(sc["runAsUser"]), str(sc["runAsGroup"])) == uid.groups()
    assert sc["runAsNonRoot"] is True


def test_trace_attributes_come_from_the_downward_api(rendered: list[dict[str, Any]]) -> None:
    _, container = sidecar(rendered)
    refs = {
        v["name"]: v["valueFrom"]["fieldRef"]["fieldPath"]
        for v in container["env"]
        if "fieldRef" in v.get("valueFrom", {})
    }
    assert refs == {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
        "NODE_NAME": "spec.nodeName",
    }


def test_the_rendered_settings_are_a_valid_controller_configuration(
    rendered: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pod, container = sidecar(rendered)
    env = env_of(rendered, container)
    # Stand in for the mounted files at their paths below a temporary root.
    for variable in ("PRESENCE_ANNOTATIONS_FILE", "PRESENCE_WAWP__ACCESS_TOKEN_FILE"):
        local = tmp_path / env[variable].lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text("placeholder-token-value" if "TOKEN" in variable else "")
        env[variable] = str(local)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert str(settings.health_url) == "http://127.0.0.1:8080/healthz"
    assert str(settings.maintenance_schedule()) == "Sun 03:00-04:00 Europe/Berlin"
    assert settings.maintenance_lead == 300
    consumer = next(c for c in pod["containers"] if c["name"] == "consumer")
    assert settings.health_url.port == consumer["ports"][0]["containerPort"]
