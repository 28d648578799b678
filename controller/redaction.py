"""Keep secrets out of every text we emit: URLs, log lines, error messages."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

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
    what it echoes) and in any of the forms libraries quote it in (escaped by `repr` or JSON,
    as bytes, percent-encoded), replaced by a mask: the last line of defence."""
    pattern = _pattern(tuple(s for s in secrets if s))
    return pattern.sub(MASK, text) if pattern is not None else text


MIN_FORM = 4
"""Shorter forms of a secret are not masked on their own: they would mask ordinary words."""


def forms(secret: str) -> set[str]:
    """How `secret` can appear in text: as is, without surrounding whitespace, escaped by
    `repr` or JSON, as a bytes repr (an HTTP library quoting a refused header), percent-encoded
    (a query string)."""
    found = {
        secret,
        secret.strip(),
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        repr(secret.encode())[2:-1],
        quote(secret, safe=""),
    }
    return {f for f in found if len(f) >= MIN_FORM}


@functools.lru_cache(maxsize=16)
def _pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    every = {form for secret in secrets for form in forms(secret)}
    if not every:
        return None
    # Longest first: a form that contains another is masked whole.
    alternatives = "|".join(re.escape(f) for f in sorted(every, key=len, reverse=True))
    return re.compile(alternatives, re.IGNORECASE)


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
