"""Quote user-supplied text (annotation values, window specs) in messages without letting it
flood them: reasons, logs, span attributes and /status all carry these messages every tick."""

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
