"""How a probe names a failure: the exception type and a short excerpt of its message."""

from __future__ import annotations

EXCERPT = 120
"""Characters of an exception message kept in a reason: enough for an errno or a TLS reason."""


def describe(exc: BaseException) -> str:
    """`ConnectError: [Errno 111] Connection refused`, cut to a short excerpt, one line."""
    text = " ".join(str(exc).split())
    if len(text) > EXCERPT:
        text = text[: EXCERPT - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
