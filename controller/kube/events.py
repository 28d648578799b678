"""Kubernetes Events (events.k8s.io/v1) regarding the workload, as series, never a storm.

`record()` never blocks and never fails: the events go out from a background loop. An event that
repeats (same type, reason and note) within `SERIES_WINDOW` joins a series: its count and last
observed time are patched onto the first event, at most once per `FLUSH` seconds, so a flapping
bot makes one Event whose count grows, as `kubectl describe` shows it ("x12 over 9m").
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from controller.core.excerpt import clip
from controller.kube.client import KubeClient, KubeError
from controller.kube.wire import micro_time
from controller.runtime.clock import SYSTEM, Clock
from controller.telemetry.logs import event

log = logging.getLogger(__name__)

REPORTING_CONTROLLER = "presence-controller"
SERIES_WINDOW = 600.0
"""Repeats within 10 minutes of the last occurrence join its series."""
FLUSH = 30.0
"""A series' count is patched at most this often (an attribute of the recorder: tests shorten
it)."""
QUEUE = 100
"""Events waiting to be sent; past this the oldest is dropped (and counted)."""
SERIES_KEPT = 256
"""Series remembered at most (the least recently seen is forgotten first), whatever the window
holds: notes carry reasons, and reasons vary."""
_NOTE_CHARS = 1024


@dataclass
class _Series:
    name: str
    count: int
    last: float
    last_wall: str
    flushed: int
    flushed_at: float


@dataclass(frozen=True, slots=True)
class _Pending:
    type: str
    reason: str
    action: str
    note: str
    at: str


class EventRecorder:
    """Emits Events regarding the object `regarding()` returns (None: not known yet, skipped)."""

    def __init__(
        self,
        client: KubeClient,
        instance: str,
        regarding: Callable[[], dict[str, Any] | None],
        clock: Clock = SYSTEM,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self.client, self.instance = client, instance
        self._tracer = tracer or trace.get_tracer(__name__)
        self._regarding, self._clock = regarding, clock
        self._queue: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._series: dict[tuple[str, str, str, str], _Series] = {}
        self.flush = FLUSH
        self.sent = 0
        self.dropped = 0
        self.error: str | None = None
        self._last_stamp = 0

    def record(self, type_: str, reason: str, note: str, action: str) -> None:
        if len(self._queue) >= QUEUE:
            self._queue.popleft()
            self.dropped += 1
        at = micro_time(self._clock.wall())
        self._queue.append(_Pending(type_, reason, action, clip(note, _NOTE_CHARS - 40), at))
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            # Until the workload has been read there is nothing to attach an event to: they
            # wait in the (bounded) queue, not dropped (a leader elected before its watch of
            # the Deployment has listed would lose LeaderElected).
            while self._queue and self._regarding() is not None:
                await self._emit(self._queue.popleft())
            await self._flush()
            try:
                async with self._clock.timeout(self.flush):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _emit(self, item: _Pending) -> None:
        regarding = self._regarding()
        if regarding is None:
            return  # no workload known (yet): nothing to attach the event to
        key = (item.type, item.reason, item.note, str(regarding.get("uid", "")))
        now = self._clock.now()
        recent = sorted(
            ((k, s) for k, s in self._series.items() if now - s.last < SERIES_WINDOW),
            key=lambda item: item[1].last,
        )
        self._series = dict(recent[-SERIES_KEPT:])
        series = self._series.get(key)
        if series is not None:
            series.count += 1
            series.last, series.last_wall = now, item.at
            return  # patched by _flush
        # client-go names an Event `<object>.<UnixNano hex>`; one more nanosecond when two land
        # on the same instant (a virtual clock's).
        stamp = max(int(self._clock.wall().timestamp() * 1e9), self._last_stamp + 1)
        self._last_stamp = stamp
        name = f"{regarding['name']}.{stamp:x}"
        body = {
            "metadata": {"name": name},
            "eventTime": item.at,
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self.instance,
            "action": item.action,
            "reason": item.reason,
            "type": item.type,
            "note": item.note,
            "regarding": regarding,
        }
        attributes: dict[str, str | int] = {
            "presence.kube.event.reason": item.reason,
            "presence.kube.event.type": item.type,
            "presence.kube.event.count": 1,
        }
        with self._tracer.start_as_current_span("presence.kube.event", attributes=attributes):
            if await self._send(self.client.create_event(body)):
                self._series[key] = _Series(name, 1, now, item.at, 1, now)

    async def _flush(self) -> None:
        now = self._clock.now()
        for series in self._series.values():
            if series.count == series.flushed or now - series.flushed_at < self.flush:
                continue
            patch = {"series": {"count": series.count, "lastObservedTime": series.last_wall}}
            with self._tracer.start_as_current_span(
                "presence.kube.event",
                attributes={"presence.kube.event.name": series.name,
                            "presence.kube.event.count": series.count},
            ):  # fmt: skip
                if await self._send(self.client.patch_event(series.name, patch)):
                    series.flushed, series.flushed_at = series.count, now

    async def _send(self, call: Any) -> bool:
        try:
            await call
        except KubeError as exc:
            if str(exc) != self.error:
                event(log, logging.WARNING, "event_error", f"cannot emit an Event: {exc}")
            self.error = str(exc)
            return False
        self.sent += 1
        self.error = None
        return True
