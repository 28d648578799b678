"""Kubernetes API access for fleet mode, on lightkube (imported only in fleet mode).

Objects travel as plain dicts: lightkube's typed models re-encode MicroTime fields and drop a
zero fraction (`...:00Z`), which a real API server refuses with a 400, so Leases use a generic
resource whose spec stays as written. Every call has a timeout; every failure is a `KubeError`
value (code, reason, message) the loop can report; no token ever appears in one.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from controller.core.excerpt import clip

T = TypeVar("T")

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

    def __init__(
        self,
        namespace: str,
        timeout: float,
        kubeconfig: Path | None = None,
        on_request: Callable[[str, str, int], None] | None = None,
    ) -> None:
        """`on_request(verb, resource, code)` is told of every request (metrics)."""
        self._on_request = on_request
        import httpx2
        from lightkube import AsyncClient
        from lightkube.config.kubeconfig import KubeConfig

        # KUBECONFIG when set (tests, out-of-cluster), else the in-cluster service account,
        # whose token lightkube re-reads after a 401 (the projected token rotates).
        path = kubeconfig or os.environ.get("KUBECONFIG")
        config = KubeConfig.from_file(path) if path else KubeConfig.from_service_account()
        self.namespace = namespace
        self._timeout = timeout
        self._client = AsyncClient(
            config, namespace=namespace, timeout=httpx2.Timeout(timeout), trust_env=False
        )
        self._kinds = _generic_kinds()
        self._lease, self._event = self._kinds["leases"], self._kinds["events"]

    async def aclose(self) -> None:
        await self._client.close()

    async def get(self, plural: str, name: str) -> dict[str, Any] | None:
        """A pod or a ReplicaSet of this namespace (owner discovery); None if it does not exist."""
        try:
            return await self._call("get", plural, self._client.get(self._kinds[plural], name))
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise

    async def get_lease(self, name: str) -> dict[str, Any] | None:
        try:
            return await self._call("get", "leases", self._client.get(self._lease, name))
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise

    async def create_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("create", "leases", self._client.create(self._lease(**body)))

    async def replace_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call(
            "update", "leases", self._client.replace(self._lease(**_writable(body)))
        )

    async def patch_lease(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch: only the fields we own, no resourceVersion needed."""
        from lightkube.types import PatchType

        return await self._call(
            "patch", "leases",
            self._client.patch(self._lease, name, patch, patch_type=PatchType.MERGE),
        )  # fmt: skip

    async def create_event(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("create", "events", self._client.create(self._event(**body)))

    async def patch_event(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        from lightkube.types import PatchType

        return await self._call(
            "patch", "events",
            self._client.patch(self._event, name, patch, patch_type=PatchType.MERGE),
        )  # fmt: skip

    def _kind(self, plural: str) -> Any:
        return self._kinds[plural]

    def _scope(self, plural: str) -> dict[str, Any]:
        return {} if plural == "namespaces" else {"namespace": self.namespace}

    async def list_objects(
        self, plural: str, *, labels: dict[str, str] | None = None, name: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """The objects (by labels, or the one named), and the list's resourceVersion."""
        import asyncio

        async def collect() -> tuple[list[dict[str, Any]], str]:
            listing = self._client.list(
                self._kind(plural), labels=dict(labels) if labels else None,
                fields={"metadata.name": name} if name else None, **self._scope(plural),
            )  # fmt: skip
            items = [_as_dict(item) async for item in listing]
            return items, str(listing.resourceVersion)

        try:
            async with asyncio.timeout(self._timeout + 1.0):
                return await self._errors(collect(), "list", plural)
        except TimeoutError:
            self._count("list", plural, 0)
            raise KubeError(0, "", "API server unreachable: TimeoutError") from None

    async def watch_objects(
        self,
        plural: str,
        version: str,
        server_timeout: int,
        *,
        labels: dict[str, str] | None = None,
        name: str | None = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Events after resourceVersion `version`; a 410 `Expired` comes out as KubeError(410)."""
        stream = self._client.watch(
            self._kind(plural), labels=dict(labels) if labels else None,
            fields={"metadata.name": name} if name else None, resource_version=version,
            server_timeout=server_timeout, **self._scope(plural),
        )  # fmt: skip
        iterator = aiter(stream)
        verb = "watch"  # the request goes out with the first read; later reads are its events
        while True:
            try:
                kind, obj = await self._errors(anext(iterator), verb, plural)
            except StopAsyncIteration:
                return
            verb = ""
            yield str(kind), _as_dict(obj)

    def _count(self, verb: str, plural: str, code: int) -> None:
        if verb and self._on_request is not None:
            self._on_request(verb, plural, code)

    async def _errors(self, call: Awaitable[T], verb: str, plural: str) -> T:
        """Await `call`, turning the client's exceptions into KubeError values; counts it under
        `verb` (an empty verb: a watch event, not a request)."""
        import httpx2
        from lightkube import ApiError

        try:
            result = await call
        except ApiError as exc:
            status = exc.status
            code = int(status.code or exc.response.status_code)
            self._count(verb, plural, code)
            raise KubeError(code, str(status.reason or ""), str(status.message or "")) from None
        except httpx2.HTTPStatusError as exc:
            self._count(verb, plural, exc.response.status_code)
            message = "the API server answered without a Status"
            raise KubeError(exc.response.status_code, "", message) from None
        except (httpx2.HTTPError, OSError) as exc:
            self._count(verb, plural, 0)
            raise KubeError(0, "", f"API server unreachable: {type(exc).__name__}") from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # A reply the client cannot decode (msgspec.ValidationError is a ValueError): a
            # value to report, never an exception that ends the loop.
            self._count(verb, plural, 200)
            message = f"unreadable reply from the API server: {type(exc).__name__}: {exc}"
            raise KubeError(0, "", clip(message, 300)) from None
        self._count(verb, plural, 201 if verb == "create" else 200)
        return result

    async def _call(self, verb: str, plural: str, call: Awaitable[Any]) -> dict[str, Any]:
        import asyncio

        try:
            async with asyncio.timeout(self._timeout + 1.0):
                result = await self._errors(call, verb, plural)
        except TimeoutError:
            self._count(verb, plural, 0)
            raise KubeError(0, "", "API server unreachable: TimeoutError") from None
        return _as_dict(result)


@functools.cache
def _generic_kinds() -> dict[str, Any]:
    """Every kind fleet mode reads, as a generic resource (plain dicts): nothing here needs
    lightkube's typed models, whose strict decoding fails on any field they do not expect and
    whose re-encoding drops MicroTime fractions. Created once per process: lightkube's registry
    refuses a second class for a core-group kind (its cache looks them up as "/v1")."""
    from lightkube.generic_resource import create_global_resource, create_namespaced_resource

    kinds: dict[str, Any] = {
        plural: create_namespaced_resource(group, "v1", kind, plural, verbs=None)
        for group, kind, plural in (
            ("coordination.k8s.io", "Lease", "leases"),
            ("events.k8s.io", "Event", "events"),
            ("apps", "Deployment", "deployments"),
            ("apps", "StatefulSet", "statefulsets"),
            ("apps", "ReplicaSet", "replicasets"),
            ("", "Pod", "pods"),
        )
    }
    kinds["namespaces"] = create_global_resource("", "v1", "Namespace", "namespaces")
    return kinds


def _as_dict(obj: Any) -> dict[str, Any]:
    return dict(obj.to_dict())


def _writable(body: dict[str, Any]) -> dict[str, Any]:
    """What a PUT sends back: the object as read, minus fields the server owns and lightkube would
    re-encode (creationTimestamp, managedFields)."""
    metadata = {
        k: v
        for k, v in body.get("metadata", {}).items()
        if k not in {"creationTimestamp", "managedFields"}
    }
    return {"metadata": metadata, "spec": body.get("spec")}
