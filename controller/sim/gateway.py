"""Simulated gateways (Wawp, WAHA, Evolution API): the real paths, authentication, bodies and
error envelopes of each, every call recorded, scripted faults on demand.

One class serves the three providers: what differs is the wire (routes, where the credential
goes, the vocabulary, the answers); what the tests and demos look at is shared (`calls`,
`presence` in our vocabulary, `session_state` in the normalised one, the fault queues).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

ROUTES = {
    "wawp": ("/v2/presence", "/v2/session/info"),
    "waha": ("/api/{name}/presence", "/api/sessions/{name}"),
    "evolution": ("/instance/setPresence/{name}", "/instance/connectionState/{name}"),
}
"""(set call, session read) per provider; `{name}`: the session or instance."""
PROVIDERS = tuple(ROUTES)
_CANONICAL = {
    "available": "available",
    "online": "available",
    "unavailable": "unavailable",
    "offline": "unavailable",
}
"""Each provider's vocabulary, as our Presence values."""
_WAHA_VALUES = {"online", "offline", "typing", "recording", "paused"}
_EVOLUTION_VALUES = {"available", "unavailable", "composing", "recording", "paused"}
_EVOLUTION_STATES = {
    "WORKING": "open",
    "STARTING": "connecting",
    "SCAN_QR_CODE": "connecting",
    "STOPPED": "close",
    "FAILED": "refused",
}
"""The normalised session state as Evolution reports it (it has no QR state of its own)."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted answer: a status, headers, and an optional delay before answering."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: str | None = None
    """The reply body; None: the provider's own error envelope for `status`."""
    reset: bool = False
    """Start a chunked answer, then drop the connection mid-response."""


@dataclass(frozen=True, slots=True)
class GatewayCall:
    """One request the gateway received, and how it answered."""

    at: float
    """time.monotonic() when the request arrived."""
    operation: str
    """'set' or 'session'."""
    status: int
    presence: str | None = None
    """The value sent, in our vocabulary when the gateway understood it (`online` is
    `available`), else as sent."""
    credential: str | None = None
    """The credential presented (query `access_token`, `X-Api-Key` or `apikey` header)."""
    agent: str = ""
    """The caller's User-Agent (in fleet mode it names the replica)."""
    method: str = ""
    path: str = ""
    value: str | None = None
    """The body value exactly as sent."""
    field: str | None = None
    """The body field that carried it."""


@dataclass
class SimGateway:
    """One provider's presence and session calls, with the same authentication."""

    provider: str = "wawp"
    instance_id: str = "sim-instance"
    """Wawp instance ID, WAHA session or Evolution instance name."""
    access_token: str | None = "sim-secret-token"  # noqa: S105 (a simulator's fake credential)
    """The credential the gateway expects; None (WAHA without WAHA_API_KEY): none needed."""
    field_name: str | None = "presence"
    """The body field the set call reads; None (Wawp only): whichever field comes."""
    accepted: frozenset[str] | None = None
    """Wawp only: the values its set call accepts (others: 400); None accepts any string."""
    session_state: str = "WORKING"
    """In the normalised vocabulary (WORKING, STARTING, SCAN_QR_CODE, STOPPED, FAILED)."""
    set_delay: float = 0.0
    set_faults: deque[Fault] = field(default_factory=deque)
    session_faults: deque[Fault] = field(default_factory=deque)
    calls: list[GatewayCall] = field(default_factory=list)
    presence: str | None = None
    """The presence last set successfully, as the gateway's users would see it."""
    on_call: Callable[[GatewayCall], None] | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    """The most requests ever handled at once (the controller promises 1)."""

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(f"unknown provider {self.provider!r}")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._count_in_flight])
        set_path, session_path = ROUTES[self.provider]
        app.router.add_post(set_path, self._set)
        app.router.add_get(session_path, self._session)
        return app

    @web.middleware
    async def _count_in_flight(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1

    def sets(self, status: int | None = 200) -> list[GatewayCall]:
        """The set calls received, those answered `status` only (None: all; 200 also matches
        the 201 that WAHA and Evolution answer: "accepted")."""
        return [
            c
            for c in self.calls
            if c.operation == "set"
            and (status is None or c.status == status or (status == 200 and c.status == 201))
        ]

    def _record(self, call: GatewayCall) -> None:
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)

    # The wire, per provider.

    def error(self, status: int, message: str) -> web.Response:
        """An error reply in the provider's own envelope."""
        if self.provider == "evolution":
            reason = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(
                status, "Internal Server Error" if status >= 500 else "Error"
            )
            body: Any = {"status": status, "error": reason, "response": {"message": [message]}}
        elif self.provider == "waha":
            body = {"statusCode": status, "message": message}
        else:
            body = {"error": message}
        return web.json_response(body, status=status)

    def _credential(self, request: web.Request) -> str | None:
        if self.provider == "wawp":
            return request.query.get("access_token")
        header = "X-Api-Key" if self.provider == "waha" else "apikey"
        return request.headers.get(header)

    def _auth(self, request: web.Request) -> web.Response | None:
        if self.access_token is not None and self._credential(request) != self.access_token:
            return self.error(401, "Unauthorized")
        name = (
            request.query.get("instance_id")
            if self.provider == "wawp"
            else request.match_info.get("name")
        )
        if name != self.instance_id:
            if self.provider == "waha":
                return self.error(
                    404,
                    f"We didn't find a session with name '{name}'. Please start it first by "
                    f"using POST /api/sessions/{name}/start request",
                )
            if self.provider == "evolution":
                return self.error(404, f'The "{name}" instance does not exist')
            return self.error(404, "instance not found")
        return None

    async def _fault(self, faults: deque[Fault], request: web.Request) -> web.StreamResponse | None:
        if not faults:
            return None
        fault = faults.popleft()
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.reset:
            partial = web.StreamResponse(status=fault.status)
            partial.enable_chunked_encoding()
            await partial.prepare(request)
            await partial.write(b'{"partial": ')
            assert request.transport is not None
            request.transport.close()
            return partial
        if fault.body is None:
            reply = self.error(fault.status, "simulated fault")
            reply.headers.update(fault.headers)
            return reply
        return web.Response(
            status=fault.status,
            text=fault.body,
            headers=fault.headers,
            content_type="application/json",
        )

    def _session_reply(self) -> web.Response:
        state = self.session_state
        if self.provider == "evolution":
            state = _EVOLUTION_STATES.get(state, state)
            instance = {"instanceName": self.instance_id, "state": state}
            return web.json_response({"instance": instance})
        body: dict[str, Any] = {"name": self.instance_id, "status": state}
        if self.provider == "waha":
            me = {"id": "15550000000@c.us", "pushName": "Sim Bot"} if state == "WORKING" else None
            body.update(config={"webhooks": []}, me=me, engine={"engine": "WEBJS"})
        return web.json_response(body)

    def _set_reply(self, value: object, body: object) -> tuple[web.Response, str | None]:
        """The answer to a well-authenticated set call, and the presence it shows (if any)."""
        if self.provider == "waha":
            if value not in _WAHA_VALUES:
                allowed = ", ".join(sorted(_WAHA_VALUES))
                return self.error(400, f"presence must be one of: {allowed}"), None
            if isinstance(body, dict) and "chatId" in body and value in {"online", "offline"}:
                text = f"'{value}' presence works on the global scope and doesn't require 'chatId'"
                return self.error(400, text), None
            if self.session_state != "WORKING":
                detail = {
                    "error": "Session status is not as expected. Try again later or restart "
                    "the session",
                    "session": self.instance_id,
                    "status": self.session_state,
                    "expected": ["WORKING"],
                }
                return web.json_response(detail, status=422), None
            return web.Response(status=201), _CANONICAL.get(str(value))
        if self.provider == "evolution":
            if value not in _EVOLUTION_VALUES:
                allowed = ", ".join(sorted(_EVOLUTION_VALUES))
                return self.error(400, f"presence must be one of: {allowed}"), None
            if self.session_state != "WORKING":
                return self.error(400, "Error: Connection Closed"), None
            return web.json_response({"presence": value}, status=201), str(value)
        if not isinstance(value, str):
            return self.error(400, f"missing {self.field_name or 'presence'}"), None
        if self.accepted is not None and value not in self.accepted:
            return self.error(400, f"invalid {self.field_name or 'presence'} value"), None
        if self.session_state != "WORKING":
            return self.error(422, "session not ready"), None
        reply = {"success": True, self.field_name or "presence": value}
        return web.json_response(reply), _CANONICAL.get(value, value)

    # Handlers.

    async def _session(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        response = self._auth(request) or await self._fault(self.session_faults, request)
        if response is None:
            response = self._session_reply()
        self._record(
            GatewayCall(
                at,
                "session",
                response.status,
                credential=self._credential(request),
                agent=request.headers.get("User-Agent", ""),
                method=request.method,
                path=request.path,
            )
        )
        return response

    async def _set(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        body: object = None
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        value = None
        if isinstance(body, dict):
            field_name = self.field_name or next(iter(body), "")
            value = body.get(field_name)
        if self.set_delay:
            await asyncio.sleep(self.set_delay)
        response = self._auth(request) or await self._fault(self.set_faults, request)
        shown = None
        if response is None:
            response, shown = self._set_reply(value, body)
            if shown is not None:
                self.presence = shown
        sent = value if isinstance(value, str) else None
        self._record(
            GatewayCall(
                at,
                "set",
                response.status,
                _CANONICAL.get(sent, sent) if sent is not None else None,
                self._credential(request),
                request.headers.get("User-Agent", ""),
                request.method,
                request.path,
                sent,
                next(iter(body)) if isinstance(body, dict) and len(body) == 1 else None,
            )
        )
        return response
