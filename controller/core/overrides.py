"""Evaluate maintenance, force and online hours at one instant, into PolicyInputs and a report.

Maintenance comes from the annotation (fail-closed when invalid) and from configured windows;
scheduled windows take effect `lead` seconds before they start, so conversations can drain.
The result also says until when it holds (`valid_until`), so callers can cache it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from controller.core.annotations import MAINTENANCE, Directives
from controller.core.calendar import Near
from controller.core.holidays import OnlineHours
from controller.core.schedule import Interval, Schedule, Window
from controller.core.types import PolicyInputs, Presence

CONFIG_SOURCE = "PRESENCE_MAINTENANCE_WINDOWS"
CALENDAR_SOURCE = "PRESENCE_MAINTENANCE_CALENDAR"
FORCE_NOTICE = timedelta(minutes=10)
"""A `ForceExpiring` notice comes this long before a force's `force-until`."""
SCHEDULED = "MaintenanceScheduled"
FORCE_EXPIRING = "ForceExpiring"


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
    next_reason: str | None = None
    """What the next window is: its reason and where it comes from."""
    next_source: str | None = None


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
    holidays: str | None = None
    """The configured holiday regions (`DE-BY,AT`)."""
    holiday: str | None = None
    """Today's holiday by name, when one closes the online hours."""


@dataclass(frozen=True, slots=True)
class Evaluation:
    inputs: PolicyInputs
    maintenance: MaintenanceReport
    override: OverrideReport
    online_hours: OnlineHoursReport
    valid_until: datetime | None
    """The result holds for every instant in [at, valid_until); None: until the inputs change."""
    notices: tuple[Notice, ...] = ()


@dataclass(frozen=True, slots=True)
class Notice:
    """Something is about to change: a window starts (`MaintenanceScheduled`) or a force ends
    (`ForceExpiring`). `key` tells one notice from another (each is given once)."""

    reason: str
    key: str
    message: str


def evaluate(
    directives: Directives,
    config_maintenance: Schedule,
    online_hours: OnlineHours | None,
    lead: float,
    at: datetime,
    file_errors: tuple[str, ...] = (),
    others: tuple[tuple[str, Directives], ...] = (),
    calendar: Near | None = None,
    notice: float = 0.0,
) -> Evaluation:
    """Everything that outranks the consumer's health, at `at` (timezone-aware). `others` are
    more annotation sources after the pod's own (fleet mode: `deployment/NAME`, then
    `namespace/NAME`): maintenance is on when any source says so, an invalid one fails closed,
    and a force on an earlier source beats one on a later. `calendar`: the maintenance
    calendar's occurrences near `at`; `notice`: seconds before a window takes effect that a
    `MaintenanceScheduled` notice is due."""
    changes: list[datetime | None] = []
    named = ((None, directives), *others)
    if calendar is not None:
        changes.append(calendar.refresh)
    maintenance = _maintenance(named, config_maintenance, calendar, lead, at, changes)
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
    notices = (
        *_window_notice(maintenance, lead, notice, at, changes),
        *_force_notice(override, inputs.force_reason, at, changes),
    )
    future = [c for c in changes if c is not None and c > at]
    valid = min(future) if future else None
    return Evaluation(inputs, maintenance, override, hours, valid, notices)


def _window_notice(
    m: MaintenanceReport, lead: float, notice: float, at: datetime, changes: list[datetime | None]
) -> tuple[Notice, ...]:
    if m.active or m.next_start is None or notice <= 0:
        return ()
    effective = m.next_start - timedelta(seconds=lead)
    due = effective - timedelta(seconds=notice)
    changes.append(due)
    if not due <= at < effective:
        return ()
    drain = f", draining from {effective.isoformat()}" if lead > 0 else ""
    message = (
        f"maintenance starts at {m.next_start.isoformat()} (in {_span(m.next_start - at)})"
        f"{drain}: {m.next_reason}"
    )
    return (Notice(SCHEDULED, f"{m.next_start.isoformat()} {m.next_reason}", message),)


def _force_notice(
    o: OverrideReport, reason: str, at: datetime, changes: list[datetime | None]
) -> tuple[Notice, ...]:
    if not o.active or o.until is None or o.force is None:
        return ()
    due = o.until - FORCE_NOTICE
    changes.append(due)
    if not due <= at < o.until:
        return ()
    message = (
        f"force {o.force.value} expires at {o.until.isoformat()} (in {_span(o.until - at)}): "
        f"{reason}"
    )
    return (Notice(FORCE_EXPIRING, f"{o.until.isoformat()} {o.force.value}", message),)


def _span(left: timedelta) -> str:
    seconds = max(0, int(left.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _annotation_source(obj: str | None, d: Directives) -> str:
    """How a source is named in reasons: `annotation K` on the pod, `deployment/X annotation K`."""
    return f"{obj + ' ' if obj else ''}annotation {d.key(MAINTENANCE)}"


def _maintenance(
    named: tuple[tuple[str | None, Directives], ...],
    config: Schedule,
    calendar: Near | None,
    lead: float,
    at: datetime,
    changes: list[datetime | None],
) -> MaintenanceReport:
    for obj, d in named:
        if d.maintenance_error is not None:  # an invalid source fails closed
            reason = f"{obj}: {d.maintenance_error}" if obj else d.maintenance_error
            return MaintenanceReport(True, reason, obj or _annotation_source(None, d))
    if calendar is not None and calendar.error is not None:
        return MaintenanceReport(True, calendar.error, CALENDAR_SOURCE)
    sources: list[Source] = [
        (obj or _annotation_source(None, d), _annotation_source(obj, d), d.maintenance_reason,
         d.maintenance)
        for obj, d in named
    ]  # fmt: skip
    sources.append((CONFIG_SOURCE, CONFIG_SOURCE, None, config))
    for o in calendar.occurrences if calendar is not None else ():
        single = Schedule((Interval(o.start, o.end),))
        sources.append((CALENDAR_SOURCE, CALENDAR_SOURCE, o.summary, single))
    combined = Schedule(tuple(w for *_, sched in sources if sched for w in sched.windows))
    if not combined:
        return MaintenanceReport()

    boundary = combined.next_change(at)
    # The reason names the active window and its source, which can change while maintenance
    # stays on (one window hands over to another): every window's own changes count.
    changes.extend(Schedule((window,)).next_change(at) for window in combined.windows)
    now = _first_active(sources, at)
    if now is not None:
        source, label, text, window = now
        ends = boundary
        next_start = combined.next_change(ends) if ends else None
        next_end = combined.next_change(next_start) if next_start else None
        if next_start is not None and lead > 0:
            changes.append(next_start - timedelta(seconds=lead))
        reason = _reason(label, str(window), text)
        report = MaintenanceReport(
            True, reason, source, str(window), False, ends, next_start, next_end
        )
        return _with_next(report, _first_active(sources, next_start) if next_start else None)

    next_start = boundary
    next_end = combined.next_change(next_start) if next_start else None
    upcoming = _first_active(sources, next_start) if next_start is not None else None
    report = _with_next(MaintenanceReport(next_start=next_start, next_end=next_end), upcoming)
    if next_start is not None and upcoming is not None and lead > 0:
        source, label, _, window = upcoming
        drain_from = next_start - timedelta(seconds=lead)
        changes.append(drain_from)
        if at >= drain_from:
            reason = (
                f"draining {lead:g}s before window {str(window)!r} ({label}) "
                f"starts at {next_start.isoformat()}"
            )
            return replace(
                report, active=True, reason=reason, source=source, window=str(window),
                draining=True,
            )  # fmt: skip
    return report


Source = tuple[str, str, str | None, Schedule | None]
"""A maintenance source: (where, how reasons name it, its reason text, its windows)."""


def _first_active(
    sources: list[Source], at: datetime
) -> tuple[str, str, str | None, Window] | None:
    """The first source active at `at`: where, its label, its text and the active window."""
    for source, label, text, schedule in sources:
        window = schedule.active(at) if schedule else None
        if window is not None:
            return source, label, text, window
    return None


def _with_next(
    report: MaintenanceReport, upcoming: tuple[str, str, str | None, Window] | None
) -> MaintenanceReport:
    """The report with what its next window is (`_first_active` when it starts)."""
    if upcoming is None:
        return report
    source, label, text, window = upcoming
    return replace(report, next_reason=_reason(label, str(window), text), next_source=source)


def _reason(label: str, window: str, text: str | None) -> str:
    where = f"{label} {window!r}"
    return f"{text} ({where})" if text else where


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
    hours: OnlineHours | None, at: datetime, changes: list[datetime | None]
) -> OnlineHoursReport:
    if hours is None:
        return OnlineHoursReport()
    nxt = hours.next_change(at)
    changes.append(nxt)
    return OnlineHoursReport(
        str(hours), hours.inside(at), nxt, hours.holidays_text, hours.holiday(at)
    )


def _hours_reason(hours: OnlineHoursReport) -> str:
    back = f", back at {hours.next_change.isoformat()}" if hours.next_change else ""
    holiday = f"public holiday {hours.holiday}, " if hours.holiday else ""
    return f"{holiday}{hours.configured!r}{back}"
