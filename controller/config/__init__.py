"""Settings: the single source of truth for every option's name, default, validation and docs.

Environment variables use the prefix `PRESENCE_` and `__` for nesting (`PRESENCE_WAWP__BASE_URL`);
an optional YAML or TOML file (`PRESENCE_CONFIG_FILE`) holds the same fields, and the environment
wins over it. The attribute docstrings of the models are the reference documentation:
`docs/configuration.md` is generated from them (`presence-controller check-config --reference`).

One room per concern: `values` (names, durations and their bounds, credentials), `models` (the
nested groups: providers, damping, fleet mode), `settings` (the model), `loading` (environment,
file, errors, the reference).
"""

from controller.config.loading import (
    ConfigError,
    env_name,
    known_variables,
    load_settings,
    reference_markdown,
    unknown_variables,
)
from controller.config.models import (
    DampingSettings,
    EvolutionSettings,
    KubeSettings,
    ProviderSettings,
    WahaSettings,
    WawpSettings,
)
from controller.config.settings import CROSS_FIELD_CHECKS, Settings
from controller.config.values import (
    CONFIG_FILE_VAR,
    ENV_PREFIX,
    NESTED_DELIMITER,
    AtMost,
    check_token,
    human,
    is_placeholder,
    listen_address,
    parse_duration,
)

__all__ = [
    "CONFIG_FILE_VAR",
    "CROSS_FIELD_CHECKS",
    "ENV_PREFIX",
    "NESTED_DELIMITER",
    "AtMost",
    "ConfigError",
    "DampingSettings",
    "EvolutionSettings",
    "KubeSettings",
    "ProviderSettings",
    "Settings",
    "WahaSettings",
    "WawpSettings",
    "check_token",
    "env_name",
    "human",
    "is_placeholder",
    "known_variables",
    "listen_address",
    "load_settings",
    "parse_duration",
    "reference_markdown",
    "unknown_variables",
]
