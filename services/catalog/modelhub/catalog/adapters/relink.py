"""Re-linking gallery images when a short hash becomes known (catalog_0004's `image_relink_queue`).

A1111 names a safetensors LoRA by the first 12 digits of its AutoV3, which the catalog computes a little after
the upload. An image posted in between names a hash no file has yet, and its resource stays unlinked. When the
AutoV3 is recorded, the model projection queues its 12-digit prefix (`enqueue`, in the recording transaction);
the re-link job (handlers/gallery.py) links the images naming it and then drops the queue entry (`done`).

Race with a concurrent post: a post looks its short hashes up under a shared advisory lock per hash
(`lock_for_lookup`), and recording an AutoV3 takes that lock exclusively (`enqueue`) until it commits. So either
the post's lookup runs after the AutoV3 committed and sees it, or the recording waits for the post to commit and
the re-link job, which runs after the recording, sees the post's image. No image is left unlinked by the race.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.core import locks

AUTO_V3: Final = "AutoV3"
"""The resource hash kind of A1111's 12-digit short hashes (images/generation.py)."""
_LOCK_KEY: Final = "catalog:short-hash:{kind}:{hash}"


@dataclass(frozen=True)
class Queued:
    hash_kind: str
    hash: str
    queued_at: datetime


async def lock_for_lookup(conn: AsyncConnection, hash_kind: str, value: str) -> None:
    """Before a post looks a resource's short hash up: a shared lock on it until the post's transaction ends."""
    await locks.lock(conn, _LOCK_KEY.format(kind=hash_kind, hash=value), shared=True)


async def enqueue(conn: AsyncConnection, hash_kind: str, value: str, at: datetime) -> None:
    """Queue a short hash that just became known (in the transaction recording it), after waiting for posts that
    are looking it up right now (their lock) to commit."""
    await locks.lock(conn, _LOCK_KEY.format(kind=hash_kind, hash=value))
    await conn.execute(
        text(
            "INSERT INTO image_relink_queue (hash_kind, hash, queued_at) VALUES (:k, :h, :at) "
            "ON CONFLICT (hash_kind, hash) DO UPDATE SET queued_at = excluded.queued_at"
        ),
        {"k": hash_kind, "h": value, "at": at},
    )


async def queued(conn: AsyncConnection, limit: int) -> list[Queued]:
    """The oldest queued hashes."""
    result = await conn.execute(
        text("SELECT hash_kind, hash, queued_at FROM image_relink_queue ORDER BY queued_at, hash LIMIT :limit"),
        {"limit": limit},
    )
    return [Queued(r.hash_kind, r.hash, r.queued_at) for r in result]


async def images_naming(conn: AsyncConnection, hash_kind: str, value: str) -> list[str]:
    """Images with an unlinked resource of this hash (index image_resources_unlinked), oldest first."""
    result = await conn.execute(
        text(
            "SELECT DISTINCT image_id FROM image_resources WHERE hash_kind = :k AND hash = :h "
            "AND model_version_id = '' ORDER BY image_id"
        ),
        {"k": hash_kind, "h": value},
    )
    return list(result.scalars())


async def done(conn: AsyncConnection, entries: Sequence[Queued]) -> None:
    """Drop handled entries; one queued again meanwhile (a later queued_at) stays for another pass."""
    if entries:
        await conn.execute(
            text("DELETE FROM image_relink_queue WHERE hash_kind = :k AND hash = :h AND queued_at = :at"),
            [{"k": e.hash_kind, "h": e.hash, "at": e.queued_at} for e in entries],
        )
