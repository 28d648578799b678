"""The demos' scene runner, shared by `demo` and `demo --fleet`: each scene changes the world,
then either waits until the expected presence shows (and the stage says it has settled), or
holds for a while and checks nothing else was shown meanwhile; one check line per scene."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TextIO, TypeVar

from controller.core.types import Presence
from controller.runtime.reporter import Transition
from controller.sim.gateway_calls import GatewayCall
from controller.sim.harness import wait_until

W = TypeVar("W")


@dataclass(frozen=True)
class Scene(Generic[W]):
    title: str
    change: Callable[[W], None]
    expect: Presence
    hold: float = 0.0
    """> 0: `expect` must show for this long (seconds at speed 1), and nothing else meanwhile."""
    ready: Callable[[W], bool] = lambda world: True
    """Also wait for this before the scene counts as done (the next one builds on it)."""


class Stage(Protocol):
    """What the runner asks of a demo's world."""

    def showing(self, expect: Presence) -> bool:
        """`expect` shows, and the controller behind it has settled on it."""
        ...

    def mark(self) -> int:
        """A point to look back to (`strayed`)."""
        ...

    def strayed(self, since: int, expect: Presence) -> str | None:
        """What other than `expect` was shown (or decided) since `mark()`, in words; None."""
        ...

    def shown(self) -> str:
        """What shows now, in words (for a failed check)."""
        ...


class Timeline:
    """Prints one line per event, with the seconds since the demo started."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._loop = asyncio.get_running_loop()
        self.start = self._loop.time()
        self.last_set: str | None = None

    def line(self, kind: str, presence: str, text: str, at: float | None = None) -> None:
        elapsed = (at if at is not None else self._loop.time()) - self.start
        print(f"{elapsed:7.2f}s  {kind:<9} {presence:<12} {text}", file=self.out, flush=True)

    def gateway_call(self, call: GatewayCall) -> None:
        request = f"{call.method:<4} {call.path}"
        if call.operation == "session":
            self.line("gateway", "", f"{request} -> {call.status}", call.at)
            return
        presence = call.presence or "?"
        note = f" ({call.field}: {call.value})" if call.value not in (None, presence) else ""
        if call.status in (200, 201):
            note += " (re-assert)" if presence == self.last_set else ""
            self.last_set = presence
        self.line("gateway", presence, f"{request} -> {call.status}{note}", call.at)

    def transition(self, t: Transition) -> None:
        self.line("decision", t.to.value, t.reason)


async def play(
    scenes: tuple[Scene[W], ...],
    world: W,
    stage: Stage,
    timeline: Timeline,
    speed: float,
    total: int,
    what: str = "contacts see",
) -> int:
    """Play `scenes` in order; the number that did not behave as stated."""
    failures = 0
    for number, scene in enumerate(scenes, 1):
        timeline.line("scenario", "", f"{number}/{total} {scene.title}")
        failures += not await _play(scene, world, stage, timeline, speed, what)
    return failures


async def _play(
    scene: Scene[W], world: W, stage: Stage, timeline: Timeline, speed: float, what: str
) -> bool:
    mark = stage.mark()
    scene.change(world)
    expected = scene.expect.value

    def done() -> bool:
        return stage.showing(scene.expect) and scene.ready(world)

    if scene.hold:
        await wait_until(lambda: False, scene.hold / speed)
        stray = stage.strayed(mark, scene.expect)
        ok = stray is None and stage.showing(scene.expect)
        await wait_until(done, 10.0 / speed + 3.0)
        verdict = (
            f"{what} {expected} for {scene.hold / speed:g}s, never anything else (no flip)"
            if ok
            else f"FLIPPED: {stray or stage.shown()}"
        )
    else:
        ok = await wait_until(done, 15.0 / speed + 3.0)
        verdict = f"{what} {expected}" if ok else f"{what} {stage.shown()}, expected {expected}"
    timeline.line("check", "", f"{'ok' if ok else 'FAILED'}: {verdict}")
    return ok
