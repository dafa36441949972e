"""The gRPC bootstrap end to end: a real grpc.aio server on a free port, called by a real client."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from modelhub.core.config import ServiceSettings, load_settings
from modelhub.core.errors import (
    AlreadyExists,
    Conflict,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StreamVersionConflict,
    Unauthenticated,
)
from modelhub.core.grpc.auth import TokenVerifier, current_principal, issue_token
from modelhub.core.grpc.calls import CallInterceptor
from modelhub.core.grpc.errors import error_details
from modelhub.core.grpc.registration import add_service
from modelhub.core.grpc.server import GrpcServer, ServiceRegistration
from modelhub.devstack.ports import free_port
from modelhub.testing.v1 import testing_pb2, testing_pb2_grpc

SERVICE = "modelhub.testing.v1.EchoService"
ECHO = f"/{SERVICE}/Echo"
SECRET = "test-secret-that-is-long-enough-for-hs256"

ERRORS: dict[str, Callable[[], Exception]] = {
    "InvalidArgument": lambda: InvalidArgument(
        "the request has invalid fields",
        violations=[FieldViolation("message", "must not be empty"), FieldViolation("delay_ms", "too long")],
    ),
    "NotFound": lambda: NotFound("no widget w1", metadata={"widget_id": "w1"}),
    "AlreadyExists": lambda: AlreadyExists("widget w1 exists", reason="WIDGET_EXISTS"),
    "Conflict": lambda: Conflict("someone else changed it"),
    "StreamVersionConflict": lambda: StreamVersionConflict("widget-w1", 3, 4),
    "FailedPrecondition": lambda: FailedPrecondition("not enough Buzz", reason="INSUFFICIENT_FUNDS"),
    "PermissionDenied": lambda: PermissionDenied("not your widget"),
    "Unauthenticated": lambda: Unauthenticated("who are you?"),
    "RuntimeError": lambda: RuntimeError("password=hunter2 leaked from the database driver"),
}


class EchoServicer(testing_pb2_grpc.EchoServiceServicer):
    """Echoes the message and the caller; sleeps `delay_ms`; raises the error named by `fail_with`."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.completed = 0

    async def Echo(  # noqa: N802 - the generated name
        self, request: testing_pb2.EchoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> testing_pb2.EchoResponse:
        self.started.set()
        if request.delay_ms:
            try:
                await asyncio.sleep(request.delay_ms / 1000)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if request.fail_with:
            raise ERRORS[request.fail_with]()
        principal = current_principal()
        self.completed += 1
        return testing_pb2.EchoResponse(
            message=request.message,
            principal_id=principal.id if principal else "",
            roles=sorted(principal.roles) if principal else [],
        )


def settings(**overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {"service_name": "echo", "grpc_port": 0, "jwt_secret": SECRET}
    return load_settings(ServiceSettings, "MODELHUB_TEST_ECHO_", **(values | overrides))


@asynccontextmanager
async def running(
    servicer: EchoServicer | None = None, **kwargs: Any
) -> AsyncIterator[tuple[GrpcServer, EchoServicer]]:
    servicer = servicer or EchoServicer()
    grace = kwargs.pop("grace", 5.0)
    server = GrpcServer(
        settings(shutdown_grace_seconds=grace),
        [ServiceRegistration(SERVICE, servicer, testing_pb2_grpc.add_EchoServiceServicer_to_server)],
        **kwargs,
    )
    await server.start()
    try:
        yield server, servicer
    finally:
        await server.stop(0)


@pytest.fixture
async def echo_server() -> AsyncIterator[tuple[GrpcServer, EchoServicer]]:
    async with running() as pair:
        yield pair


@pytest.fixture
async def channel(echo_server: tuple[GrpcServer, EchoServicer]) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(echo_server[0].address) as channel:
        yield channel


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def user_token(**kwargs: Any) -> str:
    return issue_token("u-1", kwargs.pop("roles", ["user", "moderator"]), key=SECRET, **kwargs)


async def echo(channel: grpc.aio.Channel, token: str | None = None, **fields: Any) -> testing_pb2.EchoResponse:
    stub = testing_pb2_grpc.EchoServiceStub(channel)
    metadata = bearer(token) if token is not None else None
    timeout = fields.pop("timeout", 5.0)
    return await stub.Echo(testing_pb2.EchoRequest(**fields), metadata=metadata, timeout=timeout)


async def failed(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


# --- authentication -----------------------------------------------------------------------------------


async def test_valid_token_makes_the_principal_visible_to_the_handler(channel: grpc.aio.Channel) -> None:
    response = await echo(channel, user_token(), message="hi")
    assert response.message == "hi"
    assert response.principal_id == "u-1"
    assert list(response.roles) == ["moderator", "user"]


async def test_missing_token_is_unauthenticated_with_an_actionable_message(channel: grpc.aio.Channel) -> None:
    error = await failed(echo(channel, message="hi"))
    details = error_details(error)
    assert details.code == grpc.StatusCode.UNAUTHENTICATED
    assert details.reason == "CREDENTIALS_MISSING"
    assert "authorization: Bearer" in details.message


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (issue_token("u-1", key="some-other-secret-that-is-long-enough!"), "TOKEN_INVALID"),
        (issue_token("u-1", key=SECRET, expires_in=-3600), "TOKEN_EXPIRED"),
        ("not.a.jwt", "TOKEN_INVALID"),
    ],
    ids=["bad-signature", "expired", "garbage"],
)
async def test_bad_tokens_are_unauthenticated(channel: grpc.aio.Channel, token: str, reason: str) -> None:
    details = error_details(await failed(echo(channel, token, message="hi")))
    assert details.code == grpc.StatusCode.UNAUTHENTICATED
    assert details.reason == reason


async def test_non_bearer_authorization_is_unauthenticated(channel: grpc.aio.Channel) -> None:
    stub = testing_pb2_grpc.EchoServiceStub(channel)
    call = stub.Echo(testing_pb2.EchoRequest(), metadata=(("authorization", "Basic dTpw"),), timeout=5)
    details = error_details(await failed(call))
    assert (details.code, details.reason) == (grpc.StatusCode.UNAUTHENTICATED, "CREDENTIALS_MALFORMED")


async def test_public_methods_allow_anonymous_callers_but_reject_bad_tokens() -> None:
    async with running(public_methods={ECHO}) as (server, _), grpc.aio.insecure_channel(server.address) as ch:
        anonymous = await echo(ch, message="hi")
        assert (anonymous.message, anonymous.principal_id, list(anonymous.roles)) == ("hi", "", [])
        known = await echo(ch, user_token(roles=["admin"]), message="hi")
        assert (known.principal_id, list(known.roles)) == ("u-1", ["admin"])
        expired = await failed(echo(ch, user_token(expires_in=-60), message="hi"))
        assert expired.code() == grpc.StatusCode.UNAUTHENTICATED


# --- error mapping ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("InvalidArgument", grpc.StatusCode.INVALID_ARGUMENT),
        ("NotFound", grpc.StatusCode.NOT_FOUND),
        ("AlreadyExists", grpc.StatusCode.ALREADY_EXISTS),
        ("Conflict", grpc.StatusCode.ABORTED),
        ("StreamVersionConflict", grpc.StatusCode.ABORTED),
        ("FailedPrecondition", grpc.StatusCode.FAILED_PRECONDITION),
        ("PermissionDenied", grpc.StatusCode.PERMISSION_DENIED),
        ("Unauthenticated", grpc.StatusCode.UNAUTHENTICATED),
    ],
)
async def test_domain_errors_map_to_their_status_with_rich_details(
    channel: grpc.aio.Channel, name: str, code: grpc.StatusCode
) -> None:
    expected = ERRORS[name]()
    assert isinstance(expected, DomainError)
    details = error_details(await failed(echo(channel, user_token(), fail_with=name)))
    assert details.code == code
    assert details.message == expected.message
    assert details.reason == expected.reason
    assert details.domain == "modelhub"
    assert dict(details.metadata) == expected.metadata
    expected_violations = expected.violations if isinstance(expected, InvalidArgument) else []
    assert list(details.violations) == expected_violations


async def test_unexpected_exceptions_are_internal_and_never_leak(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="modelhub.core.grpc.errors"):
        error = await failed(echo(channel, user_token(), fail_with="RuntimeError"))
    details = error_details(error)
    assert details.code == grpc.StatusCode.INTERNAL
    assert "hunter2" not in details.message
    assert "hunter2" not in (error.debug_error_string() or "")
    assert details.reason == "INTERNAL"
    reference = details.metadata["reference"]
    assert reference in details.message
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None
    assert "hunter2" in str(logged[0].exc_info[1])


# --- deadlines and metrics ----------------------------------------------------------------------------


def rpc_count(code: str) -> float:
    labels = {"service": SERVICE, "method": "Echo", "code": code}
    return REGISTRY.get_sample_value("modelhub_rpc_server_duration_seconds_count", labels) or 0.0


async def test_deadline_exceeded_cancels_the_handler(echo_server: tuple[GrpcServer, EchoServicer]) -> None:
    server, servicer = echo_server
    before = rpc_count("DEADLINE_EXCEEDED")
    async with grpc.aio.insecure_channel(server.address) as ch:
        error = await failed(echo(ch, user_token(), delay_ms=5000, timeout=0.3))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(servicer.cancelled.wait(), 2)
    assert servicer.completed == 0
    for _ in range(50):  # the server's task records the metric just after the client gives up
        if rpc_count("DEADLINE_EXCEEDED") > before:
            break
        await asyncio.sleep(0.02)
    assert rpc_count("DEADLINE_EXCEEDED") == before + 1


async def test_rpc_latency_is_recorded_by_final_code(channel: grpc.aio.Channel) -> None:
    ok, not_found, unauthenticated = rpc_count("OK"), rpc_count("NOT_FOUND"), rpc_count("UNAUTHENTICATED")
    await echo(channel, user_token(), message="hi")
    await failed(echo(channel, user_token(), fail_with="NotFound"))
    await failed(echo(channel, message="no token"))
    assert rpc_count("OK") == ok + 1
    assert rpc_count("NOT_FOUND") == not_found + 1
    assert rpc_count("UNAUTHENTICATED") == unauthenticated + 1


# --- health and reflection ----------------------------------------------------------------------------


async def test_health_is_serving_then_not_serving_at_shutdown() -> None:
    async with running() as (server, _), grpc.aio.insecure_channel(server.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", SERVICE):  # no token needed
            response = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.create_task(server.stop(grace=1))
        second = await asyncio.wait_for(watch.read(), 5)
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        await stopping


async def test_reflection_lists_the_services(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(timeout=5)
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    listed = await call.read()
    await call.write(reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE))
    described = await call.read()
    await call.done_writing()
    names = {s.name for s in listed.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names
    assert described.file_descriptor_response.file_descriptor_proto


# --- graceful shutdown --------------------------------------------------------------------------------


async def test_shutdown_lets_calls_in_flight_finish_and_refuses_new_ones() -> None:
    async with running(grace=5.0) as (server, servicer), grpc.aio.insecure_channel(server.address) as ch:
        slow = asyncio.create_task(echo(ch, user_token(), message="slow", delay_ms=800))
        await asyncio.wait_for(servicer.started.wait(), 5)
        stopping = asyncio.create_task(server.stop())
        await asyncio.sleep(0.1)
        refused = await failed(echo(ch, user_token(), message="late", timeout=2))
        assert refused.code() == grpc.StatusCode.UNAVAILABLE
        assert (await slow).message == "slow"
        await asyncio.wait_for(stopping, 5)
        await asyncio.wait_for(server.wait(), 1)
        assert servicer.completed == 1


async def test_calls_outlasting_the_grace_period_are_cancelled() -> None:
    async with running(grace=0.3) as (server, servicer), grpc.aio.insecure_channel(server.address) as ch:
        slow = asyncio.create_task(echo(ch, user_token(), delay_ms=10_000))
        await asyncio.wait_for(servicer.started.wait(), 5)
        started = time.monotonic()
        await server.stop()
        assert time.monotonic() - started < 3
        error = await failed(slow)
        assert error.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
        assert servicer.cancelled.is_set()


SERVER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys

    from modelhub.core.config import ServiceSettings
    from modelhub.core.grpc.server import GrpcServer, ServiceRegistration
    from modelhub.testing.v1 import testing_pb2, testing_pb2_grpc


    class Echo(testing_pb2_grpc.EchoServiceServicer):
        async def Echo(self, request, context):
            await asyncio.sleep(request.delay_ms / 1000)
            return testing_pb2.EchoResponse(message=request.message)


    async def main():
        settings = ServiceSettings(grpc_port=0, shutdown_grace_seconds=10)
        service = ServiceRegistration(
            "modelhub.testing.v1.EchoService", Echo(), testing_pb2_grpc.add_EchoServiceServicer_to_server
        )
        server = GrpcServer(settings, [service], public_methods={"/modelhub.testing.v1.EchoService/Echo"})
        await server.start()
        server.install_signal_handlers()
        print(server.port, flush=True)
        await server.wait()
        print("stopped", flush=True)


    asyncio.run(main())
    """
)


async def test_sigterm_stops_a_real_process_gracefully(tmp_path: Path) -> None:
    script = tmp_path / "echo_server.py"
    script.write_text(SERVER_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELHUB_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        port = int(await asyncio.wait_for(proc.stdout.readline(), 30))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            await echo(ch, message="warm-up")
            slow = asyncio.create_task(echo(ch, message="slow", delay_ms=1000))
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            assert (await slow).message == "slow"
        rc = await asyncio.wait_for(proc.wait(), 10)
        assert rc == 0, (await proc.stderr.read()).decode()
        assert (await proc.stdout.read()).decode().strip() == "stopped"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


class ExpiredContext:
    """Just what the call wrapper touches for a call whose deadline already passed."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def time_remaining(self) -> float:
        return -0.5

    def code(self) -> grpc.StatusCode | None:
        return self.aborted[0] if self.aborted else None

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        self.aborted = (code, details)
        raise grpc.aio.AbortError()


async def test_calls_arriving_after_their_deadline_do_not_run() -> None:
    details: Any = SimpleNamespace(method=ECHO, invocation_metadata=())
    ran = False

    async def behavior(request: Any, context: Any) -> testing_pb2.EchoResponse:
        nonlocal ran
        ran = True
        return testing_pb2.EchoResponse()

    async def continuation(_: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(behavior)

    handler = await CallInterceptor(TokenVerifier(SECRET)).intercept_service(continuation, details)
    context = ExpiredContext()
    with pytest.raises(grpc.aio.AbortError):
        await handler.unary_unary(testing_pb2.EchoRequest(), context)
    assert not ran
    assert context.aborted is not None
    assert context.aborted[0] == grpc.StatusCode.DEADLINE_EXCEEDED


class StreamContext:
    """Just what the call wrapper touches for a server-streaming call with a bearer token."""

    def __init__(self, token: str) -> None:
        self.metadata = bearer(token)
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def time_remaining(self) -> None:
        return None

    def invocation_metadata(self) -> tuple[tuple[str, str]]:
        return self.metadata

    def code(self) -> grpc.StatusCode | None:
        return self.aborted[0] if self.aborted else None

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        self.aborted = (code, details)
        raise grpc.aio.AbortError()


async def test_server_streaming_handlers_get_the_principal_and_their_errors_mapped() -> None:
    """The call wrapper around an async generator: the caller is known while it yields, a DomainError raised
    mid-stream ends the call with its status, and the duration is recorded under that status."""
    method = f"/{SERVICE}/Stream"

    async def behavior(request: Any, context: Any) -> AsyncIterator[str]:
        principal = current_principal()
        yield principal.id if principal else "anonymous"
        raise NotFound("no second item")

    async def continuation(_: Any) -> Any:
        return grpc.unary_stream_rpc_method_handler(behavior)

    details: Any = SimpleNamespace(method=method, invocation_metadata=())
    handler = await CallInterceptor(TokenVerifier(SECRET)).intercept_service(continuation, details)
    labels = {"service": SERVICE, "method": "Stream", "code": "NOT_FOUND"}
    before = REGISTRY.get_sample_value("modelhub_rpc_server_duration_seconds_count", labels) or 0.0
    context = StreamContext(user_token())
    received: list[str] = []

    async def consume() -> None:
        async for item in handler.unary_stream(testing_pb2.EchoRequest(), context):
            received.append(item)

    with pytest.raises(grpc.aio.AbortError):
        await consume()
    assert received == ["u-1"]
    assert context.aborted is not None and context.aborted[0] == grpc.StatusCode.NOT_FOUND
    assert current_principal() is None
    assert REGISTRY.get_sample_value("modelhub_rpc_server_duration_seconds_count", labels) == before + 1


async def test_metrics_endpoint_follows_the_server() -> None:
    port = free_port()
    server = GrpcServer(
        settings(metrics_port=port),
        [ServiceRegistration(SERVICE, EchoServicer(), testing_pb2_grpc.add_EchoServiceServicer_to_server)],
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as ch:
            await echo(ch, user_token(), message="hi")
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read())
        assert b'modelhub_rpc_server_duration_seconds_count{code="OK",method="Echo"' in body
    finally:
        await server.stop(0)
    with pytest.raises(urllib.error.URLError):
        await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{port}/metrics", timeout=2)


async def test_add_service_answers_an_unparseable_request_with_invalid_argument() -> None:
    """A string field with invalid UTF-8 fails inside grpc's generated registration (UNKNOWN); registered with
    add_service, it reaches the error mapping as INVALID_ARGUMENT and the method never runs."""
    servicer = EchoServicer()

    def register(s: EchoServicer, server: grpc.aio.Server) -> None:
        add_service(s, server, testing_pb2, "EchoService")

    server = GrpcServer(settings(), [ServiceRegistration(SERVICE, servicer, register)], public_methods={ECHO})
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as ch:
            raw = ch.unary_unary(ECHO, request_serializer=lambda b: b, response_deserializer=lambda b: b)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await raw(b"\x0a\x02\xff\xfe")  # field 1 (message), two bytes that are not UTF-8
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "does not parse" in (caught.value.details() or "")
            echo = ch.unary_unary(
                ECHO,
                request_serializer=testing_pb2.EchoRequest.SerializeToString,
                response_deserializer=testing_pb2.EchoResponse.FromString,
            )
            assert (await echo(testing_pb2.EchoRequest(message="hi"))).message == "hi"
    finally:
        await server.stop(0)
