"""The example overlay as rendered by kustomize, and what its pod needs: shared by the manifest
and the documented-commands tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
OVERLAY = K8S / "overlays" / "example"


def render(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def with_components(*names: str) -> list[dict[str, Any]]:
    """The example overlay with more of `k8s/components/` (e.g. a gateway's), rendered."""
    with tempfile.TemporaryDirectory() as tmp:
        overlay = Path(tmp)
        components = ", ".join(os.path.relpath(K8S / "components" / n, overlay) for n in names)
        (overlay / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources: [{os.path.relpath(OVERLAY, overlay)}]\n"
            f"components: [{components}]\n"
        )
        return render(overlay)


GATEWAY_COMPONENTS = ("waha", "evolution")
"""Components that switch the sidecar to another gateway (and its Secret)."""


def secret_references(pod: dict[str, Any]) -> dict[str, set[str]]:
    """Every Secret the pod needs, with the keys it reads (volumes and env)."""
    refs: dict[str, set[str]] = {}
    for volume in pod["volumes"]:
        if "secret" in volume:
            source = volume["secret"]
            keys = {item["key"] for item in source.get("items", [])}
            refs.setdefault(source["secretName"], set()).update(keys)
    for container in pod["containers"]:
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                refs.setdefault(ref["name"], set()).add(ref["key"])
    return refs
