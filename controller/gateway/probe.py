"""`check-gateway --probe`: which set-presence vocabulary does this gateway accept?

Wawp's exact request is not published (a `presence` or a `status` field; `available` and
`unavailable`, WAHA's `online` and `offline`, or the mixed `online` and `unavailable` of Wawp's
legacy API). On a WORKING session the probe sends each
candidate's two values, the configured one first, and ends on an unavailable value; the verdict
(pure, below) says which vocabulary the gateway accepted and the settings to use. A gateway that
accepts every candidate does not check the body at all: then nobody can tell from the API which
one takes effect (no gateway reads its own presence back), and the probe says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controller.core.actuation import FailureKind
from controller.gateway.base import Gateway, GatewayError
from controller.runtime.clock import SYSTEM, Clock

FIELDS = ("presence", "status")
VALUE_PAIRS = (("available", "unavailable"), ("online", "offline"), ("online", "unavailable"))
"""Our default, WAHA's, and the mixed pair of Wawp's legacy v1 API (its n8n node)."""
PAUSE = 0.2
"""Seconds between two probe calls: a burst of set calls is not what a gateway expects."""
_REFUSALS = {FailureKind.PERMANENT, FailureKind.SESSION_NOT_READY}
"""Answers that refuse the body (400, 422): the next candidate is tried. Anything else (auth,
rate limit, outage) stops the probe: no vocabulary would fare better."""


@dataclass(frozen=True, slots=True)
class Vocabulary:
    field: str
    available: str
    unavailable: str

    def __str__(self) -> str:
        return f"{self.field}={self.available}/{self.unavailable}"

    def settings(self) -> str:
        """The Wawp settings that select this vocabulary."""
        return (
            f"PRESENCE_WAWP__FIELD={self.field} "
            f"PRESENCE_WAWP__VALUES={self.available},{self.unavailable}"
        )


@dataclass(frozen=True, slots=True)
class Trial:
    """One candidate: None where the gateway accepted the value, else what it answered."""

    vocabulary: Vocabulary
    available: str | None
    unavailable: str | None

    @property
    def accepted(self) -> bool:
        return self.available is None and self.unavailable is None


@dataclass(frozen=True, slots=True)
class Verdict:
    use: Vocabulary | None
    """The vocabulary to configure; None when none, or when the gateway cannot tell."""
    lines: tuple[str, ...]
    definite: bool


def candidates(configured: Vocabulary) -> list[Vocabulary]:
    """The configured vocabulary first, then every known alternative once."""
    known = [Vocabulary(f, on, off) for f in FIELDS for on, off in VALUE_PAIRS]
    return [configured, *(v for v in known if v != configured)]


def verdict(trials: list[Trial], configured: Vocabulary, fixed: bool) -> Verdict:
    """What the trials say. `fixed`: the provider's vocabulary is not configurable (WAHA,
    Evolution): the probe then only confirms that the server speaks it."""
    accepted = [t.vocabulary for t in trials if t.accepted]
    if not accepted:
        return Verdict(None, ("no vocabulary was accepted: see the answers above",), False)
    if len(accepted) == len(trials) and len(trials) > 1:
        return Verdict(
            None,
            (
                "cannot tell: the gateway accepted every vocabulary tried, so it does not check "
                "the body, and no gateway reads its own presence back; keep the current "
                "settings and watch the bot's presence from a phone while switching",
            ),
            False,
        )
    if len(accepted) > 1:
        names = ", ".join(map(str, accepted))
        if configured in accepted:
            return Verdict(
                configured,
                (f"accepted several ({names}); the current settings are among them",),
                True,
            )
        return Verdict(
            None, (f"cannot tell: accepted several ({names}), not the current settings",), False
        )
    use = accepted[0]
    if fixed:
        if use == configured:
            return Verdict(use, (f"the server speaks {use}, as expected: nothing to set",), True)
        return Verdict(
            use,
            (f"the server accepts {use}, not {configured}: is this really this provider?",),
            False,
        )
    if use == configured:
        return Verdict(
            use, (f"the gateway accepts only {use}: the current settings are right",), True
        )
    return Verdict(use, (f"the gateway accepts only {use}", f"use: {use.settings()}"), True)


class ProbeStopped(Exception):
    """A call failed for a reason no other vocabulary would fix (auth, rate limit, outage)."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.message)
        self.error = error


async def probe(
    gateway: Gateway,
    configured: Vocabulary,
    fixed: bool,
    say: Callable[[str], None],
    pause: float = PAUSE,
    clock: Clock = SYSTEM,
) -> Verdict:
    """Try every candidate, print each answer through `say`, end on an unavailable value
    (the accepted one, else the configured one); the verdict."""
    trials: list[Trial] = []
    try:
        for number, vocabulary in enumerate(candidates(configured)):
            answers: list[str | None] = []
            for value in (vocabulary.available, vocabulary.unavailable):
                if number or answers:
                    await clock.sleep(pause)
                answers.append(await _try(gateway, vocabulary.field, value))
            trial = Trial(vocabulary, answers[0], answers[1])
            trials.append(trial)
            mark = " (current settings)" if vocabulary == configured else ""
            shown = " / ".join(answer or "accepted" for answer in answers)
            say(f"  {vocabulary!s:<34} {shown}{mark}")
    except ProbeStopped as stopped:
        say(f"probe stopped: {stopped.error.message} [{stopped.error.kind}]")
        result = Verdict(None, ("no verdict: the probe could not finish",), False)
    else:
        result = verdict(trials, configured, fixed)
    last = result.use or configured
    try:
        await clock.sleep(pause)
        await gateway.send(last.field, last.unavailable, "final unavailable")
        say(f"presence set back to unavailable ({last.field}={last.unavailable})")
    except GatewayError as exc:
        say(f"could not set presence back to unavailable: {exc.message} [{exc.kind}]")
    return result


async def _try(gateway: Gateway, field: str, value: str) -> str | None:
    """None if the gateway accepted `{field: value}`, else its refusal."""
    try:
        await gateway.send(field, value, f"{field}={value}")
    except GatewayError as exc:
        if exc.kind not in _REFUSALS:
            raise ProbeStopped(exc) from None
        return f"refused (HTTP {exc.status_code})" if exc.status_code else "refused"
    return None
