"""Observability shared by every service: traces (OpenTelemetry), metrics (Prometheus), structured logs."""
