"""The `/status` document: a function of the controller's state, no I/O (README, "What it reports").
It holds no secrets; the admin server scrubs it once more before sending."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from controller.core.actuation import calls_last_window
from controller.core.damping import holds, penalty, reuse_at
from controller.core.excerpt import clip
from controller.core.hysteresis import tick_delay
from controller.core.overrides import MaintenanceReport, OnlineHoursReport, OverrideReport
from controller.core.types import Presence

if TYPE_CHECKING:
    from controller.runtime.controller import Controller

STATUS_VALUE_LIMIT = 512
"""Characters of one annotation value shown in /status."""


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _override_status(c: Controller) -> dict[str, Any]:
    ev = c.evaluation
    m = ev.maintenance if ev else MaintenanceReport()
    o = ev.override if ev else OverrideReport(error=c._directives.force_error)
    h = ev.online_hours if ev else OnlineHoursReport()
    return {
        "maintenance": {
            "active": m.active,
            "reason": m.reason,
            "source": m.source,
            "window": m.window,
            "draining": m.draining,
            "ends": _iso(m.ends),
            "next": {"start": _iso(m.next_start), "end": _iso(m.next_end)},
            "lead_seconds": c.settings.maintenance_lead,
            "errors": list(m.errors),
        },
        "override": {
            "force": o.force.value if o.force else None,
            "until": _iso(o.until),
            "active": o.active,
            "expired": o.expired,
            "error": o.error,
        },
        "online_hours": {
            "configured": h.configured,
            "inside": h.inside,
            "next_change": _iso(h.next_change),
        },
        "annotations": {
            "file": str(c._annotations.path) if c._annotations else None,
            "stale": c._snapshot.stale,
            "values": {
                k[:100]: clip(v, STATUS_VALUE_LIMIT)
                for k, v in c._snapshot.values.items()
                if k.startswith(c.settings.annotation_prefix)
            },
        },
    }


def _pending(c: Controller, backoff_until: str | None) -> dict[str, Any] | None:
    """The change the gateway has not accepted yet, and when it will next be tried."""
    desired = c.decision.presence if c.decision is not None else Presence.UNKNOWN
    applied = c.actuator.state.applied
    if c.settings.dry_run or desired in (Presence.UNKNOWN, applied):
        return None
    return {
        "to": desired.value,
        "not_before": backoff_until,
        "waiting_for": c.actuator.next_action,
    }


def _role(c: Controller) -> dict[str, Any]:
    """Fleet mode: whether this replica writes the presence; on a follower, who does and what
    it decided (a follower's `desired` and `reason` are its own consumer's, not the bot's)."""
    if c.fleet is None:
        return {}
    if c.fleet.leading():
        return {"role": "leader"}
    leader = c.fleet.elector.leader() if c.fleet.elector is not None else None
    decided = c.fleet.leader_decision()
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


def status_document(c: Controller, now: float, wall: datetime) -> dict[str, Any]:
    """The `/status` document (README, "What it reports"). Holds no secrets."""
    act = c.actuator.state
    obs, decision = c.observation, c.decision
    backoff_until = None
    if act.backoff_until > now:
        at = wall.timestamp() + act.backoff_until - now
        backoff_until = datetime.fromtimestamp(at, UTC).isoformat()
    cfg = c._hysteresis_cfg
    return {
        "fleet": c.fleet.status() if c.fleet is not None else {"enabled": False},
        "presence": {
            "desired": (decision.presence if decision else Presence.UNKNOWN).value,
            # In dry run nothing reaches the gateway: nothing is applied, whatever we planned.
            "applied": (Presence.UNKNOWN if c.settings.dry_run else act.applied).value,
            "reason": decision.reason if decision else c.state.reason,
            "detail": decision.detail if decision else None,
            "since": c.since.isoformat() if c.since else None,
            "dry_run": c.settings.dry_run,
            "pending": _pending(c, backoff_until),
            **_role(c),
        },
        "signals": {
            "health": obs.health.status.value if obs else None,
            "health_detail": obs.health.detail if obs else None,
            # An infinite lag goes out as null: the admin server makes the document valid JSON.
            "lag_seconds": obs.lag.value if obs else None,
            "lag_status": obs.lag.status.value if obs else None,
            "lag_detail": obs.lag.detail if obs else None,
            "observed_at": obs.at.isoformat() if obs else None,
        },
        "hysteresis": {
            "verdict": c.state.verdict.value,
            "good": c.state.good,
            "bad": c.state.bad,
            "rise": cfg.rise,
            "fall": cfg.fall,
            "lag_low": cfg.lag_low,
            "lag_high": cfg.lag_high,
            # Fast re-probe: the loop's own rule puts the next tick before INTERVAL.
            "fast_reprobe": tick_delay(
                c.state, now, cfg, c.settings.interval, c.settings.fast_interval
            )
            < c.settings.interval,
        },
        **_override_status(c),
        "gateway": {
            "provider": c.gateway.provider,
            "session": act.session,
            "last_error": act.last_error,
            "auth_failed": act.auth_failed,
            "backoff_until": backoff_until,
            "next": c.actuator.next_action,
            "set_calls_last_minute": calls_last_window(act, now, c.actuator.cfg),
            "last_success": _iso(c.actuator.last_success),
        },
        "damping": _damping(c, now, wall),
        "last_seen": _last_seen(c, wall),
        "transitions": [t.as_json() for t in reversed(c.transitions)],
        "ticks": c.ticks,
    }


def _damping(c: Controller, now: float, wall: datetime) -> dict[str, Any]:
    """Flap damping: the decayed penalty, whether a return to available is held back, and
    until when."""
    cfg, state = c._hysteresis_cfg.damping, c.state.damping
    end = reuse_at(state, cfg)
    return {
        "enabled": cfg.enabled,
        "penalty": round(penalty(state, now, cfg), 1),
        "suppressed": holds(state),
        "reuse_at": _iso(wall + timedelta(seconds=end - now)) if end is not None else None,
        "outages": len(state.outages),
    }


def _last_seen(c: Controller, wall: datetime) -> dict[str, Any]:
    """The last-seen refresh: when the last pulse ended, when the next is due, or why none is
    (`blocked`)."""
    actuator, s = c.actuator, c.settings
    enabled = s.last_seen_refresh > 0
    left = actuator.next_refresh()
    blocked = None
    if not enabled:
        blocked = "off (LAST_SEEN_REFRESH=0)"
    elif s.dry_run:
        blocked = "dry run"
    elif actuator.veto is not None:
        blocked = actuator.veto
    elif left is None:
        blocked = "the gateway is not known to show unavailable yet"
    return {
        "enabled": enabled,
        "last": _iso(actuator.last_pulse),
        "next": _iso(wall + timedelta(seconds=left)) if left is not None else None,
        "pulsing": actuator.pulsing(),
        "blocked": blocked,
    }
