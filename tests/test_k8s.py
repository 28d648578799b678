"""The Kubernetes manifests, offline: schema validation against a current release, the kustomize
render, the sidecar wiring (annotations file, token, probes, hardening) really holding, the
kubelet's file ownership rules, and no Secret an apply could overwrite."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from manifests import (
    GATEWAY_COMPONENTS,
    K8S,
    OVERLAY,
    ROOT,
    render,
    secret_references,
    with_components,
)

from controller.config import Settings, load_settings

KUBERNETES_VERSION = "1.37.0"
CRD_KINDS = {"PrometheusRule", "PodMonitor", "ServiceMonitor"}
FILE_VOLUMES = ("secret", "configMap", "downwardAPI", "projected")
"""Volumes whose files the kubelet writes itself (atomic writer), with its ownership rules."""


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBERNETES_VERSION]
    return subprocess.run([*command, *map(str, paths)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render(OVERLAY)


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def sidecar(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "presence-controller"]
    return pod, container


def env_of(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The sidecar's environment as the kubelet would build it (ConfigMap, literals; values
    from the out-of-band Secret as `<secret NAME/KEY>`)."""
    configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = f"<secret {ref['name']}/{ref['key']}>"
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


# The kubelet's ownership rules for the files it writes into Secret, ConfigMap, Downward API and
# projected volumes (pkg/volume: the atomic writer, then SetVolumeOwnership):
# - every file is owned by root (UID 0), group root;
# - its mode is the item's `mode`, else the volume's `defaultMode`, else 0644;
# - with a pod `fsGroup`, the group becomes fsGroup and, these volumes being read-only, the mode
#   gains the group read bits (mode | 0440);
# - a container's process runs as runAsUser (container, else pod, else the image's USER) with
#   the primary group runAsGroup (likewise) and supplementary groups fsGroup and
#   supplementalGroups.


@dataclass(frozen=True)
class VolumeFile:
    path: str
    uid: int
    gid: int
    mode: int


@dataclass(frozen=True)
class Identity:
    uid: int
    gids: frozenset[int]


def image_user() -> tuple[int, int]:
    match = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert match is not None, "the Dockerfile sets a numeric USER uid:gid"
    return int(match[1]), int(match[2])


def identity(pod: dict[str, Any], container: dict[str, Any]) -> Identity:
    pod_sc = pod.get("securityContext", {})
    sc = container.get("securityContext", {})
    image_uid, image_gid = image_user() if container["name"] == "presence-controller" else (-1, -1)
    uid = sc.get("runAsUser", pod_sc.get("runAsUser", image_uid))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", image_gid))
    assert uid >= 0 and gid >= 0, f"{container['name']}: UID/GID must be known to check files"
    groups = {gid, *pod_sc.get("supplementalGroups", [])}
    if "fsGroup" in pod_sc:
        groups.add(pod_sc["fsGroup"])
    return Identity(uid, frozenset(groups))


def _items(source: dict[str, Any], default: str) -> list[tuple[str, int | None]]:
    """(path, explicit mode) per file of one volume source; `default` names the whole-object
    projection when no items are listed (every key, under its own name)."""
    items = source.get("items")
    if not items:
        return [(default, None)]
    return [(item["path"], item.get("mode")) for item in items]


def volume_files(pod: dict[str, Any], volume: dict[str, Any]) -> list[VolumeFile]:
    """The files the kubelet writes for `volume`, with owner, group and mode."""
    fs_group = pod.get("securityContext", {}).get("fsGroup")
    (kind,) = [k for k in FILE_VOLUMES if k in volume]
    spec = volume[kind]
    default_mode = spec.get("defaultMode", 0o644)
    if kind == "projected":
        sources = [
            (name, source[name])
            for source in spec["sources"]
            for name in ("secret", "configMap", "downwardAPI", "serviceAccountToken")
            if name in source
        ]
    else:
        sources = [(kind, spec)]
    files = []
    for name, source in sources:
        entries = [(source["path"], None)] if name == "serviceAccountToken" else _items(source, "*")
        for path, mode in entries:
            effective = mode if mode is not None else default_mode
            gid = 0
            if fs_group is not None:
                gid, effective = fs_group, effective | 0o440
            files.append(VolumeFile(path, 0, gid, effective))
    return files


def readable(who: Identity, file: VolumeFile) -> bool:
    if who.uid == 0:
        return True
    if who.uid == file.uid:
        return bool(file.mode & 0o400)
    if file.gid in who.gids:
        return bool(file.mode & 0o040)
    return bool(file.mode & 0o004)


def unreadable_files(pod: dict[str, Any]) -> list[str]:
    """Every kubelet-written file a container mounts but cannot read, as `container: path`."""
    problems = []
    for container in pod["containers"]:
        who = identity(pod, container)
        for mount in container.get("volumeMounts", []):
            (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
            if not any(kind in volume for kind in FILE_VOLUMES):
                continue
            for file in volume_files(pod, volume):
                if not readable(who, file):
                    where = PurePosixPath(mount["mountPath"]) / file.path
                    problems.append(
                        f"{container['name']} (uid {who.uid}, groups {sorted(who.gids)}): "
                        f"{where} is {file.uid}:{file.gid} {file.mode:04o}"
                    )
    return problems


# Tests.


def test_every_manifest_file_validates_strictly() -> None:
    """Every resource file on its own (patches are checked rendered, below)."""
    files = sorted(p for p in K8S.rglob("*.yaml") if "kustomization" not in p.name)
    files = [p for p in files if "tests" not in p.parts and not p.name.endswith("-patch.yaml")]
    # Alertmanager's configuration, not a Kubernetes object (test_monitoring checks it).
    files = [p for p in files if p.name != "alertmanager-inhibit-rules.yaml"]
    built_in = [
        p
        for p in files
        if all(d.get("kind") not in CRD_KINDS for d in yaml.safe_load_all(p.read_text()))
    ]
    documents = sum(len(list(yaml.safe_load_all(p.read_text()))) for p in built_in)
    result = validate(*built_in)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == documents


def test_the_rendered_overlay_validates(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all([d for d in rendered if d["kind"] not in CRD_KINDS]))
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = sorted(d["kind"] for d in rendered)
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "Namespace",
        "PodDisruptionBudget",
        "PodMonitor",
        "PrometheusRule",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    assert {d["metadata"].get("namespace") for d in rendered if d["kind"] != "Namespace"} == {
        "whatsapp-bot"
    }


def test_the_overlay_ships_no_secret_an_apply_could_overwrite(
    rendered: list[dict[str, Any]],
) -> None:
    assert [d for d in rendered if d["kind"] == "Secret"] == []
    for path in K8S.rglob("kustomization.yaml"):
        assert "secretGenerator" not in yaml.safe_load(path.read_text()), path


def test_every_container_can_read_every_file_it_mounts(rendered: list[dict[str, Any]]) -> None:
    pod, _ = sidecar(rendered)
    mounted = {kind for volume in pod["volumes"] for kind in FILE_VOLUMES if kind in volume}
    assert {"secret", "downwardAPI"} <= mounted, "the model is exercised on both kinds"
    assert unreadable_files(pod) == []


def test_the_ownership_model_catches_a_root_only_token() -> None:
    """The shipped defect: defaultMode 0400 and no fsGroup leave the token readable by root
    only, and the sidecar (UID 10001) exits at start with Permission denied."""
    pod = {
        "securityContext": {"runAsNonRoot": True},
        "containers": [
            {
                "name": "presence-controller",
                "securityContext": {"runAsUser": 10001, "runAsGroup": 10001},
                "volumeMounts": [{"name": "token", "mountPath": "/var/run/secrets/wawp"}],
            }
        ],
        "volumes": [
            {
                "name": "token",
                "secret": {
                    "secretName": "s",
                    "items": [{"key": "access-token", "path": "access-token"}],
                    "defaultMode": 0o400,
                },
            }
        ],
    }
    (problem,) = unreadable_files(pod)
    assert "/var/run/secrets/wawp/access-token is 0:0 0400" in problem
    pod["securityContext"]["fsGroup"] = 10001
    assert unreadable_files(pod) == [], "fsGroup alone: the kubelet adds the group read bits"
    del pod["securityContext"]["fsGroup"]
    pod["volumes"][0]["secret"]["items"][0]["mode"] = 0o444
    assert unreadable_files(pod) == [], "or a world-readable item mode"


def test_the_files_the_sidecar_reads_lie_in_readable_mounts(
    rendered: list[dict[str, Any]],
) -> None:
    pod, container = sidecar(rendered)
    env = env_of(rendered, container)
    who = identity(pod, container)
    files = {k: v for k, v in env.items() if k.endswith("_FILE")}
    assert set(files) == {"PRESENCE_ANNOTATIONS_FILE", "PRESENCE_WAWP__ACCESS_TOKEN_FILE"}
    for path in files.values():
        volume, inner = mount_for(pod, container, path)
        (file,) = [f for f in volume_files(pod, volume) if f.path in (inner, "*")]
        assert readable(who, file), path


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
    assert {"key": "access-token", "path": inner} in volume["secret"]["items"]
    assert secret_references(pod) == {"presence-controller-wawp": {"access-token", "instance-id"}}


def test_probes_hit_the_admin_port_and_only_the_pod_monitor_scrapes_it(
    rendered: list[dict[str, Any]],
) -> None:
    _, container = sidecar(rendered)
    listen = env_of(rendered, container)["PRESENCE_LISTEN"]
    (port,) = [p for p in container["ports"] if p["containerPort"] == int(listen.rsplit(":", 1)[1])]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    service = one(rendered, "Service")
    assert port["name"] not in {p["targetPort"] for p in service["spec"]["ports"]}, (
        "the admin port stays off the bot's webhook Service"
    )
    monitor = one(rendered, "PodMonitor")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"
    assert {"targetLabel": "job", "replacement": "presence-controller"} in endpoint["relabelings"]
    template = one(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= template.items()


def test_the_monitoring_kit_carries_the_selector_label_and_runbook_urls(
    rendered: list[dict[str, Any]],
) -> None:
    for kind in ("PodMonitor", "PrometheusRule"):
        assert one(rendered, kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    settings = yaml.safe_load((OVERLAY / "monitoring-settings.yaml").read_text())
    base = settings["data"]["runbook-base"]
    rules = [r for g in one(rendered, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    urls = [rule["annotations"]["runbook_url"] for rule in rules]
    assert urls == [f"{base}#{rule['alert'].lower()}" for rule in rules]
    assert "monitoring-settings" not in str([d["metadata"]["name"] for d in rendered]), (
        "local-config: used while rendering, never applied"
    )


def test_the_pod_is_hardened(rendered: list[dict[str, Any]]) -> None:
    pod, container = sidecar(rendered)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    account = one(rendered, "ServiceAccount")
    assert account["metadata"]["name"] == pod["serviceAccountName"]
    assert account["automountServiceAccountToken"] is False
    for each in pod["containers"]:
        sc = each["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert each["resources"]["requests"] and each["resources"]["limits"]["memory"]
    sc = container["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"]) == image_user()
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
    pod, _ = sidecar(rendered)
    settings = rendered_settings(rendered, tmp_path, monkeypatch)
    assert settings.provider == "wawp" and settings.wawp.instance_id == "b7c1e0d2-instance"
    assert str(settings.health_url) == "http://127.0.0.1:8080/healthz"
    assert str(settings.maintenance_schedule()) == "Sun 03:00-04:00 Europe/Berlin"
    assert settings.maintenance_lead == 300
    consumer = next(c for c in pod["containers"] if c["name"] == "consumer")
    assert settings.health_url.port == consumer["ports"][0]["containerPort"]


def rendered_settings(
    docs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The sidecar's settings as the controller would load them in the rendered pod: values
    from the Secret stood in, every `*_FILE` a file at its path below `tmp_path`."""
    _, container = sidecar(docs)
    env = env_of(docs, container)
    for name, value in env.items():
        if value.startswith("<secret "):
            env[name] = "b7c1e0d2-instance"  # what the Secret would hold
    for variable in [name for name in env if name.endswith("_FILE")]:
        local = tmp_path / env[variable].lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text("" if variable == "PRESENCE_ANNOTATIONS_FILE" else "k3j5h6g7f8d9s0a1")
        env[variable] = str(local)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


@pytest.mark.parametrize("provider", GATEWAY_COMPONENTS)
def test_the_gateway_components_switch_provider_and_secret(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = with_components(provider)
    pod, container = sidecar(docs)
    # The provider's own Secret, readable by the sidecar; nothing of Wawp's is left.
    assert secret_references(pod) == {f"presence-controller-{provider}": {"api-key"}}
    assert unreadable_files(pod) == []
    env = env_of(docs, container)
    assert not [name for name in env if "WAWP" in name]
    key_file = env[f"PRESENCE_{provider.upper()}__API_KEY_FILE"]
    volume, inner = mount_for(pod, container, key_file)
    assert {"key": "api-key", "path": inner} in volume["secret"]["items"]
    settings = rendered_settings(docs, tmp_path, monkeypatch)
    assert settings.provider == provider
    assert settings.gateway_settings().secret()[0] is not None
    assert settings.kube.enabled, "fleet mode stays on"
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] not in CRD_KINDS]))
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


# Fleet mode (k8s/components/fleet, in the example overlay).


def test_the_fleet_rolls_out_without_an_outage_and_survives_drains(
    rendered: list[dict[str, Any]],
) -> None:
    deployment = one(rendered, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    budget = one(rendered, "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1 < spec["replicas"]
    labels = spec["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in budget["selector"]["matchLabels"].items())
    # The shutdown (stopping heartbeat, last write, Lease release) fits the grace period.
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= 10


def test_only_the_sidecar_gets_an_api_token(rendered: list[dict[str, Any]]) -> None:
    pod, container = sidecar(rendered)
    assert pod["automountServiceAccountToken"] is False, "no token for every container"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    name = mounts["/var/run/secrets/kubernetes.io/serviceaccount"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == name]
    sources = volume["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"
    assert {f.path for f in volume_files(pod, volume)} == {"token", "ca.crt", "namespace"}
    for other in pod["containers"]:
        if other is not container:
            assert name not in {m["name"] for m in other.get("volumeMounts", [])}
    assert env_of(rendered, container)["PRESENCE_KUBE__ENABLED"] == "true"
    binding = one(rendered, "RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": "whatsapp-bot"}
    ]
    assert binding["roleRef"]["name"] == one(rendered, "Role")["metadata"]["name"]


def test_the_role_names_the_deployment_it_may_watch(rendered: list[dict[str, Any]]) -> None:
    rules = one(rendered, "Role")["rules"]
    (workload,) = [r for r in rules if "deployments" in r["resources"]]
    assert workload["resourceNames"] == [one(rendered, "Deployment")["metadata"]["name"]]
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in rules)


def test_the_optional_namespace_component_renders_and_validates(tmp_path: Path) -> None:
    docs = with_components("fleet-namespace")
    role = one(docs, "ClusterRole")
    assert role["rules"][0]["resourceNames"] == ["whatsapp-bot"]
    binding = one(docs, "ClusterRoleBinding")
    assert binding["subjects"][0]["namespace"] == "whatsapp-bot"
    _, container = sidecar(docs)
    assert env_of(docs, container)["PRESENCE_KUBE__WATCH_NAMESPACE"] == "true"
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] not in CRD_KINDS]))
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_overlays_namespace_is_set_in_one_place(tmp_path: Path) -> None:
    """Renaming the overlay's namespace (and enabling fleet-namespace) carries it everywhere it
    matters: the Namespace itself, every object, the RBAC subjects, the ClusterRole restricted
    to that Namespace, and the alert that watches for no target in it."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    kustomization = copy / "overlays" / "example" / "kustomization.yaml"
    text = kustomization.read_text()
    assert "\nnamespace: whatsapp-bot\n" in text and "# - ../../components/fleet-namespace" in text
    text = text.replace("\nnamespace: whatsapp-bot\n", "\nnamespace: shop-bot\n")
    text = text.replace(
        "# - ../../components/fleet-namespace", "- ../../components/fleet-namespace"
    )
    kustomization.write_text(text)
    docs = render(copy / "overlays" / "example")
    assert one(docs, "Namespace")["metadata"]["name"] == "shop-bot"
    namespaced = [d for d in docs if d["kind"] not in {"Namespace", "ClusterRole",
                                                       "ClusterRoleBinding"}]  # fmt: skip
    assert {d["metadata"].get("namespace") for d in namespaced} == {"shop-bot"}
    role = one(docs, "ClusterRole")
    assert role["metadata"]["name"] == "presence-controller-namespace.shop-bot"
    assert role["rules"][0]["resourceNames"] == ["shop-bot"]
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["namespace"] == "shop-bot"
    assert one(docs, "RoleBinding")["subjects"][0]["namespace"] == "shop-bot"
    rules = one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
    (absent,) = [r for r in rules if r["alert"] == "PresenceControllerAbsent"]
    assert absent["expr"] == 'absent(up{job="presence-controller",namespace="shop-bot"})'


def test_the_overlay_deploys_the_image_the_readme_builds(rendered: list[dict[str, Any]]) -> None:
    readme = (K8S.parent / "README.md").read_text()
    built = re.search(r"docker build -t (\S+) \.", readme)
    assert built is not None, "the README builds the image"
    _, container = sidecar(rendered)
    assert container["image"] == built[1]
