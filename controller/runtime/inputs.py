"""The policy inputs: maintenance, force and online hours at an instant, from the pod's
annotations file, the workload's and namespace's annotations (fleet mode) and the configured
windows; each change and each new error reported once (log, metric, Event)."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from controller.config import Settings
from controller.core.annotations import Directives, read_directives
from controller.core.excerpt import clip, describe
from controller.core.overrides import Evaluation, Notice, evaluate
from controller.core.types import PolicyInputs
from controller.runtime.clock import SYSTEM, Clock
from controller.runtime.status import SourcesReport
from controller.sources.annotations import AnnotationFile, AnnotationSnapshot
from controller.sources.calendar import CalendarFile
from controller.telemetry.logs import ErrorOnce, event
from controller.telemetry.metrics import Metrics

log = logging.getLogger("presence.controller")

EVALUATION_HORIZON = timedelta(hours=1)
"""A cached maintenance/online-hours evaluation is redone at least this often, whatever its
`valid_until` says: a search that missed a change cannot freeze the schedule for good."""

Emit = Callable[[str, str, str, str], None]
"""Fleet mode: send a Kubernetes Event (type, reason, note, action)."""


class FleetSources(Protocol):
    """Fleet mode: the workload's and namespace's annotations, as the member watches them."""

    @property
    def sources_version(self) -> tuple[tuple[int, bool], ...]: ...

    def annotation_sources(self) -> tuple[tuple[str, dict[str, str]], ...]: ...


class PolicySources:
    """Evaluates maintenance, force and online hours; recomputes only when a source changed or
    the last result ran out (`valid_until`), and reports changes only."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        fleet: FleetSources | None = None,
        emit: Emit | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._fleet = fleet
        self._emit = emit
        self.file = AnnotationFile(settings.annotations_file) if settings.annotations_file else None
        self._windows = settings.maintenance_schedule()
        self._online_hours = settings.online_hours_schedule()
        path = settings.maintenance_calendar
        self.calendar = CalendarFile(path, clock) if path is not None else None
        self._calendar_seen: tuple[int, str | None] = (0, None)
        """The calendar's version and stale error last reported."""
        self._noticed: deque[str] = deque(maxlen=64)
        """Notices already given (their keys): each is given once."""
        self._snapshot = AnnotationSnapshot()
        self._directives = Directives(prefix=settings.annotation_prefix)
        self._fleet_version: tuple[tuple[int, bool], ...] = ()
        self._others: tuple[tuple[str, Directives], ...] = ()
        """Fleet mode: the workload's and namespace's directives (overrides.evaluate)."""
        self.evaluation: Evaluation | None = None
        self._evaluated_at = datetime.min.replace(tzinfo=UTC)
        self._failed = ErrorOnce(log)

    def inputs(self, at: datetime, last: datetime | None) -> PolicyInputs:
        """Maintenance, force and online hours at `at` (`last`: the previous tick's time, to
        notice a wall clock that went back); if evaluating them fails, maintenance fails
        closed (the bot goes offline, and the reason says why)."""
        try:
            inputs = self._evaluate(at, last).inputs
        except Exception as exc:
            self._failed("maintenance evaluation failed", exc)
            return PolicyInputs(maintenance=f"evaluation failed ({describe(exc)}): fail closed")
        self._failed.reset()
        return inputs

    def report(self) -> SourcesReport:
        """What the sources say, as plain values (`/status`)."""
        return SourcesReport(
            self.evaluation,
            self._directives.force_error,
            self.file.path if self.file else None,
            self._snapshot.stale,
            dict(self._snapshot.values),
            self._settings.annotation_prefix,
            self._settings.maintenance_lead,
            self.calendar.report() if self.calendar is not None else None,
        )

    def _evaluate(self, at: datetime, last: datetime | None) -> Evaluation:
        snapshot = self.file.read() if self.file else self._snapshot
        changed = snapshot.version != self._snapshot.version
        prefix = self._settings.annotation_prefix
        version = self._fleet.sources_version if self._fleet is not None else ()
        if self._fleet is not None and version != self._fleet_version:
            changed = True
            self._fleet_version = version
            others = tuple(
                (where, read_directives(notes, {}, prefix))
                for where, notes in self._fleet.annotation_sources()
            )
            self._report_sources(self._others, others)
            self._others = others
        if snapshot.version != self._snapshot.version:
            directives = read_directives(snapshot.values, snapshot.broken, prefix, snapshot.garbled)
            self._report_annotations(self._snapshot, snapshot, self._directives, directives)
            self._snapshot, self._directives = snapshot, directives
        if self.calendar is not None:
            seen = (self.calendar.version, self.calendar.stale)
            if seen != self._calendar_seen:
                changed = changed or seen[0] != self._calendar_seen[0]
                self._report_calendar(self.calendar)
                self._calendar_seen = seen
        if changed:
            self._metrics.annotation_invalid.set(self._invalid())
        old = self.evaluation
        if (
            old is not None
            and not changed
            and (old.valid_until is None or at < old.valid_until)
            and at < self._evaluated_at + EVALUATION_HORIZON
            and (last is None or at >= last)  # the wall clock went back
        ):
            return old
        new = evaluate(
            self._directives,
            self._windows,
            self._online_hours,
            self._settings.maintenance_lead,
            at,
            snapshot.errors,
            self._others,
            self.calendar.near(at) if self.calendar is not None else None,
            self._settings.notice,
        )
        self.evaluation, self._evaluated_at = new, at
        self._report_maintenance(old, new)
        self._report_notices(new.notices)
        return new

    def _invalid(self) -> int:
        """Maintenance sources invalid right now: annotations, and the calendar."""
        pod = {*self._snapshot.errors, *self._directives.errors}
        others = {f"{where}: {e}" for where, d in self._others for e in d.errors}
        failed = self.calendar is not None and self.calendar.failed is not None
        return len(pod | others) + failed

    def _report_calendar(self, calendar: CalendarFile) -> None:
        """A new expansion, a calendar that fails (closed), or one that cannot be read again."""
        if calendar.version != self._calendar_seen[0]:
            if calendar.failed is not None:
                self._metrics.annotation_errors.inc()
                event(log, logging.WARNING, "calendar_error", str(calendar.error))
            elif calendar.expansion is not None:
                e = calendar.expansion
                event(
                    log, logging.INFO, "calendar",
                    f"calendar {calendar.path} read: {e.events} events, "
                    f"{len(e.occurrences)} windows until {e.until.isoformat()}",
                    events=e.events, windows=len(e.occurrences),
                )  # fmt: skip
        if calendar.stale is not None and calendar.stale != self._calendar_seen[1]:
            event(log, logging.WARNING, "calendar_error", calendar.stale)

    def _report_notices(self, notices: tuple[Notice, ...]) -> None:
        """Each notice once: a log line, and an Event in fleet mode."""
        for notice in notices:
            if notice.key in self._noticed:
                continue
            self._noticed.append(notice.key)
            event(log, logging.INFO, "notice", notice.message, notice=notice.reason)
            if self._emit is not None:
                self._emit("Normal", notice.reason, notice.message, "Notice")

    def _report_sources(
        self,
        old: tuple[tuple[str, Directives], ...],
        new: tuple[tuple[str, Directives], ...],
    ) -> None:
        """Fleet mode: a changed workload or namespace source, logged once; its new errors
        counted like the pod's."""
        before = dict(old)
        for where, now in new:
            was = before.get(where, Directives(prefix=now.prefix))
            if now != was:
                event(
                    log, logging.INFO, "annotations", f"presence annotations changed on {where}",
                    source=where,
                    maintenance=clip(now.maintenance_spec, 200) if now.maintenance_spec else None,
                    maintenance_reason=now.maintenance_reason,
                    force=now.force.value if now.force else None,
                )  # fmt: skip
            for error in now.errors:
                if error not in was.errors:
                    self._metrics.annotation_errors.inc()
                    event(log, logging.WARNING, "annotation_error", f"{where}: {error}")

    def _report_annotations(
        self, old: AnnotationSnapshot, new: AnnotationSnapshot, was: Directives, now: Directives
    ) -> None:
        if now != was:
            event(
                log,
                logging.INFO,
                "annotations",
                "presence annotations changed",
                maintenance=clip(now.maintenance_spec, 200) if now.maintenance_spec else None,
                maintenance_reason=now.maintenance_reason,
                force=now.force.value if now.force else None,
                force_until=now.force_until.isoformat() if now.force_until else None,
            )
        known = set(old.errors) | set(was.errors)
        for error in (*new.errors, *now.errors):
            if error not in known:
                self._metrics.annotation_errors.inc()
                event(log, logging.WARNING, "annotation_error", error)

    def _report_maintenance(self, old: Evaluation | None, new: Evaluation) -> None:
        m = new.maintenance
        self._metrics.maintenance_active.set(1 if m.active else 0)
        was_active = old is not None and old.maintenance.active
        if m.active and not was_active:
            message = f"maintenance started: {m.reason}"
            event(log, logging.INFO, "maintenance", message, source=m.source)
            if self._emit is not None:
                self._emit("Normal", "MaintenanceStarted", message, "Maintenance")
        elif was_active and not m.active:
            event(log, logging.INFO, "maintenance", "maintenance ended")
            if self._emit is not None:
                self._emit("Normal", "MaintenanceEnded", "maintenance ended", "Maintenance")
