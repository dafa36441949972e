"""Database access: one async SQLAlchemy engine per service, and schema migrations with Alembic.

Each service owns one PostgreSQL database. The shared library's tables (event store, checkpoints, consumer
inbox) live in every service's database, created by the library's own Alembic branch ("core"); a service
adds its own branch beside it, and `migrate` upgrades all heads together.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def sqlalchemy_url(url: str, *, driver: str = "psycopg") -> str:
    """Turn a libpq URL (postgresql://...) into SQLAlchemy's form with the psycopg 3 driver."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    return f"postgresql+{driver}://{rest}"


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20) -> AsyncEngine:
    """An async engine for a service database (psycopg 3), with pre-ping so restarts of Postgres heal."""
    return create_async_engine(sqlalchemy_url(url), pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)


def alembic_config(url: str, version_locations: Sequence[Path] = ()) -> Config:
    """Alembic configuration for the library's branch plus the given services' version directories."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    locations = [MIGRATIONS_DIR / "versions", *version_locations]
    config.set_main_option("version_locations", " ".join(str(p) for p in locations))
    config.set_main_option("path_separator", "space")
    config.attributes["database_url"] = sqlalchemy_url(url)
    return config


def migrate(url: str, version_locations: Sequence[Path] = ()) -> None:
    """Upgrade the database at `url` to the newest schema (idempotent; safe to run at every start)."""
    command.upgrade(alembic_config(url, version_locations), "heads")
