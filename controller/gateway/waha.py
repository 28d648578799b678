"""WAHA (self-hosted): `POST /api/{session}/presence` and `GET /api/sessions/{session}`, with
the API key in the `X-Api-Key` header."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import httpx

from controller.config import WahaSettings
from controller.core.types import Presence
from controller.gateway.base import (
    PermanentError,
    SessionNotReady,
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

    def _raise(self, response: httpx.Response, data: bytes, what: str, *, setting: bool) -> None:
        """WAHA's answers on top of the common mapping: 404 is an unknown session, 422 a
        session that did not reach WORKING within WAHA's 5 s wait (or an engine without
        presence)."""
        status = response.status_code
        prefix = f"{what}: HTTP {status}"
        if status == 404:
            raise PermanentError(
                f"{prefix}: WAHA has no session {self.session!r} (start it, or check "
                "PRESENCE_WAHA__SESSION and PRESENCE_WAHA__BASE_URL)",
                status_code=status,
            )
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
