"""The last-seen refresh: the rule in the pure planner (driven clock), then the actuator and the
controller carrying it out against the simulated gateway."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import Sim, running, until
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from controller.config import Settings
from controller.core.actuation import (
    NOT_ELIGIBLE,
    PULSE_WHY,
    ActuationConfig,
    ActuationState,
    CheckSession,
    Failure,
    FailureKind,
    Pulse,
    SetPresence,
    Wait,
    on_failure,
    on_pulse_over,
    on_session,
    on_session_started,
    on_set_ok,
    on_set_started,
    plan,
    pulsing,
    refresh_due,
    refresh_veto,
)
from controller.core.types import Presence, Rule
from controller.gateway.factory import build_gateway
from controller.runtime.actuator import Actuator
from controller.sim.downward_api import DownwardAPIVolume
from controller.telemetry.metrics import Metrics

VIRTUAL_TIME = True
"""The async tests of this module wait in virtual time (conftest.pytest_asyncio_loop_factories)."""

A, U = Presence.AVAILABLE, Presence.UNAVAILABLE
CFG = ActuationConfig(
    last_seen_refresh=3600.0, last_seen_pulse=5.0, reassert_unavailable=300.0, session_check=60.0
)
RNG = random.Random(1)


def shown_unavailable(at: float, cfg: ActuationConfig = CFG) -> ActuationState:
    """The gateway shows unavailable since `at`, the session WORKING."""
    state = on_session(ActuationState(), "WORKING", at, cfg, RNG)
    return on_set_ok(on_set_started(state, at, cfg), U, at)


def fresh_session(state: ActuationState, now: float) -> ActuationState:
    return on_session(state, "WORKING", now, CFG, RNG)


# The veto: when a pulse may run at all.


@pytest.mark.parametrize(
    ("rule", "presence", "consumer", "bad", "veto"),
    [
        ("online_hours", U, A, False, None),
        ("force", U, A, False, None),
        ("maintenance", U, A, False, "maintenance"),
        ("online_hours", U, U, False, "the consumer is not healthy"),
        ("online_hours", U, Presence.UNKNOWN, False, "the consumer is not healthy"),
        ("online_hours", U, A, True, "the consumer is not healthy"),
        ("force", U, U, False, "the consumer is not healthy"),
        ("health", U, U, True, "unavailable because of the consumer"),
        ("error", U, A, False, "controller error"),
        ("health", A, A, False, "the decision is available"),
        ("force", A, A, False, "the decision is available"),
    ],
)
def test_refresh_veto(
    rule: str, presence: Presence, consumer: Presence, bad: bool, veto: str | None
) -> None:
    assert refresh_veto(Rule(rule), presence, consumer, bad) == veto


# The planner, on a driven clock.


def test_a_pulse_is_due_after_the_refresh_period_and_lasts_the_pulse() -> None:
    state = shown_unavailable(0.0)
    assert refresh_due(state, CFG, None) == 3600.0
    # Before it is due: wait for the next session read (60 s), then the next re-assert (300 s).
    assert plan(state, U, 10.0, CFG, None) == Wait(
        60.0, "unavailable applied; next re-assert due; next session read due"
    )
    read = fresh_session(on_session_started(state, 60.0, CFG), 260.0)
    assert plan(read, U, 280.0, CFG, None) == Wait(300.0, "unavailable applied; next re-assert due")
    state = on_set_ok(fresh_session(state, 3599.0), U, 3599.0)  # a re-assert: clock unchanged
    assert state.unavailable_since == 0.0
    assert plan(state, U, 3599.5, CFG, None) == Wait(
        3600.0, "unavailable applied; last-seen refresh due"
    )
    start = plan(state, U, 3600.0, CFG, None)
    assert start == SetPresence(A, PULSE_WHY, Pulse.START)
    state = on_set_ok(on_set_started(state, 3600.0, CFG), A, 3600.2, Pulse.START)
    assert pulsing(state, U) and state.applied is A
    assert plan(state, U, 3604.0, CFG, None) == Wait(
        3605.2, "last-seen pulse: showing available until its end"
    )
    end = plan(state, U, 3605.2, CFG, None)
    assert end == SetPresence(U, "last-seen pulse end", Pulse.END)
    state = on_set_ok(on_set_started(state, 3605.2, CFG), U, 3605.3, Pulse.END)
    assert not pulsing(state, U)
    assert refresh_due(state, CFG, None) == 3605.3 + 3600.0


@pytest.mark.parametrize(
    "veto", ["maintenance", "the consumer is not healthy", "the decision is available"]
)
def test_a_pulse_is_cut_short_at_once(veto: str) -> None:
    state = shown_unavailable(0.0)
    state = on_set_ok(fresh_session(state, 3600.0), A, 3600.0, Pulse.START)
    action = plan(state, U, 3600.1, CFG, veto)
    assert action == SetPresence(U, f"last-seen pulse cut short: {veto}", Pulse.END)


@pytest.mark.parametrize("veto", ["maintenance", "the consumer is not healthy", NOT_ELIGIBLE])
def test_no_pulse_while_vetoed(veto: str) -> None:
    state = on_set_ok(fresh_session(shown_unavailable(0.0), 3599.0), U, 3599.0)
    assert refresh_due(state, CFG, veto) is None
    assert plan(fresh_session(state, 7200.0), U, 7200.0, CFG, veto) == SetPresence(U, "re-assert")


def test_never_in_dry_run_and_never_when_off() -> None:
    for cfg in (replace(CFG, dry_run=True), replace(CFG, last_seen_refresh=0.0)):
        state = shown_unavailable(0.0, cfg)
        assert refresh_due(state, cfg, None) is None
        assert plan(fresh_session(state, 1e6), U, 1e6, cfg, None) == SetPresence(U, "re-assert")


def test_no_pulse_before_the_gateway_is_known_to_show_unavailable() -> None:
    """After a restart (or a new leader) nothing is known: the clock starts at the first
    accepted unavailable."""
    state = fresh_session(ActuationState(), 1e6)
    assert refresh_due(state, CFG, None) is None
    assert plan(state, U, 1e6, CFG, None) == SetPresence(U, "change")


def test_a_pulse_starts_only_with_room_for_both_calls_and_its_end_is_never_held() -> None:
    cfg = replace(CFG, budget_calls=3, budget_window=60.0)
    state = shown_unavailable(0.0, cfg)  # one call at t=0
    state = on_set_started(on_set_started(state, 3590.0, cfg), 3590.0, cfg)  # three in window
    state = on_set_ok(fresh_session(state, 3590.0), U, 3590.0)
    waited = plan(state, U, 3600.0, cfg, None)
    assert isinstance(waited, Wait) and waited.until == 3650.0  # both 3590 calls expire
    state = replace(state, set_calls=(3595.0,))  # two calls of room
    assert plan(state, U, 3600.0, cfg, None) == SetPresence(A, PULSE_WHY, Pulse.START)
    # The end goes out even with the budget spent.
    state = on_set_ok(on_set_started(state, 3600.0, cfg), A, 3600.0, Pulse.START)
    state = replace(state, set_calls=(3600.0, 3600.0, 3600.0))
    assert plan(state, U, 3605.0, cfg, None) == SetPresence(U, "last-seen pulse end", Pulse.END)


def test_a_failed_end_is_retried_after_the_back_off_and_still_ends_the_pulse() -> None:
    state = on_set_ok(fresh_session(shown_unavailable(0.0), 3600.0), A, 3600.0, Pulse.START)
    failed = on_failure(state, Failure(FailureKind.TRANSIENT, "HTTP 503"), 3605.0, CFG, RNG)
    assert pulsing(failed, U)
    waited = plan(failed, U, 3605.0, CFG, None)
    assert isinstance(waited, Wait) and waited.why.startswith("back-off")
    assert plan(failed, U, failed.backoff_until, CFG, None) == CheckSession()
    again = fresh_session(failed, failed.backoff_until)
    assert plan(again, U, failed.backoff_until, CFG, None).pulse is Pulse.END  # type: ignore[union-attr]


# A property: the planner, a gateway that sometimes fails and a world that changes its mind.

EVENTS = st.lists(
    st.tuples(
        st.floats(min_value=0.1, max_value=900.0),  # time passing before the event
        st.sampled_from(["veto", "clear", "available", "unavailable", "fail", "nothing"]),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(EVENTS)
def test_pulses_never_run_vetoed_never_outlast_their_length_and_respect_the_budget(
    events: list[tuple[float, str]],
) -> None:
    cfg = replace(CFG, last_seen_refresh=600.0, last_seen_pulse=5.0, budget_calls=4)
    rng = random.Random(7)
    state = shown_unavailable(0.0, cfg)
    desired, veto, now, fail_next = U, None, 0.0, False
    shown_since: float | None = None
    """When the gateway began showing available while the decision was unavailable."""
    allowance = 0.0
    """What failed calls during that time may add to it: their back-offs."""
    for gap, what in events:
        deadline = now + gap
        while now < deadline:
            action = plan(state, desired, now, cfg, veto)
            if isinstance(action, Wait):
                if action.until is None or action.until > deadline:
                    break
                now = max(now, action.until)
                continue
            if isinstance(action, CheckSession):
                state = on_session(state, "WORKING", now, cfg, rng)
                continue
            # Never a pulse while vetoed, in the decision's name, or outside the budget.
            assert action.pulse is not Pulse.START or (veto is None and desired is U)
            state = on_set_started(state, now, cfg)
            if action.pulse is not Pulse.END:
                # A pulse's end is never held by the budget: its first attempt was reserved
                # when the pulse started, and a failed one is retried until the bot is back
                # to unavailable, like the shutdown write.
                assert len([t for t in state.set_calls if t > now - cfg.budget_window]) <= 4
            if fail_next:
                fail_next = False
                state = on_failure(state, Failure(FailureKind.TRANSIENT, "x"), now, cfg, rng)
                allowance += state.backoff_until - now
                continue
            state = on_set_ok(state, action.presence, now, action.pulse)
            lying = state.applied is A and desired is U
            if lying and shown_since is None:
                shown_since, allowance = now, 0.0
            elif not lying and shown_since is not None:
                # A pulse lasts its length, no more, unless failed calls held its end back.
                assert now - shown_since <= cfg.last_seen_pulse + allowance + 1e-6
                shown_since = None
        now = deadline
        if what == "veto":
            veto = "maintenance"
        elif what == "clear":
            veto = None
        elif what in ("available", "unavailable"):
            desired = Presence(what)
            if desired is A:
                state, shown_since = on_pulse_over(state), None
                veto = "the decision is available"
        elif what == "fail":
            fail_next = True
        if veto is not None and pulsing(state, desired):
            # A veto ends a pulse with the very next call.
            action = plan(state, desired, now, cfg, veto)
            assert isinstance(action, CheckSession | Wait) or action.pulse is Pulse.END
    due = refresh_due(state, cfg, veto)
    if due is not None and now >= max(due, state.backoff_until) and desired is U:
        # An overdue pulse is what comes next (unless the budget holds it).
        action = plan(on_session(state, "WORKING", now, cfg, rng), desired, now, cfg, veto)
        assert (isinstance(action, Wait) and "budget" in action.why) or (
            isinstance(action, SetPresence) and action.pulse is Pulse.START
        ), action


# The actuator against the simulated gateway (real loopback, short real periods).

FAST = ActuationConfig(
    reassert_available=30.0,
    reassert_unavailable=30.0,
    session_check=30.0,
    backoff_base=0.05,
    backoff_cap=0.2,
    last_seen_refresh=0.3,
    last_seen_pulse=0.2,
)


def actuator(sim: Sim, cfg: ActuationConfig, **kwargs: object) -> Actuator:
    tracer = kwargs.pop("tracer", None)
    return Actuator(
        build_gateway(sim.settings()),
        cfg,
        Metrics(),
        rng=random.Random(3),
        tracer=tracer,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def outcomes(act: Actuator) -> dict[str, float]:
    registry = act.metrics.registry
    return {
        o: registry.get_sample_value("presence_last_seen_refresh_total", {"outcome": o}) or 0.0
        for o in ("completed", "cut_short", "merged", "failed")
    }


async def test_the_actuator_pulses_and_traces_each_pulse(sim: Sim) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    act = actuator(sim, FAST, tracer=provider.get_tracer("test"))
    task = asyncio.create_task(act.run())
    try:
        act.want(U, veto=None)
        await until(lambda: outcomes(act)["completed"] >= 2)
    finally:
        task.cancel()
        await act.gateway.aclose()
    values = [c.presence for c in sim.gateway.sets()]
    assert values[:5] == ["unavailable", "available", "unavailable", "available", "unavailable"]
    pulses = [s for s in exporter.get_finished_spans() if s.name == "presence.last_seen.refresh"]
    assert len(pulses) >= 2
    first = pulses[0]
    children = [
        s
        for s in exporter.get_finished_spans()
        if s.parent is not None and s.parent.span_id == first.context.span_id
    ]
    assert [s.attributes["presence.value"] for s in children if s.name.endswith(".set")] == [
        "available",
        "unavailable",
    ]
    assert first.attributes is not None
    assert first.attributes["presence.last_seen.outcome"] == "completed"
    assert act.last_pulse is not None


async def test_a_veto_cuts_a_long_pulse_short_at_once(sim: Sim) -> None:
    cfg = replace(FAST, last_seen_pulse=3600.0)
    act = actuator(sim, cfg)
    task = asyncio.create_task(act.run())
    try:
        act.want(U, veto=None)
        await until(act.pulsing)
        act.want(U, veto="maintenance")
        # An hour-long pulse: ending within the deadline is the cut.
        await until(lambda: not act.pulsing() and sim.gateway.presence == "unavailable")
    finally:
        task.cancel()
        await act.gateway.aclose()
    assert sim.gateway.sets()[-1].presence == "unavailable"
    assert outcomes(act)["cut_short"] == 1


async def test_a_follower_never_pulses(sim: Sim) -> None:
    """Fleet mode: the gate (the leader only) holds every call, pulses included."""
    act = actuator(sim, FAST, gate=lambda within: False)
    task = asyncio.create_task(act.run())
    try:
        act.want(U, veto=None)
        await until(lambda: act.next_action.startswith("wait: not the leader"))
        await asyncio.sleep(2 * (FAST.last_seen_refresh + FAST.last_seen_pulse))
    finally:
        task.cancel()
        await act.gateway.aclose()
    assert sim.gateway.calls == []


async def test_a_leader_that_loses_the_lease_mid_pulse_leaves_it_to_the_new_leader(
    sim: Sim,
) -> None:
    leading = [True]
    act = actuator(sim, replace(FAST, last_seen_pulse=3600.0), gate=lambda within: leading[0])
    task = asyncio.create_task(act.run())
    try:
        act.want(U, veto=None)
        await until(act.pulsing)
        calls = len(sim.gateway.calls)
        leading[0] = False
        act.leadership_changed(False)
        assert not act.pulsing()
        await until(lambda: act.next_action.startswith("wait: not the leader"))
    finally:
        task.cancel()
        await act.gateway.aclose()
    assert len(sim.gateway.calls) == calls, "a former leader calls nothing"
    assert outcomes(act)["cut_short"] == 1


async def test_a_pulse_that_cannot_start_is_counted_failed(sim: Sim) -> None:
    from controller.sim.gateway import Fault

    act = actuator(sim, FAST)
    task = asyncio.create_task(act.run())
    try:
        act.want(U, veto=None)
        await until(lambda: sim.gateway.presence == "unavailable")
        sim.gateway.set_faults.append(Fault(503))
        await until(lambda: outcomes(act)["failed"] == 1 and outcomes(act)["completed"] >= 1)
    finally:
        task.cancel()
        await act.gateway.aclose()


# The controller: online hours and force allow a pulse, maintenance and a bad consumer stop it.


def pulsing_settings(sim: Sim, podinfo: Path, **overrides: object) -> Settings:
    """A controller kept offline by a force annotation, a pulse every 0.4 s (below the
    validated minimum of 1 minute: set past validation, as only a test may)."""
    base = sim.settings(
        annotations_file=podinfo,
        reassert_available=60,
        reassert_unavailable=60,
        session_check=60,
    )
    values: dict[str, object] = {"last_seen_refresh": 0.4, "last_seen_pulse": 0.3}
    values.update(overrides)
    return base.model_copy(update=values)


def forced(tmp_path: Path) -> DownwardAPIVolume:
    volume = DownwardAPIVolume(tmp_path / "podinfo")
    volume.write({"presence-controller/force": "unavailable"})
    return volume


def count(run_metrics: Metrics, outcome: str) -> float:
    value = run_metrics.registry.get_sample_value(
        "presence_last_seen_refresh_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_forced_offline_pulses_and_reports_it(sim: Sim, tmp_path: Path) -> None:
    volume = forced(tmp_path)
    async with running(pulsing_settings(sim, volume.file)) as run:
        await until(lambda: count(run.controller.metrics, "completed") >= 1)
        status = (await run.status())["last_seen"]
        desired = (await run.status())["presence"]["desired"]
    assert desired == "unavailable"
    assert status["enabled"] is True and status["last"] is not None
    assert status["blocked"] is None
    logs = run.logs.getvalue()
    assert "last-seen refresh: showing available for 0.3s" in logs
    assert "last-seen refresh completed: last-seen pulse end" in logs
    # The decision never changed: a pulse is actuation, not a transition.
    assert [t.to for t in run.controller.transitions] == [U]


async def test_a_bad_consumer_cuts_a_pulse_short_and_blocks_the_next(
    sim: Sim, tmp_path: Path
) -> None:
    volume = forced(tmp_path)
    settings = pulsing_settings(sim, volume.file, last_seen_pulse=50.0)
    async with running(settings) as run:
        await until(run.controller.actuator.pulsing)
        sim.consumer.health_status = 503
        await until(lambda: count(run.controller.metrics, "cut_short") == 1)
        assert sim.gateway.presence == "unavailable"
        status = (await run.status())["last_seen"]
    assert status["blocked"] == "the consumer is not healthy" and status["next"] is None
    assert "last-seen pulse cut short: the consumer is not healthy" in run.logs.getvalue()


async def test_maintenance_cuts_a_pulse_short(sim: Sim, tmp_path: Path) -> None:
    volume = forced(tmp_path)
    settings = pulsing_settings(sim, volume.file, last_seen_pulse=50.0)
    async with running(settings) as run:
        await until(run.controller.actuator.pulsing)
        volume.write(
            {"presence-controller/force": "unavailable", "presence-controller/maintenance": "true"}
        )
        await until(lambda: count(run.controller.metrics, "cut_short") == 1)
        status = (await run.status())["last_seen"]
    assert sim.gateway.presence == "unavailable"
    assert status["blocked"] == "maintenance"


async def test_outside_online_hours_pulses_too(sim: Sim) -> None:
    # Online only for one minute in 2001: always outside.
    base = sim.settings(
        online_hours="2001-01-01T00:00:00Z/2001-01-01T00:01:00Z",
        reassert_available=60,
        reassert_unavailable=60,
    )
    settings = base.model_copy(update={"last_seen_refresh": 0.4, "last_seen_pulse": 0.3})
    async with running(settings) as run:
        await until(lambda: count(run.controller.metrics, "completed") >= 1)
        reason = (await run.status())["presence"]["reason"]
    assert reason.startswith("outside online hours")


async def test_never_in_dry_run(sim: Sim, tmp_path: Path) -> None:
    volume = forced(tmp_path)
    settings = pulsing_settings(sim, volume.file, dry_run=True)
    async with running(settings) as run:
        # Five refresh periods of ticks: a pulse would have been due several times over.
        await until(lambda: run.controller.ticks >= 1)
        start = run.controller.ticks
        await until(lambda: run.controller.ticks >= start + 40)
        status = (await run.status())["last_seen"]
    assert sim.gateway.calls == []
    assert status["blocked"] == "dry run" and status["last"] is None
    # Not even a pretended pulse: nothing planned, nothing counted, nothing logged.
    assert sum(count(run.controller.metrics, o) for o in ("completed", "cut_short")) == 0
    assert "last-seen" not in run.logs.getvalue()


async def test_sigterm_mid_pulse_ends_unavailable_even_with_keep(sim: Sim, tmp_path: Path) -> None:
    volume = forced(tmp_path)
    settings = pulsing_settings(sim, volume.file, last_seen_pulse=50.0, on_shutdown="keep")
    stop = asyncio.Event()
    async with running(settings, stop) as run:
        await until(run.controller.actuator.pulsing)
        assert sim.gateway.presence == "available"
        stop.set()
        await until(lambda: run.controller.actuator.state.applied is U)
    assert sim.gateway.presence == "unavailable"
    assert "last-seen pulse ended on shutdown" in run.logs.getvalue()


def test_settings_refuse_a_heartbeat_and_a_long_pulse() -> None:
    from pydantic import ValidationError

    base = {"health_url": "http://h/", "wawp": {"instance_id": "i", "access_token": "t-12345678"}}
    with pytest.raises(ValidationError, match="0 \\(off\\) or at least 60s"):
        Settings.from_values(**base, last_seen_refresh="30s")
    with pytest.raises(ValidationError, match="must be < REASSERT_AVAILABLE"):
        Settings.from_values(**base, last_seen_refresh="4h", last_seen_pulse="30s")
    ok = Settings.from_values(**base, last_seen_refresh="4h")
    assert (ok.last_seen_refresh, ok.last_seen_pulse) == (14400.0, 5.0)
    assert ok.actuation().last_seen_refresh == 14400.0
