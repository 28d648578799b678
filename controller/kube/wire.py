"""Wire facts of the Kubernetes API that more than one part needs."""

from __future__ import annotations

from datetime import UTC, datetime


def micro_time(at: datetime | None = None) -> str:
    """A Kubernetes MicroTime: UTC with exactly six fractional digits (anything else is a 400)."""
    return (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
