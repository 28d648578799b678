"""What every HTTP provider shares: one bounded, timed request, and its JSON reply read safely.

A provider says where the credential goes (`_auth`), which paths it calls and how its answers
map onto the taxonomy; the transport rules are here once: the whole call under the timeout, at
most MAX_REPLY_BYTES of a reply read while streaming (never decompressed), no redirects, no
cookies, every transport failure a TransientError without a URL in it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from controller.bounded_read import IDENTITY, CompressedReply, ReplyTooLarge, read_body
from controller.cookies import no_cookies
from controller.core.types import Presence
from controller.gateway.base import PermanentError, raise_for_response, transport_error

MAX_REPLY_BYTES = 16 * 1024
"""Gateway replies are a few hundred bytes; more is refused while streaming, never buffered."""
SESSION_STATES = frozenset({"WORKING", "STARTING", "SCAN_QR_CODE", "STOPPED", "FAILED"})
"""The normalised session states (Wawp's and WAHA's own vocabulary)."""


class HttpGateway:
    """Base of the HTTP providers: a subclass sets `provider`, `values`, `_set_path`, and
    says how its answers map onto the taxonomy (`_raise`) and where the credential goes
    (`_auth`)."""

    provider = "http"
    field = "presence"
    """The JSON body field of the set call."""
    values: dict[Presence, str]
    """The body values for AVAILABLE and UNAVAILABLE."""
    _set_path: str

    def __init__(
        self,
        base_url: str,
        timeout: float,
        *,
        transport: httpx.AsyncBaseTransport | None,
        agent: str,
    ) -> None:
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            transport=transport,
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": agent},
            cookies=no_cookies(),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _auth(self) -> tuple[dict[str, str], dict[str, str]]:
        """(query parameters, headers) that carry the credential."""
        return {}, {}

    def _body(self, body: dict[str, str]) -> dict[str, str]:
        """The JSON body of a POST as sent (Wawp adds its credentials to it)."""
        return body

    def _raise(self, response: httpx.Response, data: bytes, what: str, *, setting: bool) -> None:
        """Map a non-2xx answer (`setting`: to the set call) onto the taxonomy."""
        raise_for_response(response, what)

    async def set_presence(self, presence: Presence) -> int:
        if presence not in self.values:
            raise ValueError(f"cannot set presence {presence}")
        return await self.send(self.field, self.values[presence], f"set presence {presence}")

    async def send(self, field: str, value: str, what: str) -> int:
        """POST `{field: value}` as the set call (the vocabulary probe tries several); the
        HTTP status."""
        return await self._send(field, value, what, within=self._timeout)

    async def _send(self, field: str, value: str, what: str, within: float) -> int:
        response, data = await self._request(
            "POST", self._set_path, what, json=self._body({field: value}), within=within
        )
        self._raise(response, data, what, setting=True)
        return response.status_code

    async def _read(
        self, path: str, what: str, method: str = "GET", within: float | None = None
    ) -> dict[str, Any]:
        """GET (or POST) `path`: its reply as a JSON object, or the taxonomy's error."""
        response, data = await self._read_raw(path, what, method, within)
        self._raise(response, data, what, setting=False)
        return json_reply(data, what)

    async def _read_raw(
        self, path: str, what: str, method: str = "GET", within: float | None = None
    ) -> tuple[httpx.Response, bytes]:
        """A read call's reply, unchecked (a POST carries the body `_body({})`)."""
        body = self._body({}) if method == "POST" else None
        return await self._request(method, path, what, json=body, within=within)

    async def _request(
        self,
        method: str,
        path: str,
        what: str,
        json: dict[str, Any] | None = None,
        within: float | None = None,
    ) -> tuple[httpx.Response, bytes]:
        """The reply (status and headers) and at most MAX_REPLY_BYTES of its body, within
        `within` seconds (default: the gateway's timeout), never decompressed."""
        timeout = self._timeout if within is None else within
        params, headers = self._auth()
        try:
            async with (
                asyncio.timeout(timeout),
                self._client.stream(
                    method, path, params=params, json=json, headers={**IDENTITY, **headers}
                ) as response,
            ):
                return response, await read_body(response, MAX_REPLY_BYTES)
        except (ReplyTooLarge, CompressedReply) as exc:
            raise PermanentError(f"{what}: {exc}") from None
        except (TimeoutError, httpx.HTTPError) as exc:
            raise transport_error(what, exc, timeout) from None


def json_body(data: bytes) -> Any:
    """The reply as JSON, or None when it is not JSON (empty, HTML, garbage, too deep)."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None


def json_reply(data: bytes, what: str) -> dict[str, Any]:
    """A reply that must be a JSON object; a PermanentError otherwise."""
    body = json_body(data)
    if body is None:
        raise PermanentError(f"{what}: reply is not JSON")
    if not isinstance(body, dict):
        raise PermanentError(f"{what}: reply is not a JSON object")
    return body


def normalise_state(body: dict[str, Any], field: str, what: str, known: dict[str, str]) -> str:
    """The session state in `body[field]`, mapped through `known` (the gateway's spelling to
    ours, matched in any case). Never quotes an unknown one: a broken or hostile gateway may
    echo the token."""
    value = body.get(field)
    if not isinstance(value, str):
        raise PermanentError(f"{what}: reply has no string {field!r} field")
    folded = {name.upper(): state for name, state in known.items()}
    state = folded.get(value.upper())
    if state is None:
        raise PermanentError(
            f"{what}: unknown session status ({len(value)} characters, not one of "
            f"{', '.join(sorted(known))})"
        )
    return state


def mentions(data: bytes, *words: str) -> bool:
    """Whether the (bounded) reply mentions any of `words`, case-insensitively: a reply is
    classified by what it says, and never quoted."""
    text = data.decode("utf-8", "replace").lower()
    return any(word in text for word in words)
