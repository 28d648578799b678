"""The command line through real subprocesses: exit codes, output, signals, no tracebacks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from conftest import Sim, until

CLI = [sys.executable, "-m", "controller"]


async def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        env=env or {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_version_and_help() -> None:
    code, out, _ = await cli("--version")
    assert (code, out.strip()) == (0, "presence-controller 0.1.0")
    code, out, _ = await cli("--help")
    assert code == 0
    for command in ("run", "demo", "check-config", "check-gateway"):
        assert command in out


async def test_check_config_prints_the_effective_config_masked(sim: Sim) -> None:
    code, out, err = await cli("check-config", env=sim.env(PRESENCE_LAG_LABELS="queue=inbound"))
    assert code == 0, err
    config = json.loads(out)
    assert config["interval"] == 0.05
    assert config["lag_labels"] == {"queue": "inbound"}
    assert config["wawp"]["access_token"] == "**********"
    assert sim.gateway.access_token not in out + err
    assert config["tracing"]["exporter"] == "none"
    code, out, err = await cli(
        "check-config",
        env=sim.env(
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer collector-secret",
        ),
    )
    tracing = json.loads(out)["tracing"]
    assert tracing["headers"] == "set (not shown)" and "collector-secret" not in out


async def test_bad_config_lists_every_error_and_exits_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    env.update(
        PRESENCE_INTERVAL="fast",
        PRESENCE_RISE="-1",
        PRESENCE_WAWP__ACCESS_TOKEN="tok3n-secret",
        OTEL_TRACES_EXPORTER="zipkin",
    )
    for command in ("check-config", "run", "check-gateway"):
        code, out, err = await cli(command, env=env)
        assert code == 2, command
        assert "invalid configuration (5 errors)" in err
        assert "  - OTEL_TRACES_EXPORTER: unsupported exporter 'zipkin'" in err
        assert "  - PRESENCE_HEALTH_URL: Field required" in err
        assert "  - PRESENCE_INTERVAL: invalid duration 'fast'" in err
        assert "  - PRESENCE_RISE: Input should be greater than or equal to 1" in err
        assert "  - PRESENCE_WAWP: provider wawp requires PRESENCE_WAWP__INSTANCE_ID" in err
        assert "Traceback" not in err and "tok3n-secret" not in out + err


async def test_check_gateway(sim: Sim) -> None:
    code, out, err = await cli("check-gateway", env=sim.env())
    assert (code, out.strip()) == (0, "wawp: credentials accepted; session is WORKING"), err
    code, out, err = await cli("check-gateway", "--set", "unavailable", env=sim.env())
    assert code == 0 and "wawp: presence set to unavailable" in out, err
    assert sim.gateway.presence == "unavailable"


async def test_check_gateway_reports_failures_without_the_token(sim: Sim) -> None:
    code, out, err = await cli(
        "check-gateway", env=sim.env(PRESENCE_WAWP__ACCESS_TOKEN="bad-token-1")
    )
    assert code == 1
    assert "wawp: session info: HTTP 401: the gateway rejected the credentials [auth_error]" in err
    assert "bad-token-1" not in out + err and "Traceback" not in err
    sim.gateway.session_state = "SCAN_QR_CODE"
    code, out, err = await cli("check-gateway", env=sim.env())
    assert code == 1 and "session is SCAN_QR_CODE" in out


async def test_run_then_sigterm_writes_unavailable_and_exits_0(sim: Sim) -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "run",
        env=sim.env(PRESENCE_REASSERT_AVAILABLE="100ms"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while sim.gateway.presence != "available":
        assert loop.time() < deadline, "never became available"
        await asyncio.sleep(0.02)
    sim.gateway.set_delay = 0.3  # the next re-assert (every 100 ms) is held 300 ms
    await until(lambda: sim.gateway.in_flight == 1)
    sent = loop.time()
    proc.send_signal(signal.SIGTERM)  # while that call is in flight
    assert sim.gateway.in_flight == 1
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0
    assert loop.time() - sent < 5.0
    assert sim.gateway.presence == "unavailable"
    lines = [json.loads(line) for line in err.decode().splitlines()]
    assert lines[-1]["msg"] == "wrote unavailable on shutdown"
    assert any(line.get("event") == "transition" for line in lines)
    assert sim.gateway.access_token not in err.decode()


async def test_run_with_the_admin_port_taken_fails_cleanly(sim: Sim) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, _, err = await cli("run", env=sim.env(PRESENCE_LISTEN=f"127.0.0.1:{port}"))
    assert code == 1
    assert "presence-controller: cannot start:" in err and "Traceback" not in err


async def test_demo_runs_the_scenario_and_exits_0() -> None:
    """The command itself, as `make demo` runs it (with --provider); every provider's scene at
    its own speed, in virtual time: test_virtual_time."""
    code, out, err = await cli("demo", "--provider", "waha", "--speed", "4", timeout=60)
    assert code == 0, out + err
    assert "10/10 steps behaved as expected" in out
    for text in ("a simulated WAHA gateway", "POST /api/sim-instance/presence -> 429", "SIGTERM"):
        assert text in out, text
    assert "FAILED" not in out


async def test_the_fleet_demo_runs_at_the_top_of_its_speed_range() -> None:
    """Its leases lapsed while the last leader shut down above speed 4."""
    code, out, err = await cli("demo", "--fleet", "--speed", "10", timeout=90)
    assert code == 0, out + err
    assert "8/8 steps behaved as expected" in out and "FAILED" not in out


async def test_windows_lists_the_next_activations_in_utc_and_local_time() -> None:
    code, out, err = await cli(
        "windows", "Sun 02:30-03:30 Europe/Berlin", "--count", "2", "--from", "2026-10-24T00:00:00Z"
    )
    assert code == 0, err
    assert out.splitlines() == [
        "schedule: Sun 02:30-03:30 Europe/Berlin",
        "from:     2026-10-24 00:00:00 UTC",
        "  1. Sun 2026-10-25 00:30 UTC (Sun 02:30 CEST)  ->  "
        "Sun 2026-10-25 01:00 UTC (Sun 02:00 CET)",
        "  2. Sun 2026-10-25 01:30 UTC (Sun 02:30 CET)  ->  "
        "Sun 2026-10-25 02:30 UTC (Sun 03:30 CET)",
    ]


async def test_windows_for_constant_and_active_schedules() -> None:
    code, out, _ = await cli("windows", "on", "--from", "2026-11-27T12:00:00Z")
    assert code == 0 and "  1. active now  ->  no end (until the annotation is removed)" in out
    code, out, _ = await cli("windows", "off")
    assert code == 0 and out.splitlines()[-1] == "never active"


async def test_windows_reports_the_parse_error_and_exits_2() -> None:
    code, out, err = await cli("windows", "Mon-Fri 22:00-06:00 Europe/Berln")
    assert (code, out) == (2, "")
    assert err.strip() == (
        "presence-controller: window 'Mon-Fri 22:00-06:00 Europe/Berln': unknown time zone "
        "'Europe/Berln': expected an IANA name such as UTC or Europe/Berlin"
    )
    code, _, err = await cli("windows", "true", "--from", "yesterday")
    assert code == 2 and err.startswith("presence-controller: --from: expected an RFC 3339")


async def test_typos_in_presence_variables_are_refused_with_a_suggestion(sim: Sim) -> None:
    env = sim.env(PRESENCE_INTERVALL="2", PRESENCE_LAGHIGH="30")
    for command in ("check-config", "run"):
        code, out, err = await cli(command, env=env)
        assert code == 2, (command, out, err)
        assert "invalid configuration (2 errors)" in err
        assert "  - PRESENCE_INTERVALL: unknown setting (did you mean PRESENCE_INTERVAL?)" in err
        assert "  - PRESENCE_LAGHIGH: unknown setting (did you mean PRESENCE_LAG_HIGH?)" in err
    # The kubelet's service links for a Service named presence-controller are not typos.
    links = sim.env(
        PRESENCE_CONTROLLER_SERVICE_HOST="10.0.0.1",
        PRESENCE_CONTROLLER_SERVICE_PORT="8090",
        PRESENCE_CONTROLLER_PORT="tcp://10.0.0.1:8090",
        PRESENCE_CONTROLLER_PORT_8090_TCP_ADDR="10.0.0.1",
    )
    code, _, err = await cli("check-config", env=links)
    assert code == 0, err


async def test_a_config_file_error_names_the_file_key(sim: Sim, tmp_path: Path) -> None:
    path = tmp_path / "presence.yaml"
    path.write_text("interval: fast\nlag_hihg: 30\n")
    code, _, err = await cli("check-config", env=sim.env(PRESENCE_CONFIG_FILE=str(path)))
    assert code == 2
    env = {k: v for k, v in sim.env().items() if k != "PRESENCE_INTERVAL"}
    code, _, err = await cli("check-config", env={**env, "PRESENCE_CONFIG_FILE": str(path)})
    assert code == 2
    assert f"  - {path}: interval: invalid duration 'fast'" in err
    assert f"  - {path}: lag_hihg: unknown setting (did you mean lag_high?)" in err


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "PRESENCE_WAWP__INSTANCE_ID",
            "REPLACE-WITH-YOUR-WAWP-INSTANCE-ID",
            "PRESENCE_WAWP__INSTANCE_ID: 'REPLACE-WITH-YOUR-WAWP-INSTANCE-ID' is a placeholder",
        ),
        ("PRESENCE_WAWP__INSTANCE_ID", "YOUR_INSTANCE_ID", "is a placeholder"),
        ("PRESENCE_WAWP__ACCESS_TOKEN", "REPLACE-WITH-YOUR-WAWP-ACCESS-TOKEN", "a placeholder"),
        ("PRESENCE_WAWP__ACCESS_TOKEN", "<your-token>", "a placeholder"),
        ("PRESENCE_WAWP__ACCESS_TOKEN", "xxxxxxxxxxxx", "a placeholder"),
    ],
)
async def test_placeholder_credentials_are_refused(
    sim: Sim, variable: str, value: str, expected: str
) -> None:
    for command in ("check-config", "run"):
        code, out, err = await cli(command, env=sim.env(**{variable: value}))
        assert code == 2, (command, out, err)
        assert "invalid configuration (1 error):" in err
        assert expected in err
        if "TOKEN" in variable:
            assert value not in out + err, "a token, even a fake one, is never printed"


async def test_a_placeholder_token_file_is_refused_as_shipped_by_a_template(
    sim: Sim, tmp_path: Path
) -> None:
    token = tmp_path / "access-token"
    token.write_text("REPLACE-WITH-YOUR-WAWP-ACCESS-TOKEN\n")
    env = {k: v for k, v in sim.env().items() if k != "PRESENCE_WAWP__ACCESS_TOKEN"}
    env["PRESENCE_WAWP__ACCESS_TOKEN_FILE"] = str(token)
    code, _, err = await cli("run", env=env)
    assert code == 2
    assert f"access token file '{token}': holds a placeholder, not an access token" in err


async def test_an_unknown_sampler_fails_check_config() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    env.update(
        PRESENCE_HEALTH_URL="http://127.0.0.1:1/healthz",
        PRESENCE_WAWP__INSTANCE_ID="instance-1",
        PRESENCE_WAWP__ACCESS_TOKEN="k3j5h6g7f8d9",
        OTEL_TRACES_SAMPLER="bogus",
    )
    code, _, err = await cli("check-config", env=env)
    assert code == 2
    assert "invalid configuration (1 error):" in err
    assert "  - OTEL_TRACES_SAMPLER: unsupported sampler 'bogus': expected always_on," in err
    env.update(OTEL_TRACES_SAMPLER="traceidratio", OTEL_TRACES_SAMPLER_ARG="2")
    code, _, err = await cli("check-config", env=env)
    assert code == 2 and "OTEL_TRACES_SAMPLER_ARG: expected a ratio between 0 and 1" in err


async def test_check_gateway_set_makes_no_call_on_a_session_that_is_not_working(sim: Sim) -> None:
    sim.gateway.session_state = "SCAN_QR_CODE"
    code, out, err = await cli("check-gateway", "--set", "available", env=sim.env())
    assert code == 1, out + err
    assert "session is SCAN_QR_CODE" in out
    assert "presence not set: no call was made" in out
    assert "presence set to" not in out
    assert sim.gateway.sets(status=None) == []


@pytest.mark.parametrize("speed", ["0", "-1", "nan", "fast", "1000"])
async def test_demo_refuses_a_bad_speed(speed: str) -> None:
    code, out, err = await cli("demo", "--speed", speed)
    assert code == 2, out + err
    assert "argument --speed:" in err and "Traceback" not in err


async def test_run_logs_one_start_line_with_the_effective_mode(sim: Sim) -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "run",
        env=sim.env(PRESENCE_DRY_RUN="true"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    first = json.loads(await asyncio.wait_for(proc.stderr.readline(), 10))
    proc.send_signal(signal.SIGTERM)
    _, rest = await asyncio.wait_for(proc.communicate(), 10)
    assert first["event"] == "start" and first["dry_run"] is True
    assert first["provider"] == "wawp"
    host, _, port = first["admin"].rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0, "the bound address, not the configured :0"
    assert "started: dry run" in first["msg"] and "interval 0.05s" in first["msg"]
    lines = [json.loads(line) for line in rest.decode().splitlines()]
    assert [line["event"] for line in lines].count("start") == 0, "once"
    shutdown = [line["msg"] for line in lines if line.get("event") == "shutdown"]
    assert shutdown[-1] == "dry run: would write unavailable on shutdown (no gateway call made)"
    assert not any("wrote unavailable" in message for message in shutdown)
    assert sim.gateway.calls == []
