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
- Stricter than client-go, where a hostile or broken API server would make two leaders: a Lease
  that cannot be read (no spec, no holder, a duration that is not a positive integer) is held by
  someone unknown, never free; a Lease is never taken sooner than this replica's own
  `lease_duration` after it last saw the record change, whatever duration the record states;
  and a Lease that vanishes (`kubectl delete lease`) does not free what was held: nobody who
  saw the holder takes it until that holder's lease would have run out, while the holder
  itself stops the moment it reads the Lease gone (its own renewal is refused first: the real
  API server checks the uid it carries). A replica that never read the Lease while it was held
  cannot know; that is client-go's limit too.
- Each write carries the resourceVersion read (the shell's job): a 409 means someone else won.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any


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
    problem: str = ""
    """Why the Lease cannot be read ("" when it can): held by someone unknown, never free."""

    @property
    def held(self) -> bool:
        """Someone holds it (or may: an unreadable record)."""
        return bool(self.holder) or bool(self.problem)


UNKNOWN_HOLDER = "(unreadable lease)"
_HOLDER = re.compile(r"[\x21-\x7e]{1,253}")
"""A holder identity: printable ASCII without spaces, as long as a pod name may be."""


def read_record(spec: Any) -> LeaseRecord:
    """A Lease's `spec` as read from the API server, strictly: what cannot be read is a record
    with a `problem`, which `attempt` treats as held by someone unknown."""
    if not isinstance(spec, dict):
        return LeaseRecord("", 0, problem="no spec")
    holder, duration = spec.get("holderIdentity"), spec.get("leaseDurationSeconds")
    if not isinstance(holder, str):
        return LeaseRecord("", 0, problem="no holderIdentity")
    if holder and not _HOLDER.fullmatch(holder):
        return LeaseRecord("", 0, problem="a holderIdentity that is not a name")
    if holder and (not isinstance(duration, int) or isinstance(duration, bool) or duration < 1):
        return LeaseRecord("", 0, problem="a leaseDurationSeconds that is not a positive integer")
    acquired, renewed = (spec.get(key) for key in ("acquireTime", "renewTime"))
    transitions = spec.get("leaseTransitions")
    return LeaseRecord(
        holder,
        duration if isinstance(duration, int) else 1,
        acquired if isinstance(acquired, str) else None,
        renewed if isinstance(renewed, str) else None,
        transitions if isinstance(transitions, int) and transitions >= 0 else 0,
    )


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
    vanished: LeaseRecord | None = None
    """The Lease is absent: the held record last seen before it vanished (its holder may still
    be acting), and when this replica saw that record change."""
    vanished_at: float | None = None


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
    """Someone else holds a valid lease (or may: one that vanished): nothing to write."""

    holder: str
    until: float
    """Monotonic time it expires unless its record changes again."""


Attempt = Create | Update | Held


def observe(
    state: ElectionState, record: LeaseRecord | None, version: str | None, now: float
) -> ElectionState:
    """A read of the Lease (None: it does not exist), at resourceVersion `version`. Only a
    *change* restarts the expiry timer. A Lease that vanishes keeps what it promised: until
    the last holder's lease would have run out, nobody else takes it (`attempt`)."""
    if record is None:
        last, at = state.vanished, state.vanished_at
        if state.observed is not None and state.observed.held:
            last, at = state.observed, state.observed_at
        return ElectionState(vanished=last, vanished_at=at)
    changed = record != state.observed or version != state.version
    if changed or state.observed_at is None:
        return ElectionState(record, version, now, state.renewed_at)
    return state


def attempt(state: ElectionState, now: float, wall: str, cfg: ElectionConfig) -> Attempt:
    """What to write after a read (client-go's tryAcquireOrRenew); `wall` is the MicroTime now."""
    mine = LeaseRecord(cfg.identity, _seconds(cfg.lease_duration), wall, wall, 0)
    old = state.observed
    if old is None:
        last, at = state.vanished, state.vanished_at
        if last is not None and at is not None and holder_of(last) != cfg.identity:
            # Its holder may still be acting: wait out its lease, by my own clock.
            until = _expiry(last, at, cfg)
            if now < until:
                return Held(holder_of(last), until)
        return Create(mine)
    if old.held and holder_of(old) != cfg.identity and valid(state, now, cfg):
        return Held(holder_of(old), expires(state, cfg))
    if old.holder == cfg.identity and not old.problem:
        return Update(replace(mine, acquire_time=old.acquire_time, transitions=old.transitions))
    return Update(replace(mine, transitions=old.transitions + 1))


def holder_of(record: LeaseRecord) -> str:
    """Who holds it, as a name for reports (an unreadable record: UNKNOWN_HOLDER)."""
    return UNKNOWN_HOLDER if record.problem else record.holder


def renewal(state: ElectionState, wall: str, cfg: ElectionConfig) -> LeaseRecord | None:
    """The fast path: a leader renews from its cached record without reading first."""
    old = state.observed
    if old is None or old.holder != cfg.identity or old.problem:
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


def valid(state: ElectionState, now: float, cfg: ElectionConfig) -> bool:
    """Whether the observed lease is still valid by this replica's clock."""
    if state.observed is None or state.observed_at is None:
        return False
    return now < expires(state, cfg)


def expires(state: ElectionState, cfg: ElectionConfig) -> float:
    """Monotonic time the observed lease expires unless its record changes (0: nothing seen)."""
    if state.observed is None or state.observed_at is None:
        return 0.0
    return _expiry(state.observed, state.observed_at, cfg)


def _expiry(record: LeaseRecord, seen_at: float, cfg: ElectionConfig) -> float:
    """A record seen changing at `seen_at` expires after the duration it states, and never
    sooner than this replica's own lease duration (a record that states 1 s, or none that can
    be read, must not free a lease that another replica may still be acting on)."""
    return seen_at + max(record.duration, cfg.lease_duration)


def leading(state: ElectionState, now: float, cfg: ElectionConfig, within: float = 0.0) -> bool:
    """Whether this replica may act as leader now, for an action that lasts up to `within`
    seconds: it holds the lease, renewed it within the renew deadline, and the action ends
    before another replica may take over (the lease duration after that renewal, which the
    others saw no earlier). Every leader-only action is gated on this as it starts."""
    if state.renewed_at is None or state.observed is None:
        return False
    if state.observed.holder != cfg.identity or state.observed.problem:
        return False
    since = now - state.renewed_at
    return since < cfg.renew_deadline and since + within < cfg.lease_duration


def leader(state: ElectionState, now: float, cfg: ElectionConfig) -> str | None:
    """Who leads, as far as this replica can tell (None: nobody, unknown, or expired)."""
    observed = state.observed
    if observed is None or not observed.holder or observed.problem:
        return None
    return observed.holder if valid(state, now, cfg) else None


def _seconds(value: float) -> int:
    return max(1, round(value))
