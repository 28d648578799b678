"""Wire facts of the Kubernetes API: MicroTime, paths, object metadata, `Status` objects and
watch events as they come off the wire, and the error value every failure becomes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from controller.core.excerpt import clip
from controller.core.retry_after import parse_retry_after

_MESSAGE_CHARS = 300
"""Characters of an API server's message kept in a KubeError (it reaches logs and /status)."""


class KubeError(Exception):
    """A failed API call: `code` is the HTTP status (0 when nothing came back); `retry_after`
    the seconds the server asked to wait (429, 503), if it said."""

    def __init__(
        self, code: int, reason: str, message: str, retry_after: float | None = None
    ) -> None:
        reason, message = clip(reason, 60), clip(message, _MESSAGE_CHARS)
        super().__init__(f"{code or 'no answer'} {reason}: {message}" if reason else message)
        self.code, self.reason, self.message = code, reason, message
        self.retry_after = retry_after


def micro_time(at: datetime) -> str:
    """A Kubernetes MicroTime: UTC with exactly six fractional digits (anything else is a 400)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


def watch_event(line: str) -> tuple[str, dict[str, Any]]:
    """One line of a watch stream: `(type, object)`; an ERROR event as KubeError."""
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        raise KubeError(0, "", f"unreadable watch event ({len(line)} characters)") from None
    kind = event.get("type") if isinstance(event, dict) else None
    obj = event.get("object") if isinstance(event, dict) else None
    if kind not in {"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"} or not isinstance(
        obj, dict
    ):
        raise KubeError(0, "", f"unreadable watch event ({len(line)} characters)")
    if kind == "ERROR":
        raise status_error(0, obj, {})
    return kind, obj


def status_error(code: int, body: bytes | dict[str, Any], headers: Any) -> KubeError:
    """A failure answered with a `Status` object (or without one)."""
    status = body if isinstance(body, dict) else _json_object(body)
    if status is None or status.get("kind") != "Status":
        return KubeError(code, "", "the API server answered without a Status")
    found = status.get("code")
    return KubeError(
        found if isinstance(found, int) and 0 < found < 1000 else code,
        str(status.get("reason") or ""),
        str(status.get("message") or ""),
        retry_after_of(headers),
    )


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        found = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return found if isinstance(found, dict) else None


def retry_after_of(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers else None
    return parse_retry_after(value, headers.get("date")) if value else None
