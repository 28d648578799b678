"""The window grammar shared by maintenance annotations, PRESENCE_MAINTENANCE_WINDOWS and
PRESENCE_ONLINE_HOURS (docs/maintenance.md). Pure: `parse(text)` -> Schedule, then
`Schedule.active(at)` and `Schedule.next_change(after)` for timezone-aware datetimes.

Forms, several joined with `;`:
- `true`, `on`, `yes` (always active); `false`, `off`, `no` or empty (never active), alone;
- an RFC 3339 timestamp: active until then;
- an ISO 8601 interval `start/end` or `start/duration` (`2026-12-24T22:00:00+01:00/PT4H`);
- a weekly window `DAYS HH:MM-HH:MM ZONE`: days `Mon`, `Mon-Fri`, `Sat,Sun`, `Fri-Mon` (wraps over
  the week end); an end before the start crosses midnight into the next day; `24:00` ends the day;
  ZONE is an IANA name (`Europe/Berlin`, `UTC`).

Weekly windows follow the local wall clock: a window is active whenever the local time in its zone
(by `zoneinfo`) lies in `[start, end)` on a listed day. On a spring-forward day the skipped local
hour never happens, so `Sun 02:30-03:30 Europe/Berlin` is active 03:00-03:30 CEST only; on an
autumn fall-back day the repeated hour happens twice, so it is active 02:30-03:00 CEST, inactive
02:00-02:30 CET, and active again 02:30-03:30 CET. All windows are half-open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from controller.core.weekly import (
    WEEKDAYS,
    Weekly,
    at_micros,
    clear_caches,
    us,
    weekly_union,
)

__all__ = [
    "LATEST",
    "WEEKDAYS",
    "Always",
    "Interval",
    "Schedule",
    "ScheduleError",
    "Until",
    "Weekly",
    "Window",
    "clear_caches",
]

_CHUNK = 8
"""Days of weekly boundaries gathered per step of the search."""
_QUIET = 16
"""Days past the last absolute boundary after which a weekly pattern can show nothing new: every
weekly window recurs within a week, and a DST gap swallows at most one occurrence a year."""
_FOREVER = datetime.max.replace(tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
"""Timestamps must lie before this, so that adding windows, leads and horizons to them can never
overflow `datetime` (year 9999): `9999-12-31T00:00:00Z/P2D` is refused, not a crash per tick."""


class ScheduleError(ValueError):
    """A window spec could not be parsed; the message names the window and what was expected."""


@dataclass(frozen=True, slots=True)
class Always:
    """`true`: active until the annotation is removed."""

    def __str__(self) -> str:
        return "true"


@dataclass(frozen=True, slots=True)
class Until:
    """An RFC 3339 timestamp: active from now until then."""

    end: datetime

    def __str__(self) -> str:
        return self.end.isoformat()


@dataclass(frozen=True, slots=True)
class Interval:
    """An absolute ISO 8601 interval `[start, end)`."""

    start: datetime
    end: datetime

    def __str__(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


Window = Always | Until | Interval | Weekly


@dataclass(frozen=True, slots=True)
class Schedule:
    """A union of windows. Empty means never active."""

    windows: tuple[Window, ...] = ()

    def __str__(self) -> str:
        return "; ".join(str(w) for w in self.windows) if self.windows else "false"

    def __bool__(self) -> bool:
        return bool(self.windows)

    def active(self, at: datetime) -> Window | None:
        """The first window active at `at` (timezone-aware), or None."""
        _require_aware(at)
        local: dict[str, datetime] = {}  # one conversion per zone, not per window
        for window in self.windows:
            if isinstance(window, Weekly):
                if window.zone not in local:
                    local[window.zone] = at.astimezone(window.tz)
                if window.active_local(local[window.zone]):
                    return window
            elif _window_active(window, at):
                return window
        return None

    def next_change(self, after: datetime) -> datetime | None:
        """The first instant after `after` where `active()` turns from truthy to None or back;
        None if it never changes.

        The search is lazy and its cost independent of how far the spec reaches: it walks
        `_CHUNK`-day slices, jumps over any stretch an absolute window holds active, and stops
        `_QUIET` days after the last absolute boundary, past which weekly windows only repeat.
        Each source (one zone's weekly windows merged into week intervals, each absolute window)
        yields the instants where it turns on or off; a sweep counts the sources active and
        finds where the count leaves or reaches zero.
        """
        _require_aware(after)
        state = self.active(after) is not None
        absolute = [w for w in self.windows if isinstance(w, Until | Interval)]
        union = weekly_union(tuple(w for w in self.windows if isinstance(w, Weekly)))
        if any(zone.full for zone in union.values()):
            return None  # one zone's windows cover its whole week: always active
        boundaries = [t for w in absolute for t in _edges_of(w)]
        last = max([after, *boundaries])
        # Past the last absolute boundary weekly windows repeat each week; only a DST
        # transition can hide one occurrence, so look two weeks ahead only when one comes.
        horizon = last + timedelta(days=_QUIET)
        quiet = _QUIET if any(z.transitions(last, horizon) for z in union.values()) else _CHUNK
        limit = last + timedelta(days=quiet)
        start, after_us = after, us(after)
        while start < limit:
            held = self._held_until(start)
            if held is _FOREVER:
                return None  # `true` is active and never ends
            if held is not None and held > start:
                # An absolute window keeps the union active until `held`: nothing to see there.
                if (self.active(held) is not None) is not state:
                    return held
                start = held
                continue
            stop = start + timedelta(days=_CHUNK)
            count = sum(_window_active(w, start) for w in absolute)
            flips = [(us(t), d) for w in absolute for t, d in _flips_of(w) if start < t < stop]
            for zone in union.values():
                count += zone.active(start)
                flips += zone.flips(us(start), us(stop))
            if (count > 0) is not state and start > after:
                return start  # the change fell exactly on the previous slice's end
            flips.sort()  # integer microseconds: sorting ~1500 of them costs ~0.3 ms
            for index, (instant, delta) in enumerate(flips):
                count += delta
                simultaneous = index + 1 < len(flips) and flips[index + 1][0] == instant
                if not simultaneous and instant > after_us and (count > 0) is not state:
                    return at_micros(instant)
            start = stop
        return None

    def _held_until(self, at: datetime) -> datetime | None:
        """The latest end among the absolute windows active at `at` (`_FOREVER` for `true`)."""
        held: datetime | None = None
        for window in self.windows:
            if isinstance(window, Always):
                return _FOREVER
            end = window.end if isinstance(window, Until | Interval) else None
            if end is not None and _window_active(window, at) and (held is None or end > held):
                held = end
        return held

    def activations(
        self, after: datetime, count: int
    ) -> list[tuple[datetime, datetime | None, Window]]:
        return activations(self, after, count)


class Activity(Protocol):
    """What is active when, and when that changes: a Schedule, or online hours with holidays."""

    def active(self, at: datetime) -> Window | None: ...

    def next_change(self, after: datetime) -> datetime | None: ...


def activations(
    source: Activity, after: datetime, count: int
) -> list[tuple[datetime, datetime | None, Window]]:
    """The next `count` periods of activity from `after`: (start, end or None, the window
    active at the start). A period already running at `after` starts at `after`."""
    out: list[tuple[datetime, datetime | None, Window]] = []
    start: datetime | None = after
    while start is not None and len(out) < count:
        window = source.active(start)
        if window is None:
            start = source.next_change(start)
            continue
        end = source.next_change(start)
        out.append((start, end, window))
        start = source.next_change(end) if end is not None else None
    return out


def _window_active(window: Window, at: datetime) -> bool:
    if isinstance(window, Always):
        return True
    if isinstance(window, Until):
        return at < window.end
    if isinstance(window, Interval):
        return window.start <= at < window.end
    return window.active_local(at.astimezone(window.tz))


def _edges_of(window: Until | Interval) -> tuple[datetime, ...]:
    return tuple(instant for instant, _ in _flips_of(window))


def _flips_of(window: Until | Interval) -> tuple[tuple[datetime, int], ...]:
    """Where an absolute window turns on (+1) and off (-1)."""
    if isinstance(window, Until):
        return ((window.end, -1),)
    return ((window.start, 1), (window.end, -1))


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("schedule times must be timezone-aware")
