"""Schema versions: events written as v1 are read as the current version through upcasters."""

import base64
import json
from pathlib import Path

import pytest

from modelhub.core.events.registry import EventRegistry, UndecodableEvent, UnknownEventType
from modelhub.events.v1 import envelope_pb2
from modelhub.testing.v1 import testing_pb2

from .widgets import RENAMED, make_registry, slugify

FIXTURE = Path(__file__).parent / "fixtures" / "events_v1.jsonl"


def test_frozen_v1_fixture_reads_as_current_version() -> None:
    registry = make_registry()
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
    assert len(rows) == 5
    for row in rows:
        envelope = envelope_pb2.EventEnvelope.FromString(base64.b64decode(row["envelope"]))
        assert envelope.schema_version == 1
        payload = registry.decode(envelope.event_type, envelope.schema_version, envelope.payload)
        assert isinstance(payload, testing_pb2.WidgetRenamedV2)
        assert payload.display_name == row["name"]
        assert payload.slug == slugify(row["name"])


def test_writers_must_use_the_current_version() -> None:
    registry = make_registry()
    assert registry.type_of(testing_pb2.WidgetRenamedV2(display_name="x")) == (RENAMED, 2)
    with pytest.raises(UnknownEventType, match="outdated"):
        registry.type_of(testing_pb2.WidgetRenamed(name="x"))


def test_unknown_types_versions_and_garbage_are_clear_errors() -> None:
    registry = make_registry()
    with pytest.raises(UnknownEventType, match="unknown event type"):
        registry.decode("testing.Nope", 1, b"")
    with pytest.raises(UnknownEventType, match="no schema version 9"):
        registry.decode(RENAMED, 9, b"")
    with pytest.raises(UndecodableEvent, match="does not parse"):
        registry.decode(RENAMED, 1, b"\xff\xff\xff")


def test_missing_upcaster_is_reported() -> None:
    registry = EventRegistry()
    registry.register(RENAMED, testing_pb2.WidgetRenamed, version=1)
    registry.register(RENAMED, testing_pb2.WidgetRenamedV2, version=2)
    with pytest.raises(UnknownEventType, match="no upcaster from v1"):
        registry.decode(RENAMED, 1, testing_pb2.WidgetRenamed(name="x").SerializeToString())
