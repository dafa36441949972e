"""Schema migrations: the library's "core" branch plus the search service's own "search" branch."""

from __future__ import annotations

from pathlib import Path

from modelhub.core.db import migrate

VERSIONS = Path(__file__).resolve().parent.parent / "migrations" / "versions"


def upgrade(database_url: str) -> None:
    """Bring the search database up to date (idempotent; `make up` calls it at every start)."""
    migrate(database_url, [VERSIONS])
