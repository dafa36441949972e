"""Download claims: which signed-in users' downloads of a version were counted today, so that one user's
repeated downloads of a version count once a day (domain/downloads.py).

One row per (version, user, UTC day), written in the transaction that counts the download; the cleanup job
deletes the rows of days before yesterday (`download_claims_by_day`).

The catalog's revisions form one fixed chain: catalog_0001 (models) <- catalog_0002 (files) <- catalog_0003
(community) <- catalog_0004 (AutoV3) <- catalog_0005 (image blobs) <- catalog_0006 (this).

Revision ID: catalog_0006
Revises: catalog_0005
Create Date: 2026-11-21
"""

from alembic import op

revision = "catalog_0006"
down_revision = "catalog_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE download_claims (
            model_version_id text NOT NULL,
            user_id text NOT NULL,
            day date NOT NULL,
            PRIMARY KEY (model_version_id, user_id, day)
        )
        """
    )
    op.execute("CREATE INDEX download_claims_by_day ON download_claims (day)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS download_claims")
