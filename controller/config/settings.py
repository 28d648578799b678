"""The settings model: every option's name, default, validation and documentation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from controller.config.models import (
    REQUIRED_FIELDS,
    DampingSettings,
    EvolutionSettings,
    GatewaySettings,
    KubeSettings,
    ProviderSettings,
    WahaSettings,
    WawpSettings,
)
from controller.config.schedules import ScheduleSettings
from controller.config.values import (
    CONFIG_FILE_VAR,
    DAY,
    ENV_PREFIX,
    FOLLOW,
    HOUR,
    MAX_LAST_SEEN_PULSE,
    METRIC_NAME,
    MIN_INTERVAL,
    MIN_LAST_SEEN_REFRESH,
    NESTED_DELIMITER,
    SECRET_FIELDS,
    AtMost,
    Duration,
    Number,
    PositiveDuration,
    check_below,
    listen_address,
    lower,
    parse_duration,
    parse_pairs,
)
from controller.config.witness import WitnessSettings
from controller.core.actuation import ActuationConfig
from controller.core.hysteresis import HysteresisConfig


class Settings(BaseSettings, ScheduleSettings):
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
    lag_labels: Annotated[dict[str, str], NoDecode, BeforeValidator(parse_pairs)] = Field(
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
        FOLLOW,
    ] = 5.0
    """Tick interval: probes run and presence is decided this often (at least 50ms)."""
    timeout: PositiveDuration = 2.0
    """Per-probe timeout (whole request); must be < `INTERVAL`."""
    fast_interval: Annotated[Duration, FOLLOW] = 1.0
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
    ] = 8.0
    """Re-send `available` this often. WhatsApp shows `available` for about 10 s after a write
    (Baileys): keep it below, or contacts see gaps (bench: 100% shown at 8 s, 97% at 10 s,
    49% at 20 s). Costs 10,800 writes a day while available."""
    reassert_unavailable: Annotated[
        PositiveDuration, AtMost(HOUR, "presence does not stick: reconnects mark the bot online")
    ] = 60.0
    """Re-send `unavailable` this often: bounds how long a gateway that marks the bot online by
    itself (a reconnect, an always-online setting) can show it online unseen. Costs 1,440
    writes a day while unavailable."""
    session_check: Annotated[
        PositiveDuration, AtMost(HOUR, "a lost session would go unnoticed that long")
    ] = 15.0
    """Read the gateway's session this often, also while idle (answered by the gateway, not
    WhatsApp) and before a set call when older. Seeing WORKING after a read that was not (a
    reconnect: NOWEB and Evolution mark the bot online) writes the desired presence at once.
    Idle reads use at most half the read budget (one every 6 s)."""
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
    witness: WitnessSettings = Field(default_factory=WitnessSettings)
    annotations_file: Path | None = None
    """Downward API annotations file, e.g. `/etc/podinfo/annotations`; must exist at start.
    Read every tick (re-parsed only when kubelet swapped it)."""
    annotation_prefix: str = Field(default="presence-controller/", min_length=1)
    """Prefix of our annotation keys (`<prefix>maintenance`, `<prefix>force`, ...)."""
    listen: str = "0.0.0.0:8090"
    """Admin HTTP server address, `host:port` (`[::]:8090` for IPv6)."""
    on_shutdown: Literal["unavailable", "keep"] = "unavailable"
    """On SIGTERM/SIGINT: write `unavailable` (within 5 s) or `keep` the current presence."""
    dry_run: bool = False
    """Decide and report everything, call nothing at the gateway."""
    log_format: Annotated[Literal["json", "text"], BeforeValidator(lower)] = "json"
    """`json` (one object per line) or `text`."""
    log_level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(lower)] = (
        "info"
    )
    """`debug`, `info`, `warning` or `error`."""

    @field_validator("lag_metric")
    @classmethod
    def _metric_name(cls, value: str) -> str:
        if not METRIC_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a Prometheus metric name")
        return value

    @field_validator("lag_low")
    @classmethod
    def _low_below_high(cls, value: float, info: ValidationInfo) -> float:
        return check_below(value, info, "lag_high")

    @field_validator("timeout")
    @classmethod
    def _timeout_below_interval(cls, value: float, info: ValidationInfo) -> float:
        return check_below(value, info, "interval", unit="s")

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
            + (" (or ..._FILE)" if field in SECRET_FIELDS else "")
            for field in REQUIRED_FIELDS[name]
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
        return check_below(value, info, "reassert_available", unit="s")

    @field_validator("annotations_file")
    @classmethod
    def _annotations_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(
                f"no such file {str(value)!r}: mount the Downward API volume, or unset it"
            )
        return value

    @field_validator("kube")
    @classmethod
    def _fleet_margin(cls, value: KubeSettings, info: ValidationInfo) -> KubeSettings:
        provider = info.data.get("provider")
        chosen = info.data.get(provider) if isinstance(provider, str) else None
        if isinstance(chosen, GatewaySettings):
            value.check_margin(str(provider), getattr(chosen, "timeout", 0.0))
        return value

    @field_validator("witness")
    @classmethod
    def _witness_complete(cls, value: WitnessSettings, info: ValidationInfo) -> WitnessSettings:
        value.check(str(info.data.get("provider", "wawp")))
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

    def gateway_settings(self) -> ProviderSettings:
        """The settings of the configured provider."""
        chosen: ProviderSettings = getattr(self, self.provider)
        return chosen

    def secrets(self) -> list[str]:
        """Every secret value, so that log output can be scrubbed of them as a last line."""
        found = (model.secret()[0] for model in (self.wawp, self.waha, self.evolution))
        bot = [secret.get_secret_value() for secret in found if secret is not None]
        return [*bot, *self.witness.secrets()]

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain JSON values, secrets masked."""
        return self.model_dump(mode="json")


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
    ("witness", "provider"),
)
"""(field, the field its validator reads): the second must be declared before the first."""


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
