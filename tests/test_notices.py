"""Notices before anything changes, and the calendar and holidays in a running controller: a
`MaintenanceScheduled` notice when a window starts within PRESENCE_NOTICE, a `ForceExpiring` one
ten minutes before `force-until` (log lines in single-replica mode, Events in fleet mode:
tests/test_fleet.py), each given once; `/status.maintenance.next`, `/status.override.expires`,
`/status.maintenance.calendar` and `/status.online_hours.holiday`."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Running, Sim, running, until

from controller.sim.downward_api import DownwardAPIVolume

VIRTUAL_TIME = True
"""Controllers here wait in virtual time (docs/architecture.md, "Time"); the wall clock is the
system's, so windows are declared relative to it."""


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ics_event(uid: str, summary: str, start: datetime, end: datetime) -> str:
    return (
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nSUMMARY:{summary}\r\n"
        f"DTSTART:{start.astimezone(UTC):%Y%m%dT%H%M%SZ}\r\n"
        f"DTEND:{end.astimezone(UTC):%Y%m%dT%H%M%SZ}\r\nEND:VEVENT\r\n"
    )


def write_calendar(path: Path, *events: str) -> None:
    text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n" + "".join(events)
    new = path.with_suffix(".new")
    new.write_text(text + "END:VCALENDAR\r\n")
    os.replace(new, path)


def notices(run: Running, kind: str) -> list[str]:
    return [
        e["msg"] for e in run.log_events() if e.get("event") == "notice" and e["notice"] == kind
    ]


async def test_a_window_and_a_force_expiry_are_announced_once_in_single_replica_mode(
    sim: Sim, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now + timedelta(minutes=30)
    window = f"{stamp(start)}/PT2H"
    volume = DownwardAPIVolume(tmp_path / "podinfo")
    until_at = now + timedelta(minutes=5)
    volume.write(
        {
            "presence-controller/force": "available",
            "presence-controller/force-until": stamp(until_at),
        }
    )
    settings = sim.settings(maintenance_windows=window, annotations_file=volume.file)
    async with running(settings) as run:
        await until(lambda: len(notices(run, "MaintenanceScheduled")) == 1)
        await until(lambda: len(notices(run, "ForceExpiring")) == 1)
        (scheduled,) = notices(run, "MaintenanceScheduled")
        assert scheduled.startswith(f"maintenance starts at {start.isoformat()} (in ")
        assert scheduled.endswith(f": PRESENCE_MAINTENANCE_WINDOWS '{start.isoformat()}/"
                                  f"{(start + timedelta(hours=2)).isoformat()}'")  # fmt: skip
        (expiring,) = notices(run, "ForceExpiring")
        assert expiring.startswith(f"force available expires at {until_at.isoformat()} (in ")
        status = await run.status()
        assert status["maintenance"]["next"]["start"] == start.isoformat()
        assert status["maintenance"]["next"]["source"] == "PRESENCE_MAINTENANCE_WINDOWS"
        assert status["override"]["expires"] == until_at.isoformat()
        assert {n["reason"] for n in status["maintenance"]["notices"]} == {
            "MaintenanceScheduled", "ForceExpiring",
        }  # fmt: skip
        # Further ticks and re-evaluations give no second notice.
        ticks = run.controller.ticks
        forced = {"presence-controller/force": "available",
                  "presence-controller/force-until": stamp(until_at)}  # fmt: skip
        volume.write({**forced, "other": "x"})
        await until(lambda: run.controller.ticks > ticks + 5)
        assert len(notices(run, "MaintenanceScheduled")) == 1
        assert len(notices(run, "ForceExpiring")) == 1


@pytest.mark.real_time  # the calendar's worker is a real process
async def test_a_calendar_event_is_maintenance_and_a_change_to_the_file_applies(
    sim: Sim, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    path = tmp_path / "maintenance.ics"
    write_calendar(path, ics_event("a", "Quarterly DR drill", now + timedelta(minutes=20),
                                   now + timedelta(hours=1)))  # fmt: skip
    async with running(sim.settings(maintenance_calendar=path)) as run:
        await until(lambda: sim.gateway.presence == "available")
        await until(lambda: len(notices(run, "MaintenanceScheduled")) == 1)
        assert (
            "Quarterly DR drill (PRESENCE_MAINTENANCE_CALENDAR"
            in notices(run, "MaintenanceScheduled")[0]
        )
        status = await run.status()
        calendar = status["maintenance"]["calendar"]
        assert calendar["file"] == str(path) and calendar["windows"] == 1
        assert calendar["error"] is None and calendar["stale"] is None
        assert status["maintenance"]["next"]["reason"].startswith("Quarterly DR drill")
        # The team adds an event that runs now: the bot goes offline, named by its summary.
        drill = ics_event(
            "a", "Quarterly DR drill", now + timedelta(minutes=20), now + timedelta(hours=1)
        )
        patch = ics_event(
            "b", "Emergency patch", now - timedelta(minutes=1), now + timedelta(hours=2)
        )
        write_calendar(path, drill, patch)
        await until(lambda: sim.gateway.presence == "unavailable", within=30)
        status = await run.status()
        assert status["presence"]["reason"].startswith(
            "maintenance: Emergency patch (PRESENCE_MAINTENANCE_CALENDAR '"
        )
        # A broken file fails closed, reported; fixed, it applies again.
        path.write_bytes(b"BEGIN:VCALENDAR\r\nbroken")
        await until(lambda: (run.controller.sources.calendar or path).failed is not None, 30)  # type: ignore[union-attr]
        status = await run.status()
        assert status["presence"]["reason"].startswith(f"maintenance: invalid calendar {path}: ")
        assert status["presence"]["desired"] == "unavailable"
        assert await run.metric("presence_annotation_invalid") == 1
        assert any(e.get("event") == "calendar_error" for e in run.log_events())
        write_calendar(path)
        await until(lambda: sim.gateway.presence == "available", within=30)
        assert await run.metric("presence_annotation_invalid") == 0


@pytest.mark.real_time
async def test_a_calendar_that_is_broken_at_start_fails_closed_from_the_first_decision(
    sim: Sim, tmp_path: Path
) -> None:
    path = tmp_path / "maintenance.ics"
    path.write_bytes(b"\x00" * 100)
    async with running(sim.settings(maintenance_calendar=path)) as run:
        await until(lambda: run.controller.decision is not None)
        decision = run.controller.decision
        assert decision is not None and decision.presence.value == "unavailable"
        assert decision.reason.startswith(f"maintenance: invalid calendar {path}")
        assert sim.gateway.presence != "available"
