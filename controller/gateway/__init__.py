"""Act: gateway clients that set the bot's presence and read its session state."""

from controller.gateway.base import (
    AuthError,
    Gateway,
    GatewayError,
    PermanentError,
    QuotaRefused,
    RateLimited,
    SessionNotReady,
    TransientError,
    Unsupported,
)

__all__ = [
    "AuthError",
    "Gateway",
    "GatewayError",
    "PermanentError",
    "QuotaRefused",
    "RateLimited",
    "SessionNotReady",
    "TransientError",
    "Unsupported",
]
