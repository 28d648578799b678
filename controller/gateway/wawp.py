"""Wawp: `POST /v2/presence` and `/v2/session/info`, authenticated by query parameters and, on
POSTs, in the JSON body as well (Wawp's own MCP server sends them there)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from controller.config import WawpSettings
from controller.core.types import Presence
from controller.gateway.base import QuotaRefused, raise_for_response
from controller.gateway.http import SESSION_STATES, HttpGateway, json_reply, normalise_state

_STATES = {state: state for state in SESSION_STATES}
SESSION_PATH = "/v2/session/info"
_NO_GET = (404, 405)
"""Answers to a GET of the session that mean "not by GET here": Wawp's reference lists the
session call as a POST, its docs menu and MCP server use GET."""
QUOTA_ADVICE = (
    "Wawp refused the call for the account's plan or quota (HTTP 403: quota or limit reached, "
    "or a subscription required); the credentials were accepted: check the Wawp plan and its "
    "limits, not the token"
)


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
        self.session_method = "GET"
        """How the session is read: GET, until a GET is answered 404 or 405 and a POST is not."""

    def _credentials(self) -> dict[str, str]:
        return {"instance_id": self._instance_id, "access_token": self._token()}

    def _auth(self) -> tuple[dict[str, str], dict[str, str]]:
        return self._credentials(), {}

    def _body(self, body: dict[str, str]) -> dict[str, str]:
        return {**body, **self._credentials()}

    async def session_status(self) -> str:
        what = "session info"
        response, data = await self._read_raw(SESSION_PATH, what, self.session_method)
        if self.session_method == "GET" and response.status_code in _NO_GET:
            fallback, fallback_data = await self._read_raw(SESSION_PATH, what, "POST")
            if fallback.status_code not in _NO_GET:
                self.session_method = "POST"
                response, data = fallback, fallback_data
        self._raise(response, data, what, setting=False)
        return normalise_state(json_reply(data, what), "status", what, _STATES)

    def _raise(self, response: httpx.Response, data: bytes, what: str, *, setting: bool) -> None:
        if response.status_code == 403:
            raise QuotaRefused(f"{what}: {QUOTA_ADVICE}", status_code=403)
        raise_for_response(response, what, not_ready=422 if setting else None)
