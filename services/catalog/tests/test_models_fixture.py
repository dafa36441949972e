"""The frozen v1 fixture of the model events still reads as the current schema (see fixtures/README.md)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from google.protobuf.json_format import MessageToDict

from modelhub.catalog.adapters.events import MODEL_EVENT_TYPES, from_payload, make_registry
from modelhub.catalog.domain.model import Model
from modelhub.catalog.domain.vocabulary import ModelStatus, Relation, VersionStatus
from modelhub.events.v1 import envelope_pb2

FIXTURE = Path(__file__).parent / "fixtures" / "catalog_models_events_v1.jsonl"


def test_v1_model_events_still_read_as_the_current_version_and_fold() -> None:
    registry = make_registry()
    model = Model("m1")
    seen: set[str] = set()
    for line in FIXTURE.read_text().splitlines():
        record = json.loads(line)
        envelope = envelope_pb2.EventEnvelope.FromString(base64.b64decode(record["envelope"]))
        payload = registry.decode(envelope.event_type, envelope.schema_version, envelope.payload)
        decoded = MessageToDict(payload, preserving_proto_field_name=True)
        assert {k: decoded.get(k) for k in record["facts"]} == record["facts"], envelope.event_type
        seen.add(envelope.event_type)
        event = from_payload(payload)
        if event is not None:
            model.apply(event)
    assert set(MODEL_EVENT_TYPES) - {"catalog.ModelFileHashesAdded"} <= seen  # later types: test_autov3_fixture.py
    assert {"catalog.ModelVersionPublished", "catalog.ModelSnapshot"} <= seen
    assert (model.status, model.name, model.tags, model.owner_name) == (
        ModelStatus.DELETED,
        "Dreamy XL",
        ("anime",),
        "Alice",
    )
    v1, v2 = model.versions["v1"], model.versions["v2"]
    assert (v1.status, v1.base_model, list(v1.files)) == (VersionStatus.PUBLISHED, "Pony", ["f1"])
    assert v1.files["f1"].scan_result == "Success"
    assert [(p.parent_version_id, p.relation, p.weight) for p in v1.parents] == [
        ("p1", Relation.MERGE, 0.7),
        ("p2", Relation.MERGE, 0.3),
    ]
    assert (v2.status, v2.scheduled_at) == (VersionStatus.DELETED, None)
