"""The shell's one source of time: every long-running part reads, sleeps and times out through
a `Clock`, so that tests can run it in virtual time (a fake event-loop clock such as
`looptime`) and assert delays exactly.

`now()` is the event loop's own clock (monotonic seconds; `time.monotonic()` under asyncio's
loop), the one `sleep()` and `timeout()` wait on; outside a running loop it is
`time.monotonic()`, the same source. `wall()` is timezone-aware UTC: the system's by default,
or a function of `now()` for a virtual clock, so that windows, Events and reports move with
virtual time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class Clock:
    """Monotonic `now()`, wall-clock `wall()`, `sleep()` and `timeout()`.

    `wall`: where wall-clock time comes from (default: the system's); tests give a fixed or
    stepping wall clock, or use `VirtualClock`."""

    def __init__(self, wall: Callable[[], datetime] | None = None) -> None:
        self._wall = wall

    def now(self) -> float:
        """Monotonic seconds: the running event loop's time (what `sleep` and `timeout` count)."""
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    def wall(self) -> datetime:
        """The wall-clock time, timezone-aware UTC."""
        return self._wall() if self._wall is not None else datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def timeout(self, seconds: float | None) -> asyncio.Timeout:
        """`async with clock.timeout(s)`: TimeoutError after `s` seconds (None: never)."""
        return asyncio.timeout(None if seconds is None else max(0.0, seconds))


class VirtualClock(Clock):
    """Wall-clock time that moves with the loop's clock: `start` at loop time `origin`. Under a
    fake loop clock (looptime) the whole shell then runs in virtual time."""

    def __init__(self, start: datetime, origin: float = 0.0) -> None:
        super().__init__()
        self._start, self._origin = start, origin

    def wall(self) -> datetime:
        return self._start + timedelta(seconds=self.now() - self._origin)


SYSTEM = Clock()
"""The clock of a real process."""
