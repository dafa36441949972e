"""The `uploads` table (catalog_0002): one row per upload session.

The row says whose session it is, what file it is for, and how it ended; the bytes and the offset live in the
blob store. State changes are single conditional UPDATEs (`... WHERE state = 'Open'`), so two racing callers
(a completion and an abort, a resume and the expiry job) are ordered by the row lock and exactly one wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.catalog.domain.uploads import UploadRequest, UploadSession, UploadStatus

_COLUMNS: Final = (
    "upload_id, owner_id, request_id, model_id, model_version_id, file_name, file_type, size_kind, size_bytes, "
    "state, error_reason, error_message, blob_sha256, created_at, updated_at"
)


def _session(row: RowMapping) -> UploadSession:
    return UploadSession(
        upload_id=row["upload_id"],
        owner_id=row["owner_id"],
        request_id=row["request_id"],
        model_id=row["model_id"],
        model_version_id=row["model_version_id"],
        file_name=row["file_name"],
        file_type=row["file_type"],
        size_kind=row["size_kind"],
        size_bytes=row["size_bytes"],
        status=UploadStatus(row["state"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        error_reason=row["error_reason"],
        error_message=row["error_message"],
        blob_sha256=row["blob_sha256"],
    )


async def insert(
    conn: AsyncConnection, upload_id: str, owner_id: str, model_id: str, request: UploadRequest, now: datetime
) -> UploadSession | None:
    """Record a new open session; None when (owner, request id) has one already (read it with `by_request`)."""
    row = (
        (
            await conn.execute(
                text(
                    f"""
                    INSERT INTO uploads (upload_id, owner_id, request_id, model_id, model_version_id, file_name,
                        file_type, size_kind, size_bytes, state, created_at, updated_at)
                    VALUES (:upload_id, :owner_id, :request_id, :model_id, :version_id, :file_name, :file_type,
                        :size_kind, :size_bytes, 'Open', :now, :now)
                    ON CONFLICT (owner_id, request_id) WHERE request_id <> '' DO NOTHING
                    RETURNING {_COLUMNS}
                    """
                ),
                {
                    "upload_id": upload_id,
                    "owner_id": owner_id,
                    "request_id": request.request_id,
                    "model_id": model_id,
                    "version_id": request.model_version_id,
                    "file_name": request.file_name,
                    "file_type": request.file_type,
                    "size_kind": request.size_kind,
                    "size_bytes": request.size_bytes,
                    "now": now,
                },
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _session(row)


async def by_request(conn: AsyncConnection, owner_id: str, request_id: str) -> UploadSession | None:
    row = (
        (
            await conn.execute(
                text(f"SELECT {_COLUMNS} FROM uploads WHERE owner_id = :o AND request_id = :r AND request_id <> ''"),
                {"o": owner_id, "r": request_id},
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _session(row)


async def get(conn: AsyncConnection, upload_id: str) -> UploadSession | None:
    row = (
        (await conn.execute(text(f"SELECT {_COLUMNS} FROM uploads WHERE upload_id = :u"), {"u": upload_id}))
        .mappings()
        .first()
    )
    return None if row is None else _session(row)


async def touch(conn: AsyncConnection, upload_id: str, now: datetime) -> UploadSession | None:
    """Mark an open session active (it takes bytes now); None when it is not open any more."""
    row = (
        (
            await conn.execute(
                text(
                    "UPDATE uploads SET updated_at = greatest(updated_at, :now) "
                    f"WHERE upload_id = :u AND state = 'Open' RETURNING {_COLUMNS}"
                ),
                {"u": upload_id, "now": now},
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _session(row)


async def record_blob(conn: AsyncConnection, upload_id: str, sha256: str) -> None:
    """Remember which stored blob an open session's bytes became (blob collection keeps it while open)."""
    await conn.execute(
        text("UPDATE uploads SET blob_sha256 = :s WHERE upload_id = :u AND state = 'Open'"),
        {"u": upload_id, "s": sha256},
    )


async def end(
    conn: AsyncConnection,
    upload_id: str,
    status: UploadStatus,
    now: datetime,
    *,
    reason: str = "",
    message: str = "",
) -> UploadSession | None:
    """Move an open session to a final state; None when it was not open (another caller ended it first)."""
    row = (
        (
            await conn.execute(
                text(
                    f"""
                    UPDATE uploads SET state = :state, error_reason = :reason, error_message = :message,
                        updated_at = greatest(updated_at, :now)
                    WHERE upload_id = :u AND state = 'Open'
                    RETURNING {_COLUMNS}
                    """
                ),
                {"u": upload_id, "state": status.value, "reason": reason, "message": message, "now": now},
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _session(row)


async def expire_idle(conn: AsyncConnection, idle_since: datetime, limit: int) -> list[str]:
    """Mark open sessions untouched since `idle_since` Expired; returns their ids."""
    result = await conn.execute(
        text(
            """
            UPDATE uploads SET state = 'Expired' WHERE upload_id IN (
                SELECT upload_id FROM uploads WHERE state = 'Open' AND updated_at < :idle_since
                ORDER BY updated_at LIMIT :limit FOR UPDATE SKIP LOCKED
            ) AND state = 'Open'
            RETURNING upload_id
            """
        ),
        {"idle_since": idle_since, "limit": limit},
    )
    return [str(u) for u in result.scalars()]


async def open_ids(conn: AsyncConnection) -> set[str]:
    """Every open session (their partial files must stay)."""
    result = await conn.execute(text("SELECT upload_id FROM uploads WHERE state = 'Open'"))
    return {str(u) for u in result.scalars()}


async def referenced_blobs(conn: AsyncConnection, candidates: Sequence[str]) -> set[str]:
    """Which of `candidates` (SHA256, upper case) a file of some version, or an open session, still uses."""
    result = await conn.execute(
        text(
            """
            SELECT blob_sha256 FROM model_files WHERE blob_sha256 = ANY(:c)
            UNION
            SELECT blob_sha256 FROM uploads WHERE blob_sha256 = ANY(:c) AND state = 'Open'
            """
        ),
        {"c": list(candidates)},
    )
    return {str(s) for s in result.scalars()}
