"""The witness settings (`PRESENCE_WITNESS__*`): a second WhatsApp session that watches the bot."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from controller.config.models import EvolutionSettings, WahaSettings, WawpSettings
from controller.config.values import (
    GATEWAY_CALL,
    AtMost,
    Duration,
    PositiveDuration,
    credible,
    read_secret_file,
    real_name,
)

_CHAT_ID = re.compile(r"\d{5,20}@(c\.us|s\.whatsapp\.net)")
MIN_WEBHOOK_TOKEN = 16
"""The webhook's shared secret is ours to choose: long enough not to be guessed."""
_SECRETS = (("access_token", "access token"), ("api_key", "API key"), ("webhook_token", "token"))


class WitnessSettings(BaseModel):
    """The witness (docs/witness.md): a second WhatsApp session that watches the bot as a contact
    does, measures what contacts are shown, and writes the intended presence early when they are
    shown something else. It never decides."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = False
    """Run the witness (in fleet mode: on the leader only)."""
    provider: Literal["wawp", "waha", "evolution"] | None = None
    """The witness session's gateway: `wawp`, `waha` or `evolution`; default `PROVIDER`."""
    base_url: AnyHttpUrl | None = None
    """Base URL of the witness's gateway; default `https://api.wawp.net` for Wawp, required for
    WAHA and Evolution (subscriptions)."""
    session: str = Field(default="default", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    """WAHA: the witness's session name."""
    instance_id: str | None = None
    """Wawp: the witness's instance ID (required with Wawp)."""
    instance: str | None = Field(default=None, min_length=1, pattern=r"^[^/?#%\s]+$")
    """Evolution: the witness's instance name (required with Evolution): its webhooks must name
    it, others are refused."""
    access_token: SecretStr | None = None
    """Wawp: the witness's access token (secret; or `ACCESS_TOKEN_FILE`)."""
    access_token_file: Path | None = None
    """Wawp: file holding the witness's access token; followed as it rotates."""
    api_key: SecretStr | None = None
    """WAHA or Evolution: the witness's API key (secret; or `API_KEY_FILE`)."""
    api_key_file: Path | None = None
    """WAHA or Evolution: file holding the witness's API key; followed as it rotates."""
    bot_chat_id: str | None = None
    """The bot's chat id as the witness sees it, `15551234567@c.us` (required when enabled)."""
    poll: Annotated[PositiveDuration, Field(ge=1.0), AtMost(300.0, "a lie would go unseen")] = 1.0
    """How often the witness's view is read (WAHA, Wawp); at least `1s`. A lie is cut short
    within about this: `available` fades after ~10 s by itself, so a POLL of 5 s or more catches
    little (bench: "Presence truth", "With a witness"). Costs 60/POLL reads a minute on the
    witness's gateway."""
    resubscribe: Annotated[
        PositiveDuration, Field(ge=5.0), AtMost(60.0, "presence subscriptions last 20-60 s")
    ] = 45.0
    """How often the presence subscription is renewed."""
    act: bool = True
    """On a mismatch seen for `MISMATCH_GRACE`, write the intended presence at once (within
    the call budget)."""
    mismatch_grace: Annotated[
        Duration, AtMost(300.0, "a lie seen that long is what the witness is there to stop")
    ] = 0.0
    """How long a mismatch must be seen before the early write (`0`: at first sight), and never
    sooner than this or 2 s after a write of ours (it may be on its way). At most 3 early
    writes a mismatch: past that, writing does not fix it."""
    calibrate: bool = False
    """Set the effective `REASSERT_AVAILABLE` to 0.7 x the 10th percentile of the measured
    decay (3 samples at least), never above the configured value nor below `5s`."""
    webhook_token: SecretStr | None = None
    """Evolution: the shared secret its webhook sends in the `X-Witness-Token` header (at least
    16 characters; or `WEBHOOK_TOKEN_FILE`). Required with Evolution."""
    webhook_token_file: Path | None = None
    """Evolution: file holding the webhook's shared secret."""
    timeout: Annotated[PositiveDuration, GATEWAY_CALL] = 5.0
    """Timeout of one witness call."""

    @field_validator("access_token", "api_key", "webhook_token", mode="before")
    @classmethod
    def _credible(cls, value: object) -> object:
        return credible(value)

    @field_validator("bot_chat_id")
    @classmethod
    def _chat_id(cls, value: str | None) -> str | None:
        if value is not None and not _CHAT_ID.fullmatch(value):
            raise ValueError(
                f"{value!r}: expected the bot's number and a WhatsApp suffix, "
                "15551234567@c.us (or @s.whatsapp.net)"
            )
        return value

    @field_validator("instance_id", "instance")
    @classmethod
    def _real(cls, value: str | None) -> str | None:
        return real_name(value, "witness session's instance")

    @model_validator(mode="after")
    def _files(self) -> Self:
        for field, what in _SECRETS:
            path = getattr(self, f"{field}_file")
            if path is None:
                continue
            if getattr(self, field) is not None:
                raise ValueError(f"set {field.upper()} or {field.upper()}_FILE, not both")
            setattr(self, field, read_secret_file(path, f"witness {what}"))
        token = self.webhook_token
        if token is not None and len(token.get_secret_value()) < MIN_WEBHOOK_TOKEN:
            raise ValueError(
                f"WEBHOOK_TOKEN: at least {MIN_WEBHOOK_TOKEN} characters (it is ours to choose: "
                "openssl rand -hex 24)"
            )
        return self

    def check(self, default_provider: str) -> None:
        """What an enabled witness cannot do without, for its provider (ValueError)."""
        if not self.enabled:
            return
        provider = self.provider or default_provider
        needs = {
            "wawp": ("instance_id", "access_token"),
            "waha": ("base_url",),
            "evolution": ("base_url", "instance", "api_key", "webhook_token"),
        }[provider]
        missing = [n.upper() for n in ("bot_chat_id", *needs) if getattr(self, n) is None]
        if missing:
            names = " and ".join(f"PRESENCE_WITNESS__{n}" for n in missing)
            raise ValueError(f"an enabled witness ({provider}) requires {names}")

    def gateway(self, default_provider: str) -> WawpSettings | WahaSettings | EvolutionSettings:
        """The witness session's connection settings, as a provider's (URL, name, credential)."""
        provider = self.provider or default_provider
        if provider == "waha":
            return WahaSettings(
                base_url=self.base_url, session=self.session, api_key=self.api_key,
                timeout=self.timeout,
            )  # fmt: skip
        if provider == "evolution":
            return EvolutionSettings(
                base_url=self.base_url, instance=self.instance, api_key=self.api_key,
                timeout=self.timeout,
            )  # fmt: skip
        return WawpSettings(
            base_url=self.base_url or AnyHttpUrl("https://api.wawp.net"),
            instance_id=self.instance_id, access_token=self.access_token, timeout=self.timeout,
        )  # fmt: skip

    def secret_file(self, default_provider: str) -> tuple[SecretStr | None, Path | None]:
        """The witness's gateway credential and the file it came from (None: inline)."""
        if (self.provider or default_provider) == "wawp":
            return self.access_token, self.access_token_file
        return self.api_key, self.api_key_file

    def secrets(self) -> list[str]:
        found = (self.access_token, self.api_key, self.webhook_token)
        return [s.get_secret_value() for s in found if s is not None]
