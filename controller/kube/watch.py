"""List + watch of one kind of object, kept as plain dicts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from controller.kube.client import KubeClient, KubeError
from controller.runtime.logs import event

log = logging.getLogger(__name__)

BACKOFF = (1.0, 30.0)
"""Back-off after a failure (first, cap), doubled each time."""
_WATCH_PERIOD = 60.0
"""Each watch is restarted (from its resourceVersion) after this long, so a connection that
stalls silently cannot hide changes for longer; one request per period."""


class ObjectWatch:
    """Objects of one kind by list + watch (the fleet's heartbeat Leases by label, the workload
    or the Namespace by name): resumes from the last resourceVersion, relists on 410 Expired,
    backs off on errors (1 s doubling to 30 s), and restarts every `_WATCH_PERIOD` s. `seen`
    holds, per object, when this replica last saw it change (its own monotonic clock: freshness
    never compares clocks across nodes). A watch that cannot read keeps the last good objects
    and reports the error."""

    def __init__(
        self,
        client: KubeClient,
        plural: str,
        clock: Callable[[], float],
        *,
        labels: dict[str, str] | None = None,
        name: str | None = None,
        on_change: Callable[[], None] | None = None,
        on_restart: Callable[[str], None] | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        """`tracer`: a `presence.kube.watch` span for each change and relist (the workload and
        namespace sources; the heartbeats change every few seconds and go untraced)."""
        self.client, self.plural, self._clock = client, plural, clock
        self._on_restart, self._tracer = on_restart, tracer
        self.labels, self.name = labels, name
        self.items: dict[str, dict[str, Any]] = {}
        self.seen: dict[str, float] = {}
        self.error: str | None = None
        self.restarts = 0
        self.version = 0
        """Bumped whenever an object is added, changed or deleted."""
        self.listed = False
        """Whether a list ever succeeded (before that, `items` knows nothing)."""
        self._on_change = on_change

    @property
    def what(self) -> str:
        return f"{self.plural[:-1]}/{self.name}" if self.name else f"{self.plural} {self.labels}"

    async def run(self) -> None:
        version: str | None = None
        delay = BACKOFF[0]
        while True:
            try:
                if version is None:
                    items, version = await self.client.list_objects(
                        self.plural, labels=self.labels, name=self.name
                    )
                    self._relisted(items)
                    self._recovered()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_WATCH_PERIOD):
                        stream = self.client.watch_objects(
                            self.plural, version, int(_WATCH_PERIOD) + 30,
                            labels=self.labels, name=self.name,
                        )  # fmt: skip
                        async for kind, obj in stream:
                            version = self._apply(kind, obj) or version
                            self._recovered()
                self._recovered()
                delay = BACKOFF[0]
            except KubeError as exc:
                self.restarts += 1
                if self._on_restart is not None:
                    self._on_restart(self.plural)
                if exc.code == 410:
                    version = None  # history gone: list again, then watch from there
                    continue
                if str(exc) != self.error:
                    event(log, logging.WARNING, "watch_error", f"watch of {self.what}: {exc}")
                self.error = str(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF[1])

    def _recovered(self) -> None:
        if self.error is not None:
            event(log, logging.INFO, "watch_ok", f"watch of {self.what}: reading again")
        self.error = None

    def _relisted(self, items: list[dict[str, Any]]) -> None:
        now = self._clock()
        fresh = {}
        for obj in items:
            name = str(obj["metadata"]["name"])
            old = self.items.get(name)
            if old is None or version_of(old) != version_of(obj):
                self.seen[name] = now
            fresh[name] = obj
        changed = (
            not self.listed
            or set(fresh) != set(self.items)
            or any(version_of(self.items.get(n)) != version_of(o) for n, o in fresh.items())
        )
        self.items, self.listed = fresh, True
        self.seen = {name: at for name, at in self.seen.items() if name in fresh}
        if changed:
            self._changed("LIST", None)

    def _changed(self, kind: str, obj: dict[str, Any] | None) -> None:
        self.version += 1
        if self._tracer is not None:
            attributes = {
                "presence.kube.resource": self.plural,
                "presence.kube.watch.event": kind,
                "presence.kube.object": self.name or "",
                "presence.kube.resource_version": version_of(obj) if obj else "",
            }
            with self._tracer.start_as_current_span("presence.kube.watch", attributes=attributes):
                pass
        if self._on_change is not None:
            self._on_change()

    def _apply(self, kind: str, obj: dict[str, Any]) -> str | None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        if kind in {"ADDED", "MODIFIED"} and name:
            if version_of(self.items.get(name)) != version_of(obj):
                self.seen[name] = self._clock()
                self.items[name] = obj
                self._changed(kind, obj)
        elif kind == "DELETED" and name in self.items:
            self.items.pop(name, None)
            self.seen.pop(name, None)
            self._changed(kind, obj)
        return version_of(obj) or None


def version_of(obj: dict[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")
