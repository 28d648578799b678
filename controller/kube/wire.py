"""Wire facts of the Kubernetes API that more than one part needs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def micro_time(at: datetime | None = None) -> str:
    """A Kubernetes MicroTime: UTC with exactly six fractional digits (anything else is a 400)."""
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def route(path: str) -> tuple[str, str, str | None]:
    """`(resource, namespace, name)` of an API path (`/apis/g/v/namespaces/ns/leases/x`);
    resource "" for a path that names none."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        rest = parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        rest = parts[3:]
    else:
        return "", "", None
    namespace = ""
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return "", namespace, None
    return rest[0], namespace, rest[1] if len(rest) > 1 else None


def name_of(obj: dict[str, Any]) -> str:
    """`metadata.name` when it is a string, else ""."""
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else ""


def version_of(obj: dict[str, Any] | None) -> str:
    """`metadata.resourceVersion` when it is a string, else ""."""
    meta = (obj or {}).get("metadata")
    version = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return version if isinstance(version, str) else ""
