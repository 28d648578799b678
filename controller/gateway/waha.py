"""WAHA (self-hosted): `POST /api/{session}/presence` and `GET /api/sessions/{session}`, with
the API key in the `X-Api-Key` header."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import httpx

from controller.config import WahaSettings
from controller.core.types import Presence
from controller.gateway.base import (
    AuthError,
    GatewayError,
    PermanentError,
    SessionNotReady,
    TransientError,
    raise_for_response,
)
from controller.gateway.http import (
    SESSION_STATES,
    HttpGateway,
    json_body,
    mentions,
    normalise_state,
)

VALUES = {Presence.AVAILABLE: "online", Presence.UNAVAILABLE: "offline"}
"""WAHA's `WAHAPresenceStatus` values for the global presence (no `chatId`)."""
_STATES = {state: state for state in SESSION_STATES}
HOLD = 15.0
"""WAHA holds a set call on a session that is not WORKING: up to 5 s for it to run, then up
to 10 s for WORKING, and only then answers 422. Our timeout is shorter (fleet mode needs it
well under the lease), so a set call that times out is followed by one session read."""
_CHECK = 1.0
"""At most this much of the timeout is kept for that read (a quarter with a short timeout)."""


class WahaGateway(HttpGateway):
    """Client for WAHA's presence API."""

    provider = "waha"
    values = VALUES

    def __init__(
        self,
        settings: WahaSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        token: Callable[[], str] | None = None,
        agent: str = "presence-controller",
    ) -> None:
        if settings.base_url is None:
            raise ValueError("WAHA needs a base URL")
        super().__init__(str(settings.base_url), settings.timeout, transport=transport, agent=agent)
        self.session = settings.session
        self._path = quote(settings.session, safe="")
        self._set_path = f"/api/{self._path}/presence"  # WAHA answers 201 with an empty body
        key = settings.api_key
        self._key: Callable[[], str | None] = token or (
            key.get_secret_value if key is not None else lambda: None
        )

    def _auth(self) -> tuple[dict[str, str], dict[str, str]]:
        key = self._key()
        return {}, ({"X-Api-Key": key} if key else {})

    async def session_status(self) -> str:
        what = "session info"
        reply = await self._read(f"/api/sessions/{self._path}", what)
        return normalise_state(reply, "status", what, _STATES)

    async def send(self, field: str, value: str, what: str) -> int:
        """The set call; one that times out while the session is not WORKING (WAHA held it,
        waiting for the session) is a session not ready, not a gateway outage. The set call
        and that one session read share the timeout: a call never outlasts it (fleet mode's
        margin before a takeover counts on that)."""
        check = min(_CHECK, self._timeout / 4)
        try:
            return await self._send(field, value, what, within=self._timeout - check)
        except TransientError as exc:
            if not exc.timed_out:
                raise
            try:
                reply = await self._read(f"/api/sessions/{self._path}", what, within=check)
                state = normalise_state(reply, "status", what, _STATES)
            except GatewayError:
                state = None
            if state in (None, "WORKING"):
                # Said against the configured timeout: the read came out of it.
                message = f"{what}: timed out after {self._timeout:g}s"
                raise TransientError(message, timed_out=True) from None
            raise SessionNotReady(
                f"{what}: timed out after {self._timeout:g}s while the session is {state} "
                f"(WAHA holds such calls up to {HOLD:g}s before its 422): session not ready"
            ) from None

    def _unknown(self, prefix: str, status: int) -> PermanentError:
        return PermanentError(
            f"{prefix}: WAHA has no session {self.session!r} (start it, or check "
            "PRESENCE_WAHA__SESSION and PRESENCE_WAHA__BASE_URL)",
            status_code=status,
        )

    def _raise(self, response: httpx.Response, data: bytes, what: str, *, setting: bool) -> None:
        """WAHA's answers on top of the common mapping: 404 (or a 422 that says so) is an
        unknown session, a 422 with `expected` a session that did not reach WORKING within
        WAHA's hold, "only 'default' session" WAHA Core with another name (or an engine
        without presence): neither of those is worth a quick retry."""
        status = response.status_code
        prefix = f"{what}: HTTP {status}"
        if status == 404:
            raise self._unknown(prefix, status)
        if status == 401:
            raise AuthError(
                f"{prefix}: the gateway rejected the credentials (current WAHA requires an API "
                "key: without WAHA_API_KEY it generates a random one at start, unless "
                "WAHA_NO_API_KEY=True); set PRESENCE_WAHA__API_KEY to WAHA's WAHA_API_KEY",
                status_code=status,
            )
        if status == 422 and mentions(data, "only 'default' session", 'only "default" session'):
            raise PermanentError(
                f"{prefix}: WAHA Core supports only the session 'default', not "
                f"{self.session!r}: set PRESENCE_WAHA__SESSION=default (or run WAHA Plus)",
                status_code=status,
            )
        if status == 422 and mentions(data, "does not exist"):
            raise self._unknown(prefix, status)
        if status == 422:
            body = json_body(data)
            if isinstance(body, dict) and "expected" in body:
                state = body.get("status")
                shown = f" (session is {state})" if state in SESSION_STATES else ""
                raise SessionNotReady(f"{prefix}: session not ready{shown}", status_code=status)
            if mentions(data, "not implemented"):
                raise PermanentError(
                    f"{prefix}: this WAHA engine does not implement presence (WEBJS does)",
                    status_code=status,
                )
        raise_for_response(response, what, not_ready=422)
