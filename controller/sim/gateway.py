"""Simulated gateways (Wawp, WAHA, Evolution API): the real paths, authentication, bodies and
error envelopes of each, every call recorded, scripted faults on demand.

One class serves the three providers: what differs is the wire (routes, where the credential
goes, the vocabulary, the answers); what the tests and demos look at is shared (`calls`,
`presence` (the last write accepted) in our vocabulary, `session_state` in the normalised one,
the fault queues) and `whatsapp`, the model of what contacts are shown (`sim/whatsapp.py`):
an accepted write is not shown for ever, and on some profiles not at all.

Never kinder than the real thing (docs/operations.md, "Gateways", says what each answers):
WAHA holds a set call on a session that is not WORKING up to 15 s before its 422 and requires
its key; Evolution looks the instance up before the key and refuses presence on non-Baileys
integrations; Wawp reads one field and one vocabulary, and answers 403 for a plan limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from controller.core.types import Presence
from controller.sim.gateway_calls import Fault, GatewayCall, read_json, value_field
from controller.sim.whatsapp import DEFAULT_PROFILE, WhatsApp
from controller.sim.witness import SimWitness

__all__ = ["PROVIDERS", "ROUTES", "Fault", "GatewayCall", "SimGateway"]

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
WAHA_HOLD = 15.0
"""WAHA waits up to 5 s for a set call's session to run, then up to 10 s for WORKING."""
BAILEYS = "WHATSAPP-BAILEYS"
_UNSUPPORTED = {
    "WHATSAPP-BUSINESS": "Method not available on WhatsApp Business API",
    "EVOLUTION": "Method not available on Evolution Channel",
}
"""Evolution's integrations without presence, and what their setPresence answers (400)."""
_EVOLUTION_STATES = {
    "WORKING": "open",
    "STARTING": "connecting",
    "SCAN_QR_CODE": "connecting",
    "STOPPED": "close",
    "FAILED": "refused",
}
"""The normalised session state as Evolution reports it (it has no QR state of its own)."""


@dataclass
class SimGateway:
    """One provider's presence and session calls, with the same authentication."""

    provider: str = "wawp"
    instance_id: str = "sim-instance"
    """Wawp instance ID, WAHA session or Evolution instance name."""
    access_token: str | None = "sim-secret-token"  # noqa: S105 (a simulator's fake credential)
    """The credential the gateway expects; None: none needed (WAHA only with
    WAHA_NO_API_KEY=True: without a key, current WAHA generates a random one)."""
    field_name: str | None = "presence"
    """Wawp: the body field the set call reads; None: whichever field comes (a test's
    deliberately careless gateway)."""
    accepted: frozenset[str] | None = frozenset({"available", "unavailable"})
    """Wawp: the values its set call accepts (others: 400); None: any string (careless)."""
    credential_in: frozenset[str] = frozenset({"query"})
    """Wawp: where the credentials are read: `query`, `body` (of a POST), or both."""
    session_methods: frozenset[str] = frozenset({"GET"})
    """Wawp: the methods its session call answers (others: 405)."""
    quota_exceeded: bool = False
    """Wawp: every call is refused 403 "Quota or Limit Reached" (the plan's limit)."""
    hold: float = WAHA_HOLD
    """WAHA: how long a set call on a session that is not WORKING waits before its 422."""
    core: bool = False
    """WAHA Core: a session not called `default` is refused (422)."""
    integration: str = BAILEYS
    """Evolution: the instance's integration; only Baileys has presence."""
    loaded: bool = True
    """Evolution: False: known to the database but not loaded (its state has no `state`)."""
    session_state: str = "WORKING"
    """In the normalised vocabulary (WORKING, STARTING, SCAN_QR_CODE, STOPPED, FAILED); a
    reconnect of the WhatsApp model reads STARTING while it lasts."""
    profile: str = DEFAULT_PROFILE
    """The WhatsApp model's profile (sim/whatsapp.py): what an accepted write shows."""
    clock: Callable[[], float] = time.monotonic
    whatsapp: WhatsApp = field(init=False)
    set_delay: float = 0.0
    set_faults: deque[Fault] = field(default_factory=deque)
    session_faults: deque[Fault] = field(default_factory=deque)
    calls: list[GatewayCall] = field(default_factory=list)
    presence: str | None = None
    """The presence last set successfully (applied, in our vocabulary): what contacts see is
    `shown()`."""
    on_call: Callable[[GatewayCall], None] | None = None
    witness: SimWitness | None = None
    """A witness session on the same gateway (sim/witness.py), when set."""
    in_flight: int = 0
    max_in_flight: int = 0
    """The most requests ever handled at once (the controller promises 1)."""

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(f"unknown provider {self.provider!r}")
        self.whatsapp = WhatsApp(self.profile, clock=self.clock)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._count_in_flight])
        set_path, session_path = ROUTES[self.provider]
        app.router.add_post(set_path, self._set)
        app.router.add_route("*", session_path, self._session)
        if self.witness is not None:
            self.witness.routes(app)
        return app

    def state(self) -> str:
        """The session state the gateway reports now (a model's reconnect reads STARTING)."""
        if self.provider == "evolution" and self.integration != BAILEYS:
            return "WORKING"  # the Cloud API and the channel read `open` for ever
        if self.session_state != "WORKING":
            return self.session_state
        return self.whatsapp.session()

    def shown(self, at: float | None = None) -> Presence:
        """What a contact of the bot sees at `at` (default: now), per the WhatsApp model."""
        return self.whatsapp.shown(at)

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

    def _wawp_credential(self, request: web.Request, body: object, key: str) -> str | None:
        """Wawp: `key` from the query or the POST body, where `credential_in` allows."""
        value = request.query.get(key) if "query" in self.credential_in else None
        if value is None and "body" in self.credential_in and isinstance(body, dict):
            sent = body.get(key)
            value = sent if isinstance(sent, str) else None
        return value

    def _credential(self, request: web.Request, body: object = None) -> str | None:
        if self.provider == "wawp":
            return self._wawp_credential(request, body, "access_token")
        if self.provider == "waha":
            return request.headers.get("X-Api-Key") or request.query.get("x-api-key")
        return request.headers.get("apikey")

    def _auth(self, request: web.Request, body: object = None) -> web.Response | None:
        name = (
            self._wawp_credential(request, body, "instance_id")
            if self.provider == "wawp"
            else request.match_info.get("name")
        )
        if self.provider == "evolution" and name != self.instance_id:
            # Evolution looks the instance up before it checks the key.
            return self.error(404, f'The "{name}" instance does not exist')
        if self.access_token is not None and self._credential(request, body) != self.access_token:
            return self.error(401, "Unauthorized")
        if self.provider == "wawp" and self.quota_exceeded:
            return self.error(403, "Forbidden - Quota or Limit Reached")
        if name != self.instance_id:
            if self.provider == "waha" and request.method == "POST":
                # Current WAHA on a set call for a session it does not know.
                unknown = {"error": f'Session "{name}" does not exist', "session": name}
                return web.json_response(unknown, status=422)
            if self.provider == "waha":
                return self.error(
                    404,
                    f"We didn't find a session with name '{name}'. Please start it first by "
                    f"using POST /api/sessions/{name}/start request",
                )
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
        state = self.state()
        if self.provider == "evolution":
            instance = {"instanceName": self.instance_id}
            if self.loaded:
                instance["state"] = _EVOLUTION_STATES.get(state, state)
            return web.json_response({"instance": instance})
        body: dict[str, Any] = {"name": self.instance_id, "status": state}
        if self.provider == "waha":
            me = {"id": "15550000000@c.us", "pushName": "Sim Bot"} if state == "WORKING" else None
            body.update(config={"webhooks": []}, me=me, engine={"engine": "WEBJS"})
        return web.json_response(body)

    async def _waha_hold(self) -> None:
        """WAHA waits for a session that is not WORKING before it answers (up to `hold`)."""
        # The hold is the server's own wall time (the model's clock may be virtual and still).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.hold
        # Polled, like WAHA itself (it re-reads the session's status every second or so).
        while self.state() != "WORKING" and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))

    def _set_reply(self, value: object, body: object) -> tuple[web.Response, str | None]:
        """The answer to a well-authenticated set call, and the presence it shows (if any)."""
        if self.provider == "waha":
            if value not in _WAHA_VALUES:
                allowed = ", ".join(sorted(_WAHA_VALUES))
                return self.error(400, f"presence must be one of: {allowed}"), None
            if isinstance(body, dict) and "chatId" in body and value in {"online", "offline"}:
                text = f"'{value}' presence works on the global scope and doesn't require 'chatId'"
                return self.error(400, text), None
            if self.state() != "WORKING":
                detail = {
                    "error": "Session status is not as expected. Try again later or restart "
                    "the session",
                    "session": self.instance_id,
                    "status": self.state(),
                    "expected": ["WORKING"],
                }
                return web.json_response(detail, status=422), None
            return web.Response(status=201), _CANONICAL.get(str(value))
        if self.provider == "evolution":
            if value not in _EVOLUTION_VALUES:
                allowed = ", ".join(sorted(_EVOLUTION_VALUES))
                return self.error(400, f"presence must be one of: {allowed}"), None
            if self.integration != BAILEYS:
                refusal = _UNSUPPORTED.get(self.integration, "Method not available")
                return self.error(400, refusal), None
            if self.state() != "WORKING":
                return self.error(400, "Error: Connection Closed"), None
            return web.json_response({"presence": value}, status=201), str(value)
        if not isinstance(value, str):
            return self.error(400, f"missing {self.field_name or 'presence'}"), None
        if self.accepted is not None and value not in self.accepted:
            return self.error(400, f"invalid {self.field_name or 'presence'} value"), None
        if self.state() != "WORKING":
            return self.error(422, "session not ready"), None
        reply = {"success": True, self.field_name or "presence": value}
        return web.json_response(reply), _CANONICAL.get(value, value)

    # Handlers.

    async def _session(self, request: web.Request) -> web.StreamResponse:
        at = self.clock()
        body = await read_json(request) if request.method == "POST" else None
        response: web.StreamResponse | None = None
        allowed = self.session_methods if self.provider == "wawp" else frozenset({"GET"})
        if request.method not in allowed:
            response = web.json_response(
                {"error": "Method Not Allowed"},
                status=405,
                headers={"Allow": ", ".join(sorted(allowed))},
            )
        response = (
            response or self._auth(request, body) or await self._fault(self.session_faults, request)
        )
        if response is None:
            response = self._session_reply()
        self._record(
            GatewayCall(
                at,
                "session",
                response.status,
                credential=self._credential(request, body),
                agent=request.headers.get("User-Agent", ""),
                method=request.method,
                path=request.path,
            )
        )
        return response

    async def _set(self, request: web.Request) -> web.StreamResponse:
        at = self.clock()
        body = await read_json(request)
        sent_field = value_field(body, self.provider)
        value = None
        if isinstance(body, dict):
            value = body.get(self.field_name or sent_field or "")
        if self.set_delay:
            await asyncio.sleep(self.set_delay)
        response = self._auth(request, body) or await self._fault(self.set_faults, request)
        shown = None
        if response is None:
            if self.provider == "waha" and self._waha_core_allows():
                await self._waha_hold()
            response = self._waha_refusal()
            if response is None:
                response, shown = self._set_reply(value, body)
            if shown is not None:
                self.presence = shown
                if shown in (Presence.AVAILABLE, Presence.UNAVAILABLE):
                    self.whatsapp.write(Presence(shown))
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
                sent_field,
            )
        )
        return response

    def _waha_core_allows(self) -> bool:
        """WAHA Core runs one session, called `default`; WAHA Plus any."""
        return not (self.core and self.instance_id != "default")

    def _waha_refusal(self) -> web.Response | None:
        """WAHA Core with another session name: refused before anything else is looked at."""
        if self.provider != "waha" or self._waha_core_allows():
            return None
        return self.error(422, "WAHA Core support only 'default' session. Use WAHA Plus")
