"""The fake API server's watch streams: synthetic ADDED from a list (no resourceVersion) or a
resume after one, an `ERROR` event with a 410 `Expired` Status for a resourceVersion older than
the kept history, BOOKMARKs only when asked (every second), a clean end at `timeoutSeconds` or
when `drop_watches()` is called, nothing while the client is partitioned, and the hostile
variants of `watch_faults` (kube_hostile)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, Protocol

from aiohttp import web

from controller.sim.kube_hostile import misbehave
from controller.sim.kube_rules import JSON, Failure, Kind, status_body
from controller.sim.kube_selectors import selector


class Store(Protocol):
    """What a watch stream reads of the fake API server (`SimKube`)."""

    changed: asyncio.Condition | None
    watch_faults: dict[str, str]
    version: int
    history: Any
    generation: int
    partitioned: set[str]

    def select(
        self, kind: Kind, namespace: str, query: Any
    ) -> tuple[list[dict[str, Any]], int]: ...


async def watch_stream(
    sim: Store, request: web.Request, kind: Kind, namespace: str, client: str
) -> web.StreamResponse:
    matches = selector(request.query)
    bookmarks = request.query.get("allowWatchBookmarks") in {"true", "1"}
    timeout = float(request.query.get("timeoutSeconds") or 1800)
    since = request.query.get("resourceVersion") or ""
    response = web.StreamResponse(status=200, headers={"Content-Type": JSON})
    await response.prepare(request)
    if sim.changed is None:
        sim.changed = asyncio.Condition()

    async def send(event: str, obj: dict[str, Any]) -> None:
        await response.write(json.dumps({"type": event, "object": obj}).encode() + b"\n")

    fault = sim.watch_faults.get(client)
    if fault is not None:
        await misbehave(fault, response, kind, namespace, sim.version, time.monotonic() + timeout)
        return response
    if since in {"", "0"}:
        for obj in sim.select(kind, namespace, request.query)[0]:
            await send("ADDED", obj)
        last = sim.version
    else:
        last = int(since)
        oldest = sim.history[0][0] if sim.history else sim.version + 1
        if last < oldest - 1:
            failure = Failure(410, "Expired", f"too old resource version: {last} ({oldest})")
            await send("ERROR", status_body(failure))
            await response.write_eof()
            return response
    deadline = time.monotonic() + timeout
    next_bookmark = time.monotonic() + 1.0
    generation = sim.generation
    while time.monotonic() < deadline and generation == sim.generation:
        if client not in sim.partitioned:
            for version, event, plural, obj in list(sim.history):
                if version <= last or plural != kind.plural:
                    continue
                last = version
                ns = obj["metadata"].get("namespace", "")
                if (ns == namespace or not kind.namespaced) and matches(obj):
                    await send(event, obj)
            if bookmarks and time.monotonic() >= next_bookmark:
                marker = {"kind": kind.kind, "apiVersion": kind.api_version}
                await send("BOOKMARK", {**marker, "metadata": {"resourceVersion": str(last)}})
                next_bookmark = time.monotonic() + 1.0
            last = max(last, sim.version)
        # The next bookmark counts only when bookmarks were asked for: otherwise, past its
        # instant, the wait would be 0 on every turn, a busy loop until the deadline.
        until = min(deadline, next_bookmark) if bookmarks else deadline
        wait = max(0.0, until - time.monotonic())
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the cancel that
        # ends this handler at shutdown, and the stream then runs on to its deadline (a test's
        # event loop waited minutes for it at teardown).
        async with sim.changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, 0.25)):
                    await sim.changed.wait()
    await response.write_eof()
    return response
