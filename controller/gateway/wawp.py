"""Wawp: `POST /v2/presence` and `GET /v2/session/info`, authenticated by query parameters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx

from controller.bounded_read import (
    IDENTITY,
    CompressedReply,
    ReplyTooLarge,
    read_body,
)
from controller.config import WawpSettings
from controller.cookies import no_cookies
from controller.core.types import Presence
from controller.gateway.base import (
    PermanentError,
    raise_for_response,
    transport_error,
)

MAX_REPLY_BYTES = 16 * 1024
"""Wawp's replies are a few hundred bytes; more is refused while streaming, never buffered."""
SESSION_STATES = frozenset({"WORKING", "STARTING", "SCAN_QR_CODE", "STOPPED", "FAILED"})


class WawpGateway:
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
        self._settings = settings
        self._instance_id = settings.instance_id
        self._token = token or settings.access_token.get_secret_value
        self._timeout = settings.timeout
        self._client = httpx.AsyncClient(
            base_url=str(settings.base_url).rstrip("/"),
            transport=transport,
            timeout=settings.timeout,
            follow_redirects=False,
            headers={"User-Agent": agent},
            cookies=no_cookies(),
        )
        self._values = {
            Presence.AVAILABLE: settings.values[0],
            Presence.UNAVAILABLE: settings.values[1],
        }

    async def session_status(self) -> str:
        what = "session info"
        response, data = await self._request("GET", "/v2/session/info", what)
        raise_for_response(response, what)
        try:
            body: Any = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise PermanentError(f"{what}: reply is not JSON") from None
        status = body.get("status") if isinstance(body, dict) else None
        if not isinstance(status, str):
            raise PermanentError(f"{what}: reply has no string 'status' field")
        status = status.upper()
        if status not in SESSION_STATES:
            # Never quote what the gateway sent: a broken or hostile one may echo the token.
            raise PermanentError(
                f"{what}: unknown session status ({len(status)} characters, not one of "
                f"{', '.join(sorted(SESSION_STATES))})"
            )
        return status

    async def set_presence(self, presence: Presence) -> int:
        if presence not in self._values:
            raise ValueError(f"cannot set presence {presence}")
        what = f"set presence {presence}"
        body = {self._settings.field: self._values[presence]}
        response, _ = await self._request("POST", "/v2/presence", what, json=body)
        raise_for_response(response, what, not_ready=422)
        return response.status_code

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(
        self, method: str, path: str, what: str, json: dict[str, str] | None = None
    ) -> tuple[httpx.Response, bytes]:
        """The reply (status and headers) and at most MAX_REPLY_BYTES of its body, within the
        timeout, never decompressed."""
        params = {"instance_id": self._instance_id, "access_token": self._token()}
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._client.stream(
                    method, path, params=params, json=json, headers=IDENTITY
                ) as response,
            ):
                return response, await read_body(response, MAX_REPLY_BYTES)
        except (ReplyTooLarge, CompressedReply) as exc:
            raise PermanentError(f"{what}: {exc}") from None
        except (TimeoutError, httpx.HTTPError) as exc:
            raise transport_error(what, exc, self._timeout) from None
