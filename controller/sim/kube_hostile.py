"""The fake API server's hostile variant: watch streams that misbehave the way broken proxies
and API servers do, chosen per client (`SimKube.watch_faults`)."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from controller.sim.kube_rules import Failure, Kind, status_body

WATCH_FAULTS = {
    "stall": "the stream opens and never sends a line",
    "bookmarks": "only BOOKMARKs, never an event",
    "garbage": "lines that are not JSON",
    "eof": "the stream ends at once",
    "expired": "every watch answered with an ERROR 410 Expired event",
    "huge": "one line of HUGE_LINE bytes, no newline",
    "endless": "a new ADDED Lease every few milliseconds, for ever",
}
HUGE_LINE = 100 * 1024 * 1024


async def misbehave(
    fault: str, response: web.StreamResponse, kind: Kind, namespace: str, version_now: int,
    deadline: float,
) -> None:  # fmt: skip
    """A hostile watch stream (WATCH_FAULTS) until `deadline` (monotonic); `version_now` is the
    server's resourceVersion."""
    version = str(version_now)
    if fault == "expired":
        failure = Failure(410, "Expired", f"too old resource version: 1 ({version})")
        error = {"type": "ERROR", "object": status_body(failure)}
        await response.write(json.dumps(error).encode() + b"\n")
    elif fault == "huge":
        chunk = b"x" * (1024 * 1024)
        for _ in range(HUGE_LINE // len(chunk)):
            await response.write(chunk)
    elif fault in {"bookmarks", "garbage", "endless"}:
        count = 0
        while time.monotonic() < deadline:
            count += 1
            if fault == "bookmarks":
                marker = {"kind": kind.kind, "apiVersion": kind.api_version,
                          "metadata": {"resourceVersion": version}}  # fmt: skip
                line = json.dumps({"type": "BOOKMARK", "object": marker}).encode()
            elif fault == "garbage":
                line = b'{"type": "MODIFIED", "object": <html>502 Bad Gateway'
            else:
                obj = {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": {
                    "name": f"flood-{count}", "namespace": namespace,
                    "resourceVersion": str(version_now + count),
                    "labels": {"presence-controller/lease": "x"}}}  # fmt: skip
                line = json.dumps({"type": "ADDED", "object": obj}).encode()
            await response.write(line + b"\n")
            await asyncio.sleep(0.002 if fault == "endless" else 0.05)
    elif fault == "stall":
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    await response.write_eof()
