"""The catalog's state-carrying events this service reads, and how their payloads become index documents.

Only this module (and the entrypoints) know the protobuf payloads; the rest of the service sees
`ModelDocument` / `ImageDocument` (modelhub.search.domain.documents).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from modelhub.core.events.registry import EventRegistry
from modelhub.events.v1 import catalog_pb2
from modelhub.search.domain.documents import ImageDocument, ImageStats, ModelDocument, Period, PeriodStats

CATALOG = "catalog"
MODEL_SNAPSHOT = "catalog.ModelSnapshot"
MODEL_STATS_UPDATED = "catalog.ModelStatsUpdated"
IMAGE_SNAPSHOT = "catalog.ImageSnapshot"
EVENT_TYPES = (MODEL_SNAPSHOT, MODEL_STATS_UPDATED, IMAGE_SNAPSHOT)

PUBLISHED = "Published"
"""The only status of a model, a version or an image that is public."""

_PERIODS = {p.value: p for p in Period}

AUTO_V3 = "AutoV3"
AUTO_V3_SHORT_CHARS = 12
"""A1111 writes a LoRA's hash as the first 12 digits of its AutoV3 ("Lora hashes: name: 0123456789AB"), so a
model is found by that short form as well as by the full hash."""


def make_catalog_registry() -> EventRegistry:
    """The catalog's event types this service reads (the catalog owns the contract)."""
    registry = EventRegistry()
    registry.register(MODEL_SNAPSHOT, catalog_pb2.CatalogModelSnapshot)
    registry.register(MODEL_STATS_UPDATED, catalog_pb2.CatalogModelStatsUpdated)
    registry.register(IMAGE_SNAPSHOT, catalog_pb2.CatalogImageSnapshot)
    return registry


class InvalidCatalogEvent(ValueError):
    """The event breaks its contract (e.g. no id); retried, then dead-lettered with this message."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(ts: Timestamp) -> datetime:
    # What Timestamp.ToDatetime(tzinfo=UTC) returns, without its generic conversions (once per document).
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def _distinct(values: Iterable[str]) -> tuple[str, ...]:
    """Non-empty values, first occurrence kept, in order."""
    distinct = dict.fromkeys(values)  # iterates a protobuf repeated field in C
    distinct.pop("", None)
    return tuple(distinct)


def model_document(
    snapshot: catalog_pb2.CatalogModelSnapshot,
    version: int,
    stats: catalog_pb2.CatalogModelStatsUpdated | None = None,
    stats_version: int = 0,
) -> ModelDocument:
    """The document of a published model: its public versions' base models, trigger words, file formats and
    hashes (upper-case, every kind, and AutoV3's short form too), and its counts per period (none until the
    first stats event)."""
    # Each protobuf field is read once into plain Python values: reading a field builds a new Python object.
    versions = [v for v in snapshot.versions if v.status == PUBLISHED]
    trained_words: list[str] = []
    base_models: list[str] = []
    version_ids: list[str] = []
    formats: list[str] = []
    hashes: list[str] = []
    for v in versions:
        trained_words.extend(v.trained_words)
        base_models.append(v.base_model)
        version_ids.append(v.model_version_id)
        for f in v.files:
            formats.append(f.format)
            for h in f.hashes:
                value = h.value.upper()
                hashes.append(value)
                if h.kind == AUTO_V3:
                    hashes.append(value[:AUTO_V3_SHORT_CHARS])
    license_ = snapshot.license
    return ModelDocument(
        model_id=snapshot.model_id,
        name=snapshot.name,
        description=snapshot.description,
        type=snapshot.type,
        tags=_distinct(snapshot.tags),
        trained_words=_distinct(trained_words),
        creator_user_id=snapshot.creator_user_id,
        creator_username=snapshot.creator_username,
        base_models=_distinct(base_models),
        file_formats=_distinct(formats),
        hashes=_distinct(hashes),
        allow_no_credit=license_.allow_no_credit,
        allow_commercial_use=_distinct(license_.allow_commercial_use),
        allow_derivatives=license_.allow_derivatives,
        allow_different_license=license_.allow_different_license,
        nsfw_level=snapshot.nsfw_level,
        status=snapshot.status,
        created_at=_time(snapshot.created_at),
        published_at=_time(snapshot.published_at) if snapshot.HasField("published_at") else None,
        version_ids=_distinct(version_ids),
        stats=period_stats(stats) if stats is not None else {},
        model_stream_version=version,
        stats_stream_version=stats_version if stats is not None else 0,
    )


def period_stats(stats: catalog_pb2.CatalogModelStatsUpdated) -> dict[Period, PeriodStats]:
    """The counts per period; periods this service does not know are ignored (a newer catalog may add some)."""
    result: dict[Period, PeriodStats] = {}
    for p in stats.periods:
        period = _PERIODS.get(p.period)
        if period is None:
            continue
        result[period] = PeriodStats(
            downloads=p.downloads,
            favorites=p.favorites,
            thumbs_up=p.thumbs_up,
            thumbs_down=p.thumbs_down,
            comments=p.comments,
            images=p.images,
            collected=p.collected,
            tipped_amount=p.tipped_amount,
        )
    return result


def image_document(snapshot: catalog_pb2.CatalogImageSnapshot, version: int) -> ImageDocument:
    """The document of a published gallery image."""
    return ImageDocument(
        image_id=snapshot.image_id,
        creator_user_id=snapshot.creator_user_id,
        creator_username=snapshot.creator_username,
        model_version_ids=_distinct(snapshot.model_version_ids),
        model_ids=_distinct(snapshot.model_ids),
        tags=_distinct(snapshot.tags),
        nsfw_level=snapshot.nsfw_level,
        prompt=snapshot.prompt,
        negative_prompt=snapshot.negative_prompt,
        width=snapshot.width,
        height=snapshot.height,
        blurhash=snapshot.blurhash,
        created_at=_time(snapshot.created_at),
        stats=ImageStats(reactions=snapshot.reactions, comments=snapshot.comments, collected=snapshot.collected),
        stream_version=version,
    )
