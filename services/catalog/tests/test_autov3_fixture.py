"""The frozen v1 fixture of the event types added with AutoV3 (fixtures/README.md) still reads as the current
schema and folds: a file's AutoV3 recorded after its upload, an image linked once that hash was known."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from google.protobuf.json_format import MessageToDict

from modelhub.catalog.adapters import community_events, events
from modelhub.catalog.domain.events import FileHash
from modelhub.catalog.domain.gallery import Image, VersionRef
from modelhub.catalog.domain.model import Model
from modelhub.events.v1 import envelope_pb2

FIXTURE = Path(__file__).parent / "fixtures" / "catalog_autov3_events_v1.jsonl"


def test_v1_autov3_events_still_read_as_the_current_version_and_fold() -> None:
    registry = events.make_registry()
    model, image = Model("m2"), Image("image-i2")
    seen: set[str] = set()
    for line in FIXTURE.read_text().splitlines():
        record = json.loads(line)
        envelope = envelope_pb2.EventEnvelope.FromString(base64.b64decode(record["envelope"]))
        payload = registry.decode(envelope.event_type, envelope.schema_version, envelope.payload)
        decoded = MessageToDict(payload, preserving_proto_field_name=True)
        assert {k: decoded.get(k) for k in record["facts"]} == record["facts"], envelope.event_type
        seen.add(envelope.event_type)
        if envelope.stream_id == "model-m2":
            model.apply(events.from_payload(payload))  # type: ignore[arg-type]
        else:
            image.apply(community_events.from_payload(payload))
    assert {"catalog.ModelFileHashesAdded", "catalog.ImageResourcesLinked"} <= seen

    file = model.versions["v2"].files["f2"]
    assert [h.kind for h in file.hashes] == ["SHA256", "AutoV2", "AutoV3"]
    assert file.hashes[-1] == FileHash("AutoV3", "0123456789AB" + "C" * 52)
    assert [(r.name, r.model_version_id) for r in image.resources] == [("FlatStyle", "v2")]
    assert image.linked_versions == [VersionRef("v2", "m2")]
