"""List + watch of one kind of object, kept as plain dicts, bounded and never in a storm.

The pattern of client-go's reflector: list, then watch from the list's resourceVersion; a stream
the server ends normally is resumed from the last resourceVersion at once; any failure (an error,
an `ERROR` 410 event, a stream that stalls, a stream that ends within a second having delivered
nothing, too many requests a minute) relists after a back-off of 0.8 s doubling to 30 s with up
to 100% jitter, reset after 2 minutes without a failure. Every `PERIOD` the stream is restarted
(from its resourceVersion: a connection that stalls silently is replaced), and every `RELIST`
the watch lists again, so that a stream that drops events cannot hide a change for longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from controller.kube.client import KubeClient, KubeError
from controller.kube.wire import name_of, version_of
from controller.runtime.clock import Clock
from controller.telemetry.logs import event

log = logging.getLogger(__name__)

PERIOD = 60.0
"""A watch stream is restarted after this long (one watch request a minute)."""
RELIST = 300.0
"""A watch lists again at least this often (one list request every 5 minutes)."""
MAX_OBJECTS = 256
"""Objects one watch keeps; more are not read, and the watch reports it (a fleet is a few
replicas; thousands of labelled Leases are a flood, not a fleet)."""
MAX_REQUESTS = 6
"""More list and watch requests than this in a minute is an error (the normal is 2)."""
SHORT = 1.0
"""A stream that ends this soon having delivered nothing is a failure (client-go's "very short
watch")."""


@dataclass
class Backoff:
    """client-go's reflector back-off: `first` doubling to `cap`, each delay stretched by up to
    `jitter` x itself, reset after `reset` seconds without a failure."""

    rng: random.Random
    first: float = 0.8
    cap: float = 30.0
    jitter: float = 1.0
    reset: float = 120.0
    _step: float = 0.0
    _last: float | None = None

    def delay(self, now: float, at_least: float | None = None) -> float:
        """The pause before the next attempt, after a failure at `now` (the server's
        Retry-After, capped, when it asked for longer)."""
        if self._last is None or now - self._last > self.reset:
            self._step = self.first
        else:
            self._step = min(self._step * 2, self.cap)
        self._last = now
        pause = self._step * (1 + self.rng.random() * self.jitter)
        return max(pause, min(at_least or 0.0, 2 * self.cap))

    def forget(self) -> None:
        """Start over from `first`."""
        self._last = None


class ObjectWatch:
    """Objects of one kind by list + watch: the fleet's heartbeat Leases by label, the workload
    or the Namespace by name. `seen` holds, per object, when this replica last saw it change
    (its own monotonic clock: freshness never compares clocks across nodes). A watch that
    cannot read keeps the last good objects and reports why in `error`."""

    def __init__(
        self,
        client: KubeClient,
        plural: str,
        clock: Clock,
        *,
        labels: dict[str, str] | None = None,
        name: str | None = None,
        stall: float | None = None,
        rng: random.Random | None = None,
        on_change: Callable[[], None] | None = None,
        on_restart: Callable[[str], None] | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        """`stall`: a stream with no line for this long, or only bookmarks for twice as long,
        is a failure (the heartbeats, which change every few seconds, this replica's own too;
        a false alarm costs one relist); None for quiet
        objects (the workload), whose watch is relisted every PERIOD anyway. `tracer`: a
        `presence.kube.watch` span for each change and relist (the heartbeats change every few
        seconds and go untraced)."""
        self.client, self.plural, self._clock = client, plural, clock
        self.labels, self.name, self.stall = labels, name, stall
        self._on_change, self._on_restart, self._tracer = on_change, on_restart, tracer
        self._backoff = Backoff(rng or random.Random())
        self.items: dict[str, dict[str, Any]] = {}
        self.seen: dict[str, float] = {}
        self.error: str | None = None
        self._logged: str | None = None
        """The error last logged: each distinct one once, and recovery once."""
        self._phase = ""
        """What is being done: "list" or "watch"."""
        self._failed_in = ""
        """What the last failure happened in (its recovery is that part working again)."""
        self.restarts = 0
        """Failures: each is followed by a back-off and a relist."""
        self.version = 0
        """Bumped whenever an object is added, changed or deleted."""
        self.listed = False
        """Whether a list ever succeeded (before that, `items` knows nothing)."""
        self.listed_at: float | None = None
        """When the last successful list was sent: `items` was complete and current then."""
        self.overflow = 0
        """Objects not kept beyond MAX_OBJECTS (0: `items` holds them all)."""
        self.gone: dict[str, Any] | None = None
        """A named watch: the object as last seen before it vanished (None while present)."""
        self.gone_since: float | None = None
        self._requests: deque[float] = deque()
        self._retry = asyncio.Event()

    @property
    def what(self) -> str:
        return f"{self.plural[:-1]}/{self.name}" if self.name else f"{self.plural} {self.labels}"

    async def run(self) -> None:
        version: str | None = None
        while True:
            started = self._clock.now()
            try:
                if version is None:
                    version = await self._list()
                version = await self._watch(version, started)
            except KubeError as exc:
                version = None  # relist after any failure, as client-go's reflector does
                await self._failed(exc)

    async def _list(self) -> str:
        self._phase = "list"
        self._request()
        sent = self._clock.now()
        items, version, more = await self.client.list_objects(
            self.plural, labels=self.labels, name=self.name, most=MAX_OBJECTS
        )
        self._relisted(items, sent, more)
        return version

    async def _watch(self, version: str, started: float) -> str | None:
        """One watch stream; the version to resume from (None: relist)."""
        self._phase = "watch"
        self._request()
        events = 0
        with contextlib.suppress(TimeoutError):
            async with self._clock.timeout(PERIOD - (self._clock.now() - started)):
                stream = self.client.watch_objects(
                    self.plural, version, int(PERIOD) + 30,
                    labels=self.labels, name=self.name, stall=self.stall,
                )  # fmt: skip
                changed = self._clock.now()
                async for kind, obj in stream:
                    events += 1
                    version = self._apply(kind, obj) or version
                    if kind != "BOOKMARK":
                        changed = self._clock.now()
                    elif self.stall is not None and self._clock.now() - changed > 2 * self.stall:
                        # Bookmarks keep a stream alive, not current: what this watch follows
                        # changes more often than `stall` (this replica's own heartbeat).
                        raise KubeError(
                            0, "", f"no change for {2 * self.stall:g}s, only bookmarks: the "
                            "watch delivers nothing",
                        )  # fmt: skip
                    if kind != "BOOKMARK" and self._failed_in == "watch":
                        self._recovered()  # what failed (the stream) delivers again
                # The server ended the stream: resume at once, unless that is a storm.
                if events == 0 and self._clock.now() - started < SHORT:
                    raise KubeError(0, "", "the watch ended at once, having delivered nothing")
                if len(self._requests) > MAX_REQUESTS:
                    raise KubeError(
                        0, "", f"{len(self._requests)} list and watch requests in the last "
                        "minute: the API server ends every watch",
                    )  # fmt: skip
                return version
        self._recovered()  # a whole period read without a failure
        listed = self.listed_at
        return None if listed is None or self._clock.now() - listed >= RELIST else version

    def _request(self) -> None:
        now = self._clock.now()
        self._requests.append(now)
        while self._requests and self._requests[0] <= now - 60.0:
            self._requests.popleft()

    async def _failed(self, exc: KubeError) -> None:
        self._failed_in = self._phase
        self.restarts += 1
        if self._on_restart is not None:
            self._on_restart(self.plural)
        self.error = str(exc)
        if self.error != self._logged:
            event(log, logging.WARNING, "watch_error", f"watch of {self.what}: {exc}")
            self._logged = self.error
        self._retry.clear()
        with contextlib.suppress(TimeoutError):
            async with self._clock.timeout(self._backoff.delay(self._clock.now(), exc.retry_after)):
                await self._retry.wait()

    def retry_now(self) -> None:
        """The API server answers again (another request just succeeded): a watch waiting out
        its back-off tries at once, and its back-off starts over."""
        if self.error is not None:
            self._backoff.forget()
            self._retry.set()

    def _recovered(self) -> None:
        self.error, self._failed_in = None, ""
        if self._logged is not None:
            event(log, logging.INFO, "watch_ok", f"watch of {self.what}: reading again")
            self._logged = None

    def _relisted(self, items: list[dict[str, Any]], sent: float, more: bool) -> None:
        now = self._clock.now()
        fresh = {}
        for obj in items:
            name = name_of(obj)
            if not name:
                continue
            old = self.items.get(name)
            if old is None or version_of(old) != version_of(obj):
                self.seen[name] = now
            fresh[name] = obj
        changed = (
            not self.listed
            or set(fresh) != set(self.items)
            or any(version_of(self.items.get(n)) != version_of(o) for n, o in fresh.items())
        )
        if self.name is not None:
            self._presence(fresh.get(self.name), now)
        self.items, self.listed, self.listed_at = fresh, True, sent
        self.overflow = 1 if more else 0  # at least one more than MAX_OBJECTS
        self.seen = {name: at for name, at in self.seen.items() if name in fresh}
        if self._failed_in == "list":
            self._recovered()  # what failed (the list) works again
        if changed:
            self._changed("LIST", None)

    def _presence(self, obj: dict[str, Any] | None, now: float) -> None:
        """A named watch: remember the object as last seen while it is absent."""
        if obj is not None:
            self.gone, self.gone_since = None, None
        elif self.gone is None and self.items.get(self.name or "") is not None:
            self.gone, self.gone_since = self.items[self.name or ""], now

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
        name = name_of(obj)
        if kind in {"ADDED", "MODIFIED"} and name:
            if name not in self.items and len(self.items) >= MAX_OBJECTS:
                self.overflow += 1
            elif version_of(self.items.get(name)) != version_of(obj):
                if self.name is not None:
                    self._presence(obj, self._clock.now())
                self.seen[name] = self._clock.now()
                self.items[name] = obj
                self._changed(kind, obj)
        elif kind == "DELETED" and name in self.items:
            if self.name is not None:
                self._presence(None, self._clock.now())
            self.items.pop(name, None)
            self.seen.pop(name, None)
            self._changed(kind, obj)
        return version_of(obj) or None
