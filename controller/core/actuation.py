"""When to call the gateway, and what each answer means for the next call (README, "Acting on
the gateway").

A pure state machine: `plan()` says what to do next given the desired presence and the time;
`on_*()` fold the gateway's answer into the state. The I/O shell (`runtime/actuator.py`) only
carries out the plan, so every rule here (re-assert periods, session cache, back-off with full
jitter, auth-failure mode, the sliding call budget) is testable without a network or a clock.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, replace

from controller.core.types import NOT_ELIGIBLE, Presence, Rule

WORKING = "WORKING"


@dataclass(frozen=True, slots=True)
class ActuationConfig:
    """Timing rules of the actuator; all durations in seconds."""

    reassert_available: float = 8.0
    reassert_unavailable: float = 60.0
    session_check: float = 15.0
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    auth_retry: float = 300.0
    budget_calls: int = 20
    budget_window: float = 60.0
    max_retry_after: float = 3600.0
    """A Retry-After longer than this is clamped, so a bogus header cannot park us for days."""
    retry_floor: float = 0.5
    """No retry comes sooner than this after a failure, whatever the back-off drew or the
    gateway said (`Retry-After: 0`, a date in the past): a failing gateway is never hammered."""
    session_budget_calls: int = 20
    """Session reads allowed in any `budget_window` (sliding), like the set calls."""
    dry_run: bool = False
    last_seen_refresh: float = 0.0
    """Pulse `available` after this long showing `unavailable` (0: never); see refresh_veto."""
    last_seen_pulse: float = 5.0
    """How long a pulse shows `available`."""


class FailureKind(enum.StrEnum):
    """The gateway error taxonomy, as outcomes (and metric label values)."""

    AUTH = "auth_error"
    SESSION_NOT_READY = "session_not_ready"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient_error"
    PERMANENT = "permanent_error"
    QUOTA = "quota_refused"
    """The gateway refused for the account's plan or quota (Wawp's 403), not the credentials."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed gateway call, reduced to what the planner needs."""

    kind: FailureKind
    message: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class ActuationState:
    """What we know about the gateway: the applied presence, its session, and our back-off."""

    applied: Presence = Presence.UNKNOWN
    """The presence the gateway last accepted from us (UNKNOWN before the first success)."""
    applied_at: float | None = None
    session: str | None = None
    """The session status last reported by the gateway, e.g. WORKING or SCAN_QR_CODE."""
    session_at: float | None = None
    """When `session` was read; None means it must be read again before the next set call."""
    failures: int = 0
    """Consecutive failed calls, the exponent of the back-off."""
    backoff_until: float = 0.0
    auth_failed: bool = False
    last_error: str | None = None
    set_calls: tuple[float, ...] = ()
    """Start times of the set calls inside the current budget window."""
    session_calls: tuple[float, ...] = ()
    """Start times of the session reads inside the current budget window."""
    unavailable_since: float | None = None
    """When the gateway began showing `unavailable` (re-asserts do not move it; a pulse's end
    does): the last-seen clock."""
    pulse_since: float | None = None
    """A last-seen pulse is showing `available` since then (None: no pulse)."""
    reconnected: bool = False
    """A session read saw WORKING after a read that was not: the gateway reconnected, and a
    reconnect marks the session online on some gateways (NOWEB, Evolution). The desired
    presence is written again at once."""
    witness: str | None = None
    """The witness saw contacts shown something else than intended: the desired presence is
    written again at once (within the budget); why (`witness: false_online`)."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do until `until` (None: until the desired presence changes)."""

    until: float | None
    why: str


@dataclass(frozen=True, slots=True)
class CheckSession:
    """Read the gateway's session state before setting presence."""


class Pulse(enum.StrEnum):
    """The two writes of a last-seen refresh."""

    START = "start"
    """`available`, while the decision stays `unavailable`."""
    END = "end"
    """`unavailable` again: after `last_seen_pulse`, or at once when the pulse is cut short."""


@dataclass(frozen=True, slots=True)
class SetPresence:
    presence: Presence
    why: str
    """'change' when the desired presence differs from the applied one, 're-assert', or what
    the last-seen pulse is doing."""
    pulse: Pulse | None = None


Action = Wait | CheckSession | SetPresence


def reassert_period(presence: Presence, cfg: ActuationConfig) -> float:
    return cfg.reassert_available if presence is Presence.AVAILABLE else cfg.reassert_unavailable


def _budget_calls(state: ActuationState, now: float, cfg: ActuationConfig) -> tuple[float, ...]:
    return _in_window(state.set_calls, now, cfg)


def _in_window(calls: tuple[float, ...], now: float, cfg: ActuationConfig) -> tuple[float, ...]:
    # `t + window > now`, not `t > now - window`: the budget's Wait ends at `t + window`, and
    # the two must agree to the last bit, or a planner woken at that instant waits again at
    # once (floating point: 968.8476249955394 + 60 rounds to 1028.8476249955393).
    return tuple(t for t in calls if t + cfg.budget_window > now)


def calls_last_window(state: ActuationState, now: float, cfg: ActuationConfig) -> int:
    """Set calls started in the last budget window, as of `now` (not as of the last call)."""
    return len(_budget_calls(state, now, cfg))


PULSE_WHY = "last-seen refresh"
RECONNECT_WHY = "reconnect"
"""Why a write follows a seen reconnect (the gateway may have marked the session online)."""


def refresh_veto(rule: Rule, presence: Presence, consumer: Presence, bad_tick: bool) -> str | None:
    """Why a last-seen refresh may not run now (None: it may). Only while the bot is kept
    `unavailable` by online hours or a force, never during maintenance, never while the consumer
    is unhealthy (showing online would lie), never on a controller error. `consumer` is the
    consumer's own (hysteresis) verdict; `bad_tick` cuts a pulse short on the first bad probe,
    without waiting for `FALL` of them."""
    if presence is not Presence.UNAVAILABLE:
        return f"the decision is {presence}"
    if rule is Rule.MAINTENANCE:
        return "maintenance"
    if rule is Rule.ERROR:
        return "controller error"
    if rule not in (Rule.ONLINE_HOURS, Rule.FORCE):
        return "unavailable because of the consumer"
    if consumer is not Presence.AVAILABLE or bad_tick:
        return "the consumer is not healthy"
    return None


def refresh_due(state: ActuationState, cfg: ActuationConfig, veto: str | None) -> float | None:
    """When the next last-seen pulse is due (monotonic), or None: off, dry run, vetoed, or the
    gateway is not known to show `unavailable`."""
    if cfg.last_seen_refresh <= 0 or cfg.dry_run or veto is not None:
        return None
    if state.applied is not Presence.UNAVAILABLE or state.unavailable_since is None:
        return None
    return state.unavailable_since + cfg.last_seen_refresh


def pulsing(state: ActuationState, desired: Presence) -> bool:
    """A last-seen pulse shows `available` while the decision is `unavailable`."""
    return state.pulse_since is not None and desired is Presence.UNAVAILABLE


def plan(
    state: ActuationState,
    desired: Presence,
    now: float,
    cfg: ActuationConfig,
    veto: str | None = NOT_ELIGIBLE,
) -> Action:
    """The next step towards showing `desired` at the gateway, at monotonic time `now`; `veto`
    (refresh_veto) says whether a last-seen pulse may run."""
    if desired is Presence.UNKNOWN:
        return Wait(None, "no presence decided yet")
    target = _target(state, desired, now, cfg, veto)
    if isinstance(target, Wait):
        return _idle(state, target, now, cfg)
    if now < state.backoff_until:
        reason = "auth failure" if state.auth_failed else "back-off"
        return Wait(state.backoff_until, f"{reason} after: {state.last_error}")
    if not cfg.dry_run and (
        state.session_at is None or now - state.session_at >= cfg.session_check
    ):
        return _read_session(state, now, cfg)
    if target.pulse is Pulse.END:
        return target  # its call was reserved when the pulse started: never held by the budget
    calls = _budget_calls(state, now, cfg)
    # A pulse starts only with room for both of its calls, so that its end is never stuck.
    needed = 2 if target.pulse is Pulse.START else 1
    if len(calls) + needed > cfg.budget_calls:
        return Wait(
            calls[len(calls) + needed - cfg.budget_calls - 1] + cfg.budget_window,
            f"call budget spent: {cfg.budget_calls} set calls in {cfg.budget_window:g}s",
        )
    return target


def idle_read_period(cfg: ActuationConfig) -> float:
    """How often the session is read while nothing is to be written: every `session_check`,
    but with at most half the read budget, so that a write always finds a read to go with it."""
    return max(cfg.session_check, 2 * cfg.budget_window / max(cfg.session_budget_calls, 1))


def _idle(state: ActuationState, target: Wait, now: float, cfg: ActuationConfig) -> Action:
    """Nothing to write: the session is still read every `idle_read_period` (never sooner
    than the back-off allows), so that a reconnect or a lost session is seen within it.
    A read is answered by the gateway itself, not by WhatsApp: it shows nothing to contacts."""
    if cfg.dry_run or state.applied is Presence.UNKNOWN:
        return target
    due = now if state.session_at is None else state.session_at + idle_read_period(cfg)
    due = max(due, state.backoff_until)
    if due > now:
        if target.until is None or due < target.until:
            return Wait(due, f"{target.why}; next session read due")
        return target
    return _read_session(state, now, cfg)


def _read_session(state: ActuationState, now: float, cfg: ActuationConfig) -> Action:
    """A session read, unless the read budget is spent: then wait for room."""
    reads = _in_window(state.session_calls, now, cfg)
    if len(reads) >= cfg.session_budget_calls:
        return Wait(
            reads[0] + cfg.budget_window,
            f"session read budget spent: {cfg.session_budget_calls} in {cfg.budget_window:g}s",
        )
    return CheckSession()


def _target(
    state: ActuationState, desired: Presence, now: float, cfg: ActuationConfig, veto: str | None
) -> SetPresence | Wait:
    """What to send next, ignoring back-off, session and budget; or how long nothing is due."""
    if pulsing(state, desired):
        assert state.pulse_since is not None
        if veto is not None:
            return SetPresence(
                Presence.UNAVAILABLE, f"last-seen pulse cut short: {veto}", Pulse.END
            )
        end = state.pulse_since + cfg.last_seen_pulse
        if now < end:
            return Wait(end, "last-seen pulse: showing available until its end")
        return SetPresence(Presence.UNAVAILABLE, "last-seen pulse end", Pulse.END)
    if desired is not state.applied:
        return SetPresence(desired, "change")
    if state.reconnected:
        return SetPresence(desired, RECONNECT_WHY)
    if state.witness is not None:
        return SetPresence(desired, state.witness)
    assert state.applied_at is not None
    reassert = state.applied_at + reassert_period(desired, cfg)
    pulse = refresh_due(state, cfg, veto)
    if pulse is not None and now >= pulse:
        return SetPresence(Presence.AVAILABLE, PULSE_WHY, Pulse.START)
    if now >= reassert:
        return SetPresence(desired, "re-assert")
    if pulse is not None and pulse < reassert:
        return Wait(pulse, f"{desired} applied; last-seen refresh due")
    return Wait(reassert, f"{desired} applied; next re-assert due")


def backoff_delay(failures: int, cfg: ActuationConfig, rng: random.Random) -> float:
    """Exponential back-off with full jitter: uniform in [0, min(cap, base * 2**(n-1))]."""
    ceiling = min(cfg.backoff_cap, cfg.backoff_base * 2 ** min(max(failures - 1, 0), 32))
    return rng.uniform(0.0, ceiling)


def on_session_started(state: ActuationState, now: float, cfg: ActuationConfig) -> ActuationState:
    """Count a session read against its sliding budget as it starts."""
    return replace(state, session_calls=(*_in_window(state.session_calls, now, cfg), now))


def on_set_started(state: ActuationState, now: float, cfg: ActuationConfig) -> ActuationState:
    """Count a set call against the sliding budget as it starts (failed calls count too)."""
    return replace(state, set_calls=(*_budget_calls(state, now, cfg), now))


def on_set_ok(
    state: ActuationState, presence: Presence, now: float, pulse: Pulse | None = None
) -> ActuationState:
    """Fold in an accepted set call (`pulse`: the pulse write it was)."""
    since = None
    if presence is Presence.UNAVAILABLE:
        kept = state.applied is Presence.UNAVAILABLE and state.unavailable_since is not None
        since = state.unavailable_since if kept else now
    return replace(
        state,
        applied=presence,
        applied_at=now,
        unavailable_since=since,
        pulse_since=now if pulse is Pulse.START else None,
        reconnected=False,
        witness=None,
        failures=0,
        backoff_until=0.0,
        auth_failed=False,
        last_error=None,
    )


def on_witness(state: ActuationState, why: str) -> ActuationState:
    """The witness asks for the applied presence to be written again now (`why`); nothing
    before a first write, nothing during a last-seen pulse (it is meant)."""
    if state.applied is Presence.UNKNOWN or state.pulse_since is not None:
        return state
    return replace(state, witness=why)


def on_pulse_over(state: ActuationState) -> ActuationState:
    """The pulse is no longer ours to end: the decision itself turned `available` (the gateway
    already shows it), or another replica leads now (and writes the decision)."""
    return replace(state, pulse_since=None)


def on_session(
    state: ActuationState, status: str, now: float, cfg: ActuationConfig, rng: random.Random
) -> ActuationState:
    """Fold in a session read: WORKING clears the way (and proves the credentials); anything
    else backs off and re-checks. Only a successful set resets the back-off: the session is
    re-read after every failure, and a healthy session must not hide a failing set call."""
    if status == WORKING:
        seen = state.reconnected or state.session not in (None, WORKING)
        return replace(state, session=status, session_at=now, auth_failed=False, reconnected=seen)
    failed = on_failure(
        state,
        Failure(FailureKind.SESSION_NOT_READY, f"gateway session is {status}, not {WORKING}"),
        now,
        cfg,
        rng,
    )
    return replace(failed, session=status)


def on_failure(
    state: ActuationState, failure: Failure, now: float, cfg: ActuationConfig, rng: random.Random
) -> ActuationState:
    """Fold in a failed call: every failure forgets the session and sets the next retry time."""
    failures = state.failures + 1
    auth_failed = False
    if failure.kind is FailureKind.AUTH:
        delay, auth_failed = cfg.auth_retry, True
    elif failure.kind is FailureKind.RATE_LIMITED and failure.retry_after is not None:
        delay = min(max(failure.retry_after, 0.0), cfg.max_retry_after)
    elif failure.kind is FailureKind.QUOTA:
        delay = cfg.auth_retry
    elif failure.kind is FailureKind.PERMANENT:
        # A refusal that says when it is worth asking again (e.g. "this integration cannot set
        # presence": once per 5 minutes) waits that long; others the back-off cap.
        delay = max(cfg.backoff_cap, failure.retry_after or 0.0)
    else:
        delay = backoff_delay(failures, cfg, rng)
    delay = max(delay, cfg.retry_floor)
    return replace(
        state,
        session_at=None,
        failures=failures,
        backoff_until=now + delay,
        auth_failed=auth_failed,
        last_error=failure.message,
    )


def on_credentials_changed(state: ActuationState) -> ActuationState:
    """The secret changed: an auth failure is retried at once (not after `auth_retry`), and the
    session re-read with the new credentials."""
    if not state.auth_failed:
        return replace(state, session_at=None)
    return replace(state, backoff_until=0.0, session_at=None)
