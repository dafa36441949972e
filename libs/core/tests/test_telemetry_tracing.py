"""configure_tracing / shutdown_tracing against a real OTLP/gRPC receiver, and against none at all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc.aio
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from modelhub.core.telemetry.tracing import configure_tracing, shutdown_tracing
from modelhub.devstack.ports import free_port


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """Just enough of an OpenTelemetry collector: remembers what it receives."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    async def Export(self, request: Any, context: Any) -> trace_service_pb2.ExportTraceServiceResponse:  # noqa: N802
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
async def collector() -> AsyncIterator[tuple[str, Collector]]:
    servicer = Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"http://127.0.0.1:{port}", servicer
    finally:
        await server.stop(0)


async def test_spans_reach_the_collector_with_the_service_name(collector: tuple[str, Collector]) -> None:
    endpoint, received = collector
    provider = configure_tracing("catalog", endpoint, set_global=False)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
        pass
    await asyncio.to_thread(shutdown_tracing)  # the exporter's blocking call must not block our server
    spans = [
        (resource_spans.resource, span.name)
        for request in received.requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    assert sorted(name for _, name in spans) == ["inner", "outer"]
    attributes = {a.key: a.value.string_value for a in spans[0][0].attributes}
    assert attributes["service.name"] == "catalog"


def test_shutdown_is_quick_when_no_collector_listens() -> None:
    provider = configure_tracing("ledger", f"127.0.0.1:{free_port()}", set_global=False)
    tracer = provider.get_tracer("test")
    for i in range(50):
        with tracer.start_as_current_span(f"span-{i}"):
            pass
    started = time.monotonic()
    shutdown_tracing()
    assert time.monotonic() - started < 2.0
    shutdown_tracing()  # a second call is harmless


def test_without_endpoint_spans_are_still_real() -> None:
    provider = configure_tracing("search", "", set_global=False)
    with provider.get_tracer("test").start_as_current_span("local") as span:
        assert span.get_span_context().is_valid
        assert span.is_recording()
    started = time.monotonic()
    shutdown_tracing()
    assert time.monotonic() - started < 0.5
