"""Our annotation keys and what their values mean (docs/maintenance.md): the one place for them.

| key (after the prefix) | value                                                           |
|------------------------|-----------------------------------------------------------------|
| `maintenance`          | true/on/yes, false/off/no/empty, an RFC 3339 "until", or windows |
| `maintenance-reason`   | free text carried into reasons, /status, logs                   |
| `force`                | available or unavailable                                        |
| `force-until`          | RFC 3339 timestamp; the force expires then                       |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from controller.core.schedule import Schedule, ScheduleError
from controller.core.schedule_grammar import parse, parse_timestamp
from controller.core.types import Presence

MAINTENANCE = "maintenance"
MAINTENANCE_REASON = "maintenance-reason"
FORCE = "force"
FORCE_UNTIL = "force-until"
REASON_LIMIT = 200
"""Longer maintenance reasons are cut, so one annotation cannot flood every log line."""


@dataclass(frozen=True, slots=True)
class Directives:
    """What our annotations ask for, parsed; invalid values are kept as errors."""

    prefix: str = ""
    maintenance: Schedule | None = None
    """None when the annotation is absent or invalid."""
    maintenance_spec: str | None = None
    maintenance_error: str | None = None
    """Set when the maintenance annotation is present but invalid: maintenance fails closed."""
    maintenance_reason: str | None = None
    force: Presence | None = None
    force_until: datetime | None = None
    force_error: str | None = None
    """Set when force or force-until is invalid: the force is ignored."""

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(e for e in (self.maintenance_error, self.force_error) if e is not None)


def read_directives(
    values: Mapping[str, str], broken: Mapping[str, str], prefix: str, garbled: str | None = None
) -> Directives:
    """Interpret the annotations under `prefix`. `broken` holds keys whose line was unreadable;
    `garbled` says why the whole source is garbage (any key may be lost: maintenance fails
    closed)."""

    def get(name: str) -> tuple[str | None, str | None]:
        key = prefix + name
        if key in broken:
            return None, f"invalid annotation {key}: {broken[key]}"
        return values.get(key), None

    maintenance, maintenance_spec, maintenance_error = None, None, None
    text, error = get(MAINTENANCE)
    if garbled is not None:
        maintenance_error = f"{garbled}: maintenance fails closed"
    elif error is not None:
        maintenance_error = error
    elif text is not None:
        maintenance_spec = text.strip()
        try:
            maintenance = parse(text)
        except ScheduleError as exc:
            maintenance_error = f"invalid annotation {prefix}{MAINTENANCE}: {exc}"

    reason, _ = get(MAINTENANCE_REASON)
    if reason is not None:
        reason = " ".join(reason.split())[:REASON_LIMIT] or None

    force, force_until, force_error = None, None, None
    force_text, error = get(FORCE)
    until_text, until_error = get(FORCE_UNTIL)
    if error is not None or until_error is not None:
        force_error = error or until_error
    elif force_text is not None:
        try:
            force = Presence(force_text.strip().lower())
            if force is Presence.UNKNOWN:
                raise ValueError
        except ValueError:
            force = None
            force_error = (
                f"invalid annotation {prefix}{FORCE}: {force_text[:40]!r} is not "
                "available or unavailable; ignored"
            )
        if force is not None and until_text is not None:
            try:
                force_until = parse_timestamp(until_text.strip())
            except ScheduleError as exc:
                force, force_error = (
                    None,
                    f"invalid annotation {prefix}{FORCE_UNTIL}: {exc}; force ignored",
                )
    return Directives(
        prefix=prefix,
        maintenance=maintenance,
        maintenance_spec=maintenance_spec,
        maintenance_error=maintenance_error,
        maintenance_reason=reason,
        force=force,
        force_until=force_until,
        force_error=force_error,
    )
