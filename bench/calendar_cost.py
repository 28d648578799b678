"""Calendar evaluation cost (`make bench`, "Calendar evaluation"): the largest calendar the
controller accepts (MAX_EVENTS events, MAX_OCCURRENCES occurrences in the horizon), expanded once
in the worker, then evaluated at many instants as the controller does (Expansion.near +
overrides.evaluate). Prints one Markdown table."""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta

from controller.core.annotations import Directives
from controller.core.calendar import MAX_EVENTS, MAX_OCCURRENCES, Near, expand
from controller.core.overrides import evaluate
from controller.core.schedule import Schedule
from controller.sources.calendar import expand_in_worker

SINCE = datetime(2026, 12, 7, tzinfo=UTC)


def largest() -> bytes:
    """MAX_EVENTS events: weekly series with time zones and exceptions, and one-off windows, with
    MAX_OCCURRENCES occurrences in the horizon between them."""
    events = []
    for n in range(MAX_EVENTS):
        start = SINCE + timedelta(hours=n)
        if n % 40 == 0:  # 50 weekly series in Berlin time, each with an EXDATE
            events.append(
                f"UID:s{n}\r\nSUMMARY:Series {n}\r\nDTSTART;TZID=Europe/Berlin:"
                f"{start:%Y%m%dT%H%M%S}\r\nDURATION:PT1H\r\nRRULE:FREQ=DAILY\r\n"
                f"EXDATE;TZID=Europe/Berlin:{start + timedelta(days=7):%Y%m%dT%H%M%S}"
            )
        else:
            events.append(
                f"UID:o{n}\r\nSUMMARY:One-off {n} {'x' * 150}\r\n"
                f"DTSTART:{start:%Y%m%dT%H%M%SZ}\r\nDURATION:PT30M"
            )
    body = "".join(f"BEGIN:VEVENT\r\n{e}\r\nEND:VEVENT\r\n" for e in events)
    return (
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\n{body}END:VCALENDAR\r\n".encode()
    )


def main() -> None:
    data = largest()
    started = time.perf_counter()
    expansion = asyncio.run(expand_in_worker(data, SINCE))
    worker = time.perf_counter() - started
    assert len(expansion.occurrences) <= MAX_OCCURRENCES
    samples = []
    for step in range(2000):
        at = SINCE + timedelta(minutes=67 * step)
        t0 = time.perf_counter()
        occurrences, refresh = expansion.near(at)
        evaluate(Directives(), Schedule(), None, 0, at, calendar=Near(occurrences, refresh))
        samples.append(time.perf_counter() - t0)
    samples.sort()
    in_process = time.perf_counter()
    expand(data, SINCE)
    in_process = time.perf_counter() - in_process
    columns = ["calendar", "bytes", "events", "occurrences", "expansion (worker)",
               "expansion (in process)", "evaluation p50", "p99", "max"]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| largest allowed | {len(data):,} | {expansion.events} | {len(expansion.occurrences):,} "
        f"| {worker:.2f} s | {in_process:.2f} s | {statistics.median(samples) * 1e3:.2f} ms "
        f"| {samples[int(len(samples) * 0.99)] * 1e3:.2f} ms | {samples[-1] * 1e3:.2f} ms |"
    )


if __name__ == "__main__":
    main()
