"""Catalog payloads -> index documents (pure), and event -> mirror row."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modelhub.core.events.model import ReceivedEvent
from modelhub.events.v1 import catalog_pb2
from modelhub.search.adapters.events import image_document, model_document
from modelhub.search.adapters.mirror import MirrorRow, Table, mirror_row
from modelhub.search.domain.documents import Period, PeriodStats

from .catalog_events import T0, envelope, image_snapshot, model_snapshot, model_stats


def test_a_model_document_holds_what_its_public_versions_say() -> None:
    snapshot = model_snapshot("m1", name="Pixel", tags=("anime", "pixel", "anime"), trained_words=("pxl",))
    draft = catalog_pb2.CatalogVersionSnapshot(
        model_version_id="m1-v0",
        base_model="SD 1.5",
        status="Unpublished",
        trained_words=["secret"],
        files=[catalog_pb2.CatalogFileSnapshot(format="PickleTensor")],
    )
    newer = catalog_pb2.CatalogVersionSnapshot(
        model_version_id="m1-v2",
        base_model="Pony",
        status="Published",
        trained_words=["pxl", "knight"],
        files=[
            catalog_pb2.CatalogFileSnapshot(
                format="GGUF",
                hashes=[
                    catalog_pb2.CatalogFileHash(kind="AutoV2", value="abcdef0123"),
                    catalog_pb2.CatalogFileHash(kind="CRC32", value="DEADBEEF"),
                ],
            )
        ],
    )
    snapshot.versions.insert(0, newer)
    snapshot.versions.append(draft)
    doc = model_document(snapshot, 7)
    assert doc.model_id == "m1"
    assert doc.name == "Pixel"
    assert doc.tags == ("anime", "pixel")
    assert doc.version_ids == ("m1-v2", "m1-v1")
    assert doc.base_models == ("Pony", "SDXL 1.0")
    assert doc.trained_words == ("pxl", "knight")
    assert doc.file_formats == ("GGUF", "SafeTensor")
    assert "ABCDEF0123" in doc.hashes and "DEADBEEF" in doc.hashes
    assert all(h == h.upper() for h in doc.hashes)
    assert doc.allow_commercial_use == ("Image",)
    assert doc.allow_no_credit and doc.allow_derivatives and not doc.allow_different_license
    assert doc.published_at == T0 and doc.created_at == T0
    assert (doc.model_stream_version, doc.stats_stream_version, doc.version) == (7, 0, 7)
    assert doc.stats == {}


def test_an_auto_v3_hash_is_also_indexed_in_the_short_form_a1111_writes() -> None:
    auto_v3 = "5e6f7a8b9c0d" + "1" * 52
    snapshot = model_snapshot("m1", sha256="AB" * 32)
    snapshot.versions[0].files[0].hashes.append(catalog_pb2.CatalogFileHash(kind="AutoV3", value=auto_v3))
    snapshot.versions[0].files[0].hashes.append(catalog_pb2.CatalogFileHash(kind="AutoV2", value="ABCDEF012345"[:10]))

    doc = model_document(snapshot, 1)

    assert set(doc.hashes) == {"AB" * 32, auto_v3.upper(), "5E6F7A8B9C0D", "ABCDEF0123"}


def test_stats_are_counted_per_period_and_raise_the_version() -> None:
    stats = model_stats("m1", downloads=10, thumbs_up=3, thumbs_down=1, favorites=2)
    stats.periods.add(period="Decade", downloads=99)  # a period a newer catalog may add: ignored
    doc = model_document(model_snapshot("m1"), 3, stats, 5)
    assert set(doc.stats) == set(Period)
    assert doc.stats[Period.DAY] == PeriodStats(downloads=10, favorites=2, thumbs_up=3, thumbs_down=1)
    assert (doc.model_stream_version, doc.stats_stream_version, doc.version) == (3, 5, 8)


def test_a_never_published_model_has_no_publish_time() -> None:
    doc = model_document(model_snapshot("m1", published_at=None, status="Draft"), 1)
    assert doc.published_at is None


def test_an_image_document() -> None:
    doc = image_document(image_snapshot("i1", prompt="a red fox", nsfw_level=2, reactions=5), 4)
    assert (doc.image_id, doc.prompt, doc.nsfw_level, doc.stats.reactions, doc.stream_version) == (
        "i1",
        "a red fox",
        2,
        5,
        4,
    )
    assert doc.model_ids == ("m1",) and doc.model_version_ids == ("m1-v1",)
    assert doc.created_at == datetime(2026, 3, 14, 9, 30, tzinfo=UTC)


def received(payload: catalog_pb2.CatalogModelSnapshot, version: int) -> ReceivedEvent:
    env = envelope(payload, version)
    return ReceivedEvent(envelope=env, payload=payload)


@pytest.mark.parametrize(
    ("payload", "table", "key", "public"),
    [
        (model_snapshot("m1"), Table.MODELS, "m1", True),
        (model_snapshot("m1", status="Scheduled"), Table.MODELS, "m1", False),
        (model_stats("m1"), Table.MODEL_STATS, "m1", True),
        (image_snapshot("i1"), Table.IMAGES, "i1", True),
        (image_snapshot("i1", status="Hidden"), Table.IMAGES, "i1", False),
    ],
)
def test_an_event_becomes_a_mirror_row(payload: object, table: Table, key: str, public: bool) -> None:
    event = received(payload, 4)  # type: ignore[arg-type]
    row = mirror_row(event)
    assert row == MirrorRow(
        table=table,
        key=key,
        version=4,
        schema_version=1,
        payload=event.envelope.payload,
        public=public,
        event_id=event.event_id,
    )
