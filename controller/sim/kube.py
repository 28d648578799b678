"""A fake Kubernetes API server on loopback with the wire semantics the controller relies on
(its rules: kube_rules.py; its hostile variant: kube_hostile.py).

One global resourceVersion (a string on the wire) bumped on every write; list by labelSelector /
fieldSelector with the list's resourceVersion; watch streams (ADDED/MODIFIED/DELETED, BOOKMARK
only when asked, an `ERROR` event with a 410 `Expired` Status for a resourceVersion older than
the kept history, a clean end at `timeoutSeconds`). No lease semantics of its own, as the real
one. Faults per client (told apart by their bearer token): `partitioned`, `latency`, `denied`
verbs (403 with the real message), `throttled` (429 with a Retry-After), `watch_faults`, and
`compact()` to force the 410 path.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from controller.kube.wire import route
from controller.sim.kube_discovery import core_events_reply, discovery, table, wants_table
from controller.sim.kube_rules import (
    JSON,
    KINDS,
    Failure,
    Kind,
    KubeCall,
    authorized,
    bare,
    checked,
    deletion_preconditions,
    dry_run,
    forbidden,
    merge,
    not_found,
    owner_ref,
    page,
    precondition,
    route_of,
    status_body,
    uid_precondition,
    verb_of,
)
from controller.sim.kube_selectors import selector
from controller.sim.kube_stream import watch_stream


@dataclass
class SimKube:
    """The fake API server; `app()` serves it, the fields steer it."""

    tokens: dict[str, str] = field(default_factory=lambda: {"test-token": "client"})
    """Bearer token -> client name; any other token (or none) is a 401."""
    partitioned: set[str] = field(default_factory=set)
    latency: dict[str, float] = field(default_factory=dict)
    denied: set[tuple[str, str]] = field(default_factory=set)
    """(verb, plural) answered 403, e.g. ("update", "leases")."""
    throttled: dict[str, float] = field(default_factory=dict)
    """Client -> every request answered 429 with `Retry-After` this many seconds."""
    watch_faults: dict[str, str] = field(default_factory=dict)
    """Client -> how every watch of that client misbehaves (a key of WATCH_FAULTS)."""
    garbled: set[str] = field(default_factory=set)
    """Plurals whose get/list/watch replies are not JSON (a broken proxy)."""
    rules: list[dict[str, Any]] | None = None
    """RBAC rules (a Role's and ClusterRole's `rules`) to enforce; None allows everything."""
    history_size: int = 1000
    calls: list[KubeCall] = field(default_factory=list)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    """(plural, namespace or "", name) -> stored object."""
    version: int = 1000
    history: deque[tuple[int, str, str, dict[str, Any]]] = field(default_factory=deque)
    """(resourceVersion, event type, plural, object) of recent writes, for watches."""
    generation: int = 0
    """Bumped by `drop_watches()`: every stream opened before it ends."""
    changed: asyncio.Condition | None = None

    # Steering.

    def put(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object directly (as another actor would), notifying watches."""
        kind = KINDS[plural]
        meta = obj.setdefault("metadata", {})
        key = (plural, meta.get("namespace", "") if kind.namespaced else "", meta["name"])
        old = self.objects.get(key)
        return self._store(kind, key, obj, "MODIFIED" if old else "ADDED", old)

    def workload(
        self, namespace: str, name: str, pods: list[str], **annotations: str
    ) -> dict[str, Any]:
        """What a cluster holds for a Deployment: the Deployment, its ReplicaSet and `pods`,
        each owned by the one before (controller ownerReferences with real uids); the
        Deployment as stored."""
        labels = {"app.kubernetes.io/name": name}
        ready = len(pods)
        # The sidecar and its settings, as in the example overlay's fleet component.
        ref = {"name": "presence-controller", "namespace": namespace}
        self.put("configmaps", {"metadata": ref, "data": {"PRESENCE_KUBE__ENABLED": "true"}})
        sidecar = {"name": ref["name"], "envFrom": [{"configMapRef": {"name": ref["name"]}}]}
        deployment = self.put("deployments", {
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations,
                         "labels": labels, "generation": 1},
            "spec": {"replicas": len(pods), "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "bot", "image": "bot:1"}, sidecar]}}},
            # Rolled out: `kubectl rollout status` reads these.
            "status": {"observedGeneration": 1, "replicas": ready, "updatedReplicas": ready,
                       "readyReplicas": ready, "availableReplicas": ready},
        })  # fmt: skip
        replicaset = self.put("replicasets", {"metadata": {
            "name": f"{name}-7d4b9", "namespace": namespace, "labels": labels,
            "annotations": {"deployment.kubernetes.io/revision": "1"},
            "ownerReferences": [owner_ref("Deployment", deployment)],
        }, "spec": {"replicas": ready, "selector": {"matchLabels": labels},
                    "template": deployment["spec"]["template"]},
           "status": {"replicas": ready, "readyReplicas": ready,
                      "availableReplicas": ready}})  # fmt: skip
        for pod in pods:
            self.put("pods", {
                "metadata": {"name": pod, "namespace": namespace, "labels": labels,
                             "ownerReferences": [owner_ref("ReplicaSet", replicaset)]},
                "spec": {"containers": [{"name": "bot", "image": "bot:1"}]},
            })  # fmt: skip
        return deployment

    def annotate(self, plural: str, namespace: str, name: str, **annotations: str | None) -> None:
        obj = copy.deepcopy(self.objects[(plural, namespace, name)])
        notes = obj["metadata"].setdefault("annotations", {})
        for key, value in annotations.items():
            if value is None:
                notes.pop(key, None)
            else:
                notes[key] = value
        self.put(plural, obj)

    def delete(self, plural: str, namespace: str, name: str) -> None:
        """Delete an object directly (`kubectl delete`), notifying watches; its dependents go
        with it (the garbage collector, background propagation)."""
        self._remove((plural, namespace, name))

    def _remove(self, key: tuple[str, str, str]) -> dict[str, Any]:
        obj = self.objects.pop(key)
        self.version += 1
        gone = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.version)}}
        self._record("DELETED", key[0], gone)
        self._collect()
        return gone

    def _collect(self) -> None:
        """Kubernetes' garbage collector: an object whose owners (ownerReferences) are all
        gone is deleted (at once here; within seconds on a real cluster). Not Pods: a real
        cluster deletes them gracefully and they stay while their containers run, so tests
        delete a Pod themselves once its sidecar has stopped."""
        uids = {obj["metadata"].get("uid") for obj in self.objects.values()}
        for key, obj in list(self.objects.items()):
            owners = obj["metadata"].get("ownerReferences") or []
            if key[0] == "pods" or not owners or key not in self.objects:
                continue
            if all(o.get("uid") not in uids for o in owners):
                self._remove(key)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((plural, namespace, name))

    def drop_watches(self) -> None:
        """End every open watch stream (an API server or a proxy restarting)."""
        self.generation += 1

    def compact(self) -> None:
        """Forget the watch history: every resume from an older resourceVersion gets 410."""
        self.history.clear()

    def requests(self, client: str | None = None, verb: str | None = None) -> list[KubeCall]:
        return [
            c
            for c in self.calls
            if (client is None or c.client == client) and (verb is None or c.verb == verb)
        ]

    # Serving.

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        client = self.tokens.get(request.headers.get("Authorization", "").removeprefix("Bearer "))
        verb, plural, namespace, name = "unknown", "", "", None
        try:
            document = discovery(request.path) if request.method == "GET" else None
            if document is not None and (client is not None or request.path == "/version"):
                return web.Response(body=json.dumps(document), headers={"Content-Type": JSON})
            if client is None:
                raise Failure(401, "Unauthorized", "Unauthorized")
            if request.path.startswith("/api/v1/") and route(request.path)[0] == "events":
                return await self._core_events(request)
            if "protobuf" in request.headers.get("Content-Type", ""):
                # JSON only (as an API server with protobuf disabled): clients fall back.
                raise Failure(415, "UnsupportedMediaType", "the body of the request was in an "
                              'unknown format - accepted media types include: application/json, '
                              "application/merge-patch+json")  # fmt: skip
            kind, namespace, name = route_of(request.path)
            plural = kind.plural
            verb = verb_of(request, name)
            await self._fault(client)
            if client in self.throttled:
                wait = self.throttled[client]
                failure = Failure(
                    429, "TooManyRequests", "Too many requests, please try again later."
                )
                self.calls.append(KubeCall(time.monotonic(), client, verb, plural, name, 429))
                return web.Response(
                    status=429, body=json.dumps(status_body(failure)),
                    headers={"Content-Type": JSON, "Retry-After": f"{wait:g}"},
                )  # fmt: skip
            if (verb, plural) in self.denied or not authorized(
                self.rules, kind, verb, name, request.query
            ):
                raise Failure(403, "Forbidden", forbidden(kind, verb, namespace, name, client))
            if plural in self.garbled and verb in {"get", "list", "watch"}:
                self.calls.append(KubeCall(time.monotonic(), client, verb, plural, name, 200))
                return web.Response(
                    status=200, body=b"<html>502 Bad Gateway", headers={"Content-Type": JSON}
                )
            if verb == "watch":
                self.calls.append(KubeCall(time.monotonic(), client, verb, plural, name, 200))
                try:
                    return await watch_stream(self, request, kind, namespace, client)
                except ConnectionResetError:  # the client went away mid-stream: so be it
                    return web.Response(status=200)
            status, body = await self._serve(request, verb, kind, namespace, name)
        except Failure as failure:
            status, body = failure.code, status_body(failure)
        self.calls.append(KubeCall(time.monotonic(), client or "?", verb, plural, name, status))
        return web.Response(status=status, body=json.dumps(body), headers={"Content-Type": JSON})

    async def _core_events(self, request: web.Request) -> web.Response:
        """core/v1 Events, read-only (kube_discovery.core_events_reply)."""
        if request.method != "GET" or request.query.get("watch") in {"true", "1"}:
            raise Failure(405, "MethodNotAllowed", "core/v1 events are read-only here")
        body = core_events_reply(
            self.objects, request.path, request.query, request.headers.get("Accept", ""),
            self.version,
        )  # fmt: skip
        return web.Response(body=json.dumps(body), headers={"Content-Type": JSON})

    async def _fault(self, client: str) -> None:
        if client in self.partitioned:
            # Nothing comes back: the client's own timeout ends the request (and the server
            # cancels this handler when the client goes away).
            await asyncio.sleep(3600)
            raise Failure(503, "ServiceUnavailable", "the request was lost in a partition")
        delay = self.latency.get(client, 0.0)
        if delay:
            await asyncio.sleep(delay)

    async def _serve(
        self, request: web.Request, verb: str, kind: Kind, namespace: str, name: str | None
    ) -> tuple[int, dict[str, Any]]:
        if verb == "list":
            items, version = self.select(kind, namespace, request.query)
            meta, items = page(items, version, request.query)
            if wants_table(request.headers.get("Accept", "")):
                return 200, table(kind.plural, items, str(version), datetime.now(UTC))
            return 200, {
                "kind": f"{kind.kind}List",
                "apiVersion": kind.api_version,
                "metadata": meta,
                "items": [bare(i) for i in items],
            }
        if verb == "get":
            return 200, self._existing(kind, namespace, name)
        if verb == "delete":
            obj = self._existing(kind, namespace, name)
            deletion_preconditions(kind, name, await self._body(request, empty={}), obj)
            return 200, self._remove((kind.plural, namespace, name or ""))
        body = await self._body(request)
        dry = request.query.get("dryRun")
        if dry is not None and dry != "All":
            raise Failure(
                400, "BadRequest", f'Invalid dryRun value "{dry}": supported values: "All"'
            )
        if dry == "All":  # checked and answered as if written; nothing is stored
            old = self.objects.get((kind.plural, namespace, name or ""))
            return dry_run(verb, kind, namespace, name, body, old)
        if verb == "create":
            obj = checked(kind, namespace, None, body)
            key = (kind.plural, namespace, obj["metadata"]["name"])
            if key in self.objects:
                raise Failure(
                    409, "AlreadyExists", f'{kind.qualified} "{key[2]}" already exists',
                    name=key[2], group=kind.group, kind=kind.plural,
                )  # fmt: skip
            return 201, self._store(kind, key, obj, "ADDED", None)
        key = (kind.plural, namespace, name or "")
        old = self.objects.get(key)
        if verb == "update":
            obj = checked(kind, namespace, name, body)
            if old is None:
                if not kind.create_on_update:
                    raise not_found(kind, name)
                # The uid the body carries is a precondition (defaultUpdatedObjectInfo): a PUT of
                # an object read before it was deleted does not create it again.
                uid_precondition(kind, name, obj, None)
                return 201, self._store(kind, key, obj, "ADDED", None)
            wanted = obj["metadata"].get("resourceVersion")
            if not wanted and not kind.unconditional_update:
                raise Failure(
                    422, "Invalid",
                    f'{kind.kind}.{kind.group} "{name}" is invalid: metadata.resourceVersion: '
                    "Invalid value: 0x0: must be specified for an update",
                    name=name, group=kind.group, kind=kind.kind,
                )  # fmt: skip
            precondition(kind, name, wanted, old)
            uid_precondition(kind, name, obj, old)
            return 200, self._store(kind, key, obj, "MODIFIED", old)
        # PATCH: JSON merge patch (RFC 7386); strategic merge behaves the same on the maps used.
        if old is None:
            raise not_found(kind, name)
        if not isinstance(body, dict):
            raise Failure(400, "BadRequest", "a patch must be a JSON object")
        precondition(kind, name, body.get("metadata", {}).get("resourceVersion"), old)
        merged = merge(copy.deepcopy(old), body)
        obj = checked(kind, namespace, name, merged)
        return 200, self._store(kind, key, obj, "MODIFIED", old)

    def _existing(self, kind: Kind, namespace: str, name: str | None) -> dict[str, Any]:
        obj = self.objects.get((kind.plural, namespace, name or ""))
        if obj is None:
            raise not_found(kind, name)
        return obj

    @staticmethod
    async def _body(request: web.Request, empty: Any = None) -> Any:
        raw = await request.read()
        if not raw and empty is not None:
            return empty
        try:
            return json.loads(raw)
        except ValueError:
            raise Failure(400, "BadRequest", "the request body is not JSON") from None

    def _store(
        self,
        kind: Kind,
        key: tuple[str, str, str],
        obj: dict[str, Any],
        event: str,
        old: dict[str, Any] | None,
    ) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
        meta = obj["metadata"]
        self.version += 1
        meta["resourceVersion"] = str(self.version)
        if old is not None:
            meta["uid"] = old["metadata"]["uid"]
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        else:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.objects[key] = obj
        self._record(event, kind.plural, obj)
        stored = copy.deepcopy(obj)
        if meta.get("ownerReferences"):
            self._collect()  # created with owners already gone: collected at once
        return stored

    def _record(self, event: str, plural: str, obj: dict[str, Any]) -> None:
        self.history.append((self.version, event, plural, copy.deepcopy(obj)))
        while len(self.history) > self.history_size:
            self.history.popleft()
        if self.changed is not None:
            changed = self.changed

            async def notify() -> None:
                async with changed:
                    changed.notify_all()

            asyncio.get_running_loop().create_task(notify())

    def select(self, kind: Kind, namespace: str, query: Any) -> tuple[list[dict[str, Any]], int]:
        matches = selector(query)
        items = [
            obj
            for (plural, ns, _), obj in sorted(self.objects.items())
            if plural == kind.plural and (ns == namespace or not kind.namespaced) and matches(obj)
        ]
        return items, self.version
