"""Server spans of GrpcServer: one per call, continuing the caller's trace, the same as OpenTelemetry's own
aio interceptor records (TracingInterceptor only caches what depends on the method name)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from modelhub.core.grpc.server import GrpcServer, ServiceRegistration
from modelhub.testing.v1 import testing_pb2, testing_pb2_grpc

from .test_grpc_server import ECHO, SERVICE, EchoServicer, bearer, settings, user_token


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
async def address(provider: TracerProvider) -> AsyncIterator[str]:
    server = GrpcServer(
        settings(),
        [ServiceRegistration(SERVICE, EchoServicer(), testing_pb2_grpc.add_EchoServiceServicer_to_server)],
        tracer_provider=provider,
    )
    await server.start()
    try:
        yield server.address
    finally:
        await server.stop(0)


def caller_context() -> tuple[trace.SpanContext, tuple[tuple[str, str], ...]]:
    """A caller's span context and the `traceparent` metadata that carries it."""
    caller = TracerProvider().get_tracer("caller").start_span("client call")
    headers: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(headers, trace.set_span_in_context(caller))
    return caller.get_span_context(), tuple(headers.items())


def comparable(span: ReadableSpan) -> dict[str, Any]:
    attributes = dict(span.attributes or {})
    attributes.pop("net.peer.port")  # the client's port differs from call to call
    return {
        "name": span.name,
        "kind": span.kind,
        "attributes": attributes,
        "status": (span.status.status_code, span.status.description),
        "scope": (span.instrumentation_scope.name, span.instrumentation_scope.schema_url)
        if span.instrumentation_scope
        else None,
        "events": [event.name for event in span.events],
    }


async def test_each_call_gets_a_server_span_continuing_the_callers_trace(
    address: str, exporter: InMemorySpanExporter
) -> None:
    parent, traceparent = caller_context()
    async with grpc.aio.insecure_channel(address) as channel:
        stub: Any = testing_pb2_grpc.EchoServiceStub(channel)
        for _ in range(2):  # the second call runs on the handler wrapped for the first
            await stub.Echo(testing_pb2.EchoRequest(message="hi"), metadata=bearer(user_token()) + traceparent)
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    assert spans[0].context.span_id != spans[1].context.span_id
    for span in spans:
        assert span.name == ECHO
        assert span.kind == SpanKind.SERVER
        assert span.context.trace_id == parent.trace_id
        assert span.parent is not None and span.parent.span_id == parent.span_id
        attributes = dict(span.attributes or {})
        assert attributes["rpc.system"] == "grpc"
        assert attributes["rpc.service"] == SERVICE
        assert attributes["rpc.method"] == "Echo"
        assert attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
        assert attributes["net.peer.ip"] == "127.0.0.1"
        assert span.status.status_code == StatusCode.UNSET


async def test_failed_calls_record_their_status(address: str, exporter: InMemorySpanExporter) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub: Any = testing_pb2_grpc.EchoServiceStub(channel)
        for request, metadata in (
            (testing_pb2.EchoRequest(fail_with="NotFound"), bearer(user_token())),
            (testing_pb2.EchoRequest(fail_with="RuntimeError"), bearer(user_token())),
            (testing_pb2.EchoRequest(message="no token"), ()),
        ):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Echo(request, metadata=metadata)
    codes = [
        (dict(s.attributes or {})["rpc.grpc.status_code"], s.status.status_code) for s in exporter.get_finished_spans()
    ]
    # OpenTelemetry's rule for server spans: client-caused codes leave the status unset, server faults are errors
    assert codes == [
        (grpc.StatusCode.NOT_FOUND.value[0], StatusCode.UNSET),
        (grpc.StatusCode.INTERNAL.value[0], StatusCode.ERROR),
        (grpc.StatusCode.UNAUTHENTICATED.value[0], StatusCode.UNSET),
    ]


async def test_health_checks_are_not_traced(address: str, exporter: InMemorySpanExporter) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert exporter.get_finished_spans() == ()


async def test_spans_are_the_ones_opentelemetrys_interceptor_records(
    address: str, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    """The same calls through a plain grpc.aio server with the library's interceptor record the same spans."""
    reference = grpc.aio.server(interceptors=[aio_server_interceptor(tracer_provider=provider)])
    testing_pb2_grpc.add_EchoServiceServicer_to_server(EchoServicer(), reference)
    port = reference.add_insecure_port("127.0.0.1:0")
    await reference.start()
    try:
        requests = [testing_pb2.EchoRequest(message="hi"), testing_pb2.EchoRequest(fail_with="Conflict")]
        spans: dict[str, list[dict[str, Any]]] = {}
        for name, target in (("modelhub", address), ("library", f"127.0.0.1:{port}")):
            exporter.clear()
            async with grpc.aio.insecure_channel(target) as channel:
                stub: Any = testing_pb2_grpc.EchoServiceStub(channel)
                for request in requests:
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await stub.Echo(request, metadata=bearer(user_token()))
            spans[name] = [comparable(span) for span in exporter.get_finished_spans()]
    finally:
        await reference.stop(0)
    # The library's server maps no DomainError: the handler's exception ends its call as UNKNOWN.
    assert [s["name"] for s in spans["modelhub"]] == [ECHO, ECHO]
    assert spans["modelhub"][0] == spans["library"][0]
    assert spans["modelhub"][1]["attributes"]["rpc.grpc.status_code"] == grpc.StatusCode.ABORTED.value[0]
