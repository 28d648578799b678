"""Setting values: names, durations and their bounds, credentials, addresses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    SecretStr,
    ValidationInfo,
)
from pydantic_core import core_schema

from controller.bounded_read import read_bounded
from controller.secret_file import MAX_SECRET_BYTES, one_word

ENV_PREFIX = "PRESENCE_"
MIN_TOKEN_LENGTH = 8
"""Shorter tokens are refused: no real token is that short, and log scrubbing needs one."""
NESTED_DELIMITER = "__"
MAX_CONFIG_BYTES = 256 * 1024
"""A config file is a few hundred bytes; more is a mistake (or /dev/zero)."""
MIN_INTERVAL = 0.05
"""A faster tick only burns CPU: no consumer or gateway signal changes that often."""
CONFIG_FILE_VAR = f"{ENV_PREFIX}CONFIG_FILE"

_DURATION = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>ms|s|m|h|d)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_PLACEHOLDER = re.compile(
    r"replace[-_ ]?(with|me)|change[-_ ]?me|your[-_ ]|placeholder|^<.*>$|^(.)\2{3,}$", re.IGNORECASE
)
"""Values a template ships (`REPLACE-WITH-YOUR-WAWP-ACCESS-TOKEN`, `<token>`, `xxxxxxxx`):
refused so that a copied example fails at start with a clear message instead of a 401 loop."""


def is_placeholder(value: str) -> bool:
    """Whether `value` is an obvious template placeholder rather than a real credential."""
    return _PLACEHOLDER.search(value.strip()) is not None


def parse_duration(value: object) -> object:
    """Seconds as a number, or a string like `500ms`, `30s`, `5m`, `1h`, `1d` (plain `2.5` =
    seconds)."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise ValueError(
                f"invalid duration {value!r}: expected seconds or a number with a unit "
                "ms, s, m, h or d (500ms, 30s, 5m, 1h, 1d)"
            )
        return float(match["number"]) * _UNIT_SECONDS[match["unit"] or "s"]
    return value


def parse_pairs(value: object) -> object:
    """`queue=inbound,tenant=a` -> {"queue": "inbound", "tenant": "a"}; mappings pass through."""
    if not isinstance(value, str):
        return value
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, sep, label_value = item.partition("=")
        name = name.strip()
        if not sep or not _LABEL_NAME.fullmatch(name):
            raise ValueError(f"invalid label matcher {item!r}: expected name=value")
        if name in pairs:
            raise ValueError(f"label {name!r} given twice")
        pairs[name] = label_value.strip().strip('"')
    return pairs


def parse_value_pair(value: object) -> object:
    """`available,unavailable` -> ("available", "unavailable")."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(","))
    return value


def lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class AtMost:
    """An upper bound on a setting, with the reason for it: whatever the source (environment,
    YAML, TOML), a value above it is refused at start. `reference_markdown` shows it."""

    limit: float
    why: str
    seconds: bool = True
    """Whether the setting is a duration (shown as `5m`) or a plain number."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def check(self, value: float) -> float:
        if value > self.limit:
            raise ValueError(f"at most {self.shown}, got {value:g}: {self.why}")
        return value

    @property
    def shown(self) -> str:
        return human(self.limit) if self.seconds else f"{self.limit:g}"


def human(seconds: float) -> str:
    """`300` -> `5m`, `86400` -> `1d`, `0.5` -> `500ms`: a duration as settings are written."""
    for unit in ("d", "h", "m", "s"):
        count = seconds / _UNIT_SECONDS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0, allow_inf_nan=False)]
PositiveDuration = Annotated[
    float, BeforeValidator(parse_duration), Field(gt=0, allow_inf_nan=False)
]
Number = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""A finite non-negative number (a threshold, a penalty)."""

HOUR, DAY = 3600.0, 86400.0
FOLLOW = AtMost(
    300.0,
    "the presence follows the consumer only as often as it looks at it (and /healthz "
    "fails after 3 intervals)",
)
GATEWAY_CALL = AtMost(
    60.0, "one call in flight at a time: a call held longer holds back every other one"
)


def read_secret_file(path: Path, what: str) -> SecretStr:
    """A secret from a mounted file (trailing newline ignored), checked like an inline one; a
    ValueError names the file and the reason, never the content."""
    try:
        text = read_bounded(path, MAX_SECRET_BYTES).decode("utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {what} file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{what} file {str(path)!r} is not UTF-8 text") from None
    check_token(text, f"{what} file {str(path)!r}: ")
    return SecretStr(text)


def real_name(value: str | None, what: str) -> str | None:
    if value is not None and is_placeholder(value):
        raise ValueError(f"{value!r} is a placeholder: set the {what}")
    return value


def check_token(token: str, where: str = "") -> None:
    """Refuse a token that cannot be real (ValueError); the message never quotes it."""
    if not one_word(token):
        raise ValueError(
            f"{where}holds whitespace or a control character inside: a credential is one word "
            "(a stray newline or space in the Secret?)"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"{where}too short to be an access token (< {MIN_TOKEN_LENGTH} characters)"
        )
    if is_placeholder(token):
        raise ValueError(
            f"{where}holds a placeholder, not an access token: put the gateway's real token "
            "in the Secret (kubectl create secret generic ... --from-file=access-token=...)"
        )


def credible(value: object) -> object:
    """A credential as given: surrounding whitespace dropped (`echo key > f` adds a newline
    that a Secret keeps); one with whitespace or control characters inside refused (an HTTP
    library refuses such a header and quotes it in its error)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        value = value.strip()
        check_token(value)
    return value


def listen_address(value: str) -> tuple[str, int]:
    """Split `host:port` or `[v6]:port` into its parts, checking the port."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(
            f"expected host:port with a port 0-65535 (0: any free port), got {value!r}"
        )
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


SECRET_FIELDS = {"access_token", "api_key", "webhook_token"}
MIN_LAST_SEEN_REFRESH = 60.0
MAX_LAST_SEEN_PULSE = 60.0


def check_below(value: float, info: ValidationInfo, other: str, unit: str = "") -> float:
    """Check `value` < the already validated field `other` (skipped when `other` was invalid)."""
    # `info.data` holds the fields declared before this one: CROSS_FIELD_CHECKS (and its test)
    # keep `other` declared first, so the check can never be skipped silently by a reordering.
    limit = info.data.get(other)
    if limit is not None and not value < limit:
        raise ValueError(f"must be < {other.upper()} ({limit:g}{unit}), got {value:g}{unit}")
    return float(value)
