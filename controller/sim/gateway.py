"""A simulated Wawp gateway: records every call and answers with scripted faults on demand."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted answer: a status, headers, and an optional delay before answering."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: str = '{"error": "simulated fault"}'
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
    query_token: str | None = None
    agent: str = ""
    """The caller's User-Agent (in fleet mode it names the replica)."""


@dataclass
class SimGateway:
    """Wawp's `/v2/presence` and `/v2/session/info`, with the same authentication."""

    instance_id: str = "sim-instance"
    access_token: str = "sim-secret-token"  # noqa: S105 (a simulator's fake credential)
    field_name: str = "presence"
    session_state: str = "WORKING"
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

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._count_in_flight])
        app.router.add_post("/v2/presence", self._set)
        app.router.add_get("/v2/session/info", self._session)
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
        """The set calls received, those answered `status` only (None: all)."""
        return [
            c for c in self.calls if c.operation == "set" and (status is None or c.status == status)
        ]

    def _record(self, call: GatewayCall) -> None:
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.query.get("access_token") != self.access_token:
            return web.json_response({"error": "invalid access token"}, status=401)
        if request.query.get("instance_id") != self.instance_id:
            return web.json_response({"error": "instance not found"}, status=404)
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
        return web.Response(
            status=fault.status,
            text=fault.body,
            headers=fault.headers,
            content_type="application/json",
        )

    async def _session(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        response = self._auth(request) or await self._fault(self.session_faults, request)
        if response is None:
            response = web.json_response(
                {"status": self.session_state, "instance_id": self.instance_id}
            )
        self._record(
            GatewayCall(
                at,
                "session",
                response.status,
                None,
                request.query.get("access_token"),
                request.headers.get("User-Agent", ""),
            )
        )
        return response

    async def _set(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        try:
            body = await request.json()
            presence = body.get(self.field_name) if isinstance(body, dict) else None
        except json.JSONDecodeError:
            presence = None
        if self.set_delay:
            await asyncio.sleep(self.set_delay)
        response = self._auth(request) or await self._fault(self.set_faults, request)
        if response is None:
            if not isinstance(presence, str):
                response = web.json_response({"error": f"missing {self.field_name}"}, status=400)
            elif self.session_state != "WORKING":
                response = web.json_response({"error": "session not ready"}, status=422)
            else:
                self.presence = presence
                response = web.json_response({"success": True, self.field_name: presence})
        token = request.query.get("access_token")
        self._record(
            GatewayCall(
                at,
                "set",
                response.status,
                presence if isinstance(presence, str) else None,
                token,
                request.headers.get("User-Agent", ""),
            )
        )
        return response
