"""The catalog's event types: registry, and domain events <-> protobuf payloads (modelhub.events.v1).

Every catalog event type is registered in `make_registry`. Other parts of the catalog add their payloads
(their own proto files) with one `register_*` call each there.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from modelhub.catalog.adapters.community_events import register_community
from modelhub.catalog.domain import events as ev
from modelhub.catalog.domain.model import Model
from modelhub.catalog.domain.vocabulary import Relation, VersionStatus
from modelhub.core.events.registry import EventRegistry
from modelhub.events.v1 import catalog_models_pb2 as mpb
from modelhub.events.v1 import catalog_pb2 as cpb

PRODUCER = "catalog"

# The committed contract with search and the ledger (catalog.proto).
REVIEW_CREATED = "catalog.ReviewCreated"
MODEL_VERSION_PUBLISHED = "catalog.ModelVersionPublished"
DOWNLOADS_COUNTED = "catalog.DownloadsCounted"
MODEL_SNAPSHOT = "catalog.ModelSnapshot"
MODEL_STATS_UPDATED = "catalog.ModelStatsUpdated"
IMAGE_SNAPSHOT = "catalog.ImageSnapshot"

# The model aggregate's domain events (catalog_models.proto).
MODEL_EVENT_TYPES: dict[str, type[Message]] = {
    "catalog.ModelCreated": mpb.CatalogModelCreated,
    "catalog.ModelUpdated": mpb.CatalogModelUpdated,
    "catalog.ModelPublished": mpb.CatalogModelPublished,
    "catalog.ModelPublicationScheduled": mpb.CatalogModelPublicationScheduled,
    "catalog.PublicationCancelled": mpb.CatalogPublicationCancelled,
    "catalog.ModelUnpublished": mpb.CatalogModelUnpublished,
    "catalog.ModelDeleted": mpb.CatalogModelDeleted,
    "catalog.ModelVersionCreated": mpb.CatalogModelVersionCreated,
    "catalog.ModelVersionUpdated": mpb.CatalogModelVersionUpdated,
    "catalog.ModelVersionPublicationScheduled": mpb.CatalogModelVersionPublicationScheduled,
    "catalog.ModelVersionDeleted": mpb.CatalogModelVersionDeleted,
    "catalog.ModelVersionParentsDeclared": mpb.CatalogModelVersionParentsDeclared,
    "catalog.ModelFileAdded": mpb.CatalogModelFileAdded,
    "catalog.ModelFileScanned": mpb.CatalogModelFileScanned,
    "catalog.ModelFileHashesAdded": mpb.CatalogModelFileHashesAdded,
    "catalog.ModelFileRemoved": mpb.CatalogModelFileRemoved,
}


def register_contract(registry: EventRegistry) -> None:
    """The state-carrying and reward-relevant events of catalog.proto."""
    registry.register(REVIEW_CREATED, cpb.CatalogReviewCreated)
    registry.register(MODEL_VERSION_PUBLISHED, cpb.CatalogModelVersionPublished)
    registry.register(DOWNLOADS_COUNTED, cpb.CatalogDownloadsCounted)
    registry.register(MODEL_SNAPSHOT, cpb.CatalogModelSnapshot)
    registry.register(MODEL_STATS_UPDATED, cpb.CatalogModelStatsUpdated)
    registry.register(IMAGE_SNAPSHOT, cpb.CatalogImageSnapshot)


def register_models(registry: EventRegistry) -> None:
    """The model aggregate's domain events."""
    for event_type, message in MODEL_EVENT_TYPES.items():
        registry.register(event_type, message)


def make_registry() -> EventRegistry:
    """Every event type the catalog writes, at every schema version."""
    registry = EventRegistry()
    register_contract(registry)
    register_models(registry)
    register_community(registry)
    return registry


# -- helpers ------------------------------------------------------------------------------------------------


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def from_timestamp(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


def license_pb(license: ev.License) -> cpb.CatalogLicense:
    return cpb.CatalogLicense(
        allow_no_credit=license.allow_no_credit,
        allow_commercial_use=list(license.allow_commercial_use),
        allow_derivatives=license.allow_derivatives,
        allow_different_license=license.allow_different_license,
    )


def license_from(pb: cpb.CatalogLicense) -> ev.License:
    return ev.License(
        pb.allow_no_credit, tuple(pb.allow_commercial_use), pb.allow_derivatives, pb.allow_different_license
    )


def file_pb(file: ev.ModelFile) -> mpb.CatalogModelFile:
    return mpb.CatalogModelFile(
        file_id=file.file_id,
        name=file.name,
        type=file.type,
        format=file.format,
        size_bytes=file.size_bytes,
        precision=file.precision,
        size_kind=file.size_kind,
        blob_sha256=file.blob_sha256,
        hashes=[cpb.CatalogFileHash(kind=h.kind, value=h.value) for h in file.hashes],
        scan_result=file.scan_result,
        scan_message=file.scan_message,
        safetensors_metadata=dict(file.safetensors_metadata),
        tensor_count=file.tensor_count,
    )


def file_from(pb: mpb.CatalogModelFile) -> ev.ModelFile:
    return ev.ModelFile(
        file_id=pb.file_id,
        name=pb.name,
        type=pb.type,
        format=pb.format,
        size_bytes=pb.size_bytes,
        blob_sha256=pb.blob_sha256,
        hashes=tuple(ev.FileHash(h.kind, h.value) for h in pb.hashes),
        scan_result=pb.scan_result,
        scan_message=pb.scan_message,
        precision=pb.precision,
        size_kind=pb.size_kind,
        safetensors_metadata=dict(pb.safetensors_metadata),
        tensor_count=pb.tensor_count,
    )


def parent_pb(parent: ev.Parent) -> mpb.CatalogLineageParent:
    return mpb.CatalogLineageParent(
        parent_model_id=parent.parent_model_id,
        parent_version_id=parent.parent_version_id,
        relation=parent.relation.value,
        weight=parent.weight,
        attribution=parent.attribution,
    )


def parent_from(pb: mpb.CatalogLineageParent) -> ev.Parent:
    return ev.Parent(pb.parent_model_id, pb.parent_version_id, Relation(pb.relation), pb.weight, pb.attribution)


# -- domain event -> payload --------------------------------------------------------------------------------


def to_payload(event: ev.ModelEvent) -> Message:
    at = timestamp(event.at)
    match event:
        case ev.ModelCreated():
            return mpb.CatalogModelCreated(
                model_id=event.model_id,
                owner_user_id=event.owner_id,
                owner_username=event.owner_name,
                name=event.name,
                description=event.description,
                type=event.type,
                tags=list(event.tags),
                license=license_pb(event.license),
                request_id=event.request_id,
                at=at,
            )
        case ev.ModelUpdated():
            return mpb.CatalogModelUpdated(
                model_id=event.model_id,
                name=event.name,
                description=event.description,
                type=event.type,
                tags=list(event.tags),
                license=license_pb(event.license),
                by_user_id=event.by,
                at=at,
            )
        case ev.ModelPublished():
            return mpb.CatalogModelPublished(model_id=event.model_id, by_user_id=event.by, at=at)
        case ev.ModelPublicationScheduled():
            return mpb.CatalogModelPublicationScheduled(
                model_id=event.model_id, publish_at=timestamp(event.publish_at), by_user_id=event.by, at=at
            )
        case ev.PublicationCancelled():
            return mpb.CatalogPublicationCancelled(
                model_id=event.model_id,
                model_version_id=event.version_id,
                reason=event.reason,
                status=event.status,
                at=at,
            )
        case ev.ModelUnpublished():
            return mpb.CatalogModelUnpublished(
                model_id=event.model_id, by_user_id=event.by, reason=event.reason, violation=event.violation, at=at
            )
        case ev.ModelDeleted():
            return mpb.CatalogModelDeleted(model_id=event.model_id, by_user_id=event.by, at=at)
        case ev.VersionCreated() | ev.VersionUpdated():
            cls = (
                mpb.CatalogModelVersionCreated
                if isinstance(event, ev.VersionCreated)
                else mpb.CatalogModelVersionUpdated
            )
            return cls(
                model_id=event.model_id,
                model_version_id=event.version_id,
                name=event.name,
                base_model=event.base_model,
                trained_words=list(event.trained_words),
                changelog=event.changelog,
                early_access_days=event.early_access_days,
                by_user_id=event.by,
                at=at,
            )
        case ev.VersionPublished():
            return cpb.CatalogModelVersionPublished(
                model_id=event.model_id,
                model_version_id=event.version_id,
                creator_user_id=event.creator_id,
                published_at=at,
            )
        case ev.VersionPublicationScheduled():
            return mpb.CatalogModelVersionPublicationScheduled(
                model_id=event.model_id,
                model_version_id=event.version_id,
                publish_at=timestamp(event.publish_at),
                by_user_id=event.by,
                at=at,
            )
        case ev.VersionDeleted():
            return mpb.CatalogModelVersionDeleted(
                model_id=event.model_id, model_version_id=event.version_id, by_user_id=event.by, at=at
            )
        case ev.ParentsDeclared():
            return mpb.CatalogModelVersionParentsDeclared(
                model_id=event.model_id,
                model_version_id=event.version_id,
                parents=[parent_pb(p) for p in event.parents],
                by_user_id=event.by,
                at=at,
            )
        case ev.FileAdded():
            return mpb.CatalogModelFileAdded(
                model_id=event.model_id,
                model_version_id=event.version_id,
                file=file_pb(event.file),
                by_user_id=event.by,
                at=at,
            )
        case ev.FileScanned():
            return mpb.CatalogModelFileScanned(
                model_id=event.model_id,
                model_version_id=event.version_id,
                file_id=event.file_id,
                scan_result=event.scan_result,
                scan_message=event.scan_message,
                at=at,
            )
        case ev.FileHashesAdded():
            return mpb.CatalogModelFileHashesAdded(
                model_id=event.model_id,
                model_version_id=event.version_id,
                file_id=event.file_id,
                hashes=[cpb.CatalogFileHash(kind=h.kind, value=h.value) for h in event.hashes],
                at=at,
            )
        case ev.FileRemoved():
            return mpb.CatalogModelFileRemoved(
                model_id=event.model_id,
                model_version_id=event.version_id,
                file_id=event.file_id,
                by_user_id=event.by,
                at=at,
            )
    raise TypeError(f"not a model event: {event!r}")


# -- payload -> domain event --------------------------------------------------------------------------------


def from_payload(payload: Message) -> ev.ModelEvent | None:
    """The domain event a payload carries; None for payloads that are not model facts (the snapshot)."""
    match payload:
        case mpb.CatalogModelCreated():
            return ev.ModelCreated(
                model_id=payload.model_id,
                owner_id=payload.owner_user_id,
                owner_name=payload.owner_username,
                name=payload.name,
                description=payload.description,
                type=payload.type,
                tags=tuple(payload.tags),
                license=license_from(payload.license),
                request_id=payload.request_id,
                at=from_timestamp(payload.at),
            )
        case mpb.CatalogModelUpdated():
            return ev.ModelUpdated(
                model_id=payload.model_id,
                name=payload.name,
                description=payload.description,
                type=payload.type,
                tags=tuple(payload.tags),
                license=license_from(payload.license),
                by=payload.by_user_id,
                at=from_timestamp(payload.at),
            )
        case mpb.CatalogModelPublished():
            return ev.ModelPublished(payload.model_id, payload.by_user_id, from_timestamp(payload.at))
        case mpb.CatalogModelPublicationScheduled():
            return ev.ModelPublicationScheduled(
                payload.model_id, from_timestamp(payload.publish_at), payload.by_user_id, from_timestamp(payload.at)
            )
        case mpb.CatalogPublicationCancelled():
            return ev.PublicationCancelled(
                payload.model_id, payload.model_version_id, payload.reason, payload.status, from_timestamp(payload.at)
            )
        case mpb.CatalogModelUnpublished():
            return ev.ModelUnpublished(
                payload.model_id, payload.by_user_id, payload.reason, payload.violation, from_timestamp(payload.at)
            )
        case mpb.CatalogModelDeleted():
            return ev.ModelDeleted(payload.model_id, payload.by_user_id, from_timestamp(payload.at))
        case mpb.CatalogModelVersionCreated() | mpb.CatalogModelVersionUpdated():
            cls = ev.VersionCreated if isinstance(payload, mpb.CatalogModelVersionCreated) else ev.VersionUpdated
            return cls(
                payload.model_id,
                payload.model_version_id,
                payload.name,
                payload.base_model,
                tuple(payload.trained_words),
                payload.changelog,
                payload.early_access_days,
                payload.by_user_id,
                from_timestamp(payload.at),
            )
        case cpb.CatalogModelVersionPublished():
            return ev.VersionPublished(
                payload.model_id,
                payload.model_version_id,
                payload.creator_user_id,
                from_timestamp(payload.published_at),
            )
        case mpb.CatalogModelVersionPublicationScheduled():
            return ev.VersionPublicationScheduled(
                payload.model_id,
                payload.model_version_id,
                from_timestamp(payload.publish_at),
                payload.by_user_id,
                from_timestamp(payload.at),
            )
        case mpb.CatalogModelVersionDeleted():
            return ev.VersionDeleted(
                payload.model_id, payload.model_version_id, payload.by_user_id, from_timestamp(payload.at)
            )
        case mpb.CatalogModelVersionParentsDeclared():
            return ev.ParentsDeclared(
                payload.model_id,
                payload.model_version_id,
                tuple(parent_from(p) for p in payload.parents),
                payload.by_user_id,
                from_timestamp(payload.at),
            )
        case mpb.CatalogModelFileAdded():
            return ev.FileAdded(
                payload.model_id,
                payload.model_version_id,
                file_from(payload.file),
                payload.by_user_id,
                from_timestamp(payload.at),
            )
        case mpb.CatalogModelFileScanned():
            return ev.FileScanned(
                payload.model_id,
                payload.model_version_id,
                payload.file_id,
                payload.scan_result,
                payload.scan_message,
                from_timestamp(payload.at),
            )
        case mpb.CatalogModelFileHashesAdded():
            return ev.FileHashesAdded(
                payload.model_id,
                payload.model_version_id,
                payload.file_id,
                tuple(ev.FileHash(h.kind, h.value) for h in payload.hashes),
                from_timestamp(payload.at),
            )
        case mpb.CatalogModelFileRemoved():
            return ev.FileRemoved(
                payload.model_id,
                payload.model_version_id,
                payload.file_id,
                payload.by_user_id,
                from_timestamp(payload.at),
            )
    return None


# -- the snapshot (committed contract) ----------------------------------------------------------------------


def snapshot(model: Model) -> cpb.CatalogModelSnapshot:
    """catalog.ModelSnapshot: the model's public state, built from the aggregate by this one function.

    Only Published versions are included (newest first): drafts, scheduled and deleted versions are private
    to the owner until they are public."""
    versions = [v for v in reversed(model.versions.values()) if v.status == VersionStatus.PUBLISHED]
    return cpb.CatalogModelSnapshot(
        model_id=model.id,
        name=model.name,
        description=model.description,
        type=model.type,
        status=model.status.value,
        tags=list(model.tags),
        creator_user_id=model.owner_id,
        creator_username=model.owner_name,
        license=license_pb(model.license),
        nsfw_level=model.nsfw_level,
        versions=[
            cpb.CatalogVersionSnapshot(
                model_version_id=v.id,
                name=v.name,
                base_model=v.base_model,
                trained_words=list(v.trained_words),
                status=v.status.value,
                published_at=timestamp(v.published_at),
                early_access_ends_at=timestamp(v.early_access_ends_at),
                files=[
                    cpb.CatalogFileSnapshot(
                        file_id=f.file_id,
                        name=f.name,
                        format=f.format,
                        size_bytes=f.size_bytes,
                        scan_result=f.scan_result,
                        hashes=[cpb.CatalogFileHash(kind=h.kind, value=h.value) for h in f.hashes],
                    )
                    for f in v.files.values()
                ],
            )
            for v in versions
        ],
        created_at=timestamp(model.created_at),
        published_at=timestamp(model.published_at),
        updated_at=timestamp(model.updated_at),
    )
