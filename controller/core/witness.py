"""The witness's view, folded: what contacts were shown, how it compares with what the controller
intends, when to write early, how long `available` lasts, and which gateway setting fights us.

A witness is a second WhatsApp session that watches the bot as a contact does. Each `Sight` (a
read, or an Evolution webhook) says what it saw; `observe()` folds it into a `WitnessState` and
returns the `Verdict`: an early write to ask for (ACT), a decay sample, a fight named. Pure: the
runtime, the bench and `check-gateway --witness` share it.

**The witness never decides.** It never changes the decision: it only asks the actuator to write
the already-intended presence early, and (CALIBRATE) shortens the re-assert period of
`available` within bounds. A sight that fails (`Blind`) is reported and changes nothing else.
"""

from __future__ import annotations

import enum
import itertools
import math
from dataclasses import dataclass, replace

from controller.core.truth import Timeline, Truth, measure
from controller.core.types import Presence

A, U = Presence.AVAILABLE, Presence.UNAVAILABLE
WINDOW = 3600.0
"""The measures of /status.witness cover the last hour."""
DECAY_KEPT = 100
"""Decay samples kept (the newest); with the 24 h below, the calibration's memory."""
DECAY_MAX_AGE = 86_400.0
"""Samples older than this are dropped: with none left, the configured period applies again
and new samples are measured (a decay that grew is found within a day)."""
CALIBRATION_SAMPLES = 3
"""Decay samples needed before CALIBRATE changes anything."""
CALIBRATION_SHARE = 0.7
"""The effective period is this share of the 10th percentile of the decay."""
FLOOR = 5.0
"""The calibrated period is never below this."""
RECONNECT_LINK = 90.0
"""A false-online episode this soon after a seen reconnect is blamed on the reconnect."""
SETTLE = 2.0
"""No early write within this long after a write of ours (or the grace, if longer): it may
still be on its way to the witness."""
RATIO_SPAN = 30.0
"""The shown-available ratio is reported once `available` was intended this long in the hour."""
EARLY_WRITES = 3
"""Early writes per mismatch episode at most: one that three writes did not fix is a fight."""
FIGHT_RETURNS = 2
"""Returns of `available` (after a write of `unavailable` that was seen) within the hour that
name a gateway setting. A healthy gateway never makes one."""
NO_EFFECT = 180.0
"""Writes of `available` never seen shown for this long name the "no effect" fight."""


class Failure(enum.StrEnum):
    """Why a sight saw nothing (the `reason` label of presence_witness_errors_total)."""

    HIDDEN = "hidden"
    """No presence known for the bot: privacy, no prior chat, or not subscribed."""
    NO_LAST_SEEN = "no_last_seen"
    """`offline` with `lastSeen: null`: the bot's privacy hides last seen (and online)."""
    NOT_SUBSCRIBED = "not_subscribed"
    GATEWAY = "gateway"
    """The witness's gateway failed (auth, timeout, 5xx, not ready)."""
    MALFORMED = "malformed"
    """A reply or event that does not say what the witness saw."""


@dataclass(frozen=True, slots=True)
class Sight:
    """The witness saw the bot `shown` at `at` (monotonic seconds)."""

    at: float
    shown: Presence


@dataclass(frozen=True, slots=True)
class Blind:
    """A read or event that saw nothing: why, and what to tell the SRE (no secrets)."""

    at: float
    reason: Failure
    message: str


@dataclass(frozen=True, slots=True)
class WitnessConfig:
    poll: float = 1.0
    act: bool = True
    mismatch_grace: float = 0.0
    calibrate: bool = False
    reassert_available: float = 8.0
    """The configured REASSERT_AVAILABLE: the calibrated period never exceeds it."""
    provider: str = "wawp"
    """The bot's gateway (which settings to name when one fights us)."""


class Mismatch(enum.StrEnum):
    """A difference between shown and intended (the `reason` of an early write)."""

    FALSE_ONLINE = "false_online"
    """Shown `available` while `unavailable` is intended: the lie users pay for."""
    NOT_SHOWN = "not_shown"
    """Shown `unavailable` while `available` is intended."""


@dataclass(frozen=True, slots=True)
class Fight:
    """A mismatch that comes back after every write: a gateway setting, named."""

    pattern: str
    """`reconnect`, `periodic`, `repeated` or `no_effect`."""
    message: str


@dataclass(frozen=True, slots=True)
class WitnessState:
    shown: Presence = Presence.UNKNOWN
    shown_since: float | None = None
    last_read: float | None = None
    blind: Blind | None = None
    """The last sight failed (None: it saw the bot)."""
    seen: tuple[tuple[float, Presence], ...] = ()
    """Shown changes as the witness saw them, the last hour (and the one before it)."""
    intended: tuple[tuple[float, Presence], ...] = ()
    """What the controller intended, the same hour."""
    mismatch: Mismatch | None = None
    mismatch_since: float | None = None
    """The first sight of the current mismatch (an episode: until it clears)."""
    early_writes: int = 0
    """Early writes asked for in the current episode (at most EARLY_WRITES)."""
    last_write: tuple[float, Presence] | None = None
    decay_from: float | None = None
    """A write of `available`, nothing written since: its time (a decay is being timed)."""
    decay_shown: bool = False
    """The witness saw that write shown."""
    decays: tuple[tuple[float, float], ...] = ()
    """(when measured, seconds) of the decay samples."""
    write_held: bool = False
    """The last write of `unavailable` was seen shown: a later `available` is a return."""
    returns: tuple[float, ...] = ()
    """When `available` came back in the hour while `unavailable` was intended."""
    unseen_since: float | None = None
    """The first write of `available` not seen shown since (None: it was seen, or none)."""
    fight: Fight | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    write: Mismatch | None = None
    """Ask the actuator to write the intended presence now, for this mismatch."""
    decay: float | None = None
    """A decay sample measured by this sight."""
    fight_changed: bool = False
    false_online: float = 0.0
    """Seconds of false-online added by this sight (for the counter)."""


def on_intended(state: WitnessState, presence: Presence, now: float) -> WitnessState:
    """The controller now intends `presence` (the decision, or `available` during a last-seen
    pulse)."""
    if state.intended and state.intended[-1][1] is presence:
        return state
    return replace(state, intended=(*_recent(state.intended, now), (now, presence)))


def on_write(state: WitnessState, presence: Presence, now: float) -> WitnessState:
    """The gateway accepted a write of ours (a re-assert included)."""
    available = presence is A
    unseen = state.unseen_since if state.unseen_since is not None else now
    return replace(
        state,
        last_write=(now, presence),
        unseen_since=unseen if available and state.shown is not A else None,
        decay_from=now if available else None,
        decay_shown=False,
        write_held=False,
    )


def observe(
    state: WitnessState,
    sight: Sight | Blind,
    cfg: WitnessConfig,
    reconnects: tuple[float, ...] = (),
) -> tuple[WitnessState, Verdict]:
    """Fold one sight in; `reconnects`: when the actuator saw the bot's session reconnect."""
    if isinstance(sight, Blind):
        # Nothing seen: the shown presence is unknown from here on, and nothing is done.
        state = _seen(replace(state, blind=sight, last_read=sight.at), sight.at, Presence.UNKNOWN)
        return replace(state, mismatch=None, mismatch_since=None, early_writes=0), Verdict()
    now = sight.at
    before = state.last_read
    decays = tuple(d for d in state.decays if now - d[0] <= DECAY_MAX_AGE)
    state = replace(state, blind=None, last_read=now, decays=decays)
    state = _seen(state, now, sight.shown)
    added = 0.0
    if before is not None and now > before:
        added = measure(state.intended, state.seen, before, now).false_online
    state, decay = _decay(state, sight)
    intended = state.intended[-1][1] if state.intended else Presence.UNKNOWN
    state = _returns(state, sight, intended)
    if sight.shown is A:
        state = replace(state, unseen_since=None)
    state, write = _mismatch(state, sight, intended, cfg)
    fight = _fight(state, cfg, reconnects)
    changed = fight != state.fight
    state = replace(state, fight=fight)
    return state, Verdict(write, decay, changed, added)


def _seen(state: WitnessState, now: float, shown: Presence) -> WitnessState:
    if shown is state.shown and state.seen:
        return state
    seen = (*_recent(state.seen, now), (now, shown))
    intended = _recent(state.intended, now)
    return replace(state, shown=shown, shown_since=now, seen=seen, intended=intended)


def _recent(
    timeline: tuple[tuple[float, Presence], ...], now: float
) -> tuple[tuple[float, Presence], ...]:
    """The change points of the last WINDOW, and the one in force at its start."""
    start = now - WINDOW
    i = 0
    while i + 1 < len(timeline) and timeline[i + 1][0] <= start:
        i += 1
    return timeline[i:]


def _decay(state: WitnessState, sight: Sight) -> tuple[WitnessState, float | None]:
    """Time the decay of a write of `available` that nothing followed: from the write until
    the witness sees it gone (after having seen it shown)."""
    if state.decay_from is None:
        return state, None
    if sight.shown is A:
        return replace(state, decay_shown=True), None
    if not state.decay_shown:
        return state, None
    seconds = sight.at - state.decay_from
    kept = state.decays[-DECAY_KEPT + 1 :]
    state = replace(state, decay_from=None, decay_shown=False, decays=(*kept, (sight.at, seconds)))
    return state, seconds


def _returns(state: WitnessState, sight: Sight, intended: Presence) -> WitnessState:
    """Count `available` coming back after a write of `unavailable` that had been seen."""
    write = state.last_write
    if write is None or write[1] is not U or intended is not U:
        return state
    if sight.shown is U:
        return replace(state, write_held=True)
    if not state.write_held:
        return state
    returns = tuple(t for t in state.returns if sight.at - t <= WINDOW)
    return replace(state, write_held=False, returns=(*returns, sight.at))


def _mismatch(
    state: WitnessState, sight: Sight, intended: Presence, cfg: WitnessConfig
) -> tuple[WitnessState, Mismatch | None]:
    """An early write when the mismatch has been seen for the grace (0: at first sight) and no
    write of ours came within the grace or SETTLE (it may still be on its way); at most
    EARLY_WRITES an episode: past that, writing does not fix it (a fight, named by `_fight`),
    and the re-asserts go on anyway."""
    kind = None
    if intended is U and sight.shown is A:
        kind = Mismatch.FALSE_ONLINE
    elif intended is A and sight.shown is U:
        kind = Mismatch.NOT_SHOWN
    if kind is None:
        return replace(state, mismatch=None, mismatch_since=None, early_writes=0), None
    since = state.mismatch_since
    if kind is not state.mismatch or since is None:
        since = sight.at
        state = replace(state, mismatch=kind, mismatch_since=since, early_writes=0)
    last_write = state.last_write[0] if state.last_write is not None else -math.inf
    seen_long_enough = sight.at - since >= cfg.mismatch_grace
    settled = sight.at - last_write >= max(cfg.mismatch_grace, SETTLE)
    if not (cfg.act and seen_long_enough and settled) or state.early_writes >= EARLY_WRITES:
        return state, None
    return replace(state, early_writes=state.early_writes + 1), kind


def _fight(state: WitnessState, cfg: WitnessConfig, reconnects: tuple[float, ...]) -> Fight | None:
    now = state.last_read or 0.0
    returns = [t for t in state.returns if now - t <= WINDOW]
    evolution = cfg.provider == "evolution"
    if len(returns) >= FIGHT_RETURNS:
        linked = [t for t in returns if any(-30.0 <= t - r <= RECONNECT_LINK for r in reconnects)]
        gaps = [b - a for a, b in itertools.pairwise(returns)]
        if 2 * len(linked) > len(returns):
            pattern, setting = (
                "reconnect",
                (
                    "Evolution's `alwaysOnline` (it marks the session online on connect: turn "
                    "it off with POST /settings/set/{instance}, sending all six settings)"
                    if evolution
                    else "NOWEB's `markOnline` (set `noweb.markOnline: false` in the WAHA "
                    "session's config)"
                ),
            )
            said = f"{len(linked)} times just after the session reconnected"
        else:
            periodic = all(240.0 <= g <= 360.0 for g in gaps)
            pattern = "periodic" if periodic else "repeated"
            said = f"{len(returns)} times" + (" about every 5 min" if periodic else "")
            setting = (
                "Evolution's `alwaysOnline` (its loop re-marks the bot online about every 5 min: "
                "turn it off with POST /settings/set/{instance}, sending all six settings)"
                if evolution or periodic
                else "NOWEB's `markOnline` (each reconnect, about every 28 min, marks the bot "
                "online: `noweb.markOnline: false` in the session's config) or WAHA's auto-online "
                "(`WAHA_PRESENCE_AUTO_ONLINE=False`)"
            )
        return Fight(
            pattern,
            f"shown available {said} in the last hour after our `unavailable` had been seen: "
            f"a gateway setting marks the bot online; suspect {setting}",
        )
    write = state.last_write
    unseen = state.unseen_since
    if unseen is not None and write is not None and write[1] is A and now - unseen >= NO_EFFECT:
        return Fight(
            "no_effect",
            f"never shown available for {now - unseen:.0f}s although `available` was written "
            "again and again: the gateway accepts the writes and WhatsApp ignores them; suspect "
            "an account without a push name (Baileys drops its presence updates: set the bot's "
            "profile name)",
        )
    return None


def decay_quantile(state: WitnessState, q: float) -> float | None:
    """The `q` quantile (nearest rank, lower) of the decay samples; None without any."""
    values = sorted(seconds for _, seconds in state.decays)
    if not values:
        return None
    return values[max(0, math.ceil(q * len(values)) - 1)]


def effective_reassert(state: WitnessState, cfg: WitnessConfig) -> float:
    """REASSERT_AVAILABLE as the actuator should use it: with CALIBRATE and enough samples,
    0.7 x the 10th percentile of the decay, within [5 s, the configured value]."""
    p10 = decay_quantile(state, 0.1)
    if not cfg.calibrate or p10 is None or len(state.decays) < CALIBRATION_SAMPLES:
        return cfg.reassert_available
    floor = min(FLOOR, cfg.reassert_available)
    return min(cfg.reassert_available, max(floor, CALIBRATION_SHARE * p10))


def shown_ratio(measured: Truth) -> float | None:
    """The shown-available ratio, once `available` was intended for RATIO_SPAN at least in the
    hour (None before: the first seconds after a start or a change say nothing yet)."""
    if measured.desired_available < RATIO_SPAN:
        return None
    return measured.shown_available_ratio


def truth(state: WitnessState, now: float) -> Truth:
    """The truth measures over the last hour (or since the first sight), as seen."""
    if not state.seen:
        return Truth(0.0, 0.0, 0.0, 0.0, 0.0, 0)
    start = max(now - WINDOW, state.seen[0][0])
    timeline: Timeline = state.seen
    return measure(state.intended, timeline, start, max(start, now))
