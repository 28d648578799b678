"""Loading the settings (environment and file), every error at once, and the generated reference."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from controller.bounded_read import read_bounded
from controller.config.settings import (
    Settings,
)
from controller.config.values import (
    CONFIG_FILE_VAR,
    ENV_PREFIX,
    MAX_CONFIG_BYTES,
    NESTED_DELIMITER,
    SECRET_FIELDS,
    AtMost,
)
from controller.core.excerpt import clip


class ConfigError(Exception):
    """The configuration is invalid; `errors` lists every problem as `VARIABLE: reason`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable for a validation error location: ('wawp', 'field') ->
    PRESENCE_WAWP__FIELD."""
    names = [str(part).upper() for part in loc if isinstance(part, str)]
    return ENV_PREFIX + NESTED_DELIMITER.join(names) if names else ENV_PREFIX.rstrip("_")


def known_variables() -> list[str]:
    """Every environment variable the settings model reads (upper case)."""
    names = [CONFIG_FILE_VAR]

    def add(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            var = f"{prefix}{name.upper()}"
            names.append(var)
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                add(annotation, f"{var}{NESTED_DELIMITER}")

    add(Settings, ENV_PREFIX)
    return names


_SERVICE_LINK = re.compile(
    r"[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)"
)
"""The variables the kubelet injects for each Service of the namespace (`<NAME>_SERVICE_HOST`,
`<NAME>_PORT_8090_TCP_ADDR`, ...): a Service named `presence-...` yields `PRESENCE_*` names."""


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """`PRESENCE_*` variables that no setting reads (typos), each with a suggestion. Names
    shaped like Kubernetes service links are not ours to judge and pass."""
    known = known_variables()
    errors = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known:
            continue
        if _SERVICE_LINK.fullmatch(upper):
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        errors.append(f"{name}: unknown setting{hint}; see docs/configuration.md")
    return errors


def _file_key(loc: tuple[int | str, ...], document: Mapping[str, Any] | None) -> str | None:
    """The config file key (`wawp.instance_id`) that `loc` came from, when the environment did
    not set it and the file holds it."""
    if document is None or os.environ.get(env_name(loc)) is not None:
        return None
    node: Any = document
    keys = [str(part) for part in loc if isinstance(part, str)]
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return ".".join(keys)


def _describe(error: Mapping[str, Any], document: Mapping[str, Any] | None = None) -> str:
    loc = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    shown = error.get("input")
    if (
        error["type"] not in {"missing", "extra_forbidden"}
        and isinstance(shown, str | int | float)
        and not SECRET_FIELDS.intersection(str(p) for p in loc)
        and "got" not in message
        and "'" not in message  # the message already quotes what is wrong
    ):
        message += f" (got {shown!r})"
    key = _file_key(loc, document)
    if error["type"] == "extra_forbidden":
        message = "unknown setting"
        if key is not None:
            close = difflib.get_close_matches(env_name(loc), known_variables(), n=1, cutoff=0.75)
            if close:
                message += f" (did you mean {close[0].removeprefix(ENV_PREFIX).lower()}?)"
    if key is not None:
        return f"{os.environ[CONFIG_FILE_VAR]}: {key}: {message}"
    return f"{env_name(loc)}: {message}"


def _format_errors(
    exc: ValidationError, document: Mapping[str, Any] | None = None
) -> Iterator[str]:
    for error in exc.errors(include_url=False):
        yield _describe(error, document)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and the optional config file.

    Raises ConfigError listing every problem (never a traceback, never a secret).
    """
    path = os.environ.get(CONFIG_FILE_VAR)
    document = _check_config_file(Path(path)) if path else None
    unknown = unknown_variables(os.environ)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        reported = {line.partition(":")[0] for line in unknown}
        errors = [e for e in _format_errors(exc, document) if e.partition(":")[0] not in reported]
        raise ConfigError(unknown + errors) from None
    if unknown:
        raise ConfigError(unknown)
    return settings


def _check_config_file(path: Path) -> dict[str, Any] | None:
    """Refuse a missing, unreadable, unparseable or non-mapping config file with a clear reason
    (pydantic-settings would skip a missing file silently and garble the others)."""
    suffix = path.suffix.lower()
    if suffix not in {".yaml", ".yml", ".toml"}:
        raise ConfigError(
            [f"{CONFIG_FILE_VAR}: expected a .yaml, .yml or .toml file, got {str(path)!r}"]
        )
    try:
        text = read_bounded(path, MAX_CONFIG_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{CONFIG_FILE_VAR}: no such file {str(path)!r}"]) from None
    except OSError as exc:
        raise ConfigError(
            [f"{CONFIG_FILE_VAR}: cannot read {str(path)!r}: {exc.strerror}"]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{CONFIG_FILE_VAR}: {str(path)!r} is not UTF-8 text"]) from None
    import yaml  # only with a YAML config file: it costs ~15 ms at import

    try:
        document = tomllib.loads(text) if suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, RecursionError) as exc:
        reason = clip(" ".join(str(exc).split()), 300)  # one line: YAML's spans several
        raise ConfigError([f"{CONFIG_FILE_VAR}: cannot parse {str(path)!r}: {reason}"]) from None
    if document is not None and not isinstance(document, dict):
        raise ConfigError(
            [
                f"{CONFIG_FILE_VAR}: {str(path)!r} must hold a mapping of settings, "
                f"not a {type(document).__name__}"
            ]
        )
    odd = [key for key in (document or {}) if not isinstance(key, str)]
    if odd:
        raise ConfigError(
            [f"{CONFIG_FILE_VAR}: {str(path)!r}: a setting is a name, got {clip(repr(odd[0]), 40)}"]
        )
    return document


def reference_markdown() -> str:
    """The configuration reference table, generated from the settings model."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]

    def add(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            var = f"{prefix}{name.upper()}"
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                add(annotation, f"{var}{NESTED_DELIMITER}")
                continue
            if field.is_required():
                default = "required"
            else:
                value = field.get_default(call_default_factory=True)
                if isinstance(value, tuple):
                    value = ",".join(value)
                elif isinstance(value, dict):
                    value = ",".join(f"{k}={v}" for k, v in value.items())
                elif isinstance(value, bool):
                    value = str(value).lower()
                elif isinstance(value, float) and value.is_integer():
                    value = int(value)
                default = "unset" if value in (None, "") else f"`{value}`"
            meaning = " ".join((field.description or "").split())
            bound = next((m for m in field.metadata if isinstance(m, AtMost)), None)
            if bound is not None:
                meaning += f" At most `{bound.shown}`: {bound.why}."
            rows.append(f"| `{var}` | {default} | {meaning} |")

    add(Settings, ENV_PREFIX)
    return _REFERENCE_INTRO + "\n".join(rows) + "\n"


_REFERENCE_INTRO = """\
# Configuration reference

<!-- Generated from controller/config/ by `make docs`; edit the docstrings there. -->

Every setting is an environment variable (prefix `PRESENCE_`, `__` for nesting) and may also be
given in the optional YAML/TOML file named by `PRESENCE_CONFIG_FILE` (keys in lower case, nested
as `wawp: {instance_id: ...}`); the environment wins. Durations are seconds and also accept
`500ms`, `30s`, `5m`, `1h`, `1d`. `presence-controller check-config` validates a configuration and
prints it with secrets masked; every invalid setting is listed, and the exit code is 2. A
`PRESENCE_*` variable or file key that names no setting is refused with a suggestion
(`PRESENCE_INTERVALL: unknown setting (did you mean PRESENCE_INTERVAL?)`); the variables the
kubelet injects for a Service named `presence-...` (`..._SERVICE_HOST`, `..._PORT_8090_TCP`) are
not settings and pass. Placeholder credentials (`YOUR_...`, `REPLACE-WITH-...`, `<token>`) are
refused.

"""
