"""The shutdown write (README, "Acting on the gateway"): on SIGTERM, end a last-seen pulse and
write `unavailable` within SHUTDOWN_DEADLINE, unless `on_shutdown=keep`; in fleet mode only the
leader writes, and only when it is the last member out."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from controller.runtime.actuator import Actuator
from controller.telemetry.logs import event

if TYPE_CHECKING:
    from controller.kube.fleet import FleetMember

log = logging.getLogger("presence.controller")

SHUTDOWN_DEADLINE = 5.0
"""On SIGTERM the unavailable write must be done within 5 s (README, "Acting on the gateway")."""
HEARTBEAT_BUDGET = 1.0
"""Fleet mode: at most this long for the `stopping` heartbeat on shutdown (and for re-reading
the others')."""
SETTLE = 0.5
"""Fleet mode, the leader's shutdown: time for replicas stopping at the same moment to say so."""
WRITE_BUDGET = 4.5
"""Leave room inside the deadline for closing clients and the admin server."""


async def shut_down(
    actuator: Actuator, fleet: FleetMember | None, on_shutdown: str, dry_run: bool
) -> None:
    """Write what the bot shows once this replica stops; then, in fleet mode, release the
    Lease (after the last gateway call), and close the gateway client."""
    try:
        await _write(actuator, fleet, on_shutdown, dry_run)
    finally:
        if fleet is not None:
            await fleet.shutdown()
        await actuator.gateway.aclose()


def _may_act(fleet: FleetMember | None, within: float) -> bool:
    return fleet is not None and fleet.leading(within)


async def _write(
    actuator: Actuator, fleet: FleetMember | None, on_shutdown: str, dry_run: bool
) -> None:
    budget = WRITE_BUDGET
    if actuator.pulsing() and (fleet is None or _may_act(fleet, budget)):
        # A last-seen pulse shows available although the decision is unavailable: end it
        # whatever on_shutdown says and whoever leads next.
        if await actuator.shutdown_write(WRITE_BUDGET):
            event(log, logging.INFO, "shutdown", "last-seen pulse ended on shutdown")
        else:
            error = actuator.state.last_error or "no answer in time"
            event(log, logging.ERROR, "shutdown", f"could not end the pulse: {error}")
    if fleet is not None:
        # The fleet as last seen, taken first: the member watch has stopped with the loop,
        # and every second spent here would age what it saw.
        leading, seen = fleet.leading(), fleet.members()
        await fleet.stopping(HEARTBEAT_BUDGET)
        if not leading or not fleet.leading():
            event(log, logging.INFO, "shutdown", "not the leader: presence left to the leader")
            return
        if not await fleet.last_one_out(seen, SETTLE, HEARTBEAT_BUDGET):
            message = "other members are available: presence left to the next leader"
            event(log, logging.INFO, "shutdown", message)
            return
    if on_shutdown == "keep":
        event(log, logging.INFO, "shutdown", "on_shutdown=keep: presence left as is")
        return
    if fleet is not None:
        budget -= 2 * HEARTBEAT_BUDGET + SETTLE
        if not _may_act(fleet, min(budget, actuator.call_timeout)):
            # Leadership lapsed meanwhile, or too little of it is left for the call.
            message = "no longer leading: the shutdown write is left to the next leader"
            event(log, logging.WARNING, "shutdown", message)
            return
    if dry_run:
        message = "dry run: would write unavailable on shutdown (no gateway call made)"
        event(log, logging.INFO, "shutdown", message)
    elif await actuator.shutdown_write(budget):
        event(log, logging.INFO, "shutdown", "wrote unavailable on shutdown")
    else:
        error = actuator.state.last_error or (
            f"no answer within the {WRITE_BUDGET:g}s shutdown budget"
        )
        event(log, logging.ERROR, "shutdown", f"could not write unavailable: {error}")
