"""Retry-After (RFC 9110): how long a server asked us to wait, from either of its forms."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, now: datetime | str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110).

    An HTTP-date counts from `now`: the reply's own `Date` header (its text) or a time. Taking
    the server's Date rather than our clock makes the wait immune to skew between the two
    clocks; a date with no `Date` to count from is unreadable.

    Returns None when the header is absent or unreadable, so the caller falls back to back-off.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # not str.isdigit() alone: it accepts '²'
        return float(text)
    when, base = _date(text), _date(now) if isinstance(now, str) else now
    if when is None or base is None:
        return None
    return max(0.0, (when - base).total_seconds())


def _date(text: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when
