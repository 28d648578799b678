"""`presence-controller replay`: what would these settings have done on my real history?

Reads the consumer's lag (and optionally its health) from a Prometheus server's range API or from
a CSV file, runs the effective decision settings and each `--compare` set through the decision
core (core/replay.py), and prints one row per setting: presence changes, minutes unavailable,
incidents caught, ticks to detect, minutes unavailable outside incidents. `--json` for machines,
`--plot FILE.png` for people (matplotlib, an optional extra).

Everything read is bounded: a CSV file of at most MAX_CSV_BYTES, Prometheus replies of at most
MAX_REPLY_BYTES each within `--timeout`, at most MAX_POINTS ticks in all.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import ValidationError

from controller.bounded_read import read_bounded
from controller.config import ENV_PREFIX, NESTED_DELIMITER, Settings, parse_duration
from controller.core.excerpt import clip
from controller.core.replay import Sample, Score, incidents, replay
from controller.core.schedule import ScheduleError, parse_timestamp

if TYPE_CHECKING:
    import httpx

MAX_CSV_BYTES = 64 * 2**20
MAX_REPLY_BYTES = 32 * 2**20
MAX_POINTS = 2_000_000
"""Ticks in one replay: 115 days at 5 s."""
POINTS_PER_QUERY = 10_000
"""Prometheus refuses more than 11,000 points per series in one range query."""
DECISION_FIELDS = (
    "interval",
    "rise",
    "fall",
    "hold_down",
    "startup_grace",
    "lag_high",
    "lag_low",
    "missing_lag",
    "damping",
)
"""The settings that shape a decision (everything else is about probing and acting)."""


class ReplayError(Exception):
    """Bad input or a failed fetch: the message says which and why (exit 1, or 2 for usage)."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


# Settings.


def decision_settings(environ: Mapping[str, str], compare: str | None = None) -> Settings:
    """The effective decision settings from the environment (`PRESENCE_RISE`, ...,
    `PRESENCE_DAMPING__ENABLED`), with `compare` (`rise=2,fall=2`, `damping.enabled=false`)
    on top; validated like the controller's own."""
    values: dict[str, Any] = {}
    for field in DECISION_FIELDS:
        if field == "damping":
            prefix = f"{ENV_PREFIX}DAMPING{NESTED_DELIMITER}"
            nested = {
                k[len(prefix) :].lower(): v for k, v in environ.items() if k.startswith(prefix)
            }
            if nested:
                values["damping"] = nested
        elif (value := environ.get(f"{ENV_PREFIX}{field.upper()}")) is not None:
            values[field] = value
    for item in filter(None, (part.strip() for part in (compare or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ReplayError(f"--compare {compare!r}: expected KEY=VALUE[,KEY=VALUE]", usage=True)
        path = _field_path(key)
        if path[0] not in DECISION_FIELDS:
            known = ", ".join(f for f in DECISION_FIELDS if f != "damping")
            raise ReplayError(
                f"--compare: {key!r} is not a decision setting ({known}, damping.*)", usage=True
            )
        if len(path) == 2:
            values.setdefault("damping", {})[path[1]] = value.strip()
        else:
            values[path[0]] = value.strip()
    try:
        return Settings.from_values(
            health_url="http://replay.invalid/healthz",
            provider="waha",
            waha={"base_url": "http://replay.invalid"},
            **values,
        )
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
        where = f"--compare {compare}" if compare else "the PRESENCE_* environment"
        raise ReplayError(f"{where}: {errors}", usage=True) from None


def _field_path(key: str) -> tuple[str, ...]:
    """`RISE`, `PRESENCE_RISE`, `rise` -> ("rise",); `damping.enabled`, `DAMPING__ENABLED`
    -> ("damping", "enabled")."""
    name = key.strip().upper().removeprefix(ENV_PREFIX).lower()
    return tuple(name.replace(NESTED_DELIMITER, ".").split("."))


# Sources.


def read_csv(path: Path) -> list[Sample]:
    """`time,lag[,healthy]` with a header row; time RFC 3339 or Unix seconds, increasing; lag
    empty or NaN when missing; healthy 1/0/true/false (empty: true)."""
    try:
        text = read_bounded(path, MAX_CSV_BYTES).decode("utf-8-sig")  # a BOM (Excel) is fine
    except OSError as exc:
        raise ReplayError(f"--csv {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ReplayError(f"--csv {str(path)!r}: not UTF-8 text") from None
    rows = csv.reader(io.StringIO(text))
    try:
        return _csv_samples(path, rows)
    except csv.Error as exc:  # e.g. a field over the csv module's limit (128 KiB)
        where = f"--csv {str(path)!r} line {rows.line_num}"
        raise ReplayError(f"{where}: {clip(str(exc), 80)}") from None


def _csv_samples(path: Path, rows: Iterator[list[str]]) -> list[Sample]:
    header = [h.strip().lower() for h in next(rows, [])]
    if header[:2] != ["time", "lag"] or header[2:] not in ([], ["healthy"]):
        raise ReplayError(
            f"--csv {str(path)!r}: the first line must be the header time,lag[,healthy], "
            f"got {clip(','.join(header), 60)!r}"
        )
    samples: list[Sample] = []
    for number, row in enumerate(rows, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(samples) >= MAX_POINTS:
            raise ReplayError(f"--csv: more than {MAX_POINTS} rows")
        try:
            sample = _csv_sample(row, len(header))
        except ValueError as exc:
            raise ReplayError(f"--csv {str(path)!r} line {number}: {exc}") from None
        if samples and sample.at <= samples[-1].at:
            raise ReplayError(
                f"--csv {str(path)!r} line {number}: times must increase "
                f"({sample.at:%Y-%m-%d %H:%M:%S} after {samples[-1].at:%Y-%m-%d %H:%M:%S})"
            )
        samples.append(sample)
    if not samples:
        raise ReplayError(f"--csv {str(path)!r}: no rows after the header")
    return samples


def _csv_sample(row: list[str], columns: int) -> Sample:
    if len(row) != columns:
        raise ValueError(f"expected {columns} columns, got {len(row)}")
    at = _time(row[0].strip())
    lag = _number(row[1].strip(), "lag")
    healthy = True
    if columns == 3:
        flag = row[2].strip().lower()
        if flag not in ("", "1", "0", "true", "false"):
            raise ValueError(f"healthy must be 1, 0, true or false, got {clip(flag, 20)!r}")
        healthy = flag in ("", "1", "true")
    return Sample(at, lag, healthy)


def _time(text: str) -> datetime:
    try:
        seconds = float(text)
    except ValueError:
        try:
            return parse_timestamp(text)
        except ScheduleError as exc:
            raise ValueError(f"time: {exc}") from None
    if not math.isfinite(seconds) or not 0 <= seconds < 253402300800:  # year 10000
        raise ValueError(f"time {clip(text, 30)!r} is not a Unix time")
    return datetime.fromtimestamp(seconds, UTC)


def _number(text: str, what: str) -> float | None:
    """A sample value; None when missing (empty, NaN). +Inf is a (very bad) value."""
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {clip(text, 30)!r} is not a number") from None
    return None if math.isnan(value) else value


@dataclass(frozen=True, slots=True)
class Range:
    start: datetime
    end: datetime
    step: float

    @property
    def points(self) -> int:
        return int((self.end - self.start).total_seconds() // self.step) + 1

    def chunks(self) -> list[tuple[datetime, datetime]]:
        """Sub-ranges of at most POINTS_PER_QUERY points, on the same step grid."""
        out = []
        span = timedelta(seconds=self.step * (POINTS_PER_QUERY - 1))
        at = self.start
        while at <= self.end:
            last = min(at + span, self.end)
            out.append((at, last))
            at = last + timedelta(seconds=self.step)
        return out


async def fetch_prometheus(
    url: str,
    query: str,
    health_query: str | None,
    span: Range,
    *,
    token: str | None = None,
    request_timeout: float = 30.0,
    progress: Callable[[str], None] = lambda line: None,
) -> list[Sample]:
    """Lag (and health) on the step grid from `/api/v1/query_range`, in chunks under the
    server's points-per-series limit. A tick without a lag sample is missing lag; without a
    health sample, unhealthy (a failed scrape)."""
    import httpx

    from controller.bounded_read import IDENTITY

    if span.points > MAX_POINTS:
        raise ReplayError(
            f"{span.points} ticks of {span.step:g}s: at most {MAX_POINTS} (shorten the range)",
            usage=True,
        )
    headers = {**IDENTITY, **({"Authorization": f"Bearer {token}"} if token else {})}
    lag: dict[float, float | None] = {}
    health: dict[float, float | None] = {}
    queries = [("--query", query, lag)]
    if health_query is not None:
        queries.append(("--health-query", health_query, health))
    chunks = span.chunks()
    async with httpx.AsyncClient(
        base_url=url.rstrip("/"), timeout=request_timeout, headers=headers
    ) as client:
        for number, (start, end) in enumerate(chunks, 1):
            for what, promql, into in queries:
                params = {
                    "query": promql,
                    "start": f"{start.timestamp():.3f}",
                    "end": f"{end.timestamp():.3f}",
                    "step": f"{span.step:g}",
                }
                status, body = await _get(client, params, request_timeout)
                grid = Range(start, end, span.step)
                into.update(_matrix(body, status, what, progress, grid))
            if len(chunks) > 1:
                progress(
                    f"replay: fetched {number}/{len(chunks)} ({start:%Y-%m-%d %H:%M} .. "
                    f"{end:%Y-%m-%d %H:%M} UTC)"
                )
    samples = []
    for k in range(span.points):
        at = span.start + timedelta(seconds=k * span.step)
        key = round(at.timestamp(), 3)
        healthy = True
        if health_query is not None:
            value = health.get(key)
            healthy = value is not None and value > 0
        samples.append(Sample(at, lag.get(key), healthy))
    return samples


async def _get(
    client: httpx.AsyncClient, params: dict[str, str], request_timeout: float
) -> tuple[int, bytes]:
    """One range query: its status and at most MAX_REPLY_BYTES of its body, within the
    timeout; every failure a ReplayError that says which."""
    import httpx

    from controller.bounded_read import CompressedReply, ReplyTooLarge, read_body

    try:
        async with (
            asyncio.timeout(request_timeout),
            client.stream("GET", "/api/v1/query_range", params=params) as response,
        ):
            return response.status_code, await read_body(response, MAX_REPLY_BYTES)
    except (ReplyTooLarge, CompressedReply) as exc:
        raise ReplayError(f"prometheus: {exc}") from None
    except (TimeoutError, httpx.TimeoutException):
        raise ReplayError(f"prometheus: no answer within {request_timeout:g}s") from None
    except httpx.HTTPError as exc:
        cause = f"{type(exc).__name__}: {clip(str(exc), 120)}"
        raise ReplayError(f"prometheus: {cause}") from None


def _matrix(
    body: bytes, status: int, what: str, progress: Callable[[str], None], grid: Range
) -> dict[float, float | None]:
    """The values of a range query reply by timestamp; several series: the max per step.
    Only samples on the `grid` asked for are kept (a server that answers off it cannot make
    the replay grow past its ticks); how many were off it is said."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ReplayError(f"prometheus {what}: HTTP {status}, reply is not JSON") from None
    if not isinstance(document, dict):
        raise ReplayError(f"prometheus {what}: HTTP {status}, reply is not a JSON object")
    if document.get("status") != "success":
        kind = clip(str(document.get("errorType", "error")), 40)
        error = clip(str(document.get("error", "no error text")), 300)
        raise ReplayError(f"prometheus {what}: HTTP {status}, {kind}: {error}")
    data = document.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix":
        raise ReplayError(f"prometheus {what}: expected a range (matrix) result")
    series = data.get("result")
    if not isinstance(series, list):
        raise ReplayError(f"prometheus {what}: the result is not a list")
    if len(series) > 1:
        progress(
            f"replay: {what} returned {len(series)} series: taking the max per step "
            "(aggregate in the query, e.g. max(...), to choose)"
        )
    values: dict[float, float | None] = {}
    start, end, off_grid = grid.start.timestamp(), grid.end.timestamp(), 0
    for each in series:
        points = each.get("values") if isinstance(each, dict) else None
        if not isinstance(points, list):
            raise ReplayError(f"prometheus {what}: a series without values")
        for point in points:
            try:
                at, raw = point
                key = round(float(at), 3)
                value = _number(str(raw), "value")
            except (TypeError, ValueError):
                raise ReplayError(
                    f"prometheus {what}: malformed sample {clip(str(point), 60)}"
                ) from None
            steps = (key - start) / grid.step
            if not start - 0.001 <= key <= end + 0.001 or abs(steps - round(steps)) > 1e-6:
                off_grid += 1
                continue
            old = values.get(key)
            values[key] = value if old is None or (value is not None and value > old) else old
    if off_grid:
        progress(f"replay: {what}: {off_grid} samples off the {grid.step:g}s step grid ignored")
    return values


# Output.


def run(
    samples: Sequence[Sample], settings: list[tuple[str, Settings]], incident_min: float
) -> tuple[list[tuple[int, int]], list[Score]]:
    """The incidents (by the first setting's LAG_HIGH, so every row is scored on the same
    ones) and each setting's score."""
    found = incidents(samples, settings[0][1].lag_high, incident_min)
    return found, [replay(name, samples, s.hysteresis(), found) for name, s in settings]


def table(
    samples: Sequence[Sample],
    found: list[tuple[int, int]],
    scores: list[Score],
    lag_high: float,
    incident_min: float,
    out: TextIO,
) -> None:
    first, last = samples[0].at, samples[-1].at
    print(
        f"replay: {first:%Y-%m-%d %H:%M} -> {last:%Y-%m-%d %H:%M} UTC, {len(samples)} ticks, "
        f"{len(found)} incidents (lag >= {lag_high:g} for >= {incident_min:g}s)",
        file=out,
    )
    width = max(len("setting"), *(len(s.name) for s in scores))
    head = (
        f"{'setting':<{width}}  {'changes':>7}  {'unavailable':>11}  {'caught':>7}  "
        f"{'detect median':>13}  {'worst':>5}  {'unavailable outside':>19}"
    )
    print(head, file=out)
    for s in scores:
        median = "-" if s.detect_median is None else f"{s.detect_median:g} ticks"
        if s.detect_median == 1:
            median = "1 tick"
        worst = "-" if s.detect_worst is None else str(s.detect_worst)
        print(
            f"{s.name:<{width}}  {s.changes:>7}  {s.minutes_unavailable:>9.1f} m  "
            f"{f'{s.caught}/{len(found)}':>7}  {median:>13}  {worst:>5}  "
            f"{s.minutes_unavailable_outside:>17.1f} m",
            file=out,
        )


def as_json(
    samples: Sequence[Sample], found: list[tuple[int, int]], scores: list[Score]
) -> dict[str, Any]:
    return {
        "from": samples[0].at.isoformat(),
        "to": samples[-1].at.isoformat(),
        "ticks": len(samples),
        "incidents": [{"start": samples[a].at.isoformat(), "ticks": b - a} for a, b in found],
        "settings": [
            {
                "name": s.name,
                "changes": s.changes,
                "minutes_unavailable": round(s.minutes_unavailable, 2),
                "caught": s.caught,
                "incidents": len(found),
                "detect_ticks": list(s.detect),
                "detect_median_ticks": s.detect_median,
                "detect_worst_ticks": s.detect_worst,
                "minutes_unavailable_outside": round(s.minutes_unavailable_outside, 2),
            }
            for s in scores
        ],
    }


def check_plot(target: str) -> Path:
    """The file `--plot` will write (`.png` added when it has no suffix), refused up front
    (before a long fetch) when matplotlib is missing, the format unknown or the folder absent."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ReplayError(
            "--plot needs matplotlib: pip install 'presence-controller[plot]' "
            "(make installs it in the development venv)",
            usage=True,
        ) from None
    path = Path(target)
    if not path.suffix:
        path = path.with_suffix(".png")
    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        known = ", ".join(f".{f}" for f in sorted(formats))
        raise ReplayError(f"--plot {target!r}: unknown format (one of {known})", usage=True)
    if not path.parent.is_dir():
        raise ReplayError(f"--plot {target!r}: no such folder {str(path.parent)!r}", usage=True)
    return path


_LEVEL = {"available": 1.0, "unknown": 0.5, "unavailable": 0.0}


def plot(
    samples: Sequence[Sample],
    found: list[tuple[int, int]],
    scores: list[Score],
    lag_high: float,
    lag_low: float,
    path: Path,
) -> None:
    """The lag with the watermarks and the incidents shaded, and each setting's presence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [s.at for s in samples]
    fig, (ax_lag, ax_p) = plt.subplots(
        2,
        1,
        figsize=(12, 4 + 0.5 * len(scores)),
        sharex=True,
        gridspec_kw={"height_ratios": [3, 0.6 + 0.5 * len(scores)]},
    )
    lag = [s.lag if s.lag is not None else math.nan for s in samples]
    ax_lag.plot(times, lag, lw=0.7, color="#555", label="queue lag (s)")
    ax_lag.axhline(lag_high, color="red", ls="--", lw=1, label=f"lag_high {lag_high:g}")
    ax_lag.axhline(lag_low, color="green", ls="--", lw=1, label=f"lag_low {lag_low:g}")
    for a, b in found:
        ax_lag.axvspan(times[a], times[min(b, len(times) - 1)], color="orange", alpha=0.25)
    finite = [v for v in lag if math.isfinite(v)]
    ax_lag.set_ylim(0, max(lag_high * 2.5, min(max(finite, default=0) * 1.05, lag_high * 6)))
    ax_lag.set_ylabel("lag (s)")
    ax_lag.legend(loc="upper right", fontsize=8)
    ax_lag.set_title(
        f"replay: {len(found)} incidents shaded; presence per setting below (high = available)"
    )
    labels = []
    for row, score in enumerate(reversed(scores)):
        base = row * 1.5
        ax_p.step(
            times,
            [base + _LEVEL[p.value] for p in score.track],
            where="post",
            lw=1,
        )
        labels.append((base + 0.5, f"{score.name} ({score.changes} changes)"))
    ax_p.set_yticks([y for y, _ in labels], [text for _, text in labels], fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise ReplayError(f"--plot {str(path)!r}: {exc.strerror or exc}", usage=True) from None
    finally:
        plt.close(fig)


def parse_since(text: str) -> float:
    """`7d`, `36h`, `90m`: the length of the range ending now."""
    value = parse_duration(text)
    if not isinstance(value, float) or value <= 0:
        raise ReplayError(f"--since {text!r}: expected a duration like 7d, 36h or 90m", usage=True)
    return value


def token_from(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        token = read_bounded(path, 64 * 1024).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ReplayError(f"--bearer-token-file {path!r}: {reason}", usage=True) from None
    if not token:
        raise ReplayError(f"--bearer-token-file {path!r}: empty", usage=True)
    return token


def stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
