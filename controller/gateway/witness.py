"""The witness session's calls: subscribe to the bot's presence and read what the witness sees.

WAHA `POST /api/{session}/presence/{chatId}/subscribe` and `GET /api/{session}/presence/{chatId}`
(`{"id", "presences": [{"participant", "lastKnownPresence", "lastSeen"}]}`); Wawp the same under
`/v2/presence/{chatId}` with its query credentials; Evolution has no read: its subscription is
`POST /chat/sendPresence/{instance}` (`presenceSubscribe` then a `paused` chat state, invisible),
and what the witness sees comes as `PRESENCE_UPDATE` webhooks (`witness_event`). Replies are
bounded like the bot's own gateway calls; a reply never quoted (it may echo a credential).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from controller.config import Settings
from controller.core.types import Presence
from controller.core.witness import Blind, Failure, Sight
from controller.gateway.base import GatewayError
from controller.gateway.evolution import EvolutionGateway
from controller.gateway.http import HttpGateway, json_body, json_reply
from controller.gateway.waha import WahaGateway
from controller.gateway.wawp import WawpGateway

SHOWN = {
    "online": Presence.AVAILABLE,
    "typing": Presence.AVAILABLE,
    "recording": Presence.AVAILABLE,
    "paused": Presence.AVAILABLE,
    "offline": Presence.UNAVAILABLE,
    "available": Presence.AVAILABLE,
    "composing": Presence.AVAILABLE,
    "unavailable": Presence.UNAVAILABLE,
}
"""`lastKnownPresence` in WAHA's vocabulary and in Baileys' (Evolution), as shown presence:
typing, recording and paused are chat states of a contact that is online."""
HIDDEN = (
    "the witness knows no presence of the bot: the bot's privacy setting \"Last seen and "
    'online" hides it from the witness, the witness never chatted with the bot, or the '
    "subscription lapsed"
)
NO_LAST_SEEN = (
    "the witness sees the bot offline with no last seen (lastSeen: null): the bot's privacy "
    "setting hides last seen and online from the witness, so offline proves nothing"
)


def number(chat_id: str) -> str:
    """The phone number of a chat id (`15551234567@c.us` and `...@s.whatsapp.net` alike)."""
    return chat_id.partition("@")[0].partition(":")[0]


def sight_of(presences: object, bot_chat_id: str, at: float) -> Sight | Blind:
    """What a presence list (WAHA's list, or Baileys' map by participant) says of the bot."""
    entries: list[tuple[object, object]] = []
    if isinstance(presences, list):
        entries = [(p.get("participant"), p) for p in presences if isinstance(p, dict)]
    elif isinstance(presences, dict):
        entries = list(presences.items())
    else:
        return Blind(at, Failure.MALFORMED, "the reply has no presences list")
    bot = number(bot_chat_id)
    mine = [p for who, p in entries if isinstance(who, str) and number(who) == bot]
    if not mine or not isinstance(mine[0], dict):
        return Blind(at, Failure.HIDDEN, HIDDEN)
    entry: Mapping[str, Any] = mine[0]
    value = entry.get("lastKnownPresence")
    shown = SHOWN.get(value) if isinstance(value, str) else None
    if shown is None:
        return Blind(at, Failure.MALFORMED, "the bot's lastKnownPresence is not a known value")
    if shown is Presence.UNAVAILABLE and entry.get("lastSeen") is None:
        return Blind(at, Failure.NO_LAST_SEEN, NO_LAST_SEEN)
    return Sight(at, shown)


def witness_event(body: object, instance: str, bot_chat_id: str, at: float) -> Sight | Blind | None:
    """An Evolution webhook: a sight, a Blind when it says nothing usable, None when it is
    another event or another chat (ignored). ValueError when it comes from another instance."""
    if not isinstance(body, dict):
        return Blind(at, Failure.MALFORMED, "the webhook body is not a JSON object")
    if body.get("instance") != instance:
        raise ValueError("the webhook names another instance")
    event = body.get("event")
    if not isinstance(event, str) or event.lower().replace("_", ".") != "presence.update":
        return None
    data = body.get("data")
    if not isinstance(data, dict):
        return Blind(at, Failure.MALFORMED, "the presence.update event has no data object")
    chat = data.get("id")
    if not isinstance(chat, str) or number(chat) != number(bot_chat_id):
        return None
    return sight_of(data.get("presences"), bot_chat_id, at)


MAX_EVENT_BYTES = 64 * 1024
"""A witness webhook (a presence.update) is a few hundred bytes; more is refused (413)."""
TOKEN_HEADER = "X-Witness-Token"  # noqa: S105 (a header name)


@dataclass(frozen=True, slots=True)
class Received:
    """What a witness webhook comes to: the HTTP answer, and what it saw (if anything)."""

    status: int
    why: str
    sight: Sight | Blind | None = None


def receive_event(
    expected: str, token: str | None, body: bytes | None, instance: str, chat: str, at: float
) -> Received:
    """The checks every witness webhook passes, in this order: its size (`body` None: over
    MAX_EVENT_BYTES), the shared secret (constant time), the instance it names, the event and
    the chat it is about."""
    if body is None:
        return Received(413, f"a body over {MAX_EVENT_BYTES // 1024} KiB")
    if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        return Received(401, f"missing or wrong {TOKEN_HEADER} header")
    try:
        sight = witness_event(json_body(body), instance, chat, at)
    except ValueError:
        return Received(403, "the webhook names another instance")
    if sight is None:
        return Received(202, "ignored: not a presence.update of the bot")
    if isinstance(sight, Blind):
        return Received(400, sight.message, sight)
    return Received(200, "ok", sight)


class WitnessReader(Protocol):
    provider: str
    pushes: bool
    """True: what the witness sees comes by webhook (Evolution); `read` is never called."""

    async def subscribe(self) -> None:
        """Subscribe (again) to the bot's presence; a GatewayError on failure."""

    async def read(self, at: float) -> Sight | Blind:
        """What the witness sees now (`at`: the monotonic time to stamp it with)."""
        ...

    async def aclose(self) -> None: ...


def witness_names(exc: GatewayError) -> str:
    """A gateway error's message, naming the witness's settings rather than the bot's."""
    text = exc.message
    for prefix in ("PRESENCE_WAHA__", "PRESENCE_WAWP__", "PRESENCE_EVOLUTION__"):
        text = text.replace(prefix, "PRESENCE_WITNESS__")
    return f"witness {text}"


class _Reads:
    """What the WAHA and Wawp witnesses share: subscribe by POST, read by GET."""

    pushes = False
    _chat: str
    _bot: str
    _prefix: str

    async def subscribe(self) -> None:
        assert isinstance(self, HttpGateway)
        response, data = await self._read_raw(
            f"{self._prefix}/{self._chat}/subscribe", "witness subscribe", "POST"
        )
        self._raise(response, data, "witness subscribe", setting=False)

    async def read(self, at: float) -> Sight | Blind:
        assert isinstance(self, HttpGateway)
        try:
            reply = await self._read(f"{self._prefix}/{self._chat}", "witness read")
        except GatewayError as exc:
            return Blind(at, Failure.GATEWAY, witness_names(exc))
        return sight_of(reply.get("presences"), self._bot, at)


class WahaWitness(_Reads, WahaGateway):
    def __init__(self, bot_chat_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._bot, self._chat = bot_chat_id, quote(bot_chat_id, safe="@.")
        self._prefix = f"/api/{quote(self.session, safe='')}/presence"


class WawpWitness(_Reads, WawpGateway):
    def __init__(self, bot_chat_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._bot, self._chat = bot_chat_id, quote(bot_chat_id, safe="@.")
        self._prefix = "/v2/presence"


class EvolutionWitness(EvolutionGateway):
    """Evolution has no read: subscribe by a `paused` chat state; sights come by webhook."""

    pushes = True

    def __init__(self, bot_chat_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._bot = bot_chat_id

    async def subscribe(self) -> None:
        what = "witness subscribe"
        body = {"number": number(self._bot), "presence": "paused", "delay": 0}
        response, data = await self._request(
            "POST", f"/chat/sendPresence/{quote(self.instance, safe='')}", what, json=body
        )
        self._raise(response, data, what, setting=False)
        json_reply(data, what)

    async def read(self, at: float) -> Sight | Blind:
        raise NotImplementedError("Evolution's witness receives webhooks")


def build_witness(
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None = None,
    token: Callable[[], str] | None = None,
) -> WitnessReader:
    """The witness session's client, for its provider (default: the bot's)."""
    w = settings.witness
    assert w.bot_chat_id is not None, "an enabled witness has a bot chat id (settings check)"
    provider = w.provider or settings.provider
    gateway = w.gateway(settings.provider)
    common: dict[str, Any] = {
        "transport": transport, "token": token, "agent": "presence-controller (witness)",
    }  # fmt: skip
    if provider == "waha":
        return WahaWitness(w.bot_chat_id, settings=gateway, **common)
    if provider == "evolution":
        return EvolutionWitness(w.bot_chat_id, settings=gateway, **common)
    return WawpWitness(w.bot_chat_id, settings=gateway, **common)
