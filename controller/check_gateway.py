"""`presence-controller check-gateway`: the preflight. Credentials and session state; with
`--set`, one presence call; with `--probe`, which set-presence vocabulary the gateway accepts.
In fleet mode a write is refused on a follower (the leader would overwrite it) unless forced."""

from __future__ import annotations

import sys

from controller.config import Settings
from controller.core.types import Presence
from controller.gateway.base import Gateway, GatewayError
from controller.redaction import scrub
from controller.runtime.clock import SYSTEM


async def check_gateway(
    settings: Settings,
    set_to: str | None,
    probe: bool = False,
    *,
    force: bool = False,
    witness: bool = False,
) -> int:
    """The command's exit code: 0 when the session is WORKING (and any write, probe or witness
    calibration done)."""
    from controller.exits import EXIT_FAILED

    if (set_to or probe or witness) and settings.kube.enabled and not force:
        refusal = await _follower_refusal(settings)
        if refusal is not None:
            print(refusal, file=sys.stderr)
            return EXIT_FAILED
    if witness:
        from controller.witness_check import check_witness

        return await check_witness(settings)
    return await _check_gateway(settings, set_to, probe)


async def _follower_refusal(settings: Settings) -> str | None:
    """Fleet mode: why this replica must not write the presence (another leads, or nobody can
    tell who does); None on the leader or when nobody leads."""
    from controller.kube.client import KubeError
    from controller.kube.who_leads import who_leads

    try:
        fleet = await who_leads(settings.kube, SYSTEM.wall().timestamp())
    except KubeError as exc:
        return (
            f"fleet mode: cannot tell which replica leads ({exc}); a write here may be "
            "overwritten by the leader at once: pass --force to write anyway"
        )
    if not fleet.follower:
        return None
    return (
        f"fleet mode: {fleet.me} is a follower; {fleet.leader} leads lease {fleet.lease} and "
        "would overwrite this write with its own decision. Run it on the leader "
        f"(kubectl exec {fleet.leader} -c presence-controller -- presence-controller "
        "check-gateway ...), or pass --force"
    )


SHOWN_NOTE = (
    "note: the gateway accepted it; what contacts see is another matter: `available` fades "
    "after about 10 s unless written again, and while the bot shows `available` the phone "
    'paired with its number gets no push notifications (README, "What contacts see")'
)
EVOLUTION_NOTE = (
    "note: only Baileys instances (WHATSAPP-BAILEYS) can set presence; the WhatsApp Business "
    "API and Evolution-channel integrations read `open` too but refuse it: "
    "`check-gateway --set unavailable` tells"
)


async def _check_gateway(settings: Settings, set_to: str | None, probe: bool = False) -> int:
    from controller.exits import EXIT_FAILED, EXIT_OK
    from controller.gateway.factory import build_gateway

    gateway = build_gateway(settings)
    secrets = settings.secrets()
    try:
        session = await gateway.session_status()
        print(f"{gateway.provider}: credentials accepted; session is {session}")
        if session != "WORKING":
            print("presence cannot be set until the session is WORKING (scan the QR code?)")
            if set_to is not None or probe:
                print(f"{gateway.provider}: presence not set: no call was made")
            return EXIT_FAILED
        if probe:
            return await _probe(settings, gateway, secrets)
        if set_to is not None:
            await gateway.set_presence(Presence(set_to))
            print(f"{gateway.provider}: presence set to {set_to}")
            print(SHOWN_NOTE)
        elif gateway.provider == "evolution":
            print(EVOLUTION_NOTE)
    except GatewayError as exc:
        print(f"{gateway.provider}: {scrub(exc.message, secrets)} [{exc.kind}]", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await gateway.aclose()
    return EXIT_OK if session == "WORKING" else EXIT_FAILED


async def _probe(settings: Settings, gateway: Gateway, secrets: list[str]) -> int:
    """`check-gateway --probe` on a WORKING session: 0 when the verdict is definite."""
    from controller.exits import EXIT_FAILED, EXIT_OK
    from controller.gateway.probe import Vocabulary, probe

    values = gateway.values
    configured = Vocabulary(gateway.field, values[Presence.AVAILABLE], values[Presence.UNAVAILABLE])
    print(
        f"{settings.provider}: probing the set-presence vocabulary: THIS CHANGES THE BOT'S "
        "PRESENCE (each candidate's available value, then its unavailable value; it ends on "
        "unavailable)"
    )
    verdict = await probe(
        gateway,
        configured,
        settings.provider != "wawp",  # WAHA's and Evolution's are fixed
        lambda line: print(scrub(line, secrets)),
    )
    for line in verdict.lines:
        print(f"{settings.provider}: {line}")
    return EXIT_OK if verdict.definite else EXIT_FAILED
