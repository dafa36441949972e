"""NATS wiring: a connection that never gives up reconnecting, and the platform's JetStream streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

log = logging.getLogger(__name__)

DEAD_LETTER_STREAM = "DEAD_LETTERS"
DEAD_LETTER_SUBJECT_PREFIX = "deadletter"


def events_stream_name(producer: str) -> str:
    """JetStream stream holding one service's events, e.g. LEDGER_EVENTS."""
    return f"{producer.upper()}_EVENTS"


def events_subject(producer: str, event_type: str = ">") -> str:
    """Subject of an event, e.g. events.ledger.TransferPosted (event types are '<producer>.<Name>')."""
    name = event_type.split(".", 1)[1] if "." in event_type else event_type
    return f"events.{producer}.{name}"


async def connect(url: str, name: str) -> Client:
    """Connect with unlimited reconnects: a NATS restart is an outage to ride out, not a crash."""

    async def on_error(error: Exception) -> None:
        log.warning("nats error: %s", error)

    async def on_disconnect() -> None:
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )


async def connect_until_stopped(url: str, name: str, stop: asyncio.Event, retry_interval: float = 2.0) -> Client | None:
    """`connect`, retrying every `retry_interval` seconds while NATS cannot be reached; None if `stop` is set
    first. For background consumers, which must not hold up the rest of a service."""
    while not stop.is_set():
        try:
            return await connect(url, name)
        except Exception as error:
            log.warning("%s: cannot reach NATS (%r); retrying", name, error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), retry_interval)
    return None


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or update it to `config` if it exists."""
    try:
        await js.stream_info(config.name or "")
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)


def events_stream_config(producer: str, *, replicas: int = 1, duplicate_window_s: float = 600) -> StreamConfig:
    """The stream of a producer's events. The duplicate window is how long JetStream remembers event ids
    (Nats-Msg-Id) to drop a republished event; past it, consumers' inboxes still make redelivery harmless."""
    return StreamConfig(
        name=events_stream_name(producer),
        subjects=[events_subject(producer)],
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=duplicate_window_s,
    )


def dead_letter_stream_config(*, replicas: int = 1) -> StreamConfig:
    """Where consumers park events they could not apply, with the error in the headers."""
    return StreamConfig(
        name=DEAD_LETTER_STREAM,
        subjects=[f"{DEAD_LETTER_SUBJECT_PREFIX}.>"],
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=600,
    )
