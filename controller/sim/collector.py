"""A simulated OpenTelemetry collector: OTLP/HTTP on /v1/traces, decoding the protobuf; it can
also hang (a collector that accepts connections and never answers)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


class SimCollector:
    def __init__(self, hang: bool = False) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: set[str] = set()
        self.hang = hang

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        return app

    async def _traces(self, request: web.Request) -> web.Response:
        if self.hang:
            await asyncio.sleep(3600)
        self.content_types.add(request.content_type)
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        self.requests.append(message)
        return web.Response(body=b"", content_type="application/x-protobuf")

    def spans(self) -> list[tuple[dict[str, str], Any]]:
        """Every span received, with its resource attributes."""
        out = []
        for message in self.requests:
            for resource_spans in message.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    out += [(resource, span) for span in scope.spans]
        return out
