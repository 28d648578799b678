"""Who leads the fleet, read once (for one-shot commands such as `check-gateway --set`)."""

from __future__ import annotations

from dataclasses import dataclass

from controller.config import KubeSettings
from controller.core.election import read_record
from controller.core.fleet import unix_time
from controller.kube.client import KubeClient, KubeError, identity_of, namespace_of
from controller.kube.members import workload_of

REQUEST_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Leadership:
    lease: str
    me: str
    leader: str | None
    """The holder of an unexpired leader Lease; None when nobody leads."""

    @property
    def follower(self) -> bool:
        return self.leader is not None and self.leader != self.me


async def who_leads(settings: KubeSettings, wall_now: float) -> Leadership:
    """The leader Lease as it reads now: its holder, unless it expired by `wall_now` (its
    renewTime plus its duration, by the holder's clock). Raises KubeError when it cannot be read,
    or when it is held by someone unknown (an unreadable record)."""
    client = KubeClient(namespace_of(settings.namespace), REQUEST_TIMEOUT)
    try:
        me = identity_of(settings.pod_name)
        lease = settings.lease_name
        if lease is None:
            workload = settings.workload or await workload_of(client, me)
            if workload in {None, "none"}:
                raise KubeError(0, "", "no workload: set PRESENCE_KUBE__LEASE_NAME")
            lease = f"{str(workload).partition('/')[2]}-presence"
        found = await client.get_lease(lease)
    finally:
        await client.aclose()
    if found is None:
        return Leadership(lease, me, None)
    record = read_record(found.get("spec"))
    if record.problem:
        raise KubeError(0, "", f"lease {lease} cannot be read: {record.problem}")
    renewed = unix_time(record.renew_time)
    if not record.holder or (renewed is not None and renewed + record.duration < wall_now):
        return Leadership(lease, me, None)
    return Leadership(lease, me, record.holder)
