"""Trace context carried in message headers continues the producer's trace on the consumer side."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanKind

from modelhub.core.telemetry.propagation import extract_context, inject_headers

tracer = TracerProvider().get_tracer("test")


def test_consumer_span_continues_the_producers_trace() -> None:
    headers = {"Nats-Msg-Id": "0192f0c4-aaaa-7bbb-8ccc-000000000001"}
    with tracer.start_as_current_span("publish", kind=SpanKind.PRODUCER) as producer:
        inject_headers(headers)
    produced = producer.get_span_context()
    assert headers["Nats-Msg-Id"] == "0192f0c4-aaaa-7bbb-8ccc-000000000001"
    assert headers["traceparent"] == f"00-{produced.trace_id:032x}-{produced.span_id:016x}-{produced.trace_flags:02x}"

    with tracer.start_as_current_span("consume", context=extract_context(headers), kind=SpanKind.CONSUMER) as consumer:
        consumed = consumer.get_span_context()
    assert isinstance(consumer, ReadableSpan)
    assert consumed.trace_id == produced.trace_id
    assert consumed.span_id != produced.span_id
    assert consumer.parent is not None
    assert consumer.parent.span_id == produced.span_id
    assert consumer.parent.is_remote


def test_no_current_span_injects_nothing() -> None:
    headers: dict[str, str] = {}
    inject_headers(headers)
    assert headers == {}


def test_headers_without_trace_context_start_a_new_trace() -> None:
    with tracer.start_as_current_span("elsewhere") as unrelated:
        for headers in (None, {}, {"traceparent": "garbage"}):
            with tracer.start_as_current_span("consume", context=extract_context(headers)) as span:
                assert span.get_span_context().trace_id != unrelated.get_span_context().trace_id
                assert isinstance(span, ReadableSpan)
                assert span.parent is None
