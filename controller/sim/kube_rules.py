"""The fake API server's rules: kinds, validation, preconditions, selectors, Status bodies, as the
real API server applies them (wire facts and their sources: docs/fleet.md, "Testing")."""

from __future__ import annotations

import base64
import copy
import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from controller.kube.wire import route

JSON = "application/json"
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
        Kind("", "v1", "Secret", "secrets"),
        Kind("", "v1", "ConfigMap", "configmaps"),
        Kind("", "v1", "Namespace", "namespaces", namespaced=False),
    )
}


class Failure(Exception):
    def __init__(self, code: int, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


def not_found(kind: Kind, name: str | None) -> Failure:
    return Failure(
        404, "NotFound", f'{kind.qualified} "{name}" not found',
        name=name, group=kind.group, kind=kind.plural,
    )  # fmt: skip


def precondition(kind: Kind, name: str | None, wanted: Any, old: dict[str, Any]) -> None:
    """A resourceVersion in a PUT or PATCH must be the stored one (409 Conflict)."""
    if wanted and wanted != old["metadata"]["resourceVersion"]:
        raise Failure(
            409, "Conflict",
            f'Operation cannot be fulfilled on {kind.qualified} "{name}": the object has '
            "been modified; please apply your changes to the latest version and try again",
            name=name, group=kind.group, kind=kind.plural,
        )  # fmt: skip


def uid_precondition(kind: Kind, name: str | None, obj: dict[str, Any], old: Any) -> None:
    """A uid in an update's body must be the stored object's (409 otherwise, as etcd3's
    checkPreconditions answers it)."""
    uid = obj.get("metadata", {}).get("uid")
    stored = old["metadata"]["uid"] if old is not None else ""
    if uid and uid != stored:
        raise Failure(
            409, "Conflict",
            f'Operation cannot be fulfilled on {kind.qualified} "{name}": StorageError: invalid '
            f"object, Code: 4, Key: /registry/{kind.plural}/{name}, ResourceVersion: 0, "
            f"AdditionalErrorMsg: Precondition failed: UID in precondition: {uid}, UID in "
            f"object meta: {stored}",
            name=name, group=kind.group, kind=kind.plural,
        )  # fmt: skip


def deletion_preconditions(kind: Kind, name: str | None, body: Any, old: dict[str, Any]) -> None:
    """A DELETE's DeleteOptions: `preconditions` (resourceVersion, uid) must match the stored
    object (409, as etcd3's checkPreconditions answers)."""
    if not isinstance(body, dict):
        raise Failure(400, "BadRequest", "the request body is not DeleteOptions")
    wanted = body.get("preconditions") or {}
    meta = old["metadata"]
    for field, label in (("resourceVersion", "ResourceVersion"), ("uid", "UID")):
        if wanted.get(field) and wanted[field] != meta.get(field):
            raise Failure(
                409, "Conflict",
                f'Operation cannot be fulfilled on {kind.qualified} "{name}": Precondition '
                f"failed: {label} in precondition: {wanted[field]}, {label} in object meta: "
                f"{meta.get(field)}",
                name=name, group=kind.group, kind=kind.plural,
            )  # fmt: skip


def checked(kind: Kind, namespace: str, name: str | None, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
        raise Failure(400, "BadRequest", f"{kind.kind} in version {kind.version!r}: no metadata")
    meta = body["metadata"]
    if name is not None and meta.get("name", name) != name:
        raise Failure(
            400, "BadRequest",
            f"the name of the object ({meta.get('name')}) does not match the name on the "
            f"URL ({name})",
        )  # fmt: skip
    meta.setdefault("name", name)
    if not meta.get("name"):
        raise Failure(422, "Invalid", "metadata.name: Required value: name is required")
    if kind.namespaced:
        if meta.get("namespace", namespace) != namespace:
            raise Failure(
                400, "BadRequest",
                "the namespace of the provided object does not match the namespace sent "
                "on the request",
            )  # fmt: skip
        meta["namespace"] = namespace
    for path in _MICRO_FIELDS.get(kind.plural, ()):
        value = dig(body, path)
        if value is not None and not (isinstance(value, str) and _MICRO_TIME.fullmatch(value)):
            raise Failure(
                400, "BadRequest",
                f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '
                f'parsing time "{value}" as "2006-01-02T15:04:05.000000Z07:00": cannot parse',
            )  # fmt: skip
    if kind.plural == "leases":
        spec = body.get("spec") or {}
        if spec.get("leaseDurationSeconds") is not None and spec["leaseDurationSeconds"] <= 0:
            raise Failure(422, "Invalid", "spec.leaseDurationSeconds: must be greater than 0")
    if kind.plural == "events":
        check_event(body)
    return body


def depth(kind: Kind, namespace: str) -> int:
    """Path segments of the deepest path of `kind`: /apis/g/v[/namespaces/ns]/plural/name."""
    prefix = 3 if kind.group else 2
    return prefix + (2 if namespace else 0) + 2


def status_body(failure: Failure) -> dict[str, Any]:
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


def forbidden(kind: Kind, verb: str, namespace: str, name: str | None, client: str) -> str:
    target = f'{kind.qualified} "{name}"' if name else kind.qualified
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    group = f'in API group "{kind.group}" ' if kind.group else 'in API group "" '
    return (
        f'{target} is forbidden: User "system:serviceaccount:{namespace}:{client}" cannot '
        f'{verb} resource "{kind.plural}" {group}{where}'
    )


def bare(obj: dict[str, Any]) -> dict[str, Any]:
    """List items carry no kind/apiVersion, as from a real server."""
    return {k: v for k, v in obj.items() if k not in {"kind", "apiVersion"}}


def dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merge(target.get(key), value)
    return target


def check_event(body: dict[str, Any]) -> None:
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
        raise Failure(422, "Invalid", "Event is invalid: " + ", ".join(problems))


def authorized(
    rules: list[dict[str, Any]] | None, kind: Kind, verb: str, name: str | None, query: Any
) -> bool:
    """RBAC as the API server applies it: resourceNames restrict get/update/patch/delete by
    name, list/watch only with `fieldSelector=metadata.name=<name>`, never create."""
    if rules is None:
        return True
    named = name
    if verb in {"list", "watch"}:
        fields = query.get("fieldSelector", "")
        named = (
            fields.removeprefix("metadata.name=") if fields.startswith("metadata.name=") else None
        )
    for rule in rules:
        if kind.group not in rule.get("apiGroups", []) and "*" not in rule.get("apiGroups", []):
            continue
        if kind.plural not in rule.get("resources", []) or verb not in rule.get("verbs", []):
            continue
        names = rule.get("resourceNames")
        if not names or (verb != "create" and named in names):
            return True
    return False


def route_of(path: str) -> tuple[Kind, str, str | None]:
    plural, namespace, name = route(path)
    kind = KINDS.get(plural)
    base = f"/apis/{kind.group}/{kind.version}/" if kind and kind.group else "/api/v1/"
    if (
        kind is None
        or not path.startswith(base)
        or len([p for p in path.split("/") if p]) > depth(kind, namespace)
    ):
        raise Failure(404, "NotFound", "the server could not find the requested resource")
    if kind.namespaced and not namespace and name is not None:
        raise Failure(404, "NotFound", "the server could not find the requested resource")
    return kind, namespace, name


def verb_of(request: web.Request, name: str | None) -> str:
    if request.method == "GET":
        if request.query.get("watch") in {"true", "1"}:
            return "watch"
        return "get" if name else "list"
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    if request.method not in verbs:
        raise Failure(405, "MethodNotAllowed", f"method {request.method} not allowed")
    return verbs[request.method]


@dataclass(frozen=True, slots=True)
class KubeCall:
    """One request, as the fake saw it."""

    at: float
    client: str
    verb: str
    plural: str
    name: str | None
    code: int


def owner_ref(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {"apiVersion": "apps/v1", "kind": kind, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}  # fmt: skip


def page(
    items: list[dict[str, Any]], version: int, query: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A list's metadata and the items of one page, as `limit` and `continue` ask: the token
    carries the list's resourceVersion and the last name served (opaque to the client), and
    `remainingItemCount` says how many follow. (The real server serves every page from the
    first page's snapshot; here later pages see later writes.)"""
    start, listed = "", version
    token = query.get("continue")
    if token:
        try:
            listed, start = json.loads(base64.urlsafe_b64decode(token.encode()))
        except (ValueError, TypeError):
            raise Failure(400, "BadRequest", "continue key is not valid") from None
    rest = [i for i in items if i["metadata"]["name"] > start]
    limit = query.get("limit")
    if not limit or not limit.isdigit() or int(limit) <= 0 or len(rest) <= int(limit):
        return {"resourceVersion": str(listed)}, rest
    served = rest[: int(limit)]
    key = json.dumps([listed, served[-1]["metadata"]["name"]]).encode()
    meta = {
        "resourceVersion": str(listed),
        "continue": base64.urlsafe_b64encode(key).decode(),
        "remainingItemCount": len(rest) - len(served),
    }
    return meta, served


def dry_run(
    verb: str, kind: Kind, namespace: str, name: str | None, body: Any, old: dict[str, Any] | None
) -> tuple[int, dict[str, Any]]:
    """A write with `dryRun=All`: validated and answered with what would be stored; nothing is."""
    if verb != "patch":
        return (201 if verb == "create" else 200), bare(checked(kind, namespace, name, body))
    if old is None:
        raise not_found(kind, name)
    if not isinstance(body, dict):
        raise Failure(400, "BadRequest", "a patch must be a JSON object")
    precondition(kind, name, body.get("metadata", {}).get("resourceVersion"), old)
    return 200, checked(kind, namespace, name, merge(copy.deepcopy(old), body))
