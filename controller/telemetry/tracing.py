"""OpenTelemetry tracing, configured from the standard OTEL_* environment variables.

- `OTEL_TRACES_EXPORTER`: `otlp` (default; OTLP over HTTP/protobuf, honouring
  `OTEL_EXPORTER_OTLP_ENDPOINT`, `..._HEADERS`, `..._TIMEOUT` and their `_TRACES_` forms),
  `console` or `none`;
- `OTEL_SERVICE_NAME` (default `presence-controller`), `OTEL_RESOURCE_ATTRIBUTES`;
- `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (read by the SDK);
- `POD_NAME`, `POD_NAMESPACE`, `NODE_NAME` become `k8s.pod.name`, `k8s.namespace.name`,
  `k8s.node.name`.

Spans are exported from the SDK's batch worker thread through a bounded queue, so a slow or dead
collector never delays a tick; spans it does not take are dropped and counted. Shutdown is
bounded too: the SDK's own exit hook (which may wait 30 s) is not used.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)

from controller import __version__
from controller.telemetry.logs import event
from controller.telemetry.metrics import Metrics

SERVICE_NAME = "presence-controller"
EXPORTERS = ("otlp", "console", "none")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
"""The samplers the OpenTelemetry SDK builds from OTEL_TRACES_SAMPLER without extra packages."""
ATTRIBUTE_LENGTH = 1024
"""Default cap on a span attribute value's length (characters)."""
SHUTDOWN_FLUSH = 1.0
"""At most this long is spent flushing spans at exit: a dead collector must not delay it."""
K8S_ATTRIBUTES = {
    "POD_NAME": "k8s.pod.name",
    "POD_NAMESPACE": "k8s.namespace.name",
    "NODE_NAME": "k8s.node.name",
}
TRACER_NAME = "presence-controller"
log = logging.getLogger("presence.telemetry")


def tracing_errors(environ: Mapping[str, str]) -> list[str]:
    """Problems with the OTEL_* settings we interpret, as `VARIABLE: reason` lines."""
    errors = []
    names = _exporter_names(environ)
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        errors.append(
            f"OTEL_TRACES_EXPORTER: unsupported exporter {', '.join(map(repr, unknown))}: "
            f"expected {', '.join(EXPORTERS)}"
        )
    sampler = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler and sampler not in SAMPLERS:
        errors.append(
            f"OTEL_TRACES_SAMPLER: unsupported sampler {sampler!r}: expected {', '.join(SAMPLERS)}"
        )
    argument = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if argument and sampler.endswith("traceidratio"):
        try:
            ratio = float(argument)
        except ValueError:
            ratio = math.nan
        if not 0.0 <= ratio <= 1.0:
            errors.append(
                f"OTEL_TRACES_SAMPLER_ARG: expected a ratio between 0 and 1, got {argument!r}"
            )
    return errors


def _exporter_names(environ: Mapping[str, str]) -> list[str]:
    value = environ.get("OTEL_TRACES_EXPORTER", "otlp")
    return [n.strip().lower() for n in value.split(",") if n.strip()] or ["otlp"]


def resource(environ: Mapping[str, str]) -> Resource:
    """Service and Kubernetes attributes; OTEL_SERVICE_NAME/OTEL_RESOURCE_ATTRIBUTES win."""
    attributes: dict[str, str] = {"service.version": __version__}
    if "OTEL_SERVICE_NAME" not in environ and "service.name=" not in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes["service.name"] = SERVICE_NAME
    for variable, key in K8S_ATTRIBUTES.items():
        if environ.get(variable):
            attributes[key] = environ[variable]
    return Resource.create(attributes)


class CountingExporter(SpanExporter):
    """Counts what the wrapped exporter took and what it did not (dropped), and logs once when
    export starts failing and once when it recovers (the SDK's per-batch warnings are muted)."""

    def __init__(self, inner: SpanExporter, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics
        self._failing = False
        self.closing = False
        """Set at exit: the shutdown reports unsent spans itself, in one line."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        ok = result is SpanExportResult.SUCCESS
        self._metrics.trace_spans.labels(result="exported" if ok else "dropped").inc(len(spans))
        if ok == self._failing and not self.closing:
            self._failing = not ok
            if ok:
                event(log, logging.INFO, "trace_export", "trace export recovered")
            else:
                message = "trace export failing: spans are dropped (see presence_trace_spans_total)"
                event(log, logging.WARNING, "trace_export", message)
        return result

    @property
    def failing(self) -> bool:
        return self._failing

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor (bounded queue, worker thread), counting queue-overflow drops."""

    def __init__(self, exporter: SpanExporter, metrics: Metrics) -> None:
        super().__init__(exporter)
        self._metrics = metrics
        # The SDK drops the oldest span when its queue is full and only logs it; the queue is
        # internal, so count defensively and stop counting if its shape ever changes.
        batch = getattr(self, "_batch_processor", None)
        self._queue = getattr(batch, "_queue", None)
        self._limit = getattr(batch, "_max_queue_size", None)

    def on_end(self, span: ReadableSpan) -> None:
        if self._queue is not None and self._limit is not None and len(self._queue) >= self._limit:
            self._metrics.trace_spans.labels(result="dropped").inc()
        super().on_end(span)


@dataclass
class Tracing:
    """The tracer to use and how to stop it."""

    provider: TracerProvider
    tracer: trace.Tracer
    exporters: tuple[str, ...]
    counting: tuple[CountingExporter, ...] = ()

    def shutdown(self, timeout: float) -> bool:
        """Flush and stop within `timeout` seconds (never more than `SHUTDOWN_FLUSH`); False if
        spans were left unsent. While export is failing there is no flush at all: the exporter
        is stopped first, which also cuts its retry back-off short."""
        if any(each.failing for each in self.counting):
            self._abort()
        worker = threading.Thread(target=self.provider.shutdown, daemon=True, name="otel-shutdown")
        worker.start()
        worker.join(max(min(timeout, SHUTDOWN_FLUSH), 0.0))
        if worker.is_alive():
            self._abort()
            return False
        return True

    def _abort(self) -> None:
        for each in self.counting:
            each.closing = True
            with contextlib.suppress(Exception):
                each.shutdown()


def setup_tracing(
    metrics: Metrics,
    environ: Mapping[str, str] | None = None,
    exporter: SpanExporter | None = None,
) -> Tracing:
    """A tracer provider from the environment (or with `exporter`, for tests)."""
    env = os.environ if environ is None else environ
    errors = tracing_errors(env)
    if errors:
        raise ValueError("; ".join(errors))
    provider = TracerProvider(
        resource=resource(env), shutdown_on_exit=False, span_limits=span_limits(env)
    )
    names: list[str] = []
    exporters: list[SpanExporter] = [exporter] if exporter is not None else []
    if exporter is None:
        for name in _exporter_names(env):
            if name == "otlp":
                exporters.append(_otlp())
            elif name == "console":
                exporters.append(ConsoleSpanExporter())
            names.append(name)
    counting = tuple(CountingExporter(each, metrics) for each in exporters)
    for each in counting:
        provider.add_span_processor(CountingBatchSpanProcessor(each, metrics))
    mute_sdk_logs()
    tracer = provider.get_tracer(TRACER_NAME, __version__)
    return Tracing(provider, tracer, tuple(names), counting)


def span_limits(environ: Mapping[str, str]) -> SpanLimits:
    """The SDK's limits, with attribute values cut at ATTRIBUTE_LENGTH unless
    OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT / OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT say otherwise: a
    user-supplied string must not ride on every span of every tick at full length."""
    explicit = any(
        environ.get(name)
        for name in ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT")
    )
    return SpanLimits() if explicit else SpanLimits(max_span_attribute_length=ATTRIBUTE_LENGTH)


def mute_sdk_logs() -> None:
    """Silence the SDK's and exporters' own log lines at every level (one per failed batch,
    every few seconds with no collector): CountingExporter logs each change of state once."""
    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL + 1)


def _otlp() -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()
