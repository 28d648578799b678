"""promtool unit tests for a fleet of three replicas (pod-a, pod-b, pod-c of Deployment
whatsapp-bot), written as scenarios: what each replica exports, minute by minute, and which alerts
must fire (labels only; annotations.test.yaml checks the texts). promtool.py writes them out as
fleet.test.yaml and runs them with the others.

A replica's series follow what the controller exports: the leader's `presence_desired_state` is
the bot's (the fleet decision), a follower's its own consumer's verdict; followers never call the
gateway (applied `unknown`, last success 0, session NaN); a former leader resets its gateway
gauges.
"""

from __future__ import annotations

from typing import Any

NS, WORKLOAD = "whatsapp-bot", "whatsapp-bot"
PODS = ("pod-a", "pod-b", "pod-c")
STEPS = 120
"""Samples per series, one every 30 s: an hour."""
ALERTS = (
    "PresenceControllerDown", "PresenceControllerAbsent", "PresenceControllerNotTicking",
    "PresenceNoLeader", "PresenceKubeAPIUnreachable", "PresenceStuckUnavailable",
    "PresenceFleetDegraded", "PresenceMaintenance", "PresenceFlapping",
    "PresenceGatewayAuthFailure", "PresenceGatewayErrors", "PresenceGatewaySessionNotWorking",
    "PresenceNotConfirmed", "PresenceNotApplied", "PresenceAnnotationErrors",
    "PresenceTraceExportDropping", "PresenceShownOnlineWhileUnavailable",
    "PresenceNotShownWhileAvailable",
)  # fmt: skip
BOT = {"namespace": NS, "workload": WORKLOAD}


def const(value: float | str, steps: int = STEPS) -> str:
    """`value` for `steps` + 1 samples (promtool expands no NaN: written out)."""
    return " ".join(["NaN"] * (steps + 1)) if value == "NaN" else f"{value}x{steps}"


def clock() -> str:
    """A Unix timestamp that keeps up with the test's time (0 at the start)."""
    return f"0+30x{STEPS}"


def series(name: str, pod: str, values: str, **labels: str) -> dict[str, str]:
    every = {"namespace": NS, "pod": pod, "workload": WORKLOAD, **labels}
    shown = ",".join(f'{k}="{v}"' for k, v in every.items())
    return {"series": f"{name}{{{shown}}}", "values": values}


def replica(
    pod: str,
    *,
    leader: str = "0",
    desired: str = "available",
    applied: str = "unknown",
    rule: str = "health",
    up: str | None = None,
    **override: str,
) -> list[dict[str, str]]:
    """What one replica exports, healthy unless overridden (values in promtool's notation)."""
    leads = leader != "0"
    out = [
        series("up", pod, up or const(1), job="presence-controller"),
        series("presence_leader", pod, leader if leads else const(0)),
        series("presence_last_tick_timestamp_seconds", pod, clock()),
        series("presence_reassert_interval_seconds", pod, const(20)),
        series("presence_maintenance_active", pod, override.get("maintenance", const(0))),
        series("presence_annotation_invalid", pod, const(0)),
        series("presence_dry_run", pod, const(0)),
        series("presence_trace_spans_total", pod, const(0), result="dropped"),
        series("presence_kube_requests_total", pod, "0+20x120", verb="update", resource="leases",
               code=override.get("kube_code", "200")),
        series("presence_gateway_auth_failed", pod, override.get("auth", const(0))),
        series("presence_gateway_session_working", pod,
               override.get("session", const(1) if leads else const("NaN"))),
        series("presence_gateway_last_success_timestamp_seconds", pod,
               override.get("success", clock() if leads else const(0))),
        series("presence_gateway_requests_total", pod, "0+2x120" if leads else const(0),
               provider="wawp", outcome="ok"),
        series("presence_gateway_requests_total", pod, const(0), provider="wawp",
               outcome="transient_error"),
        series("presence_transitions_total", pod, override.get("flips", const(1)),
               to="available", rule=override.get("flip_rule", "health")),
        # The witness: the leader's watches (a follower's ratio is NaN, its counter still).
        series("presence_witness_false_online_seconds_total", pod,
               override.get("false_online", const(0))),
        series("presence_witness_shown_available_ratio", pod,
               override.get("shown_ratio", const(1) if leads else const("NaN"))),
    ]  # fmt: skip
    for state in ("available", "unavailable", "unknown"):
        value = override.get(f"desired_{state}", const(1 if desired == state else 0))
        out.append(series("presence_desired_state", pod, value, state=state))
        applied_value = override.get(f"applied_{state}", const(1 if applied == state else 0))
        out.append(series("presence_applied_state", pod, applied_value, state=state))
    for name in ("health", "maintenance"):
        out.append(series("presence_decision_rule", pod, const(1 if rule == name else 0), rule=name))
    for verdict in ("available", "unavailable", "unknown"):
        value = override.get(f"members_{verdict}", const(3 if verdict == "available" else 0))
        out.append(series("presence_fleet_members", pod, value, verdict=verdict))
    return out


def fleet(a: dict[str, Any] | None = None, b: dict[str, Any] | None = None,
          c: dict[str, Any] | None = None) -> list[dict[str, str]]:  # fmt: skip
    """A healthy fleet led by pod-a, with overrides per replica."""
    leader = {"leader": const(1), "applied": "available"}
    return [
        *replica("pod-a", **{**leader, **(a or {})}),
        *replica("pod-b", **(b or {})),
        *replica("pod-c", **(c or {})),
    ]


def silent(*at: str, but: dict[str, list[dict[str, str]]] | None = None) -> list[dict[str, Any]]:
    """At each eval time, no alert fires except those in `but`."""
    return [
        {"eval_time": t, "alertname": name, "exp_alerts": (but or {}).get(name, [])}
        for t in at
        for name in ALERTS
    ]


def alert(severity: str, **labels: str) -> dict[str, Any]:
    return {"exp_labels": {"severity": severity, **labels}}


# Values in promtool's notation: `1x20 0x100` is 1 for 10 minutes, then 0.
SCENARIOS: list[dict[str, Any]] = [
    {
        "name": "the API server answers no replica: PresenceKubeAPIUnreachable, once",
        "input_series": fleet(a={"kube_code": "0"}, b={"kube_code": "0"}, c={"kube_code": "0"}),
        "alert_rule_test": [
            *silent("4m"),
            *silent("11m", but={"PresenceKubeAPIUnreachable": [alert("warning", **BOT)]}),
        ],
    },
    {
        "name": "a healthy fleet raises no alert, followers included",
        "input_series": fleet(),
        "alert_rule_test": silent("5m", "20m", "59m"),
    },
    {
        "name": "one consumer down: only PresenceFleetDegraded, once",
        "input_series": fleet(
            a={"members_available": const(2), "members_unavailable": const(1)},
            c={"desired": "unavailable"},
        ),
        "alert_rule_test": [
            *silent("9m"),
            *silent("15m", "59m", but={"PresenceFleetDegraded": [alert("warning", **BOT)]}),
        ],
    },
    {
        "name": "every consumer down: PresenceStuckUnavailable once, not per replica",
        "input_series": fleet(
            a={"desired": "unavailable", "applied": "unavailable",
               "members_available": const(0), "members_unavailable": const(3)},
            b={"desired": "unavailable"},
            c={"desired": "unavailable"},
        ),  # fmt: skip
        "alert_rule_test": [
            *silent("29m"),
            *silent("35m", but={"PresenceStuckUnavailable": [alert("warning", **BOT)]}),
        ],
    },
    {
        "name": "no replica leads (the API server is gone): PresenceNoLeader",
        "input_series": fleet(
            a={"leader": "1x10 0x110", "success": "0+30x10 300x110", "applied": "unknown",
               "session": f"1x10 {const('NaN', 110)}"},
        ),  # fmt: skip
        "alert_rule_test": [
            *silent("5m"),
            {"eval_time": "6m30s", "alertname": "PresenceNoLeader",
             "exp_alerts": [alert("critical", **BOT)]},
        ],  # fmt: skip
    },
    {
        "name": "a dead follower is a warning, and names the pod",
        "input_series": fleet(c={"up": "1x10 0x110"}),
        "alert_rule_test": [
            *silent("6m"),
            *silent(
                "11m",
                but={"PresenceControllerDown": [
                    alert("warning", job="presence-controller", namespace=NS, pod="pod-c",
                          workload=WORKLOAD)]},
            ),  # fmt: skip
        ],
    },
    {
        "name": "every replica dead: PresenceControllerDown critical, once",
        "input_series": fleet(
            a={"up": "1x10 0x110"}, b={"up": "1x10 0x110"}, c={"up": "1x10 0x110"}
        ),
        "alert_rule_test": [
            {"eval_time": "9m", "alertname": "PresenceControllerDown",
             "exp_alerts": [alert("critical", **BOT)]},
        ],  # fmt: skip
    },
    {
        "name": "a former leader's stale credential failure stops counting a minute after it",
        # pod-a led with a rejected credential; at 10m pod-b took over and its calls succeed.
        # pod-a runs an older version that kept its gauge: it no longer counts after 1m.
        "input_series": fleet(
            a={"leader": "1x20 0x100", "auth": const(1), "success": const(0),
               "applied": "unknown"},
            b={"leader": "0x20 1x100", "applied": "available", "success": "_x20 600+30x100",
               "session": f"{const('NaN', 20)} 1x100"},
        ),  # fmt: skip
        "alert_rule_test": [
            {"eval_time": "8m", "alertname": "PresenceGatewayAuthFailure",
             "exp_alerts": [alert("critical", **BOT)]},
            *silent("13m", "40m"),
        ],  # fmt: skip
    },
    {
        "name": "a handover does not reset a pending alert",
        # Every consumer down for good; pod-a leads until 15m, nobody for 30 s, then pod-b.
        "input_series": fleet(
            a={"leader": "1x30 0x90", "desired": "unavailable", "applied": "unavailable",
               "members_available": const(0), "members_unavailable": const(3)},
            b={"leader": "0x31 1x89", "desired": "unavailable", "applied": "unavailable",
               "members_available": const(0), "members_unavailable": const(3)},
            c={"desired": "unavailable"},
        ),  # fmt: skip
        "alert_rule_test": [
            *silent("35m", but={"PresenceStuckUnavailable": [alert("warning", **BOT)]}),
        ],
    },
    {
        "name": "maintenance: PresenceMaintenance once (the inhibition's source), nothing else",
        "input_series": fleet(
            a={"desired": "unavailable", "applied": "unavailable", "rule": "maintenance",
               "maintenance": const(1), "flips": "0x60 1+1x59", "flip_rule": "maintenance"},
            b={"maintenance": const(1), "rule": "maintenance", "desired": "unavailable"},
            c={"maintenance": const(1), "rule": "maintenance", "desired": "unavailable"},
        ),  # fmt: skip
        "alert_rule_test": [
            *silent("40m", "59m", but={"PresenceMaintenance": [alert("info", **BOT)]}),
        ],
    },
    {
        "name": "flapping counts the leader's health changes, not a follower's own",
        "input_series": fleet(
            a={"flips": "0x40 1+1x79"},  # 20 changes in the last 40 minutes
            c={"flips": "0x40 1+1x79"},
        ),
        "alert_rule_test": [
            *silent("15m"),
            {"eval_time": "59m", "alertname": "PresenceFlapping",
             "exp_alerts": [alert("warning", **BOT)]},
        ],  # fmt: skip
    },
    {
        "name": "what the leader's witness sees alerts once for the bot; a former leader's "
        "figures do not",
        # pod-a leads; from 10m a gateway marks the bot online 20 s of every 30 while it should
        # be offline. pod-b led before the start and kept a poor ratio from then (it no longer
        # watches: NaN is what it exports; a stale low value is modelled here, the worst case).
        "input_series": fleet(
            a={"desired": "unavailable", "applied": "unavailable",
               "false_online": "0x20 0+20x100"},
            b={"false_online": const(500), "shown_ratio": const(0.2)},
        ),  # fmt: skip
        "alert_rule_test": [
            *silent("9m"),
            *silent("20m", but={"PresenceShownOnlineWhileUnavailable": [alert("critical", **BOT)],
                                "PresenceStuckUnavailable": []}),
        ],  # fmt: skip
    },
    {
        "name": "the leader's witness sees the bot offline too often while it should be online",
        "input_series": fleet(a={"shown_ratio": "1x20 0.6x100"}, c={"shown_ratio": const(0.1)}),
        "alert_rule_test": [
            *silent("30m"),
            *silent("55m", but={"PresenceNotShownWhileAvailable": [alert("warning", **BOT)]}),
        ],
    },
    {
        "name": "a follower's own flapping consumer is not the bot flapping",
        "input_series": fleet(c={"flips": "0x40 1+1x79"}),
        "alert_rule_test": silent("59m"),
    },
]


def document() -> dict[str, Any]:
    return {
        "rule_files": ["rules-labels.yaml"],
        "evaluation_interval": "30s",
        "tests": [{"interval": "30s", **scenario} for scenario in SCENARIOS],
    }
