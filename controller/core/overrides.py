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
    others: tuple[tuple[str, Directives], ...] = (),
) -> Evaluation:
    """Everything that outranks the consumer's health, at `at` (timezone-aware). `others` are
    more annotation sources after the pod's own (fleet mode: `deployment/NAME`, then
    `namespace/NAME`): maintenance is on when any source says so, an invalid one fails closed,
    and a force on an earlier source beats one on a later."""
    changes: list[datetime | None] = []
    named = ((None, directives), *others)
    maintenance = _maintenance(named, config_maintenance, lead, at, changes)
    errors = [*directives.errors, *(f"{o}: {e}" for o, d in others for e in d.errors)]
    maintenance = replace(maintenance, errors=(*errors, *file_errors))
    override, forcing = _overrides(named, at, changes)
    hours = _online_hours(online_hours, at, changes)

    inputs = PolicyInputs(
        maintenance=maintenance.reason if maintenance.active else None,
        force=override.force if override.active else None,
        force_reason=_force_reason(forcing, override) if override.active else "",
        outside_online_hours=_hours_reason(hours) if not hours.inside else None,
    )
    future = [c for c in changes if c is not None and c > at]
    return Evaluation(inputs, maintenance, override, hours, min(future) if future else None)


def _annotation_source(obj: str | None, d: Directives) -> str:
    """How a source is named in reasons: `annotation K` on the pod, `deployment/X annotation K`."""
    return f"{obj + ' ' if obj else ''}annotation {d.key(MAINTENANCE)}"


def _maintenance(
    named: tuple[tuple[str | None, Directives], ...],
    config: Schedule,
    lead: float,
    at: datetime,
    changes: list[datetime | None],
) -> MaintenanceReport:
    for obj, d in named:
        if d.maintenance_error is not None:  # an invalid source fails closed
            reason = f"{obj}: {d.maintenance_error}" if obj else d.maintenance_error
            return MaintenanceReport(True, reason, obj or _annotation_source(None, d))
    sources: list[tuple[str, str, Directives | None, Schedule | None]] = [
        (obj or _annotation_source(None, d), _annotation_source(obj, d), d, d.maintenance)
        for obj, d in named
    ]
    sources.append((CONFIG_SOURCE, CONFIG_SOURCE, None, config))
    combined = Schedule(tuple(w for *_, sched in sources if sched for w in sched.windows))
    if not combined:
        return MaintenanceReport()

    boundary = combined.next_change(at)
    # The reason names the active window and its source, which can change while maintenance
    # stays on (one window hands over to another): every window's own changes count.
    changes.extend(Schedule((window,)).next_change(at) for window in combined.windows)
    for source, label, directives, schedule in sources:
        window = schedule.active(at) if schedule else None
        if window is not None:
            ends = boundary
            next_start = combined.next_change(ends) if ends else None
            next_end = combined.next_change(next_start) if next_start else None
            if next_start is not None and lead > 0:
                changes.append(next_start - timedelta(seconds=lead))
            reason = _reason(label, str(window), directives)
            return MaintenanceReport(
                True, reason, source, str(window), False, ends, next_start, next_end
            )

    next_start = boundary
    next_end = combined.next_change(next_start) if next_start else None
    if next_start is not None and lead > 0:
        drain_from = next_start - timedelta(seconds=lead)
        changes.append(drain_from)
        if at >= drain_from:
            source, label, window = next(
                (src, lbl, s.active(next_start))
                for src, lbl, _, s in sources
                if s and s.active(next_start)
            )
            reason = (
                f"draining {lead:g}s before window {str(window)!r} ({label}) "
                f"starts at {next_start.isoformat()}"
            )
            return MaintenanceReport(
                True, reason, source, str(window), True, None, next_start, next_end
            )
    return MaintenanceReport(next_start=next_start, next_end=next_end)


def _reason(label: str, window: str, d: Directives | None) -> str:
    where = f"{label} {window!r}"
    if d is not None and d.maintenance_reason:
        return f"{d.maintenance_reason} ({where})"
    return where


def _overrides(
    named: tuple[tuple[str | None, Directives], ...], at: datetime, changes: list[datetime | None]
) -> tuple[OverrideReport, tuple[str | None, Directives]]:
    """The first source whose force is in effect wins; else the pod's report (for /status)."""
    first: tuple[OverrideReport, tuple[str | None, Directives]] | None = None
    for obj, d in named:
        report = _override(d, at, changes)
        if report.active:
            return report, (obj, d)
        if first is None or (first[0].force is None and report.force is not None):
            first = (report, (obj, d))
    assert first is not None  # `named` always holds the pod's directives
    return first


def _override(d: Directives, at: datetime, changes: list[datetime | None]) -> OverrideReport:
    if d.force is None:
        return OverrideReport(error=d.force_error)
    if d.force_until is not None:
        changes.append(d.force_until)
        if at >= d.force_until:
            return OverrideReport(d.force, d.force_until, active=False, expired=True)
    return OverrideReport(d.force, d.force_until, active=True)


def _force_reason(forcing: tuple[str | None, Directives], override: OverrideReport) -> str:
    obj, d = forcing
    reason = f"{obj + ' ' if obj else ''}annotation {d.key('force')}"
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
