"""`kubectl presence status`: what the bot shows and why, and what changes next, read from the
cluster as the controller reads it.

The decision and its reason come from the leader's heartbeat Lease (fleet mode), the members'
verdicts from theirs, the recent history from the controller's Events. What happens next is
evaluated here with the controller's own code (core.overrides) from the annotations on the
workload (fleet mode), its pods (single-replica mode) and the Namespace (with
WATCH_NAMESPACE), and from the settings in the workload's pod template (maintenance windows,
online hours and holidays, lead and notice; literal `value`s only).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.config.schedules import ScheduleSettings
from controller.core.annotations import Directives, read_directives
from controller.core.election import read_record
from controller.core.fleet import LEASE_LABEL, read_heartbeat, unix_time
from controller.core.overrides import Evaluation, evaluate
from controller.kube.client import KubeClient, KubeError
from controller.plugin.edits import UsageError
from controller.runtime.status import evaluation_sections, iso

KINDS = {
    "deploy": "deployments", "deployment": "deployments", "deployments": "deployments",
    "sts": "statefulsets", "statefulset": "statefulsets", "statefulsets": "statefulsets",
    "po": "pods", "pod": "pods", "pods": "pods",
}  # fmt: skip
SINGULAR = {"deployments": "deployment", "statefulsets": "statefulset", "pods": "pod"}
TRUE = {"true", "1", "yes", "on"}
EVENTS_SHOWN = 5
SETTINGS = {
    "PRESENCE_MAINTENANCE_WINDOWS": "maintenance_windows",
    "PRESENCE_ONLINE_HOURS": "online_hours",
    "PRESENCE_ONLINE_HOURS_HOLIDAYS": "online_hours_holidays",
    "PRESENCE_MAINTENANCE_LEAD": "maintenance_lead",
    "PRESENCE_NOTICE": "notice",
}


@dataclass(frozen=True, slots=True)
class Target:
    plural: str
    name: str

    def __str__(self) -> str:
        return f"{SINGULAR[self.plural]}/{self.name}"


def parse_target(text: str) -> Target:
    kind, slash, name = text.partition("/")
    if not slash or kind.lower() not in KINDS or not name:
        raise UsageError(f"{text!r}: expected deploy/NAME, statefulset/NAME or pod/NAME")
    return Target(KINDS[kind.lower()], name)


@dataclass
class Workload:
    """The target as read: its annotations, its pod template's settings, fleet mode or not."""

    target: Target
    obj: dict[str, Any]
    env: dict[str, str]
    notes: list[str]
    leader_lease: dict[str, Any] | None = None
    """The workload's leader Lease, if it exists (fleet mode, whatever the settings say)."""

    @property
    def fleet(self) -> bool:
        if self.target.plural == "pods":
            return False
        enabled = self.env.get("PRESENCE_KUBE__ENABLED", "").lower() in TRUE
        return self.leader_lease is not None or enabled

    @property
    def prefix(self) -> str:
        return self.env.get("PRESENCE_ANNOTATION_PREFIX", "presence-controller/")

    @property
    def lease(self) -> str:
        return self.env.get("PRESENCE_KUBE__LEASE_NAME") or f"{self.target.name}-presence"

    def selector(self) -> dict[str, str] | None:
        labels = ((self.obj.get("spec") or {}).get("selector") or {}).get("matchLabels")
        return dict(labels) if isinstance(labels, dict) and labels else None


async def read_workload(client: KubeClient, target: Target) -> Workload:
    obj = await client.get(target.plural, target.name)
    if obj is None:
        raise KubeError(404, "NotFound", f"{target} not found in namespace {client.namespace}")
    spec = obj.get("spec") or {}
    pod_spec = spec if target.plural == "pods" else (spec.get("template") or {}).get("spec") or {}
    env: dict[str, str] = {}
    notes: list[str] = []
    maps: dict[str, dict[str, str]] = {}

    async def config_map(name: str) -> dict[str, str]:
        """A ConfigMap's data, read once however many references it has."""
        if name in maps:
            return maps[name]
        maps[name] = {}
        try:
            found = await client.get("configmaps", name)
        except KubeError as exc:
            notes.append(f"settings in ConfigMap {name} not read: {exc.message}")
            return {}
        data = (found or {}).get("data") or {}
        maps[name] = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
        return maps[name]

    for container in pod_spec.get("containers") or []:
        for source in container.get("envFrom") or []:
            ref = (source.get("configMapRef") or {}).get("name")
            if isinstance(ref, str):
                prefix = str(source.get("prefix") or "")
                env.update({prefix + k: v for k, v in (await config_map(ref)).items()})
        for var in container.get("env") or []:
            name, value = var.get("name"), var.get("value")
            key = ((var.get("valueFrom") or {}).get("configMapKeyRef") or {}).get("key")
            ref = ((var.get("valueFrom") or {}).get("configMapKeyRef") or {}).get("name")
            if isinstance(ref, str) and isinstance(key, str):
                value = (await config_map(ref)).get(key)
            if isinstance(name, str) and isinstance(value, str):
                env[name] = value
    env = {k: v for k, v in env.items() if k.startswith("PRESENCE_")}
    workload = Workload(target, obj, env, notes)
    if target.plural != "pods":
        workload.leader_lease = await client.get("leases", workload.lease)
    return workload


async def pods_of(client: KubeClient, workload: Workload) -> list[dict[str, Any]]:
    """The workload's pods (single-replica mode: the controller reads its pod's annotations)."""
    if workload.target.plural == "pods":
        return [workload.obj]
    labels = workload.selector()
    if labels is None:
        raise KubeError(0, "", f"{workload.target} has no matchLabels selector to find its pods")
    items, _, _ = await client.list_objects("pods", labels=labels, most=100)
    return items


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    notes = (obj.get("metadata") or {}).get("annotations") or {}
    return {k: v for k, v in notes.items() if isinstance(k, str) and isinstance(v, str)}


async def status(client: KubeClient, target: Target, at: datetime) -> dict[str, Any]:
    """The status document (`-o json`); `render` prints it."""
    workload = await read_workload(client, target)
    notes = workload.notes
    sources: list[tuple[str, dict[str, str]]] = []
    if workload.fleet:
        sources.append((str(target), annotations_of(workload.obj)))
    else:
        sources += [(f"pod/{p['metadata']['name']}", annotations_of(p))
                    for p in await pods_of(client, workload)]  # fmt: skip
    if workload.env.get("PRESENCE_KUBE__WATCH_NAMESPACE", "") in TRUE:
        try:
            namespace = await client.get("namespaces", client.namespace)
            sources.append((f"namespace/{client.namespace}", annotations_of(namespace or {})))
        except KubeError as exc:
            notes.append(f"namespace annotations not read: {exc.message}")
    evaluation, config_error = _evaluate(workload, sources, at)
    if config_error:
        notes.append(f"the pod template's settings are invalid: {config_error}")
    calendar = workload.env.get("PRESENCE_MAINTENANCE_CALENDAR")
    if calendar:
        notes.append(
            f"a maintenance calendar is configured ({calendar}): its windows are not read here; "
            "the controller's /status.maintenance shows them"
        )
    doc: dict[str, Any] = {
        "target": str(target),
        "namespace": client.namespace,
        "mode": "fleet" if workload.fleet else "single-replica",
        **(await _fleet(client, workload, at) if workload.fleet else {}),
        **_schedule(evaluation),
        "events": await _events(client, target) if workload.fleet else [],
        "notes": notes,
    }
    return doc


def _evaluate(
    workload: Workload, sources: list[tuple[str, dict[str, str]]], at: datetime
) -> tuple[Evaluation, str | None]:
    values = {SETTINGS[k]: v for k, v in workload.env.items() if k in SETTINGS}
    error = None
    try:
        config = ScheduleSettings.model_validate(values)
    except ValueError as exc:
        error, config = " ".join(str(exc).split())[:300], ScheduleSettings()
    prefix = workload.prefix
    others = tuple((where, read_directives(notes, {}, prefix)) for where, notes in sources)
    evaluation = evaluate(
        Directives(prefix=prefix), config.maintenance_schedule(), config.online_hours_schedule(),
        config.maintenance_lead, at, (), others, None, config.notice,
    )  # fmt: skip
    return evaluation, error


async def _fleet(client: KubeClient, workload: Workload, at: datetime) -> dict[str, Any]:
    """The leader, its decision and the members' verdicts, from the Leases."""
    lease = workload.lease
    out: dict[str, Any] = {"lease": lease, "leader": None, "decision": None, "members": {}}
    found = workload.leader_lease
    record = read_record((found or {}).get("spec"))
    renewed = unix_time(record.renew_time)
    if found is not None and record.holder and not record.problem:
        expired = renewed is None or renewed + record.duration < at.timestamp()
        out["leader"] = {"pod": record.holder, "expired": expired}
    items, _, _ = await client.list_objects("leases", labels={LEASE_LABEL: lease}, most=300)
    counts: Counter[str] = Counter()
    for item in items:
        beat = read_heartbeat(str(item["metadata"]["name"]), item, lease)
        if isinstance(beat, str):
            continue
        counts[beat.verdict] += 1
        if out["leader"] and beat.pod == out["leader"]["pod"] and beat.decision:
            out["decision"] = {"presence": beat.decision[0], "reason": beat.decision[1]}
    out["members"] = dict(counts)
    return out


def _schedule(ev: Evaluation) -> dict[str, Any]:
    """The sections `/status` has for maintenance, override and online hours, the notices due
    and the next change of any of them."""
    m, o, h = ev.maintenance, ev.override, ev.online_hours
    changes = [t for t in (m.ends if m.active else m.next_start, o.until if o.active else None,
                           h.next_change if h.configured else None) if t]  # fmt: skip
    sections = evaluation_sections(ev)
    sections["override"]["reason"] = ev.inputs.force_reason or None
    notices = sections["maintenance"].pop("notices")
    return {**sections, "notices": notices, "next_change": iso(min(changes)) if changes else None}


async def _events(client: KubeClient, target: Target) -> list[dict[str, Any]]:
    items, _, _ = await client.list_objects("events", most=1000)
    ours = [
        e for e in items
        if (e.get("regarding") or {}).get("name") == target.name
        and e.get("reportingController") == "presence-controller"
    ]  # fmt: skip

    def when(e: dict[str, Any]) -> str:
        return str((e.get("series") or {}).get("lastObservedTime") or e.get("eventTime") or "")

    ours.sort(key=when)
    return [
        {"at": when(e), "type": e.get("type"), "reason": e.get("reason"), "note": e.get("note"),
         "count": (e.get("series") or {}).get("count", 1)}
        for e in ours[-EVENTS_SHOWN:]
    ]  # fmt: skip


def render(doc: dict[str, Any]) -> str:
    """The status document in words, one line per subject."""
    lines = [f"{doc['target']} in namespace {doc['namespace']} ({doc['mode']} mode)"]
    if doc["mode"] == "fleet":
        leader, decision = doc.get("leader"), doc.get("decision")
        who = "nobody leads" if not leader or leader["expired"] else f"leader {leader['pod']}"
        lines.append(f"  lease:        {doc['lease']} ({who})")
        if decision:
            lines.append(f"  decided:      {decision['presence']}: {decision['reason']}")
        members = ", ".join(f"{n} {v}" for v, n in sorted(doc["members"].items()))
        lines.append(f"  members:      {members or 'no heartbeats'}")
    m, o, h = doc["maintenance"], doc["override"], doc["online_hours"]
    if m["active"]:
        ends = f" until {m['ends']}" if m["ends"] else ""
        lines.append(f"  maintenance:  ON{ends}: {m['reason']}")
    else:
        lines.append("  maintenance:  off")
    if m["next"]["start"]:
        nxt = m["next"]
        lines.append(f"  next window:  {nxt['start']} -> {nxt['end'] or 'no end'}: {nxt['reason']}")
    for error in m["errors"]:
        lines.append(f"  invalid:      {error}")
    if o["active"]:
        lines.append(
            f"  force:        {o['force']}, expires {o['expires'] or 'never'} ({o['reason']})"
        )
    elif o["expired"]:
        lines.append(
            f"  force:        {o['force']}, expired (remove it: kubectl presence force clear)"
        )
    if h["configured"]:
        state = "inside" if h["inside"] else "outside"
        holiday = f", closed for {h['holiday']}" if h["holiday"] else ""
        holidays = f" (holidays {h['holidays']})" if h["holidays"] else ""
        lines.append(f"  online hours: {h['configured']!r}{holidays}: {state}{holiday}, "
                     f"next change {h['next_change']}")  # fmt: skip
    lines.append(f"  next change:  {doc['next_change'] or 'none scheduled'}")
    lines += [f"  notice:       {n['reason']}: {n['message']}" for n in doc["notices"]]
    if doc["events"]:
        lines.append("  events:")
        lines += [f"    {e['at']}  {e['type']:<7} {e['reason']} (x{e['count']}): {e['note']}"
                  for e in doc["events"]]  # fmt: skip
    lines += [f"  note:         {n}" for n in doc["notes"]]
    return "\n".join(lines)
