"""The window grammar: every form, every error, DST gaps and folds, and two properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.schedule import Always, Interval, Schedule, ScheduleError, Until, Weekly
from controller.core.schedule_grammar import parse

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
H = 3600


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def is_active(spec: str, at: datetime) -> bool:
    return parse(spec).active(at) is not None


# The forms.


@pytest.mark.parametrize("text", ["true", "on", "yes", "TRUE", " Yes "])
def test_true_words(text: str) -> None:
    assert parse(text) == Schedule((Always(),))


@pytest.mark.parametrize("text", ["false", "off", "no", "", "  ", "OFF"])
def test_false_words(text: str) -> None:
    schedule = parse(text)
    assert schedule == Schedule() and not schedule
    assert schedule.active(utc(2026, 1, 1)) is None and str(schedule) == "false"


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("2026-12-24T00:00:00Z", Until(utc(2026, 12, 24))),
        ("2026-12-24T01:00:00+01:00", Until(utc(2026, 12, 24))),
        ("2026-12-24 00:00:00Z", Until(utc(2026, 12, 24))),
        (
            "2026-12-24T00:00:00Z/2026-12-26T00:00:00Z",
            Interval(utc(2026, 12, 24), utc(2026, 12, 26)),
        ),
        ("2026-12-24T22:00:00+01:00/PT4H", Interval(utc(2026, 12, 24, 21), utc(2026, 12, 25, 1))),
        ("2026-12-24T00:00:00Z/P1DT12H", Interval(utc(2026, 12, 24), utc(2026, 12, 25, 12))),
        ("2026-12-24T00:00:00Z/pt30m", Interval(utc(2026, 12, 24), utc(2026, 12, 24, 0, 30))),
        ("Sat 02:00-04:00 Europe/Berlin", Weekly(frozenset({5}), 2 * H, 4 * H, "Europe/Berlin")),
        ("Mon-Fri 22:00-06:00 UTC", Weekly(frozenset(range(5)), 22 * H, 6 * H, "UTC")),
        ("Sat,Sun 00:00-24:00 Asia/Riyadh", Weekly(frozenset({5, 6}), 0, 24 * H, "Asia/Riyadh")),
        ("Fri-Mon 9:30-17:00 UTC", Weekly(frozenset({4, 5, 6, 0}), 9 * H + 1800, 17 * H, "UTC")),
        ("mon, WED-thu 01:00-02:00 UTC", Weekly(frozenset({0, 2, 3}), H, 2 * H, "UTC")),
    ],
)
def test_window_forms(text: str, window: object) -> None:
    assert parse(text) == Schedule((window,))  # type: ignore[arg-type]


def test_several_windows() -> None:
    schedule = parse("Sat 02:00-04:00 UTC; 2026-12-24T00:00:00Z/PT1H ;2027-01-01T00:00:00Z")
    assert [type(w) for w in schedule.windows] == [Weekly, Interval, Until]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "maybe",
            "window 'maybe': expected a weekly window like 'Mon-Fri 22:00-06:00 Europe/Berlin'",
        ),
        (
            "Mon-Fry 22:00-06:00 UTC",
            "unknown day 'Fry': expected Mon, Tue, Wed, Thu, Fri, Sat, Sun",
        ),
        ("Sat 02:00-04:00", "expected a time zone after the times"),
        ("Sat 02:00-04:00 Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("Sat 02:00 UTC", "expected a time range HH:MM-HH:MM, got '02:00'"),
        ("Sat 25:00-26:00 UTC", "invalid time '25:00': expected HH:MM from 00:00 to 23:59"),
        ("Sat 24:00-02:00 UTC", "invalid time '24:00': expected HH:MM from 00:00 to 23:59"),
        ("Sat 01:00-24:30 UTC", "invalid time '24:30': expected HH:MM from 00:00 to 24:00"),
        ("Sat 2-4 UTC", "invalid time '2'"),
        ("Sat 02:00-02:00 UTC", "is empty: use 00:00-24:00 for a whole day"),
        ("2026-12-24", "timestamp '2026-12-24' needs a UTC offset such as Z or +01:00"),
        ("2026-12-24T00:00:00", "needs a UTC offset"),
        ("2026-13-24T00:00:00Z", "expected an RFC 3339 timestamp like 2026-12-24T22:00:00Z"),
        ("2026-12-24T00:00:00Z/2026-12-23T00:00:00Z", "the interval ends before it starts"),
        ("2026-12-24T00:00:00Z/PT0S", "the interval ends before it starts"),
        ("2026-12-24T00:00:00Z/P1M", "uses months or years, which vary in length"),
        ("2026-12-24T00:00:00Z/PTxH", "invalid ISO 8601 duration 'PTxH'"),
        ("2026-12-24T00:00:00Z/tomorrow", "expected an ISO 8601 interval end or a duration"),
        ("true; Sat 01:00-02:00 UTC", "window 1 of 2 'true': 'true' must stand alone"),
        ("Sat 01:00-02:00 UTC;", "window 2 of 2 is empty: remove the extra ';'"),
        ("Sat 01:00-02:00 UTC; Sun 9-10 UTC", "window 2 of 2 'Sun 9-10 UTC': invalid time '9'"),
    ],
)
def test_errors_name_the_window_and_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse(text)
    assert message in str(caught.value)


# Activity, boundaries, wraps.


@pytest.mark.parametrize(
    ("spec", "at", "active"),
    [
        ("2026-12-24T00:00:00Z", utc(2026, 12, 23, 23, 59), True),
        ("2026-12-24T00:00:00Z", utc(2026, 12, 24), False),  # half-open
        ("2026-12-24T00:00:00Z/PT1H", utc(2026, 12, 24), True),
        ("2026-12-24T00:00:00Z/PT1H", utc(2026, 12, 24, 1), False),
        # 2026-11-27 is a Friday.
        ("Fri 22:00-06:00 UTC", utc(2026, 11, 27, 21, 59), False),
        ("Fri 22:00-06:00 UTC", utc(2026, 11, 27, 22), True),
        ("Fri 22:00-06:00 UTC", utc(2026, 11, 28, 5, 59), True),  # Saturday morning
        ("Fri 22:00-06:00 UTC", utc(2026, 11, 28, 6), False),
        ("Fri 22:00-06:00 UTC", utc(2026, 11, 28, 22), False),  # not on Saturday night
        # Sunday night into Monday: the wrap over the week end.
        ("Sun 23:00-01:00 UTC", utc(2026, 11, 30, 0, 30), True),
        ("Sat,Sun 00:00-24:00 UTC", utc(2026, 11, 29, 23, 59, 59), True),
        ("Sat,Sun 00:00-24:00 UTC", utc(2026, 11, 30), False),
        ("Fri-Mon 10:00-11:00 UTC", utc(2026, 11, 30, 10, 30), True),  # Monday
        ("Fri-Mon 10:00-11:00 UTC", utc(2026, 12, 1, 10, 30), False),  # Tuesday
        # Local time: 10:00 in Riyadh (UTC+3) is 07:00 UTC.
        ("Fri 10:00-11:00 Asia/Riyadh", utc(2026, 11, 27, 7), True),
        ("Fri 10:00-11:00 Asia/Riyadh", utc(2026, 11, 27, 10), False),
    ],
)
def test_active(spec: str, at: datetime, active: bool) -> None:
    assert is_active(spec, at) is active


def changes(spec: str, start: datetime, count: int) -> list[tuple[datetime, bool]]:
    schedule, out, t = parse(spec), [], start
    for _ in range(count):
        nxt = schedule.next_change(t)
        assert nxt is not None
        out.append((nxt, schedule.active(nxt) is not None))
        t = nxt
    return out


def test_next_change_walks_the_weekly_boundaries() -> None:
    assert changes("Mon-Fri 22:00-06:00 UTC", utc(2026, 11, 27, 12), 4) == [
        (utc(2026, 11, 27, 22), True),  # Fri 22:00
        (utc(2026, 11, 28, 6), False),  # Sat 06:00
        (utc(2026, 11, 30, 22), True),  # Mon 22:00 (nothing on the weekend)
        (utc(2026, 12, 1, 6), False),
    ]


def test_adjacent_windows_merge() -> None:
    assert changes("Sat 00:00-24:00 UTC; Sun 00:00-12:00 UTC", utc(2026, 11, 27), 2) == [
        (utc(2026, 11, 28), True),
        (utc(2026, 11, 29, 12), False),
    ]


def test_next_change_of_constant_schedules() -> None:
    at = utc(2026, 1, 1)
    assert parse("true").next_change(at) is None
    assert parse("false").next_change(at) is None
    assert parse("Mon-Sun 00:00-24:00 UTC").next_change(at) is None
    assert parse("2026-12-24T00:00:00Z").next_change(at) == utc(2026, 12, 24)


def test_weekly_changes_masked_by_a_long_interval_are_found_after_it() -> None:
    schedule = parse("2026-01-01T00:00:00Z/2026-03-01T00:00:00Z; Sun 00:00-24:00 UTC")
    # 2026-03-01 is a Sunday: the interval hands over to the weekly window, active till Monday.
    assert schedule.next_change(utc(2026, 1, 5)) == utc(2026, 3, 2)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse("true").active(datetime(2026, 1, 1))


# Daylight saving time: `Sun 02:30-03:30` on the switch days.


def test_spring_gap_in_berlin_shortens_the_window() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 local never happens.
    got = changes("Sun 02:30-03:30 Europe/Berlin", utc(2026, 3, 28), 2)
    assert got == [(utc(2026, 3, 29, 1), True), (utc(2026, 3, 29, 1, 30), False)]
    assert [t.astimezone(BERLIN).strftime("%b %d %H:%M %Z") for t, _ in got] == [
        "Mar 29 03:00 CEST",
        "Mar 29 03:30 CEST",
    ]


def test_autumn_fold_in_berlin_repeats_part_of_the_window() -> None:
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC); 02:00-03:00 happens twice.
    got = changes("Sun 02:30-03:30 Europe/Berlin", utc(2026, 10, 24), 4)
    assert [(t.astimezone(BERLIN).strftime("%b %d %H:%M %Z"), on) for t, on in got] == [
        ("Oct 25 02:30 CEST", True),
        ("Oct 25 02:00 CET", False),  # the clock goes back out of the window
        ("Oct 25 02:30 CET", True),  # and runs into it again
        ("Oct 25 03:30 CET", False),
    ]


def test_spring_gap_in_new_york() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
    got = changes("Sun 02:30-03:30 America/New_York", utc(2026, 3, 7), 2)
    assert [(t.astimezone(NEW_YORK).strftime("%b %d %H:%M %Z"), on) for t, on in got] == [
        ("Mar 08 03:00 EDT", True),
        ("Mar 08 03:30 EDT", False),
    ]


def test_autumn_fold_in_new_york() -> None:
    # 2026-11-01: 02:00 EDT falls back to 01:00 EST (06:00 UTC).
    got = changes("Sun 01:30-02:30 America/New_York", utc(2026, 10, 31), 4)
    assert [(t.astimezone(NEW_YORK).strftime("%b %d %H:%M %Z"), on) for t, on in got] == [
        ("Nov 01 01:30 EDT", True),
        ("Nov 01 01:00 EST", False),
        ("Nov 01 01:30 EST", True),
        ("Nov 01 02:30 EST", False),
    ]


def test_a_window_wholly_inside_the_gap_never_happens_that_day() -> None:
    schedule = parse("Sun 02:10-02:50 Europe/Berlin")
    nxt = schedule.next_change(utc(2026, 3, 28))
    assert nxt == datetime(2026, 4, 5, 2, 10, tzinfo=BERLIN)


# Properties.

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Riyadh", "Australia/Lord_Howe"]
instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
weekly = st.builds(
    lambda days, start, length, zone: Weekly(
        frozenset(days), start, (start + length) % 86400 or 86400, zone
    ),
    st.sets(st.integers(0, 6), min_size=1),
    st.integers(0, 47).map(lambda half_hours: half_hours * 1800),
    st.integers(1, 47).map(lambda half_hours: half_hours * 1800),
    st.sampled_from(ZONES),
)
absolute = st.tuples(instants, st.integers(60, 60 * 86400)).map(
    lambda t: Interval(t[0], t[0] + timedelta(seconds=t[1]))
)
until = instants.map(Until)
schedules = st.lists(st.one_of(weekly, weekly, absolute, until), min_size=1, max_size=4).map(
    lambda ws: Schedule(tuple(ws))
)


@settings(max_examples=150, deadline=None)
@given(schedules, instants, st.floats(0.0, 1.0, exclude_max=True, exclude_min=True))
def test_active_is_constant_until_next_change(
    schedule: Schedule, at: datetime, fraction: float
) -> None:
    state = schedule.active(at) is not None
    nxt = schedule.next_change(at)
    if nxt is None:
        for days in (1, 7, 30):
            assert (schedule.active(at + timedelta(days=days)) is not None) is state
        return
    assert nxt > at
    assert (schedule.active(nxt) is not None) is not state
    inside = at + (nxt - at) * fraction
    if inside < nxt:  # a fraction near 1 can round onto nxt at microsecond resolution
        assert (schedule.active(inside) is not None) is state
    assert (schedule.active(nxt - timedelta(microseconds=1)) is not None) is state


@settings(max_examples=200, deadline=None)
@given(schedules)
def test_format_then_parse_round_trips(schedule: Schedule) -> None:
    assert parse(str(schedule)) == schedule


def test_activations_list_periods_from_an_instant() -> None:
    schedule = parse("Fri 22:00-06:00 UTC")
    at = utc(2026, 11, 28, 1)  # Saturday 01:00: inside Friday night's window
    assert schedule.activations(at, 2) == [
        (at, utc(2026, 11, 28, 6), schedule.windows[0]),
        (utc(2026, 12, 4, 22), utc(2026, 12, 5, 6), schedule.windows[0]),
    ]
    assert parse("true").activations(at, 3) == [(at, None, Always())]
    assert parse("off").activations(at, 3) == []


# The lazy search against a brute-force minute scan, DST gaps and folds included.

gap_prone = st.builds(
    Weekly,
    days=st.frozensets(st.integers(0, 6), min_size=1, max_size=3),
    start=st.sampled_from([0, 3600, 2 * 3600, int(2.5 * 3600), 3 * 3600, 22 * 3600]),
    end=st.sampled_from([3600, 2 * 3600, 3 * 3600, int(3.5 * 3600), 24 * 3600]),
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "UTC"]),
).filter(lambda w: w.start != w.end)
dst_seasons = st.sampled_from(
    [utc(2026, 3, 1), utc(2026, 3, 20), utc(2026, 10, 20), utc(2026, 10, 30), utc(2026, 11, 1)]
)


def brute_next_change(schedule: Schedule, after: datetime, days: int) -> datetime | None:
    """The first whole minute after `after` where activity differs (windows start on minutes)."""
    state = schedule.active(after) is not None
    first = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for minute in range(days * 1440):
        at = first + timedelta(minutes=minute)
        if (schedule.active(at) is not None) is not state:
            return at
    return None


@settings(max_examples=40, deadline=None)
@given(st.lists(gap_prone, min_size=1, max_size=2), dst_seasons, st.integers(0, 10 * 1440))
def test_next_change_matches_a_minute_scan(
    windows: list[Weekly], season: datetime, minutes: int
) -> None:
    schedule = Schedule(tuple(windows))
    after = season + timedelta(minutes=minutes)
    expected = brute_next_change(schedule, after, 15)
    assert schedule.next_change(after) == expected


# Each zone's 2026 gap and fold (the Saturday before, 00:00 UTC), and local times before, inside
# and after its skipped or repeated stretch (Lord Howe moves by 30 minutes, at 02:00).
TRANSITIONS = {
    "Europe/Berlin": ([utc(2026, 3, 28), utc(2026, 10, 24)], [90, 120, 150, 180, 210]),
    "America/New_York": ([utc(2026, 3, 7), utc(2026, 10, 31)], [30, 60, 90, 120, 150, 180]),
    "Australia/Lord_Howe": ([utc(2026, 4, 4), utc(2026, 10, 3)], [90, 105, 120, 135, 150]),
}


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_next_change_matches_a_minute_scan_across_gaps_and_folds(data: st.DataObject) -> None:
    """Windows with edges on the skipped or repeated stretch itself, asked within two days of
    the change: a missed second instant of a repeated time shows up as a change a week late."""
    zone = data.draw(st.sampled_from(sorted(TRANSITIONS)))
    saturdays, clocks = TRANSITIONS[zone]
    edges = st.sampled_from(clocks).map(lambda minutes: minutes * 60)
    one = st.builds(Weekly, st.just(frozenset({5, 6})), edges, edges, st.just(zone))
    windows = data.draw(st.lists(one.filter(lambda w: w.start != w.end), min_size=1, max_size=2))
    schedule = Schedule(tuple(windows))
    after = data.draw(st.sampled_from(saturdays)) + timedelta(
        minutes=data.draw(st.integers(0, 600))
    )
    # Every change in the next nine days, by a minute scan, against a walk of next_change().
    first = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    scanned, state = [], schedule.active(after) is not None
    for minute in range(9 * 1440):
        at = first + timedelta(minutes=minute)
        if (schedule.active(at) is not None) is not state:
            scanned.append(at)
            state = not state
    walked, at = [], after
    while (nxt := schedule.next_change(at)) is not None and nxt < first + timedelta(days=9):
        walked.append(nxt)
        at = nxt
    assert walked == scanned


def test_a_window_that_falls_into_a_dst_gap_once_is_found_the_week_after() -> None:
    """The spring-forward Sunday has no 02:00-03:00: a search that stopped there (8 days) and
    reported no change would freeze maintenance for good."""
    for zone, gap_sunday in (("Europe/Berlin", (2026, 3, 29)), ("America/New_York", (2026, 3, 8))):
        schedule = parse(f"Sun 02:00-03:00 {zone}")
        after = datetime(*gap_sunday, tzinfo=ZoneInfo(zone)) - timedelta(days=6)
        start = schedule.next_change(after)
        assert start is not None
        local = start.astimezone(ZoneInfo(zone))
        assert (local.date() - after.date()).days == 13 and (local.hour, local.minute) == (2, 0)


def test_search_cost_does_not_depend_on_how_far_the_spec_reaches() -> None:
    weekly = "; ".join(f"{d} 02:00-04:00 Europe/Berlin" for d in ("Mon", "Wed", "Fri", "Sun"))
    far = parse(f"2026-01-01T00:00:00Z/2036-01-01T00:00:00Z; {weekly}")
    assert far.next_change(utc(2026, 11, 25)) == utc(2036, 1, 1)
