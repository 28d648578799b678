"""Our annotation keys and their values: valid forms, and every invalid one reported."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.core.annotations import read_directives
from controller.core.schedule import Always, Schedule, Until
from controller.core.types import Presence

P = "presence-controller/"


def directives(broken: dict[str, str] | None = None, **values: str):  # type: ignore[no-untyped-def]
    return read_directives({P + k.replace("_", "-"): v for k, v in values.items()}, broken or {}, P)


def test_nothing_set() -> None:
    d = directives()
    assert (d.maintenance, d.maintenance_error, d.force, d.force_error, d.errors) == (
        None,
        None,
        None,
        None,
        (),
    )


@pytest.mark.parametrize(
    ("value", "schedule"),
    [
        ("true", Schedule((Always(),))),
        ("on", Schedule((Always(),))),
        ("false", Schedule()),
        ("", Schedule()),
        ("2026-12-24T00:00:00Z", Schedule((Until(datetime(2026, 12, 24, tzinfo=UTC)),))),
    ],
)
def test_maintenance_values(value: str, schedule: Schedule) -> None:
    d = directives(maintenance=value)
    assert d.maintenance == schedule and d.maintenance_error is None
    assert d.maintenance_spec == value


def test_invalid_maintenance_is_an_error_naming_the_key() -> None:
    d = directives(maintenance="tomorrow-ish")
    assert d.maintenance is None
    assert d.maintenance_error == (
        "invalid annotation presence-controller/maintenance: window 'tomorrow-ish': "
        "expected a weekly window like 'Mon-Fri 22:00-06:00 Europe/Berlin'"
    )
    assert d.errors == (d.maintenance_error,)


def test_an_unreadable_maintenance_line_is_an_error_too() -> None:
    d = read_directives({}, {P + "maintenance": "an invalid escape at character 3"}, P)
    assert d.maintenance_error == (
        "invalid annotation presence-controller/maintenance: an invalid escape at character 3"
    )


def test_reason_is_normalised_and_cut() -> None:
    assert directives(maintenance_reason="  DB\n migration  ").maintenance_reason == "DB migration"
    assert len(directives(maintenance_reason="x" * 1000).maintenance_reason or "") == 200
    assert directives(maintenance_reason="   ").maintenance_reason is None


@pytest.mark.parametrize(
    ("force", "until", "presence", "until_at"),
    [
        ("available", None, Presence.AVAILABLE, None),
        ("Unavailable", None, Presence.UNAVAILABLE, None),
        (
            " available ",
            "2026-12-24T00:00:00+01:00",
            Presence.AVAILABLE,
            datetime(2026, 12, 23, 23, tzinfo=UTC),
        ),
    ],
)
def test_force(
    force: str, until: str | None, presence: Presence, until_at: datetime | None
) -> None:
    values = {"force": force} | ({"force_until": until} if until else {})
    d = directives(**values)
    assert (d.force, d.force_until, d.force_error) == (presence, until_at, None)


@pytest.mark.parametrize(
    ("values", "error"),
    [
        (
            {"force": "online"},
            "invalid annotation presence-controller/force: 'online' is not available or "
            "unavailable; ignored",
        ),
        ({"force": "unknown"}, "'unknown' is not available or unavailable"),
        (
            {"force": "available", "force_until": "soon"},
            "invalid annotation presence-controller/force-until: expected an RFC 3339 "
            "timestamp like",
        ),
        ({"force": "available", "force_until": "2026-12-24"}, "needs a UTC offset"),
    ],
)
def test_invalid_force_is_ignored_and_reported(values: dict[str, str], error: str) -> None:
    d = directives(**values)
    assert d.force is None
    assert d.force_error is not None and error in d.force_error


def test_other_prefixes_are_not_ours() -> None:
    d = read_directives({"other/maintenance": "true", "maintenance": "true"}, {}, P)
    assert d.maintenance is None
