"""Reads from the model read models (projection tables): what GetModel, ListModels, GetLineage, the
scheduler and hash lookups need. Rows are turned back into domain state (`Model`, `Version`, `ModelFile`)
so that visibility is decided by the same rules as for commands (domain/model.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.catalog.domain.events import FileHash, License, ModelFile, Parent
from modelhub.catalog.domain.model import Model, Version
from modelhub.catalog.domain.vocabulary import ModelStatus, Relation, VersionStatus

_MODEL_COLUMNS = """model_id, stream_version, owner_id, owner_name, name, description, type, status,
    allow_no_credit, allow_commercial_use, allow_derivatives, allow_different_license, nsfw_level,
    unpublished_reason, created_at, updated_at, published_at, scheduled_publish_at,
    ARRAY(SELECT tag FROM model_tags t WHERE t.model_id = models.model_id ORDER BY position) AS tags"""


def _model(row: RowMapping) -> Model:
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


async def load_model(conn: AsyncConnection, model_id: str) -> Model | None:
    """A model with its versions, files and parents, as the read models hold it (None if unknown)."""
    row = (
        (await conn.execute(text(f"SELECT {_MODEL_COLUMNS} FROM models WHERE model_id = :m"), {"m": model_id}))
        .mappings()
        .first()
    )
    if row is None:
        return None
    model = _model(row)
    versions = await conn.execute(
        text("SELECT * FROM model_versions WHERE model_id = :m ORDER BY position"), {"m": model_id}
    )
    for v in versions.mappings():
        model.versions[v["model_version_id"]] = Version(
            id=v["model_version_id"],
            name=v["name"],
            base_model=v["base_model"],
            trained_words=tuple(v["trained_words"]),
            changelog=v["changelog"],
            early_access_days=v["early_access_days"],
            created_at=v["created_at"],
            updated_at=v["updated_at"],
            status=VersionStatus(v["status"]),
            published_at=v["published_at"],
            scheduled_at=v["scheduled_publish_at"],
        )
    hashes: dict[str, list[FileHash]] = {}
    hash_rows = await conn.execute(
        text(
            "SELECT h.file_id, h.kind, h.value FROM file_hashes h JOIN model_files f USING (file_id) "
            "WHERE f.model_id = :m ORDER BY h.file_id, h.position"
        ),
        {"m": model_id},
    )
    for h in hash_rows:
        hashes.setdefault(h.file_id, []).append(FileHash(h.kind, h.value))
    files = await conn.execute(
        text("SELECT * FROM model_files WHERE model_id = :m ORDER BY model_version_id, position"), {"m": model_id}
    )
    for f in files.mappings():
        model.versions[f["model_version_id"]].files[f["file_id"]] = _file(f, hashes.get(f["file_id"], []))
    edges = await conn.execute(
        text("SELECT * FROM lineage_edges WHERE child_model_id = :m ORDER BY child_version_id, position"),
        {"m": model_id},
    )
    parents: dict[str, list[Parent]] = {}
    for e in edges.mappings():
        parents.setdefault(e["child_version_id"], []).append(
            Parent(e["parent_model_id"], e["parent_version_id"], Relation(e["relation"]), e["weight"], e["attribution"])
        )
    for version_id, declared in parents.items():
        model.versions[version_id].parents = tuple(declared)
    return model


def _file(row: RowMapping, hashes: Sequence[FileHash]) -> ModelFile:
    return ModelFile(
        file_id=row["file_id"],
        name=row["name"],
        type=row["type"],
        format=row["format"],
        size_bytes=row["size_bytes"],
        blob_sha256=row["blob_sha256"],
        hashes=tuple(hashes),
        scan_result=row["scan_result"],
        scan_message=row["scan_message"],
        precision=row["precision"],
        size_kind=row["size_kind"],
        safetensors_metadata=dict(row["safetensors_metadata"]),
        tensor_count=row["tensor_count"],
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
    allow_derivatives: bool


async def version_nodes(conn: AsyncConnection, version_ids: Sequence[str]) -> dict[str, VersionNode]:
    result = await conn.execute(
        text(
            "SELECT v.model_version_id, v.model_id, v.name AS version_name, v.base_model, v.status AS version_status, "
            "m.name AS model_name, m.owner_id, m.status AS model_status, m.allow_derivatives "
            "FROM model_versions v JOIN models m USING (model_id) WHERE v.model_version_id = ANY(:ids)"
        ),
        {"ids": list(version_ids)},
    )
    return {
        r["model_version_id"]: VersionNode(
            r["model_version_id"],
            r["model_id"],
            r["version_name"],
            r["base_model"],
            r["version_status"],
            r["model_name"],
            r["owner_id"],
            r["model_status"],
            r["allow_derivatives"],
        )
        for r in result.mappings()
    }


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
