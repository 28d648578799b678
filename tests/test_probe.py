"""`check-gateway --probe`: the verdict (pure) and the probe against the simulated gateways."""

from __future__ import annotations

import pytest
from conftest import Sim
from test_cli import cli

from controller.gateway.base import Gateway
from controller.gateway.factory import build_gateway
from controller.gateway.probe import Trial, Verdict, Vocabulary, candidates, probe, verdict
from controller.sim.gateway import Fault
from controller.sim.harness import Simulation, simulation

CONFIGURED = Vocabulary("presence", "available", "unavailable")
STATUS = Vocabulary("status", "available", "unavailable")
ONLINE = Vocabulary("presence", "online", "offline")


def trials(*accepted: Vocabulary) -> list[Trial]:
    return [
        Trial(v, None, None) if v in accepted else Trial(v, "refused (HTTP 400)", None)
        for v in candidates(CONFIGURED)
    ]


def test_the_candidates_start_with_the_configured_one_and_cover_all_six() -> None:
    found = candidates(STATUS)
    assert found[0] == STATUS
    assert len(found) == len(set(found)) == 6
    assert Vocabulary("presence", "online", "unavailable") in found  # Wawp's legacy pair
    assert {(v.field, v.available) for v in found} == {
        (f, on) for f in ("presence", "status") for on in ("available", "online")
    }


@pytest.mark.parametrize(
    ("accepted", "use", "definite", "says"),
    [
        ((CONFIGURED,), CONFIGURED, True, "the current settings are right"),
        (
            (STATUS,),
            STATUS,
            True,
            "use: PRESENCE_WAWP__FIELD=status PRESENCE_WAWP__VALUES=available,unavailable",
        ),
        ((), None, False, "no vocabulary was accepted"),
        (tuple(candidates(CONFIGURED)), None, False, "cannot tell: the gateway accepted every"),
        ((CONFIGURED, ONLINE), CONFIGURED, True, "the current settings are among them"),
        ((STATUS, ONLINE), None, False, "cannot tell: accepted several"),
    ],
)
def test_verdict(
    accepted: tuple[Vocabulary, ...], use: Vocabulary | None, definite: bool, says: str
) -> None:
    result = verdict(trials(*accepted), CONFIGURED, fixed=False)
    assert (result.use, result.definite) == (use, definite)
    assert any(says in line for line in result.lines), result.lines


def test_a_half_accepted_vocabulary_is_not_accepted() -> None:
    half = [Trial(CONFIGURED, None, "refused (HTTP 400)"), Trial(STATUS, None, None)]
    assert verdict(half, CONFIGURED, fixed=False).use == STATUS


def test_a_fixed_vocabulary_is_confirmed_or_questioned() -> None:
    assert verdict(trials(CONFIGURED), CONFIGURED, fixed=True).definite
    odd = verdict(trials(STATUS), CONFIGURED, fixed=True)
    assert not odd.definite and "is this really this provider?" in odd.lines[0]


async def run_probe(sim: Simulation, configured: Vocabulary, fixed: bool) -> tuple[Verdict, str]:
    lines: list[str] = []
    gateway: Gateway = build_gateway(sim.settings())
    try:
        result = await probe(gateway, configured, fixed, lines.append, pause=0.0)
    finally:
        await gateway.aclose()
    return result, "\n".join(lines)


async def test_a_strict_wawp_is_pinned_down_and_left_unavailable(sim: Sim) -> None:
    sim.gateway.field_name = "status"
    sim.gateway.accepted = frozenset({"available", "unavailable"})
    result, out = await run_probe(sim, CONFIGURED, fixed=False)
    assert result.use == STATUS and result.definite
    assert "status=available/unavailable" in out and "accepted / accepted" in out
    assert "refused (HTTP 400) / refused (HTTP 400) (current settings)" in out
    # Every candidate's two values were sent, and the last call showed unavailable.
    sets = sim.gateway.sets(None)
    assert len(sets) == 2 * 6 + 1
    assert (sets[-1].field, sets[-1].value, sets[-1].status) == ("status", "unavailable", 200)
    assert sim.gateway.presence == "unavailable"


async def test_a_gateway_that_accepts_anything_cannot_tell(sim: Sim) -> None:
    sim.gateway.field_name = None  # a careless gateway: reads whichever field comes...
    sim.gateway.accepted = None  # ...and takes any value
    result, _ = await run_probe(sim, CONFIGURED, fixed=False)
    assert result.use is None and not result.definite
    assert "cannot tell" in result.lines[0]
    assert sim.gateway.sets(None)[-1].value == "unavailable"


async def test_nothing_accepted_is_a_failure_that_still_ends_unavailable(sim: Sim) -> None:
    sim.gateway.accepted = frozenset({"on", "off"})
    result, _ = await run_probe(sim, CONFIGURED, fixed=False)
    assert result.use is None and not result.definite
    assert "no vocabulary was accepted" in result.lines[0]
    assert sim.gateway.sets(None)[-1].value == "unavailable"  # tried, even if refused


async def test_an_auth_failure_stops_the_probe(sim: Sim) -> None:
    sim.gateway.set_faults.append(Fault(401))
    result, out = await run_probe(sim, CONFIGURED, fixed=False)
    assert "probe stopped: presence=available: HTTP 401" in out
    assert not result.definite
    assert len(sim.gateway.sets(None)) == 2  # the refused call, then the final unavailable


@pytest.mark.parametrize(
    ("provider", "vocabulary"),
    [("waha", ONLINE), ("evolution", CONFIGURED)],
)
async def test_the_self_hosted_gateways_speak_their_own_vocabulary(
    provider: str, vocabulary: Vocabulary
) -> None:
    async with simulation(provider) as sim:
        result, out = await run_probe(sim, vocabulary, fixed=True)
        assert result.use == vocabulary and result.definite, out
        assert "as expected: nothing to set" in result.lines[0]
        assert sim.gateway.presence == "unavailable"
        accepted = {(c.field, c.value) for c in sim.gateway.sets()}
        assert accepted == {
            (vocabulary.field, vocabulary.available),
            (vocabulary.field, vocabulary.unavailable),
        }


async def test_check_gateway_probe_says_it_changes_the_presence_and_what_to_set(sim: Sim) -> None:
    sim.gateway.accepted = frozenset({"online", "offline"})
    code, out, err = await cli("check-gateway", "--probe", env=sim.env())
    assert code == 0, out + err
    assert "THIS CHANGES THE BOT'S PRESENCE" in out
    assert "wawp: use: PRESENCE_WAWP__FIELD=presence PRESENCE_WAWP__VALUES=online,offline" in out
    assert sim.gateway.access_token not in out + err
    assert sim.gateway.presence == "unavailable"


async def test_check_gateway_probe_makes_no_call_on_a_session_that_is_not_working(
    sim: Sim,
) -> None:
    sim.gateway.session_state = "STARTING"
    code, out, _ = await cli("check-gateway", "--probe", env=sim.env())
    assert code == 1 and "presence not set: no call was made" in out
    assert sim.gateway.sets(None) == []


@pytest.mark.parametrize("provider", ["waha", "evolution"])
async def test_check_gateway_for_the_self_hosted_gateways(provider: str) -> None:
    async with simulation(provider) as sim:
        code, out, err = await cli("check-gateway", "--set", "available", env=sim.env())
        assert code == 0, out + err
        assert f"{provider}: credentials accepted; session is WORKING" in out
        assert f"{provider}: presence set to available" in out
        assert sim.gateway.presence == "available"
        code, out, err = await cli(
            "check-gateway", env=sim.env(**{f"PRESENCE_{provider.upper()}__API_KEY": "wrong-key-1"})
        )
        assert code == 1 and "HTTP 401: the gateway rejected the credentials" in err
        assert "wrong-key-1" not in out + err
