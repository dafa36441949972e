"""Schema migrations: the library's "core" branch plus the catalog's own "catalog" branch.

The catalog's revisions form ONE fixed chain (each helper owns one revision):
catalog_0001_models (models, versions, files, hashes, lineage, tags) <- catalog_0002_files (uploads,
downloads) <- catalog_0003_community (images, reviews, comments, collections, ...) <- catalog_0004_autov3 (the
AutoV3 queue and prefix index) <- catalog_0005_image_blobs (the indexes of the image blob collection) <-
catalog_0006_download_claims (whose downloads of a version were counted today) <- catalog_0007_aggregate_states
(saved states of long-lived community aggregates).
"""

from __future__ import annotations

from pathlib import Path

from modelhub.core.db import migrate

VERSIONS = Path(__file__).resolve().parent.parent / "migrations" / "versions"


def upgrade(database_url: str) -> None:
    """Bring the catalog's database up to date (idempotent; `make up` calls it at every start)."""
    migrate(database_url, [VERSIONS])
