"""PostgreSQL advisory locks named by strings.

Every advisory lock of the platform is taken through here, so that one name is always one key
(`hashtextextended(name, 0)`, 64 bits): two places spelling the key differently would not exclude each other,
and nothing would say so.

- Transaction-scoped (`lock`, `try_lock`): held until the caller's transaction ends, commit or rollback.
- Session-scoped (`lock_session`, `try_lock_session`, `unlock_session`): held across transactions until
  unlocked, or until the connection closes (a connection that dies releases its locks).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from psycopg.errors import LockNotAvailable
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

_KEY: Final = "hashtextextended(:name, 0)"
_LOCK: Final = text(f"SELECT pg_advisory_xact_lock({_KEY})")
_LOCK_SHARED: Final = text(f"SELECT pg_advisory_xact_lock_shared({_KEY})")
_TRY_LOCK: Final = text(f"SELECT pg_try_advisory_xact_lock({_KEY})")
_LOCK_SESSION: Final = text(f"SELECT pg_advisory_lock({_KEY})")
_TRY_LOCK_SESSION: Final = text(f"SELECT pg_try_advisory_lock({_KEY})")
_UNLOCK_SESSION: Final = text(f"SELECT pg_advisory_unlock({_KEY})")
_LOCK_TIMEOUT: Final = text("SELECT current_setting('lock_timeout')")
_SET_LOCK_TIMEOUT: Final = text("SELECT set_config('lock_timeout', :timeout, true)")


class LockTimeout(Exception):
    """The lock was not granted within the wait given; the caller's transaction is aborted and must end."""


async def lock(conn: AsyncConnection, name: str, *, shared: bool = False, wait: timedelta | None = None) -> None:
    """Wait for the lock `name` and hold it until the transaction ends; `shared` holders exclude only exclusive
    ones. A waiting exclusive request is queued ahead of shared requests made after it by others.

    With `wait`, give up after that long (LockTimeout); the transaction's other statements keep the
    connection's own lock_timeout."""
    statement = _LOCK_SHARED if shared else _LOCK
    if wait is None:
        await conn.execute(statement, {"name": name})
        return
    own = (await conn.execute(_LOCK_TIMEOUT)).scalar_one()
    await conn.execute(_SET_LOCK_TIMEOUT, {"timeout": f"{max(1, round(wait.total_seconds() * 1000))}ms"})
    try:
        await conn.execute(statement, {"name": name})
    except OperationalError as error:
        if isinstance(error.orig, LockNotAvailable):
            raise LockTimeout(f"lock {name!r} not granted within {wait}") from error
        raise
    await conn.execute(_SET_LOCK_TIMEOUT, {"timeout": own})


async def try_lock(conn: AsyncConnection, name: str) -> bool:
    """Take the lock `name` exclusively until the transaction ends if nobody else holds it; False (nothing held)
    if somebody does."""
    return bool((await conn.execute(_TRY_LOCK, {"name": name})).scalar_one())


async def lock_session(conn: AsyncConnection, name: str) -> None:
    """Wait for the lock `name` and hold it on this connection until `unlock_session` (or the connection ends).
    Taken twice, it needs two unlocks."""
    await conn.execute(_LOCK_SESSION, {"name": name})


async def try_lock_session(conn: AsyncConnection, name: str) -> bool:
    """Take the lock `name` on this connection until `unlock_session` if nobody else holds it; False if somebody
    does. Taken twice, it needs two unlocks."""
    return bool((await conn.execute(_TRY_LOCK_SESSION, {"name": name})).scalar_one())


async def unlock_session(conn: AsyncConnection, name: str) -> bool:
    """Release a session lock this connection holds; False if it held none of that name."""
    return bool((await conn.execute(_UNLOCK_SESSION, {"name": name})).scalar_one())
