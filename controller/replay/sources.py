"""Replay's history sources: a CSV file, or a Prometheus server's range API in chunks under its
points-per-series limit. Everything read is bounded: a CSV file of at most MAX_CSV_BYTES,
Prometheus replies of at most MAX_REPLY_BYTES each within `--timeout`, at most MAX_POINTS ticks
in all; samples off the step grid are ignored."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from controller.bounded_read import read_bounded
from controller.config import parse_duration
from controller.core.excerpt import clip
from controller.core.replay import Sample
from controller.core.schedule import ScheduleError
from controller.core.schedule_grammar import parse_timestamp

if TYPE_CHECKING:
    import httpx

MAX_CSV_BYTES = 64 * 2**20
MAX_REPLY_BYTES = 32 * 2**20
MAX_POINTS = 2_000_000
"""Ticks in one replay: 115 days at 5 s."""
POINTS_PER_QUERY = 10_000
"""Prometheus refuses more than 11,000 points per series in one range query."""


class ReplayError(Exception):
    """Bad input or a failed fetch: the message says which and why (exit 1, or 2 for usage)."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


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
