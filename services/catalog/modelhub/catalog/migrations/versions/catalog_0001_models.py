"""Catalog read models of the model aggregate: models, tags, versions, files, file hashes, lineage edges, and
the idempotency index of model creation. All are projections of the event log (adapters/projection.py),
written in the same transaction as the events and rebuildable from them.

The catalog's revisions form one fixed chain: catalog_0001 (this) <- catalog_0002 (files: uploads and
downloads) <- catalog_0003 (community: images, reviews, comments, collections, ...).

Revision ID: catalog_0001
Revises:
Create Date: 2026-11-21
"""

from alembic import op

revision = "catalog_0001"
down_revision = None
branch_labels = ("catalog",)
depends_on = "core_0001"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE models (
            model_id                text PRIMARY KEY,
            stream_version          bigint NOT NULL,
            owner_id                text NOT NULL,
            owner_name              text NOT NULL,
            name                    text NOT NULL,
            description             text NOT NULL,
            type                    text NOT NULL,
            status                  text NOT NULL,
            allow_no_credit         boolean NOT NULL,
            allow_commercial_use    text[] NOT NULL,
            allow_derivatives       boolean NOT NULL,
            allow_different_license boolean NOT NULL,
            nsfw_level              integer NOT NULL DEFAULT 0,
            unpublished_reason      text NOT NULL DEFAULT '',
            created_at              timestamptz NOT NULL,
            updated_at              timestamptz NOT NULL,
            published_at            timestamptz,
            scheduled_publish_at    timestamptz
        )
        """
    )
    # ListModels: one creator's models, newest first (ids are UUIDv7, so id order is creation order).
    op.execute("CREATE INDEX models_by_owner ON models (owner_id, model_id DESC)")
    # The publication scheduler's scan.
    op.execute("CREATE INDEX models_due ON models (scheduled_publish_at) WHERE status = 'Scheduled'")
    op.execute(
        """
        CREATE TABLE model_tags (
            model_id  text NOT NULL REFERENCES models ON DELETE CASCADE,
            tag       text NOT NULL,
            position  integer NOT NULL,
            PRIMARY KEY (model_id, tag)
        )
        """
    )
    op.execute("CREATE INDEX model_tags_by_tag ON model_tags (tag)")
    # CreateModel's idempotency: one model per (owner, request id); the fingerprint tells a retry from a
    # different request reusing the id.
    op.execute(
        """
        CREATE TABLE model_create_requests (
            owner_id     text NOT NULL,
            request_id   text NOT NULL,
            model_id     text NOT NULL REFERENCES models ON DELETE CASCADE,
            fingerprint  text NOT NULL,
            PRIMARY KEY (owner_id, request_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE model_versions (
            model_version_id      text PRIMARY KEY,
            model_id              text NOT NULL REFERENCES models ON DELETE CASCADE,
            position              integer NOT NULL,
            name                  text NOT NULL,
            base_model            text NOT NULL,
            trained_words         text[] NOT NULL,
            changelog             text NOT NULL,
            early_access_days     integer NOT NULL,
            status                text NOT NULL,
            created_at            timestamptz NOT NULL,
            updated_at            timestamptz NOT NULL,
            published_at          timestamptz,
            scheduled_publish_at  timestamptz,
            UNIQUE (model_id, position)
        )
        """
    )
    op.execute("CREATE INDEX model_versions_due ON model_versions (scheduled_publish_at) WHERE status = 'Scheduled'")
    op.execute(
        """
        CREATE TABLE model_files (
            file_id               text PRIMARY KEY,
            model_version_id      text NOT NULL REFERENCES model_versions ON DELETE CASCADE,
            model_id              text NOT NULL,
            position              integer NOT NULL,
            name                  text NOT NULL,
            type                  text NOT NULL,
            format                text NOT NULL,
            size_bytes            bigint NOT NULL,
            precision             text NOT NULL,
            size_kind             text NOT NULL,
            blob_sha256           text NOT NULL,
            scan_result           text NOT NULL,
            scan_message          text NOT NULL,
            safetensors_metadata  jsonb NOT NULL,
            tensor_count          bigint NOT NULL,
            created_at            timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX model_files_by_version ON model_files (model_version_id, position)")
    # Blob garbage collection asks whether any file still uses a blob.
    op.execute("CREATE INDEX model_files_by_blob ON model_files (blob_sha256)")
    op.execute(
        """
        CREATE TABLE file_hashes (
            file_id  text NOT NULL REFERENCES model_files ON DELETE CASCADE,
            kind     text NOT NULL,
            value    text NOT NULL,
            position integer NOT NULL,
            PRIMARY KEY (file_id, kind)
        )
        """
    )
    # Lookup by hash, of a given kind or of any kind, whatever case the caller typed:
    # WHERE upper(value) = upper(:v) [AND kind = :k].
    op.execute("CREATE INDEX file_hashes_by_value ON file_hashes (upper(value), kind)")
    # Edges point from a child version to a parent version, possibly of another model: no foreign key to
    # the parent (its model's events are on another stream; a rebuild replays them in global order anyway).
    op.execute(
        """
        CREATE TABLE lineage_edges (
            child_version_id   text NOT NULL REFERENCES model_versions ON DELETE CASCADE,
            parent_version_id  text NOT NULL,
            child_model_id     text NOT NULL,
            parent_model_id    text NOT NULL,
            position           integer NOT NULL,
            relation           text NOT NULL,
            weight             double precision NOT NULL,
            attribution        text NOT NULL,
            PRIMARY KEY (child_version_id, parent_version_id),
            CHECK (child_version_id <> parent_version_id)
        )
        """
    )
    op.execute("CREATE INDEX lineage_edges_by_parent ON lineage_edges (parent_version_id)")


def downgrade() -> None:
    for table in (
        "lineage_edges",
        "file_hashes",
        "model_files",
        "model_versions",
        "model_create_requests",
        "model_tags",
        "models",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
