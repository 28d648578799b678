"""`presence-controller windows SPEC` and `kubectl presence windows SPEC`: the next activations
of a window spec (with `--holidays`, online hours closed on those public holidays), or the error
that names what is wrong. Exit codes: 0, or 2 for a spec, time or region that cannot be read."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta, tzinfo

from controller.exits import EXIT_CONFIG, EXIT_OK


def windows_report(spec: str, count: int, start: str | None, holidays: str | None = None) -> int:
    from controller.core.holidays import HolidayError, OnlineHours, parse_regions, single_zone
    from controller.core.schedule import ScheduleError, Weekly, activations
    from controller.core.schedule_grammar import parse, parse_timestamp
    from controller.runtime.clock import SYSTEM

    try:
        at = parse_timestamp(start) if start else SYSTEM.wall()
    except ScheduleError as exc:
        print(f"presence-controller: --from: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        schedule = parse(spec)
        hours = OnlineHours(schedule)
        if holidays is not None:
            hours = OnlineHours(schedule, parse_regions(holidays), single_zone(schedule))
    except (ScheduleError, HolidayError) as exc:
        print(f"presence-controller: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"schedule: {schedule}")
    if hours.regions:
        print(f"closed on the public holidays of {hours.holidays_text} ({hours.zone})")
    print(f"from:     {at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")
    periods = activations(hours, at, max(count, 1))
    if not periods:
        print("never active")
        return EXIT_OK
    for number, (begin, end, window) in enumerate(periods, 1):
        zone = window.tz if isinstance(window, Weekly) else None
        since = "active now" if begin == at else _when(begin, zone)
        until = _when(end, zone) if end is not None else "no end (until the annotation is removed)"
        print(f"{number:>3}. {since}  ->  {until}")
    last = periods[-1][1] or periods[-1][0]
    day = at.date()
    while hours.regions and day <= last.date():
        name = hours.holiday_on(day)
        if name is not None:
            print(f"     closed {day:%a %Y-%m-%d}: {name}")
        day += timedelta(days=1)
    return EXIT_OK


def _when(at: datetime, zone: tzinfo | None) -> str:
    text = f"{at.astimezone(UTC):%a %Y-%m-%d %H:%M} UTC"
    if zone is not None and zone is not UTC and str(zone) != "UTC":
        text += f" ({at.astimezone(zone):%a %H:%M %Z})"
    return text
