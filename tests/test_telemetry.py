"""Tracing: the span tree of a decision, its attributes and events, no token anywhere, export
to a real OTLP/HTTP receiver, and a dead collector that slows nothing down."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Sim, spawn, until
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from controller.config import Settings
from controller.runtime.controller import Controller
from controller.sim import LoopbackServer
from controller.sim.collector import SimCollector
from controller.sim.gateway import Fault
from controller.telemetry.logs import configure_logging
from controller.telemetry.metrics import Metrics
from controller.telemetry.tracing import Tracing, resource, setup_tracing, tracing_errors


@asynccontextmanager
async def traced(
    settings: Settings, **env: str
) -> AsyncIterator[tuple[Controller, Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    metrics = Metrics()
    tracing = setup_tracing(metrics, environ=env, exporter=exporter)
    controller = Controller(settings, metrics=metrics, tracer=tracing.tracer)
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    try:
        yield controller, tracing, exporter
    finally:
        stop.set()
        await asyncio.wait_for(task, 6)
        tracing.provider.force_flush()


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def parent_of(span: ReadableSpan, spans: tuple[ReadableSpan, ...]) -> ReadableSpan | None:
    assert span.parent is not None
    return next((s for s in spans if s.context.span_id == span.parent.span_id), None)


async def test_a_decision_is_one_trace_from_probes_to_gateway(sim: Sim) -> None:
    logs = io.StringIO()
    settings = sim.settings()
    configure_logging("json", "info", settings.secrets(), stream=logs)
    async with traced(settings) as (_, _, exporter):
        await until(lambda: sim.gateway.presence == "available")
    spans = exporter.get_finished_spans()

    reconciles = named(spans, "presence.reconcile")
    assert len(reconciles) >= 2
    flip = next(s for s in reconciles if s.events)
    (transition,) = flip.events
    assert transition.name == "presence.transition"
    assert dict(transition.attributes or {}) == {
        "from": "unknown",
        "to": "available",
        "reason": "healthy: health HTTP 200, queue lag 1 < lag_low 10 "
        "(2 consecutive good ticks, rise 2)",
    }
    attrs = dict(flip.attributes or {})
    assert attrs["presence.desired"] == "available"
    assert attrs["presence.reason"].startswith("healthy: ")
    assert attrs["health.status"] == "ok" and attrs["queue.lag_seconds"] == 1.0
    assert attrs["maintenance.active"] is False
    assert (attrs["hysteresis.good"], attrs["hysteresis.bad"]) == (2, 0)

    for probe in ("presence.probe.health", "presence.probe.lag"):
        children = [
            s for s in named(spans, probe) if s.parent and s.parent.span_id == flip.context.span_id
        ]
        assert len(children) == 1, probe
        (http,) = [s for s in spans if s.parent and s.parent.span_id == children[0].context.span_id]
        assert http.name == "GET" and http.attributes is not None
        assert http.attributes["http.response.status_code"] == 200

    trace_id = flip.context.trace_id
    session = named(spans, "presence.gateway.session")[0]
    # The set that carried the change out (on a loaded machine an earlier attempt may have
    # timed out and been retried, in the same trace).
    applied = next(
        s
        for s in named(spans, "presence.gateway.set")
        if s.context.trace_id == trace_id
        and (s.attributes or {}).get("http.response.status_code") == 200
    )
    assert session.context.trace_id == trace_id, "the gateway calls join the deciding tick's trace"
    assert (
        dict(applied.attributes or {}).items()
        >= {
            "presence.value": "available",
            "presence.gateway.why": "change",
            "http.response.status_code": 200,
            "gateway.provider": "wawp",
        }.items()
    )
    (http_post,) = [s for s in spans if s.parent and s.parent.span_id == applied.context.span_id]
    assert http_post.name == "POST"
    assert http_post.attributes is not None
    assert str(http_post.attributes["url.full"]).endswith("&access_token=[REDACTED]")

    token = sim.gateway.access_token
    assert all(token not in span.to_json() for span in spans)
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    (logged,) = [line for line in lines if line.get("event") == "transition"]
    assert logged["trace_id"] == f"{trace_id:032x}"
    assert logged["span_id"] == f"{flip.context.span_id:016x}"


async def test_a_failed_gateway_call_is_an_error_span_with_its_backoff(sim: Sim) -> None:
    sim.gateway.set_faults.append(Fault(503))
    async with traced(sim.settings()) as (_, _, exporter):
        await until(lambda: sim.gateway.presence == "available")
    sets = named(exporter.get_finished_spans(), "presence.gateway.set")
    failed, retried = sets[0], sets[1]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "set presence available: HTTP 503"
    attrs = dict(failed.attributes or {})
    assert attrs["error.type"] == "transient_error"
    assert attrs["http.response.status_code"] == 503
    assert 0 <= attrs["presence.gateway.backoff_seconds"] <= 1.0
    assert dict(retried.attributes or {})["presence.gateway.attempt"] == 2
    assert retried.context.trace_id == failed.context.trace_id, "the retry stays in the trace"


async def test_reasserts_and_the_shutdown_write_are_their_own_traces(sim: Sim) -> None:
    async with traced(sim.settings(reassert_available=0.1)) as (_, _, exporter):
        await until(lambda: len(sim.gateway.sets()) >= 3)
    sets = named(exporter.get_finished_spans(), "presence.gateway.set")
    whys = [dict(s.attributes or {})["presence.gateway.why"] for s in sets]
    assert whys[0] == "change" and "re-assert" in whys and whys[-1] == "shutdown"
    reassert = sets[whys.index("re-assert")]
    assert reassert.parent is None and sets[-1].parent is None


async def test_the_sampler_comes_from_the_environment(
    sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    for sampler, recorded in (("always_on", True), ("always_off", False)):
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
        sim.gateway.presence = None
        async with traced(sim.settings()) as (_, _, exporter):
            await until(lambda: sim.gateway.presence == "available")
        spans = exporter.get_finished_spans()
        assert bool(named(spans, "presence.reconcile")) is recorded, sampler


def test_resource_attributes() -> None:
    attrs = resource(
        {"POD_NAME": "bot-7f9c", "POD_NAMESPACE": "bots", "NODE_NAME": "node-3"}
    ).attributes
    assert attrs["service.name"] == "presence-controller"
    assert attrs["service.version"] == "0.1.0"
    assert (attrs["k8s.pod.name"], attrs["k8s.namespace.name"], attrs["k8s.node.name"]) == (
        "bot-7f9c",
        "bots",
        "node-3",
    )


def test_service_name_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "wa-bot-presence")
    assert (
        resource({"OTEL_SERVICE_NAME": "wa-bot-presence"}).attributes["service.name"]
        == "wa-bot-presence"
    )


@pytest.mark.parametrize(
    ("value", "names"), [("none", ("none",)), ("console", ("console",)), ("otlp", ("otlp",))]
)
def test_exporters_from_the_environment(value: str, names: tuple[str, ...]) -> None:
    tracing = setup_tracing(Metrics(), environ={"OTEL_TRACES_EXPORTER": value})
    assert tracing.exporters == names
    assert tracing.shutdown(1.0)


def test_an_unknown_exporter_is_a_configuration_error() -> None:
    assert tracing_errors({"OTEL_TRACES_EXPORTER": "jaeger"}) == [
        "OTEL_TRACES_EXPORTER: unsupported exporter 'jaeger': expected otlp, console, none"
    ]
    with pytest.raises(ValueError, match="unsupported exporter"):
        setup_tracing(Metrics(), environ={"OTEL_TRACES_EXPORTER": "otlp,zipkin"})


# A real OTLP/HTTP receiver, and a real subprocess exporting to it.


def attribute(span: Any, key: str) -> str | None:
    """A string attribute of an OTLP protobuf span."""
    return next((a.value.string_value for a in span.attributes if a.key == key), None)


async def test_spans_reach_an_otlp_collector_and_are_flushed_on_shutdown(sim: Sim) -> None:
    receiver = SimCollector()
    async with LoopbackServer(receiver.app()) as collector:
        env = sim.env(
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
            OTEL_BSP_SCHEDULE_DELAY="100",
            POD_NAME="bot-7f9c",
            POD_NAMESPACE="bots",
            NODE_NAME="node-3",
        )
        proc = await spawn(env)
        await until(lambda: sim.gateway.presence == "available", within=10)
        await until(lambda: any(s.name == "presence.reconcile" for _, s in receiver.spans()), 10)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 0, err.decode()
    assert receiver.content_types == {"application/x-protobuf"}
    spans = receiver.spans()
    resources = {json.dumps(r, sort_keys=True) for r, _ in spans}
    (attrs,) = [json.loads(r) for r in resources]
    assert attrs["service.name"] == "presence-controller"
    assert (attrs["k8s.pod.name"], attrs["k8s.namespace.name"], attrs["k8s.node.name"]) == (
        "bot-7f9c",
        "bots",
        "node-3",
    )
    names = {s.name for _, s in spans}
    assert {"presence.reconcile", "presence.probe.health", "presence.probe.lag", "GET"} <= names
    shutdown = [
        s
        for _, s in spans
        if s.name == "presence.gateway.set" and attribute(s, "presence.gateway.why") == "shutdown"
    ]
    assert len(shutdown) == 1, "the shutdown write was flushed before exit"
    assert sim.gateway.access_token.encode() not in b"".join(
        m.SerializeToString() for m in receiver.requests
    )


async def test_a_hanging_collector_delays_neither_ticks_nor_shutdown(sim: Sim) -> None:
    receiver = SimCollector(hang=True)
    async with LoopbackServer(receiver.app()) as collector:
        env = sim.env(
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
            OTEL_BSP_SCHEDULE_DELAY="50",
            PRESENCE_REASSERT_AVAILABLE="100ms",
        )
        proc = await spawn(env)
        await until(lambda: sim.gateway.presence == "available", within=10)
        before = sim.consumer.health_requests
        # Ticks go on while every export hangs (the export runs in the SDK's own thread).
        await until(lambda: sim.consumer.health_requests >= before + 20, within=30)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 10)
        took = loop.time() - sent
    assert proc.returncode == 0 and took < 5.0, (took, err.decode()[-500:])
    assert sim.gateway.presence == "unavailable"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dropped(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('presence_trace_spans_total{result="dropped"}'):
            return float(line.split()[-1])
    raise AssertionError("presence_trace_spans_total not exported")


@pytest.mark.parametrize("first_export_at_exit", [False, True])
async def test_an_unreachable_collector_logs_one_line_and_never_holds_up_the_exit(
    sim: Sim, first_export_at_exit: bool
) -> None:
    """No collector at the endpoint (the SDK default localhost:4318 in a pod without one):
    one `trace export failing` line, none of the SDK's own, and a bounded flush at exit, also
    when the first export only happens at exit (retrying for OTEL_EXPORTER_OTLP_TIMEOUT)."""
    env = sim.env(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{closed_port()}",
        OTEL_BSP_SCHEDULE_DELAY="600000" if first_export_at_exit else "50",
        OTEL_EXPORTER_OTLP_TIMEOUT="10" if first_export_at_exit else "0.3",
    )
    proc = await spawn(env)
    assert proc.stderr is not None
    start = json.loads(await asyncio.wait_for(proc.stderr.readline(), 10))
    admin = f"http://{start['admin']}/metrics"
    async with httpx.AsyncClient(timeout=5) as client:
        await until(lambda: sim.gateway.presence == "available", within=10)
        if not first_export_at_exit:
            seen: list[float] = []

            async def failed_batches() -> int:
                seen.append(dropped((await client.get(admin)).text))
                return len(set(seen)) - (1 if 0.0 in seen else 0)

            deadline = asyncio.get_running_loop().time() + 20
            while await failed_batches() < 3:
                assert asyncio.get_running_loop().time() < deadline, seen
                await asyncio.sleep(0.1)
    sent = asyncio.get_running_loop().time()
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    took = asyncio.get_running_loop().time() - sent
    assert proc.returncode == 0
    lines = [json.loads(line) for line in err.decode().splitlines()]
    assert [x for x in lines if x["logger"].startswith("opentelemetry")] == []
    export = [x["msg"] for x in lines if x.get("event") == "trace_export"]
    unsent = [x["msg"] for x in lines if "did not finish" in x["msg"]]
    if first_export_at_exit:
        assert (export, unsent) == (
            [],
            ["trace export did not finish within 1.0s: unsent spans dropped"],
        )
    else:
        failing = "trace export failing: spans are dropped (see presence_trace_spans_total)"
        assert (export, unsent) == ([failing], []), "said once already"
    # Measured 0.2 s (failing) and 1.2 s (first export at exit), 4.7 s before the bound: a
    # generous limit that still tells the two apart on a loaded machine.
    assert took < 3.0, f"shutdown took {took:.2f}s (flush is bounded to 1 s)"
    assert sim.gateway.presence == "unavailable"


async def test_fleet_mode_is_traced_and_counted(
    sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.sim.kube import SimKube
    from controller.sim.kube_discovery import write_kubeconfig
    from controller.sim.server import LoopbackServer

    fake = SimKube(tokens={"t": "pod-a"})
    fake.workload("shop", "bot", ["pod-a"])
    async with LoopbackServer(fake.app()) as api:
        config = write_kubeconfig(tmp_path / "kubeconfig", api.url, "t", "shop")
        monkeypatch.setenv("KUBECONFIG", str(config))
        kube = {"enabled": True, "namespace": "shop", "pod_name": "pod-a",
                "workload": "deployment/bot", "lease_duration": 1.5, "renew_deadline": 1.0,
                "retry_period": 0.2, "heartbeat": 0.5}  # fmt: skip
        async with traced(sim.settings(kube=kube)) as (controller, tracing, exporter):
            await until(lambda: sim.gateway.presence == "available")
            fake.annotate(
                "deployments", "shop", "bot", **{"presence-controller/maintenance": "true"}
            )
            await until(lambda: sim.gateway.presence == "unavailable")
            fleet = controller.fleet
            assert fleet is not None and fleet.recorder is not None
            await until(lambda: fleet.recorder is not None and fleet.recorder.sent >= 3)
            tracing.provider.force_flush()
            spans = exporter.get_finished_spans()
            (elect,) = named(spans, "presence.kube.elect")
            assert elect.attributes is not None
            assert elect.attributes["presence.kube.leading"] is True
            watched = [s.attributes or {} for s in named(spans, "presence.kube.watch")]
            assert any(a.get("presence.kube.watch.event") == "MODIFIED" for a in watched)
            reasons = {(s.attributes or {}).get("presence.kube.event.reason")
                       for s in named(spans, "presence.kube.event")}  # fmt: skip
            assert {"LeaderElected", "MaintenanceStarted"} <= reasons
            sample = controller.metrics.registry.get_sample_value

            def requests(verb: str, resource: str, code: str) -> float:
                labels = {"verb": verb, "resource": resource, "code": code}
                return sample("presence_kube_requests_total", labels) or 0.0

            await until(lambda: requests("update", "leases", "200") >= 1)
            assert requests("create", "leases", "201") >= 1
            assert requests("watch", "deployments", "200") >= 1
