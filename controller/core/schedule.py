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

import bisect
import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
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
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = _EPOCH.toordinal()
_MICRO = timedelta(microseconds=1)
_DAY_MICROS = _DAY_SECONDS * 10**6
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
        union = _weekly_union(tuple(w for w in self.windows if isinstance(w, Weekly)))
        if any(zone.full for zone in union.values()):
            return None  # one zone's windows cover its whole week: always active
        boundaries = [t for w in absolute for t in _edges_of(w)]
        last = max([after, *boundaries])
        # Past the last absolute boundary weekly windows repeat each week; only a DST
        # transition can hide one occurrence, so look two weeks ahead only when one comes.
        horizon = last + timedelta(days=_QUIET)
        quiet = _QUIET if any(z.transitions(last, horizon) for z in union.values()) else _CHUNK
        limit = last + timedelta(days=quiet)
        start, after_us = after, _us(after)
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
            flips = [(_us(t), d) for w in absolute for t, d in _flips_of(w) if start < t < stop]
            for zone in union.values():
                count += zone.active(start)
                flips += zone.flips(_us(start), _us(stop))
            if (count > 0) is not state and start > after:
                return start  # the change fell exactly on the previous slice's end
            flips.sort()  # integer microseconds: sorting ~1500 of them costs ~0.3 ms
            for index, (instant, delta) in enumerate(flips):
                count += delta
                simultaneous = index + 1 < len(flips) and flips[index + 1][0] == instant
                if not simultaneous and instant > after_us and (count > 0) is not state:
                    return _at(instant)
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


_WEEK_SECONDS = 7 * _DAY_SECONDS


def _edges_of(window: Until | Interval) -> tuple[datetime, ...]:
    return tuple(instant for instant, _ in _flips_of(window))


def _flips_of(window: Until | Interval) -> tuple[tuple[datetime, int], ...]:
    """Where an absolute window turns on (+1) and off (-1)."""
    if isinstance(window, Until):
        return ((window.end, -1),)
    return ((window.start, 1), (window.end, -1))


@dataclass(frozen=True, slots=True)
class _ZoneUnion:
    """The union of one zone's weekly windows. Whether they are active is a function of the
    local wall clock only, so the union is one sorted list of disjoint week intervals (seconds
    after Monday 00:00 local): adjacent and overlapping windows leave no edge between them."""

    zone: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    edges: tuple[tuple[tuple[int, int], ...], ...]
    """By local weekday, (microseconds after midnight, +1 where the union starts, -1 where it
    ends)."""

    @property
    def full(self) -> bool:
        return self.starts == (0,) and self.ends == (_WEEK_SECONDS,)

    def active(self, at: datetime) -> bool:
        local = at.astimezone(_zone(self.zone))
        second = (
            local.weekday() * _DAY_SECONDS
            + local.hour * 3600
            + local.minute * 60
            + local.second
            + local.microsecond / 1e6
        )
        index = bisect.bisect_right(self.starts, second) - 1
        return index >= 0 and second < self.ends[index]

    def transitions(self, start: datetime, stop: datetime) -> list[datetime]:
        return _transitions(self.zone, start, stop)

    def flips(self, start: int, stop: int) -> list[tuple[int, int]]:
        """(instant, +1 on / -1 off) for each instant in (start, stop), all in microseconds
        since the epoch, where the union turns on or off: its edges on the local wall clock
        (both instants of a repeated local time) and the zone's offset changes (a skipped hour
        can jump over an edge)."""
        tz = _zone(self.zone)
        changes = _transitions(self.zone, _at(start) - timedelta(days=2), _at(stop))
        # Days around an offset change may hold a repeated or skipped local time; on the
        # others the day has one UTC offset and plain arithmetic will do.
        shifting = {
            (c.astimezone(tz) + timedelta(days=d)).date() for c in changes for d in (-1, 0, 1)
        }
        # (instant, +1 or -1) where the edge is known to flip; 0 where it must be checked.
        candidates = [(_us(c), 0) for c in changes]
        # The local days that hold the instants of (start, stop).
        first = _at(start).astimezone(tz).date()
        for offset in range((_at(stop).astimezone(tz).date() - first).days + 1):
            day = first + timedelta(days=offset)
            edges = self.edges[day.weekday()]
            if not edges:
                continue
            if day not in shifting:  # one offset all day: each edge of the union is a flip
                utc_offset = tz.utcoffset(datetime.combine(day, _NOON)) or timedelta()
                midnight = (day.toordinal() - _EPOCH_DAY) * _DAY_MICROS - utc_offset // _MICRO
                candidates += [(midnight + micros, delta) for micros, delta in edges]
                continue
            for micros, delta in edges:
                local = datetime.combine(day, time(), tzinfo=tz) + timedelta(microseconds=micros)
                first_fold = _us(local.astimezone(UTC))
                second_fold = _us(local.replace(fold=1).astimezone(UTC))
                if first_fold == second_fold:  # a local time that happens once: a plain flip
                    candidates.append((first_fold, delta))
                else:  # skipped or repeated: either instant may be a crossing, or neither
                    candidates += [(first_fold, 0), (second_fold, 0)]
        out: list[tuple[int, int]] = []
        was = self.active(_at(start))
        for candidate, delta in sorted(c for c in candidates if start < c[0] < stop):
            now = delta > 0 if delta else self.active(_at(candidate))
            if now is not was:
                out.append((candidate, 1 if now else -1))
                was = now
        return out


@functools.lru_cache(maxsize=256)
def _weekly_union(windows: tuple[Weekly, ...]) -> dict[str, _ZoneUnion]:
    """Per zone, the union of its weekly windows (cached: a schedule is asked again and again)."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for window in windows:
        length = (window.end - window.start) % _DAY_SECONDS or _DAY_SECONDS
        for day in window.days:
            begin = day * _DAY_SECONDS + window.start
            end = begin + length
            if end > _WEEK_SECONDS:  # past Sunday midnight: the rest is on Monday
                spans.setdefault(window.zone, []).append((0, end - _WEEK_SECONDS))
                end = _WEEK_SECONDS
            spans.setdefault(window.zone, []).append((begin, end))
    out: dict[str, _ZoneUnion] = {}
    for zone, pieces in spans.items():
        merged: list[list[int]] = []
        for begin, end in sorted(pieces):
            if merged and begin <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([begin, end])
        edges = [(b, 1) for b, _ in merged] + [(e % _WEEK_SECONDS, -1) for _, e in merged]
        if merged[0][0] == 0 and merged[-1][1] == _WEEK_SECONDS:
            # Active over Sunday midnight: no edge there.
            edges = [edge for edge in edges if edge[0] != 0]
        by_day: list[list[tuple[int, int]]] = [[] for _ in WEEKDAYS]
        for second, delta in sorted(edges):
            by_day[second // _DAY_SECONDS].append((second % _DAY_SECONDS * 10**6, delta))
        out[zone] = _ZoneUnion(
            zone,
            tuple(b for b, _ in merged),
            tuple(e for _, e in merged),
            tuple(tuple(day) for day in by_day),
        )
    return out


def _transitions(zone: str, start: datetime, end: datetime) -> list[datetime]:
    """The UTC instants in [start, end] where the zone's UTC offset changes (DST)."""
    years = range(start.astimezone(UTC).year, end.astimezone(UTC).year + 1)
    return [t for year in years for t in _transitions_in(zone, year) if start <= t <= end]


@functools.lru_cache(maxsize=1024)
def _transitions_in(zone: str, year: int) -> tuple[datetime, ...]:
    """The UTC instants in `year` (UTC) where the zone's offset changes, to the second; zoneinfo
    has no public API for its transitions, so they are searched (~1 ms per zone and year)."""
    tz = _zone(zone)

    def offset(second: int) -> timedelta | None:
        return datetime.fromtimestamp(second, tz).utcoffset()

    # Day steps, resumed just after each change found: two changes are missed only if they
    # fall within one day and cancel out, which no zone does.
    t = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    stop = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    out = []
    current = offset(t)
    while t < stop:
        step = min(_DAY_SECONDS, stop - t)
        if offset(t + step) == current:
            t += step
            continue
        low, high = t, t + step  # offsets change on whole seconds: search the first new one
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if offset(mid) == current else (low, mid)
        out.append(datetime.fromtimestamp(high, UTC))
        t, current = high, offset(high)
    return tuple(out)


def clear_caches() -> None:
    """Forget the cached zone unions and DST transitions (benchmarks measure a first call)."""
    _weekly_union.cache_clear()
    _transitions_in.cache_clear()


def _us(at: datetime) -> int:
    """Microseconds since the epoch: exact, and far cheaper to sort than datetimes."""
    return (at - _EPOCH) // _MICRO


def _at(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


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
