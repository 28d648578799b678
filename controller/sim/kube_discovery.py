"""What the fake API server serves so that a real client (kubectl) can use it (and the kubeconfig
that points one at it): the version, the
discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`), and the core/v1 view
of events.k8s.io Events (the real API server stores one Event and serves it through both APIs:
`kubectl get events` and `kubectl describe` read core/v1, with `involvedObject`)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.kube.wire import route
from controller.sim.kube_rules import KINDS, Kind, bare, not_found, page
from controller.sim.kube_selectors import selector

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-presence-sim",
    "platform": "linux/amd64",
}
_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
_SHORT = {"deployments": ["deploy"], "events": ["ev"], "pods": ["po"], "namespaces": ["ns"],
          "replicasets": ["rs"], "statefulsets": ["sts"]}  # fmt: skip


def _resource(kind: Kind) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "name": kind.plural,
        "singularName": kind.kind.lower(),
        "namespaced": kind.namespaced,
        "kind": kind.kind,
        "verbs": _VERBS,
    }
    if kind.plural in _SHORT:
        resource["shortNames"] = _SHORT[kind.plural]
    return resource


def _groups() -> dict[str, list[Kind]]:
    groups: dict[str, list[Kind]] = {}
    for kind in KINDS.values():
        groups.setdefault(kind.group, []).append(kind)
    return groups


def discovery(path: str) -> dict[str, Any] | None:
    """The document a discovery path serves; None when `path` is not one."""
    parts = [p for p in path.split("/") if p]
    groups = _groups()
    if parts == ["version"]:
        return VERSION
    if parts == ["api"]:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if parts == ["apis"]:
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": group,
                    "versions": [{"groupVersion": f"{group}/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": f"{group}/v1", "version": "v1"},
                }
                for group in sorted(groups)
                if group
            ],
        }
    if parts == ["api", "v1"]:
        core = [*groups[""], CORE_EVENTS]
        return _resource_list("v1", core)
    if len(parts) == 3 and parts[0] == "apis" and parts[2] == "v1" and parts[1] in groups:
        return _resource_list(f"{parts[1]}/v1", groups[parts[1]])
    return None


def _resource_list(group_version: str, kinds: list[Kind]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [_resource(k) for k in sorted(kinds, key=lambda k: k.plural)],
    }


CORE_EVENTS = Kind("", "v1", "Event", "events")
"""core/v1 Events: a read-only view of the stored events.k8s.io Events."""


def core_event(obj: dict[str, Any]) -> dict[str, Any]:
    """An events.k8s.io/v1 Event as the API server serves it through core/v1 (its field
    mapping: regarding -> involvedObject, note -> message, reportingController ->
    reportingComponent and source.component, deprecated* -> count and timestamps)."""
    series = obj.get("series")
    out: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": obj.get("metadata", {}),
        "involvedObject": obj.get("regarding") or {},
        "reason": obj.get("reason", ""),
        "message": obj.get("note", ""),
        "type": obj.get("type", ""),
        "action": obj.get("action", ""),
        "eventTime": obj.get("eventTime"),
        "reportingComponent": obj.get("reportingController", ""),
        "reportingInstance": obj.get("reportingInstance", ""),
        "source": {"component": obj.get("reportingController", "")},
        "count": obj.get("deprecatedCount") or (series or {}).get("count") or 1,
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
        "lastTimestamp": obj.get("deprecatedLastTimestamp"),
    }
    if series:
        out["series"] = {
            "count": series.get("count"),
            "lastObservedTime": series.get("lastObservedTime"),
        }
    if obj.get("related"):
        out["related"] = obj["related"]
    return out


def core_events_reply(
    objects: dict[tuple[str, str, str], dict[str, Any]],
    path: str,
    query: Any,
    accept: str,
    version: int,
) -> dict[str, Any]:
    """A GET of core/v1 events: the stored events.k8s.io Events converted; a list with label
    and field selectors (on `involvedObject.*` and `reason` too), paged, or a Table; or one by
    name."""
    _, namespace, name = route(path)
    events = [
        core_event(obj)
        for (plural, ns, _), obj in sorted(objects.items())
        if plural == "events" and (ns == namespace or not namespace)
    ]
    if name is not None:
        found = [e for e in events if e["metadata"].get("name") == name]
        if not found:
            raise not_found(CORE_EVENTS, name)
        return found[0]
    matches = selector(query)
    meta, items = page([e for e in events if matches(e)], version, query)
    if wants_table(accept):
        return table("events", items, str(version), datetime.now(UTC))
    return {"kind": "EventList", "apiVersion": "v1", "metadata": meta,
            "items": [bare(e) for e in items]}  # fmt: skip


def wants_table(accept: str) -> bool:
    """kubectl asks for a server-side Table (`as=Table;g=meta.k8s.io`) when it prints a list."""
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def table(plural: str, items: list[dict[str, Any]], version: str, now: datetime) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of `items` with the columns the real server prints for them."""
    columns, cells = _COLUMNS.get(plural, _COLUMNS[""])
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": version},
        "columnDefinitions": [
            {
                "name": name,
                "type": "string",
                "format": "name" if name == "Name" else "",
                "description": "",
                "priority": 0,
            }
            for name in columns
        ],
        "rows": [
            {
                "cells": [cell(item, now) for cell in cells],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": item.get("metadata", {}),
                },
            }
            for item in items
        ],
    }


def _age(value: Any, now: datetime) -> str:
    """kubectl's short duration (`42s`, `5m`, `3h`, `2d`) since an RFC 3339 time."""
    if not isinstance(value, str):
        return "<unknown>"
    try:
        seconds = int((now - datetime.fromisoformat(value)).total_seconds())
    except ValueError:
        return "<unknown>"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _name(item: dict[str, Any], now: datetime) -> str:
    return str(item.get("metadata", {}).get("name", ""))


def _created(item: dict[str, Any], now: datetime) -> str:
    return _age(item.get("metadata", {}).get("creationTimestamp"), now)


def _field(*path: str, default: str = "") -> Any:
    def read(item: dict[str, Any], now: datetime) -> str:
        value: Any = item
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return default if value is None else str(value)

    return read


def _last_seen(item: dict[str, Any], now: datetime) -> str:
    series = item.get("series") or {}
    return _age(
        series.get("lastObservedTime") or item.get("lastTimestamp") or item.get("eventTime"), now
    )


def _object(item: dict[str, Any], now: datetime) -> str:
    involved = item.get("involvedObject") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def _ready(item: dict[str, Any], now: datetime) -> str:
    status, spec = item.get("status") or {}, item.get("spec") or {}
    return f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}"


_COLUMNS: dict[str, tuple[list[str], list[Any]]] = {
    "": (["Name", "Age"], [_name, _created]),
    "events": (
        ["Last Seen", "Type", "Reason", "Object", "Message"],
        [_last_seen, _field("type"), _field("reason"), _object, _field("message")],
    ),
    "leases": (["Name", "Holder", "Age"], [_name, _field("spec", "holderIdentity"), _created]),
    "deployments": (
        ["Name", "Ready", "Up-to-date", "Available", "Age"],
        [
            _name,
            _ready,
            _field("status", "updatedReplicas", default="0"),
            _field("status", "availableReplicas", default="0"),
            _created,
        ],
    ),
}


def write_kubeconfig(
    path: Path, server: str, token: str, namespace: str, ca: bytes | None = None
) -> Path:
    """A kubeconfig for `server` (bearer `token`, default `namespace`; over https, trusting the
    CA certificate `ca`)."""
    cluster = f'server: "{server}"'
    if ca is not None:
        cluster += f", certificate-authority-data: {base64.b64encode(ca).decode()}"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
        f"clusters: [{{name: fake, cluster: {{{cluster}}}}}]\n"
        f'users: [{{name: fake, user: {{token: "{token}"}}}}]\n'
        "contexts: [{name: fake, context: {cluster: fake, user: fake, "
        f"namespace: {namespace}}}}}]\n"
    )
    return path
