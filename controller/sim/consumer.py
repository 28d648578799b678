"""A simulated webhook consumer: a health endpoint and a lag metric, both settable at runtime."""

from __future__ import annotations

import asyncio
import enum
import math
from dataclasses import dataclass

from aiohttp import web

LAG_METRIC = "webhook_queue_lag_seconds"
_HUGE_BODY = (("# padding " + "x" * 1000 + "\n") * (5 * 1024)).encode()
"""Over the 4 MiB limit; built once, not per request."""


class MetricsMode(enum.StrEnum):
    PROMETHEUS = "prometheus"
    OPENMETRICS = "openmetrics"
    ABSENT = "absent"
    """The exposition lacks the lag metric."""
    GARBAGE = "garbage"
    TRUNCATED = "truncated"
    """OpenMetrics cut off before `# EOF`."""
    HUGE = "huge"
    """A body over the 4 MiB limit."""
    ERROR = "error"
    """HTTP 500."""


@dataclass
class SimConsumer:
    """Settable consumer state; `app()` serves it at /healthz and /metrics."""

    health_status: int = 200
    health_delay: float = 0.0
    """Seconds before answering; math.inf hangs until the client gives up."""
    flap: bool = False
    """Alternate 200 and 500 on each health request."""
    lag: float = 1.0
    lag_series: int = 1
    metrics_mode: MetricsMode = MetricsMode.PROMETHEUS
    metrics_delay: float = 0.0
    health_requests: int = 0
    metrics_requests: int = 0
    probed_at: list[float] | None = None
    """Given a list: the event loop's time of every health probe is appended to it (in virtual
    time under a fake loop clock). None by default: a long soak would keep one per tick."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def _pause(self, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(3600 if math.isinf(delay) else delay)

    async def _health(self, request: web.Request) -> web.Response:
        self.health_requests += 1
        if self.probed_at is not None:
            self.probed_at.append(asyncio.get_running_loop().time())
        await self._pause(self.health_delay)
        status = self.health_status
        if self.flap:
            status = 200 if self.health_requests % 2 else 500
        return web.Response(status=status, text="ok\n" if status < 300 else "unhealthy\n")

    def exposition(self) -> str:
        lines = [
            f"# HELP {LAG_METRIC} Age of the oldest queued webhook.",
            f"# TYPE {LAG_METRIC} gauge",
        ]
        for i in range(self.lag_series):
            value = self.lag if i == 0 else self.lag / 2
            lines.append(f'{LAG_METRIC}{{queue="inbound",shard="{i}"}} {value}')
        lines += ["# TYPE webhook_processed counter", "webhook_processed_total 42"]
        return "\n".join(lines) + "\n"

    async def _metrics(self, request: web.Request) -> web.Response:
        self.metrics_requests += 1
        await self._pause(self.metrics_delay)
        mode = self.metrics_mode
        if mode is MetricsMode.ERROR:
            return web.Response(status=500, text="boom\n")
        if mode is MetricsMode.GARBAGE:
            return web.Response(text="<html><body>not metrics</body></html>\n")
        if mode is MetricsMode.ABSENT:
            return web.Response(text="# TYPE other_metric gauge\nother_metric 1\n")
        if mode is MetricsMode.HUGE:
            return web.Response(body=_HUGE_BODY, content_type="text/plain")
        if mode is MetricsMode.OPENMETRICS or mode is MetricsMode.TRUNCATED:
            eof = "" if mode is MetricsMode.TRUNCATED else "# EOF\n"
            return web.Response(
                body=(self.exposition() + eof).encode(),
                headers={
                    "Content-Type": "application/openmetrics-text; version=1.0.0; charset=utf-8"
                },
            )
        return web.Response(
            body=self.exposition().encode(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )
