"""The shared Prometheus metrics and the /metrics endpoint."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import REGISTRY

from modelhub.core.telemetry import metrics
from modelhub.devstack.ports import free_port


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_consumer_outcomes_are_counted() -> None:
    before = {
        o: value("modelhub_consumer_processed_messages_total", consumer="t1", outcome=o)
        for o in metrics.CONSUMER_OUTCOMES
    }
    dead_before = value("modelhub_dead_letters_total", consumer="t1")
    for outcome in ("applied", "applied", "duplicate", "skipped", "dead_lettered"):
        metrics.record_consumer_outcome("t1", outcome)
    metrics.record_consumer_outcome("t1", "applied", 40)  # a batch's count at once
    metrics.record_consumer_outcome("t1", "dead_lettered", 2)
    after = {
        o: value("modelhub_consumer_processed_messages_total", consumer="t1", outcome=o)
        for o in metrics.CONSUMER_OUTCOMES
    }
    assert {o: after[o] - before[o] for o in after} == {
        "applied": 42,
        "duplicate": 1,
        "skipped": 1,
        "failed": 0,
        "dead_lettered": 3,
    }
    assert value("modelhub_dead_letters_total", consumer="t1") == dead_before + 3
    with pytest.raises(ValueError, match="unknown consumer outcome"):
        metrics.record_consumer_outcome("t1", "exploded")  # type: ignore[arg-type]


def test_lag_gauges_and_counters() -> None:
    metrics.RELAY_LAG.labels(service="ledger").set(12)
    metrics.CONSUMER_LAG.labels(consumer="search-catalog").set(3)
    published = value("modelhub_relay_published_events_total", service="ledger")
    metrics.RELAY_PUBLISHED.labels(service="ledger").inc(5)
    redelivered = value("modelhub_consumer_redeliveries_total", consumer="search-catalog")
    metrics.CONSUMER_REDELIVERIES.labels(consumer="search-catalog").inc()
    assert value("modelhub_relay_lag_events", service="ledger") == 12
    assert value("modelhub_consumer_lag_messages", consumer="search-catalog") == 3
    assert value("modelhub_relay_published_events_total", service="ledger") == published + 5
    assert value("modelhub_consumer_redeliveries_total", consumer="search-catalog") == redelivered + 1


def test_rpc_histogram_has_the_documented_labels() -> None:
    metrics.RPC_DURATION.labels(service="modelhub.x.v1.X", method="Get", code="OK").observe(0.003)
    assert (
        value(
            "modelhub_rpc_server_duration_seconds_bucket",
            service="modelhub.x.v1.X",
            method="Get",
            code="OK",
            le="0.005",
        )
        >= 1
    )


def test_metrics_server_serves_and_closes() -> None:
    assert metrics.start_metrics_server(0) is None
    server = metrics.start_metrics_server(free_port(), addr="127.0.0.1")
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            body = response.read().decode()
        for name in (
            "modelhub_rpc_server_duration_seconds",
            "modelhub_relay_lag_events",
            "modelhub_relay_published_events_total",
            "modelhub_consumer_lag_messages",
            "modelhub_consumer_processed_messages_total",
            "modelhub_consumer_redeliveries_total",
            "modelhub_dead_letters_total",
        ):
            assert f"# TYPE {name.removesuffix('_total')}" in body
    finally:
        server.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=2)
