"""Reads of files for downloads and hash lookups (catalog_0001's read models), and the `download_counts`
table (catalog_0002).

`download_counts`: one row per version per counting window; the community's statistics read it too.

- model_version_id, window_start: the key; the window is [window_start, window_end), of the
  `download_window_seconds` setting, aligned to the epoch;
- model_id: the version's model; creator_user_id: the model's owner when the window's first download was
  counted;
- count: downloads counted in the window (at least 1: a row exists once something was counted);
- event_id: the catalog.DownloadsCounted that reported the window: NULL until the window closed and was
  emitted; a row with an event_id never changes again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.catalog.domain.downloads import HashQuery, Window
from modelhub.catalog.domain.events import FileHash, ModelFile

_FILE_COLUMNS: Final = """f.file_id, f.model_version_id, f.model_id, f.name, f.type, f.format, f.size_bytes,
    f.precision, f.size_kind, f.blob_sha256, f.scan_result, f.scan_message, f.safetensors_metadata, f.tensor_count,
    v.name AS version_name, v.base_model, v.status AS version_status,
    m.name AS model_name, m.type AS model_type, m.status AS model_status, m.owner_id, m.owner_name,
    (SELECT json_agg(json_build_array(h.kind, h.value) ORDER BY h.position) FROM file_hashes h
        WHERE h.file_id = f.file_id) AS hashes"""


@dataclass(frozen=True)
class FileRecord:
    """A file with what visibility and the answers need of its version and model."""

    file: ModelFile
    model_id: str
    model_version_id: str
    model_name: str
    model_type: str
    model_status: str
    owner_id: str
    owner_name: str
    version_name: str
    base_model: str
    version_status: str
    match_count: int = 1


def _record(row: RowMapping | dict[str, Any]) -> FileRecord:
    hashes = row["hashes"]
    if isinstance(hashes, str):  # json_agg arrives parsed with psycopg; text with other drivers
        hashes = json.loads(hashes)
    return FileRecord(
        file=ModelFile(
            file_id=row["file_id"],
            name=row["name"],
            type=row["type"],
            format=row["format"],
            size_bytes=row["size_bytes"],
            blob_sha256=row["blob_sha256"],
            hashes=tuple(FileHash(kind, value) for kind, value in hashes or ()),
            scan_result=row["scan_result"],
            scan_message=row["scan_message"],
            precision=row["precision"],
            size_kind=row["size_kind"],
            safetensors_metadata=dict(row["safetensors_metadata"]),
            tensor_count=row["tensor_count"],
        ),
        model_id=row["model_id"],
        model_version_id=row["model_version_id"],
        model_name=row["model_name"],
        model_type=row["model_type"],
        model_status=row["model_status"],
        owner_id=row["owner_id"],
        owner_name=row["owner_name"],
        version_name=row["version_name"],
        base_model=row["base_model"],
        version_status=row["version_status"],
        match_count=row.get("match_count", 1),
    )


async def file_by_id(conn: AsyncConnection, file_id: str) -> FileRecord | None:
    row = (
        (
            await conn.execute(
                text(
                    f"SELECT {_FILE_COLUMNS} FROM model_files f "
                    "JOIN model_versions v ON v.model_version_id = f.model_version_id "
                    "JOIN models m ON m.model_id = f.model_id WHERE f.file_id = :f"
                ),
                {"f": file_id},
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _record(row)


BY_HASH_SQL: Final = f"""
    SELECT {_FILE_COLUMNS}, count(*) OVER () AS match_count
    FROM file_hashes h0
    JOIN model_files f ON f.file_id = h0.file_id
    JOIN model_versions v ON v.model_version_id = f.model_version_id
    JOIN models m ON m.model_id = f.model_id
    WHERE upper(h0.value) = %(value)s AND (CAST(%(kind)s AS text) IS NULL OR h0.kind = %(kind)s)
      AND (%(privileged)s OR m.owner_id = %(viewer)s OR (m.status = 'Published' AND v.status = 'Published'))
    ORDER BY (m.status = 'Published' AND v.status = 'Published') DESC, f.file_id
    LIMIT 1
    """
"""The by-hash statement, in the driver's parameter style (psycopg: prepared after a few runs)."""


BY_SHORT_HASH_SQL: Final = f"""
    SELECT {_FILE_COLUMNS}, count(*) OVER () AS match_count
    FROM model_files f
    JOIN model_versions v ON v.model_version_id = f.model_version_id
    JOIN models m ON m.model_id = f.model_id
    WHERE f.file_id IN (
        SELECT file_id FROM file_hashes WHERE kind = 'AutoV3' AND left(upper(value), 12) = %(value)s
        UNION SELECT file_id FROM file_hashes WHERE kind = 'SHA256' AND left(upper(value), 12) = %(value)s)
      AND (%(privileged)s OR m.owner_id = %(viewer)s OR (m.status = 'Published' AND v.status = 'Published'))
    ORDER BY (m.status = 'Published' AND v.status = 'Published') DESC, f.file_id
    LIMIT 1
    """
"""The by-hash statement for A1111's 12-digit short hash: the start of an AutoV3 or of a SHA256, one equality on
each of the partial indexes file_hashes_autov3_prefix (catalog_0004) and file_hashes_sha256_prefix
(catalog_0003); a file matching both counts once."""


async def file_by_hash(conn: AsyncConnection, query: HashQuery, viewer_id: str, privileged: bool) -> FileRecord | None:
    """The file a hash designates among those the viewer may see (see GetFileByHashResponse for the rule),
    with the number of such files. One statement on the index file_hashes_by_value (upper(value), kind); for an
    A1111 short hash (12 digits), on the prefix indexes (BY_SHORT_HASH_SQL).

    The hot path of a public API: it runs on the driver's connection directly (the pooled one `conn` wraps),
    which halves its cost compared with going through SQLAlchemy's execution layer. `conn` should be in
    autocommit mode (no transaction to open and roll back). `viewer_id` is "" for anonymous callers (no
    model has an empty owner id)."""
    params: dict[str, Any] = {
        "value": query.value,
        "kind": None if query.kind is None else query.kind.value,
        "viewer": viewer_id,
        "privileged": privileged,
    }
    raw = await conn.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    async with driver.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(BY_SHORT_HASH_SQL if query.short else BY_HASH_SQL, params)
        row = await cursor.fetchone()
    return None if row is None else _record(row)


async def pending_scans(conn: AsyncConnection, limit: int) -> list[tuple[str, str, str, int]]:
    """Files waiting for their scan, oldest first: (version id, file id, blob SHA256, size)."""
    result = await conn.execute(
        text(
            "SELECT model_version_id, file_id, blob_sha256, size_bytes FROM model_files "
            "WHERE scan_result = 'Pending' ORDER BY file_id LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [(r.model_version_id, r.file_id, r.blob_sha256, r.size_bytes) for r in result]


async def pending_auto_v3(conn: AsyncConnection, limit: int, skip: Sequence[str] = ()) -> list[tuple[str, str, str]]:
    """SafeTensor files whose AutoV3 is still to compute, oldest first, but those in `skip`: (version id, file id,
    blob SHA256). Index model_files_auto_v3_pending (catalog_0004): only pending files are read."""
    result = await conn.execute(
        text(
            "SELECT model_version_id, file_id, blob_sha256 FROM model_files "
            "WHERE auto_v3_pending AND file_id <> ALL(CAST(:skip AS text[])) ORDER BY file_id LIMIT :limit"
        ),
        {"limit": limit, "skip": list(skip)},
    )
    return [(r.model_version_id, r.file_id, r.blob_sha256) for r in result]


# -- download counts ------------------------------------------------------------------------------------------


async def count_download(
    conn: AsyncConnection, model_version_id: str, model_id: str, creator_user_id: str, window: Window
) -> bool:
    """Add one download to the version's row of `window`; False (nothing changed) when that window was
    emitted already, so the caller counts it in a later window instead of losing it.

    A flusher emitting the window holds its row lock; this statement waits for it and then sees the row as
    emitted (READ COMMITTED re-checks the WHERE clause on the new row version)."""
    result = await conn.execute(
        text(
            """
            INSERT INTO download_counts AS d (model_version_id, window_start, window_end, model_id, creator_user_id,
                count)
            VALUES (:version_id, :start, :end, :model_id, :creator, 1)
            ON CONFLICT (model_version_id, window_start) DO UPDATE SET count = d.count + 1 WHERE d.event_id IS NULL
            RETURNING 1
            """
        ),
        {
            "version_id": model_version_id,
            "start": window.start,
            "end": window.end,
            "model_id": model_id,
            "creator": creator_user_id,
        },
    )
    return result.first() is not None


async def claim_download(conn: AsyncConnection, model_version_id: str, user_id: str, day: date) -> bool:
    """Record that `user_id`'s download of the version counts on `day`; False when one already did. Two racing
    claims: the second waits for the first's transaction, then finds its row (or, if it rolled back, claims)."""
    result = await conn.execute(
        text(
            "INSERT INTO download_claims (model_version_id, user_id, day) VALUES (:version_id, :user_id, :day) "
            "ON CONFLICT DO NOTHING RETURNING 1"
        ),
        {"version_id": model_version_id, "user_id": user_id, "day": day},
    )
    return result.first() is not None


async def prune_claims(conn: AsyncConnection, before: date, limit: int = 10_000) -> int:
    """Delete up to `limit` claims of days before `before` (only today's decide anything); returns how many."""
    result = await conn.execute(
        text(
            "DELETE FROM download_claims WHERE (model_version_id, user_id, day) IN "
            "(SELECT model_version_id, user_id, day FROM download_claims WHERE day < :before LIMIT :limit)"
        ),
        {"before": before, "limit": limit},
    )
    return result.rowcount


@dataclass(frozen=True)
class ClosedWindow:
    model_version_id: str
    model_id: str
    creator_user_id: str
    window_start: datetime
    window_end: datetime
    count: int


async def closed_windows(conn: AsyncConnection, now: datetime, limit: int) -> list[ClosedWindow]:
    """Windows ended by `now` and not emitted yet, locked (FOR UPDATE) until the caller's transaction ends,
    in (version, window) order."""
    result = await conn.execute(
        text(
            """
            SELECT model_version_id, model_id, creator_user_id, window_start, window_end, count FROM download_counts
            WHERE event_id IS NULL AND window_end <= :now
            ORDER BY model_version_id, window_start LIMIT :limit FOR UPDATE
            """
        ),
        {"now": now, "limit": limit},
    )
    return [
        ClosedWindow(
            r["model_version_id"], r["model_id"], r["creator_user_id"], r["window_start"], r["window_end"], r["count"]
        )
        for r in result.mappings()
    ]


async def mark_emitted(conn: AsyncConnection, emitted: Sequence[tuple[ClosedWindow, UUID]]) -> None:
    await conn.execute(
        text("UPDATE download_counts SET event_id = :e WHERE model_version_id = :v AND window_start = :s"),
        [{"e": event_id, "v": w.model_version_id, "s": w.window_start} for w, event_id in emitted],
    )
