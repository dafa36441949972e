"""OpenTelemetry tracing: one TracerProvider per process, exporting over OTLP/gRPC when configured."""

from __future__ import annotations

import logging
import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

logger = logging.getLogger(__name__)

_provider: TracerProvider | None = None


def configure_tracing(
    service_name: str,
    otlp_endpoint: str = "",
    *,
    export_timeout_seconds: float = 1.0,
    set_global: bool = True,
) -> TracerProvider:
    """Create the process's TracerProvider (resource `service.name`) and, by default, make it global.

    With an `otlp_endpoint` (`http://collector:4317`; no scheme means plain text too, `https://` means TLS)
    spans are batched and exported with a short timeout, so a missing collector costs little; without
    one spans are still created (trace ids reach logs and propagate across calls) but go nowhere.
    OpenTelemetry lets the global provider be set only once per process.
    """
    global _provider  # noqa: PLW0603 - the process's one provider, kept for shutdown_tracing()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        endpoint = otlp_endpoint if "://" in otlp_endpoint else f"http://{otlp_endpoint}"
        exporter = OTLPSpanExporter(endpoint=endpoint, timeout=export_timeout_seconds)
        provider.add_span_processor(BatchSpanProcessor(exporter, export_timeout_millis=export_timeout_seconds * 1000))
    if set_global:
        trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown_tracing(timeout_seconds: float = 1.5) -> None:
    """Export what is left and stop, waiting at most `timeout_seconds` (a missing collector never hangs
    a shutdown: an unfinished export is abandoned to a daemon thread). Safe to call twice."""
    global _provider
    provider, _provider = _provider, None
    if provider is None:
        return
    worker = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
    worker.start()
    worker.join(timeout_seconds)
    if worker.is_alive():
        logger.warning("spans not exported within %.1fs of shutdown were dropped", timeout_seconds)
