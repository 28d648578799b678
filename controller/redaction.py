"""Keep secrets out of every text we emit: URLs, log lines, error messages."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "[REDACTED]"
SECRET_QUERY_KEYS = frozenset({"access_token", "token", "apikey", "api_key", "key"})


def redact_url(url: str) -> str:
    """The URL with secret query parameters and userinfo masked."""
    parts = urlsplit(url)
    query = urlencode(
        [(k, MASK if k.lower() in SECRET_QUERY_KEYS else v) for k, v in parse_qsl(parts.query)],
        safe="[]",
    )
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret replaced by a mask (the last line of defence)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text
