"""The window grammar (docs/maintenance.md): `parse(text)` -> Schedule, `parse_timestamp`.
Every error a ScheduleError that names the offending window and what was expected. Pure."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import TypeAdapter, ValidationError

from controller.core.excerpt import quote
from controller.core.schedule import (
    LATEST,
    Always,
    Interval,
    Schedule,
    ScheduleError,
    Until,
    Window,
)
from controller.core.weekly import WEEKDAYS, Weekly

TRUE_WORDS = frozenset({"true", "on", "yes"})
FALSE_WORDS = frozenset({"false", "off", "no", ""})
_DAY_INDEX = {name.lower(): i for i, name in enumerate(WEEKDAYS)}
_WEEKLY = re.compile(r"(?P<days>[A-Za-z][A-Za-z,\- ]*?)\s+(?P<times>\S+)(?:\s+(?P<zone>\S+))?")
_CLOCK = re.compile(r"(?P<h>\d{1,2}):(?P<m>\d{2})")
_CALENDAR_UNITS = re.compile(r"P[^T]*[YM]")
MAX_SPEC_CHARS = 4096
"""A window spec longer than this is refused: evaluation cost and every message stay bounded."""
MAX_WINDOWS = 50
"""Windows per spec (`;`-separated); a week of distinct windows per day fits easily."""


@functools.cache
def _duration_adapter() -> TypeAdapter[timedelta]:
    """pydantic's ISO 8601 duration parser, built on first use (it costs ~10 ms at import)."""
    return TypeAdapter(timedelta)


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
