"""The consumer's health probe: a GET whose 2xx answer within the timeout means healthy."""

from __future__ import annotations

import asyncio

import httpx

from controller.bounded_read import IDENTITY
from controller.core.excerpt import describe
from controller.core.types import HealthResult, HealthStatus

_DRAIN_LIMIT = 64 * 1024
"""Read at most this much of a health body, so the connection can be reused; more is dropped."""


class HealthProbe:
    """Probe `url` with a whole-request timeout; every outcome is a HealthResult."""

    def __init__(self, client: httpx.AsyncClient, url: str, timeout: float) -> None:
        self._client = client
        self._url = url
        self._timeout = timeout

    async def __call__(self) -> HealthResult:
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._client.stream("GET", self._url, headers=IDENTITY) as resp,
            ):
                read = 0
                # Raw bytes: a compressed body is drained, never inflated (no gzip bomb).
                async for chunk in resp.aiter_raw():
                    read += len(chunk)
                    if read > _DRAIN_LIMIT:
                        break
                status = resp.status_code
        except (TimeoutError, httpx.TimeoutException):
            return HealthResult(HealthStatus.TIMEOUT, f"timed out after {self._timeout:g}s")
        except httpx.TooManyRedirects:
            return HealthResult(HealthStatus.HTTP_ERROR, "too many redirects")
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, UnicodeError) as exc:
            # A redirect to javascript:, mailto: or an invalid IDNA host.
            return HealthResult(HealthStatus.HTTP_ERROR, f"unusable redirect ({describe(exc)})")
        except httpx.HTTPError as exc:
            return HealthResult(
                HealthStatus.CONNECTION_ERROR, f"connection failed ({describe(exc)})"
            )
        except Exception as exc:
            # A probe never raises into the loop: whatever broke, this tick saw no healthy consumer.
            return HealthResult(HealthStatus.CONNECTION_ERROR, f"probe failed ({describe(exc)})")
        if 200 <= status < 300:
            return HealthResult(HealthStatus.OK, f"HTTP {status}", status)
        return HealthResult(HealthStatus.HTTP_ERROR, f"HTTP {status}", status)
