"""Weekly windows (`DAYS HH:MM-HH:MM ZONE`) on the local wall clock of their zone, and the union
of one zone's weekly windows as instants where it turns on or off, across DST changes (the
search `Schedule.next_change` sweeps over). Pure."""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DAY_SECONDS = 86400
WEEK_SECONDS = 7 * DAY_SECONDS
_NOON = time(12)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = _EPOCH.toordinal()
_MICRO = timedelta(microseconds=1)
_DAY_MICROS = DAY_SECONDS * 10**6


@functools.cache
def zone_info(name: str) -> ZoneInfo:
    return ZoneInfo(name)


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
        return zone_info(self.zone)

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def __str__(self) -> str:
        return (
            f"{format_days(self.days)} {clock_text(self.start)}-{clock_text(self.end)} {self.zone}"
        )

    def active_local(self, local: datetime) -> bool:
        seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        day = local.weekday()
        if not self.crosses_midnight:
            return day in self.days and self.start <= seconds < self.end
        return (day in self.days and seconds >= self.start) or (
            (day - 1) % 7 in self.days and seconds < self.end
        )


@dataclass(frozen=True, slots=True)
class ZoneUnion:
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
        return self.starts == (0,) and self.ends == (WEEK_SECONDS,)

    def active(self, at: datetime) -> bool:
        local = at.astimezone(zone_info(self.zone))
        second = (
            local.weekday() * DAY_SECONDS
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
        tz = zone_info(self.zone)
        changes = _transitions(self.zone, at_micros(start) - timedelta(days=2), at_micros(stop))
        # Days around an offset change may hold a repeated or skipped local time; on the
        # others the day has one UTC offset and plain arithmetic will do.
        shifting = {
            (c.astimezone(tz) + timedelta(days=d)).date() for c in changes for d in (-1, 0, 1)
        }
        # (instant, +1 or -1) where the edge is known to flip; 0 where it must be checked.
        candidates = [(us(c), 0) for c in changes]
        # The local days that hold the instants of (start, stop).
        first = at_micros(start).astimezone(tz).date()
        for offset in range((at_micros(stop).astimezone(tz).date() - first).days + 1):
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
                first_fold = us(local.astimezone(UTC))
                second_fold = us(local.replace(fold=1).astimezone(UTC))
                if first_fold == second_fold:  # a local time that happens once: a plain flip
                    candidates.append((first_fold, delta))
                else:  # skipped or repeated: either instant may be a crossing, or neither
                    candidates += [(first_fold, 0), (second_fold, 0)]
        out: list[tuple[int, int]] = []
        was = self.active(at_micros(start))
        for candidate, delta in sorted(c for c in candidates if start < c[0] < stop):
            now = delta > 0 if delta else self.active(at_micros(candidate))
            if now is not was:
                out.append((candidate, 1 if now else -1))
                was = now
        return out


@functools.lru_cache(maxsize=256)
def weekly_union(windows: tuple[Weekly, ...]) -> dict[str, ZoneUnion]:
    """Per zone, the union of its weekly windows (cached: a schedule is asked again and again)."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for window in windows:
        length = (window.end - window.start) % DAY_SECONDS or DAY_SECONDS
        for day in window.days:
            begin = day * DAY_SECONDS + window.start
            end = begin + length
            if end > WEEK_SECONDS:  # past Sunday midnight: the rest is on Monday
                spans.setdefault(window.zone, []).append((0, end - WEEK_SECONDS))
                end = WEEK_SECONDS
            spans.setdefault(window.zone, []).append((begin, end))
    out: dict[str, ZoneUnion] = {}
    for name, pieces in spans.items():
        merged: list[list[int]] = []
        for begin, end in sorted(pieces):
            if merged and begin <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([begin, end])
        edges = [(b, 1) for b, _ in merged] + [(e % WEEK_SECONDS, -1) for _, e in merged]
        if merged[0][0] == 0 and merged[-1][1] == WEEK_SECONDS:
            # Active over Sunday midnight: no edge there.
            edges = [edge for edge in edges if edge[0] != 0]
        by_day: list[list[tuple[int, int]]] = [[] for _ in WEEKDAYS]
        for second, delta in sorted(edges):
            by_day[second // DAY_SECONDS].append((second % DAY_SECONDS * 10**6, delta))
        out[name] = ZoneUnion(
            name,
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
    tz = zone_info(zone)

    def offset(second: int) -> timedelta | None:
        return datetime.fromtimestamp(second, tz).utcoffset()

    # Day steps, resumed just after each change found: two changes are missed only if they
    # fall within one day and cancel out, which no zone does.
    t = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    stop = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    out = []
    current = offset(t)
    while t < stop:
        step = min(DAY_SECONDS, stop - t)
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
    weekly_union.cache_clear()
    _transitions_in.cache_clear()


def us(at: datetime) -> int:
    """Microseconds since the epoch: exact, and far cheaper to sort than datetimes."""
    return (at - _EPOCH) // _MICRO


def at_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def clock_text(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def format_days(days: frozenset[int]) -> str:
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
