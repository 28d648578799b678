"""`presence-controller replay`: the CSV of the bench trace gives the bench's figures; a
Prometheus range API on loopback (chunked under the points limit, gaps, NaN, several series,
errors, hostile replies, a bearer token); the CLI's output and refusals; and a real Prometheus
server over a TSDB backfilled by promtool."""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from test_bench import bench
from test_cli import cli

from controller.core.hysteresis import HysteresisConfig
from controller.core.replay import Sample, incidents, replay
from controller.replay.command import decision_settings
from controller.replay.report import DECISION_FIELDS, missing_runs, plot, run
from controller.replay.sources import (
    POINTS_PER_QUERY,
    Range,
    ReplayError,
    fetch_prometheus,
    read_csv,
)
from controller.sim import LoopbackServer

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def env_without_presence(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    env.update(extra)
    return env


# The core: incidents and scores.


def test_incidents_are_runs_of_high_lag_lasting_long_enough() -> None:
    lags = [1, 40, 40, 1, 50, 50, 50, 50, None, 45, 45, 45, 45]
    samples = [Sample(T0 + timedelta(seconds=20 * i), lag) for i, lag in enumerate(lags)]
    # Ticks every 20 s: a run of 3 lasts 60 s; a missing sample ends a run.
    assert incidents(samples, 30.0, 60.0) == [(4, 8), (9, 13)]
    assert incidents(samples, 30.0, 40.0) == [(1, 3), (4, 8), (9, 13)]
    assert incidents([], 30.0, 60.0) == []


def test_a_score_counts_changes_minutes_and_detection() -> None:
    lags = [1.0] * 10 + [60.0] * 6 + [1.0] * 20
    samples = [Sample(T0 + timedelta(seconds=5 * i), lag) for i, lag in enumerate(lags)]
    found = incidents(samples, 30.0, 30.0)
    score = replay("x", samples, HysteresisConfig(hold_down=0), found)
    assert found == [(10, 16)]
    assert score.detect == (2,) and score.caught == 1
    assert score.changes == 2  # down at the third bad tick, up after three good ones
    down = [i for i, p in enumerate(score.track) if p.value == "unavailable"]
    assert down == list(range(12, 18))  # up again at the third good tick (18)
    assert score.minutes_unavailable == pytest.approx(6 * 5 / 60)
    assert score.minutes_unavailable_outside == pytest.approx(2 * 5 / 60)


# The CSV of the bench trace.


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    module = bench()
    flap = module.flap_economy()
    path = tmp_path_factory.mktemp("trace") / "flap-economy.csv"
    module.trace_csv(flap.lag, path)
    return path, flap


async def test_replay_of_the_bench_trace_matches_the_bench(trace: tuple[Path, Any]) -> None:
    path, flap = trace
    code, out, err = await cli("replay", "--csv", str(path), "--json", env=env_without_presence())
    assert code == 0, err
    result = json.loads(out)
    (effective,) = result["settings"]
    assert result["ticks"] == len(flap.lag)
    assert [i["ticks"] for i in result["incidents"]] == [b - a for a, b in flap.incidents]
    assert effective["changes"] == flap.controller_changes
    assert effective["detect_ticks"] == flap.caught
    assert effective["caught"] == len(flap.incidents)
    assert effective["minutes_unavailable_outside"] == pytest.approx(
        flap.offline_outside[0], abs=0.01
    )


async def test_the_table_compares_settings_and_the_environment_counts(
    trace: tuple[Path, Any], tmp_path: Path
) -> None:
    path, _ = trace
    png = tmp_path / "replay.png"
    code, out, err = await cli(
        "replay", "--csv", str(path), "--compare", "rise=1,fall=1,damping.enabled=false",
        "--compare", "DAMPING__ENABLED=false", "--plot", str(png),
        env=env_without_presence(PRESENCE_LAG_HIGH="40"),
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert "incidents (lag >= 40 for >= 60s)" in lines[0]
    assert lines[1].split()[:3] == ["setting", "changes", "unavailable"]
    assert [line.split()[0] for line in lines[2:]] == [
        "effective",
        "rise=1,fall=1,damping.enabled=false",
        "DAMPING__ENABLED=false",
    ]
    fall1 = lines[3].split()
    assert int(fall1[1]) > int(lines[2].split()[1]), "fall 1 flips on every spike above 40"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_plot_without_matplotlib_says_how_to_get_it(
    trace: tuple[Path, Any], tmp_path: Path
) -> None:
    path, _ = trace
    shim = tmp_path / "shim" / "matplotlib"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = env_without_presence(PYTHONPATH=str(shim.parent))
    code, out, err = await cli("replay", "--csv", str(path), "--plot", "x.png", env=env)
    assert code == 2 and out == ""
    assert "--plot needs matplotlib: pip install 'presence-controller[plot]'" in err


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--compare", "interval"], "expected KEY=VALUE"),
        (["--compare", "gateway=x"], "'gateway' is not a decision setting"),
        (["--compare", "rise=0"], "rise: Input should be greater than or equal to 1"),
        (["--compare", "lag_low=50"], "lag_low: must be < LAG_HIGH"),
        (["--since", "7d"], "--query, --since, --start, --end go with --prometheus"),
        (["--compare", "interval=10s"], "interval cannot be compared: the ticks are the samples"),
    ],
)
async def test_bad_arguments_exit_2_with_the_reason(
    trace: tuple[Path, Any], args: list[str], error: str
) -> None:
    path, _ = trace
    code, _, err = await cli("replay", "--csv", str(path), *args, env=env_without_presence())
    assert code == 2 and error in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("when,lag\n1,2\n", "the first line must be the header time,lag[,healthy]"),
        ("time,lag\n", "no rows after the header"),
        ("time,lag\n2026-11-20T00:00:00Z,abc\n", "line 2: lag 'abc' is not a number"),
        ("time,lag\n2026-11-20T00:00:00,1\n", "line 2: time: timestamp"),
        ("time,lag\n10,1\n5,1\n", "line 3: times must increase"),
        ("time,lag\n1e300,1\n", "line 2: time '1e300' is not a Unix time"),
        ("time,lag,healthy\n1,2,maybe\n", "healthy must be 1, 0, true or false"),
        ("time,lag\n1,2,3\n", "expected 2 columns, got 3"),
        ("time,lag\n\xff\n", "not UTF-8 text"),
    ],
)
def test_a_malformed_csv_is_refused_with_the_line(tmp_path: Path, content: str, error: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(ReplayError) as caught:
        read_csv(path)
    assert error in str(caught.value)


def test_csv_values_nan_inf_and_health(tmp_path: Path) -> None:
    path = tmp_path / "ok.csv"
    path.write_text("time,lag,healthy\n1,NaN,1\n2,,0\n3,+Inf,\n4,2.5,true\n")
    samples = read_csv(path)
    assert [(s.lag, s.healthy) for s in samples] == [
        (None, True),
        (None, False),
        (math.inf, True),
        (2.5, True),
    ]


def test_a_huge_or_endless_csv_is_bounded(tmp_path: Path) -> None:
    huge = tmp_path / "huge.csv"
    with huge.open("wb") as f:
        f.seek(65 * 2**20)
        f.write(b"\n")
    with pytest.raises(ReplayError, match=r"too large|larger than|limit"):
        read_csv(huge)
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    with pytest.raises(ReplayError):
        read_csv(fifo)


def test_compare_keys_in_every_spelling() -> None:
    for key in ("rise", "RISE", "PRESENCE_RISE"):
        assert decision_settings({}, f"{key}=5").rise == 5
    for key in ("damping.enabled", "DAMPING__ENABLED", "PRESENCE_DAMPING__ENABLED"):
        assert decision_settings({}, f"{key}=false").damping.enabled is False
    env = {"PRESENCE_FALL": "4", "PRESENCE_DAMPING__HALF_LIFE": "5m"}
    assert (decision_settings(env).fall, decision_settings(env).damping.half_life) == (4, 300.0)


# A Prometheus range API on loopback.


class FakePrometheus:
    """`/api/v1/query_range` over a function of time; records every request."""

    def __init__(self, series: int = 1, token: str | None = None) -> None:
        self.requests: list[dict[str, str]] = []
        self.series = series
        self.token = token
        self.reply: web.Response | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/query_range", self.query_range)
        return app

    async def query_range(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.query))
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(
                {"status": "error", "errorType": "unauthorized", "error": "no"}, status=401
            )
        if self.reply is not None:
            return self.reply
        start, end = float(request.query["start"]), float(request.query["end"])
        step = float(request.query["step"])
        count = round((end - start) / step) + 1
        if count > 11_000:
            return web.json_response(
                {
                    "status": "error",
                    "errorType": "bad_data",
                    "error": "exceeded maximum resolution of 11,000 points per timeseries",
                },
                status=400,
            )
        result = []
        for n in range(self.series):
            values = []
            for k in range(count):
                at = start + k * step
                minute = int(at // 60)
                if minute % 10 == 9:
                    continue  # a gap: one minute in ten has no sample
                value = "NaN" if minute % 10 == 8 else f"{(minute % 10) * 10 + n}"
                values.append([at, value])
            result.append({"metric": {"queue": str(n)}, "values": values})
        return web.json_response(
            {"status": "success", "data": {"resultType": "matrix", "result": result}}
        )


@pytest.fixture
async def prometheus() -> Iterator[tuple[FakePrometheus, str]]:  # type: ignore[misc]
    fake = FakePrometheus()
    async with LoopbackServer(fake.app()) as server:
        yield fake, server.url


async def test_a_long_range_is_fetched_in_chunks_on_the_step_grid(
    prometheus: tuple[FakePrometheus, str],
) -> None:
    fake, url = prometheus
    span = Range(T0, T0 + timedelta(days=2), 5.0)  # 34561 points
    lines: list[str] = []
    samples = await fetch_prometheus(url, "lag", None, span, progress=lines.append)
    assert len(samples) == span.points == 34_561
    assert len(fake.requests) == math.ceil(34_561 / POINTS_PER_QUERY)
    assert all(int(r["step"]) == 5 for r in fake.requests)
    # Consecutive chunks meet on the grid: no tick twice, none left out.
    ticks = [s.at for s in samples]
    assert all(b - a == timedelta(seconds=5) for a, b in itertools.pairwise(ticks))
    assert lines[-1].startswith(f"replay: fetched {len(fake.requests)}/{len(fake.requests)}")
    # Gaps and NaN are missing lag; the rest are the values served.
    by_minute = {s.at.minute % 10: s.lag for s in samples[:120]}
    assert by_minute[9] is None and by_minute[8] is None and by_minute[3] == 30.0


async def test_several_series_take_the_max_and_say_so() -> None:
    fake = FakePrometheus(series=3)
    async with LoopbackServer(fake.app()) as server:
        lines: list[str] = []
        span = Range(T0, T0 + timedelta(minutes=2), 5.0)
        samples = await fetch_prometheus(server.url, "lag", None, span, progress=lines.append)
    assert samples[0].lag == 2.0  # minute 0: values 0, 1, 2
    assert "returned 3 series: taking the max per step" in lines[0]


async def test_the_bearer_token_is_sent(tmp_path: Path) -> None:
    fake = FakePrometheus(token="prom-token-123")
    async with LoopbackServer(fake.app()) as server:
        span = Range(T0, T0 + timedelta(minutes=1), 5.0)
        with pytest.raises(ReplayError, match="HTTP 401, unauthorized"):
            await fetch_prometheus(server.url, "lag", None, span)
        samples = await fetch_prometheus(server.url, "lag", None, span, token="prom-token-123")
    assert len(samples) == 13


async def test_health_from_a_second_query() -> None:
    fake = FakePrometheus()
    async with LoopbackServer(fake.app()) as server:
        span = Range(T0, T0 + timedelta(minutes=10), 60.0)
        samples = await fetch_prometheus(server.url, "lag", "up", span)
    # The same fake serves both: 0 (minutes 0 and 10) is unhealthy, and so are NaN (minute 8)
    # and a gap (minute 9).
    assert [s.healthy for s in samples] == [False, *[True] * 7, False, False, False]


async def endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    while True:
        await response.write(b" " * 65536)


async def hang(request: web.Request) -> web.StreamResponse:
    await __import__("asyncio").sleep(30)
    return web.Response()


def _ok(result: object, kind: str = "matrix") -> web.Response:
    return web.json_response({"status": "success", "data": {"resultType": kind, "result": result}})


PARSE_ERROR = {"status": "error", "errorType": "bad_data", "error": "parse error at char 4"}


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (web.Response(text="<html>", status=502), "HTTP 502, reply is not JSON"),
        (web.json_response([1]), "reply is not a JSON object"),
        (web.json_response(PARSE_ERROR, status=400), "HTTP 400, bad_data: parse error at char 4"),
        (_ok([], "vector"), "expected a range (matrix) result"),
        (_ok([{"values": [[1, 2, 3]]}]), "malformed sample"),
        (_ok([{"values": 5}]), "a series without values"),
        (_ok({"not": "a list"}), "the result is not a list"),
    ],
)
async def test_a_bad_reply_is_an_error_that_says_what(reply: web.Response, error: str) -> None:
    fake = FakePrometheus()
    fake.reply = reply
    async with LoopbackServer(fake.app()) as server:
        with pytest.raises(ReplayError) as caught:
            await fetch_prometheus(server.url, "q", None, Range(T0, T0 + timedelta(minutes=1), 5.0))
    assert error in str(caught.value)


@pytest.mark.parametrize(
    ("handler", "error"), [(endless, "reply refused past 32 MiB"), (hang, "no answer within 0.5s")]
)
async def test_an_endless_or_silent_server_is_bounded(handler: Any, error: str) -> None:
    app = web.Application()
    app.router.add_get("/api/v1/query_range", handler)
    async with LoopbackServer(app) as server:
        started = time.monotonic()
        span = Range(T0, T0 + timedelta(minutes=1), 5.0)
        with pytest.raises(ReplayError) as caught:
            await fetch_prometheus(server.url, "q", None, span, request_timeout=0.5)
    assert error in str(caught.value)
    assert time.monotonic() - started < 20


async def test_a_range_beyond_the_cap_is_refused_before_any_request(
    prometheus: tuple[FakePrometheus, str],
) -> None:
    fake, url = prometheus
    with pytest.raises(ReplayError, match="at most 2000000"):
        await fetch_prometheus(url, "q", None, Range(T0, T0 + timedelta(days=400), 5.0))
    assert fake.requests == []


async def test_the_cli_against_a_prometheus_api(prometheus: tuple[FakePrometheus, str]) -> None:
    _, url = prometheus
    code, out, err = await cli(
        "replay", "--prometheus", url, "--query", "max(lag)", "--start",
        "2026-11-20T00:00:00Z", "--end", "2026-11-20T02:00:00Z", "--json",
        env=env_without_presence(PRESENCE_INTERVAL="15s"),
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["ticks"] == 2 * 3600 // 15 + 1, "step = INTERVAL"
    # Lag 30-80 in minutes 3-7 of every ten (then NaN, a gap): one incident per ten minutes.
    assert len(result["incidents"]) == 12
    assert result["settings"][0]["caught"] == 12
    code, _, err = await cli(
        "replay", "--prometheus", url, "--since", "1h", env=env_without_presence()
    )
    assert code == 2 and "--prometheus needs --query" in err


# A real Prometheus, over a TSDB backfilled with promtool.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def real_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, datetime]]:
    promtool, prometheus = shutil.which("promtool"), shutil.which("prometheus")
    if promtool is None or prometheus is None:
        pytest.skip("promtool/prometheus not installed (Debian package prometheus; make tools)")
    root = tmp_path_factory.mktemp("prometheus")
    # Six hours of lag at 15 s, ending two hours ago (whole blocks, outside the head): a
    # healthy 3 s with one incident (lag 90) of 5 minutes every hour.
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    start = end - timedelta(hours=6)
    lines = ["# HELP webhook_queue_lag_seconds lag", "# TYPE webhook_queue_lag_seconds gauge"]
    at = start
    while at <= end:
        lag = 90.0 if 20 <= at.minute < 25 else 3.0
        lines.append(f'webhook_queue_lag_seconds{{queue="inbound"}} {lag} {at.timestamp():.0f}')
        at += timedelta(seconds=15)
    lines.append("# EOF")
    source = root / "lag.om"
    source.write_text("\n".join(lines) + "\n")
    data = root / "data"
    made = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    config = root / "prometheus.yml"
    config.write_text("global: {}\n")
    port = _free_port()
    proc = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        import httpx

        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("prometheus did not become ready")
            time.sleep(0.2)
        yield url, start
    finally:
        proc.terminate()
        proc.wait(10)


async def test_replay_against_a_real_prometheus(real_prometheus: tuple[str, datetime]) -> None:
    url, start = real_prometheus
    end = start + timedelta(hours=6)
    code, out, err = await cli(
        "replay", "--prometheus", url, "--query", "max(webhook_queue_lag_seconds)",
        "--start", start.isoformat(), "--end", end.isoformat(), "--compare", "fall=5",
        env=env_without_presence(PRESENCE_INTERVAL="15s"),
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert "1441 ticks, 6 incidents (lag >= 30 for >= 60s)" in lines[0], out
    effective, fall5 = lines[2].split(), lines[3].split()
    assert effective[0] == "effective" and effective[4] == "6/6" and effective[1] == "12"
    assert fall5[0] == "fall=5" and fall5[4] == "6/6"
    assert float(fall5[5]) > float(effective[5]), "fall 5 takes longer to detect"


async def test_samples_off_the_step_grid_are_ignored_not_kept() -> None:
    """A server answering off the grid it was asked for: 1.15 GB for 4 days, before. Now only
    the ticks asked for are kept, and it says how many were not."""
    off = [[T0.timestamp() + 2.5 + k * 5, "1"] for k in range(20_000)]
    on = [[T0.timestamp() + k * 5, "3"] for k in range(25)]
    body = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": off + on}]}}  # fmt: skip
    fake = FakePrometheus()
    fake.reply = web.json_response(body)
    async with LoopbackServer(fake.app()) as server:
        lines: list[str] = []
        span = Range(T0, T0 + timedelta(minutes=2), 5.0)
        samples = await fetch_prometheus(server.url, "lag", None, span, progress=lines.append)
    assert len(samples) == 25 and all(s.lag == 3.0 for s in samples)
    assert "20000 samples off the 5s step grid ignored" in lines[0]


def test_a_csv_with_a_bom_or_an_oversized_field(tmp_path: Path) -> None:
    bom = tmp_path / "excel.csv"
    bom.write_bytes(b"\xef\xbb\xbftime,lag\n1,2\n")
    assert [s.lag for s in read_csv(bom)] == [2.0]
    big = tmp_path / "big.csv"
    big.write_text("time,lag\n1," + "9" * 200_000 + "\n")
    with pytest.raises(ReplayError, match=r"line 2: field larger than field limit"):
        read_csv(big)


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("no/such/folder/plot.png", "no such folder 'no/such/folder'"),
        ("plot.xyz", "plot.xyz': unknown format (one of "),
    ],
)
async def test_a_bad_plot_target_is_refused_before_the_work(
    trace: tuple[Path, Any], tmp_path: Path, target: str, error: str
) -> None:
    path, _ = trace
    code, out, err = await cli(
        "replay", "--csv", str(path), "--plot", str(tmp_path / target) if "/" not in target
        else target, env=env_without_presence(),
    )  # fmt: skip
    assert code == 2 and out == "" and error in err and "Traceback" not in err, err


async def test_the_plot_names_the_file_it_wrote(trace: tuple[Path, Any], tmp_path: Path) -> None:
    """`--plot out` writes out.png (matplotlib adds the suffix): it said "plot written to out"."""
    path, _ = trace
    code, _, err = await cli(
        "replay", "--csv", str(path), "--plot", str(tmp_path / "out"), env=env_without_presence()
    )
    assert code == 0 and f"plot written to {tmp_path / 'out.png'}" in err
    assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere
        code, _, err = await cli(
            "replay", "--csv", str(path), "--plot", str(locked / "p.png"),
            env=env_without_presence(),
        )  # fmt: skip
        assert code == 2 and "Permission denied" in err and "Traceback" not in err


async def test_any_interval_replays_and_a_misspelt_setting_is_refused(
    trace: tuple[Path, Any],
) -> None:
    """Replay checked the default 2 s TIMEOUT it never uses (INTERVAL 1s was refused), and
    ignored a misspelt PRESENCE_* variable that `run` refuses."""
    path, _ = trace
    for interval in ("1s", "500ms", "2s"):
        env = env_without_presence(PRESENCE_INTERVAL=interval)
        code, out, err = await cli("replay", "--csv", str(path), "--json", env=env)
        assert code == 0, (interval, err)
        assert json.loads(out)["settings"][0]["values"]["interval"] == parse_interval(interval)
    env = env_without_presence(PRESENCE_FALLL="5")
    code, out, err = await cli("replay", "--csv", str(path), env=env)
    assert code == 2 and out == "", err
    assert "PRESENCE_FALLL: unknown setting (did you mean PRESENCE_FALL?)" in err


def parse_interval(text: str) -> float:
    return float(text.removesuffix("ms")) / 1000 if text.endswith("ms") else float(text[:-1])


async def test_json_rows_carry_the_settings_they_were_scored_with(trace: tuple[Path, Any]) -> None:
    path, _ = trace
    code, out, err = await cli(
        "replay", "--csv", str(path), "--json", "--compare", "fall=1,damping.enabled=false",
        env=env_without_presence(PRESENCE_LAG_HIGH="40"),
    )  # fmt: skip
    assert code == 0, err
    effective, compared = json.loads(out)["settings"]
    assert effective["values"]["lag_high"] == 40 and effective["values"]["fall"] == 3
    assert effective["values"]["damping"]["enabled"] is True
    assert compared["values"]["fall"] == 1 and compared["values"]["lag_high"] == 40
    assert compared["values"]["damping"]["enabled"] is False
    assert set(compared["values"]) == set(DECISION_FIELDS)


@pytest.mark.parametrize("target", ["/", ".", ".."])
async def test_a_folder_as_plot_target_is_refused_without_a_traceback(
    trace: tuple[Path, Any], target: str
) -> None:
    path, _ = trace
    code, out, err = await cli(
        "replay", "--csv", str(path), "--plot", target, env=env_without_presence()
    )
    assert code == 2 and out == "" and "a file name is needed, not a folder" in err, err
    assert "Traceback" not in err


def test_the_plot_marks_missing_data_and_dates_its_axis(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    start = datetime(2026, 11, 24, tzinfo=UTC)
    lags = [1.0, None, None, 2.0, math.nan, 3.0, None]
    samples = [Sample(start + timedelta(seconds=15 * i), lag) for i, lag in enumerate(lags)]
    assert missing_runs(samples) == [(1, 3), (4, 5), (6, 7)]
    settings = [("effective", decision_settings({}))]
    found, scores = run(samples, settings, 60.0)
    import matplotlib.pyplot as plt

    drawn: list[Any] = []
    original = plt.close
    try:
        plt.close = drawn.append  # type: ignore[assignment]
        plot(samples, found, scores, 30.0, 10.0, tmp_path / "p.png")
    finally:
        plt.close = original  # type: ignore[assignment]
    (figure,) = drawn
    lag_axes, presence_axes = figure.axes
    assert presence_axes.get_xlabel() == "time (UTC), 2026-11-24 00:00 to 2026-11-24 00:01"
    legend = [t.get_text() for t in lag_axes.get_legend().get_texts()]
    assert "no data" in legend
    original(figure)
