"""The maintenance calendar file (`PRESENCE_MAINTENANCE_CALENDAR`): watched for changes, expanded
in a worker process, handed to the evaluation (core.calendar, docs/maintenance.md).

The file is read here, bounded like every file (a regular file, at most `MAX_BYTES`); its bytes
go to a worker process (`python -m controller.sources.calendar`) on stdin, which expands them
under an address-space and a CPU limit and is killed after `WORKER_TIMEOUT`: one RRULE can ask
for an unbounded search, and a thread cannot be stopped. The file is checked every `CHECK`
seconds and expanded again when it changed (a ConfigMap update swaps the file) and daily, as the
horizon moves. A file that cannot be read as a calendar fails closed (`failed`: maintenance on);
a file that vanishes or becomes unreadable keeps the last good expansion (`stale`), as the
annotations file does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from controller.bounded_read import Version, read_if_changed
from controller.core.calendar import (
    MAX_BYTES,
    CalendarError,
    Expansion,
    Near,
    expand,
    from_json,
    to_json,
)
from controller.runtime.clock import SYSTEM, Clock

CHECK = 2.0
"""Seconds between checks of the file (kubelet updates a mounted ConfigMap within ~1 minute)."""
REFRESH = timedelta(days=1)
"""The expansion is redone this often (and before its listing runs out)."""
WORKER_TIMEOUT = 20.0
WORKER_CPU_SECONDS = 10
WORKER_MEMORY = 768 * 1024 * 1024
MAX_ANSWER = 8 * 1024 * 1024
"""The worker's JSON answer: 5,000 occurrences with 200-character summaries fit."""


class CalendarFile:
    """The calendar's current expansion, or why there is none."""

    def __init__(self, path: Path, clock: Clock = SYSTEM) -> None:
        self.path, self._clock = path, clock
        self.expansion: Expansion | None = None
        self.failed: str | None = None
        """Why the file cannot be used: maintenance fails closed."""
        self.stale: str | None = None
        """Why the file could not be read again: the last good expansion stays."""
        self.version = 0
        """Bumped whenever what the evaluation sees changes."""
        self.loaded_at: datetime | None = None
        self._file: Version | None = None
        self._expanded_at: datetime | None = None

    @property
    def error(self) -> str | None:
        """Why maintenance fails closed on the calendar; None when it can be used."""
        if self.failed is not None:
            return f"invalid calendar {self.path}: {self.failed}: fails closed"
        if self.expansion is None:
            return f"calendar {self.path} not read yet: fails closed"
        return None

    def near(self, at: datetime) -> Near:
        """For the evaluation at `at`: the occurrences near it, until when they hold, or the
        error that fails maintenance closed."""
        if self.expansion is None or self.failed is not None:
            return Near(error=self.error)
        occurrences, refresh = self.expansion.near(at)
        return Near(occurrences, refresh)

    def report(self) -> dict[str, Any]:
        """`/status.maintenance.calendar`."""
        e = self.expansion
        return {
            "file": str(self.path),
            "loaded_at": self.loaded_at.isoformat() if self.loaded_at else None,
            "events": e.events if e else None,
            "windows": len(e.occurrences) if e else None,
            "listed_until": e.until.isoformat() if e else None,
            "error": self.failed,
            "stale": self.stale,
        }

    async def run(self, changed: Callable[[], None] = lambda: None) -> None:
        """Check the file every CHECK seconds, for ever; `changed()` when the evaluation's
        view changed (the controller ticks at once)."""
        while True:
            await self._clock.sleep(CHECK)
            try:
                if await self.load():
                    changed()
            except Exception as exc:  # a bug: fail closed, never end the controller
                self.failed, self.expansion = f"cannot be expanded ({type(exc).__name__})", None
                self.version += 1
                changed()

    async def load(self) -> bool:
        """Read the file and expand it if it changed or the expansion is due; True if what the
        evaluation sees changed."""
        now = self._clock.wall()
        due = self._expanded_at is None or now >= self._expanded_at + REFRESH
        if self.expansion is not None and now >= self.expansion.until - REFRESH:
            due = True
        known = None if due else self._file  # due: read it whether it changed or not
        try:
            version, data = await asyncio.to_thread(read_if_changed, self.path, MAX_BYTES, known)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            self.stale = f"cannot read {self.path}: {reason}; the last good kept"
            return False
        self.stale = None
        if data is None:  # unchanged, and not due
            return False
        self._file, self._expanded_at = version, now
        try:
            expansion = await expand_in_worker(data, now)
        except CalendarError as exc:
            changed = self.failed != str(exc) or self.expansion is not None
            self.failed, self.expansion = str(exc), None
        else:
            changed = self.failed is not None or expansion != self.expansion
            self.failed, self.expansion, self.loaded_at = None, expansion, now
        self.version += changed
        return changed


async def expand_in_worker(data: bytes, since: datetime) -> Expansion:
    """Expand `data` in a worker process with capped CPU, memory and time."""
    try:
        process = await _start_worker(since)
    except OSError as exc:
        raise CalendarError(f"cannot start the calendar worker: {exc.strerror}") from None
    try:
        async with asyncio.timeout(WORKER_TIMEOUT):
            answer, _ = await process.communicate(data)
    except TimeoutError:
        raise CalendarError(
            f"expanding it took longer than {WORKER_TIMEOUT:g}s (an RRULE without end?)"
        ) from None
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if process.returncode != 0:
        why = "its CPU limit" if process.returncode in {-24, -9} else "memory, or a bug"
        raise CalendarError(f"expanding it failed (worker exit {process.returncode}: {why})")
    if len(answer) > MAX_ANSWER:
        raise CalendarError("its expansion is larger than the worker may answer")
    try:
        body = json.loads(answer)
    except ValueError:
        raise CalendarError("unreadable answer from the calendar worker") from None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        raise CalendarError(body["error"][:300])
    return from_json(body)


async def _start_worker(since: datetime) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.sources.calendar", since.isoformat(),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


def _limits() -> None:  # pragma: no cover - runs in the worker, before it reads anything
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (WORKER_CPU_SECONDS, WORKER_CPU_SECONDS + 1))
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY))


def _worker(argv: list[str]) -> int:  # pragma: no cover - runs in the worker
    _limits()
    since = datetime.fromisoformat(argv[0])
    data = sys.stdin.buffer.read(MAX_BYTES + 1)
    try:
        body = to_json(expand(data, since))
    except CalendarError as exc:
        body = {"error": str(exc)}
    sys.stdout.write(json.dumps(body))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_worker(sys.argv[1:]))
