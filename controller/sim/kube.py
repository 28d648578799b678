"""A fake Kubernetes API server on loopback with the wire semantics the controller relies on.

One global resourceVersion (a string on the wire) bumped on every write; Lease PUT with a stale
resourceVersion is a 409 `Conflict`, without one a 422 `Invalid`, to a missing name a create
(201); POST of an existing name is a 409 `AlreadyExists`; errors are `Status` objects with
`Content-Type: application/json` exactly; MicroTime fields must have exactly six fractional
digits (else 400); list by labelSelector/fieldSelector with the list's resourceVersion; watch
streams (ADDED/MODIFIED/DELETED, BOOKMARK only when asked, an `ERROR` event with a 410 `Expired`
Status for a resourceVersion older than the kept history, a clean end at `timeoutSeconds`).
It implements no lease semantics of its own, as the real one.

Faults per client (clients are told apart by their bearer token): `partitioned` (requests hang
until the client gives up, open watches stop delivering), `latency`, `denied` verbs (403 with the
real message), `throttled` (429 with a Retry-After), and `compact()` to force the 410 path. The
hostile variant, `watch_faults` per client, makes every watch of that client misbehave the way
broken proxies and API servers do (WATCH_FAULTS).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from controller.kube.wire import route

JSON = "application/json"
WATCH_FAULTS = {
    "stall": "the stream opens and never sends a line",
    "bookmarks": "only BOOKMARKs, never an event",
    "garbage": "lines that are not JSON",
    "eof": "the stream ends at once",
    "expired": "every watch answered with an ERROR 410 Expired event",
    "huge": "one line of HUGE_LINE bytes, no newline",
    "endless": "a new ADDED Lease every few milliseconds, for ever",
}
HUGE_LINE = 100 * 1024 * 1024
_MICRO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)")
_MICRO_FIELDS = {
    "leases": (("spec", "acquireTime"), ("spec", "renewTime")),
    "events": (("eventTime",), ("series", "lastObservedTime")),
}


@dataclass(frozen=True, slots=True)
class Kind:
    group: str
    """"" for the core group."""
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    create_on_update: bool = False
    """A PUT to a missing name creates it (the Lease strategy's AllowCreateOnUpdate)."""
    unconditional_update: bool = True
    """A PUT without metadata.resourceVersion is allowed (not for Leases: 422)."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


KINDS = {
    k.plural: k
    for k in (
        Kind(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            create_on_update=True,
            unconditional_update=False,
        ),
        Kind("events.k8s.io", "v1", "Event", "events"),
        Kind("apps", "v1", "Deployment", "deployments"),
        Kind("apps", "v1", "StatefulSet", "statefulsets"),
        Kind("apps", "v1", "ReplicaSet", "replicasets"),
        Kind("", "v1", "Pod", "pods"),
        Kind("", "v1", "Namespace", "namespaces", namespaced=False),
    )
}


@dataclass(frozen=True, slots=True)
class KubeCall:
    """One request, as the fake saw it."""

    at: float
    client: str
    verb: str
    plural: str
    name: str | None
    code: int


class _Failure(Exception):
    def __init__(self, code: int, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


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
    _changed: asyncio.Condition | None = None

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
        deployment = self.put("deployments", {
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": {"replicas": len(pods), "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "bot", "image": "bot:1"}]}}},
        })  # fmt: skip
        replicaset = self.put("replicasets", {"metadata": {
            "name": f"{name}-7d4b9", "namespace": namespace,
            "ownerReferences": [_owner("Deployment", deployment)],
        }})  # fmt: skip
        for pod in pods:
            self.put("pods", {
                "metadata": {"name": pod, "namespace": namespace, "labels": labels,
                             "ownerReferences": [_owner("ReplicaSet", replicaset)]},
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
        """Delete an object directly (`kubectl delete`), notifying watches."""
        obj = self.objects.pop((plural, namespace, name))
        self.version += 1
        self._record("DELETED", plural, {**obj, "metadata": {
            **obj["metadata"], "resourceVersion": str(self.version)}})  # fmt: skip

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
            if client is None:
                raise _Failure(401, "Unauthorized", "Unauthorized")
            kind, namespace, name = self._route(request.path)
            plural = kind.plural
            verb = self._verb(request, name)
            await self._fault(client)
            if client in self.throttled:
                wait = self.throttled[client]
                failure = _Failure(
                    429, "TooManyRequests", "Too many requests, please try again later."
                )
                self.calls.append(KubeCall(time.monotonic(), client, verb, plural, name, 429))
                return web.Response(
                    status=429, body=json.dumps(_status(failure)),
                    headers={"Content-Type": JSON, "Retry-After": f"{wait:g}"},
                )  # fmt: skip
            if (verb, plural) in self.denied or not self._authorized(kind, verb, name, request):
                raise _Failure(403, "Forbidden", _forbidden(kind, verb, namespace, name, client))
            if plural in self.garbled and verb in {"get", "list", "watch"}:
                self.calls.append(KubeCall(time.monotonic(), client, verb, plural, name, 200))
                return web.Response(
                    status=200, body=b"<html>502 Bad Gateway", headers={"Content-Type": JSON}
                )
            if verb == "watch":
                self.calls.append(KubeCall(time.monotonic(), client, verb, plural, name, 200))
                return await self._watch(request, kind, namespace, client)
            status, body = await self._serve(request, verb, kind, namespace, name)
        except _Failure as failure:
            status, body = failure.code, _status(failure)
        self.calls.append(KubeCall(time.monotonic(), client or "?", verb, plural, name, status))
        return web.Response(status=status, body=json.dumps(body), headers={"Content-Type": JSON})

    def _authorized(self, kind: Kind, verb: str, name: str | None, request: web.Request) -> bool:
        """RBAC as the API server applies it: resourceNames restrict get/update/patch/delete by
        name, list/watch only with `fieldSelector=metadata.name=<name>`, never create."""
        if self.rules is None:
            return True
        named = name
        if verb in {"list", "watch"}:
            fields = request.query.get("fieldSelector", "")
            named = (
                fields.removeprefix("metadata.name=")
                if fields.startswith("metadata.name=")
                else None
            )
        for rule in self.rules:
            if kind.group not in rule.get("apiGroups", []) and "*" not in rule.get("apiGroups", []):
                continue
            if kind.plural not in rule.get("resources", []) or verb not in rule.get("verbs", []):
                continue
            names = rule.get("resourceNames")
            if not names or (verb != "create" and named in names):
                return True
        return False

    async def _fault(self, client: str) -> None:
        if client in self.partitioned:
            # Nothing comes back: the client's own timeout ends the request (and the server
            # cancels this handler when the client goes away).
            await asyncio.sleep(3600)
            raise _Failure(503, "ServiceUnavailable", "the request was lost in a partition")
        delay = self.latency.get(client, 0.0)
        if delay:
            await asyncio.sleep(delay)

    def _route(self, path: str) -> tuple[Kind, str, str | None]:
        plural, namespace, name = route(path)
        kind = KINDS.get(plural)
        if kind is None or len([p for p in path.split("/") if p]) > _depth(kind, namespace):
            raise _Failure(404, "NotFound", "the server could not find the requested resource")
        if kind.namespaced and not namespace and name is not None:
            raise _Failure(404, "NotFound", "the server could not find the requested resource")
        return kind, namespace, name

    @staticmethod
    def _verb(request: web.Request, name: str | None) -> str:
        if request.method == "GET":
            if request.query.get("watch") in {"true", "1"}:
                return "watch"
            return "get" if name else "list"
        verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        if request.method not in verbs:
            raise _Failure(405, "MethodNotAllowed", f"method {request.method} not allowed")
        return verbs[request.method]

    async def _serve(
        self, request: web.Request, verb: str, kind: Kind, namespace: str, name: str | None
    ) -> tuple[int, dict[str, Any]]:
        if verb == "list":
            items, version = self._select(kind, namespace, request.query)
            return 200, {
                "kind": f"{kind.kind}List",
                "apiVersion": kind.api_version,
                "metadata": {"resourceVersion": str(version)},
                "items": [_bare(i) for i in items],
            }
        if verb == "get":
            return 200, self._existing(kind, namespace, name)
        if verb == "delete":
            obj = self._existing(kind, namespace, name)
            del self.objects[(kind.plural, namespace, name or "")]
            self._record("DELETED", kind.plural, obj)
            return 200, obj
        body = await self._body(request)
        if verb == "create":
            obj = self._checked(kind, namespace, None, body)
            key = (kind.plural, namespace, obj["metadata"]["name"])
            if key in self.objects:
                raise _Failure(
                    409, "AlreadyExists", f'{kind.qualified} "{key[2]}" already exists',
                    name=key[2], group=kind.group, kind=kind.plural,
                )  # fmt: skip
            return 201, self._store(kind, key, obj, "ADDED", None)
        key = (kind.plural, namespace, name or "")
        old = self.objects.get(key)
        if verb == "update":
            obj = self._checked(kind, namespace, name, body)
            if old is None:
                if not kind.create_on_update:
                    raise self._not_found(kind, name)
                # The uid the body carries is a precondition (defaultUpdatedObjectInfo): a PUT of
                # an object read before it was deleted does not create it again.
                _uid_precondition(kind, name, obj, None)
                return 201, self._store(kind, key, obj, "ADDED", None)
            wanted = obj["metadata"].get("resourceVersion")
            if not wanted and not kind.unconditional_update:
                raise _Failure(
                    422, "Invalid",
                    f'{kind.kind}.{kind.group} "{name}" is invalid: metadata.resourceVersion: '
                    "Invalid value: 0x0: must be specified for an update",
                    name=name, group=kind.group, kind=kind.kind,
                )  # fmt: skip
            self._precondition(kind, name, wanted, old)
            _uid_precondition(kind, name, obj, old)
            return 200, self._store(kind, key, obj, "MODIFIED", old)
        # PATCH: JSON merge patch (RFC 7386); strategic merge behaves the same on the maps used.
        if old is None:
            raise self._not_found(kind, name)
        if not isinstance(body, dict):
            raise _Failure(400, "BadRequest", "a patch must be a JSON object")
        self._precondition(kind, name, body.get("metadata", {}).get("resourceVersion"), old)
        merged = _merge(copy.deepcopy(old), body)
        obj = self._checked(kind, namespace, name, merged)
        return 200, self._store(kind, key, obj, "MODIFIED", old)

    def _existing(self, kind: Kind, namespace: str, name: str | None) -> dict[str, Any]:
        obj = self.objects.get((kind.plural, namespace, name or ""))
        if obj is None:
            raise self._not_found(kind, name)
        return obj

    @staticmethod
    def _not_found(kind: Kind, name: str | None) -> _Failure:
        return _Failure(
            404, "NotFound", f'{kind.qualified} "{name}" not found',
            name=name, group=kind.group, kind=kind.plural,
        )  # fmt: skip

    @staticmethod
    def _precondition(kind: Kind, name: str | None, wanted: Any, old: dict[str, Any]) -> None:
        """A resourceVersion in a PUT or PATCH must be the stored one (409 Conflict)."""
        if wanted and wanted != old["metadata"]["resourceVersion"]:
            raise _Failure(
                409, "Conflict",
                f'Operation cannot be fulfilled on {kind.qualified} "{name}": the object has '
                "been modified; please apply your changes to the latest version and try again",
                name=name, group=kind.group, kind=kind.plural,
            )  # fmt: skip

    @staticmethod
    async def _body(request: web.Request) -> Any:
        try:
            return json.loads(await request.read())
        except ValueError:
            raise _Failure(400, "BadRequest", "the request body is not JSON") from None

    def _checked(self, kind: Kind, namespace: str, name: str | None, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
            raise _Failure(
                400, "BadRequest", f"{kind.kind} in version {kind.version!r}: no metadata"
            )
        meta = body["metadata"]
        if name is not None and meta.get("name", name) != name:
            raise _Failure(
                400, "BadRequest",
                f"the name of the object ({meta.get('name')}) does not match the name on the "
                f"URL ({name})",
            )  # fmt: skip
        meta.setdefault("name", name)
        if not meta.get("name"):
            raise _Failure(422, "Invalid", "metadata.name: Required value: name is required")
        if kind.namespaced:
            if meta.get("namespace", namespace) != namespace:
                raise _Failure(
                    400, "BadRequest",
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request",
                )  # fmt: skip
            meta["namespace"] = namespace
        for path in _MICRO_FIELDS.get(kind.plural, ()):
            value = _dig(body, path)
            if value is not None and not (isinstance(value, str) and _MICRO_TIME.fullmatch(value)):
                raise _Failure(
                    400, "BadRequest",
                    f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '
                    f'parsing time "{value}" as "2006-01-02T15:04:05.000000Z07:00": cannot parse',
                )  # fmt: skip
        if kind.plural == "leases":
            spec = body.get("spec") or {}
            if spec.get("leaseDurationSeconds") is not None and spec["leaseDurationSeconds"] <= 0:
                raise _Failure(422, "Invalid", "spec.leaseDurationSeconds: must be greater than 0")
        if kind.plural == "events":
            _check_event(body)
        return body

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
        return copy.deepcopy(obj)

    def _record(self, event: str, plural: str, obj: dict[str, Any]) -> None:
        self.history.append((self.version, event, plural, copy.deepcopy(obj)))
        while len(self.history) > self.history_size:
            self.history.popleft()
        if self._changed is not None:
            changed = self._changed

            async def notify() -> None:
                async with changed:
                    changed.notify_all()

            asyncio.get_running_loop().create_task(notify())

    def _select(self, kind: Kind, namespace: str, query: Any) -> tuple[list[dict[str, Any]], int]:
        matches = _selector(query)
        items = [
            obj
            for (plural, ns, _), obj in sorted(self.objects.items())
            if plural == kind.plural and (ns == namespace or not kind.namespaced) and matches(obj)
        ]
        return items, self.version

    async def _watch(
        self, request: web.Request, kind: Kind, namespace: str, client: str
    ) -> web.StreamResponse:
        matches = _selector(request.query)
        bookmarks = request.query.get("allowWatchBookmarks") in {"true", "1"}
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        since = request.query.get("resourceVersion") or ""
        response = web.StreamResponse(status=200, headers={"Content-Type": JSON})
        await response.prepare(request)
        if self._changed is None:
            self._changed = asyncio.Condition()

        async def send(event: str, obj: dict[str, Any]) -> None:
            await response.write(json.dumps({"type": event, "object": obj}).encode() + b"\n")

        fault = self.watch_faults.get(client)
        if fault is not None:
            await self._misbehave(fault, response, kind, namespace, time.monotonic() + timeout)
            return response
        if since in {"", "0"}:
            for obj in self._select(kind, namespace, request.query)[0]:
                await send("ADDED", obj)
            last = self.version
        else:
            last = int(since)
            oldest = self.history[0][0] if self.history else self.version + 1
            if last < oldest - 1:
                failure = _Failure(410, "Expired", f"too old resource version: {last} ({oldest})")
                await send("ERROR", _status(failure))
                await response.write_eof()
                return response
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + 1.0
        generation = self.generation
        while time.monotonic() < deadline and generation == self.generation:
            if client not in self.partitioned:
                for version, event, plural, obj in list(self.history):
                    if version <= last or plural != kind.plural:
                        continue
                    last = version
                    ns = obj["metadata"].get("namespace", "")
                    if (ns == namespace or not kind.namespaced) and matches(obj):
                        await send(event, obj)
                if bookmarks and time.monotonic() >= next_bookmark:
                    marker = {"kind": kind.kind, "apiVersion": kind.api_version}
                    await send("BOOKMARK", {**marker, "metadata": {"resourceVersion": str(last)}})
                    next_bookmark = time.monotonic() + 1.0
                last = max(last, self.version)
            async with self._changed:
                try:
                    wait = max(0.0, min(deadline, next_bookmark) - time.monotonic())
                    await asyncio.wait_for(self._changed.wait(), timeout=min(wait, 0.25))
                except TimeoutError:
                    pass
        await response.write_eof()
        return response

    async def _misbehave(
        self, fault: str, response: web.StreamResponse, kind: Kind, namespace: str,
        deadline: float,
    ) -> None:  # fmt: skip
        """A hostile watch stream (WATCH_FAULTS) until `deadline` (monotonic)."""
        version = str(self.version)
        if fault == "expired":
            failure = _Failure(410, "Expired", f"too old resource version: 1 ({version})")
            error = {"type": "ERROR", "object": _status(failure)}
            await response.write(json.dumps(error).encode() + b"\n")
        elif fault == "huge":
            chunk = b"x" * (1024 * 1024)
            for _ in range(HUGE_LINE // len(chunk)):
                await response.write(chunk)
        elif fault in {"bookmarks", "garbage", "endless"}:
            count = 0
            while time.monotonic() < deadline:
                count += 1
                if fault == "bookmarks":
                    marker = {"kind": kind.kind, "apiVersion": kind.api_version,
                              "metadata": {"resourceVersion": version}}  # fmt: skip
                    line = json.dumps({"type": "BOOKMARK", "object": marker}).encode()
                elif fault == "garbage":
                    line = b'{"type": "MODIFIED", "object": <html>502 Bad Gateway'
                else:
                    obj = {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": {
                        "name": f"flood-{count}", "namespace": namespace,
                        "resourceVersion": str(self.version + count),
                        "labels": {"presence-controller/lease": "x"}}}  # fmt: skip
                    line = json.dumps({"type": "ADDED", "object": obj}).encode()
                await response.write(line + b"\n")
                await asyncio.sleep(0.002 if fault == "endless" else 0.05)
        elif fault == "stall":
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        await response.write_eof()


def _owner(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {"apiVersion": "apps/v1", "kind": kind, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}  # fmt: skip


def _depth(kind: Kind, namespace: str) -> int:
    """Path segments of the deepest path of `kind`: /apis/g/v[/namespaces/ns]/plural/name."""
    prefix = 3 if kind.group else 2
    return prefix + (2 if namespace else 0) + 2


def _uid_precondition(kind: Kind, name: str | None, obj: dict[str, Any], old: Any) -> None:
    """A uid in an update's body must be the stored object's (409 otherwise, as etcd3's
    checkPreconditions answers it)."""
    uid = obj.get("metadata", {}).get("uid")
    stored = old["metadata"]["uid"] if old is not None else ""
    if uid and uid != stored:
        raise _Failure(
            409, "Conflict",
            f'Operation cannot be fulfilled on {kind.qualified} "{name}": StorageError: invalid '
            f"object, Code: 4, Key: /registry/{kind.plural}/{name}, ResourceVersion: 0, "
            f"AdditionalErrorMsg: Precondition failed: UID in precondition: {uid}, UID in "
            f"object meta: {stored}",
            name=name, group=kind.group, kind=kind.plural,
        )  # fmt: skip


def write_kubeconfig(path: Path, server: str, token: str, namespace: str) -> Path:
    """A kubeconfig for `server` (plain http, bearer `token`, default `namespace`)."""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        f'clusters: [{{name: fake, cluster: {{server: "{server}"}}}}]\n'
        f'users: [{{name: fake, user: {{token: "{token}"}}}}]\n'
        "contexts: [{name: fake, context: {cluster: fake, user: fake, "
        f"namespace: {namespace}}}}}]\n"
    )
    return path


def _status(failure: _Failure) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": failure.message,
        "reason": failure.reason,
    }
    if failure.details:
        body["details"] = failure.details
    body["code"] = failure.code
    return body


def _forbidden(kind: Kind, verb: str, namespace: str, name: str | None, client: str) -> str:
    target = f'{kind.qualified} "{name}"' if name else kind.qualified
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    group = f'in API group "{kind.group}" ' if kind.group else 'in API group "" '
    return (
        f'{target} is forbidden: User "system:serviceaccount:{namespace}:{client}" cannot '
        f'{verb} resource "{kind.plural}" {group}{where}'
    )


def _bare(obj: dict[str, Any]) -> dict[str, Any]:
    """List items carry no kind/apiVersion, as from a real server."""
    return {k: v for k, v in obj.items() if k not in {"kind", "apiVersion"}}


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge(target.get(key), value)
    return target


def _check_event(body: dict[str, Any]) -> None:
    problems = [
        f"{name}: Required value"
        for name in ("eventTime", "reportingController", "reportingInstance", "action", "reason")
        if not body.get(name)
    ]
    if body.get("type") not in {"Normal", "Warning"}:
        problems.append("type: Unsupported value: must be Normal or Warning")
    if len(body.get("note") or "") > 1024:
        problems.append("note: Too long: may not be longer than 1024")
    series = body.get("series")
    if series is not None and (series.get("count", 0) < 2 or not series.get("lastObservedTime")):
        problems.append("series: Invalid value: count must be >= 2 with a lastObservedTime")
    if problems:
        raise _Failure(422, "Invalid", "Event is invalid: " + ", ".join(problems))


_REQUIREMENT = re.compile(
    r"\s*(?P<neg>!)?(?P<key>[A-Za-z0-9./_-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9._-]*)|\s+(?P<set>in|notin)\s*\((?P<values>[^)]*)\))?\s*"
)


def _selector(query: Any) -> Any:
    """labelSelector (=, ==, !=, in, notin, key, !key) and fieldSelector (metadata.name,
    metadata.namespace) as one predicate on an object."""
    checks = list(_requirements(query.get("labelSelector", ""), labels=True))
    checks += _requirements(query.get("fieldSelector", ""), labels=False)

    def matches(obj: dict[str, Any]) -> bool:
        return all(check(obj) for check in checks)

    return matches


def _split(selector: str) -> Iterator[str]:
    depth, part = 0, ""
    for char in selector:
        if char == "," and depth == 0:
            yield part
            part = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        part += char
    if part.strip():
        yield part


def _requirements(selector: str, labels: bool) -> Iterator[Any]:
    for part in _split(selector):
        found = _REQUIREMENT.fullmatch(part)
        if found is None:
            raise _Failure(400, "BadRequest", f"unable to parse requirement: {part!r}")
        key, op, value = found["key"], found["op"] or found["set"], found["value"]
        values = {v.strip() for v in (found["values"] or "").split(",") if v.strip()}

        def read(obj: dict[str, Any], key: str = key) -> str | None:
            if labels:
                found = (obj.get("metadata") or {}).get("labels") or {}
                return found.get(key)
            value = _dig(obj, tuple(key.split(".")))
            return value if isinstance(value, str) else None

        def check(
            obj: dict[str, Any],
            op: str | None = op,
            value: str | None = value,
            values: set[str] = values,
            negated: bool = bool(found["neg"]),
            read: Any = read,
        ) -> bool:
            have = read(obj)
            if op is None:
                return (have is None) if negated else (have is not None)
            if op in {"=", "=="}:
                return bool(have == value)
            if op == "!=":
                return bool(have != value)
            if op == "in":
                return have in values
            return have not in values

        yield check
