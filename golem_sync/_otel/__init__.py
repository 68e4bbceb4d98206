"""The OpenTelemetry instrumentation behind :mod:`golem_sync.otel` (imports ``opentelemetry``)."""
