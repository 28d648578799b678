"""The `/status` document (README, "What it reports"), built from plain values: each part of the
controller reports about itself (`ActuatorReport`, `SourcesReport`, the policy state, the fleet
member's own section) and the functions here only shape them. No I/O, no secrets; the admin
server scrubs the document once more before sending."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller.core.actuation import ActuationConfig, ActuationState, calls_last_window
from controller.core.damping import DampingConfig, DampingState, holds, penalty, reuse_at
from controller.core.excerpt import clip
from controller.core.hysteresis import HysteresisConfig, HysteresisState
from controller.core.overrides import (
    Evaluation,
    MaintenanceReport,
    OnlineHoursReport,
    OverrideReport,
)
from controller.core.types import Decision, Observation, Presence

STATUS_VALUE_LIMIT = 512
"""Characters of one annotation value shown in /status."""


def iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def iso_at(t: float | None, now: float, wall: datetime) -> str | None:
    """The wall-clock time of the monotonic instant `t`, given both clocks `now`."""
    return None if t is None else iso(wall + timedelta(seconds=t - now))


@dataclass(frozen=True, slots=True)
class ActuatorReport:
    """What the actuator knows of the gateway, as plain values."""

    provider: str
    state: ActuationState
    cfg: ActuationConfig
    desired: Presence
    next_action: str
    last_success: datetime | None
    last_pulse: datetime | None
    veto: str | None
    pulsing: bool
    next_refresh: float | None
    """Seconds until the next last-seen pulse, or None."""


@dataclass(frozen=True, slots=True)
class SourcesReport:
    """What the maintenance, force and online-hours sources say, as plain values."""

    evaluation: Evaluation | None
    force_error: str | None
    file: Path | None
    stale: bool
    values: dict[str, str]
    prefix: str
    maintenance_lead: float
    calendar: dict[str, Any] | None = None
    """The maintenance calendar's state (CalendarFile.report); None: no calendar."""


def _backoff_until(act: ActuatorReport, now: float, wall: datetime) -> str | None:
    if act.state.backoff_until <= now:
        return None
    at = wall.timestamp() + act.state.backoff_until - now
    return datetime.fromtimestamp(at, UTC).isoformat()


def pending(act: ActuatorReport, backoff_until: str | None) -> dict[str, Any] | None:
    """The change the gateway has not accepted yet, and when it will next be tried."""
    if act.cfg.dry_run or act.desired in (Presence.UNKNOWN, act.state.applied):
        return None
    return {"to": act.desired.value, "not_before": backoff_until, "waiting_for": act.next_action}


def presence_section(
    decision: Decision | None,
    verdict_reason: str,
    since: datetime | None,
    act: ActuatorReport,
    role: dict[str, Any],
    now: float,
    wall: datetime,
) -> dict[str, Any]:
    return {
        "desired": (decision.presence if decision else Presence.UNKNOWN).value,
        # In dry run nothing reaches the gateway: nothing is applied, whatever we planned.
        "applied": (Presence.UNKNOWN if act.cfg.dry_run else act.state.applied).value,
        "reason": decision.reason if decision else verdict_reason,
        "detail": decision.detail if decision else None,
        "since": iso(since),
        "dry_run": act.cfg.dry_run,
        "pending": pending(act, _backoff_until(act, now, wall)),
        **role,
    }


def role_section(
    leading: bool, leader: str | None, decided: tuple[str, str] | None
) -> dict[str, Any]:
    """Fleet mode: whether this replica writes the presence; on a follower, who does and what
    it decided (a follower's `desired` and `reason` are its own consumer's, not the bot's)."""
    if leading:
        return {"role": "leader"}
    note = (
        f"follower: {leader} leads and writes the presence"
        if leader
        else "follower: no replica leads now, nothing writes the presence"
    )
    if decided is not None:
        note += f" ({decided[0]}: {decided[1]})"
    return {
        "role": "follower",
        "leader": leader or None,
        "leader_decision": (
            {"presence": decided[0], "reason": decided[1]} if decided is not None else None
        ),
        "note": note + "; desired and reason here are this replica's own health",
    }


def signals_section(obs: Observation | None) -> dict[str, Any]:
    return {
        "health": obs.health.status.value if obs else None,
        "health_detail": obs.health.detail if obs else None,
        # An infinite lag goes out as null: the admin server makes the document valid JSON.
        "lag_seconds": obs.lag.value if obs else None,
        "lag_status": obs.lag.status.value if obs else None,
        "lag_detail": obs.lag.detail if obs else None,
        "observed_at": obs.at.isoformat() if obs else None,
    }


def hysteresis_section(
    state: HysteresisState, cfg: HysteresisConfig, fast_reprobe: bool
) -> dict[str, Any]:
    return {
        "verdict": state.verdict.value,
        "good": state.good,
        "bad": state.bad,
        "rise": cfg.rise,
        "fall": cfg.fall,
        "lag_low": cfg.lag_low,
        "lag_high": cfg.lag_high,
        "fast_reprobe": fast_reprobe,
    }


def sources_sections(src: SourcesReport) -> dict[str, Any]:
    """`maintenance`, `override`, `online_hours` and `annotations`."""
    sections = evaluation_sections(src.evaluation, src.force_error)
    sections["maintenance"] |= {"lead_seconds": src.maintenance_lead, "calendar": src.calendar}
    sections["annotations"] = {
        "file": str(src.file) if src.file else None,
        "stale": src.stale,
        "values": {
            k[:100]: clip(v, STATUS_VALUE_LIMIT)
            for k, v in src.values.items()
            if k.startswith(src.prefix)
        },
    }
    return sections


def evaluation_sections(ev: Evaluation | None, force_error: str | None = None) -> dict[str, Any]:
    """`maintenance`, `override` and `online_hours` of an evaluation (also `kubectl presence
    status -o json`'s)."""
    m = ev.maintenance if ev else MaintenanceReport()
    o = ev.override if ev else OverrideReport(error=force_error)
    h = ev.online_hours if ev else OnlineHoursReport()
    notices = ev.notices if ev else ()
    return {
        "maintenance": {
            "active": m.active,
            "reason": m.reason,
            "source": m.source,
            "window": m.window,
            "draining": m.draining,
            "ends": iso(m.ends),
            "next": {
                "start": iso(m.next_start),
                "end": iso(m.next_end),
                "reason": m.next_reason,
                "source": m.next_source,
            },
            "errors": list(m.errors),
            "notices": [{"reason": n.reason, "message": n.message} for n in notices],
        },
        "override": {
            "force": o.force.value if o.force else None,
            "until": iso(o.until),
            "expires": iso(o.until) if o.active else None,
            "active": o.active,
            "expired": o.expired,
            "error": o.error,
        },
        "online_hours": {
            "configured": h.configured,
            "inside": h.inside,
            "next_change": iso(h.next_change),
            "holidays": h.holidays,
            "holiday": h.holiday,
        },
    }


def gateway_section(act: ActuatorReport, now: float, wall: datetime) -> dict[str, Any]:
    return {
        "provider": act.provider,
        "session": act.state.session,
        "last_error": act.state.last_error,
        "auth_failed": act.state.auth_failed,
        "backoff_until": _backoff_until(act, now, wall),
        "next": act.next_action,
        "set_calls_last_minute": calls_last_window(act.state, now, act.cfg),
        "last_success": iso(act.last_success),
    }


def damping_section(
    state: DampingState, cfg: DampingConfig, now: float, wall: datetime
) -> dict[str, Any]:
    """Flap damping: the decayed penalty, whether a return to available is held back, and
    until when."""
    end = reuse_at(state, cfg)
    return {
        "enabled": cfg.enabled,
        "penalty": round(penalty(state, now, cfg), 1),
        "suppressed": holds(state),
        "reuse_at": iso_at(end, now, wall),
        "outages": len(state.outages),
    }


def last_seen_section(act: ActuatorReport, wall: datetime) -> dict[str, Any]:
    """The last-seen refresh: when the last pulse ended, when the next is due, or why none is
    (`blocked`)."""
    enabled = act.cfg.last_seen_refresh > 0
    left = act.next_refresh
    blocked = None
    if not enabled:
        blocked = "off (LAST_SEEN_REFRESH=0)"
    elif act.cfg.dry_run:
        blocked = "dry run"
    elif act.veto is not None:
        blocked = act.veto
    elif left is None:
        blocked = "the gateway is not known to show unavailable yet"
    return {
        "enabled": enabled,
        "last": iso(act.last_pulse),
        "next": iso(wall + timedelta(seconds=left)) if left is not None else None,
        "pulsing": act.pulsing,
        "blocked": blocked,
    }
