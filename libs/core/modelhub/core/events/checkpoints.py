"""Named reader positions in the global order (relay, local projections), stored beside the events."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.core import locks
from modelhub.core.events.model import START, GlobalPosition


async def lock_reader(conn: AsyncConnection, name: str) -> None:
    """Serialize transactions of reader `name` (held until commit): two runs never apply the same batch."""
    await locks.lock(conn, name)


async def load_checkpoint(conn: AsyncConnection, name: str) -> GlobalPosition:
    """Where reader `name` stopped; START if it never ran."""
    result = await conn.execute(
        text("SELECT transaction_id::text, position FROM checkpoints WHERE name = :name"), {"name": name}
    )
    row = result.first()
    return GlobalPosition(int(row[0]), int(row[1])) if row else START


async def save_checkpoint(conn: AsyncConnection, name: str, position: GlobalPosition) -> None:
    """Record that reader `name` has handled everything up to and including `position`.

    Checkpoints only move forward: a late writer (a relay that lost its lock) cannot move one back.
    Use delete_checkpoint to start a reader over.
    """
    await conn.execute(
        text(
            """
            INSERT INTO checkpoints (name, transaction_id, position)
            VALUES (:name, CAST(:tx AS text)::xid8, :pos)
            ON CONFLICT (name) DO UPDATE
            SET transaction_id = excluded.transaction_id, position = excluded.position,
                updated_at = clock_timestamp()
            WHERE (checkpoints.transaction_id, checkpoints.position) < (excluded.transaction_id, excluded.position)
            """
        ),
        {"name": name, "tx": str(position.transaction_id), "pos": position.position},
    )


async def delete_checkpoint(conn: AsyncConnection, name: str) -> None:
    await conn.execute(text("DELETE FROM checkpoints WHERE name = :name"), {"name": name})
