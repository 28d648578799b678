"""The maintenance calendar (PRESENCE_MAINTENANCE_CALENDAR): what an iCalendar file's events mean
(recurrence, its exceptions, time zones, DST, all-day and floating times), the bounds on hostile
files, the worker that expands them under a limit, the file watched for changes, and the
evaluation that fails closed on a file it cannot use."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.core import calendar as calendar_core
from controller.core.annotations import Directives
from controller.core.calendar import (
    MAX_BYTES,
    MAX_EVENTS,
    MAX_OCCURRENCES,
    NEAR_MOST,
    CalendarError,
    Near,
    Occurrence,
    expand,
)
from controller.core.overrides import CALENDAR_SOURCE, evaluate
from controller.core.schedule import Schedule
from controller.runtime.clock import Clock
from controller.sources import calendar as calendar_source
from controller.sources.calendar import CalendarFile, expand_in_worker

SINCE = datetime(2026, 10, 1, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ics(*events: str, header: str = "") -> bytes:
    body = "".join(f"BEGIN:VEVENT\r\n{e.strip()}\r\nEND:VEVENT\r\n" for e in events)
    text = (
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{header}{body}END:VCALENDAR\r\n"
    )
    return text.replace("\n            ", "\r\n").encode()


WEEKLY = """UID:patch@example.com
            SUMMARY:Weekly DB patching
            DTSTART;TZID=Europe/Berlin:20261017T020000
            DTEND;TZID=Europe/Berlin:20261017T040000
            RRULE:FREQ=WEEKLY;BYDAY=SA;COUNT=4
            EXDATE;TZID=Europe/Berlin:20261024T020000"""
MOVED = """UID:patch@example.com
            RECURRENCE-ID;TZID=Europe/Berlin:20261031T020000
            SUMMARY:Weekly DB patching (moved to 05:00)
            DTSTART;TZID=Europe/Berlin:20261031T050000
            DTEND;TZID=Europe/Berlin:20261031T060000"""


def test_recurrence_with_its_exceptions_and_time_zone_across_the_fall_back() -> None:
    # Saturdays 02:00-04:00 Berlin, four times; the 24th is cut (EXDATE); the 31st, after the
    # clocks went back (Oct 25), is moved to 05:00 (RECURRENCE-ID). CEST is UTC+2, CET UTC+1.
    found = expand(ics(WEEKLY, MOVED), SINCE).occurrences
    assert found == (
        Occurrence(utc(2026, 10, 17, 0), utc(2026, 10, 17, 2), "Weekly DB patching"),
        Occurrence(
            utc(2026, 10, 31, 4), utc(2026, 10, 31, 5), "Weekly DB patching (moved to 05:00)"
        ),
        Occurrence(utc(2026, 11, 7, 1), utc(2026, 11, 7, 3), "Weekly DB patching"),
    )


def test_all_day_and_floating_events_are_in_the_calendars_zone_else_utc() -> None:
    all_day = (
        "UID:x\nSUMMARY:Christmas freeze\nDTSTART;VALUE=DATE:20261224\nDTEND;VALUE=DATE:20261227"
    )
    floating = "UID:y\nSUMMARY:Floating\nDTSTART:20261101T100000\nDURATION:PT90M"
    one_day = "UID:z\nSUMMARY:One day\nDTSTART;VALUE=DATE:20261102"
    events = [e.replace("\n", "\r\n") for e in (all_day, floating, one_day)]
    berlin = expand(ics(*events, header="X-WR-TIMEZONE:Europe/Berlin\r\n"), SINCE).occurrences
    assert [(o.start, o.end) for o in berlin] == [
        (utc(2026, 11, 1, 9), utc(2026, 11, 1, 10, 30)),
        (utc(2026, 11, 1, 23), utc(2026, 11, 2, 23)),
        (utc(2026, 12, 23, 23), utc(2026, 12, 26, 23)),
    ]
    plain = expand(ics(*events), SINCE).occurrences
    assert plain[0].start == utc(2026, 11, 1, 10) and plain[2].start == utc(2026, 12, 24)


def test_only_windows_that_overlap_the_listing_count() -> None:
    past = "UID:p\nSUMMARY:Past\nDTSTART:20260901T000000Z\nDTEND:20260901T010000Z"
    running = "UID:r\nSUMMARY:Running\nDTSTART:20260930T000000Z\nDTEND:20261002T000000Z"
    instant = "UID:i\nSUMMARY:Instant\nDTSTART:20261005T000000Z"
    far = "UID:f\nSUMMARY:Far\nDTSTART:20270601T000000Z\nDTEND:20270601T010000Z"
    events = [e.replace("\n", "\r\n") for e in (past, running, instant, far)]
    expansion = expand(ics(*events), SINCE)
    assert [o.summary for o in expansion.occurrences] == ["Running"]
    assert expansion.until == SINCE + timedelta(days=92) and expansion.events == 4


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"garbage", "not an iCalendar file: ValueError"),
        (b"\x00\xff" * 100, "not an iCalendar file"),
        (b"", "not an iCalendar file"),
        (b"A" * (MAX_BYTES + 1), f"{MAX_BYTES + 1} bytes: at most {MAX_BYTES}"),
        (ics("UID:a\r\nSUMMARY:no start"), "cannot expand its events: KeyError: 'DTSTART'"),
        (
            ics("UID:a\r\nDTSTART;TZID=Mars/Olympus:20261101T100000\r\nDURATION:PT1H"),
            "",
        ),
        (ics("UID:b\r\nDTSTART:20261101T100000Z\r\nRRULE:FREQ=SOMETIMES"), "cannot expand"),
        (ics(header="X-WR-TIMEZONE:Nowhere/Land\r\n"), "unknown X-WR-TIMEZONE 'Nowhere/Land'"),
        (
            ics(*[f"UID:{n}\r\nDTSTART:20261101T100000Z" for n in range(MAX_EVENTS + 1)]),
            f"{MAX_EVENTS + 1} events: at most {MAX_EVENTS}",
        ),
    ],
)
def test_hostile_files_are_refused_with_why(data: bytes, message: str) -> None:
    if not message:  # an unknown TZID: the time is read as UTC; still one window
        assert len(expand(data, SINCE).occurrences) == 1
        return
    with pytest.raises(CalendarError) as caught:
        expand(data, SINCE)
    assert message in str(caught.value)


def test_an_endless_series_stops_at_the_occurrence_cap_and_says_where(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert MAX_OCCURRENCES == 5000  # bench/RESULTS.md, "Calendar evaluation": ~1.3 s to list
    monkeypatch.setattr(calendar_core, "MAX_OCCURRENCES", 300)
    minutely = (
        "UID:m\r\nSUMMARY:Every minute\r\nDTSTART:20261001T000000Z\r\nDURATION:PT30S\r\n"
        "RRULE:FREQ=MINUTELY"
    )
    expansion = expand(ics(minutely), SINCE)
    assert len(expansion.occurrences) == 300
    assert expansion.until == SINCE + timedelta(minutes=300)


def test_a_summary_is_one_line_and_bounded() -> None:
    long = (
        "UID:s\r\nSUMMARY:"
        + "x" * 70
        + "\r\n "
        + "y" * 400
        + "\r\nDTSTART:20261101T000000Z\r\nDURATION:PT1H"
    )
    (occurrence,) = expand(ics(long), SINCE).occurrences
    assert len(occurrence.summary) == 200 and "\n" not in occurrence.summary
    (unnamed,) = expand(
        ics("UID:u\r\nDTSTART:20261101T000000Z\r\nDURATION:PT1H"), SINCE
    ).occurrences
    assert unnamed.summary == "maintenance (calendar event without a summary)"


def test_near_hands_over_what_matters_and_when_to_look_again() -> None:
    hourly = (
        "UID:h\r\nSUMMARY:Hourly\r\nDTSTART:20261001T000000Z\r\nDURATION:PT10M\r\nRRULE:FREQ=HOURLY"
    )
    expansion = expand(ics(hourly), SINCE, timedelta(days=14))
    at = utc(2026, 10, 10, 0, 5)
    chosen, refresh = expansion.near(at)
    assert chosen[0] == Occurrence(utc(2026, 10, 10), utc(2026, 10, 10, 0, 10), "Hourly")
    # Two days of them, the running one first, and the next one after them.
    assert len(chosen) == 50 and chosen[-1].start == utc(2026, 10, 12, 1)
    assert refresh == utc(2026, 10, 12, 2)
    every_minute = (
        "UID:m\r\nSUMMARY:M\r\nDTSTART:20261001T000000Z\r\nDURATION:PT30S\r\nRRULE:FREQ=MINUTELY"
    )
    chosen, refresh = expand(ics(every_minute), SINCE, timedelta(hours=3)).near(SINCE)
    assert len(chosen) == NEAR_MOST and refresh == SINCE + timedelta(minutes=NEAR_MOST)
    assert expansion.near(utc(2027, 6, 1)) == ((), expansion.until)


def test_a_calendar_window_is_maintenance_named_by_its_summary() -> None:
    expansion = expand(ics(WEEKLY, MOVED), SINCE)
    at = utc(2026, 10, 17, 1)
    occurrences, refresh = expansion.near(at)
    ev = evaluate(Directives(), Schedule(), None, 0, at, calendar=Near(occurrences, refresh))
    assert ev.maintenance.active and ev.maintenance.source == CALENDAR_SOURCE
    assert ev.inputs.maintenance == (
        "Weekly DB patching (PRESENCE_MAINTENANCE_CALENDAR "
        "'2026-10-17T00:00:00+00:00/2026-10-17T02:00:00+00:00')"
    )
    assert ev.maintenance.ends == utc(2026, 10, 17, 2)
    assert ev.maintenance.next_start == utc(2026, 10, 31, 4)
    assert ev.maintenance.next_reason is not None
    assert ev.maintenance.next_reason.startswith("Weekly DB patching (moved to 05:00)")
    after = evaluate(Directives(), Schedule(), None, 0, utc(2026, 10, 17, 2),
                     calendar=Near(*expansion.near(utc(2026, 10, 17, 2))))  # fmt: skip
    assert not after.maintenance.active


def test_a_calendar_that_cannot_be_used_fails_closed() -> None:
    ev = evaluate(
        Directives(), Schedule(), None, 0, SINCE, calendar=Near(error="invalid calendar x")
    )
    assert ev.maintenance.active and ev.inputs.maintenance == "invalid calendar x"
    assert ev.maintenance.source == CALENDAR_SOURCE


async def test_the_worker_expands_and_refuses_like_the_library() -> None:
    expansion = await expand_in_worker(ics(WEEKLY, MOVED), SINCE)
    assert expansion == expand(ics(WEEKLY, MOVED), SINCE)
    with pytest.raises(CalendarError, match="not an iCalendar file"):
        await expand_in_worker(b"garbage", SINCE)


async def test_a_worker_that_takes_too_long_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    # An RRULE whose every candidate fails its filters: the library searches for years.
    endless = (
        "UID:e\r\nDTSTART:20261001T000000Z\r\nDURATION:PT1S\r\n"
        "RRULE:FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30"
    )
    monkeypatch.setattr(calendar_source, "WORKER_TIMEOUT", 0.5)
    started = asyncio.get_running_loop().time()
    with pytest.raises(CalendarError, match=r"took longer than 0.5s \(an RRULE without end\?\)"):
        await expand_in_worker(ics(endless), SINCE)
    assert asyncio.get_running_loop().time() - started < 5


async def test_the_file_is_read_again_when_it_changes_and_its_last_good_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "maintenance.ics"
    path.write_bytes(ics(WEEKLY))
    # A wall clock that moves a second per reading: an expansion redone without cause would
    # list from a new instant, differ, and count as a change.
    ticks = iter(range(10**6))
    source = CalendarFile(path, Clock(wall=lambda: SINCE + timedelta(seconds=next(ticks))))
    assert source.near(SINCE).error == f"calendar {path} not read yet: fails closed"
    assert await source.load() and source.version == 1
    assert source.expansion is not None and len(source.expansion.occurrences) == 3
    assert not await source.load(), "unchanged: not expanded again"
    # A ConfigMap update: a new file swapped in.
    swapped = tmp_path / "new.ics"
    swapped.write_bytes(ics(WEEKLY, MOVED))
    os.replace(swapped, path)
    assert await source.load() and source.version == 2
    # Garbage: fails closed, reported.
    path.write_bytes(b"BEGIN:VCALENDAR\r\nnonsense")
    os.utime(path, ns=(1, 1))
    assert await source.load()
    assert source.failed is not None and source.near(SINCE).error is not None
    assert source.near(SINCE).error.startswith(f"invalid calendar {path}: not an iCalendar")  # type: ignore[union-attr]
    # Fixed, then gone: the last good stays, and says why.
    path.write_bytes(ics(WEEKLY))
    assert await source.load() and source.failed is None
    path.unlink()
    assert not await source.load()
    assert source.stale == f"cannot read {path}: No such file or directory; the last good kept"
    assert source.near(utc(2026, 10, 17, 1)).occurrences[0].summary == "Weekly DB patching"
    report = source.report()
    assert report["windows"] == 3 and report["error"] is None and "No such file" in report["stale"]
    # A FIFO is not read (it could block for ever).
    os.mkfifo(path)
    assert not await source.load() and "not a regular file" in str(source.stale)
    json.dumps(report)
