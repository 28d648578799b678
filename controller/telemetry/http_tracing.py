"""HTTP client spans for httpx, with secrets removed from every URL attribute.

Our own transport wrapper rather than the httpx auto-instrumentation: the Wawp token travels in
the query string, and the redaction must be ours and certain (see redaction.SECRET_QUERY_KEYS).
"""

from __future__ import annotations

import httpx
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from controller.redaction import redact_url


class TracingTransport(httpx.AsyncBaseTransport):
    """Wraps a transport; one CLIENT span per request (semantic conventions for HTTP)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, tracer: trace.Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        method = request.method
        url = request.url
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "url.full": redact_url(str(url)),
            "server.address": url.host,
            "server.port": url.port or (443 if url.scheme == "https" else 80),
        }
        with self._tracer.start_as_current_span(
            method, kind=SpanKind.CLIENT, attributes=attributes, record_exception=False
        ) as span:
            try:
                response = await self._inner.handle_async_request(request)
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__name__)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_attribute("error.type", str(response.status_code))
                span.set_status(Status(StatusCode.ERROR))
            return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def traced_transport(
    tracer: trace.Tracer, limits: httpx.Limits | None = None
) -> httpx.AsyncBaseTransport:
    inner = httpx.AsyncHTTPTransport(limits=limits or httpx.Limits())
    return TracingTransport(inner, tracer)
