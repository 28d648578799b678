"""Maintenance, force and online hours evaluated at an instant; and cached results stay right."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.annotations import Directives, read_directives
from controller.core.holidays import OnlineHours
from controller.core.overrides import CONFIG_SOURCE, evaluate
from controller.core.schedule import Schedule
from controller.core.schedule_grammar import parse
from controller.core.types import Presence

P = "presence-controller/"
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)  # a Friday
NONE = Schedule()


def d(**values: str) -> Directives:
    return read_directives({P + k.replace("_", "-"): v for k, v in values.items()}, {}, P)


def test_nothing_configured_means_health_decides() -> None:
    ev = evaluate(d(), NONE, None, 0, NOW)
    assert ev.inputs.maintenance is None and ev.inputs.force is None
    assert ev.inputs.outside_online_hours is None and ev.valid_until is None
    assert not ev.maintenance.active and ev.online_hours.inside


def test_annotation_maintenance_with_its_reason() -> None:
    ev = evaluate(d(maintenance="true", maintenance_reason="DB migration"), NONE, None, 0, NOW)
    assert (
        ev.inputs.maintenance == "DB migration (annotation presence-controller/maintenance 'true')"
    )
    assert ev.maintenance.source == "annotation presence-controller/maintenance"
    assert ev.maintenance.ends is None


def test_maintenance_until_ends_by_itself() -> None:
    ev = evaluate(d(maintenance="2026-11-27T13:00:00Z"), NONE, None, 0, NOW)
    assert ev.maintenance.active and ev.maintenance.ends == NOW + timedelta(hours=1)
    assert ev.valid_until == NOW + timedelta(hours=1)
    later = evaluate(d(maintenance="2026-11-27T13:00:00Z"), NONE, None, 0, NOW + timedelta(hours=1))
    assert not later.maintenance.active and later.inputs.maintenance is None


def test_invalid_maintenance_fails_closed() -> None:
    ev = evaluate(d(maintenance="Sat 2-4 UTC"), NONE, None, 0, NOW)
    assert ev.maintenance.active
    assert ev.inputs.maintenance == (
        "invalid annotation presence-controller/maintenance: window 'Sat 2-4 UTC': "
        "invalid time '2': expected HH:MM from 00:00 to 23:59"
    )
    assert ev.maintenance.errors == (ev.inputs.maintenance,)


def test_configured_windows_and_the_next_one() -> None:
    config = parse("Fri 18:00-20:00 UTC")
    ev = evaluate(d(), config, None, 0, NOW)
    assert not ev.maintenance.active
    assert (ev.maintenance.next_start, ev.maintenance.next_end) == (
        NOW.replace(hour=18),
        NOW.replace(hour=20),
    )
    ev = evaluate(d(), config, None, 0, NOW.replace(hour=19))
    assert ev.inputs.maintenance == f"{CONFIG_SOURCE} 'Fri 18:00-20:00 UTC'"
    assert ev.maintenance.ends == NOW.replace(hour=20)
    assert ev.maintenance.next_start == NOW.replace(hour=18) + timedelta(days=7)


def test_lead_time_drains_before_a_scheduled_window() -> None:
    config = parse("Fri 18:00-20:00 UTC")
    before = evaluate(d(), config, None, 300, NOW.replace(hour=17, minute=54))
    assert not before.maintenance.active
    assert before.valid_until == NOW.replace(hour=17, minute=55)
    draining = evaluate(d(), config, None, 300, NOW.replace(hour=17, minute=55))
    assert draining.maintenance.active and draining.maintenance.draining
    assert draining.inputs.maintenance == (
        "draining 300s before window 'Fri 18:00-20:00 UTC' (PRESENCE_MAINTENANCE_WINDOWS) "
        "starts at 2026-11-27T18:00:00+00:00"
    )


def test_annotation_windows_drain_too_and_the_annotation_wins_the_label() -> None:
    ev = evaluate(
        d(maintenance="Fri 18:00-20:00 UTC"),
        parse("Fri 18:00-19:00 UTC"),
        None,
        0,
        NOW.replace(hour=18),
    )
    assert ev.maintenance.source == "annotation presence-controller/maintenance"
    assert ev.maintenance.ends == NOW.replace(hour=20)


def test_force_and_its_expiry() -> None:
    forced = d(force="available", force_until="2026-11-27T13:00:00Z")
    ev = evaluate(forced, NONE, None, 0, NOW)
    assert ev.inputs.force is Presence.AVAILABLE
    assert (
        ev.inputs.force_reason
        == "annotation presence-controller/force until 2026-11-27T13:00:00+00:00"
    )
    # Redone when the ForceExpiring notice is due, ten minutes before the end.
    assert ev.valid_until == NOW + timedelta(minutes=50) and ev.notices == ()
    expiring = evaluate(forced, NONE, None, 0, NOW + timedelta(minutes=50))
    assert [(n.reason, n.message) for n in expiring.notices] == [
        (
            "ForceExpiring",
            "force available expires at 2026-11-27T13:00:00+00:00 (in 10m00s): "
            "annotation presence-controller/force until 2026-11-27T13:00:00+00:00",
        )
    ]
    assert expiring.valid_until == NOW + timedelta(hours=1)
    expired = evaluate(forced, NONE, None, 0, NOW + timedelta(hours=1))
    assert expired.inputs.force is None and expired.override.expired


def test_invalid_force_is_reported_not_applied() -> None:
    ev = evaluate(d(force="online"), NONE, None, 0, NOW)
    assert ev.inputs.force is None
    assert ev.override.error is not None and ev.maintenance.errors == (ev.override.error,)


@pytest.mark.parametrize(("hour", "inside"), [(8, False), (9, True), (17, True), (18, False)])
def test_online_hours(hour: int, inside: bool) -> None:
    hours = OnlineHours(parse("Mon-Fri 09:00-18:00 UTC"))
    ev = evaluate(d(), NONE, hours, 0, NOW.replace(hour=hour))
    assert ev.online_hours.inside is inside
    if not inside:
        assert ev.inputs.outside_online_hours is not None
        assert ev.inputs.outside_online_hours.startswith("'Mon-Fri 09:00-18:00 UTC', back at ")


def test_file_errors_are_reported_with_maintenance() -> None:
    ev = evaluate(d(), NONE, None, 0, NOW, ("annotations file unreadable",))
    assert ev.maintenance.errors == ("annotations file unreadable",)


specs = st.sampled_from(
    ["", "Fri 18:00-20:00 UTC", "Sat,Sun 00:00-24:00 Europe/Berlin", "2026-11-28T00:00:00Z/PT3H"]
)


@settings(max_examples=100, deadline=None)
@given(
    specs,
    specs,
    st.sampled_from([None, "Mon-Fri 09:00-18:00 America/New_York"]),
    st.sampled_from([0, 600, 7200]),
    st.integers(0, 14 * 86400),
    st.floats(0, 1),
)
def test_a_result_holds_until_valid_until(
    annotation: str, config: str, hours: str | None, lead: int, offset: int, fraction: float
) -> None:
    directives = d(maintenance=annotation, force="available", force_until="2026-12-01T00:00:00Z")
    hours_schedule = OnlineHours(parse(hours)) if hours else None
    at = NOW + timedelta(seconds=offset)
    ev = evaluate(directives, parse(config), hours_schedule, lead, at)
    if ev.valid_until is None:
        return
    assert ev.valid_until > at
    inside = at + (ev.valid_until - at) * fraction
    if inside < ev.valid_until:
        later = evaluate(directives, parse(config), hours_schedule, lead, inside)
        assert later.inputs == ev.inputs


# Fleet mode: more annotation sources after the pod's own.

WORKLOAD, NAMESPACE = "deployment/whatsapp-bot", "namespace/whatsapp-bot"


def test_maintenance_on_the_workload_names_the_object() -> None:
    others = ((WORKLOAD, d(maintenance="true", maintenance_reason="DB migration")),)
    ev = evaluate(d(), NONE, None, 0, NOW, others=others)
    assert ev.maintenance.active and ev.maintenance.source == WORKLOAD
    assert ev.inputs.maintenance == (
        "DB migration (deployment/whatsapp-bot annotation presence-controller/maintenance 'true')"
    )
    assert not evaluate(d(), NONE, None, 0, NOW, others=((WORKLOAD, d()),)).maintenance.active


def test_maintenance_when_any_source_says_so_the_first_one_named() -> None:
    others = ((WORKLOAD, d(maintenance="true")), (NAMESPACE, d(maintenance="true")))
    assert evaluate(d(), NONE, None, 0, NOW, others=others).maintenance.source == WORKLOAD
    only_ns = ((WORKLOAD, d()), (NAMESPACE, d(maintenance="2026-11-27T13:00:00Z")))
    ev = evaluate(d(), NONE, None, 0, NOW, others=only_ns)
    assert ev.maintenance.source == NAMESPACE and ev.valid_until == NOW + timedelta(hours=1)
    pod_first = evaluate(d(maintenance="true"), NONE, None, 0, NOW, others=others)
    assert pod_first.maintenance.source == "annotation presence-controller/maintenance"


def test_an_invalid_source_fails_closed_and_says_which() -> None:
    others = ((WORKLOAD, d()), (NAMESPACE, d(maintenance="someday")))
    ev = evaluate(d(), NONE, None, 0, NOW, others=others)
    assert ev.maintenance.active and ev.maintenance.source == NAMESPACE
    assert ev.inputs.maintenance is not None
    assert ev.inputs.maintenance.startswith(
        "namespace/whatsapp-bot: invalid annotation presence-controller/maintenance"
    )
    assert any(e.startswith("namespace/whatsapp-bot: ") for e in ev.maintenance.errors)


def test_a_force_on_the_pod_beats_the_workload_which_beats_the_namespace() -> None:
    workload_on = ((WORKLOAD, d(force="available")), (NAMESPACE, d(force="unavailable")))
    ev = evaluate(d(), NONE, None, 0, NOW, others=workload_on)
    assert ev.inputs.force is Presence.AVAILABLE
    assert ev.inputs.force_reason == "deployment/whatsapp-bot annotation presence-controller/force"
    pod = evaluate(d(force="unavailable"), NONE, None, 0, NOW, others=workload_on)
    assert (pod.inputs.force, pod.inputs.force_reason) == (
        Presence.UNAVAILABLE,
        "annotation presence-controller/force",
    )
    ns_only = evaluate(d(), NONE, None, 0, NOW, others=((NAMESPACE, d(force="unavailable")),))
    assert ns_only.inputs.force is Presence.UNAVAILABLE
    # An expired force on the pod no longer beats anything.
    expired = d(force="available", force_until="2026-11-27T11:00:00Z")
    later = evaluate(expired, NONE, None, 0, NOW, others=((WORKLOAD, d(force="unavailable")),))
    assert later.inputs.force is Presence.UNAVAILABLE
