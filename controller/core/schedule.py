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

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import TypeAdapter, ValidationError

from controller.core.excerpt import quote

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
TRUE_WORDS = frozenset({"true", "on", "yes"})
FALSE_WORDS = frozenset({"false", "off", "no", ""})
_DAY_INDEX = {name.lower(): i for i, name in enumerate(WEEKDAYS)}
_WEEKLY = re.compile(r"(?P<days>[A-Za-z][A-Za-z,\- ]*?)\s+(?P<times>\S+)(?:\s+(?P<zone>\S+))?")
_CLOCK = re.compile(r"(?P<h>\d{1,2}):(?P<m>\d{2})")
_DAY_SECONDS = 86400
_CALENDAR_UNITS = re.compile(r"P[^T]*[YM]")
_NOON = time(12)
_CHUNK = 8
"""Days of weekly boundaries gathered per step of the search."""
_QUIET = 16
"""Days past the last absolute boundary after which a weekly pattern can show nothing new: every
weekly window recurs within a week, and a DST gap swallows at most one occurrence a year."""
_FOREVER = datetime.max.replace(tzinfo=UTC)
MAX_SPEC_CHARS = 4096
"""A window spec longer than this is refused: evaluation cost and every message stay bounded."""
MAX_WINDOWS = 50
"""Windows per spec (`;`-separated); a week of distinct windows per day fits easily."""
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
"""Timestamps must lie before this, so that adding windows, leads and horizons to them can never
overflow `datetime` (year 9999): `9999-12-31T00:00:00Z/P2D` is refused, not a crash per tick."""


@functools.cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@functools.cache
def _duration_adapter() -> TypeAdapter[timedelta]:
    """pydantic's ISO 8601 duration parser, built on first use (it costs ~10 ms at import)."""
    return TypeAdapter(timedelta)


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


@dataclass(frozen=True, slots=True)
class Weekly:
    """A weekly window on the local wall clock of `zone`: `[start, end)` seconds after midnight
    on each of `days` (0 = Monday); `end <= start` crosses midnight into the next day."""

    days: frozenset[int]
    start: int
    end: int
    zone: str

    @property
    def tz(self) -> ZoneInfo:
        return _zone(self.zone)

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def __str__(self) -> str:
        return f"{_format_days(self.days)} {_clock(self.start)}-{_clock(self.end)} {self.zone}"

    def active_local(self, local: datetime) -> bool:
        seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        day = local.weekday()
        if not self.crosses_midnight:
            return day in self.days and self.start <= seconds < self.end
        return (day in self.days and seconds >= self.start) or (
            (day - 1) % 7 in self.days and seconds < self.end
        )

    def boundaries(self, day: date, folds: bool = True) -> Iterator[tuple[datetime, str]]:
        """The UTC instants where this window may start or end for the occurrence on `day`,
        each with its edge ("start" or "end"). `folds`: also the second instant of a local time
        that repeats (only needed on days when the zone's offset changes)."""
        if day.weekday() not in self.days:
            return
        end_day = (
            day + timedelta(days=1) if self.crosses_midnight or self.end == _DAY_SECONDS else day
        )
        both = ((day, self.start, "start"), (end_day, self.end % _DAY_SECONDS, "end"))
        # Away from an offset change the day has one UTC offset: plain arithmetic will do.
        offset = None if folds else self.tz.utcoffset(datetime.combine(day, _NOON))
        for when, seconds, edge in both:
            clock = time(seconds // 3600, seconds % 3600 // 60)
            if offset is not None:
                yield datetime.combine(when, clock, tzinfo=UTC) - offset, edge
                continue
            local = datetime.combine(when, clock, tzinfo=self.tz)
            for fold in (0, 1):  # both instants of a repeated local time are crossings
                yield local.replace(fold=fold).astimezone(UTC), edge


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
        `_CHUNK`-day slices of weekly boundaries and DST transitions (once per zone), jumps over
        any stretch an absolute window holds active, and stops `_QUIET` days after the last
        absolute boundary, past which weekly windows only repeat.
        """
        _require_aware(after)
        state = self.active(after) is not None
        absolute = sorted(t for t in self._absolute_boundaries() if t > after)
        weekly = [w for w in self.windows if isinstance(w, Weekly)]
        zones = sorted({w.zone for w in weekly})
        last = max(after, absolute[-1]) if absolute else after
        # Past the last absolute boundary weekly windows repeat each week; only a DST
        # transition can hide one occurrence, so look two weeks ahead only when one comes.
        quiet = (
            _QUIET
            if any(_transitions(_zone(z), last, last + timedelta(days=_QUIET)) for z in zones)
            else _CHUNK
        )
        limit = last + timedelta(days=quiet)
        # Until the first change the union stays in `state`: only the edges that can leave it
        # (ends while active, starts while not), DST transitions and absolute boundaries count.
        edges = "end" if state else "start"
        # Which windows start where: at an end, the window that takes over usually starts at
        # that very instant, so it is asked first (a cheap answer for the common case).
        starting: dict[datetime, list[Weekly]] = {}
        start = after
        while start <= limit:
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
            candidates = {t for t in absolute if start <= t < stop}
            shifting: dict[str, set[date]] = {}  # local days around each offset change
            for zone in zones:
                changes = list(_transitions(_zone(zone), start - timedelta(days=2), stop))
                candidates.update(c for c in changes if c >= start)
                shifting[zone] = {
                    (c.astimezone(_zone(zone)) + timedelta(days=d)).date()
                    for c in changes
                    for d in (-1, 0, 1)
                }
            for window in weekly:
                first = start.astimezone(window.tz).date() - timedelta(days=1)
                for offset in range(_CHUNK + 3):
                    day = first + timedelta(days=offset)
                    folds = day in shifting[window.zone]
                    for instant, edge in window.boundaries(day, folds):
                        if edge == edges:
                            candidates.add(instant)
                        if edge == "start":
                            starting.setdefault(instant, []).append(window)
            for candidate in sorted(c for c in candidates if after < c and start <= c < stop):
                starts_here = any(
                    w.active_local(candidate.astimezone(w.tz)) for w in starting.get(candidate, ())
                )
                if (starts_here or self.active(candidate) is not None) is not state:
                    return candidate
            start = stop
        return None

    def _absolute_boundaries(self) -> Iterator[datetime]:
        for window in self.windows:
            if isinstance(window, Until):
                yield window.end
            elif isinstance(window, Interval):
                yield from (window.start, window.end)

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
        """The next `count` periods of activity from `after`: (start, end or None, the window
        active at the start). A period already running at `after` starts at `after`."""
        out: list[tuple[datetime, datetime | None, Window]] = []
        start: datetime | None = after
        while start is not None and len(out) < count:
            window = self.active(start)
            if window is None:
                start = self.next_change(start)
                continue
            end = self.next_change(start)
            out.append((start, end, window))
            start = self.next_change(end) if end is not None else None
        return out


def _window_active(window: Window, at: datetime) -> bool:
    if isinstance(window, Always):
        return True
    if isinstance(window, Until):
        return at < window.end
    if isinstance(window, Interval):
        return window.start <= at < window.end
    return window.active_local(at.astimezone(window.tz))


def _transitions(tz: ZoneInfo, start: datetime, end: datetime) -> Iterator[datetime]:
    """The UTC instants in [start, end] where the zone's UTC offset changes (DST), to the second."""

    def offset(second: int) -> timedelta | None:
        return datetime.fromtimestamp(second, tz).utcoffset()

    step = 6 * 3600
    t, stop = int(start.timestamp()), int(end.timestamp()) + 1
    while t < stop:
        if offset(t) != offset(t + step):
            low, high = t, t + step  # offsets change on whole seconds: search the first new one
            while high - low > 1:
                mid = (low + high) // 2
                low, high = (mid, high) if offset(mid) == offset(low) else (low, mid)
            yield datetime.fromtimestamp(high, UTC)
        t += step


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("schedule times must be timezone-aware")


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def _format_days(days: frozenset[int]) -> str:
    """Canonical day list: runs of three or more as ranges (`Mon-Fri`, `Fri-Mon` over the week
    end), shorter ones listed (`Sat,Sun`)."""
    if len(days) == 7:
        return "Mon-Sun"
    first = next(d for d in range(7) if (d - 1) % 7 not in days and d in days)
    ordered = [(first + k) % 7 for k in range(7) if (first + k) % 7 in days]
    runs: list[list[int]] = []
    for day in ordered:
        if runs and (runs[-1][-1] + 1) % 7 == day:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{WEEKDAYS[run[0]]}-{WEEKDAYS[run[-1]]}")
        else:
            parts += [WEEKDAYS[d] for d in run]
    return ",".join(parts)


# Parsing.


def parse(text: str) -> Schedule:
    """Parse a window spec; a ScheduleError names the offending window and what was expected."""
    whole = text.strip()
    if whole.lower() in FALSE_WORDS:
        return Schedule()
    if whole.lower() in TRUE_WORDS:
        return Schedule((Always(),))
    if len(whole) > MAX_SPEC_CHARS:
        raise ScheduleError(
            f"a window spec holds at most {MAX_SPEC_CHARS} characters, this one {len(whole)}"
        )
    windows: list[Window] = []
    parts = whole.split(";")
    if len(parts) > MAX_WINDOWS:
        raise ScheduleError(
            f"a window spec holds at most {MAX_WINDOWS} windows, this one {len(parts)}: "
            "merge adjacent days into ranges (Mon-Fri)"
        )
    for index, raw in enumerate(parts, 1):
        part = raw.strip()
        where = f"window {index} of {len(parts)}" if len(parts) > 1 else "window"
        if not part:
            raise ScheduleError(f"{where} is empty: remove the extra ';'")
        try:
            windows.append(_parse_window(part))
        except ScheduleError as exc:
            raise ScheduleError(f"{where} {quote(part)}: {exc}") from None
    return Schedule(tuple(windows))


def _parse_window(text: str) -> Window:
    lowered = text.lower()
    if lowered in TRUE_WORDS or lowered in FALSE_WORDS:
        raise ScheduleError(f"{quote(text)} must stand alone, not joined with other windows")
    if text[0].isalpha():  # weekly windows start with a day; timestamps with a digit
        return _parse_weekly(text)
    if "/" in text:
        return _parse_interval(text)
    other_forms = ", a weekly window like 'Sat 02:00-04:00 Europe/Berlin', or true/false"
    return Until(_parse_timestamp(text, "an RFC 3339 timestamp", other_forms))


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp with a UTC offset (as in `force-until`)."""
    return _parse_timestamp(text, "an RFC 3339 timestamp")


def _parse_timestamp(text: str, what: str, other_forms: str = "") -> datetime:
    """`other_forms` lists what else would have been accepted where the timestamp stood."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ScheduleError(
            f"expected {what} like 2026-12-24T22:00:00Z or 2026-12-24T22:00:00+01:00{other_forms}"
        ) from None
    if when.tzinfo is None:
        raise ScheduleError(f"timestamp {quote(text)} needs a UTC offset such as Z or +01:00")
    _check_range(when)
    return when


def _check_range(when: datetime) -> None:
    try:
        late = when.astimezone(UTC) >= LATEST
    except OverflowError:
        late = True
    if late:
        raise ScheduleError(f"timestamps must lie before {LATEST:%Y-%m-%d}")


def _parse_interval(text: str) -> Interval:
    first, _, second = text.partition("/")
    start = _parse_timestamp(first.strip(), "an ISO 8601 interval start")
    second = second.strip()
    if second[:1].upper() == "P":
        if _CALENDAR_UNITS.match(second.upper()):
            raise ScheduleError(
                f"duration {quote(second)} uses months or years, which vary in length: "
                "use days (P30D)"
            )
        try:
            length = _duration_adapter().validate_python(second.upper())
        except ValidationError:
            raise ScheduleError(
                f"invalid ISO 8601 duration {quote(second)}: expected e.g. PT4H, PT30M or P1DT2H "
                "(no months or years)"
            ) from None
        try:
            end = start + length
        except OverflowError:
            raise ScheduleError(f"timestamps must lie before {LATEST:%Y-%m-%d}") from None
        _check_range(end)
    else:
        end = _parse_timestamp(second, "an ISO 8601 interval end or a duration like PT4H")
    if end <= start:
        raise ScheduleError("the interval ends before it starts")
    return Interval(start, end)


def _parse_weekly(text: str) -> Weekly:
    match = _WEEKLY.fullmatch(text)
    if match is None:
        raise ScheduleError("expected a weekly window like 'Mon-Fri 22:00-06:00 Europe/Berlin'")
    days = _parse_days(match["days"])
    start_text, sep, end_text = match["times"].partition("-")
    if not sep:
        raise ScheduleError(f"expected a time range HH:MM-HH:MM, got {quote(match['times'])}")
    start = _parse_clock(start_text, allow_24=False)
    end = _parse_clock(end_text, allow_24=True)
    if start == end:
        raise ScheduleError(
            f"the window {start_text}-{end_text} is empty: use 00:00-24:00 for a whole day"
        )
    zone = match["zone"]
    if zone is None:
        raise ScheduleError("expected a time zone after the times, e.g. UTC or Europe/Berlin")
    try:
        if len(zone) > 64:  # the longest IANA name has 32 characters
            raise ValueError(zone)
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a path
        raise ScheduleError(
            f"unknown time zone {quote(zone)}: expected an IANA name such as UTC or Europe/Berlin"
        ) from None
    return Weekly(days, start, end, zone)


def _parse_days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for token in (t.strip() for t in text.split(",")):
        first, sep, last = token.partition("-")
        a = _day(first)
        b = _day(last) if sep else a
        days.update((a + k) % 7 for k in range((b - a) % 7 + 1))
    return frozenset(days)


def _day(token: str) -> int:
    index = _DAY_INDEX.get(token.strip().lower())
    if index is None:
        raise ScheduleError(f"unknown day {quote(token.strip())}: expected {', '.join(WEEKDAYS)}")
    return index


def _parse_clock(text: str, *, allow_24: bool) -> int:
    match = _CLOCK.fullmatch(text)
    if match is not None:
        hours, minutes = int(match["h"]), int(match["m"])
        if (hours < 24 and minutes < 60) or (allow_24 and hours == 24 and minutes == 0):
            return hours * 3600 + minutes * 60
    limit = "00:00 to 24:00" if allow_24 else "00:00 to 23:59"
    raise ScheduleError(f"invalid time {quote(text)}: expected HH:MM from {limit}")
