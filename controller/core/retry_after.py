"""Retry-After (RFC 9110): how long a server asked us to wait, from either of its forms."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110).

    Returns None when the header is absent or unreadable, so the caller falls back to back-off.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # not str.isdigit() alone: it accepts '²'
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
