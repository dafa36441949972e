"""configure_logging: one JSON object per line, with trace and span ids inside a span."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from modelhub.core.telemetry.logging import configure_logging

tracer = TracerProvider().get_tracer("test")


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    configure_logging("ledger", "INFO", stream=buffer)
    try:
        yield buffer
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_records_are_json_with_service_level_and_extras(stream: io.StringIO) -> None:
    logging.getLogger("modelhub.ledger").info("transfer %s applied", "t-1", extra={"amount": 5})
    logging.getLogger("modelhub.ledger").debug("not at INFO")
    [record] = lines(stream)
    assert record["message"] == "transfer t-1 applied"
    assert (record["level"], record["logger"], record["service"], record["amount"]) == (
        "INFO",
        "modelhub.ledger",
        "ledger",
        5,
    )
    assert "timestamp" in record
    assert "trace_id" not in record


def test_records_in_a_span_carry_its_ids(stream: io.StringIO) -> None:
    with tracer.start_as_current_span("apply") as span:
        logging.getLogger("x").warning("inside")
    context = span.get_span_context()
    [record] = lines(stream)
    assert record["trace_id"] == f"{context.trace_id:032x}"
    assert record["span_id"] == f"{context.span_id:016x}"


def test_exceptions_are_logged_with_their_traceback(stream: io.StringIO) -> None:
    try:
        raise KeyError("boom")
    except KeyError:
        logging.getLogger("x").exception("failed")
    [record] = lines(stream)
    assert "KeyError: 'boom'" in record["exc_info"]


def test_configuring_again_replaces_the_handler(stream: io.StringIO) -> None:
    second = io.StringIO()
    configure_logging("ledger", "DEBUG", stream=second)
    logging.getLogger("x").debug("once")
    assert stream.getvalue() == ""
    assert [r["message"] for r in lines(second)] == ["once"]
