"""The witness session of a simulated gateway: a second session that sees the bot's presence as
a contact does, from the gateway's WhatsApp model (`sim/whatsapp.py`).

Never kinder than the real thing: a subscription lasts `lifetime` seconds (WhatsApp's last about
20-60 s) and a read does not renew it; an unsubscribed read answers what was known when the
subscription lapsed (stale), or nothing at all before the first; a bot whose privacy hides it
(`visible=False`) is never in the list; offline comes with a `lastSeen` (unix seconds) only
while visible. Evolution has no read: while subscribed, every change is POSTed as a
`presence.update` webhook to `webhook` with the `X-Witness-Token` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from controller.core.types import Presence
from controller.sim.gateway_calls import GatewayCall, read_json
from controller.sim.whatsapp import WhatsApp


class Host(Protocol):
    """What the witness session asks of the simulated gateway it lives on."""

    @property
    def provider(self) -> str: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def whatsapp(self) -> WhatsApp: ...

    def error(self, status: int, message: str) -> web.Response: ...


BOT_CHAT_ID = "15550000000@c.us"
"""The simulated bot's chat id (its session's `me.id`)."""
PUSH_TICK = 0.25
"""Evolution: how often the model is looked at for a change to post (a webhook's delay)."""
_WORDS = {
    "waha": {Presence.AVAILABLE: "online", Presence.UNAVAILABLE: "offline"},
    "evolution": {Presence.AVAILABLE: "available", Presence.UNAVAILABLE: "unavailable"},
}


@dataclass
class SimWitness:
    """The witness session on `gateway`: routes, subscription and webhooks."""

    gateway: Host
    name: str = "witness"
    """Its WAHA session, Wawp instance ID or Evolution instance."""
    token: str = "sim-witness-token"  # noqa: S105 (a simulator's fake credential)
    bot_chat_id: str = BOT_CHAT_ID
    visible: bool = True
    """False: the bot's privacy hides its presence from the witness."""
    lifetime: float = 50.0
    webhook: str | None = None
    """Evolution: where its webhooks go (the controller's /witness/events)."""
    webhook_token: str = "sim-witness-webhook-secret"  # noqa: S105 (a fake)
    subscribed_until: float | None = None
    _stale: list[dict[str, Any]] | None = None
    calls: list[GatewayCall] = field(default_factory=list)
    pushed: list[dict[str, Any]] = field(default_factory=list)
    _pusher: asyncio.Task[None] | None = None
    _fresh: bool = False
    """A subscription was just made: WhatsApp answers it with the current presence."""

    def routes(self, app: web.Application) -> None:
        provider = self.gateway.provider
        if provider == "waha":
            base = "/api/{name}/presence/{chat}"
        elif provider == "wawp":
            base = "/v2/presence/{chat}"
        else:
            app.router.add_post("/chat/sendPresence/{name}", self._subscribe)
            app.on_cleanup.append(self._stop)
            return
        app.router.add_post(base + "/subscribe", self._subscribe)
        app.router.add_get(base, self._read)

    def subscribed(self) -> bool:
        until = self.subscribed_until
        return until is not None and self.gateway.clock() < until

    def presences(self) -> list[dict[str, Any]]:
        """What the witness's gateway knows of the bot now."""
        if not self.subscribed():
            return self._stale or []
        if not self.visible:
            return []
        model = self.gateway.whatsapp
        shown = model.shown()
        words = _WORDS["evolution" if self.gateway.provider == "evolution" else "waha"]
        entry: dict[str, Any] = {"participant": self.bot_chat_id, "lastKnownPresence": words[shown]}
        if shown is Presence.UNAVAILABLE:
            gone = next((t for t, p in reversed(model.timeline()) if p is shown), model.start)
            entry["lastSeen"] = int(time.time() - (self.gateway.clock() - gone))
        else:
            entry["lastSeen"] = None
        self._stale = [entry]
        return [entry]

    def _refused(self, request: web.Request, body: object) -> web.Response | None:
        gw = self.gateway
        if gw.provider == "wawp":
            query = request.query
            sent = body if isinstance(body, dict) else {}
            name = query.get("instance_id") or sent.get("instance_id")
            key = query.get("access_token") or sent.get("access_token")
        else:
            name = request.match_info.get("name")
            header = "apikey" if gw.provider == "evolution" else "X-Api-Key"
            key = request.headers.get(header)
        if name != self.name:
            return gw.error(404, "session not found")
        if key != self.token:
            return gw.error(401, "Unauthorized")
        chat = request.match_info.get("chat")
        if gw.provider == "evolution":
            chat = sent_number = body.get("number") if isinstance(body, dict) else None
            if not isinstance(sent_number, str) or not sent_number.isdigit():
                return gw.error(400, "number is required")
            chat = f"{sent_number}@s.whatsapp.net"
        bot = self.bot_chat_id.partition("@")[0]
        if not isinstance(chat, str) or chat.partition("@")[0] != bot:
            return gw.error(400, "unknown chat")
        return None

    def _record(self, request: web.Request, operation: str, status: int) -> None:
        at = self.gateway.clock()
        call = GatewayCall(at, operation, status, method=request.method, path=request.path)
        self.calls.append(call)

    async def _subscribe(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        refused = self._refused(request, body)
        if refused is not None:
            self._record(request, "subscribe", refused.status)
            return refused
        self.presences()  # what was known as the subscription is renewed
        self.subscribed_until = self.gateway.clock() + self.lifetime
        self._fresh = True
        self._record(request, "subscribe", 201)
        if self.gateway.provider == "evolution":
            if self._pusher is None or self._pusher.done():
                self._pusher = asyncio.get_running_loop().create_task(self._push())
            return web.json_response({"message": "Presence sent"}, status=201)
        return web.json_response({"success": True}, status=201)

    async def _read(self, request: web.Request) -> web.Response:
        refused = self._refused(request, None)
        if refused is not None:
            self._record(request, "read", refused.status)
            return refused
        self._record(request, "read", 200)
        return web.json_response({"id": self.bot_chat_id, "presences": self.presences()})

    async def _push(self) -> None:
        """Evolution: POST each change of what the witness sees while subscribed."""
        last: object = None
        async with aiohttp.ClientSession() as session:
            while True:
                await asyncio.sleep(PUSH_TICK)
                if not self.subscribed() or self.webhook is None:
                    continue
                now = self.presences()
                if not now or (now == last and not self._fresh):
                    continue  # nothing known of the bot: WhatsApp sends nothing
                last, self._fresh = now, False
                jid = self.bot_chat_id.replace("@c.us", "@s.whatsapp.net")
                event = {
                    "event": "presence.update",
                    "instance": self.name,
                    "data": {"id": jid, "presences": {e["participant"]: e for e in now}},
                    "date_time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                    "sender": jid,
                }
                self.pushed.append(event)
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.post(
                        self.webhook,
                        json=event,
                        headers={"X-Witness-Token": self.webhook_token},
                        timeout=aiohttp.ClientTimeout(total=2),
                    ) as reply:
                        await reply.read()

    async def _stop(self, app: web.Application) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
