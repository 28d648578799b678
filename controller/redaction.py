"""Keep secrets out of every text we emit: URLs, log lines, error messages."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any
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
    """`text` with every occurrence of each secret, in any letter case (a gateway that upper-cases
    what it echoes), replaced by a mask: the last line of defence."""
    for secret in secrets:
        if secret:
            text = re.sub(re.escape(secret), MASK, text, flags=re.IGNORECASE)
    return text


def scrub_document(value: Any, secrets: Iterable[str]) -> Any:
    """A JSON-like document (dicts, lists, strings) with every string scrubbed."""
    secrets = [s for s in secrets if s]
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {scrub(str(k), secrets): scrub_document(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_document(v, secrets) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or Infinity
    return value
