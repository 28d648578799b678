"""Kubernetes API access for fleet mode, on lightkube (imported only in fleet mode).

Objects travel as plain dicts: lightkube's typed models re-encode MicroTime fields and drop a
zero fraction (`...:00Z`), which a real API server refuses with a 400, so Leases use a generic
resource whose spec stays as written. Every call has a timeout; every failure is a `KubeError`
value (code, reason, message) the loop can report; no token ever appears in one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeError(Exception):
    """A failed API call: `code` is the HTTP status (0 when nothing came back)."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code or 'no answer'} {reason}: {message}" if reason else message)
        self.code, self.reason, self.message = code, reason, message


def namespace_of(configured: str | None) -> str:
    """The pod's namespace: configured, else `POD_NAMESPACE`, else the service account's."""
    if configured:
        return configured
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return (SERVICE_ACCOUNT / "namespace").read_text().strip()
    except OSError:
        raise KubeError(
            0, "", "no namespace: set PRESENCE_KUBE__NAMESPACE or POD_NAMESPACE"
        ) from None


def identity_of(configured: str | None) -> str:
    name = configured or os.environ.get("POD_NAME") or os.environ.get("HOSTNAME")
    if not name:
        raise KubeError(0, "", "no identity: set PRESENCE_KUBE__POD_NAME or POD_NAME")
    return name


class KubeClient:
    """The few calls fleet mode makes, on one lightkube AsyncClient."""

    def __init__(self, namespace: str, timeout: float, kubeconfig: Path | None = None) -> None:
        import httpx2
        from lightkube import AsyncClient
        from lightkube.config.kubeconfig import KubeConfig
        from lightkube.generic_resource import create_namespaced_resource

        # KUBECONFIG when set (tests, out-of-cluster), else the in-cluster service account,
        # whose token lightkube re-reads after a 401 (the projected token rotates).
        path = kubeconfig or os.environ.get("KUBECONFIG")
        config = KubeConfig.from_file(path) if path else KubeConfig.from_service_account()
        self.namespace = namespace
        self._timeout = timeout
        self._client = AsyncClient(
            config, namespace=namespace, timeout=httpx2.Timeout(timeout), trust_env=False
        )
        self._lease = create_namespaced_resource(
            "coordination.k8s.io", "v1", "Lease", "leases", verbs=None
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def get(self, plural: str, name: str) -> dict[str, Any] | None:
        """A pod or a ReplicaSet of this namespace (owner discovery); None if it does not exist."""
        from lightkube.resources.apps_v1 import ReplicaSet
        from lightkube.resources.core_v1 import Pod

        kind = {"pods": Pod, "replicasets": ReplicaSet}[plural]
        try:
            return await self._call(self._client.get(kind, name))
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise

    async def get_lease(self, name: str) -> dict[str, Any] | None:
        try:
            return await self._call(self._client.get(self._lease, name))
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise

    async def create_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(self._client.create(self._lease(**body)))

    async def replace_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(self._client.replace(self._lease(**_writable(body))))

    async def _call(self, call: Any) -> dict[str, Any]:
        import asyncio

        import httpx2
        from lightkube import ApiError

        try:
            async with asyncio.timeout(self._timeout + 1.0):
                result = await call
        except ApiError as exc:
            status = exc.status
            raise KubeError(
                int(status.code or exc.response.status_code),
                str(status.reason or ""),
                str(status.message or ""),
            ) from None
        except httpx2.HTTPStatusError as exc:
            raise KubeError(
                exc.response.status_code, "", "the API server answered without a Status"
            ) from None
        except (httpx2.HTTPError, TimeoutError, OSError) as exc:
            raise KubeError(0, "", f"API server unreachable: {type(exc).__name__}") from None
        return dict(result.to_dict())


def _writable(body: dict[str, Any]) -> dict[str, Any]:
    """What a PUT sends back: the object as read, minus fields the server owns and lightkube would
    re-encode (creationTimestamp, managedFields)."""
    metadata = {
        k: v
        for k, v in body.get("metadata", {}).items()
        if k not in {"creationTimestamp", "managedFields"}
    }
    return {"metadata": metadata, "spec": body.get("spec")}
