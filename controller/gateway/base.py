"""The provider protocol and the error taxonomy every provider maps its answers onto."""

from __future__ import annotations

import re
from typing import Protocol

import httpx

from controller.core.actuation import Failure, FailureKind
from controller.core.excerpt import describe
from controller.core.retry_after import parse_retry_after
from controller.core.types import Presence


class GatewayError(Exception):
    """A gateway call failed. Messages never contain credentials."""

    kind: FailureKind = FailureKind.PERMANENT

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def as_failure(self) -> Failure:
        return Failure(self.kind, self.message)


class AuthError(GatewayError):
    """401/403: the credentials are wrong or revoked. Fix the token; retried rarely."""

    kind = FailureKind.AUTH


class SessionNotReady(GatewayError):
    """The WhatsApp session is not connected (not WORKING); presence cannot be set now."""

    kind = FailureKind.SESSION_NOT_READY


class RateLimited(GatewayError):
    """429: slow down, for `retry_after` seconds when the gateway said so."""

    kind = FailureKind.RATE_LIMITED

    def __init__(
        self, message: str, *, status_code: int | None = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after

    def as_failure(self) -> Failure:
        return Failure(self.kind, self.message, self.retry_after)


class TransientError(GatewayError):
    """5xx, timeouts, connection errors: retry with back-off."""

    kind = FailureKind.TRANSIENT

    def __init__(
        self, message: str, *, status_code: int | None = None, timed_out: bool = False
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.timed_out = timed_out
        """No answer within the timeout (not a refused connection, not a 5xx)."""


class PermanentError(GatewayError):
    """Other 4xx or a malformed reply: a retry will not help soon; retried at the back-off cap."""

    kind = FailureKind.PERMANENT


class Unsupported(PermanentError):
    """The gateway says this session can never set presence (e.g. an Evolution API instance on
    the WhatsApp Business API): asked again only every `retry_after` seconds, in case the
    instance was re-created."""

    retry_after = 300.0

    def as_failure(self) -> Failure:
        return Failure(self.kind, self.message, self.retry_after)


class QuotaRefused(GatewayError):
    """The gateway refused the call for the account's plan or quota (Wawp's 403: "Quota or
    Limit Reached", `subscription_required`): the credentials are fine, the plan is not.
    Retried as rarely as an auth failure."""

    kind = FailureKind.QUOTA


class Gateway(Protocol):
    """A WhatsApp gateway that can set the bot's presence."""

    provider: str
    field: str
    """The JSON body field of the set call."""
    values: dict[Presence, str]
    """The body values it sends for AVAILABLE and UNAVAILABLE."""

    async def session_status(self) -> str:
        """The session state, normalised to WORKING, STARTING, SCAN_QR_CODE, STOPPED or FAILED."""
        ...

    async def set_presence(self, presence: Presence) -> int:
        """Set AVAILABLE or UNAVAILABLE and return the HTTP status; a GatewayError on failure."""
        ...

    async def send(self, field: str, value: str, what: str) -> int:
        """POST `{field: value}` as the set call (the vocabulary probe); the HTTP status."""
        ...

    async def aclose(self) -> None: ...


def raise_for_response(
    response: httpx.Response, what: str, *, not_ready: int | None = None
) -> None:
    """Map a non-2xx answer onto the taxonomy; `not_ready`: the provider's not-ready status."""
    status = response.status_code
    if 200 <= status < 300:
        return
    prefix = f"{what}: HTTP {status}"
    if status in (401, 403):
        raise AuthError(f"{prefix}: the gateway rejected the credentials", status_code=status)
    if not_ready is not None and status == not_ready:
        raise SessionNotReady(f"{prefix}: session not ready", status_code=status)
    if status == 429:
        headers = response.headers
        retry_after = parse_retry_after(headers.get("retry-after"), headers.get("date"))
        hint = f", retry after {retry_after:g}s" if retry_after is not None else ""
        raise RateLimited(f"{prefix}: rate limited{hint}", retry_after=retry_after)
    if status >= 500 or status == 408:
        raise TransientError(prefix, status_code=status)
    raise PermanentError(prefix, status_code=status)


def transport_error(what: str, exc: Exception, timeout: float) -> TransientError:
    """A timeout or connection failure as a TransientError, keeping the cause (errno, TLS
    reason) as a short excerpt with every URL cut out: URLs carry the token."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return TransientError(f"{what}: timed out after {timeout:g}s", timed_out=True)
    if isinstance(exc, httpx.ProtocolError | httpx.UnsupportedProtocol):
        # Their text quotes what was sent or received, a header (the API key) included.
        return TransientError(f"{what}: connection failed ({type(exc).__name__})")
    cause = describe(exc, _URL.sub("[url]", str(exc)))
    return TransientError(f"{what}: connection failed ({cause})")


_URL = re.compile(r"\S+://\S*|\S*access_token=\S*", re.IGNORECASE)
"""URLs and query strings in exception messages: they may hold the token."""
