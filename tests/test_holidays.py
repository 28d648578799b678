"""Online hours closed on public holidays (PRESENCE_ONLINE_HOURS_HOLIDAYS): the holidays of each
region by name, whole local days in the online hours' zone, across DST, and the next change
found exactly (a property over two years)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.annotations import Directives
from controller.core.holidays import HolidayError, OnlineHours, parse_regions, single_zone
from controller.core.overrides import evaluate
from controller.core.schedule import Schedule
from controller.core.schedule_grammar import parse

BERLIN_HOURS = "Mon-Fri 09:00-17:00 Europe/Berlin"


def hours(regions: str = "DE-BY,AT", spec: str = BERLIN_HOURS) -> OnlineHours:
    schedule = parse(spec)
    return OnlineHours(schedule, parse_regions(regions), single_zone(schedule))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_holidays_are_named_with_the_regions_that_keep_them() -> None:
    h = hours()
    assert h.holiday_on(date(2027, 1, 6)) == "Epiphany (DE-BY, AT)"
    assert h.holiday_on(date(2027, 10, 26)) == "National Day (AT)"
    assert h.holiday_on(date(2027, 3, 26)) == "Good Friday (DE-BY)"  # not one in Austria
    assert h.holiday_on(date(2027, 1, 7)) is None
    assert h.holidays_text == "DE-BY,AT"


def test_a_holiday_closes_the_online_hours_all_day_and_they_open_the_next_working_day() -> None:
    h = hours("DE-BY")
    epiphany = utc(2027, 1, 6, 10)  # a Wednesday, 11:00 in Berlin
    assert not h.inside(epiphany) and h.holiday(epiphany) == "Epiphany (DE-BY)"
    assert h.inside(utc(2027, 1, 5, 10)) and h.holiday(utc(2027, 1, 5, 10)) is None
    assert h.next_change(utc(2027, 1, 5, 12)) == utc(2027, 1, 5, 16)  # 17:00 CET
    assert h.next_change(utc(2027, 1, 5, 16)) == utc(2027, 1, 7, 8)  # Thursday 09:00 CET


def test_the_holiday_is_the_local_day_of_the_online_hours_zone() -> None:
    # New Year's Day in Berlin begins at 23:00 UTC on Dec 31: a window open at that hour closes.
    h = hours("DE-BY", "Mon-Sun 00:00-24:00 Europe/Berlin")
    assert h.inside(utc(2026, 12, 31, 22, 59))
    assert not h.inside(utc(2026, 12, 31, 23, 0))
    assert h.next_change(utc(2026, 12, 31, 12)) == utc(2026, 12, 31, 23)
    assert h.next_change(utc(2026, 12, 31, 23)) == utc(2027, 1, 1, 23)


def test_easter_across_the_spring_forward() -> None:
    # 2027: Good Friday March 26 (CET), clocks change on Sunday March 28, Easter Monday March 29:
    # closed from Thursday 17:00 CET to Tuesday 09:00 CEST, which is 07:00 UTC.
    h = hours("DE-BY")
    assert h.next_change(utc(2027, 3, 25, 12)) == utc(2027, 3, 25, 16)
    assert h.next_change(utc(2027, 3, 25, 16)) == utc(2027, 3, 30, 7)
    assert h.holiday(utc(2027, 3, 29, 7)) == "Easter Monday (DE-BY)"


def test_the_reason_names_the_holiday() -> None:
    ev = evaluate(Directives(), Schedule(), hours("DE-BY"), 0, utc(2027, 1, 6, 10))
    assert ev.online_hours.holiday == "Epiphany (DE-BY)"
    assert ev.online_hours.holidays == "DE-BY" and not ev.online_hours.inside
    assert ev.inputs.outside_online_hours == (
        f"public holiday Epiphany (DE-BY), {BERLIN_HOURS!r}, back at 2027-01-07T08:00:00+00:00"
    )
    assert ev.valid_until == utc(2027, 1, 7, 8)


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        ("DE-XX", "unknown subdivision 'DE-XX': DE has BB, BE, BW, BY"),
        ("XX", "unknown country 'XX'"),
        ("", "expected country or subdivision codes"),
        (",".join(["AT"] * 21), "21 regions: at most 20"),
    ],
)
def test_unknown_codes_are_refused_with_what_is_known(codes: str, message: str) -> None:
    with pytest.raises(HolidayError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_regions(codes)


def test_codes_are_read_case_insensitively_and_once() -> None:
    assert [str(r) for r in parse_regions("de-by, AT ,de-BY")] == ["DE-BY", "AT"]


def test_holidays_need_one_zone() -> None:
    with pytest.raises(HolidayError, match="found no weekly window"):
        single_zone(parse("2027-01-01T00:00:00Z/P1D"))
    assert single_zone(parse("Mon-Fri 09:00-12:00 UTC; Mon-Fri 13:00-17:00 UTC")) == "UTC"


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2 * 365 * 24 * 4))
def test_the_next_change_is_a_change_and_nothing_changes_before_it(quarters: int) -> None:
    h = hours()
    at = utc(2026, 1, 1) + timedelta(minutes=15 * quarters)
    state = h.inside(at)
    change = h.next_change(at)
    assert change is not None and change > at
    assert h.inside(change) is not state
    step = at
    while step < change:  # every quarter hour up to it (windows start on quarter hours)
        assert h.inside(step) is state, step
        step += timedelta(minutes=15)
