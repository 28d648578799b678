"""The maintenance calendar (`PRESENCE_MAINTENANCE_CALENDAR`, docs/maintenance.md): an iCalendar
file whose events are maintenance windows, each named by its SUMMARY.

`expand()` reads the file's bytes (icalendar) and lists its occurrences from an instant to a
horizon (recurring-ical-events: RRULE, RDATE, EXDATE, RECURRENCE-ID, time zones; floating times
and all-day events in the calendar's `X-WR-TIMEZONE`, else UTC), within bounds on size, events
and occurrences. It is the costly part and runs in a worker process whose CPU is capped
(sources/calendar.py): an RRULE can ask for an unbounded search. `near()` is the cheap part, done
at each evaluation: the occurrences that matter at one instant, found by bisection.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

MAX_BYTES = 1024 * 1024
"""A calendar larger than 1 MiB is refused (a ConfigMap holds at most 1 MiB anyway)."""
MAX_EVENTS = 2000
"""VEVENTs in the file (series and their exceptions)."""
MAX_OCCURRENCES = 5000
"""Occurrences kept from the expansion; past them the expansion stops (and says where)."""
HORIZON = timedelta(days=92)
"""How far ahead occurrences are listed (a quarter: the next quarterly window is known)."""
SUMMARY_CHARS = 200
NEAR = timedelta(days=2)
"""`near()` hands the evaluation every occurrence starting within this much of the instant, and
the next one after them (the next window, however far)..."""
NEAR_MOST = 64
"""...but no more than this many (the evaluation is redone when the next one starts)."""


class CalendarError(ValueError):
    """The file cannot be read as a calendar within the bounds; the message says why."""


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One maintenance window of the calendar, `[start, end)` in UTC."""

    start: datetime
    end: datetime
    summary: str

    def __str__(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


@dataclass(frozen=True, slots=True)
class Expansion:
    """The calendar's occurrences in `[since, until)`, sorted by start."""

    occurrences: tuple[Occurrence, ...]
    since: datetime
    until: datetime
    """The end of what was listed: the horizon, or the start of the first occurrence past
    MAX_OCCURRENCES. Expand again before then."""
    events: int
    starts: tuple[datetime, ...] = field(init=False, repr=False, compare=False)
    latest_ends: tuple[datetime, ...] = field(init=False, repr=False, compare=False)
    """The latest end of the occurrences so far (by start), for near()'s bisection."""

    def __post_init__(self) -> None:
        ends: list[datetime] = []
        for o in self.occurrences:
            ends.append(max(o.end, ends[-1]) if ends else o.end)
        object.__setattr__(self, "starts", tuple(o.start for o in self.occurrences))
        object.__setattr__(self, "latest_ends", tuple(ends))

    def near(self, at: datetime) -> tuple[tuple[Occurrence, ...], datetime]:
        """The occurrences active at `at` or starting within NEAR of it (NEAR_MOST at most),
        and when the evaluation must be redone: the first one left out starts, or the listing
        runs out."""
        first = bisect.bisect_right(self.latest_ends, at)  # all before it ended by `at`
        last = bisect.bisect_left(self.starts, at + NEAR)
        wanted = [o for o in self.occurrences[first:last] if o.end > at]
        refresh = [self.until]
        if len(wanted) >= NEAR_MOST:
            refresh += [o.start for o in wanted[NEAR_MOST:] if o.start > at][:1]
            if last < len(self.starts):
                refresh.append(self.starts[last])
        elif last < len(self.starts):  # and the next one after them, however far
            wanted.append(self.occurrences[last])
            refresh += self.starts[last + 1 : last + 2]
        return tuple(wanted[:NEAR_MOST]), min(refresh)


def expand(data: bytes, since: datetime, horizon: timedelta = HORIZON) -> Expansion:
    """The occurrences of the calendar `data` overlapping `[since, since + horizon)`."""
    import icalendar
    import recurring_ical_events

    if len(data) > MAX_BYTES:
        raise CalendarError(f"{len(data)} bytes: at most {MAX_BYTES}")
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise CalendarError(f"not an iCalendar file: {_short(exc)}") from None
    if not isinstance(calendar, icalendar.Calendar):
        raise CalendarError("not an iCalendar file: no VCALENDAR")
    events = len(calendar.walk("VEVENT"))
    if events > MAX_EVENTS:
        raise CalendarError(f"{events} events: at most {MAX_EVENTS}")
    zone = _default_zone(calendar)
    until = since + horizon
    found: set[Occurrence] = set()
    low, days = since, 1
    try:
        query = recurring_ical_events.of(calendar)
        # Slices that double in length (1, 2, 4, ... days): `between` costs one pass over the
        # events per slice (linear; `after` is quadratic in events), and an endless series stops
        # within a slice of reaching the cap.
        while low < until and len(found) <= MAX_OCCURRENCES:
            high = min(low + timedelta(days=days), until)
            for event in query.between(low, high):
                occurrence = _occurrence(event, zone)
                if occurrence.end > since and occurrence.end > occurrence.start:
                    found.add(occurrence)
            low, days = high, days * 2
    except CalendarError:
        raise
    except Exception as exc:  # the libraries' errors on a bad series, a bad zone, a bad date
        raise CalendarError(f"cannot expand its events: {_short(exc)}") from None
    listed = sorted(found, key=lambda o: (o.start, o.end, o.summary))
    if len(listed) > MAX_OCCURRENCES:
        until = listed[MAX_OCCURRENCES].start
        listed = [o for o in listed if o.start < until]
    else:
        until = min(until, low)
    return Expansion(tuple(listed), since, until, events)


def _default_zone(calendar: Any) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = str(calendar.get("X-WR-TIMEZONE", "") or "")
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        raise CalendarError(f"unknown X-WR-TIMEZONE {name[:40]!r}") from None


def _occurrence(event: Any, zone: Any) -> Occurrence:
    start = _instant(event.get("DTSTART"), zone, "DTSTART")
    if event.get("DTEND") is not None:
        end = _instant(event.get("DTEND"), zone, "DTEND")
    elif event.get("DURATION") is not None:
        end = start + event.get("DURATION").dt
    elif isinstance(event.get("DTSTART").dt, datetime):
        end = start  # RFC 5545: an instant, no window (dropped)
    else:
        end = start + timedelta(days=1)  # an all-day event lasts the day
    summary = " ".join(str(event.get("SUMMARY", "") or "").split())[:SUMMARY_CHARS]
    return Occurrence(start, end, summary or "maintenance (calendar event without a summary)")


def _instant(prop: Any, zone: Any, name: str) -> datetime:
    value = prop.dt if prop is not None else None
    if isinstance(value, datetime):
        at = value if value.tzinfo is not None else value.replace(tzinfo=zone)
    elif isinstance(value, date):
        at = datetime.combine(value, time(0), zone)
    else:
        raise CalendarError(f"an event without a valid {name}")
    return at.astimezone(UTC)


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"


def to_json(expansion: Expansion) -> dict[str, Any]:
    """The expansion as the worker process hands it over."""
    return {
        "since": expansion.since.isoformat(),
        "until": expansion.until.isoformat(),
        "events": expansion.events,
        "occurrences": [
            [o.start.isoformat(), o.end.isoformat(), o.summary] for o in expansion.occurrences
        ],
    }


def from_json(body: Any) -> Expansion:
    """The worker's answer; raises CalendarError on anything else."""
    try:
        occurrences = tuple(
            Occurrence(datetime.fromisoformat(s), datetime.fromisoformat(e), str(t))
            for s, e, t in body["occurrences"][:MAX_OCCURRENCES]
        )
        return Expansion(
            occurrences,
            datetime.fromisoformat(body["since"]),
            datetime.fromisoformat(body["until"]),
            int(body["events"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CalendarError(f"unreadable answer from the calendar worker: {_short(exc)}") from None


@dataclass(frozen=True, slots=True)
class Near:
    """What the evaluation at one instant takes from the calendar (CalendarFile.windows)."""

    occurrences: tuple[Occurrence, ...] = ()
    refresh: datetime | None = None
    """Evaluate again by then (the next occurrence left out starts, or the listing runs out)."""
    error: str | None = None
    """Set when the calendar cannot be used: maintenance fails closed."""
