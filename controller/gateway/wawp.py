"""Wawp: `POST /v2/presence` and `GET /v2/session/info`, authenticated by query parameters."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from controller.config import WawpSettings
from controller.core.types import Presence
from controller.gateway.base import raise_for_response
from controller.gateway.http import SESSION_STATES, HttpGateway, normalise_state

_STATES = {state: state for state in SESSION_STATES}


class WawpGateway(HttpGateway):
    """Client for the Wawp presence API. Body field and values are configurable."""

    provider = "wawp"

    def __init__(
        self,
        settings: WawpSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        token: Callable[[], str] | None = None,
        agent: str = "presence-controller",
    ) -> None:
        """`token` returns the current access token (a rotating secret file); by default the
        one in `settings`. `agent` is the User-Agent (fleet mode names the replica in it)."""
        if settings.instance_id is None or settings.access_token is None:
            raise ValueError("Wawp needs an instance ID and an access token")
        super().__init__(str(settings.base_url), settings.timeout, transport=transport, agent=agent)
        self._instance_id = settings.instance_id
        self._token = token or settings.access_token.get_secret_value
        self.field = settings.field
        self.values = {
            Presence.AVAILABLE: settings.values[0],
            Presence.UNAVAILABLE: settings.values[1],
        }
        self._set_path = "/v2/presence"

    def _auth(self) -> tuple[dict[str, str], dict[str, str]]:
        return {"instance_id": self._instance_id, "access_token": self._token()}, {}

    async def session_status(self) -> str:
        what = "session info"
        return normalise_state(await self._read("/v2/session/info", what), "status", what, _STATES)

    def _raise(self, response: httpx.Response, data: bytes, what: str, *, setting: bool) -> None:
        raise_for_response(response, what, not_ready=422 if setting else None)
