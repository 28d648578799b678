"""`presence-controller check-gateway --witness`: one calibration run of the witness.

Write `available` and time until the witness sees it; leave it alone and time until it fades
(the decay); write `available` again, then `unavailable`, and time until the witness sees that.
Print the figures and the settings they suggest. THIS CHANGES THE BOT'S PRESENCE (it ends on
`unavailable`). Evolution has no read: its webhooks are received on the admin address
(`PRESENCE_LISTEN`, `POST /witness/events`) for the length of the run.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from controller.config import Settings
from controller.core.types import Presence
from controller.core.witness import CALIBRATION_SHARE, FLOOR, SETTLE, Blind, Failure, Sight
from controller.gateway.base import Gateway, GatewayError
from controller.gateway.witness import TOKEN_HEADER, WitnessReader, build_witness, receive_event
from controller.redaction import scrub
from controller.runtime.admin import read_event
from controller.runtime.clock import SYSTEM, Clock

SEE_WITHIN = 30.0
"""How long a write may take to be seen before the witness is declared blind."""
DECAY_WITHIN = 300.0
"""How long `available` is watched for its decay."""
CANNOT_SEE = (
    "the witness cannot see the bot's presence at all. Check, in this order: (1) privacy: the "
    'bot\'s "Last seen and online" must let the witness see it ("My contacts" with the '
    'witness saved as a contact, or "Everyone"); (2) no prior chat: WhatsApp shows presence '
    "only to numbers that have chatted with the bot: send it one message from the witness; "
    "(3) a second linked device: the witness number must be a dedicated one, with no phone or "
    "WhatsApp Web of its own active (presence updates go to the active device)"
)
NO_EFFECT = (
    "the gateway accepted `available` but the witness never saw it shown: an account without "
    "a push name (Baileys drops its presence updates: set the bot's profile name), or a privacy "
    "setting that shows last seen but hides online"
)


class Run:
    """One calibration run: the bot's gateway writes, the witness watches."""

    def __init__(self, gateway: Gateway, look: Callable[[], Awaitable[Sight | Blind]],
                 clock: Clock, say: Callable[[str], None], poll: float) -> None:  # fmt: skip
        self.gateway, self.look, self.clock, self.say, self.poll = gateway, look, clock, say, poll
        self.last: Sight | Blind | None = None

    async def write(self, presence: Presence) -> float:
        await self.gateway.set_presence(presence)
        return self.clock.now()

    async def until(self, shown: Presence, within: float) -> float | None:
        """Seconds until the witness sees `shown` (None: not within `within`)."""
        start = self.clock.now()
        while self.clock.now() - start <= within:
            self.last = await self.look()
            if isinstance(self.last, Sight) and self.last.shown is shown:
                return self.clock.now() - start
            await self.clock.sleep(self.poll)
        return None


async def check_witness(
    settings: Settings, clock: Clock = SYSTEM, say: Callable[[str], None] = print
) -> int:
    """The calibration run's exit code: 0 when every figure was measured."""
    from controller.exits import EXIT_FAILED, EXIT_OK
    from controller.gateway.factory import build_gateway

    w = settings.witness
    if not w.enabled:
        say(
            "check-gateway --witness needs a witness: PRESENCE_WITNESS__ENABLED=true and its "
            "settings (docs/witness.md)"
        )
        return EXIT_FAILED
    gateway, reader = build_gateway(settings), build_witness(settings)
    secrets = settings.secrets()
    try:
        async with _looking(settings, reader, clock) as look:
            run = Run(gateway, look, clock, say, min(1.0, w.poll))
            return EXIT_OK if await _calibrate(run, settings) else EXIT_FAILED
    except GatewayError as exc:
        say(f"{scrub(exc.message, secrets)} [{exc.kind}]")
        return EXIT_FAILED
    finally:
        await gateway.aclose()
        await reader.aclose()


async def _calibrate(run: Run, settings: Settings) -> bool:
    say, A, U = run.say, Presence.AVAILABLE, Presence.UNAVAILABLE
    session = await run.gateway.session_status()
    if session != "WORKING":
        say(f"the bot's session is {session}, not WORKING: nothing written")
        return False
    say("calibrating the witness: THIS CHANGES THE BOT'S PRESENCE (it ends on unavailable)")
    await run.write(A)
    seen = await run.until(A, SEE_WITHIN)
    if seen is None:
        await run.write(U)
        blind = isinstance(run.last, Blind) and run.last.reason is not Failure.GATEWAY
        say(CANNOT_SEE if blind or run.last is None else NO_EFFECT)
        if isinstance(run.last, Blind):
            say(f"last witness read: {run.last.message}")
        return False
    say(f"available written: the witness saw it after {seen:.1f}s")
    decay = await run.until(U, DECAY_WITHIN)
    if decay is None:
        say(f"available still shown after {DECAY_WITHIN:g}s: no decay seen on this gateway")
    else:
        say(f"nothing written since: it faded after {seen + decay:.1f}s (the decay)")
    await run.write(A)
    await run.until(A, SEE_WITHIN)
    await run.write(U)
    gone = await run.until(U, SEE_WITHIN)
    if gone is None:
        say(f"unavailable written: the witness still saw available after {SEE_WITHIN:g}s")
        return False
    say(f"unavailable written: the witness saw it after {gone:.1f}s")
    for line in _suggest(settings, seen, None if decay is None else seen + decay, gone):
        say(line)
    return True


def _suggest(settings: Settings, seen: float, decay: float | None, gone: float) -> list[str]:
    w = settings.witness
    lines = ["suggested settings:"]
    if decay is not None:
        period = max(FLOOR, CALIBRATION_SHARE * decay)
        per_day = math.ceil(86_400 / period)
        lines.append(
            f"  PRESENCE_REASSERT_AVAILABLE={period:.0f}s (0.7 x the decay; {per_day:,} writes "
            f"a day while available; now {settings.reassert_available:g}s), or "
            "PRESENCE_WITNESS__CALIBRATE=true to follow the decay as it is measured"
        )
    slowest = max(seen, gone)
    if slowest > SETTLE:
        lines.append(
            f"  PRESENCE_WITNESS__MISMATCH_GRACE={math.ceil(slowest):.0f}s (writes took up to "
            f"{slowest:.1f}s to be seen, longer than the {SETTLE:g}s the witness waits after a "
            "write of ours: it would write again before the last write shows)"
        )
    else:
        lines.append(
            f"  PRESENCE_WITNESS__MISMATCH_GRACE=0 (the default: writes were seen within "
            f"{slowest:.1f}s, under the {SETTLE:g}s the witness waits after a write of ours)"
        )
    reads = 60 / w.poll + 60 / w.resubscribe
    lines.append(f"  the witness costs {reads:.1f} calls a minute at POLL {w.poll:g}s")
    return lines


@asynccontextmanager
async def _looking(
    settings: Settings, reader: WitnessReader, clock: Clock
) -> AsyncIterator[Callable[[], Awaitable[Sight | Blind]]]:
    """A function that returns what the witness sees now: a read, or (Evolution) the last
    webhook received on the admin address, subscribing again every RESUBSCRIBE."""
    w = settings.witness
    state: dict[str, float | Sight | Blind | None] = {"subscribed": None, "last": None}

    async def resubscribe() -> None:
        at = state["subscribed"]
        if not isinstance(at, float) or clock.now() - at >= w.resubscribe:
            await reader.subscribe()
            state["subscribed"] = clock.now()

    async def read() -> Sight | Blind:
        await resubscribe()
        return await reader.read(clock.now())

    async def latest() -> Sight | Blind:
        await resubscribe()
        last = state["last"]
        if isinstance(last, Sight | Blind):
            return last
        return Blind(clock.now(), Failure.HIDDEN, "no presence.update webhook received yet")

    if not reader.pushes:
        yield read
        return
    token = w.webhook_token.get_secret_value() if w.webhook_token is not None else ""

    async def receive(request: web.Request) -> web.Response:
        sent = request.headers.get(TOKEN_HEADER)
        body = await read_event(request)
        chat = w.bot_chat_id or ""
        got = receive_event(token, sent, body, w.instance or "", chat, clock.now())
        if got.sight is not None:
            state["last"] = got.sight
        return web.Response(status=got.status, text=got.why + "\n")

    app = web.Application()
    app.router.add_post("/witness/events", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = settings.listen_host_port
    await web.TCPSite(runner, host, port).start()
    try:
        yield latest
    finally:
        await runner.cleanup()
