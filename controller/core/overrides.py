"""Evaluate maintenance, force and online hours at one instant, into PolicyInputs and a report.

Maintenance comes from the annotation (fail-closed when invalid) and from configured windows;
scheduled windows take effect `lead` seconds before they start, so conversations can drain.
The result also says until when it holds (`valid_until`), so callers can cache it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from controller.core.annotations import MAINTENANCE, Directives
from controller.core.schedule import Schedule
from controller.core.types import PolicyInputs, Presence

CONFIG_SOURCE = "PRESENCE_MAINTENANCE_WINDOWS"


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    active: bool = False
    reason: str | None = None
    source: str | None = None
    """The annotation key or the config setting that makes maintenance active."""
    window: str | None = None
    """The active (or, while draining, the upcoming) window."""
    draining: bool = False
    ends: datetime | None = None
    next_start: datetime | None = None
    next_end: datetime | None = None
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OverrideReport:
    force: Presence | None = None
    until: datetime | None = None
    active: bool = False
    expired: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class OnlineHoursReport:
    configured: str | None = None
    inside: bool = True
    next_change: datetime | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    inputs: PolicyInputs
    maintenance: MaintenanceReport
    override: OverrideReport
    online_hours: OnlineHoursReport
    valid_until: datetime | None
    """The result holds for every instant in [at, valid_until); None: until the inputs change."""


def evaluate(
    directives: Directives,
    config_maintenance: Schedule,
    online_hours: Schedule | None,
    lead: float,
    at: datetime,
    file_errors: tuple[str, ...] = (),
) -> Evaluation:
    """Everything that outranks the consumer's health, at `at` (timezone-aware)."""
    changes: list[datetime | None] = []
    maintenance = _maintenance(directives, config_maintenance, lead, at, changes)
    maintenance = replace(maintenance, errors=(*directives.errors, *file_errors))
    override = _override(directives, at, changes)
    hours = _online_hours(online_hours, at, changes)

    inputs = PolicyInputs(
        maintenance=maintenance.reason if maintenance.active else None,
        force=override.force if override.active else None,
        force_reason=_force_reason(directives, override) if override.active else "",
        outside_online_hours=_hours_reason(hours) if not hours.inside else None,
    )
    future = [c for c in changes if c is not None and c > at]
    return Evaluation(inputs, maintenance, override, hours, min(future) if future else None)


def _maintenance(
    d: Directives,
    config: Schedule,
    lead: float,
    at: datetime,
    changes: list[datetime | None],
) -> MaintenanceReport:
    annotation_source = f"annotation {d.key(MAINTENANCE)}"
    if d.maintenance_error is not None:
        return MaintenanceReport(True, d.maintenance_error, annotation_source)
    sources = [(annotation_source, d.maintenance or Schedule()), (CONFIG_SOURCE, config)]
    combined = Schedule(tuple(w for _, s in sources for w in s.windows))
    if not combined:
        return MaintenanceReport()

    boundary = combined.next_change(at)
    # The reason names the active window and its source, which can change while maintenance
    # stays on (one window hands over to another): every window's own changes count.
    changes.extend(Schedule((window,)).next_change(at) for window in combined.windows)
    for source, schedule in sources:
        window = schedule.active(at)
        if window is not None:
            ends = boundary
            next_start = combined.next_change(ends) if ends else None
            next_end = combined.next_change(next_start) if next_start else None
            if next_start is not None and lead > 0:
                changes.append(next_start - timedelta(seconds=lead))
            reason = _reason(source, str(window), d, annotation_source)
            return MaintenanceReport(
                True, reason, source, str(window), False, ends, next_start, next_end
            )

    next_start = boundary
    next_end = combined.next_change(next_start) if next_start else None
    if next_start is not None and lead > 0:
        drain_from = next_start - timedelta(seconds=lead)
        changes.append(drain_from)
        if at >= drain_from:
            source, window = next(
                (src, s.active(next_start)) for src, s in sources if s.active(next_start)
            )
            reason = (
                f"draining {lead:g}s before window {str(window)!r} ({source}) "
                f"starts at {next_start.isoformat()}"
            )
            return MaintenanceReport(
                True, reason, source, str(window), True, None, next_start, next_end
            )
    return MaintenanceReport(next_start=next_start, next_end=next_end)


def _reason(source: str, window: str, d: Directives, annotation_source: str) -> str:
    where = f"{source} {window!r}"
    if source == annotation_source and d.maintenance_reason:
        return f"{d.maintenance_reason} ({where})"
    return where


def _override(d: Directives, at: datetime, changes: list[datetime | None]) -> OverrideReport:
    if d.force is None:
        return OverrideReport(error=d.force_error)
    if d.force_until is not None:
        changes.append(d.force_until)
        if at >= d.force_until:
            return OverrideReport(d.force, d.force_until, active=False, expired=True)
    return OverrideReport(d.force, d.force_until, active=True)


def _force_reason(d: Directives, override: OverrideReport) -> str:
    reason = f"annotation {d.key('force')}"
    if override.until is not None:
        reason += f" until {override.until.isoformat()}"
    return reason


def _online_hours(
    hours: Schedule | None, at: datetime, changes: list[datetime | None]
) -> OnlineHoursReport:
    if hours is None:
        return OnlineHoursReport()
    nxt = hours.next_change(at)
    changes.append(nxt)
    return OnlineHoursReport(str(hours), hours.active(at) is not None, nxt)


def _hours_reason(hours: OnlineHoursReport) -> str:
    back = f", back at {hours.next_change.isoformat()}" if hours.next_change else ""
    return f"{hours.configured!r}{back}"
