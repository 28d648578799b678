"""The fleet verdict, pure: MIN_AVAILABLE over fresh members, stopping and stale ones ignored."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_policy import CFG, HEALTHY, observe

from controller.core.fleet import (
    VERDICTS,
    FleetInputs,
    Heartbeat,
    Member,
    census,
    counted_members,
    fleet_verdict,
    is_last_one_out,
    needed,
    parse_min_available,
    read_heartbeat,
)
from controller.core.policy import PolicyState, decide
from controller.core.types import (
    Decision,
    Observation,
    PolicyInputs,
    Presence,
    Rule,
    TickKind,
)

A, U = Presence.AVAILABLE, Presence.UNAVAILABLE
STALE = 15.0


def fleet(*verdicts: str, age: float = 1.0) -> list[Member]:
    return [Member(f"pod-{i}", v, f"{v} reason", age) for i, v in enumerate(verdicts)]


@pytest.mark.parametrize(
    ("verdicts", "rule", "presence", "counts"),
    [
        # The scene: three replicas at 50%.
        (("available", "available", "available"), "50%", A, (3, 3, 2)),
        (("available", "available", "unavailable"), "50%", A, (2, 3, 2)),
        (("available", "unavailable", "unavailable"), "50%", U, (1, 3, 2)),
        (("unavailable", "unavailable", "unavailable"), "50%", U, (0, 3, 2)),
        (("available", "unknown", "unknown"), "50%", Presence.UNKNOWN, (1, 3, 2)),
        (("unknown", "unknown", "unavailable"), "50%", Presence.UNKNOWN, (0, 3, 2)),
        (("unknown", "unavailable", "unavailable"), "50%", U, (0, 3, 2)),
        (("available",), "50%", A, (1, 1, 1)),
        (("available", "unavailable"), "1", A, (1, 2, 1)),
        (("available", "available", "unavailable"), "3", U, (2, 3, 3)),
        (("available", "available", "unavailable"), "100%", U, (2, 3, 3)),
        (("available", "stopping", "stopping"), "100%", A, (1, 1, 1)),
        ((), "50%", U, (0, 0, 1)),
        (("stopping",), "50%", U, (0, 0, 1)),
    ],
)
def test_the_rule_on_small_fleets(
    verdicts: tuple[str, ...], rule: str, presence: Presence, counts: tuple[int, int, int]
) -> None:
    got = fleet_verdict(fleet(*verdicts), rule, STALE)
    assert got.presence is presence, got.reason
    assert (got.available, got.fresh, got.needed) == counts


def test_stale_members_count_for_nothing() -> None:
    members = [*fleet("available", "available"), Member("gone", "available", "", 15.0)]
    got = fleet_verdict(members, "100%", STALE)
    assert (got.presence, got.fresh) == (A, 2)
    assert fleet_verdict([Member("gone", "available", "", 60.0)], "1", STALE).presence is U


def test_the_reason_names_the_counts_and_who_is_down() -> None:
    got = fleet_verdict(fleet("available", "unavailable", "unavailable"), "50%", STALE)
    assert got.reason == (
        "fleet: 1/3 members available, 2 needed (MIN_AVAILABLE 50%): "
        "pod-1 unavailable, pod-2 unavailable"
    )
    starting = fleet_verdict(fleet("available", "unknown", "unavailable"), "50%", STALE)
    assert starting.reason.endswith("2 needed (MIN_AVAILABLE 50%), 1 not decided yet")
    assert "no member has reported" in fleet_verdict([], "1", STALE).reason


def test_min_available_grammar() -> None:
    assert parse_min_available("2") == (2, False)
    assert parse_min_available(" 50% ") == (50, True)
    for bad in ("0", "0%", "101%", "-1", "half", "50 %", ""):
        with pytest.raises(ValueError, match="expected"):
            parse_min_available(bad)
    assert [needed("50%", n) for n in range(5)] == [1, 1, 1, 2, 2]
    assert needed("2", 0) == 2


def test_the_last_one_out_turns_off_the_light() -> None:
    members = fleet("available", "available", "unavailable")
    assert not is_last_one_out(members, "pod-0", STALE), "pod-1 keeps the bot online"
    assert is_last_one_out(fleet("available", "unavailable"), "pod-0", STALE)
    assert is_last_one_out(fleet("available", "stopping"), "pod-0", STALE)
    assert is_last_one_out(fleet("available", "available", age=20.0), "pod-0", STALE)


members = st.lists(
    st.builds(
        Member,
        st.text("abc", min_size=1, max_size=3),
        st.sampled_from(VERDICTS),
        st.just(""),
        st.floats(0, 40),
    ),
    max_size=12,
)
rules = st.one_of(st.integers(1, 6).map(str), st.integers(1, 100).map(lambda p: f"{p}%"))


@given(members, rules)
def test_more_available_members_never_make_it_unavailable(ms: list[Member], rule: str) -> None:
    before = fleet_verdict(ms, rule, STALE)
    for index, member in enumerate(ms):
        if member.verdict in {"unavailable", "unknown"} and member.age < STALE:
            better = [
                *ms[:index],
                Member(member.pod, "available", "", member.age),
                *ms[index + 1 :],
            ]
            after = fleet_verdict(better, rule, STALE)
            rank = {U: 0, Presence.UNKNOWN: 1, A: 2}
            assert rank[after.presence] >= rank[before.presence]


@given(members, rules)
def test_available_only_with_enough_fresh_available_members(ms: list[Member], rule: str) -> None:
    got = fleet_verdict(ms, rule, STALE)
    fresh = [m for m in ms if m.age < STALE and m.verdict != "stopping"]
    available = sum(m.verdict == "available" for m in fresh)
    undecided = sum(m.verdict == "unknown" for m in fresh)
    assert (got.presence is A) == (available >= got.needed and got.fresh > 0)
    assert (got.presence is U) == (not fresh or available + undecided < got.needed)
    assert got.needed >= 1


# The policy on the leader: the fleet verdict, with precedence on top.


def healthy(policy: PolicyInputs | None = None) -> Observation:
    return observe(HEALTHY, policy or PolicyInputs())


def inputs(*others: str) -> FleetInputs:
    members = tuple(Member(f"pod-{i}", v, "", 1.0) for i, v in enumerate(others, 1))
    return FleetInputs("pod-0", members, "50%", STALE)


def test_the_leader_decides_from_the_fleet_with_precedence_on_top() -> None:
    state = PolicyState()
    state, got = decide(state, healthy(), 0.0, CFG, fleet=inputs("unavailable", "unavailable"))
    assert (got.presence, got.rule) == (U, Rule.HEALTH)
    assert got.reason.startswith("fleet: 1/3 members available, 2 needed")
    state, got = decide(state, healthy(), 1.0, CFG, fleet=inputs("available", "unavailable"))
    assert got.presence is A
    maintenance = healthy(PolicyInputs(maintenance="DB migration"))
    state, held = decide(state, maintenance, 2.0, CFG, fleet=inputs("available", "available"))
    assert (held.presence, held.rule) == (U, "maintenance"), "maintenance beats the fleet"
    state, back = decide(state, healthy(), 3.0, CFG, fleet=inputs("available", "available"))
    assert back.presence is A and back.reason.startswith("maintenance ended: fleet: 3/3")


def test_members_still_starting_hold_the_last_fleet_decision() -> None:
    previous = Decision(A, "fleet: 3/3 members available", "", TickKind.GOOD, Rule.HEALTH)
    _, got = decide(
        PolicyState(decision=previous), healthy(), 0.0, CFG, fleet=inputs("unknown", "unknown")
    )
    assert (
        got.presence is A and got.reason.endswith("1 not decided yet: keeping available") is False
    )
    assert "not decided yet: keeping available" in got.reason
    _, first = decide(PolicyState(), healthy(), 0.0, CFG, fleet=inputs("unknown", "unknown"))
    assert first.presence is Presence.UNKNOWN, "nothing decided before: nothing to hold"


# A leader that cannot see its fleet must not decide from itself alone ("fleet: 1/1 members
# available" with 2 of 3 consumers down, when the member watch delivers nothing).


def test_silence_means_gone_only_when_the_view_was_current_after_it() -> None:
    """pod-1 silent for 20 s: gone if the view was confirmed after the 15 s window (view 2 s
    old), unconfirmed and `unknown` if the view itself is 10 s old (it may be alive)."""
    silent = [*fleet("available"), Member("pod-1", "available", "", 20.0)]
    assert fleet_verdict(silent, "1", STALE, view_age=2.0).fresh == 1
    unsure = fleet_verdict(silent, "100%", STALE, view_age=10.0)
    assert (unsure.presence, unsure.fresh) == (Presence.UNKNOWN, 2)
    assert unsure.reason == (
        "fleet: 1/2 members available, 2 needed (MIN_AVAILABLE 100%), 1 not confirmed: this "
        "replica's view of the fleet is 10s old"
    )


def test_a_blind_leader_never_concludes_available_from_a_percentage() -> None:
    """Members it never saw may exist: with 50% they could raise the number needed; with an
    integer already met, they cannot lower the number available."""
    alone = fleet("available")
    assert fleet_verdict(alone, "50%", STALE, view_age=0.0).presence is A, "a current view: 1/1"
    blind = fleet_verdict(alone, "50%", STALE, view_age=16.0, unseen="members watch: stalled")
    assert blind.presence is Presence.UNKNOWN
    assert blind.reason == (
        "fleet: 1/1 members available, 1 needed (MIN_AVAILABLE 50%): this replica's view of "
        "the fleet is 16s old (members watch: stalled)"
    )
    assert fleet_verdict(alone, "1", STALE, view_age=16.0).presence is A
    assert fleet_verdict(fleet("unavailable"), "50%", STALE, view_age=16.0).presence is U


@given(members, rules, st.floats(STALE, 1000))
def test_a_view_that_is_not_current_never_concludes_available_on_a_percentage(
    ms: list[Member], rule: str, view_age: float
) -> None:
    got = fleet_verdict(ms, rule, STALE, view_age=view_age)
    if rule.endswith("%"):
        assert got.presence is not A, got.reason


def test_an_undecided_fleet_is_held_for_three_heartbeats_then_unavailable() -> None:
    """Held while members start or the view is stale, but never for ever: after 3 x HEARTBEAT
    (STALE) without a verdict, unavailable until there is one."""
    previous = Decision(A, "fleet: 3/3 members available", "", TickKind.GOOD, Rule.HEALTH)
    blind = FleetInputs("pod-0", (), "50%", STALE, view_age=20.0, unseen="members watch: x")
    state, held = decide(PolicyState(decision=previous), healthy(), 100.0, CFG, fleet=blind)
    assert held.presence is A and held.reason.endswith("(members watch: x): keeping available")
    state, still = decide(state, healthy(), 114.9, CFG, fleet=blind)
    assert still.presence is A
    state, off = decide(state, healthy(), 115.0, CFG, fleet=blind)
    assert off.presence is U
    assert off.reason.endswith(
        "(members watch: x): no fleet verdict for 15s (3 x HEARTBEAT): unavailable until "
        "there is one"
    )
    state, back = decide(state, healthy(), 116.0, CFG, fleet=inputs("available"))
    assert back.presence is A and state.undecided_since is None


@pytest.mark.parametrize(
    ("name", "obj", "why"),
    [
        ("bot-pod-b", {"spec": {"holderIdentity": "pod-b"}}, None),
        ("x", {"spec": {"holderIdentity": "pod-b"}}, "its name is not bot-<holder>"),
        ("bot-pod-b", {"spec": {}}, "its holder (none) is not a pod name"),
        ("bot-pod-b", {}, "its holder (none) is not a pod name"),
        ("bot-Pod_B", {"spec": {"holderIdentity": "Pod_B"}}, "is not a pod name"),
        ("bot-" + "a" * 300, {"spec": {"holderIdentity": "a" * 300}}, "300 characters"),
        ("bot-" + "a" * 2**20, {"spec": {"holderIdentity": "a" * 2**20}}, "1048576 characters"),
    ],
)
def test_a_heartbeat_counts_only_under_its_holders_name(
    name: str, obj: dict[str, object], why: str | None
) -> None:
    read = read_heartbeat(name, obj, "bot")
    if why is None:
        assert read == Heartbeat("pod-b", "unknown", "")
    else:
        assert isinstance(read, str) and why in read
        assert len(read) < 200, "a hostile holder is quoted as a short excerpt"


def test_a_heartbeats_verdict_and_reason_are_bounded() -> None:
    notes = {"presence-controller/verdict": "online!", "presence-controller/reason": "x" * 10**6}
    obj = {"metadata": {"annotations": notes}, "spec": {"holderIdentity": "pod-b"}}
    read = read_heartbeat("bot-pod-b", obj, "bot")
    assert isinstance(read, Heartbeat) and read.verdict == "unknown"
    assert len(read.reason) <= 260


def test_at_start_an_undecided_fleet_writes_nothing_until_the_startup_grace() -> None:
    """As one replica does: nothing is decided before the fleet has a verdict, for up to
    STARTUP_GRACE; then unavailable."""
    starting = FleetInputs("pod-0", (), "50%", STALE, view_age=STALE, unseen="starting: ...")
    state, got = decide(PolicyState(), healthy(), 0.0, CFG, fleet=starting)
    for now in (1.0, STALE + 1, CFG.startup_grace - 0.1):
        state, got = decide(state, healthy(), now, CFG, fleet=starting)
        assert got.presence is Presence.UNKNOWN, now
    state, got = decide(state, healthy(), CFG.startup_grace, CFG, fleet=starting)
    assert got.presence is U and "(startup grace): unavailable until there is one" in got.reason


def test_the_census_counts_members_as_the_verdict_does() -> None:
    """presence_fleet_members and the verdict agree on who counts: a fresh member by its
    verdict, an unconfirmed one as unknown, a stopping one as stopping while fresh and nowhere
    once silent (the metric counted a silent stopping member as unknown)."""
    members = [
        Member("fresh", "available", "", 1.0),
        Member("quiet", "available", "", 20.0),
        Member("leaving", "stopping", "", 1.0),
        Member("left", "stopping", "", 20.0),
        Member("gone", "available", "", 60.0),
    ]
    counts = census(members, STALE, view_age=30.0)
    assert counts == {"available": 1, "unavailable": 0, "unknown": 1, "stopping": 1}
    assert sum(counts.values()) - counts["stopping"] == len(counted_members(members, STALE, 30.0))
