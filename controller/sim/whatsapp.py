"""What contacts see: the bot's presence as WhatsApp shows it, over time, for the simulators.

A gateway that accepts a write (2xx) has not made contacts see it. Real gateways differ from
"a write shows at once and for ever" in both directions: `available` decays after about 10 s
(Baileys), WAHA forces `offline` 25 s after activity and `online` on activity, NOWEB reconnects
about every 28 minutes and marks the session online, Evolution's always-online loop re-marks it
online every 5 minutes, and a write can have no effect at all (an account without a push name).
Each of those is a `Profile`; `WhatsApp` plays one on an injectable clock, keeps the shown
timeline and answers "what does a contact see at t" (the truth measures of `core.truth` read it).

Lazy and exact: gateway-side events (decay, auto-offline, reconnects, re-marks) are applied in
time order whenever the model is asked or written to, so virtual time needs no timers.
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from controller.core.types import Presence

WORKING = "WORKING"
STARTING = "STARTING"
MAX_TIMELINE = 200_000
"""Changes of the shown presence kept (oldest dropped): a day of 8 s re-asserts is ~22k."""


@dataclass(frozen=True, slots=True)
class Profile:
    """How one gateway and WhatsApp turn writes into what contacts see."""

    name: str
    decay: float | None = None
    """`available` shows this long after it was set (by us or by the gateway), then
    `unavailable`; None: it holds until the next write."""
    effective: bool = True
    """False: every write is answered 2xx and changes nothing (Baileys without a push name)."""
    auto_online: float | None = None
    """WAHA: activity shows `available`, and forces `unavailable` this long after the last
    activity, whatever was written since (our writes do not cancel that timer)."""
    reconnect_every: float | None = None
    """NOWEB: the session reconnects this often (plus up to `reconnect_jitter`)..."""
    reconnect_jitter: float = 29.0
    reconnect_starting: float = 4.0
    """...reads STARTING this long (writes are refused), then shows `available` (markOnline)."""
    remark_every: float | None = None
    """Evolution's always-online loop: the gateway writes `available` this often."""
    description: str = ""


BAILEYS_DECAY = 10.0
"""Baileys' README: "The presence expires after about 10 seconds"."""

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("ideal", description="a write shows at once and holds until the next write"),
        Profile(
            "baileys",
            decay=BAILEYS_DECAY,
            description="available shows for 10 s after each write, then unavailable",
        ),
        Profile(
            "waha-noweb",
            decay=BAILEYS_DECAY,
            auto_online=25.0,
            reconnect_every=28 * 60.0,
            description="baileys, plus online on activity and offline 25 s after it, plus a "
            "reconnect every 28 min (+0-29 s) that reads STARTING for 4 s and then shows "
            "available",
        ),
        Profile(
            "evolution-always-online",
            decay=BAILEYS_DECAY,
            remark_every=5 * 60.0,
            description="baileys, plus the gateway re-marks available every 5 min",
        ),
        Profile(
            "silent",
            effective=False,
            description="2xx for every write, shown never changes (an account without a push name)",
        ),
    )
}
"""The profiles by name: `ideal` is what the simulators did before they modelled WhatsApp."""
DEFAULT_PROFILE = "baileys"


def profile(name: str) -> Profile:
    """The profile called `name`; a ValueError naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ValueError(f"unknown WhatsApp profile {name!r} (known: {known})") from None


class WhatsApp:
    """One session's shown presence over time, as its contacts see it."""

    def __init__(
        self,
        profile: Profile | str = DEFAULT_PROFILE,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        start: float | None = None,
    ) -> None:
        """`clock` gives the time (monotonic seconds, or virtual); `rng` draws the reconnects'
        jitter; the session connected at `start` (default: now) showing `unavailable`."""
        self.profile = PROFILES[profile] if isinstance(profile, str) else profile
        self._clock = clock
        self._rng = rng or random.Random(0)
        self.start = clock() if start is None else start
        self._now = self.start
        self._times: list[float] = [self.start]
        self._shown: list[Presence] = [Presence.UNAVAILABLE]
        self._expires: float | None = None
        """When the `available` on show decays (None: it does not)."""
        self._auto_offline: float | None = None
        self._reconnect: float | None = self._next_reconnect(self.start)
        self._reconnected: float | None = None
        """The end of the reconnect under way (None: connected)."""
        p = self.profile
        self._remark = None if p.remark_every is None else self.start + p.remark_every
        self.writes: list[tuple[float, Presence, bool]] = []
        """Every write: (time, presence, whether it took effect)."""
        self._reconnects: list[float] = []

    # What the gateway does to the model.

    def write(self, presence: Presence) -> bool:
        """A set call the gateway accepted; whether it changed what contacts see (False during
        a reconnect, or on a `silent` profile). The gateway refuses writes while `session()`
        is not WORKING: callers check that first."""
        now = self._advance()
        took = self.profile.effective and self._reconnected is None
        self.writes.append((now, presence, took))
        if took:
            self._show(now, presence)
        return took

    def activity(self) -> None:
        """The session sent or received a message (WAHA's auto-online reacts to it)."""
        now = self._advance()
        p = self.profile
        if p.auto_online is None or not p.effective or self._reconnected is not None:
            return
        self._auto_offline = now + p.auto_online
        self._shown_now(now, Presence.AVAILABLE, expires=self._auto_offline)

    def reconnect(self) -> None:
        """The session reconnects now (NOWEB's own reconnects, or a restart of the gateway): it
        reads STARTING for the profile's `reconnect_starting`, then shows `available`
        (markOnline), whatever was written before."""
        now = self._advance()
        self._reconnect = now
        self._advance()

    # What contacts and the gateway's API see.

    def session(self) -> str:
        """The session state the gateway reports now: STARTING during a reconnect."""
        self._advance()
        return STARTING if self._reconnected is not None else WORKING

    def shown(self, at: float | None = None) -> Presence:
        """What a contact sees at `at` (default: now); UNKNOWN before the kept timeline."""
        now = self._advance()
        at = now if at is None else at
        if at > now:
            raise ValueError("the model cannot tell the future")
        i = bisect.bisect_right(self._times, at) - 1
        return Presence.UNKNOWN if i < 0 else self._shown[i]

    def reconnects(self) -> list[float]:
        """When the session reconnected, up to now."""
        self._advance()
        return list(self._reconnects)

    def timeline(self) -> list[tuple[float, Presence]]:
        """The changes of the shown presence up to now: (time, presence), oldest first."""
        self._advance()
        return list(zip(self._times, self._shown, strict=True))

    # The gateway's own events, in time order.

    def _advance(self) -> float:
        now = max(self._clock(), self._now)
        while True:
            due = [
                t
                for t in (self._expires, self._auto_offline, self._reconnect, self._reconnected)
                if t is not None and t <= now
            ]
            remark = self._remark
            if remark is not None and remark <= now:
                due.append(remark)
            if not due:
                break
            self._event(min(due))
        self._now = now
        return now

    def _event(self, at: float) -> None:
        p = self.profile
        if at == self._reconnected:
            self._reconnected = None
            self._show(at, Presence.AVAILABLE)  # markOnline on connect
        elif at == self._reconnect:
            self._reconnects.append(at)
            self._reconnected = at + p.reconnect_starting
            self._reconnect = self._next_reconnect(at)
            self._auto_offline = None
            self._shown_now(at, Presence.UNAVAILABLE, expires=None)
        elif at == self._auto_offline:
            self._auto_offline = None
            self._shown_now(at, Presence.UNAVAILABLE, expires=None)
        elif at == self._expires:
            self._shown_now(at, Presence.UNAVAILABLE, expires=None)
        else:
            assert p.remark_every is not None
            self._remark = at + p.remark_every
            if self._reconnected is None and p.effective:
                self._show(at, Presence.AVAILABLE)

    def _show(self, at: float, presence: Presence) -> None:
        """A write (ours or the gateway's) lands: `available` decays, `unavailable` holds; a
        pending auto-offline still fires."""
        decay = self.profile.decay
        expires = at + decay if presence is Presence.AVAILABLE and decay is not None else None
        self._shown_now(at, presence, expires=expires)

    def _shown_now(self, at: float, presence: Presence, *, expires: float | None) -> None:
        self._expires = expires
        if self._shown[-1] is presence:
            return
        self._times.append(at)
        self._shown.append(presence)
        if len(self._times) > MAX_TIMELINE:
            del self._times[: MAX_TIMELINE // 10], self._shown[: MAX_TIMELINE // 10]

    def _next_reconnect(self, after: float) -> float | None:
        p = self.profile
        if p.reconnect_every is None:
            return None
        return after + p.reconnect_every + self._rng.uniform(0.0, p.reconnect_jitter)
