"""AutoV3: the queue of SafeTensor files whose AutoV3 hash is still to compute, the index that finds a file by the
12-digit AutoV3 prefix A1111 writes ("Lora hashes"), and the queue of gallery images to link again once such a
hash is known.

- `model_files.auto_v3_pending`: true for a SafeTensor file without an AutoV3 hash. The model projection sets
  it from the events (catalog.ModelFileAdded sets it, catalog.ModelFileHashesAdded with an AutoV3 clears it),
  so a rebuild gives the same value; existing files are backfilled here. The partial index is the AutoV3
  job's queue: it reads only pending files, however many files there are.
- `file_hashes_autov3_prefix`: `left(upper(value), 12)` of AutoV3 rows, beside catalog_0003's
  `file_hashes_sha256_prefix` for SHA256 rows; a 12-digit lookup reads both (one equality each).
- `image_relink_queue`: short hashes that became known (an AutoV3 recorded), whose unlinked gallery resources
  the re-link job links now. Filled by the model projection in the transaction that records the AutoV3, emptied
  by the job once done: a work queue (like catalog_0003's stats marks), not a read model.
- `image_resources_unlinked`: the re-link job's lookup of unlinked resources by hash.

The catalog's revisions form one fixed chain: catalog_0001 (models) <- catalog_0002 (files) <- catalog_0003
(community) <- catalog_0004 (this).

Revision ID: catalog_0004
Revises: catalog_0003
Create Date: 2026-11-28
"""

from alembic import op

revision = "catalog_0004"
down_revision = "catalog_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE model_files ADD COLUMN auto_v3_pending boolean NOT NULL DEFAULT false")
    op.execute(
        """
        UPDATE model_files f SET auto_v3_pending = true
        WHERE f.format = 'SafeTensor'
          AND NOT EXISTS (SELECT 1 FROM file_hashes h WHERE h.file_id = f.file_id AND h.kind = 'AutoV3')
        """
    )
    op.execute("CREATE INDEX model_files_auto_v3_pending ON model_files (file_id) WHERE auto_v3_pending")
    op.execute("CREATE INDEX file_hashes_autov3_prefix ON file_hashes (left(upper(value), 12)) WHERE kind = 'AutoV3'")
    op.execute(
        """
        CREATE TABLE image_relink_queue (
            hash_kind  text NOT NULL,
            hash       text NOT NULL,
            queued_at  timestamptz NOT NULL,
            PRIMARY KEY (hash_kind, hash)
        )
        """
    )
    op.execute("CREATE INDEX image_resources_unlinked ON image_resources (hash_kind, hash) WHERE model_version_id = ''")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS image_resources_unlinked")
    op.execute("DROP TABLE IF EXISTS image_relink_queue")
    op.execute("DROP INDEX IF EXISTS file_hashes_autov3_prefix")
    op.execute("DROP INDEX IF EXISTS model_files_auto_v3_pending")
    op.execute("ALTER TABLE model_files DROP COLUMN IF EXISTS auto_v3_pending")
