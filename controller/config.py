"""Settings: the single source of truth for every option's name, default, validation and docs.

Environment variables use the prefix `PRESENCE_` and `__` for nesting (`PRESENCE_WAWP__BASE_URL`);
an optional YAML or TOML file (`PRESENCE_CONFIG_FILE`) holds the same fields, and the environment
wins over it. The attribute docstrings below are the reference documentation:
`docs/configuration.md` is generated from them (`presence-controller check-config --reference`).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from controller.bounded_read import read_bounded
from controller.core.actuation import ActuationConfig
from controller.core.damping import DampingConfig
from controller.core.election import ElectionConfig
from controller.core.excerpt import clip
from controller.core.fleet import parse_min_available
from controller.core.hysteresis import HysteresisConfig
from controller.core.schedule import Schedule, ScheduleError
from controller.core.schedule import parse as parse_schedule
from controller.secret_file import MAX_SECRET_BYTES

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
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
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


def _parse_pairs(value: object) -> object:
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


def _parse_value_pair(value: object) -> object:
    """`available,unavailable` -> ("available", "unavailable")."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(","))
    return value


def _lower(value: object) -> object:
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
_FOLLOW = AtMost(
    300.0,
    "the presence follows the consumer only as often as it looks at it (and /healthz "
    "fails after 3 intervals)",
)
_GATEWAY_CALL = AtMost(
    60.0, "one call in flight at a time: a call held longer holds back every other one"
)


def _read_secret_file(path: Path, what: str) -> SecretStr:
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


def _real_name(value: str | None, what: str) -> str | None:
    if value is not None and is_placeholder(value):
        raise ValueError(f"{value!r} is a placeholder: set the {what}")
    return value


class _GatewaySettings(BaseModel):
    """What every provider's settings share: one credential, given inline or in a file (read
    and checked at start, then followed as it rotates, see runtime/controller.token_file)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    _credential: ClassVar[tuple[str, str]] = ("api_key", "API key")
    """(field name, what to call it); the file is the field `<name>_file`."""

    @field_validator("access_token", "api_key", mode="before", check_fields=False)
    @classmethod
    def _credible(cls, value: object) -> object:
        """Surrounding whitespace is dropped (`echo key > f` adds a newline that a Secret keeps);
        a credential with whitespace or control characters inside is refused: an HTTP library
        refuses such a header and quotes it in its error."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            value = value.strip()
            check_token(value)
        return value

    @model_validator(mode="after")
    def _load_credential_file(self) -> Self:
        field, what = self._credential
        path = getattr(self, f"{field}_file")
        if path is None:
            return self
        if getattr(self, field) is not None:
            upper = field.upper()
            raise ValueError(f"set {upper} or {upper}_FILE, not both")
        setattr(self, field, _read_secret_file(path, what))
        return self

    def secret(self) -> tuple[SecretStr | None, Path | None]:
        """The credential and the file it came from (None: given inline)."""
        field, _ = self._credential
        value: SecretStr | None = getattr(self, field)
        path: Path | None = getattr(self, f"{field}_file")
        return value, path


class WawpSettings(_GatewaySettings):
    """Wawp gateway (`PRESENCE_PROVIDER=wawp`)."""

    _credential: ClassVar[tuple[str, str]] = ("access_token", "access token")

    base_url: AnyHttpUrl = AnyHttpUrl("https://api.wawp.net")
    """Base URL of the Wawp API."""
    instance_id: str | None = None
    """Wawp instance ID of the bot's WhatsApp session. Required with provider `wawp`."""
    access_token: SecretStr | None = None
    """Wawp access token (secret). Required with provider `wawp`, here or in `ACCESS_TOKEN_FILE`."""
    access_token_file: Path | None = None
    """File holding the access token (e.g. a mounted Secret); a trailing newline is ignored.
    Followed as it rotates."""
    field: str = Field(default="presence", min_length=1)
    """JSON body field of the set-presence call (`check-gateway --probe` finds the right one)."""
    values: Annotated[tuple[str, str], NoDecode, BeforeValidator(_parse_value_pair)] = (
        "available",
        "unavailable",
    )
    """Body values for the two states, `available,unavailable` (WAHA style: `online,offline`)."""
    timeout: Annotated[PositiveDuration, _GATEWAY_CALL] = 5.0
    """Timeout of one gateway call."""

    @field_validator("values")
    @classmethod
    def _two_distinct_values(cls, value: tuple[str, str]) -> tuple[str, str]:
        if not all(value) or value[0] == value[1]:
            raise ValueError("expected two different non-empty values, e.g. available,unavailable")
        return value

    @field_validator("instance_id")
    @classmethod
    def _real_instance_id(cls, value: str | None) -> str | None:
        return _real_name(value, "instance ID of your Wawp session")


class WahaSettings(_GatewaySettings):
    """WAHA gateway, self-hosted (`PRESENCE_PROVIDER=waha`)."""

    base_url: AnyHttpUrl | None = None
    """Base URL of the WAHA server, e.g. `http://waha:3000`. Required with provider `waha`."""
    session: str = Field(default="default", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    """WAHA session name (letters, digits, `_ . -`)."""
    api_key: SecretStr | None = None
    """WAHA API key (secret), sent as `X-Api-Key`; unset when the server runs without
    `WAHA_API_KEY`."""
    api_key_file: Path | None = None
    """File holding the API key (e.g. a mounted Secret); followed as it rotates."""
    timeout: Annotated[PositiveDuration, _GATEWAY_CALL] = 6.0
    """Timeout of one gateway call. WAHA holds a set call up to 5 s while the session is not
    WORKING before it answers 422: above 5 s, that answer is seen instead of a timeout."""

    @field_validator("session")
    @classmethod
    def _real_session(cls, value: str) -> str:
        _real_name(value, "name of your WAHA session")
        return value


class EvolutionSettings(_GatewaySettings):
    """Evolution API gateway, self-hosted (`PRESENCE_PROVIDER=evolution`)."""

    base_url: AnyHttpUrl | None = None
    """Base URL of the Evolution API server, e.g. `http://evolution:8080`. Required with
    provider `evolution`."""
    instance: str | None = Field(default=None, min_length=1, pattern=r"^[^/?#%\s]+$")
    """Evolution instance name. Required with provider `evolution`."""
    api_key: SecretStr | None = None
    """Evolution API key (secret), the global key or the instance's token, sent as `apikey`.
    Required with provider `evolution`, here or in `API_KEY_FILE`."""
    api_key_file: Path | None = None
    """File holding the API key (e.g. a mounted Secret); followed as it rotates."""
    timeout: Annotated[PositiveDuration, _GATEWAY_CALL] = 5.0
    """Timeout of one gateway call."""

    @field_validator("instance")
    @classmethod
    def _real_instance(cls, value: str | None) -> str | None:
        return _real_name(value, "name of your Evolution instance")


class DampingSettings(BaseModel):
    """Flap damping (RFC 2439 style): a consumer that keeps failing stays offline for a while."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Damp flapping: each outage adds a penalty of 1000; above `SUPPRESS`, returns to
    available wait until it decays below `REUSE` (never longer than `MAX_SUPPRESS`). Never
    delays going unavailable; never overrides maintenance or force."""
    half_life: Annotated[
        PositiveDuration, AtMost(DAY, "an outage would weigh on the bot for days")
    ] = 900.0
    """The penalty halves in this time."""
    suppress: Annotated[
        float,
        Field(gt=0, allow_inf_nan=False),
        AtMost(1e6, "no penalty reaches it: 1000 per outage", seconds=False),
    ] = 2500.0
    """Penalty above which returns to available are held back (3 outages in quick succession
    at the defaults)."""
    reuse: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 800.0
    """Penalty below which a held-back return goes ahead; must be < `SUPPRESS`."""
    max_suppress: Annotated[
        PositiveDuration, AtMost(DAY, "a healthy bot would be held offline for days")
    ] = 1800.0
    """A return to available is never held back longer than this."""

    @model_validator(mode="after")
    def _can_act(self) -> DampingSettings:
        if not self.reuse < self.suppress:
            raise ValueError(f"REUSE ({self.reuse:g}) must be < SUPPRESS ({self.suppress:g})")
        self.config()  # the ceiling must exceed SUPPRESS: its ValueError names the fix
        return self

    def config(self) -> DampingConfig:
        return DampingConfig(
            self.enabled, self.half_life, self.suppress, self.reuse, self.max_suppress
        )


_WORKLOAD = re.compile(r"(deployment|statefulset)/[a-z0-9]([-a-z0-9.]*[a-z0-9])?|none")


class KubeSettings(BaseModel):
    """Fleet mode: several replicas through the Kubernetes API (docs/fleet.md)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = False
    """Use the Kubernetes API (fleet mode): leader election on a Lease; only the leader calls
    the gateway. In-cluster service account, or `KUBECONFIG`."""
    namespace: str | None = None
    """Namespace of the pod; default `POD_NAMESPACE`, else the service account's namespace."""
    pod_name: str | None = None
    """This replica's identity; default `POD_NAME`, else `HOSTNAME`."""
    workload: str | None = None
    """`deployment/NAME`, `statefulset/NAME` or `none`; default: from the pod's owners."""
    watch_namespace: bool = False
    """Also read maintenance annotations from the Namespace (needs read access to it)."""
    lease_name: str | None = None
    """Name of the leader Lease; default `<workload name>-presence`."""
    lease_duration: Annotated[
        PositiveDuration,
        AtMost(300.0, "a leader that dies is replaced only after its lease ran out"),
    ] = 15.0
    """A leader's lease lasts this long without renewal (as each replica measures it); a Lease
    is never taken over sooner, whatever duration it states."""
    renew_deadline: PositiveDuration = 10.0
    """A leader that has not renewed for this long stops acting; must be < `LEASE_DURATION`."""
    retry_period: PositiveDuration = 2.0
    """Renew (leader) and retry (others) this often; `RENEW_DEADLINE` must exceed 1.2x it."""
    heartbeat: Annotated[
        PositiveDuration, AtMost(60.0, "a member that died counts for 3 heartbeats")
    ] = 5.0
    """Renewal period of each replica's heartbeat Lease; a member is fresh while its heartbeat
    changed within 3x this."""
    min_available: str = "50%"
    """Fleet rule: available when at least this many fresh members are (an integer, or a
    percentage of fresh members, rounded up)."""
    events: bool = True
    """The leader records Kubernetes Events regarding the workload (presence changes,
    maintenance, leadership)."""

    @field_validator("workload")
    @classmethod
    def _workload(cls, value: str | None) -> str | None:
        if value is not None and not _WORKLOAD.fullmatch(value):
            raise ValueError(f"{value!r}: expected deployment/NAME, statefulset/NAME or none")
        return value

    @field_validator("min_available")
    @classmethod
    def _min_available(cls, value: str) -> str:
        parse_min_available(value)
        return value.strip()

    @model_validator(mode="after")
    def _timing(self) -> KubeSettings:
        try:
            ElectionConfig("check", self.lease_duration, self.renew_deadline, self.retry_period)
        except ValueError as exc:
            raise ValueError(
                f"LEASE_DURATION > RENEW_DEADLINE > 1.2 x RETRY_PERIOD: {exc}"
            ) from None
        return self


def check_token(token: str, where: str = "") -> None:
    """Refuse a token that cannot be real (ValueError); the message never quotes it."""
    if any(char.isspace() or unicodedata.category(char)[0] == "C" for char in token):
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


class Settings(BaseSettings):
    """presence-controller settings."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    config_file: Path | None = None
    """Optional YAML (`.yaml`, `.yml`) or TOML (`.toml`) file with the same fields, nested as
    `wawp: {instance_id: ...}`; environment variables win over it."""
    health_url: AnyHttpUrl
    """Consumer health endpoint (required). A 2xx answer within `TIMEOUT` is healthy."""
    metrics_url: AnyHttpUrl | None = None
    """Consumer Prometheus/OpenMetrics text endpoint; unset means no lag signal."""
    lag_metric: str = "webhook_queue_lag_seconds"
    """Name of the queue-lag sample to read from `METRICS_URL`."""
    lag_labels: Annotated[dict[str, str], NoDecode, BeforeValidator(_parse_pairs)] = Field(
        default_factory=dict
    )
    """Label matchers that select series, `queue=inbound,tenant=a` (all must match)."""
    lag_aggregate: Literal["max", "sum", "min", "avg"] = "max"
    """How to combine the matching series: `max`, `sum`, `min` or `avg`."""
    lag_high: Annotated[Number, AtMost(7 * DAY, "a queue a week behind is not keeping up")] = 30.0
    """Lag at or above this makes a tick bad."""
    lag_low: Number = 10.0
    """Lag below this (with health 2xx) makes a tick good; must be < `LAG_HIGH`."""
    missing_lag: Literal["bad", "ignore"] = "bad"
    """What an absent or unparseable lag metric means: a `bad` tick, or `ignore` the lag signal."""
    interval: Annotated[
        float,
        BeforeValidator(parse_duration),
        Field(ge=MIN_INTERVAL, allow_inf_nan=False),
        _FOLLOW,
    ] = 5.0
    """Tick interval: probes run and presence is decided this often (at least 50ms)."""
    timeout: PositiveDuration = 2.0
    """Per-probe timeout (whole request); must be < `INTERVAL`."""
    fast_interval: Annotated[Duration, _FOLLOW] = 1.0
    """Fast re-probe: while a streak that could flip the presence is in progress (bad ticks
    while available, good ticks while unavailable past the hold-down), tick this often instead
    of `INTERVAL`. `0`: off; at or above `INTERVAL`: no effect. Ticks never overlap: a probe
    that takes `TIMEOUT` delays the next one."""
    jitter: float = Field(default=0.1, ge=0, le=0.5, allow_inf_nan=False)
    """Random spread of each interval, as a fraction of it (0.1 = +/-10%)."""
    rise: int = Field(default=3, ge=1, le=100)
    """Consecutive good ticks needed to become available."""
    fall: int = Field(default=3, ge=1, le=100)
    """Consecutive bad ticks needed to become unavailable."""
    hold_down: Annotated[Duration, AtMost(DAY, "a recovered bot would stay offline for days")] = (
        30.0
    )
    """Minimum time unavailable before coming back."""
    damping: DampingSettings = Field(default_factory=DampingSettings)
    startup_grace: Annotated[
        Duration, AtMost(HOUR, "a bot whose consumer never answers would show nothing decided")
    ] = 60.0
    """If neither `RISE` good nor `FALL` bad ticks come this long after start: unavailable."""
    reassert_available: Annotated[
        PositiveDuration, AtMost(HOUR, "presence does not stick: gateways drop it within minutes")
    ] = 20.0
    """Re-send `available` this often (gateways drop it after 10-25 s)."""
    reassert_unavailable: Annotated[
        PositiveDuration, AtMost(HOUR, "presence does not stick: reconnects mark the bot online")
    ] = 300.0
    """Re-send `unavailable` this often."""
    session_check: Annotated[
        PositiveDuration, AtMost(HOUR, "a lost session would go unnoticed that long")
    ] = 60.0
    """Maximum age of the cached gateway session state before a set call."""
    provider: Literal["wawp", "waha", "evolution"] = "wawp"
    """Gateway provider: `wawp`, `waha` or `evolution` (docs/operations.md, "Gateways")."""
    wawp: WawpSettings = Field(default_factory=WawpSettings)
    waha: WahaSettings = Field(default_factory=WahaSettings)
    evolution: EvolutionSettings = Field(default_factory=EvolutionSettings)
    last_seen_refresh: Annotated[
        Duration, AtMost(30 * DAY, "a bot last seen a month ago already looks abandoned")
    ] = 0.0
    """Keep "last seen" fresh: when the bot has shown `unavailable` this long because of online
    hours or a force (never maintenance, never an unhealthy consumer), briefly show `available`
    then `unavailable` again. `0`: off. At least `1m` when set."""
    last_seen_pulse: PositiveDuration = 5.0
    """How long a last-seen refresh shows `available` (at most `1m`, below
    `REASSERT_AVAILABLE`)."""
    kube: KubeSettings = Field(default_factory=KubeSettings)
    annotations_file: Path | None = None
    """Downward API annotations file, e.g. `/etc/podinfo/annotations`; must exist at start.
    Read every tick (re-parsed only when kubelet swapped it)."""
    annotation_prefix: str = Field(default="presence-controller/", min_length=1)
    """Prefix of our annotation keys (`<prefix>maintenance`, `<prefix>force`, ...)."""
    maintenance_windows: str | None = None
    """Maintenance windows from config, in the window grammar (docs/maintenance.md)."""
    online_hours: str | None = None
    """Windows in the window grammar; outside them the bot is unavailable. Unset: no limit."""
    maintenance_lead: Annotated[
        Duration,
        AtMost(
            7 * DAY,
            "a drain of more than a week is a mistake (and far leads are date "
            "arithmetic that could overflow)",
        ),
    ] = 0.0
    """Scheduled maintenance windows take effect this long before they start (drain)."""
    listen: str = "0.0.0.0:8090"
    """Admin HTTP server address, `host:port` (`[::]:8090` for IPv6)."""
    on_shutdown: Literal["unavailable", "keep"] = "unavailable"
    """On SIGTERM/SIGINT: write `unavailable` (within 5 s) or `keep` the current presence."""
    dry_run: bool = False
    """Decide and report everything, call nothing at the gateway."""
    log_format: Annotated[Literal["json", "text"], BeforeValidator(_lower)] = "json"
    """`json` (one object per line) or `text`."""
    log_level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = (
        "info"
    )
    """`debug`, `info`, `warning` or `error`."""

    @field_validator("lag_metric")
    @classmethod
    def _metric_name(cls, value: str) -> str:
        if not _METRIC_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a Prometheus metric name")
        return value

    @field_validator("lag_low")
    @classmethod
    def _low_below_high(cls, value: float, info: ValidationInfo) -> float:
        return _below(value, info, "lag_high")

    @field_validator("timeout")
    @classmethod
    def _timeout_below_interval(cls, value: float, info: ValidationInfo) -> float:
        return _below(value, info, "interval", unit="s")

    @field_validator("fast_interval")
    @classmethod
    def _off_or_sane(cls, value: float) -> float:
        if 0 < value < MIN_INTERVAL:
            raise ValueError(f"0 (off) or at least {MIN_INTERVAL * 1000:g}ms, got {value:g}s")
        return value

    @field_validator("wawp", "waha", "evolution")
    @classmethod
    def _provider_complete(cls, value: ProviderSettings, info: ValidationInfo) -> ProviderSettings:
        """The chosen provider's required settings (the others may stay unset)."""
        name = info.field_name
        if name is None or info.data.get("provider") != name:
            return value
        missing = [
            f"{ENV_PREFIX}{name.upper()}{NESTED_DELIMITER}{field.upper()}"
            + (" (or ..._FILE)" if field in _SECRET_FIELDS else "")
            for field in _REQUIRED[name]
            if getattr(value, field) in (None, "")
        ]
        if missing:
            raise ValueError(f"provider {name} requires {' and '.join(missing)}")
        return value

    @field_validator("last_seen_refresh")
    @classmethod
    def _refresh_off_or_sane(cls, value: float) -> float:
        if 0 < value < MIN_LAST_SEEN_REFRESH:
            raise ValueError(
                f"0 (off) or at least {MIN_LAST_SEEN_REFRESH:g}s, got {value:g}s: a refresh is "
                "a brief online toggle every few hours, not a heartbeat"
            )
        return value

    @field_validator("last_seen_pulse")
    @classmethod
    def _short_pulse(cls, value: float, info: ValidationInfo) -> float:
        if value > MAX_LAST_SEEN_PULSE:
            raise ValueError(f"at most {MAX_LAST_SEEN_PULSE:g}s, got {value:g}s")
        if not info.data.get("last_seen_refresh"):
            return value  # refresh off: the pulse is never used
        # A pulse longer than the re-assert period would be re-asserted as if it were decided.
        return _below(value, info, "reassert_available", unit="s")

    @field_validator("annotations_file")
    @classmethod
    def _annotations_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(
                f"no such file {str(value)!r}: mount the Downward API volume, or unset it"
            )
        return value

    @field_validator("maintenance_windows", "online_hours")
    @classmethod
    def _window_grammar(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:
            schedule = parse_schedule(value)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
        if info.field_name == "online_hours" and not schedule:
            raise ValueError(
                f"{value!r} would keep the bot offline for good: leave ONLINE_HOURS unset "
                "for no limit"
            )
        return value

    @field_validator("kube")
    @classmethod
    def _fleet_margin(cls, value: KubeSettings, info: ValidationInfo) -> KubeSettings:
        """Fleet mode: a leader may start a gateway call only while it can end before another
        replica may take over (LEASE_DURATION after the leader's last renewal); with a renewal
        every RETRY_PERIOD, a call that lasts its timeout needs that much room, and one late
        renewal more."""
        provider = info.data.get("provider")
        chosen = info.data.get(provider) if isinstance(provider, str) else None
        if not value.enabled or not isinstance(chosen, _GatewaySettings):
            return value
        timeout: float = getattr(chosen, "timeout", 0.0)
        limit = value.lease_duration - 2 * value.retry_period
        if timeout > limit:
            raise ValueError(
                f"{ENV_PREFIX}{str(provider).upper()}{NESTED_DELIMITER}TIMEOUT ({timeout:g}s) must "
                f"be at most LEASE_DURATION - 2 x RETRY_PERIOD ({limit:g}s) in fleet mode: a "
                "leader's gateway call must end before another replica may take over"
            )
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        listen_address(value)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        path = os.environ.get(CONFIG_FILE_VAR)
        if path:
            if Path(path).suffix.lower() == ".toml":
                return (*sources, TomlConfigSettingsSource(settings_cls, toml_file=path))
            return (*sources, YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return sources

    @classmethod
    def from_values(cls, **values: Any) -> Settings:
        """Settings from `values` and the defaults only, ignoring the environment and any file
        (the demo and tests must not pick up a stray PRESENCE_* variable)."""
        return _ExplicitSettings(**values)

    # Views for the rest of the program.

    @property
    def listen_host_port(self) -> tuple[str, int]:
        return listen_address(self.listen)

    def hysteresis(self) -> HysteresisConfig:
        return HysteresisConfig(
            rise=self.rise,
            fall=self.fall,
            hold_down=self.hold_down,
            startup_grace=self.startup_grace,
            lag_high=self.lag_high,
            lag_low=self.lag_low,
            missing_lag_is_bad=self.missing_lag == "bad",
            damping=self.damping.config(),
        )

    def actuation(self) -> ActuationConfig:
        return ActuationConfig(
            reassert_available=self.reassert_available,
            reassert_unavailable=self.reassert_unavailable,
            session_check=self.session_check,
            dry_run=self.dry_run,
            last_seen_refresh=self.last_seen_refresh,
            last_seen_pulse=self.last_seen_pulse,
        )

    def maintenance_schedule(self) -> Schedule:
        return parse_schedule(self.maintenance_windows or "")

    def online_hours_schedule(self) -> Schedule | None:
        return parse_schedule(self.online_hours) if self.online_hours is not None else None

    def gateway_settings(self) -> ProviderSettings:
        """The settings of the configured provider."""
        chosen: ProviderSettings = getattr(self, self.provider)
        return chosen

    def secrets(self) -> list[str]:
        """Every secret value, so that log output can be scrubbed of them as a last line."""
        found = (model.secret()[0] for model in (self.wawp, self.waha, self.evolution))
        return [secret.get_secret_value() for secret in found if secret is not None]

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain JSON values, secrets masked."""
        return self.model_dump(mode="json")


ProviderSettings = _GatewaySettings
"""The settings of any provider (WawpSettings, WahaSettings, EvolutionSettings)."""
_REQUIRED = {
    "wawp": ("instance_id", "access_token"),
    "waha": ("base_url",),
    "evolution": ("base_url", "instance", "api_key"),
}
"""The settings each provider cannot do without (WAHA's API key is optional)."""
MIN_LAST_SEEN_REFRESH = 60.0
MAX_LAST_SEEN_PULSE = 60.0

CROSS_FIELD_CHECKS = (
    ("lag_low", "lag_high"),
    ("timeout", "interval"),
    ("wawp", "provider"),
    ("waha", "provider"),
    ("evolution", "provider"),
    ("last_seen_pulse", "reassert_available"),
    ("last_seen_pulse", "last_seen_refresh"),
    ("kube", "provider"),
    ("kube", "wawp"),
    ("kube", "waha"),
    ("kube", "evolution"),
)
"""(field, the field its validator reads): the second must be declared before the first."""


def _below(value: float, info: ValidationInfo, other: str, unit: str = "") -> float:
    """Check `value` < the already validated field `other` (skipped when `other` was invalid)."""
    # `info.data` holds the fields declared before this one: CROSS_FIELD_CHECKS (and its test)
    # keep `other` declared first, so the check can never be skipped silently by a reordering.
    limit = info.data.get(other)
    if limit is not None and not value < limit:
        raise ValueError(f"must be < {other.upper()} ({limit:g}{unit}), got {value:g}{unit}")
    return float(value)


class _ExplicitSettings(Settings):
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def listen_address(value: str) -> tuple[str, int]:
    """Split `host:port` or `[v6]:port` into its parts, checking the port."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(
            f"expected host:port with a port 0-65535 (0: any free port), got {value!r}"
        )
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class ConfigError(Exception):
    """The configuration is invalid; `errors` lists every problem as `VARIABLE: reason`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


_SECRET_FIELDS = {"access_token", "api_key"}


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
        and not _SECRET_FIELDS.intersection(str(p) for p in loc)
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

<!-- Generated from controller/config.py by `make docs`; edit the docstrings there. -->

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
