"""Files: upload sessions and download counts (operational state of the file RPCs, not projections: the
files themselves are facts of the model aggregate, in catalog_0001's read models).

The catalog's revisions form one fixed chain: catalog_0001 <- catalog_0002 (this) <- catalog_0003 (community).

Revision ID: catalog_0002
Revises: catalog_0001
Create Date: 2026-11-21
"""

from alembic import op

revision = "catalog_0002"
down_revision = "catalog_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per upload session. The bytes live in the blob store (uploads/<upload_id>.part, whose size is
    # the session's offset); the row says who may continue it and what it is for. The file added on
    # completion has file_id = upload_id.
    op.execute(
        """
        CREATE TABLE uploads (
            upload_id         text PRIMARY KEY,
            owner_id          text NOT NULL,
            request_id        text NOT NULL,
            model_id          text NOT NULL,
            model_version_id  text NOT NULL,
            file_name         text NOT NULL,
            file_type         text NOT NULL,
            size_kind         text NOT NULL,
            size_bytes        bigint NOT NULL CHECK (size_bytes > 0),
            state             text NOT NULL CHECK (state IN ('Open', 'Completed', 'Rejected', 'Aborted', 'Expired')),
            error_reason      text NOT NULL DEFAULT '',
            error_message     text NOT NULL DEFAULT '',
            blob_sha256       text,
            created_at        timestamptz NOT NULL,
            updated_at        timestamptz NOT NULL
        )
        """
    )
    # StartUpload's idempotency: one session per (owner, request id).
    op.execute("CREATE UNIQUE INDEX uploads_by_request ON uploads (owner_id, request_id) WHERE request_id <> ''")
    # The cleanup job's scan for idle sessions.
    op.execute("CREATE INDEX uploads_open ON uploads (updated_at) WHERE state = 'Open'")
    # Blob garbage collection keeps the blobs of sessions still open (a completion to be retried).
    op.execute("CREATE INDEX uploads_by_blob ON uploads (blob_sha256) WHERE blob_sha256 IS NOT NULL")
    # Downloads per version per window [window_start, window_end); event_id is set, in the same transaction
    # that appends it, when catalog.DownloadsCounted was emitted for the (closed) window.
    op.execute(
        """
        CREATE TABLE download_counts (
            model_version_id  text NOT NULL,
            window_start      timestamptz NOT NULL,
            window_end        timestamptz NOT NULL,
            model_id          text NOT NULL,
            creator_user_id   text NOT NULL,
            count             bigint NOT NULL CHECK (count > 0),
            event_id          uuid,
            PRIMARY KEY (model_version_id, window_start),
            CHECK (window_end > window_start)
        )
        """
    )
    op.execute("CREATE INDEX download_counts_to_emit ON download_counts (window_end) WHERE event_id IS NULL")
    op.execute("CREATE INDEX download_counts_by_model ON download_counts (model_id, window_start)")
    # The scanner's queue: files waiting for their pickle scan.
    op.execute("CREATE INDEX model_files_pending_scan ON model_files (file_id) WHERE scan_result = 'Pending'")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS model_files_pending_scan")
    op.execute("DROP TABLE IF EXISTS download_counts")
    op.execute("DROP TABLE IF EXISTS uploads")
