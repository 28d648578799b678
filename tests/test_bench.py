"""The flap-economy benchmark is deterministic (seeded trace, the pure decision core), so it
also guards the decision semantics: few flips, every incident caught at the fall-th bad tick,
little time offline outside incidents. (It found that neutral ticks must break streaks.)"""

from __future__ import annotations

import importlib.util
import sys
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
