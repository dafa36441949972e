"""The gRPC server every service runs: interceptors, health, reflection, graceful shutdown.

    service = ServiceRegistration(
        "modelhub.ledger.v1.LedgerService", servicer, ledger_pb2_grpc.add_LedgerServiceServicer_to_server
    )
    server = GrpcServer(settings, [service], public_methods={"/modelhub.ledger.v1.LedgerService/GetRules"})
    await server.serve()  # start; on SIGTERM/SIGINT stop gracefully; return once stopped

Interceptors, outermost first: OpenTelemetry (a server span per call, continuing the caller's trace), then
`CallInterceptor`: Prometheus latency, deadline check, error mapping (servicers just raise DomainError) and
authentication in one wrapper.
Handlers are coroutines; server-streaming handlers are async generators (`yield` responses, not
`context.write`, which the tracing interceptor does not support).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc.filters import health_check, negate
from opentelemetry.trace import TracerProvider

from modelhub.core.config import ServiceSettings
from modelhub.core.grpc.auth import TokenVerifier
from modelhub.core.grpc.calls import CallInterceptor
from modelhub.core.grpc.tracing import TracingInterceptor
from modelhub.core.telemetry.metrics import MetricsServer, start_metrics_server

logger = logging.getLogger(__name__)

HEALTH_SERVICE = "grpc.health.v1.Health"


@dataclass(frozen=True)
class ServiceRegistration:
    """One gRPC service to serve: its full name, the servicer, and the generated `add_*_to_server`."""

    name: str
    """Full service name, e.g. "modelhub.ledger.v1.LedgerService" (health status and reflection use it)."""
    servicer: object
    add_to_server: Callable[[Any, grpc.aio.Server], None]


class GrpcServer:
    """A grpc.aio server with the standard interceptors, health and reflection, stopping gracefully."""

    def __init__(
        self,
        settings: ServiceSettings,
        services: Sequence[ServiceRegistration],
        *,
        public_methods: Collection[str] = (),
        verifier: TokenVerifier | None = None,
        extra_interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
        options: Sequence[tuple[str, Any]] = (),
        tracer_provider: TracerProvider | None = None,
    ):
        """`public_methods` ("/pkg.v1.Service/Method") accept anonymous callers; `extra_interceptors` run
        innermost, after authentication; server spans go to `tracer_provider` (default: the global one)."""
        self._settings = settings
        self._services = list(services)
        self._public_methods = frozenset(public_methods)
        self._verifier = verifier or TokenVerifier.from_settings(settings)
        self._extra_interceptors = list(extra_interceptors)
        self._options = list(options)
        self._tracer_provider = tracer_provider
        self._server: grpc.aio.Server | None = None
        self._health: HealthServicer | None = None
        self._port: int | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._signals: list[signal.Signals] = []
        self._metrics: MetricsServer | None = None

    @property
    def port(self) -> int:
        """The port bound (useful when settings ask for port 0)."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def address(self) -> str:
        """host:port to connect to."""
        return f"{self._settings.grpc_host}:{self.port}"

    def _interceptors(self) -> list[grpc.aio.ServerInterceptor[Any, Any]]:
        return [
            TracingInterceptor(negate(health_check()), tracer_provider=self._tracer_provider),
            CallInterceptor(self._verifier, self._public_methods),
            *self._extra_interceptors,
        ]

    async def start(self) -> None:
        """Bind, start serving, report every service SERVING, and serve /metrics if settings.metrics_port."""
        if self._server is not None:
            raise RuntimeError("the server is already started")
        server = grpc.aio.server(interceptors=self._interceptors(), options=self._options)
        for service in self._services:
            service.add_to_server(service.servicer, server)
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        names = [s.name for s in self._services]
        reflection.enable_server_reflection([*names, HEALTH_SERVICE, reflection.SERVICE_NAME], server)
        port = server.add_insecure_port(self._settings.grpc_address)
        if port == 0:
            raise RuntimeError(f"could not bind the gRPC server to {self._settings.grpc_address}")
        self._metrics = start_metrics_server(self._settings.metrics_port)
        await server.start()
        self._server, self._health, self._port = server, health, port
        for name in ["", *names]:
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)
        logger.info("gRPC server listening on %s", self.address, extra={"services": names})

    async def set_serving(self, serving: bool, service: str = "") -> None:
        """Report `service` ("" = the whole server) SERVING or NOT_SERVING to health checks."""
        if self._health is None:
            raise RuntimeError("the server is not started")
        response = health_pb2.HealthCheckResponse
        await self._health.set(service, response.SERVING if serving else response.NOT_SERVING)

    async def stop(self, grace: float | None = None) -> None:
        """Stop gracefully: health NOT_SERVING, refuse new calls, let calls in flight finish within `grace`
        seconds (default: settings.shutdown_grace_seconds), then cancel what is left. Idempotent."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(grace))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float | None) -> None:
        if self._server is None:
            return
        grace = self._settings.shutdown_grace_seconds if grace is None else grace
        logger.info("gRPC server stopping (grace %.1fs)", grace)
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
        if self._metrics is not None:
            self._metrics.close()
        logger.info("gRPC server stopped")

    async def wait(self) -> None:
        """Return once the server has stopped (after `stop()`, e.g. from a signal handler)."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        await self._server.wait_for_termination()
        if self._stopping is not None:
            await asyncio.shield(self._stopping)

    def install_signal_handlers(self, signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Stop gracefully on the first of `signals`; a second one stops at once (grace 0)."""
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal, sig)
        self._signals = list(signals)

    def remove_signal_handlers(self) -> None:
        """Undo `install_signal_handlers`."""
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals = []

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping is None:
            logger.info("received %s: shutting down gracefully", sig.name)
            self._stopping = asyncio.ensure_future(self._stop(None))
        elif self._server is not None:
            logger.warning("received %s again: stopping now", sig.name)
            asyncio.ensure_future(self._server.stop(0))  # noqa: RUF006 - the server finishes it

    async def serve(self) -> None:
        """Start, stop gracefully on SIGTERM/SIGINT, and return once stopped."""
        await self.start()
        self.install_signal_handlers()
        try:
            await self.wait()
        finally:
            self.remove_signal_handlers()
