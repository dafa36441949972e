"""Read the catalog's JetStream stream from its first event, for a rebuild that repairs the mirror."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from google.protobuf.message import DecodeError
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import DeliverPolicy

from modelhub.core.events.model import ReceivedEvent
from modelhub.core.events.registry import UndecodableEvent, UnknownEventType
from modelhub.core.nats import events_stream_name, events_subject
from modelhub.events.v1 import envelope_pb2
from modelhub.search.adapters.events import EVENT_TYPES, InvalidCatalogEvent, make_catalog_registry
from modelhub.search.adapters.mirror import MirrorRow, mirror_row

log = logging.getLogger(__name__)


async def stream_rows(
    nc: Client, producer: str, *, batch_size: int = 2000, idle_timeout: float = 10.0
) -> AsyncIterator[list[MirrorRow]]:
    """Mirror rows of every catalog event in the producer's stream, from its first message up to the last one
    stored when this starts (later ones reach the mirror through the live consumer), in batches.

    An ephemeral ordered consumer (no acks, no state on the server once it ends). Messages that cannot be
    decoded or break the contract are skipped with a warning: the live consumer dead-letters those.
    """
    js = nc.jetstream()
    stream = events_stream_name(producer)
    info = await js.stream_info(stream)
    last = info.state.last_seq
    if info.state.messages == 0:
        return
    registry = make_catalog_registry()
    subscription = await js.subscribe(
        events_subject(producer), stream=stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    batch: list[MirrorRow] = []
    try:
        while True:
            try:
                msg = await subscription.next_msg(timeout=idle_timeout)
            except NatsTimeoutError:
                raise TimeoutError(
                    f"stream {stream}: nothing delivered for {idle_timeout}s before sequence {last}"
                ) from None
            sequence = msg.metadata.sequence.stream
            try:
                envelope = envelope_pb2.EventEnvelope.FromString(msg.data)
                if envelope.event_type in EVENT_TYPES:
                    payload = registry.decode(envelope.event_type, envelope.schema_version, envelope.payload)
                    batch.append(mirror_row(ReceivedEvent(envelope=envelope, payload=payload)))
            except (DecodeError, UndecodableEvent, UnknownEventType, InvalidCatalogEvent, ValueError) as error:
                log.warning("replay: stream %s sequence %s skipped: %r", stream, sequence, error)
            if len(batch) >= batch_size:
                yield batch
                batch = []
            if sequence >= last:
                break
        if batch:
            yield batch
    finally:
        await subscription.unsubscribe()
