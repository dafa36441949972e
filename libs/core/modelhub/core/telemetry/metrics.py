"""Prometheus metrics, defined once for every service.

The metric objects live in prometheus_client's process-global registry (registering them is all that
importing this module does); nothing listens until a service calls `start_metrics_server`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Final, Literal
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

ConsumerOutcome = Literal["applied", "duplicate", "skipped", "failed", "dead_lettered"]
"""How a consumer finished with one message: its effect applied, skipped as already processed, failed
(will be redelivered), or moved to the dead-letter stream."""

CONSUMER_OUTCOMES: Final[tuple[ConsumerOutcome, ...]] = (
    "applied",
    "duplicate",
    "skipped",
    "failed",
    "dead_lettered",
)

RPC_DURATION: Final = Histogram(
    "modelhub_rpc_server_duration_seconds",
    "Duration of server-side gRPC calls, by gRPC service, method and final status code.",
    ["service", "method", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RELAY_LAG: Final = Gauge(
    "modelhub_relay_lag_events",
    "Events committed to the service's event store but not yet published to JetStream.",
    ["service"],
)
RELAY_PUBLISHED: Final = Counter(
    "modelhub_relay_published_events",
    "Events the outbox relay published to JetStream.",
    ["service"],
)
CONSUMER_LAG: Final = Gauge(
    "modelhub_consumer_lag_messages",
    "Messages pending for a durable consumer (not yet delivered to it).",
    ["consumer"],
)
CONSUMER_PROCESSED: Final = Counter(
    "modelhub_consumer_processed_messages",
    "Messages a consumer finished with, by outcome (applied, duplicate, failed, dead_lettered).",
    ["consumer", "outcome"],
)
CONSUMER_REDELIVERIES: Final = Counter(
    "modelhub_consumer_redeliveries",
    "Messages a consumer received more than once (JetStream redeliveries).",
    ["consumer"],
)
DEAD_LETTERS: Final = Counter(
    "modelhub_dead_letters",
    "Messages moved to the dead-letter stream after max_deliver attempts.",
    ["consumer"],
)


def record_consumer_outcome(consumer: str, outcome: ConsumerOutcome, count: int = 1) -> None:
    """Count `count` processed messages (and, for `dead_lettered`, as many dead letters)."""
    if outcome not in CONSUMER_OUTCOMES:
        raise ValueError(f"unknown consumer outcome {outcome!r}; expected one of {CONSUMER_OUTCOMES}")
    CONSUMER_PROCESSED.labels(consumer=consumer, outcome=outcome).inc(count)
    if outcome == "dead_lettered":
        DEAD_LETTERS.labels(consumer=consumer).inc(count)


@dataclass
class MetricsServer:
    """A running /metrics HTTP endpoint (a daemon thread)."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.server.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(
    port: int, addr: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY
) -> MetricsServer | None:
    """Serve Prometheus metrics on `addr:port` in a daemon thread; port 0 means metrics are off (None)."""
    if port == 0:
        return None
    server, thread = start_http_server(port, addr=addr, registry=registry)
    return MetricsServer(server, thread)
