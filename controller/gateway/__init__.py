"""Act: gateway clients that set the bot's presence and read its session state."""

from controller.gateway.base import (
    AuthError,
    Gateway,
    GatewayError,
    PermanentError,
    RateLimited,
    SessionNotReady,
    TransientError,
)

__all__ = [
    "AuthError",
    "Gateway",
    "GatewayError",
    "PermanentError",
    "RateLimited",
    "SessionNotReady",
    "TransientError",
]
