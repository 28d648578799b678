"""Leader election, the pure part: client-go's rules, and safety under latency and lost replies."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.election import (
    UNKNOWN_HOLDER,
    Create,
    ElectionConfig,
    ElectionState,
    Held,
    LeaseRecord,
    Update,
    attempt,
    leader,
    leading,
    observe,
    read_record,
    released,
    renewal,
    written,
)

A = ElectionConfig("pod-a")
B = ElectionConfig("pod-b")
WALL = "2026-11-25T12:00:00.000000Z"
LATER = "2026-11-25T12:00:02.000000Z"


def test_config_refuses_what_client_go_refuses() -> None:
    for bad in (
        {"identity": ""},
        {"identity": "a", "lease_duration": 10, "renew_deadline": 10},
        {"identity": "a", "renew_deadline": 2.4, "retry_period": 2},
        {"identity": "a", "retry_period": 0},
    ):
        with pytest.raises(ValueError, match="must"):
            ElectionConfig(**bad)  # type: ignore[arg-type]
    assert ElectionConfig("a").lease_duration == 15


def test_a_missing_lease_is_created_held_by_me() -> None:
    state = observe(ElectionState(), None, None, now=100.0)
    assert attempt(state, 100.0, WALL, A) == Create(LeaseRecord("pod-a", 15, WALL, WALL, 0))


def test_a_valid_lease_held_by_another_is_left_alone_until_it_expires_by_my_clock() -> None:
    theirs = LeaseRecord("pod-b", 15, "1999-01-01T00:00:00.000000Z", "1999-01-01T00:00:00.000000Z")
    state = observe(ElectionState(), theirs, "1", now=100.0)
    # A renewTime decades old means nothing: expiry counts from when *I* saw the record change.
    assert attempt(state, 114.9, WALL, A) == Held("pod-b", 115.0)
    assert leader(state, 114.9, A) == "pod-b"
    assert observe(state, theirs, "1", now=110.0) == state, "an unchanged record restarts nothing"
    taken = attempt(state, 115.0, WALL, A)
    assert taken == Update(LeaseRecord("pod-a", 15, WALL, WALL, 1)), "expired: take it, +1"
    assert leader(state, 115.0, A) is None


def test_a_changed_record_restarts_the_expiry_timer() -> None:
    state = observe(ElectionState(), LeaseRecord("pod-b", 15, WALL, WALL), "1", now=100.0)
    state = observe(state, LeaseRecord("pod-b", 15, WALL, LATER), "1", now=112.0)
    assert isinstance(attempt(state, 126.0, WALL, A), Held)
    assert isinstance(attempt(state, 127.0, WALL, A), Update)


def test_the_observed_duration_counts_not_mine() -> None:
    state = observe(ElectionState(), LeaseRecord("pod-b", 60, WALL, WALL), "1", now=0.0)
    assert isinstance(attempt(state, 59.0, WALL, A), Held)


def test_a_released_lease_is_taken_at_once() -> None:
    old = LeaseRecord("pod-b", 15, WALL, WALL, 4)
    state = observe(ElectionState(), released(LATER, old), "1", now=100.0)
    assert state.observed == LeaseRecord("", 1, LATER, LATER, 4)
    assert attempt(state, 100.0, WALL, A) == Update(LeaseRecord("pod-a", 15, WALL, WALL, 5))


def test_my_own_lease_is_renewed_keeping_acquire_time_and_transitions() -> None:
    mine = LeaseRecord("pod-a", 15, "2026-11-25T11:00:00.000000Z", WALL, 3)
    state = observe(ElectionState(), mine, "1", now=100.0)  # e.g. after a restart: same identity
    assert attempt(state, 100.0, LATER, A) == Update(
        LeaseRecord("pod-a", 15, "2026-11-25T11:00:00.000000Z", LATER, 3)
    )


def test_leading_needs_a_renewal_within_the_renew_deadline() -> None:
    record = LeaseRecord("pod-a", 15, WALL, WALL)
    state = written(ElectionState(), record, "1", sent_at=100.0, cfg=A)
    assert leading(state, 100.0, A) and leading(state, 109.99, A)
    assert not leading(state, 110.0, A), "steps down at the renew deadline"
    assert not leading(state, 100.0, B)
    assert renewal(state, LATER, A) == LeaseRecord("pod-a", 15, WALL, LATER)
    assert renewal(state, LATER, B) is None, "no fast path for a lease I do not hold"
    # A record read later that names someone else ends it at once.
    taken = observe(state, LeaseRecord("pod-b", 15, LATER, LATER, 1), "1", now=101.0)
    assert not leading(taken, 101.0, A)


def test_a_renewal_counts_from_when_it_was_sent() -> None:
    state = written(ElectionState(), LeaseRecord("pod-a", 15, WALL, WALL), "1", 100.0, A)
    assert state.renewed_at == 100.0 and state.observed_at == 100.0
    released_state = written(state, released(LATER, state.observed or A_RECORD), "2", 105.0, A)
    assert not leading(released_state, 105.0, A), "released: no longer leading"


A_RECORD = LeaseRecord("pod-a", 15)


# Safety: several replicas against one store with optimistic concurrency, random latency,
# lost requests and lost replies. At no instant may two replicas be allowed to act.


@dataclass
class Store:
    record: LeaseRecord | None = None
    version: int = 0


@dataclass
class Replica:
    cfg: ElectionConfig
    state: ElectionState = field(default_factory=ElectionState)
    version: int | None = None
    """The resourceVersion this replica read last (its writes carry it)."""
    history: list[tuple[float, ElectionState]] = field(default_factory=list)

    def set(self, at: float, state: ElectionState) -> None:
        self.state = state
        self.history.append((at, state))


step = st.tuples(
    st.integers(0, 2),  # which replica
    st.floats(0.0, 6.0),  # time since the previous step
    st.floats(0.0, 4.0),  # request latency: sent that long before the server handles it
    st.floats(0.0, 4.0),  # reply latency
    st.sampled_from(["ok", "ok", "ok", "lost request", "lost reply", "unreadable", "call"]),
)
CALL = 6.0
"""How long a gateway call may last (WAHA's default timeout)."""


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=1, max_size=120))
def test_never_two_leaders_at_once(steps: list[tuple[int, float, float, float, str]]) -> None:
    """Also when someone writes a Lease that cannot be read (no spec), and for gateway calls
    that last: a call started while `leading(within=CALL)` ends before any other replica may
    act. (A deleted Lease: the deterministic test below; a replica that never read it while it
    was held cannot know, as with client-go.)"""
    store = Store()
    replicas = [Replica(ElectionConfig(f"pod-{i}")) for i in range(3)]
    calls: list[tuple[str, float, float]] = []
    now = 0.0
    for index, gap, there, back, fate in steps:
        now += gap
        me = replicas[index]
        if fate == "unreadable":  # another actor, between two tries
            store.record = read_record({})
            store.version += 1
            continue
        if fate == "call":
            if leading(me.state, now, me.cfg, within=CALL):
                calls.append((me.cfg.identity, now, now + CALL))
            continue
        sent, received = now - there, now + back  # the server acts at `now`
        # One try, as the shell does it: the fast path for a leader, else read then write.
        fast = renewal(me.state, WALL, me.cfg) if leading(me.state, sent, me.cfg) else None
        if fast is None:
            if fate == "lost request":
                continue
            if fate == "ok" or fate == "lost reply":
                # A read changes nothing on the server; a lost reply just ends the try.
                if fate == "lost reply":
                    continue
                me.version = store.version
                me.set(received, observe(me.state, store.record, str(store.version), received))
            action = attempt(me.state, received, WALL, me.cfg)
            if isinstance(action, Held):
                continue
            record, precondition = action.record, me.version
            sent = received  # the write leaves once the read is back
        else:
            record, precondition = fast, me.version
        if fate == "lost request":
            continue
        if precondition != store.version:
            continue  # 409 Conflict (or AlreadyExists): the next try reads again
        store.record, store.version = record, store.version + 1
        if fate == "lost reply":
            continue  # applied, but this replica never hears of it
        me.version = store.version
        me.set(max(received, sent), written(me.state, record, str(store.version), sent, me.cfg))
    instants = sorted({t for r in replicas for t, _ in r.history})
    for t in instants + [t + 9.999 for t in instants]:
        acting = []
        for replica in replicas:
            before = [s for at, s in replica.history if at <= t]
            if before and leading(before[-1], t, replica.cfg):
                acting.append(replica.cfg.identity)
        assert len(acting) <= 1, (t, acting)
    for identity, start, end in calls:
        for replica in replicas:
            if replica.cfg.identity == identity:
                continue
            for at, state in replica.history:
                took = leading(state, at, replica.cfg)
                assert not (took and start <= at < end), (identity, start, end, replica.cfg)


def test_a_new_resource_version_is_a_change_even_if_the_record_reads_the_same() -> None:
    record = LeaseRecord("pod-b", 15, WALL, WALL)
    state = observe(ElectionState(), record, "7", now=100.0)
    state = observe(state, record, "8", now=110.0)  # renewed within the same second
    assert isinstance(attempt(state, 124.0, WALL, A), Held)


def test_a_partitioned_leader_stops_acting_before_a_successor_can_start() -> None:
    """The timeline the safety property rests on: the leader's last renewal went out at 100 and
    reached the server; a follower saw it (no earlier than 100). The leader stops at 110, the
    follower may take over at 115 at the earliest."""
    record = LeaseRecord("pod-a", 15, WALL, WALL)
    leader_state = written(ElectionState(), record, "5", sent_at=100.0, cfg=A)
    follower = observe(ElectionState(), record, "5", now=100.5)
    acting = [t / 10 for t in range(1000, 1200) if leading(leader_state, t / 10, A)]
    taking = [
        t / 10
        for t in range(1000, 1200)
        if not isinstance(attempt(follower, t / 10, WALL, B), Held)
    ]
    assert max(acting) < 110.0 <= 115.5 == min(taking)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (None, "no spec"),
        ({}, "no holderIdentity"),
        ({"holderIdentity": 7, "leaseDurationSeconds": 15}, "no holderIdentity"),
        ({"holderIdentity": "pod-b"}, "a leaseDurationSeconds that is not a positive integer"),
        ({"holderIdentity": "pod-b", "leaseDurationSeconds": 0}, "not a positive integer"),
        ({"holderIdentity": "pod-b", "leaseDurationSeconds": -5}, "not a positive integer"),
        ({"holderIdentity": "pod-b", "leaseDurationSeconds": "15"}, "not a positive integer"),
        ({"holderIdentity": "pod-b", "leaseDurationSeconds": True}, "not a positive integer"),
        ({"holderIdentity": "x" * 254, "leaseDurationSeconds": 15}, "not a name"),
        ({"holderIdentity": "pod b", "leaseDurationSeconds": 15}, "not a name"),
    ],
)
def test_a_lease_that_cannot_be_read_is_held_by_someone_unknown_never_free(
    spec: object, problem: str
) -> None:
    """A hostile or broken API server served Leases without spec or with a duration <= 0, and
    all three replicas took them as free: two leaders in 165 of 169 samples."""
    record = read_record(spec)
    assert problem in record.problem
    state = observe(ElectionState(), record, "9", now=100.0)
    assert attempt(state, 114.9, WALL, A) == Held(UNKNOWN_HOLDER, 115.0)
    assert leader(state, 110.0, A) is None, "who leads is not known"
    assert renewal(state, WALL, A) is None
    # Unchanged for my lease duration: expired like any other, taken and written readable.
    assert attempt(state, 115.0, WALL, A) == Update(LeaseRecord("pod-a", 15, WALL, WALL, 1))


def test_a_readable_lease_still_parses_as_client_go_writes_it() -> None:
    spec = {"holderIdentity": "pod-b", "leaseDurationSeconds": 15, "acquireTime": WALL,
            "renewTime": LATER, "leaseTransitions": 3}  # fmt: skip
    assert read_record(spec) == LeaseRecord("pod-b", 15, WALL, LATER, 3)
    assert read_record({"holderIdentity": ""}) == LeaseRecord("", 1), "released: free"


def test_a_lease_is_never_taken_sooner_than_my_own_lease_duration() -> None:
    state = observe(ElectionState(), LeaseRecord("pod-b", 1, WALL, WALL), "1", now=100.0)
    assert attempt(state, 114.9, WALL, A) == Held("pod-b", 115.0), "it says 1 s; mine is 15"


def test_a_deleted_lease_is_not_free_until_its_holder_would_have_stopped() -> None:
    """`kubectl delete lease`: followers that created it at once would lead while the leader
    still acts. They wait out the last holder's lease; the leader itself stops at once, and may
    create it again at once."""
    record = LeaseRecord("pod-b", 60, WALL, WALL)  # it states 60 s: that counts too
    follower = observe(ElectionState(), record, "4", now=100.0)
    follower = observe(follower, None, None, now=103.0)
    assert attempt(follower, 159.9, WALL, A) == Held("pod-b", 160.0)
    assert attempt(follower, 160.0, WALL, A) == Create(LeaseRecord("pod-a", 15, WALL, WALL, 0))
    short = observe(ElectionState(), replace(record, duration=15), "4", now=100.0)
    short = observe(short, None, None, now=103.0)
    assert attempt(short, 114.9, WALL, A) == Held("pod-b", 115.0), "from when I saw it change"
    still_absent = observe(short, None, None, now=106.0)
    assert attempt(still_absent, 114.9, WALL, A) == Held("pod-b", 115.0), "a second read too"
    holder = written(ElectionState(), LeaseRecord("pod-b", 15, WALL, WALL), "4", 100.0, B)
    assert leading(holder, 103.0, B)
    vanished = observe(holder, None, None, now=103.0)
    assert not leading(vanished, 103.0, B), "the leader stops the moment it sees it gone"
    assert isinstance(attempt(vanished, 103.0, WALL, B), Create)


def test_a_leader_starts_only_calls_that_end_before_a_takeover() -> None:
    """The margin derived from the call: renewed at 100, another replica may take over at 115
    (LEASE_DURATION); a 6 s call may start until 109 (not 110, the renew deadline), a 12 s one
    until 103."""
    state = written(ElectionState(), LeaseRecord("pod-a", 15, WALL, WALL), "1", 100.0, A)
    assert leading(state, 108.9, A, within=6.0) and not leading(state, 109.0, A, within=6.0)
    assert leading(state, 109.9, A), "an instant action still until the renew deadline"
    assert leading(state, 102.9, A, within=12.0) and not leading(state, 103.0, A, within=12.0)
