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
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from controller.core.types import Presence

WORKING = "WORKING"


@dataclass(frozen=True, slots=True)
class ActuationConfig:
    """Timing rules of the actuator; all durations in seconds."""

    reassert_available: float = 20.0
    reassert_unavailable: float = 300.0
    session_check: float = 60.0
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


class FailureKind(enum.StrEnum):
    """The gateway error taxonomy, as outcomes (and metric label values)."""

    AUTH = "auth_error"
    SESSION_NOT_READY = "session_not_ready"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient_error"
    PERMANENT = "permanent_error"


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


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do until `until` (None: until the desired presence changes)."""

    until: float | None
    why: str


@dataclass(frozen=True, slots=True)
class CheckSession:
    """Read the gateway's session state before setting presence."""


@dataclass(frozen=True, slots=True)
class SetPresence:
    presence: Presence
    why: str
    """'change' when the desired presence differs from the applied one, else 're-assert'."""


Action = Wait | CheckSession | SetPresence


def reassert_period(presence: Presence, cfg: ActuationConfig) -> float:
    return cfg.reassert_available if presence is Presence.AVAILABLE else cfg.reassert_unavailable


def _budget_calls(state: ActuationState, now: float, cfg: ActuationConfig) -> tuple[float, ...]:
    return _in_window(state.set_calls, now, cfg)


def _in_window(calls: tuple[float, ...], now: float, cfg: ActuationConfig) -> tuple[float, ...]:
    return tuple(t for t in calls if t > now - cfg.budget_window)


def calls_last_window(state: ActuationState, now: float, cfg: ActuationConfig) -> int:
    """Set calls started in the last budget window, as of `now` (not as of the last call)."""
    return len(_budget_calls(state, now, cfg))


def plan(state: ActuationState, desired: Presence, now: float, cfg: ActuationConfig) -> Action:
    """The next step towards showing `desired` at the gateway, at monotonic time `now`."""
    if desired is Presence.UNKNOWN:
        return Wait(None, "no presence decided yet")
    if desired is not state.applied:
        why = "change"
    else:
        assert state.applied_at is not None
        due = state.applied_at + reassert_period(desired, cfg)
        if now < due:
            return Wait(due, f"{desired} applied; next re-assert due")
        why = "re-assert"
    if now < state.backoff_until:
        reason = "auth failure" if state.auth_failed else "back-off"
        return Wait(state.backoff_until, f"{reason} after: {state.last_error}")
    if not cfg.dry_run and (
        state.session_at is None or now - state.session_at >= cfg.session_check
    ):
        reads = _in_window(state.session_calls, now, cfg)
        if len(reads) >= cfg.session_budget_calls:
            return Wait(
                reads[0] + cfg.budget_window,
                f"session read budget spent: {cfg.session_budget_calls} in {cfg.budget_window:g}s",
            )
        return CheckSession()
    calls = _budget_calls(state, now, cfg)
    if len(calls) >= cfg.budget_calls:
        return Wait(
            calls[0] + cfg.budget_window,
            f"call budget spent: {cfg.budget_calls} set calls in {cfg.budget_window:g}s",
        )
    return SetPresence(desired, why)


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


def on_set_ok(state: ActuationState, presence: Presence, now: float) -> ActuationState:
    return replace(
        state,
        applied=presence,
        applied_at=now,
        failures=0,
        backoff_until=0.0,
        auth_failed=False,
        last_error=None,
    )


def on_session(
    state: ActuationState, status: str, now: float, cfg: ActuationConfig, rng: random.Random
) -> ActuationState:
    """Fold in a session read: WORKING clears the way (and proves the credentials); anything
    else backs off and re-checks. Only a successful set resets the back-off: the session is
    re-read after every failure, and a healthy session must not hide a failing set call."""
    if status == WORKING:
        return replace(state, session=status, session_at=now, auth_failed=False)
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
    elif failure.kind is FailureKind.PERMANENT:
        delay = cfg.backoff_cap
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


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110).

    Returns None when the header is absent or unreadable, so the caller falls back to back-off.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # not str.isdigit() alone: it accepts '²'
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
