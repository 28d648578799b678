"""Leader election on a Lease, with client-go's semantics, as a pure state machine.

The shell reads and writes the Lease; this module says what to write and whether this replica
may act. Time is this replica's own monotonic clock: a lease held by someone else is valid until
`lease_duration` seconds after this replica last *saw its record change*; wall-clock times in the
record are written for people (`kubectl get lease`) and never compared, so clock offsets between
nodes are harmless and only clock rates matter.

- A leader renews every `retry_period` and may act only while its last successful renewal is
  younger than `renew_deadline`; after that it steps down, at least `lease_duration -
  renew_deadline` seconds before any other replica can take over.
- An empty holder (a released lease) can be taken at once.
- Each write carries the resourceVersion read (the shell's job): a 409 means someone else won.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class ElectionConfig:
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        # client-go's NewLeaderElector checks, with its jitter factor 1.2.
        if not self.identity:
            raise ValueError("the election identity must not be empty")
        if min(self.lease_duration, self.renew_deadline, self.retry_period) <= 0:
            raise ValueError("lease duration, renew deadline and retry period must be > 0")
        if not self.lease_duration > self.renew_deadline:
            raise ValueError("the lease duration must be greater than the renew deadline")
        if not self.renew_deadline > JITTER * self.retry_period:
            raise ValueError(f"the renew deadline must be greater than {JITTER} x retry period")


JITTER = 1.2
"""Followers wait retry_period x [1, 1 + JITTER) between tries (client-go's wait.Jitter)."""


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The Lease spec fields election uses (`leaseTransitions` on the wire)."""

    holder: str
    """"" when nobody holds it (released)."""
    duration: int
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0


@dataclass(frozen=True, slots=True)
class ElectionState:
    observed: LeaseRecord | None = None
    """The record last read or written; None before the first read or while the Lease is absent."""
    version: str | None = None
    """The resourceVersion of `observed`: a new one is a change even if the record reads the same
    (client-go compares only the record, whose times have second precision)."""
    observed_at: float | None = None
    """Monotonic time this replica last saw the record change."""
    renewed_at: float | None = None
    """Monotonic time of this replica's last successful write as holder."""


@dataclass(frozen=True, slots=True)
class Create:
    """The Lease does not exist: create it, holding it."""

    record: LeaseRecord


@dataclass(frozen=True, slots=True)
class Update:
    """Write `record` over the Lease read (taking it, or renewing it)."""

    record: LeaseRecord


@dataclass(frozen=True, slots=True)
class Held:
    """Someone else holds a valid lease: nothing to write."""

    holder: str
    until: float
    """Monotonic time it expires unless its record changes again."""


Attempt = Create | Update | Held


def observe(
    state: ElectionState, record: LeaseRecord | None, version: str | None, now: float
) -> ElectionState:
    """A read of the Lease (None: it does not exist), at resourceVersion `version`. Only a
    *change* restarts the expiry timer."""
    if record is None:
        return replace(state, observed=None, version=None, observed_at=None)
    changed = record != state.observed or version != state.version
    if changed or state.observed_at is None:
        return replace(state, observed=record, version=version, observed_at=now)
    return state


def attempt(state: ElectionState, now: float, wall: str, cfg: ElectionConfig) -> Attempt:
    """What to write after a read (client-go's tryAcquireOrRenew); `wall` is the MicroTime now."""
    mine = LeaseRecord(cfg.identity, _seconds(cfg.lease_duration), wall, wall, 0)
    old = state.observed
    if old is None:
        return Create(mine)
    if old.holder and old.holder != cfg.identity and valid(state, now):
        return Held(old.holder, expires(state))
    if old.holder == cfg.identity:
        return Update(replace(mine, acquire_time=old.acquire_time, transitions=old.transitions))
    return Update(replace(mine, transitions=old.transitions + 1))


def renewal(state: ElectionState, wall: str, cfg: ElectionConfig) -> LeaseRecord | None:
    """The fast path: a leader renews from its cached record without reading first."""
    old = state.observed
    if old is None or old.holder != cfg.identity:
        return None
    return replace(old, duration=_seconds(cfg.lease_duration), renew_time=wall)


def written(
    state: ElectionState, record: LeaseRecord, version: str, sent_at: float, cfg: ElectionConfig
) -> ElectionState:
    """The server accepted `record`, sent at `sent_at`. The renewal counts from the moment the
    request left, not from the reply: the server applied it no earlier, so every other replica
    saw the change no earlier, and a slow reply can never stretch this replica's leadership past
    the moment another one may take over."""
    renewed = sent_at if record.holder == cfg.identity else None
    return ElectionState(record, version, observed_at=sent_at, renewed_at=renewed)


def released(wall: str, old: LeaseRecord) -> LeaseRecord:
    """What a leader writes on shutdown (client-go's ReleaseOnCancel): nobody holds it, and
    anyone may take it at once."""
    return LeaseRecord("", 1, wall, wall, old.transitions)


def valid(state: ElectionState, now: float) -> bool:
    """Whether the observed lease is still valid by this replica's clock."""
    if state.observed is None or state.observed_at is None:
        return False
    return now < expires(state)


def expires(state: ElectionState) -> float:
    """Monotonic time the observed lease expires unless its record changes (0: nothing seen)."""
    if state.observed is None or state.observed_at is None:
        return 0.0
    return state.observed_at + state.observed.duration


def leading(state: ElectionState, now: float, cfg: ElectionConfig) -> bool:
    """Whether this replica may act as leader now: it holds the lease and renewed it within the
    renew deadline. Every leader-only action is gated on this at the moment it starts."""
    if state.renewed_at is None or state.observed is None:
        return False
    return state.observed.holder == cfg.identity and now - state.renewed_at < cfg.renew_deadline


def leader(state: ElectionState, now: float) -> str | None:
    """Who leads, as far as this replica can tell (None: nobody, or the lease expired)."""
    if state.observed is None or not state.observed.holder or not valid(state, now):
        return None
    return state.observed.holder


def _seconds(value: float) -> int:
    return max(1, round(value))
