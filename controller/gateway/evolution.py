"""Evolution API (self-hosted): `POST /instance/setPresence/{instance}` and
`GET /instance/connectionState/{instance}`, with the API key in the `apikey` header."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from controller.config import EvolutionSettings
from controller.core.types import Presence
from controller.gateway.base import (
    PermanentError,
    SessionNotReady,
    TransientError,
    Unsupported,
    raise_for_response,
)
from controller.gateway.http import HttpGateway, mentions, normalise_state

VALUES = {Presence.AVAILABLE: "available", Presence.UNAVAILABLE: "unavailable"}
STATES = {"open": "WORKING", "connecting": "STARTING", "close": "STOPPED", "refused": "STOPPED"}
"""Evolution's connection states (Baileys' socket), in the normalised vocabulary."""
_NOT_CONNECTED = ("connection closed", "not connected", "connection is closed", "not open")
"""What Evolution's 400 says when the WhatsApp socket is down (Baileys' error text)."""
_UNSUPPORTED = ("method not available",)
"""What Evolution's 400 says on an instance whose integration has no presence: the Meta Cloud
API (WHATSAPP-BUSINESS) and the Evolution channel; only Baileys instances can set it."""
UNSUPPORTED_ADVICE = (
    "this Evolution API instance cannot set presence: its integration is the WhatsApp Business "
    "(Meta Cloud) API or the Evolution channel, and only WHATSAPP-BAILEYS instances have "
    "presence (asked again every 5 minutes)"
)


class EvolutionGateway(HttpGateway):
    """Client for Evolution API's presence call."""

    provider = "evolution"
    values = VALUES

    def __init__(
        self,
        settings: EvolutionSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        token: Callable[[], str] | None = None,
        agent: str = "presence-controller",
    ) -> None:
        if settings.base_url is None or settings.instance is None or settings.api_key is None:
            raise ValueError("Evolution API needs a base URL, an instance and an API key")
        super().__init__(str(settings.base_url), settings.timeout, transport=transport, agent=agent)
        self.instance = settings.instance
        self._path = quote(settings.instance, safe="")
        self._set_path = f"/instance/setPresence/{self._path}"  # 201 {"presence": value}
        self._key = token or settings.api_key.get_secret_value

    def _auth(self) -> tuple[dict[str, str], dict[str, str]]:
        return {}, {"apikey": self._key()}

    async def session_status(self) -> str:
        what = "connection state"
        reply = await self._read(f"/instance/connectionState/{self._path}", what)
        instance: Any = reply.get("instance")
        if not isinstance(instance, dict):
            raise PermanentError(f"{what}: reply has no 'instance' object")
        if "state" not in instance:
            raise SessionNotReady(
                f"{what}: Evolution API knows the instance {self.instance!r} but has not loaded "
                "it (its reply has no 'state'): connect it, or restart Evolution API"
            )
        return normalise_state(instance, "state", what, STATES)

    def _raise(self, response: httpx.Response, data: bytes, what: str, *, setting: bool) -> None:
        """Evolution's answers on top of the common mapping: 404 is an unknown instance; a 400
        that says the connection is closed is a session not ready, any other 400 a refusal."""
        status = response.status_code
        prefix = f"{what}: HTTP {status}"
        if status == 404:
            raise PermanentError(
                f"{prefix}: Evolution API has no instance {self.instance!r} (create it, or "
                "check PRESENCE_EVOLUTION__INSTANCE and PRESENCE_EVOLUTION__BASE_URL)",
                status_code=status,
            )
        if status == 400 and mentions(data, *_NOT_CONNECTED):
            raise SessionNotReady(
                f"{prefix}: session not ready (the instance is not connected)",
                status_code=status,
            )
        if status == 400 and mentions(data, *_UNSUPPORTED):
            raise Unsupported(f"{prefix}: {UNSUPPORTED_ADVICE}", status_code=status)
        if status == 400 and mentions(data, "timed out"):
            raise TransientError(f"{prefix}: WhatsApp timed out", status_code=status)
        raise_for_response(response, what)
