"""Quote outside text (annotation values, window specs, exception messages) in messages without
letting it flood them: reasons, logs, span attributes and /status carry these every tick."""

from __future__ import annotations

QUOTE_LIMIT = 60
"""Characters of user text quoted in one message."""


def quote(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`repr(text)`, cut to `limit` characters with the full length said: `'Sat 02:00...' (4096
    characters)`."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def clip(text: str, limit: int) -> str:
    """`text` itself, cut to `limit` characters with the full length said."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


EXCERPT = 120
"""Characters of an exception message kept in a reason: enough for an errno or a TLS reason."""


def describe(exc: BaseException, message: str | None = None) -> str:
    """`ConnectError: [Errno 111] Connection refused`, cut to a short excerpt, one line;
    `message` replaces `str(exc)` (a caller that must first cut something out of it)."""
    name = type(exc).__name__
    text = " ".join((str(exc) if message is None else message).split())
    if len(text) > EXCERPT:
        text = text[: EXCERPT - 3] + "..."
    return f"{name}: {text}" if text else name
