"""Kubernetes API access for fleet mode, on lightkube (imported only in fleet mode).

Objects travel as plain dicts: lightkube's typed models re-encode MicroTime fields and drop a
zero fraction (`...:00Z`), which a real API server refuses with a 400, so every kind is a
generic resource whose fields stay as written. Every call has a timeout; every failure is a
`KubeError` value (code, reason, a short message, the server's Retry-After) the loop can report;
no token ever appears in one. Every request goes through `KubeTransport` (counted, bounded).

Watches are read here, not by lightkube's watch iterator, which reconnects inside itself at once
and for ever (a server that ends every stream drove one replica to ~1,000 requests a second),
reads lines of any length, never asks for bookmarks and cannot decode a Deployment's bookmark:
`watch_objects` makes exactly one request and reads one bounded stream; the caller decides when
to reconnect (`watch.ObjectWatch`, with back-off).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

from controller.bounded_read import read_bounded
from controller.kube.transport import (
    Counter,
    CredentialError,
    KubeTransport,
    ReplyTooLarge,
    TokenFile,
)
from controller.kube.wire import KubeError, retry_after_of, status_error, watch_event

T = TypeVar("T")

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
LIST_PAGE = 100
"""Items per page of a list (`limit`): a page is bounded like any reply."""

KINDS = (
    ("coordination.k8s.io", "Lease", "leases", True),
    ("events.k8s.io", "Event", "events", True),
    ("apps", "Deployment", "deployments", True),
    ("apps", "StatefulSet", "statefulsets", True),
    ("apps", "ReplicaSet", "replicasets", True),
    ("", "Pod", "pods", True),
    ("", "ConfigMap", "configmaps", True),
    ("", "Namespace", "namespaces", False),
)
"""(group, kind, plural, namespaced) of every kind fleet mode (and `kubectl presence`) reads or
writes."""


def namespace_of(configured: str | None) -> str:
    """The pod's namespace: configured, else `POD_NAMESPACE`, else the service account's."""
    if configured:
        return configured
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return read_bounded(SERVICE_ACCOUNT / "namespace", 256).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        raise KubeError(
            0, "", "no namespace: set PRESENCE_KUBE__NAMESPACE or POD_NAMESPACE"
        ) from None


def identity_of(configured: str | None) -> str:
    name = configured or os.environ.get("POD_NAME") or os.environ.get("HOSTNAME")
    if not name:
        raise KubeError(0, "", "no identity: set PRESENCE_KUBE__POD_NAME or POD_NAME")
    return name


class KubeClient:
    """The few calls fleet mode makes: lightkube for the configuration, single objects and list
    paging; one HTTP client on the same transport for watch streams."""

    def __init__(
        self,
        namespace: str | None,
        timeout: float,
        kubeconfig: Path | None = None,
        on_request: Counter | None = None,
        context: str | None = None,
    ) -> None:
        """`on_request(verb, resource, code)` is told of every request (metrics); `context`: a
        kubeconfig context other than the current one; `namespace` None: the context's, as
        kubectl does (else `default`)."""
        import httpx2
        from lightkube import AsyncClient
        from lightkube.config.client_adapter import user_auth, verify_cluster

        config, token = _configuration(kubeconfig or os.environ.get("KUBECONFIG"), context)
        verify = verify_cluster(config.cluster, config.user, config.abs_file, trust_env=False)
        # A few long watches and a few short requests at a time: a bounded pool (httpx's
        # default allows 100 connections).
        pool = httpx2.Limits(max_connections=10, max_keepalive_connections=5)
        self._transport = KubeTransport(
            httpx2.AsyncHTTPTransport(verify=verify, trust_env=False, limits=pool),
            token=TokenFile(token) if token is not None else None,
            on_request=on_request,
        )
        self.namespace: str = namespace or config.namespace or "default"
        self._timeout = timeout
        self._client = AsyncClient(
            config,
            namespace=self.namespace,
            timeout=httpx2.Timeout(timeout),
            trust_env=False,
            transport=self._transport,
        )
        self._http = httpx2.AsyncClient(
            base_url=config.cluster.server,
            auth=user_auth(config.user),
            transport=self._transport,
            timeout=httpx2.Timeout(timeout, read=None),
            trust_env=False,
        )
        self._kinds = _generic_kinds()
        self._lease, self._event = self._kinds["leases"], self._kinds["events"]

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._client.close()

    async def get(self, plural: str, name: str) -> dict[str, Any] | None:
        """An object of this namespace (a pod, a ReplicaSet, a Lease) or a Namespace; None if
        it does not exist."""
        try:
            call = self._client.get(self._kinds[plural], name, **self._scope(plural))
            return _as_dict(await self._call(call))
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise

    async def get_lease(self, name: str) -> dict[str, Any] | None:
        return await self.get("leases", name)

    async def create_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        return _as_dict(await self._call(self._client.create(self._lease(**body))))

    async def replace_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        return _as_dict(await self._call(self._client.replace(self._lease(**_writable(body)))))

    async def patch_lease(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch: only the fields we own, no resourceVersion needed."""
        return await self.patch("leases", name, patch)

    async def patch(
        self, plural: str, name: str, patch: dict[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        """A JSON merge patch of an object (`dry_run`: the server checks it, stores nothing)."""
        from lightkube.types import PatchType

        call = self._client.patch(
            self._kinds[plural], name, patch, patch_type=PatchType.MERGE, dry_run=dry_run,
            **self._scope(plural),
        )  # fmt: skip
        return _as_dict(await self._call(call))

    async def delete_lease(self, name: str, version: str) -> bool:
        """Delete a Lease if it is still at resourceVersion `version` (a DeleteOptions
        precondition: one renewed since it was read stays); False if it was renewed or is gone
        already. lightkube's delete sends no preconditions, so this request is made here."""
        body = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "preconditions": {"resourceVersion": version},
        }
        path = f"{_path('leases', self.namespace)}/{name}"
        request = self._http.build_request(
            "DELETE", path, content=json.dumps(body), headers={"Content-Type": "application/json"}
        )

        async def send() -> int:
            response = await self._http.send(request)
            if response.status_code in {404, 409}:
                return response.status_code
            if response.status_code >= 300:
                raise status_error(response.status_code, response.content, response.headers)
            return response.status_code

        return await self._call(send()) < 300

    async def create_event(self, body: dict[str, Any]) -> dict[str, Any]:
        return _as_dict(await self._call(self._client.create(self._event(**body))))

    async def patch_event(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.patch("events", name, patch)

    def _scope(self, plural: str) -> dict[str, Any]:
        return {} if plural == "namespaces" else {"namespace": self.namespace}

    async def list_objects(
        self,
        plural: str,
        *,
        labels: dict[str, str] | None = None,
        name: str | None = None,
        most: int = 1000,
    ) -> tuple[list[dict[str, Any]], str, bool]:
        """The objects (by labels, or the one named), in pages of LIST_PAGE; the list's
        resourceVersion; and whether there were more than `most` (the rest is not read)."""

        async def collect() -> tuple[list[dict[str, Any]], str, bool]:
            listing = self._client.list(
                self._kinds[plural], labels=dict(labels) if labels else None,
                fields={"metadata.name": name} if name else None, chunk_size=LIST_PAGE,
                **self._scope(plural),
            )  # fmt: skip
            items: list[dict[str, Any]] = []
            async for item in listing:  # the list's resourceVersion comes with its first page
                if len(items) == most:
                    return items, str(listing.resourceVersion), True
                items.append(_as_dict(item))
            return items, str(listing.resourceVersion), False

        found: tuple[list[dict[str, Any]], str, bool] = await self._call(
            collect(), budget=2 * self._timeout + 1.0
        )
        return found

    async def watch_objects(
        self,
        plural: str,
        version: str,
        server_timeout: int,
        *,
        labels: dict[str, str] | None = None,
        name: str | None = None,
        stall: float | None = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """One watch request: `(type, object)` for each event after resourceVersion `version`,
        BOOKMARKs included, until the server ends the stream. An ERROR event (410 `Expired`)
        and any failure come out as KubeError, as does a stream with no line for `stall`
        seconds (a stalled connection)."""
        import httpx2

        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": version,
            "timeoutSeconds": str(server_timeout),
        }
        if labels:
            params["labelSelector"] = ",".join(f"{k}={v}" for k, v in labels.items())
        if name:
            params["fieldSelector"] = f"metadata.name={name}"
        request = self._http.build_request("GET", _path(plural, self.namespace), params=params)
        try:
            async with asyncio.timeout(self._timeout + 1.0):
                response = await self._http.send(request, stream=True)
        except TimeoutError:
            raise KubeError(0, "", "API server unreachable: TimeoutError") from None
        except (httpx2.HTTPError, OSError) as exc:
            raise _transport_failure(exc) from None
        try:
            if response.status_code != 200:
                body = await self._errors(response.aread())
                raise status_error(response.status_code, body, response.headers)
            lines = aiter(response.aiter_lines())
            while True:
                try:
                    async with asyncio.timeout(stall):
                        line = await self._errors(anext(lines))
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise KubeError(
                        0, "", f"no event or bookmark for {stall:g}s: the watch stalled"
                    ) from None
                if line.strip():
                    yield watch_event(line)
        finally:
            await response.aclose()

    async def _errors(self, call: Awaitable[T]) -> T:
        """Await `call`, turning the client's exceptions into KubeError values."""
        import httpx2
        from lightkube import ApiError

        try:
            return await call
        except ApiError as exc:
            status = exc.status
            code = int(status.code or exc.response.status_code)
            raise KubeError(
                code,
                str(status.reason or ""),
                str(status.message or ""),
                retry_after_of(exc.response.headers),
            ) from None
        except httpx2.HTTPStatusError as exc:
            # Not `application/json` exactly (a proxy's page): a Status if there is one.
            try:
                body = exc.response.content
            except httpx2.ResponseNotRead:
                body = b""
            raise status_error(exc.response.status_code, body, exc.response.headers) from None
        except (httpx2.HTTPError, OSError) as exc:
            raise _transport_failure(exc) from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # A reply the client cannot decode (msgspec.ValidationError is a ValueError): a
            # value to report, never an exception that ends the loop.
            message = f"unreadable reply from the API server: {type(exc).__name__}: {exc}"
            raise KubeError(0, "", message) from None

    async def _call(self, call: Awaitable[T], budget: float | None = None) -> T:
        """`call` within the timeout (a list: `budget`, for its pages)."""
        try:
            async with asyncio.timeout(budget or self._timeout + 1.0):
                return await self._errors(call)
        except TimeoutError:
            raise KubeError(0, "", "API server unreachable: TimeoutError") from None


def _configuration(path: str | Path | None, context: str | None) -> tuple[Any, Path | None]:
    """The kubeconfig's (or the in-cluster) configuration, and its token file, which the
    transport reads (lightkube would read it unbounded, blocking, inside the event loop)."""
    import msgspec
    from lightkube import ConfigError
    from lightkube.config.kubeconfig import KubeConfig
    from lightkube.config.models import Cluster, User

    if path:
        try:
            config = KubeConfig.from_file(path).get(context_name=context)
        except ConfigError as exc:
            raise ValueError(f"{path}: {exc}") from None
        if config is None:
            raise ValueError(f"{path}: no current context")
        token = config.user.token_file if config.user is not None else None
        if config.user is None or token is None:
            return config, None
        user = msgspec.structs.replace(config.user, token_file=None)
        return config._replace(user=user), Path(config.abs_file(token))
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ValueError("neither KUBECONFIG nor KUBERNETES_SERVICE_HOST/PORT is set")
    host = f"[{host}]" if ":" in host else host
    cluster = Cluster(
        server=f"https://{host}:{port}", certificate_auth=str(SERVICE_ACCOUNT / "ca.crt")
    )
    return KubeConfig.from_one(cluster=cluster, user=User()).get(), SERVICE_ACCOUNT / "token"


def _path(plural: str, namespace: str) -> str:
    group, _, _, namespaced = next(k for k in KINDS if k[2] == plural)
    base = f"/apis/{group}/v1" if group else "/api/v1"
    return f"{base}/namespaces/{namespace}/{plural}" if namespaced else f"{base}/{plural}"


def _transport_failure(exc: Exception) -> KubeError:
    if isinstance(exc, ReplyTooLarge):
        return KubeError(0, "", f"refused {exc}")
    if isinstance(exc, CredentialError):
        return KubeError(0, "", str(exc))
    return KubeError(0, "", f"API server unreachable: {type(exc).__name__}")


@functools.cache
def _generic_kinds() -> dict[str, Any]:
    """Every kind fleet mode reads, as a generic resource (plain dicts): nothing here needs
    lightkube's typed models, whose strict decoding fails on any field they do not expect and
    whose re-encoding drops MicroTime fractions. Created once per process: lightkube's registry
    refuses a second class for a core-group kind (its cache looks them up as "/v1")."""
    from lightkube.generic_resource import create_global_resource, create_namespaced_resource

    return {
        plural: (
            create_namespaced_resource(group, "v1", kind, plural, verbs=None)
            if namespaced
            else create_global_resource(group, "v1", kind, plural)
        )
        for group, kind, plural, namespaced in KINDS
    }


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


__all__ = ["KubeClient", "KubeError", "identity_of", "namespace_of"]
