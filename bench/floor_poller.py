"""The floor for "cost per tick": what a user would write instead of presence-controller.

Every interval: GET the health endpoint and the metrics endpoint with httpx, read the lag line
with a string scan, compare with a threshold. No hysteresis, no tracing, no metrics, no admin
server, no gateway. Usage: python bench/floor_poller.py HEALTH_URL METRICS_URL INTERVAL
"""

from __future__ import annotations

import asyncio
import sys

import httpx


def lag_of(text: str, metric: str = "webhook_queue_lag_seconds") -> float | None:
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(metric) and not line.startswith("#")
    ]
    return max(values) if values else None


async def main(health: str, metrics: str, interval: float) -> None:
    loop = asyncio.get_running_loop()
    last: bool | None = None
    async with httpx.AsyncClient(timeout=interval / 2) as client:
        while True:
            started = loop.time()
            try:
                h, m = await asyncio.gather(client.get(health), client.get(metrics))
                lag = lag_of(m.text)
                online = h.status_code == 200 and lag is not None and lag < 30
            except httpx.HTTPError:
                online = False
            if online != last:
                last = online  # a real poller would set the bot's presence here
            await asyncio.sleep(max(0.0, started + interval - loop.time()))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
