"""Structured JSON logs on stderr, with the current trace and span ids on every record logged in a span."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter


class TraceContextFilter(logging.Filter):
    """Adds `trace_id` and `span_id` (lower-case hex, as in `traceparent`) when a span is recording."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate the record; never drops one."""
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        return True


class _ModelhubHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler configure_logging installed, so a second call replaces it."""


def configure_logging(service_name: str, level: str | int = "INFO", *, stream: TextIO | None = None) -> None:
    """Send every log record of the process as one JSON object per line to stderr (or `stream`).

    Each line has `timestamp`, `level`, `logger`, `message`, `service`, any `extra=` fields, the exception
    text when there is one, and `trace_id`/`span_id` inside a span. Calling it again reconfigures.
    """
    handler = _ModelhubHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            static_fields={"service": service_name},
            timestamp=True,
        )
    )
    handler.addFilter(TraceContextFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ModelhubHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
