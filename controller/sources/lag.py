"""The consumer's queue-lag metric, scraped from its Prometheus or OpenMetrics text endpoint.

Parsing is prometheus_client's own; this module only selects the series (name and label
matchers) and aggregates them. Every failure is a `LagResult.missing(reason)`.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

from controller.bounded_read import IDENTITY, CompressedReply, ReplyTooLarge, read_body
from controller.core.excerpt import describe
from controller.core.types import LagResult

MAX_BODY_BYTES = 4 * 1024 * 1024
"""A metrics body larger than this is refused: a consumer's exposition is never that big."""
_HEAD_LINES = 50
MAX_SERIES = 10_000
"""Samples of the lag metric parsed at most; other metrics are skipped without parsing."""

_THREAD_PARSE_BYTES = 256 * 1024
"""Bodies above this are parsed in a worker thread so the event loop keeps serving."""

_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)

Aggregate = Literal["max", "sum", "min", "avg"]

_AGGREGATES: dict[str, Callable[[list[float]], float]] = {
    "max": max,
    "min": min,
    "sum": math.fsum,
    "avg": lambda values: math.fsum(values) / len(values),
}


def select_lag(
    families: Iterable[Metric], metric: str, labels: Mapping[str, str], aggregate: Aggregate
) -> LagResult:
    """Aggregate the samples named `metric` whose labels include all of `labels`."""
    values: list[float] = []
    nan = 0
    for family in families:
        for sample in family.samples:
            if sample.name != metric:
                continue
            if any(sample.labels.get(k) != v for k, v in labels.items()):
                continue
            # A native histogram named like the lag metric has no plain value (None).
            if not isinstance(sample.value, int | float) or math.isnan(sample.value):
                nan += 1
            else:
                values.append(float(sample.value))
    matchers = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    if not values:
        why = f"{nan} series are NaN or not numbers" if nan else "no such series"
        return LagResult.missing(f"metric {metric}{matchers} absent: {why}")
    detail = f"{aggregate} over {len(values)} series"
    try:
        value = _AGGREGATES[aggregate](values)
    except OverflowError:
        # The sum of finite values beyond float range: an infinite lag, which is simply bad.
        value, detail = math.inf, f"{detail} overflowed: infinite"
    except ValueError:
        return LagResult.missing(f"metric {metric}{matchers}: {aggregate} of +Inf and -Inf")
    return LagResult.of(value, detail)


def relevant_lines(text: str, metric: str, openmetrics: bool) -> str | None:
    """Only the lines of the lag metric's family (its samples and its TYPE/HELP/UNIT lines), so
    that parse time and memory depend on the lag series, not on everything else the consumer
    exports; None when there are more than MAX_SERIES samples of it."""
    name = re.escape(metric)
    pattern = re.compile(
        rf"^(?:# (?:TYPE|HELP|UNIT) {name}(?:[ \t].*)?|{name}(?:[{{ \t].*)?)$", re.M
    )
    lines = []
    samples = 0
    for match in pattern.finditer(text):
        line = match.group()
        if not line.startswith("#"):
            samples += 1
            if samples > MAX_SERIES:
                return None
        lines.append(line)
    if openmetrics and text.rstrip().endswith("# EOF"):
        lines.append("# EOF")  # OpenMetrics requires it; a truncated body still lacks it
    return "\n".join(lines) + "\n"


def parse_lag(
    text: str, openmetrics: bool, metric: str, labels: Mapping[str, str], aggregate: Aggregate
) -> LagResult:
    """Parse an exposition and select the lag; unparseable text is a missing value."""
    parser = parse_openmetrics if openmetrics else parse_prometheus
    kind = "OpenMetrics" if openmetrics else "Prometheus text"
    relevant = relevant_lines(text, metric, openmetrics)
    if relevant is None:
        return LagResult.missing(f"metric {metric} has more than {MAX_SERIES} series: refused")
    if not relevant.strip() or relevant.strip() == "# EOF":
        # Not a line of the lag metric: say whether the text is an exposition at all, from a
        # bounded head of it (an HTML error page is not "metric absent").
        relevant = "".join(itertools.islice(io.StringIO(text), _HEAD_LINES))
        if openmetrics and not relevant.rstrip().endswith("# EOF"):
            relevant = relevant.rstrip("\n") + "\n# EOF\n"
    try:
        families = list(parser(relevant))
    except Exception as exc:  # the parsers raise ValueError, but also others on odd input
        return LagResult.missing(f"unparseable {kind}: {str(exc)[:120]}")
    return select_lag(families, metric, labels, aggregate)


class LagProbe:
    """Scrape `url` within `timeout` and read the lag from it."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        timeout: float,
        metric: str,
        labels: Mapping[str, str],
        aggregate: Aggregate,
    ) -> None:
        self._client = client
        self._url = url
        self._timeout = timeout
        self._metric = metric
        self._labels = dict(labels)
        self._aggregate: Aggregate = aggregate

    async def __call__(self) -> LagResult:
        try:
            async with asyncio.timeout(self._timeout):
                fetched = await self._fetch()
            if isinstance(fetched, LagResult):
                return fetched
            body, content_type = fetched
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                return LagResult.missing("metrics body is not UTF-8 text")
            openmetrics = content_type.lower().startswith("application/openmetrics-text")
            args = (text, openmetrics, self._metric, self._labels, self._aggregate)
            if len(body) > _THREAD_PARSE_BYTES:
                return await asyncio.to_thread(parse_lag, *args)
            return parse_lag(*args)
        except (TimeoutError, httpx.TimeoutException):
            return LagResult.missing(f"metrics scrape timed out after {self._timeout:g}s")
        except Exception as exc:
            # httpx errors, a redirect to an unusable URL (InvalidURL, IDNA), anything else: a
            # probe never raises into the loop.
            return LagResult.missing(f"metrics scrape failed ({describe(exc)})")

    async def _fetch(self) -> tuple[bytes, str] | LagResult:
        headers = {"Accept": _ACCEPT, **IDENTITY}
        async with self._client.stream("GET", self._url, headers=headers) as resp:
            if not 200 <= resp.status_code < 300:
                return LagResult.missing(f"metrics endpoint answered HTTP {resp.status_code}")
            try:
                body = await read_body(resp, MAX_BODY_BYTES)
            except (ReplyTooLarge, CompressedReply) as exc:
                return LagResult.missing(f"metrics {exc}")
            return body, resp.headers.get("content-type", "")
