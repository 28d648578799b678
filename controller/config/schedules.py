"""The settings of maintenance windows, online hours, public holidays, the maintenance calendar
and notices (docs/maintenance.md): a part of `Settings`, kept apart for size."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from controller.config.values import DAY, AtMost, Duration
from controller.core.holidays import HolidayError, OnlineHours, parse_regions, single_zone
from controller.core.schedule import Schedule, ScheduleError
from controller.core.schedule_grammar import parse as parse_schedule


class ScheduleSettings(BaseModel):
    """Maintenance windows, online hours, holidays, the calendar and notices."""

    model_config = ConfigDict(use_attribute_docstrings=True, validate_default=True)

    maintenance_windows: str | None = None
    """Maintenance windows from config, in the window grammar (docs/maintenance.md)."""
    maintenance_calendar: Path | None = None
    """An iCalendar file (e.g. a mounted ConfigMap): each event, with its RRULE, EXDATE and
    RECURRENCE-ID exceptions and time zones, is a maintenance window named by its SUMMARY. Must
    exist at start; re-read when it changes; a file that cannot be read as a calendar fails
    closed (maintenance on, and the reason says why)."""
    online_hours: str | None = None
    """Windows in the window grammar; outside them the bot is unavailable. Unset: no limit."""
    online_hours_holidays: str | None = None
    """Public holidays close the online hours all day (local days in the online hours' zone):
    ISO country or subdivision codes, `DE-BY,AT` (the `holidays` package's calendars). Needs
    `ONLINE_HOURS` of weekly windows in one zone."""
    maintenance_lead: Annotated[
        Duration,
        AtMost(
            7 * DAY,
            "a drain of more than a week is a mistake (and far leads are date "
            "arithmetic that could overflow)",
        ),
    ] = 0.0
    """Scheduled maintenance windows take effect this long before they start (drain)."""
    notice: Annotated[
        Duration, AtMost(7 * DAY, "a notice a week ahead is noise, not a warning")
    ] = 3600.0
    """A `MaintenanceScheduled` notice (log line; Event in fleet mode) this long before a
    window takes effect. `0`: none."""

    @field_validator("maintenance_windows", "online_hours")
    @classmethod
    def _window_grammar(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:
            schedule = parse_schedule(value)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
        if info.field_name == "online_hours" and not schedule:
            raise ValueError(
                f"{value!r} would keep the bot offline for good: leave ONLINE_HOURS unset "
                "for no limit"
            )
        return value

    @field_validator("maintenance_calendar")
    @classmethod
    def _calendar_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file {str(value)!r}: mount the calendar, or unset it")
        return value

    @field_validator("online_hours_holidays")
    @classmethod
    def _known_regions(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        hours = info.data.get("online_hours")
        if not isinstance(hours, str):
            raise ValueError("holidays close online hours: set ONLINE_HOURS too")
        try:
            parse_regions(value)
            single_zone(parse_schedule(hours))
        except (HolidayError, ScheduleError) as exc:
            raise ValueError(str(exc)) from None
        return value

    def maintenance_schedule(self) -> Schedule:
        return parse_schedule(self.maintenance_windows or "")

    def online_hours_schedule(self) -> OnlineHours | None:
        """The online hours, closed on the configured holidays; None: no limit."""
        if self.online_hours is None:
            return None
        schedule = parse_schedule(self.online_hours)
        if self.online_hours_holidays is None:
            return OnlineHours(schedule)
        return OnlineHours(
            schedule, parse_regions(self.online_hours_holidays), single_zone(schedule)
        )
