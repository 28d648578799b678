"""The gateway client for the configured provider, and its credential followed as it rotates."""

from __future__ import annotations

import logging
import os

from opentelemetry import trace

from controller.config import Settings, check_token
from controller.gateway.base import Gateway
from controller.secret_file import SecretFile
from controller.telemetry.http_tracing import traced_transport
from controller.telemetry.logs import add_secret, event

log = logging.getLogger("presence.controller")


def build_gateway(
    settings: Settings,
    tracer: trace.Tracer | None = None,
    token: SecretFile | None = None,
) -> Gateway:
    """The gateway client for the configured provider (HTTP spans when traced); with `token`,
    every call uses the secret file's current value."""
    transport = traced_transport(tracer) if tracer is not None else None
    current = (lambda: token.value) if token is not None else None
    agent = user_agent(settings)
    if settings.provider == "waha":
        from controller.gateway.waha import WahaGateway

        return WahaGateway(settings.waha, transport=transport, token=current, agent=agent)
    if settings.provider == "evolution":
        from controller.gateway.evolution import EvolutionGateway

        return EvolutionGateway(settings.evolution, transport=transport, token=current, agent=agent)
    from controller.gateway.wawp import WawpGateway

    return WawpGateway(settings.wawp, transport=transport, token=current, agent=agent)


def user_agent(settings: Settings) -> str:
    """`presence-controller`, and in fleet mode the replica (`presence-controller (pod-a)`): the
    gateway's logs then say which replica wrote."""
    if not settings.kube.enabled:
        return "presence-controller"
    pod = settings.kube.pod_name or os.environ.get("POD_NAME") or os.environ.get("HOSTNAME")
    return f"presence-controller ({pod})" if pod else "presence-controller"


def token_file(settings: Settings) -> SecretFile | None:
    """The provider's credential as a followed secret file, when it comes from one."""
    secret, path = settings.gateway_settings().secret()
    if path is None or secret is None:
        return None
    return SecretFile(path, secret.get_secret_value(), check_token)


def credential_name(settings: Settings) -> str:
    """What the provider calls its credential, for messages."""
    return "access token" if settings.provider == "wawp" else "API key"


class Credential:
    """The gateway credential of `settings`: a secret file followed as it rotates (or a fixed
    value, which never changes); every change and every error said once."""

    def __init__(self, settings: Settings) -> None:
        self.file = token_file(settings)
        self.name = credential_name(settings)
        self._error: str | None = None

    def secrets(self) -> list[str]:
        """The current value, when it comes from a file (for scrubbing)."""
        return [self.file.value] if self.file is not None else []

    def reread(self, auth_failed: bool = False) -> bool:
        """Look at the file (no read when unchanged); True when a new value was taken.
        `auth_failed`: the gateway refused the old one (the line then says it is retried)."""
        if self.file is None:
            return False
        check = self.file.refresh()
        if check.error != self._error:
            self._error = check.error
            if check.error is not None:
                event(log, logging.ERROR, "secret", f"{self.name} file: {check.error}")
        if check.changed:
            add_secret(self.file.value)
            what = self.name.removeprefix("access ")
            message = f"{self.name} file changed: using the new {what}"
            if auth_failed:
                message += "; retrying the gateway at once"
            event(log, logging.INFO, "secret", message)
        return check.changed
