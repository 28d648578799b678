"""Structured logs: one JSON object per event (or a readable line), secrets scrubbed.

Log an event with `event(log, "transition", "presence changed", to="unavailable", ...)`: the
event name and fields land as top-level JSON keys.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from controller.core.excerpt import describe
from controller.redaction import scrub

_FIELDS = "presence_fields"
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


def event(log: logging.Logger, level: int, name: str, message: str, **fields: Any) -> None:
    """Log one event with structured fields."""
    log.log(level, message, extra={_FIELDS: {"event": name, **fields}})


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "event", "msg", ...fields}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, _FIELDS, None) or {}
        payload.update(fields)
        payload["msg"] = record.getMessage()
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            payload["trace_id"] = trace.format_trace_id(context.trace_id)
            payload["span_id"] = trace.format_span_id(context.span_id)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key != _FIELDS and not key.startswith("_"):
                payload.setdefault(key, value)
        return json.dumps(payload, default=str, ensure_ascii=False)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape(text: object) -> str:
    """One line, no terminal escapes: an annotation value with a newline or ANSI sequences
    cannot forge a log line or repaint the terminal (JSON escapes them by itself)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), str(text))


class TextFormatter(logging.Formatter):
    """`ts level event: msg key=value ...` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        fields = dict(getattr(record, _FIELDS, None) or {})
        name = fields.pop("event", record.name)
        extra = " ".join(f"{k}={_escape(v)}" for k, v in fields.items())
        line = f"{ts} {record.levelname.lower():<7} {name}: {_escape(record.getMessage())}"
        if extra:
            line += f" [{extra}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class ScrubbingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that masks every configured secret in the final text."""

    def __init__(self, secrets: Iterable[str], stream: Any = None) -> None:
        super().__init__(stream or sys.stderr)
        self.secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record), self.secrets)


def add_secret(secret: str) -> None:
    """Scrub `secret` from every log line from now on (a rotated token; old ones stay scrubbed)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, ScrubbingHandler) and secret and secret not in handler.secrets:
            handler.secrets.append(secret)


HTTP_CLIENT_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "lightkube", "aiohttp.access")
"""Loggers kept at WARNING: they write a line per request."""


def configure_logging(fmt: str, level: str, secrets: Iterable[str], stream: Any = None) -> None:
    """Route all logging through one scrubbing handler in the chosen format."""
    handler = ScrubbingHandler(secrets, stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # HTTP clients log every request URL at INFO (httpx for the gateway, whose URLs carry the
    # token in the query; httpx2 for lightkube, ~40 lines a minute in fleet mode): our own
    # lines say what a request meant, and failures are logged by the code that made them.
    for noisy in HTTP_CLIENT_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


class ErrorOnce:
    """`log.exception` once per distinct error (`what: Type: message`), not once per tick,
    until `reset()` (the thing works again)."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._last: str | None = None

    def __call__(self, what: str, exc: BaseException) -> None:
        key = f"{what}: {describe(exc)}"
        if key != self._last:
            self._last = key
            self._log.exception(key)

    def reset(self) -> None:
        self._last = None
