"""W3C trace context in message headers, so a trace continues across a NATS hop."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()


def inject_headers(headers: dict[str, str], context: Context | None = None) -> None:
    """Add `traceparent` (and `tracestate`) for the current span, or the one in `context`, to `headers`."""
    _propagator.inject(headers, context=context)


def extract_context(headers: Mapping[str, str] | None) -> Context:
    """The context `headers` carry (empty when they carry none): start the consumer's span in it."""
    return _propagator.extract(dict(headers or {}))
