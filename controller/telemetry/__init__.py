"""Telemetry: structured logs, Prometheus metrics, OpenTelemetry tracing."""
