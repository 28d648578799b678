"""The flap-economy benchmark is deterministic (seeded trace, the pure decision core), so it
also guards the decision semantics: few flips, every incident caught at the fall-th bad tick,
little time offline outside incidents. (It found that neutral ticks must break streaks.)"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent.parent / "bench"


def bench() -> ModuleType:
    path = BENCH / "run.py"
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_run", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module
    spec.loader.exec_module(module)
    return module


def test_flap_economy_catches_every_incident_without_flapping() -> None:
    result = bench().flap_economy(seed=7)
    incidents = len(result.incidents)
    assert incidents >= 5
    assert result.caught == [2] * incidents, "caught at the third bad tick (fall 3)"
    assert result.controller_changes == 2 * incidents, "one change down, one up per incident"
    assert result.naive_changes > 5 * result.controller_changes
    assert result.offline_outside[0] < result.offline_outside[1]


def test_flap_economy_holds_for_other_seeds() -> None:
    module = bench()
    for seed in (1, 2, 3):
        result = module.flap_economy(seed=seed)
        assert all(c is not None and c <= 2 for c in result.caught), seed
        assert result.controller_changes <= 2 * len(result.incidents) + 2, seed


def test_crash_loop_damping_cuts_changes_five_fold_and_catches_every_first_outage() -> None:
    loop = bench().crash_loop()
    assert loop.changes["off"] >= 5 * loop.changes["on"], loop.changes
    assert loop.detect["off"] == [2] * loop.outages, "without damping: each caught at fall"
    # With damping each outage is caught at the fall-th tick, or the bot was already held
    # offline (0): damping never delays going unavailable.
    assert set(loop.detect["on"]) <= {0, 2} and loop.detect["on"][:3] == [2, 2, 2]


def truth() -> ModuleType:
    bench()  # puts bench/ on sys.path
    import truth as module  # bench/ is not a package: on sys.path once bench() ran

    return module


def test_the_truth_bench_runs_the_shipped_defaults() -> None:
    from controller.config import Settings

    s = Settings.from_values(
        health_url="http://127.0.0.1:1/healthz",
        wawp={"instance_id": "i", "access_token": "k3Jx9-Qw2vLp8ZrT"},
    )
    d = truth().DEFAULTS
    assert (d.reassert_available, d.reassert_unavailable, d.session_check) == (
        s.reassert_available,
        s.reassert_unavailable,
        s.session_check,
    )


def test_presence_truth_on_the_profiles_a_simulated_day() -> None:
    """The virtual day is deterministic: the figures the defaults were chosen by hold."""
    t = truth()
    baileys, _ = t.simulate_day("baileys", t.DEFAULTS, 0)
    assert baileys.shown_available_ratio > 0.999 and baileys.false_online_share < 0.001
    old = t.Setting("the old 20 s", 20.0, 300.0, 60.0)
    assert t.simulate_day("baileys", old, 0)[0].shown_available_ratio < 0.55
    ideal, _ = t.simulate_day("ideal", old, 0)
    assert ideal.shown_available_ratio > 0.999, "the old simulator hid the decay"
    silent, _ = t.simulate_day("silent", t.DEFAULTS, 0)
    assert silent.shown_available_ratio == 0.0 and silent.writes_per_day > 5000
    # Frequent session reads catch NOWEB's reconnects (which mark the bot online) and the
    # seen reconnect is written over at once.
    often = t.Setting("reads every 5 s", 8.0, 60.0, 5.0)
    rarely = t.Setting("reads every 60 s", 8.0, 60.0, 60.0)
    caught = t.simulate_day("waha-noweb", often, 0)[0].false_online
    missed = t.simulate_day("waha-noweb", rarely, 0)[0].false_online
    assert caught < 0.7 * missed


def test_the_witness_cuts_the_lie_short_and_calibration_saves_writes() -> None:
    """One simulated day (seed 0): what the witness rows of bench/RESULTS.md stand on."""
    t = truth()
    import witness_truth as w

    defaults = w.WITNESSES[w.DEFAULT_LABEL]
    watched, actions = t.witnessed_day("evolution-always-online", t.DEFAULTS, 0, defaults)
    blind, _ = t.simulate_day("evolution-always-online", t.DEFAULTS, 0)
    assert watched.false_online <= 0.2 * blind.false_online, (watched, blind)
    assert 0 < actions <= 200 and watched.writes <= blind.writes + 200
    # The witness at POLL 5 s, grace 10 s does nothing here: `available` fades in 10 s anyway.
    slow = w.WITNESSES["witness ACT, POLL 5 s, grace 10 s"]
    assert t.witnessed_day("evolution-always-online", t.DEFAULTS, 0, slow)[1] == 0
    ceiling = replace(t.DEFAULTS, reassert_available=60.0)
    calibrating = replace(defaults, calibrate=True)
    long_blind, _ = t.simulate_day(t.LONG_DECAY, t.DEFAULTS, 0)
    calibrated, _ = t.witnessed_day(t.LONG_DECAY, ceiling, 0, calibrating)
    assert calibrated.writes <= 0.8 * long_blind.writes
    assert (calibrated.shown_available_ratio or 0) >= (
        long_blind.shown_available_ratio or 0
    ) - 0.005
