"""Reads from the model read models (projection tables): what GetModel, ListModels, GetLineage, the
scheduler and hash lookups need. Rows are turned back into domain state (`Model`, `Version`, `ModelFile`)
so that visibility is decided by the same rules as for commands (domain/model.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.catalog.domain.events import FileHash, License, ModelFile, Parent
from modelhub.catalog.domain.model import Model, Version
from modelhub.catalog.domain.vocabulary import ModelStatus, Relation, VersionStatus

_MODEL_COLUMNS = """model_id, stream_version, owner_id, owner_name, name, description, type, status,
    allow_no_credit, allow_commercial_use, allow_derivatives, allow_different_license, nsfw_level,
    unpublished_reason, created_at, updated_at, published_at, scheduled_publish_at,
    ARRAY(SELECT tag FROM model_tags t WHERE t.model_id = models.model_id ORDER BY position) AS tags"""


def _model(row: RowMapping | dict[str, Any]) -> Model:
    model = Model(row["model_id"])
    model.exists = True
    model.version = row["stream_version"]
    model.owner_id, model.owner_name = row["owner_id"], row["owner_name"]
    model.name, model.description, model.type = row["name"], row["description"], row["type"]
    model.status = ModelStatus(row["status"])
    model.tags = tuple(row["tags"])
    model.license = License(
        row["allow_no_credit"],
        tuple(row["allow_commercial_use"]),
        row["allow_derivatives"],
        row["allow_different_license"],
    )
    model.nsfw_level = row["nsfw_level"]
    model.unpublished_reason = row["unpublished_reason"]
    model.created_at, model.updated_at = row["created_at"], row["updated_at"]
    model.published_at, model.scheduled_at = row["published_at"], row["scheduled_publish_at"]
    return model


LOAD_MODEL_SQL: Final = f"""
    SELECT {_MODEL_COLUMNS},
        (SELECT json_agg(json_build_object(
                'id', v.model_version_id, 'name', v.name, 'base_model', v.base_model,
                'trained_words', v.trained_words, 'changelog', v.changelog,
                'early_access_days', v.early_access_days, 'status', v.status,
                'created_at', v.created_at, 'updated_at', v.updated_at,
                'published_at', v.published_at, 'scheduled_at', v.scheduled_publish_at,
                'files', (
                    SELECT json_agg(json_build_object(
                            'file_id', f.file_id, 'name', f.name, 'type', f.type, 'format', f.format,
                            'size_bytes', f.size_bytes, 'blob_sha256', f.blob_sha256,
                            'scan_result', f.scan_result, 'scan_message', f.scan_message,
                            'precision', f.precision, 'size_kind', f.size_kind,
                            'safetensors_metadata', f.safetensors_metadata, 'tensor_count', f.tensor_count,
                            'hashes', (
                                SELECT json_agg(json_build_array(h.kind, h.value) ORDER BY h.position)
                                FROM file_hashes h WHERE h.file_id = f.file_id)
                        ) ORDER BY f.position)
                    FROM model_files f WHERE f.model_version_id = v.model_version_id),
                'parents', (
                    SELECT json_agg(json_build_array(
                            e.parent_model_id, e.parent_version_id, e.relation, e.weight, e.attribution
                        ) ORDER BY e.position)
                    FROM lineage_edges e WHERE e.child_version_id = v.model_version_id)
            ) ORDER BY v.position)
        FROM model_versions v WHERE v.model_id = models.model_id) AS versions
    FROM models WHERE model_id = %(model_id)s
    """
"""GetModel's read: the model with its versions, their files (with hashes) and parents as one JSON column.

One statement, so one round trip and one snapshot (separate queries could see a file whose version they
had not seen yet). Every level is reached through an index: versions by (model_id, position), files by
model_files_by_version, hashes and parents by their primary keys (model_files and lineage_edges have no
index on model_id: filtering them by model_id scans the whole table)."""


async def load_model(conn: AsyncConnection, model_id: str) -> Model | None:
    """A model with its versions, files and parents, as the read models hold it (None if unknown).

    Runs `LOAD_MODEL_SQL` on the driver's connection (the pooled one `conn` wraps): GetModel is a hot public
    read, and SQLAlchemy's execution layer would cost more than the statement. Inside a transaction of `conn`
    or not (autocommit is cheaper: no BEGIN and ROLLBACK round trips)."""
    raw = await conn.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    async with driver.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(LOAD_MODEL_SQL, {"model_id": model_id})
        row = await cursor.fetchone()
    if row is None:
        return None
    model = _model(row)
    for v in row["versions"] or ():
        model.versions[v["id"]] = Version(
            id=v["id"],
            name=v["name"],
            base_model=v["base_model"],
            trained_words=tuple(v["trained_words"]),
            changelog=v["changelog"],
            early_access_days=v["early_access_days"],
            created_at=_timestamp(v["created_at"]),
            updated_at=_timestamp(v["updated_at"]),
            status=VersionStatus(v["status"]),
            published_at=_optional_timestamp(v["published_at"]),
            scheduled_at=_optional_timestamp(v["scheduled_at"]),
            files={f["file_id"]: _file(f) for f in v["files"] or ()},
            parents=tuple(
                Parent(parent_model, parent_version, Relation(relation), weight, attribution)
                for parent_model, parent_version, relation, weight, attribution in v["parents"] or ()
            ),
        )
    return model


def _timestamp(value: str) -> datetime:
    """A timestamptz as PostgreSQL writes it in JSON (ISO 8601 with the offset)."""
    return datetime.fromisoformat(value)


def _optional_timestamp(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _file(f: dict[str, Any]) -> ModelFile:
    return ModelFile(
        file_id=f["file_id"],
        name=f["name"],
        type=f["type"],
        format=f["format"],
        size_bytes=f["size_bytes"],
        blob_sha256=f["blob_sha256"],
        hashes=tuple(FileHash(kind, value) for kind, value in f["hashes"] or ()),
        scan_result=f["scan_result"],
        scan_message=f["scan_message"],
        precision=f["precision"],
        size_kind=f["size_kind"],
        safetensors_metadata=f["safetensors_metadata"],
        tensor_count=f["tensor_count"],
    )


async def list_models(
    conn: AsyncConnection, owner_id: str, *, include_private: bool, after: str | None, limit: int
) -> list[Model]:
    """One owner's models (never Deleted ones), newest first, after the cursor `after` (a model id)."""
    statuses = (
        [s.value for s in ModelStatus if s != ModelStatus.DELETED] if include_private else [ModelStatus.PUBLISHED.value]
    )
    result = await conn.execute(
        text(
            f"SELECT {_MODEL_COLUMNS} FROM models WHERE owner_id = :o AND status = ANY(:statuses) "
            "AND (CAST(:after AS text) IS NULL OR model_id < :after) ORDER BY model_id DESC LIMIT :limit"
        ),
        {"o": owner_id, "statuses": statuses, "after": after, "limit": limit},
    )
    return [_model(row) for row in result.mappings()]


async def model_create_request(conn: AsyncConnection, owner_id: str, request_id: str) -> tuple[str, str] | None:
    """(model id, fingerprint) of an earlier CreateModel with this request id, if any."""
    row = (
        await conn.execute(
            text("SELECT model_id, fingerprint FROM model_create_requests WHERE owner_id = :o AND request_id = :r"),
            {"o": owner_id, "r": request_id},
        )
    ).first()
    return (row.model_id, row.fingerprint) if row else None


@dataclass(frozen=True)
class VersionNode:
    """What lineage needs to know about a version and its model."""

    version_id: str
    model_id: str
    version_name: str
    base_model: str
    version_status: str
    model_name: str
    owner_id: str
    model_status: str
    license: License
    """The license of the version's model."""


_LICENSE_COLUMNS = "m.allow_no_credit, m.allow_commercial_use, m.allow_derivatives, m.allow_different_license"


def _node(r: RowMapping) -> VersionNode:
    return VersionNode(
        r["model_version_id"],
        r["model_id"],
        r["version_name"],
        r["base_model"],
        r["version_status"],
        r["model_name"],
        r["owner_id"],
        r["model_status"],
        _license(r),
    )


def _license(row: RowMapping) -> License:
    return License(
        allow_no_credit=row["allow_no_credit"],
        allow_commercial_use=tuple(row["allow_commercial_use"]),
        allow_derivatives=row["allow_derivatives"],
        allow_different_license=row["allow_different_license"],
    )


async def version_nodes(conn: AsyncConnection, version_ids: Sequence[str]) -> dict[str, VersionNode]:
    result = await conn.execute(
        text(
            "SELECT v.model_version_id, v.model_id, v.name AS version_name, v.base_model, v.status AS version_status, "
            f"m.name AS model_name, m.owner_id, m.status AS model_status, {_LICENSE_COLUMNS} "
            "FROM model_versions v JOIN models m USING (model_id) WHERE v.model_version_id = ANY(:ids)"
        ),
        {"ids": list(version_ids)},
    )
    return {r["model_version_id"]: _node(r) for r in result.mappings()}


async def foreign_parents(conn: AsyncConnection, model_id: str, relations: Sequence[str]) -> list[VersionNode]:
    """The parents (with their models' licenses) that the model's live versions declare with one of
    `relations`, of models another creator owns."""
    result = await conn.execute(
        text(
            "SELECT DISTINCT p.model_version_id, p.model_id, p.name AS version_name, p.base_model, "
            "p.status AS version_status, m.name AS model_name, m.owner_id, m.status AS model_status, "
            f"{_LICENSE_COLUMNS} "
            "FROM lineage_edges e JOIN model_versions c ON c.model_version_id = e.child_version_id "
            "JOIN model_versions p ON p.model_version_id = e.parent_version_id "
            "JOIN models m ON m.model_id = p.model_id "
            "WHERE e.child_model_id = :model_id AND c.status <> 'Deleted' AND e.relation = ANY(:relations) "
            "AND m.owner_id <> (SELECT owner_id FROM models WHERE model_id = :model_id)"
        ),
        {"model_id": model_id, "relations": list(relations)},
    )
    return [_node(r) for r in result.mappings()]


@dataclass(frozen=True)
class Edge:
    child_version_id: str
    parent_version_id: str
    relation: Relation
    weight: float
    attribution: str
    depth: int
    """Steps from the start of the walk (1 = an edge of the start version)."""


_WALK: dict[str, str] = {
    # ancestors: follow child -> parent; descendants: follow parent -> child.
    "ancestors": """
        WITH RECURSIVE walk(child, parent, depth) AS (
            SELECT child_version_id, parent_version_id, 1 FROM lineage_edges WHERE child_version_id = :start
            UNION
            SELECT e.child_version_id, e.parent_version_id, w.depth + 1
            FROM lineage_edges e JOIN walk w ON e.child_version_id = w.parent WHERE w.depth < :limit
        )""",
    "descendants": """
        WITH RECURSIVE walk(child, parent, depth) AS (
            SELECT child_version_id, parent_version_id, 1 FROM lineage_edges WHERE parent_version_id = :start
            UNION
            SELECT e.child_version_id, e.parent_version_id, w.depth + 1
            FROM lineage_edges e JOIN walk w ON e.parent_version_id = w.child WHERE w.depth < :limit
        )""",
}


async def walk_edges(conn: AsyncConnection, start: str, direction: str, limit: int) -> list[Edge]:
    """Edges reachable from `start` in one direction, each at its smallest depth, up to depth `limit`."""
    result = await conn.execute(
        text(
            _WALK[direction]
            + """
            SELECT e.child_version_id, e.parent_version_id, e.relation, e.weight, e.attribution, min(w.depth) AS depth
            FROM walk w JOIN lineage_edges e ON e.child_version_id = w.child AND e.parent_version_id = w.parent
            GROUP BY e.child_version_id, e.parent_version_id, e.relation, e.weight, e.attribution, e.position
            ORDER BY depth, e.child_version_id, e.position
            """
        ),
        {"start": start, "limit": limit},
    )
    return [
        Edge(r.child_version_id, r.parent_version_id, Relation(r.relation), r.weight, r.attribution, r.depth)
        for r in result
    ]


async def descendants_among(conn: AsyncConnection, version_id: str, candidates: Sequence[str]) -> list[str]:
    """Which of `candidates` are `version_id` itself or its descendants, at any depth (the cycle check).

    The graph is acyclic (every declaration is checked by this under the lineage lock), so the walk ends."""
    result = await conn.execute(
        text(
            """
            WITH RECURSIVE below(v) AS (
                SELECT CAST(:start AS text)
                UNION
                SELECT e.child_version_id FROM lineage_edges e JOIN below b ON e.parent_version_id = b.v
            )
            SELECT v FROM below WHERE v = ANY(:candidates)
            """
        ),
        {"start": version_id, "candidates": list(candidates)},
    )
    return [str(v) for v in result.scalars()]


async def due_models(conn: AsyncConnection, now: datetime, limit: int) -> list[str]:
    """Models with a model or version publication due at `now`."""
    result = await conn.execute(
        text(
            """
            SELECT model_id FROM models WHERE status = 'Scheduled' AND scheduled_publish_at <= :now
            UNION
            SELECT model_id FROM model_versions WHERE status = 'Scheduled' AND scheduled_publish_at <= :now
            LIMIT :limit
            """
        ),
        {"now": now, "limit": limit},
    )
    return [str(m) for m in result.scalars()]


@dataclass(frozen=True)
class HashMatch:
    model_id: str
    version_id: str
    file_id: str
    kind: str


async def files_by_hash(conn: AsyncConnection, value: str, kind: str | None = None) -> list[HashMatch]:
    """Files with a hash equal to `value` (any case), of `kind` or of any kind (index file_hashes_by_value)."""
    params: dict[str, Any] = {"value": value.strip(), "kind": kind}
    result = await conn.execute(
        text(
            "SELECT f.model_id, f.model_version_id, f.file_id, h.kind FROM file_hashes h JOIN model_files f "
            "USING (file_id) WHERE upper(h.value) = upper(:value) AND (CAST(:kind AS text) IS NULL OR h.kind = :kind) "
            "ORDER BY f.file_id"
        ),
        params,
    )
    return [HashMatch(r.model_id, r.model_version_id, r.file_id, r.kind) for r in result]
