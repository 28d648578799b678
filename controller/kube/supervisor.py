"""Fleet mode's loops, supervised: a loop that fails with a bug (API failures are values, not
exceptions) is reported, logged with its traceback once per distinct error and restarted after a
back-off; it never ends the controller."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

from controller.core.excerpt import describe
from controller.runtime.clock import Clock

log = logging.getLogger("controller.kube.fleet")

SETUP_BACKOFF = (1.0, 30.0)
"""Back-off between set-up attempts, and between restarts of a loop that failed (first, cap),
doubled each time."""
CRASH_SHOWN = 300.0
"""A loop that failed with a bug is named in /status.fleet.error this long after its last
failure (it runs again meanwhile, restarted)."""


class Supervisor:
    def __init__(self, clock: Clock, rng: random.Random) -> None:
        self._clock, self._rng = clock, rng
        self._crashed: dict[str, tuple[str, float]] = {}
        """Loops that failed with a bug (not an API failure), and the error: restarting."""

    async def run(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run `loop` forever, restarting it after a failure (back-off doubling from
        SETUP_BACKOFF's first to its cap; a loop that ran a good while starts over)."""
        delay = SETUP_BACKOFF[0]
        while True:
            started = self._clock.now()
            try:
                await loop()
            except Exception as exc:
                message = f"{name} failed ({describe(exc)}); restarting"
                if self._crashed.get(name, ("", 0.0))[0] != message:
                    log.exception("fleet %s", message)
                self._crashed[name] = (message, self._clock.now())
            if self._clock.now() - started > 2 * SETUP_BACKOFF[1]:
                delay = SETUP_BACKOFF[0]
            await self._clock.sleep(delay * (1 + self._rng.random()))
            delay = min(delay * 2, SETUP_BACKOFF[1])

    def notes(self) -> list[str]:
        """The loops that failed within CRASH_SHOWN, and how."""
        now = self._clock.now()
        return [message for message, at in self._crashed.values() if now - at < CRASH_SHOWN]
