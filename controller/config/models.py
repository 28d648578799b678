"""The nested settings groups: one per gateway provider, flap damping, fleet mode."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, ClassVar, Self

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    NoDecode,
)

from controller.config.values import (
    DAY,
    ENV_PREFIX,
    GATEWAY_CALL,
    NESTED_DELIMITER,
    AtMost,
    PositiveDuration,
    credible,
    parse_value_pair,
    read_secret_file,
    real_name,
)
from controller.core.damping import DampingConfig
from controller.core.election import ElectionConfig
from controller.core.fleet import parse_min_available


class GatewaySettings(BaseModel):
    """What every provider's settings share: one credential, given inline or in a file (read
    and checked at start, then followed as it rotates, see gateway/factory.Credential)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    _credential: ClassVar[tuple[str, str]] = ("api_key", "API key")
    """(field name, what to call it); the file is the field `<name>_file`."""

    @field_validator("access_token", "api_key", mode="before", check_fields=False)
    @classmethod
    def _credible(cls, value: object) -> object:
        return credible(value)

    @model_validator(mode="after")
    def _load_credential_file(self) -> Self:
        field, what = self._credential
        path = getattr(self, f"{field}_file")
        if path is None:
            return self
        if getattr(self, field) is not None:
            upper = field.upper()
            raise ValueError(f"set {upper} or {upper}_FILE, not both")
        setattr(self, field, read_secret_file(path, what))
        return self

    def secret(self) -> tuple[SecretStr | None, Path | None]:
        """The credential and the file it came from (None: given inline)."""
        field, _ = self._credential
        value: SecretStr | None = getattr(self, field)
        path: Path | None = getattr(self, f"{field}_file")
        return value, path


class WawpSettings(GatewaySettings):
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
    values: Annotated[tuple[str, str], NoDecode, BeforeValidator(parse_value_pair)] = (
        "available",
        "unavailable",
    )
    """Body values for the two states, `available,unavailable` (WAHA style: `online,offline`)."""
    timeout: Annotated[PositiveDuration, GATEWAY_CALL] = 5.0
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
        return real_name(value, "instance ID of your Wawp session")


class WahaSettings(GatewaySettings):
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
    timeout: Annotated[PositiveDuration, GATEWAY_CALL] = 6.0
    """Timeout of one gateway call. WAHA holds a set call up to 5 s while the session is not
    WORKING before it answers 422: above 5 s, that answer is seen instead of a timeout."""

    @field_validator("session")
    @classmethod
    def _real_session(cls, value: str) -> str:
        real_name(value, "name of your WAHA session")
        return value


class EvolutionSettings(GatewaySettings):
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
    timeout: Annotated[PositiveDuration, GATEWAY_CALL] = 5.0
    """Timeout of one gateway call."""

    @field_validator("instance")
    @classmethod
    def _real_instance(cls, value: str | None) -> str | None:
        return real_name(value, "name of your Evolution instance")


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

    def check_margin(self, provider: str, timeout: float) -> None:
        """Fleet mode: a leader may start a gateway call only while it can end before another
        replica may take over (LEASE_DURATION after the leader's last renewal); with a renewal
        every RETRY_PERIOD, a call that lasts its timeout needs that much room, and one late
        renewal more (ValueError)."""
        limit = self.lease_duration - 2 * self.retry_period
        if self.enabled and timeout > limit:
            raise ValueError(
                f"{ENV_PREFIX}{provider.upper()}{NESTED_DELIMITER}TIMEOUT ({timeout:g}s) must be "
                f"at most LEASE_DURATION - 2 x RETRY_PERIOD ({limit:g}s) in fleet mode: a "
                "leader's gateway call must end before another replica may take over"
            )

    @model_validator(mode="after")
    def _timing(self) -> KubeSettings:
        try:
            ElectionConfig("check", self.lease_duration, self.renew_deadline, self.retry_period)
        except ValueError as exc:
            raise ValueError(
                f"LEASE_DURATION > RENEW_DEADLINE > 1.2 x RETRY_PERIOD: {exc}"
            ) from None
        return self


ProviderSettings = GatewaySettings
"""The settings of any provider (WawpSettings, WahaSettings, EvolutionSettings)."""
REQUIRED_FIELDS = {
    "wawp": ("instance_id", "access_token"),
    "waha": ("base_url",),
    "evolution": ("base_url", "instance", "api_key"),
}
"""The settings each provider cannot do without (WAHA's API key is optional)."""
