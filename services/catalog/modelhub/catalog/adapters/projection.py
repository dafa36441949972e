"""The model read models (tables of catalog_0001) as a projection of the model aggregate's events.

`ModelProjection.apply` is called inline by the repository for every event it appends, in the same
transaction (readers see their own writes at once), and by `modelhub.core.events.projection.rebuild`,
which replays the whole log into emptied tables: the two must give the same tables (tested).

One side effect beyond the tables: a recorded AutoV3 queues its short hash for the gallery's re-link job
(adapters/relink.py; a rebuild queues them all again, and re-linking what is linked already does nothing).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Final

from google.protobuf.message import Message
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.catalog.adapters import relink
from modelhub.catalog.adapters.events import from_payload
from modelhub.catalog.domain import events as ev
from modelhub.catalog.domain.commands import ModelFields, create_fingerprint
from modelhub.catalog.domain.downloads import SHORT_HASH_LENGTH
from modelhub.catalog.domain.vocabulary import FileFormat, HashKind, ModelStatus, VersionStatus
from modelhub.core.events.model import RecordedEvent
from modelhub.events.v1.catalog_pb2 import CatalogModelSnapshot

TABLES: Final = (
    "lineage_edges",
    "file_hashes",
    "model_files",
    "model_versions",
    "model_create_requests",
    "model_tags",
    "models",
)
"""Every table of the projection, children first (the order `reset` empties them in)."""


_INSERT_MODEL = text(
    """
    INSERT INTO models (model_id, stream_version, owner_id, owner_name, name, description, type, status,
        allow_no_credit, allow_commercial_use, allow_derivatives, allow_different_license, created_at, updated_at)
    VALUES (:model_id, :stream_version, :owner_id, :owner_name, :name, :description, :type, 'Draft',
        :allow_no_credit, :allow_commercial_use, :allow_derivatives, :allow_different_license, :at, :at)
    """
)
_UPDATE_MODEL = text(
    """
    UPDATE models SET name = :name, description = :description, type = :type, allow_no_credit = :allow_no_credit,
        allow_commercial_use = :allow_commercial_use, allow_derivatives = :allow_derivatives,
        allow_different_license = :allow_different_license
    WHERE model_id = :model_id
    """
)
_TOUCH_MODEL = text("UPDATE models SET stream_version = :stream_version, updated_at = :at WHERE model_id = :model_id")
_SET_STATUS = text(
    """
    UPDATE models SET status = :status, scheduled_publish_at = :scheduled,
        published_at = CASE WHEN :published THEN coalesce(published_at, :at) ELSE published_at END,
        unpublished_reason = coalesce(:reason, unpublished_reason)
    WHERE model_id = :model_id
    """
)
_INSERT_VERSION = text(
    """
    INSERT INTO model_versions (model_version_id, model_id, position, name, base_model, trained_words, changelog,
        early_access_days, status, created_at, updated_at)
    VALUES (:version_id, :model_id,
        (SELECT coalesce(max(position), 0) + 1 FROM model_versions WHERE model_id = :model_id),
        :name, :base_model, :trained_words, :changelog, :early_access_days, 'Draft', :at, :at)
    """
)
_UPDATE_VERSION = text(
    """
    UPDATE model_versions SET name = :name, base_model = :base_model, trained_words = :trained_words,
        changelog = :changelog, early_access_days = :early_access_days, updated_at = :at
    WHERE model_version_id = :version_id
    """
)
_SET_VERSION_STATUS = text(
    """
    UPDATE model_versions SET status = :status, scheduled_publish_at = :scheduled, updated_at = :at,
        published_at = CASE WHEN :published THEN :at ELSE published_at END
    WHERE model_version_id = :version_id
    """
)
_TOUCH_VERSION = text("UPDATE model_versions SET updated_at = :at WHERE model_version_id = :version_id")
_INSERT_FILE = text(
    """
    INSERT INTO model_files (file_id, model_version_id, model_id, position, name, type, format, size_bytes,
        precision, size_kind, blob_sha256, scan_result, scan_message, safetensors_metadata, tensor_count, created_at,
        auto_v3_pending)
    VALUES (:file_id, :version_id, :model_id,
        (SELECT coalesce(max(position), 0) + 1 FROM model_files WHERE model_version_id = :version_id),
        :name, :type, :format, :size_bytes, :precision, :size_kind, :blob_sha256, :scan_result, :scan_message,
        CAST(:safetensors_metadata AS jsonb), :tensor_count, :at, :auto_v3_pending)
    """
)


class ModelProjection:
    """Models, tags, versions, files, hashes, lineage edges and create requests, from the model events."""

    name = "catalog-models"

    async def reset(self, conn: AsyncConnection) -> None:
        for table in TABLES:
            await conn.execute(text(f"DELETE FROM {table}"))

    async def apply(self, conn: AsyncConnection, event: RecordedEvent, payload: Message) -> None:
        if isinstance(payload, CatalogModelSnapshot):
            await self.apply_snapshot(conn, payload.model_id, event.stream_version)
            return
        domain = from_payload(payload)
        if domain is not None:
            await self.apply_event(conn, domain, event.stream_version)

    async def apply_snapshot(self, conn: AsyncConnection, model_id: str, stream_version: int) -> None:
        """Every change ends with a snapshot: the read model's stream_version is the snapshot's."""
        await conn.execute(
            text("UPDATE models SET stream_version = :v WHERE model_id = :m"), {"v": stream_version, "m": model_id}
        )

    async def apply_event(self, conn: AsyncConnection, event: ev.ModelEvent, stream_version: int) -> None:
        model = {"model_id": event.model_id, "at": event.at}
        match event:
            case ev.ModelCreated():
                await conn.execute(_INSERT_MODEL, {**model, **_license(event.license), **_model_fields(event)})
                await _replace_tags(conn, event.model_id, event.tags)
                if event.request_id:
                    fields = ModelFields(event.name, event.description, event.type, event.tags, event.license)
                    await conn.execute(
                        text(
                            "INSERT INTO model_create_requests (owner_id, request_id, model_id, fingerprint) "
                            "VALUES (:owner_id, :request_id, :model_id, :fingerprint)"
                        ),
                        {
                            "owner_id": event.owner_id,
                            "request_id": event.request_id,
                            "model_id": event.model_id,
                            "fingerprint": create_fingerprint(fields),
                        },
                    )
            case ev.ModelUpdated():
                await conn.execute(
                    _UPDATE_MODEL,
                    {
                        "model_id": event.model_id,
                        "name": event.name,
                        "description": event.description,
                        "type": event.type,
                        **_license(event.license),
                    },
                )
                await _replace_tags(conn, event.model_id, event.tags)
            case ev.ModelPublished():
                await _set_status(conn, event, ModelStatus.PUBLISHED, published=True, reason="")
            case ev.ModelPublicationScheduled():
                await _set_status(conn, event, ModelStatus.SCHEDULED, scheduled=event.publish_at)
            case ev.PublicationCancelled():
                if event.version_id:
                    await _set_version_status(conn, event.version_id, VersionStatus.DRAFT, event)
                else:
                    await _set_status(conn, event, ModelStatus(event.status))
            case ev.ModelUnpublished():
                status = ModelStatus.UNPUBLISHED_VIOLATION if event.violation else ModelStatus.UNPUBLISHED
                await _set_status(conn, event, status, reason=event.reason)
            case ev.ModelDeleted():
                await _set_status(conn, event, ModelStatus.DELETED)
            case ev.VersionCreated():
                await conn.execute(_INSERT_VERSION, _version_fields(event))
            case ev.VersionUpdated():
                await conn.execute(_UPDATE_VERSION, _version_fields(event))
            case ev.VersionPublished():
                await _set_version_status(conn, event.version_id, VersionStatus.PUBLISHED, event, published=True)
            case ev.VersionPublicationScheduled():
                await _set_version_status(
                    conn, event.version_id, VersionStatus.SCHEDULED, event, scheduled=event.publish_at
                )
            case ev.VersionDeleted():
                await _set_version_status(conn, event.version_id, VersionStatus.DELETED, event)
            case ev.ParentsDeclared():
                await conn.execute(
                    text("DELETE FROM lineage_edges WHERE child_version_id = :v"), {"v": event.version_id}
                )
                if event.parents:
                    await conn.execute(
                        text(
                            "INSERT INTO lineage_edges (child_version_id, parent_version_id, child_model_id, "
                            "parent_model_id, position, relation, weight, attribution) VALUES (:child, :parent, "
                            ":child_model, :parent_model, :position, :relation, :weight, :attribution)"
                        ),
                        [
                            {
                                "child": event.version_id,
                                "parent": p.parent_version_id,
                                "child_model": event.model_id,
                                "parent_model": p.parent_model_id,
                                "position": i,
                                "relation": p.relation.value,
                                "weight": p.weight,
                                "attribution": p.attribution,
                            }
                            for i, p in enumerate(event.parents)
                        ],
                    )
                await conn.execute(_TOUCH_VERSION, {"version_id": event.version_id, "at": event.at})
            case ev.FileAdded():
                f = event.file
                await conn.execute(
                    _INSERT_FILE,
                    {
                        "file_id": f.file_id,
                        "version_id": event.version_id,
                        "model_id": event.model_id,
                        "name": f.name,
                        "type": f.type,
                        "format": f.format,
                        "size_bytes": f.size_bytes,
                        "precision": f.precision,
                        "size_kind": f.size_kind,
                        "blob_sha256": f.blob_sha256,
                        "scan_result": f.scan_result,
                        "scan_message": f.scan_message,
                        "safetensors_metadata": json.dumps(dict(f.safetensors_metadata), sort_keys=True),
                        "tensor_count": f.tensor_count,
                        "at": event.at,
                        "auto_v3_pending": auto_v3_pending(f),
                    },
                )
                await _insert_hashes(conn, f.file_id, f.hashes)
                await conn.execute(_TOUCH_VERSION, {"version_id": event.version_id, "at": event.at})
            case ev.FileScanned():
                await conn.execute(
                    text("UPDATE model_files SET scan_result = :r, scan_message = :m WHERE file_id = :f"),
                    {"r": event.scan_result, "m": event.scan_message, "f": event.file_id},
                )
                await conn.execute(_TOUCH_VERSION, {"version_id": event.version_id, "at": event.at})
            case ev.FileHashesAdded():
                known = await conn.execute(
                    text("SELECT count(*) FROM file_hashes WHERE file_id = :f"), {"f": event.file_id}
                )
                await _insert_hashes(conn, event.file_id, event.hashes, start=known.scalar_one())
                for h in event.hashes:
                    if h.kind == HashKind.AUTO_V3:
                        await conn.execute(
                            text("UPDATE model_files SET auto_v3_pending = false WHERE file_id = :f"),
                            {"f": event.file_id},
                        )
                        # Gallery images that named this LoRA by its short hash before it was known get linked
                        # now (adapters/relink.py): a work queue, filled in this same transaction.
                        await relink.enqueue(conn, relink.AUTO_V3, h.value[:SHORT_HASH_LENGTH].upper(), event.at)
                await conn.execute(_TOUCH_VERSION, {"version_id": event.version_id, "at": event.at})
            case ev.FileRemoved():
                await conn.execute(text("DELETE FROM model_files WHERE file_id = :f"), {"f": event.file_id})
                await conn.execute(_TOUCH_VERSION, {"version_id": event.version_id, "at": event.at})
        await conn.execute(_TOUCH_MODEL, {**model, "stream_version": stream_version})


def auto_v3_pending(file: ev.ModelFile) -> bool:
    """Whether the AutoV3 job has yet to hash the file (column `model_files.auto_v3_pending`, catalog_0004)."""
    return file.format == FileFormat.SAFE_TENSOR and not any(h.kind == HashKind.AUTO_V3 for h in file.hashes)


async def _insert_hashes(conn: AsyncConnection, file_id: str, hashes: tuple[ev.FileHash, ...], start: int = 0) -> None:
    """Add hashes at positions `start`, `start` + 1, ... (the order the events list them in)."""
    if hashes:
        await conn.execute(
            text(
                "INSERT INTO file_hashes (file_id, kind, value, position) VALUES (:file_id, :kind, :value, :position)"
            ),
            [
                {"file_id": file_id, "kind": h.kind, "value": h.value, "position": start + i}
                for i, h in enumerate(hashes)
            ],
        )


def _license(license: ev.License) -> dict[str, object]:
    return {
        "allow_no_credit": license.allow_no_credit,
        "allow_commercial_use": list(license.allow_commercial_use),
        "allow_derivatives": license.allow_derivatives,
        "allow_different_license": license.allow_different_license,
    }


def _model_fields(event: ev.ModelCreated) -> dict[str, object]:
    return {
        "stream_version": 0,
        "owner_id": event.owner_id,
        "owner_name": event.owner_name,
        "name": event.name,
        "description": event.description,
        "type": event.type,
    }


def _version_fields(event: ev.VersionCreated | ev.VersionUpdated) -> dict[str, object]:
    return {
        "model_id": event.model_id,
        "version_id": event.version_id,
        "name": event.name,
        "base_model": event.base_model,
        "trained_words": list(event.trained_words),
        "changelog": event.changelog,
        "early_access_days": event.early_access_days,
        "at": event.at,
    }


async def _set_status(
    conn: AsyncConnection,
    event: ev.ModelEvent,
    status: ModelStatus,
    *,
    scheduled: datetime | None = None,
    published: bool = False,
    reason: str | None = None,
) -> None:
    await conn.execute(
        _SET_STATUS,
        {
            "model_id": event.model_id,
            "status": status.value,
            "scheduled": scheduled,
            "published": published,
            "reason": reason,
            "at": event.at,
        },
    )


async def _set_version_status(
    conn: AsyncConnection,
    version_id: str,
    status: VersionStatus,
    event: ev.ModelEvent,
    *,
    scheduled: datetime | None = None,
    published: bool = False,
) -> None:
    await conn.execute(
        _SET_VERSION_STATUS,
        {
            "version_id": version_id,
            "status": status.value,
            "scheduled": scheduled,
            "published": published,
            "at": event.at,
        },
    )


async def _replace_tags(conn: AsyncConnection, model_id: str, tags: tuple[str, ...]) -> None:
    await conn.execute(text("DELETE FROM model_tags WHERE model_id = :m"), {"m": model_id})
    if tags:
        await conn.execute(
            text("INSERT INTO model_tags (model_id, tag, position) VALUES (:m, :t, :p)"),
            [{"m": model_id, "t": tag, "p": i} for i, tag in enumerate(tags)],
        )
