"""Settings: environment and files, durations, cross-field checks, secrets, every error at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from controller.config import (
    ConfigError,
    Settings,
    load_settings,
    parse_duration,
    reference_markdown,
)

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "s3cr3t-t0ken-value"  # what the minimal_env fixture (conftest) sets


def errors_of(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    return caught.value.errors


def test_defaults_match_the_contract(minimal_env: None) -> None:
    s = load_settings()
    assert (s.lag_metric, s.lag_aggregate, s.lag_high, s.lag_low) == (
        "webhook_queue_lag_seconds",
        "max",
        30.0,
        10.0,
    )
    assert (s.missing_lag, s.interval, s.timeout, s.jitter, s.rise, s.fall) == (
        "bad",
        5.0,
        2.0,
        0.1,
        3,
        3,
    )
    # Re-assert and session-read periods chosen with the "Presence truth" bench (the
    # contract's 20 s / 300 s / 60 s showed the bot offline half the time on Baileys).
    assert (s.hold_down, s.startup_grace, s.reassert_available, s.reassert_unavailable) == (
        30.0,
        60.0,
        8.0,
        60.0,
    )
    assert (s.session_check, s.provider, s.listen, s.on_shutdown, s.dry_run) == (
        15.0,
        "wawp",
        "0.0.0.0:8090",
        "unavailable",
        False,
    )
    assert (s.log_format, s.log_level) == ("json", "info")
    assert str(s.wawp.base_url) == "https://api.wawp.net/"
    assert (s.wawp.field, s.wawp.values) == ("presence", ("available", "unavailable"))
    assert s.metrics_url is None and s.lag_labels == {}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2", 2.0),
        ("2.5", 2.5),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        (".5s", 0.5),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5x", "1w", "-1s", "", "ms", "1 h 2m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_env_values_are_parsed(minimal_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "PRESENCE_INTERVAL": "500ms",
        "PRESENCE_TIMEOUT": "200ms",
        "PRESENCE_HOLD_DOWN": "5m",
        "PRESENCE_LAG_LABELS": "queue=inbound, tenant=a",
        "PRESENCE_WAWP__VALUES": "online,offline",
        "PRESENCE_WAWP__FIELD": "state",
        "PRESENCE_LOG_LEVEL": "DEBUG",
        "PRESENCE_LISTEN": "[::1]:9000",
    }.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert (s.interval, s.timeout, s.hold_down) == (0.5, 0.2, 300.0)
    assert s.lag_labels == {"queue": "inbound", "tenant": "a"}
    assert s.wawp.values == ("online", "offline") and s.wawp.field == "state"
    assert s.log_level == "debug"
    assert s.listen_host_port == ("::1", 9000)


def test_every_error_is_listed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    errors = errors_of(
        monkeypatch,
        PRESENCE_HEALTH_URL="not a url",
        PRESENCE_LAG_HIGH="10",
        PRESENCE_LAG_LOW="20",
        PRESENCE_INTERVAL="1s",
        PRESENCE_TIMEOUT="2s",
        PRESENCE_RISE="0",
        PRESENCE_MISSING_LAG="maybe",
        PRESENCE_LAG_LABELS="queue",
        PRESENCE_LISTEN="8090",
    )
    text = "\n".join(errors)
    assert len(errors) == 8, text
    assert "PRESENCE_HEALTH_URL: Input should be a valid URL" in text
    assert "PRESENCE_LAG_LOW: must be < LAG_HIGH (10), got 20" in text
    assert "PRESENCE_TIMEOUT: must be < INTERVAL (1s), got 2s" in text
    assert "PRESENCE_RISE: Input should be greater than or equal to 1" in text
    assert "PRESENCE_MISSING_LAG: Input should be 'bad' or 'ignore'" in text
    assert "PRESENCE_LAG_LABELS: invalid label matcher 'queue': expected name=value" in text
    assert "PRESENCE_LISTEN: expected host:port" in text
    assert "PRESENCE_WAWP: provider wawp requires PRESENCE_WAWP__INSTANCE_ID and " in text


def test_missing_health_url_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    errors = errors_of(
        monkeypatch, PRESENCE_WAWP__INSTANCE_ID="i", PRESENCE_WAWP__ACCESS_TOKEN="token-123"
    )
    assert errors == ["PRESENCE_HEALTH_URL: Field required"]


def test_unknown_nested_setting_is_refused(
    minimal_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert errors_of(monkeypatch, PRESENCE_WAWP__TOKEN="x") == [
        "PRESENCE_WAWP__TOKEN: unknown setting (did you mean PRESENCE_WAWP__ACCESS_TOKEN?); "
        "see docs/configuration.md"
    ]


def test_secret_never_appears_in_errors(
    minimal_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("other-token")
    errors = errors_of(
        monkeypatch, PRESENCE_WAWP__ACCESS_TOKEN_FILE=str(token_file), PRESENCE_LAG_HIGH="x"
    )
    assert "PRESENCE_WAWP: set ACCESS_TOKEN or ACCESS_TOKEN_FILE, not both" in errors
    assert len(errors) == 2
    assert all(TOKEN not in e and "other-token" not in e for e in errors)


def test_wrongly_typed_token_is_not_echoed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("health_url: http://h/\nwawp: {instance_id: i, access_token: 987654321}\n")
    errors = errors_of(monkeypatch, PRESENCE_CONFIG_FILE=str(path))
    assert errors == [f"{path}: wawp.access_token: Input should be a valid string"]


def test_token_from_file(
    minimal_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    monkeypatch.delenv("PRESENCE_WAWP__ACCESS_TOKEN")
    monkeypatch.setenv("PRESENCE_WAWP__ACCESS_TOKEN_FILE", str(token_file))
    s = load_settings()
    assert s.wawp.access_token is not None
    assert s.wawp.access_token.get_secret_value() == "file-token"
    assert s.secrets() == ["file-token"]


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read access token file"), ("\n", "too short"), ("abc", "too short")],
)
def test_bad_token_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None, message: str
) -> None:
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_text(content)
    errors = errors_of(
        monkeypatch,
        PRESENCE_HEALTH_URL="http://h/",
        PRESENCE_WAWP__INSTANCE_ID="i",
        PRESENCE_WAWP__ACCESS_TOKEN_FILE=str(token_file),
    )
    assert len(errors) == 1 and errors[0].startswith("PRESENCE_WAWP: ") and message in errors[0]


def test_masked_output_hides_the_token(minimal_env: None) -> None:
    masked = load_settings().masked()
    assert masked["wawp"]["access_token"] == "**********"
    assert TOKEN not in repr(masked)
    assert TOKEN not in repr(load_settings())


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_config_file_with_env_winning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"presence{suffix}"
    if suffix == ".yaml":
        path.write_text(
            "health_url: http://consumer:8080/healthz\n"
            "interval: 10s\n"
            "rise: 4\n"
            "lag_labels: {queue: inbound}\n"
            "wawp:\n  instance_id: from-file\n  access_token: file-token\n"
        )
    else:
        path.write_text(
            'health_url = "http://consumer:8080/healthz"\n'
            'interval = "10s"\n'
            "rise = 4\n"
            'lag_labels = { queue = "inbound" }\n'
            '[wawp]\ninstance_id = "from-file"\naccess_token = "file-token"\n'
        )
    monkeypatch.setenv("PRESENCE_CONFIG_FILE", str(path))
    monkeypatch.setenv("PRESENCE_RISE", "5")
    s = load_settings()
    assert str(s.health_url) == "http://consumer:8080/healthz"
    assert (s.interval, s.rise, s.lag_labels) == (10.0, 5, {"queue": "inbound"})
    assert s.wawp.instance_id == "from-file"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.yaml", None, "no such file"),
        ("config.json", "{}", "expected a .yaml, .yml or .toml file"),
        ("bad.yaml", "health_url: [unclosed\n", "cannot parse"),
        ("bad.toml", "health_url = \n", "cannot parse"),
        ("list.yaml", "- a\n- b\n", "must hold a mapping of settings, not a list"),
    ],
)
def test_bad_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    errors = errors_of(monkeypatch, PRESENCE_CONFIG_FILE=str(path))
    assert len(errors) == 1
    assert errors[0].startswith("PRESENCE_CONFIG_FILE: ") and message in errors[0]


def test_from_values_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRESENCE_DRY_RUN", "true")
    s = Settings.from_values(
        health_url="http://h/", wawp={"instance_id": "i", "access_token": "token-123"}
    )
    assert s.dry_run is False


def test_reference_doc_is_generated_from_the_model() -> None:
    table = reference_markdown()
    assert "| `PRESENCE_HEALTH_URL` | required | Consumer health endpoint" in table
    assert "| `PRESENCE_WAWP__VALUES` | `available,unavailable` |" in table
    assert "| `PRESENCE_INTERVAL` | `5` |" in table
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert doc == table, "docs/configuration.md is stale: run `make docs`"


def test_maintenance_settings_are_validated_at_start(
    minimal_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors = errors_of(
        monkeypatch,
        PRESENCE_ANNOTATIONS_FILE="/etc/podinfo/annotations-missing",
        PRESENCE_MAINTENANCE_WINDOWS="Sat 02:00-04:00 UTC; Sun 25:00-26:00 UTC",
        PRESENCE_ONLINE_HOURS="off",
        PRESENCE_MAINTENANCE_LEAD="soon",
    )
    assert sorted(errors) == [
        "PRESENCE_ANNOTATIONS_FILE: no such file '/etc/podinfo/annotations-missing': "
        "mount the Downward API volume, or unset it",
        "PRESENCE_MAINTENANCE_LEAD: invalid duration 'soon': expected seconds or a number with a "
        "unit ms, s, m, h or d (500ms, 30s, 5m, 1h, 1d)",
        "PRESENCE_MAINTENANCE_WINDOWS: window 2 of 2 'Sun 25:00-26:00 UTC': invalid time "
        "'25:00': expected HH:MM from 00:00 to 23:59",
        "PRESENCE_ONLINE_HOURS: 'off' would keep the bot offline for good: leave ONLINE_HOURS "
        "unset for no limit",
    ]


@pytest.mark.parametrize(
    ("values", "error"),
    [
        (
            {"PRESENCE_ONLINE_HOURS_HOLIDAYS": "DE-XX"},
            "PRESENCE_ONLINE_HOURS_HOLIDAYS: unknown subdivision 'DE-XX': DE has BB, BE, BW, BY",
        ),
        (
            {"PRESENCE_ONLINE_HOURS_HOLIDAYS": "Bavaria"},
            "PRESENCE_ONLINE_HOURS_HOLIDAYS: unknown country 'Bavaria': expected an ISO 3166-1 "
            "alpha-2 code such as 'DE', optionally with a subdivision ('DE-BY')",
        ),
        (
            {"PRESENCE_ONLINE_HOURS_HOLIDAYS": " , "},
            "PRESENCE_ONLINE_HOURS_HOLIDAYS: expected country or subdivision codes such as "
            "'DE-BY,AT'",
        ),
        (
            {"PRESENCE_ONLINE_HOURS_HOLIDAYS": "AT", "PRESENCE_ONLINE_HOURS": None},
            "PRESENCE_ONLINE_HOURS_HOLIDAYS: holidays close online hours: set ONLINE_HOURS too",
        ),
        (
            {
                "PRESENCE_ONLINE_HOURS_HOLIDAYS": "AT",
                "PRESENCE_ONLINE_HOURS": "Mon-Fri 09:00-17:00 Europe/Vienna; Sat 10:00-12:00 UTC",
            },
            "PRESENCE_ONLINE_HOURS_HOLIDAYS: holidays need online hours of weekly windows in one "
            "zone (a holiday is a local day): found Europe/Vienna, UTC",
        ),
        (
            {"PRESENCE_MAINTENANCE_CALENDAR": "/etc/presence/missing.ics"},
            "PRESENCE_MAINTENANCE_CALENDAR: no such file '/etc/presence/missing.ics': mount the "
            "calendar, or unset it",
        ),
        (
            {"PRESENCE_NOTICE": "8d"},
            "PRESENCE_NOTICE: at most 7d, got 691200: a notice a week ahead is noise, not a "
            "warning",
        ),
    ],
)
def test_holidays_calendar_and_notice_are_validated_at_start(
    minimal_env: None, monkeypatch: pytest.MonkeyPatch, values: dict[str, str | None], error: str
) -> None:
    values = {"PRESENCE_ONLINE_HOURS": "Mon-Fri 09:00-17:00 Europe/Berlin", **values}
    if values["PRESENCE_ONLINE_HOURS"] is None:
        del values["PRESENCE_ONLINE_HOURS"]
    errors = errors_of(monkeypatch, **values)
    assert len(errors) == 1 and errors[0].startswith(error), errors


def test_maintenance_settings_build_schedules(
    minimal_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    annotations = tmp_path / "annotations"
    annotations.write_text("")
    monkeypatch.setenv("PRESENCE_ANNOTATIONS_FILE", str(annotations))
    monkeypatch.setenv("PRESENCE_MAINTENANCE_WINDOWS", "Sat 02:00-04:00 Europe/Berlin")
    monkeypatch.setenv("PRESENCE_ONLINE_HOURS", "Mon-Fri 09:00-18:00 UTC")
    monkeypatch.setenv("PRESENCE_MAINTENANCE_LEAD", "5m")
    s = load_settings()
    assert str(s.maintenance_schedule()) == "Sat 02:00-04:00 Europe/Berlin"
    assert str(s.online_hours_schedule()) == "Mon-Fri 09:00-18:00 UTC"
    assert s.maintenance_lead == 300.0 and s.annotations_file == annotations


def test_a_token_too_short_to_be_real_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    errors = errors_of(
        monkeypatch,
        PRESENCE_HEALTH_URL="http://h/",
        PRESENCE_WAWP__INSTANCE_ID="i",
        PRESENCE_WAWP__ACCESS_TOKEN="abc",
    )
    assert errors == [
        "PRESENCE_WAWP__ACCESS_TOKEN: too short to be an access token (< 8 characters)"
    ]


def test_cross_field_checks_read_fields_declared_before_them() -> None:
    """A field validator sees only the fields declared before it: reordering the model must
    fail here, not silently skip a check."""
    from controller.config import CROSS_FIELD_CHECKS, Settings

    order = list(Settings.model_fields)
    for field, reads in CROSS_FIELD_CHECKS:
        assert order.index(reads) < order.index(field), (field, reads)


def test_fleet_settings_are_checked_at_start(
    minimal_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().kube.enabled is False, "fleet mode is off by default"
    errors = errors_of(
        monkeypatch,
        PRESENCE_KUBE__ENABLED="true",
        PRESENCE_KUBE__WORKLOAD="daemonset/x",
        PRESENCE_KUBE__MIN_AVAILABLE="150%",
    )
    text = "\n".join(errors)
    assert "PRESENCE_KUBE__WORKLOAD: 'daemonset/x': expected deployment/NAME" in text
    assert "PRESENCE_KUBE__MIN_AVAILABLE: '150%': expected at least 1, and a percentage" in text
    monkeypatch.delenv("PRESENCE_KUBE__WORKLOAD")
    monkeypatch.delenv("PRESENCE_KUBE__MIN_AVAILABLE")
    timing = errors_of(monkeypatch, PRESENCE_KUBE__RENEW_DEADLINE="20s")
    assert timing == [
        "PRESENCE_KUBE: LEASE_DURATION > RENEW_DEADLINE > 1.2 x RETRY_PERIOD: the lease duration "
        "must be greater than the renew deadline"
    ]
    monkeypatch.delenv("PRESENCE_KUBE__RENEW_DEADLINE")
    typo = errors_of(monkeypatch, PRESENCE_KUBE__ENABLD="true")
    assert typo[0].startswith(
        "PRESENCE_KUBE__ENABLD: unknown setting (did you mean PRESENCE_KUBE__ENABLED?)"
    )


def _number_settings(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """Every float or int setting, as a dotted config file key (`kube.lease_duration`)."""
    keys = []
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys += _number_settings(field.annotation, f"{prefix}{name}.")
        elif field.annotation in (float, int):
            keys.append(f"{prefix}{name}")
    return keys


def test_the_number_settings_are_found_at_every_depth() -> None:
    """The test below runs on what this finds: it must reach the nested models."""
    found = set(_number_settings())
    assert {"interval", "rise", "kube.lease_duration", "damping.suppress", "waha.timeout"} <= found
    assert len(found) >= 25


@pytest.mark.parametrize("key", _number_settings())
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e300"])
def test_no_number_setting_takes_infinity_or_a_huge_value_from_a_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, key: str, value: str
) -> None:
    """TOML reads `inf`, `nan` and `1e300` as floats, which skip the duration grammar: each is
    refused at start, named, whatever setting it is (an infinite INTERVAL ticked twice, then
    never again, with /healthz still 200)."""
    section, _, name = key.rpartition(".")
    table = f"[{section}]\n" if section else ""
    path = tmp_path / "c.toml"
    path.write_text(f'health_url = "http://h/"\n{table}{name} = {value}\n')
    errors = errors_of(
        monkeypatch,
        PRESENCE_CONFIG_FILE=str(path),
        PRESENCE_WAWP__INSTANCE_ID="inst-1",
        PRESENCE_WAWP__ACCESS_TOKEN=TOKEN,
    )
    # Some are bounded by another setting (RENEW_DEADLINE < LEASE_DURATION): named by section.
    named = (f"{path}: {key}: ", f"{path}: {section}: ") if section else (f"{path}: {key}: ",)
    assert any(e.startswith(named) for e in errors), errors


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PRESENCE_INTERVAL", "100d", "at most 5m, got 8.64e+06: the presence follows"),
        ("PRESENCE_TIMEOUT", "1e300", "invalid duration"),
        ("PRESENCE_WAHA__TIMEOUT", "30m", "at most 1m, got 1800: one call in flight"),
        ("PRESENCE_KUBE__LEASE_DURATION", "100000d", "at most 5m, got 8.64e+09: a leader that"),
        ("PRESENCE_KUBE__HEARTBEAT", "2m", "at most 1m, got 120: a member that died"),
        ("PRESENCE_REASSERT_AVAILABLE", "1d", "at most 1h, got 86400"),
        ("PRESENCE_DAMPING__MAX_SUPPRESS", "2d", "at most 1d, got 172800"),
        ("PRESENCE_RISE", "1000000", "Input should be less than or equal to 100"),
    ],
)
def test_durations_are_bounded_above_with_the_reason(
    minimal_env: None, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    errors = errors_of(monkeypatch, **{variable: value})
    assert any(e.startswith(f"{variable}: ") and message in e for e in errors), errors


def test_reference_states_each_bound() -> None:
    text = reference_markdown()
    assert "| `PRESENCE_INTERVAL` | `5` |" in text
    assert "At most `5m`: the presence follows the consumer" in text
    assert "At most `1m`: one call in flight at a time" in text


def test_fleet_mode_refuses_a_gateway_call_longer_than_the_margin(
    minimal_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leader's call must end before another replica may take over: WAHA's default 6 s fits
    (LEASE_DURATION 15 s - 2 x RETRY_PERIOD 2 s = 11 s), 12 s does not; outside fleet mode it
    does."""
    monkeypatch.setenv("PRESENCE_PROVIDER", "waha")
    monkeypatch.setenv("PRESENCE_WAHA__BASE_URL", "http://waha:3000")
    monkeypatch.setenv("PRESENCE_WAHA__TIMEOUT", "12")
    assert load_settings().waha.timeout == 12.0
    monkeypatch.setenv("PRESENCE_KUBE__ENABLED", "true")
    assert errors_of(monkeypatch) == [
        "PRESENCE_KUBE: PRESENCE_WAHA__TIMEOUT (12s) must be at most LEASE_DURATION - 2 x "
        "RETRY_PERIOD (11s) in fleet mode: a leader's gateway call must end before another "
        "replica may take over"
    ]
    monkeypatch.delenv("PRESENCE_WAHA__TIMEOUT")
    assert load_settings().waha.timeout == 6.0


@pytest.mark.parametrize("variable", ["PRESENCE_WAHA__API_KEY", "PRESENCE_EVOLUTION__API_KEY"])
def test_a_credential_loses_its_newline_and_is_refused_with_one_inside(
    minimal_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    """`echo key > f; kubectl create secret --from-file` gives a trailing newline: dropped at
    load, so that no HTTP library ever refuses (and quotes) the header. Whitespace or a control
    character inside is refused, and never quoted."""
    provider = variable.split("__")[0].removeprefix("PRESENCE_").lower()
    monkeypatch.setenv("PRESENCE_PROVIDER", provider)
    monkeypatch.setenv(f"PRESENCE_{provider.upper()}__BASE_URL", "http://gw:3000")
    monkeypatch.setenv("PRESENCE_EVOLUTION__INSTANCE", "bot")
    monkeypatch.setenv(variable, "k3y-with-newline\n")
    settings = load_settings()
    assert settings.secrets() == [TOKEN, "k3y-with-newline"]
    for inside in ("k3y-with\nnewline", "k3y with space", "k3y-\x1b[31m-ansi", "k3y\u200bzero"):
        monkeypatch.setenv(variable, inside)
        errors = errors_of(monkeypatch)
        assert errors == [
            f"{variable}: holds whitespace or a control character inside: a credential is one "
            "word (a stray newline or space in the Secret?)"
        ]
    key_file = tmp_path / "key"
    key_file.write_text("k3y-in\tfile\n")
    monkeypatch.delenv(variable)
    errors = errors_of(monkeypatch, **{f"{variable}_FILE": str(key_file)})
    assert len(errors) == 1 and "holds whitespace or a control character" in errors[0]
    assert "k3y" not in errors[0].replace(str(key_file), "")


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("1: 2\n", "a setting is a name, got 1"),
        ("? [a, b]\n: c\n", "cannot parse"),
    ],
)
def test_a_config_file_that_parses_oddly_is_refused_without_a_traceback(
    minimal_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str, error: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(content)
    (line,) = errors_of(monkeypatch, PRESENCE_CONFIG_FILE=str(path))
    assert line.startswith("PRESENCE_CONFIG_FILE: ") and error in line and "\n" not in line
