"""What the simulated gateways record and what a test can script: one call as received and
answered, one scripted fault, and how a request's body is read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aiohttp import web

WAWP_CREDENTIALS = ("instance_id", "access_token")
"""Wawp's credentials, which may come in a POST body beside the presence field."""


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
    """When the request arrived, by the gateway's clock (`SimGateway.clock`)."""
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


async def read_json(request: web.Request) -> object:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def value_field(body: object, provider: str) -> str | None:
    """The one field of a set call's body that carries the value (Wawp's credentials aside)."""
    if not isinstance(body, dict):
        return None
    names = [k for k in body if not (provider == "wawp" and k in WAWP_CREDENTIALS)]
    return names[0] if len(names) == 1 else None
