"""Gallery and community read models: images (with their resources and linked versions), reviews, comments,
favourites, follows, collections, creation requests, and the model stats last emitted. All are projections of
the event log (adapters/community_projection.py), written in the same transaction as the events and
rebuildable from them. Plus the stats job's work queues (stats_dirty, image_stats_dirty), which are not.

No foreign key points into catalog_0001's tables: those are emptied and refilled by the model projection's
rebuild, which must not cascade into these.

The catalog's revisions form one fixed chain: catalog_0001 (models) <- catalog_0002 (files) <- catalog_0003
(this).

Revision ID: catalog_0003
Revises: catalog_0002
Create Date: 2026-11-21
"""

from alembic import op

revision = "catalog_0003"
down_revision = "catalog_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE images (
            image_id            text PRIMARY KEY,
            stream_version      bigint NOT NULL,
            owner_id            text NOT NULL,
            owner_name          text NOT NULL,
            status              text NOT NULL,
            gallery_version_id  text,
            gallery_model_id    text,
            blob_sha256         text NOT NULL,
            mime_type           text NOT NULL,
            size_bytes          bigint NOT NULL,
            width               integer NOT NULL,
            height              integer NOT NULL,
            phash               text NOT NULL,
            blurhash            text NOT NULL,
            nsfw_level          integer NOT NULL DEFAULT 0,
            tags                text[] NOT NULL,
            generation          jsonb NOT NULL,
            created_at          timestamptz NOT NULL,
            updated_at          timestamptz NOT NULL
        )
        """
    )
    # ListImages by user, newest first (ids are UUIDv7: id order is posting order).
    op.execute("CREATE INDEX images_by_owner ON images (owner_id, image_id DESC)")
    op.execute(
        """
        CREATE TABLE image_resources (
            image_id          text NOT NULL REFERENCES images ON DELETE CASCADE,
            position          integer NOT NULL,
            kind              text NOT NULL,
            name              text NOT NULL,
            weight            double precision,
            hash              text NOT NULL,
            hash_kind         text NOT NULL,
            model_version_id  text NOT NULL,
            model_id          text NOT NULL,
            PRIMARY KEY (image_id, position)
        )
        """
    )
    # Every version that made an image (its linked resources and the gallery it was posted to): "the images
    # made with this version" and the stats' image counts read it.
    op.execute(
        """
        CREATE TABLE image_versions (
            image_id          text NOT NULL REFERENCES images ON DELETE CASCADE,
            model_version_id  text NOT NULL,
            model_id          text NOT NULL,
            PRIMARY KEY (image_id, model_version_id)
        )
        """
    )
    op.execute("CREATE INDEX image_versions_by_version ON image_versions (model_version_id, image_id DESC)")
    op.execute("CREATE INDEX image_versions_by_model ON image_versions (model_id, image_id DESC)")
    op.execute(
        """
        CREATE TABLE reviews (
            review_id         text PRIMARY KEY,
            stream_version    bigint NOT NULL,
            model_id          text NOT NULL,
            model_version_id  text NOT NULL,
            author_id         text NOT NULL,
            author_name       text NOT NULL,
            recommended       boolean NOT NULL,
            text              text NOT NULL,
            status            text NOT NULL,
            created_at        timestamptz NOT NULL,
            updated_at        timestamptz NOT NULL,
            UNIQUE (model_version_id, author_id)
        )
        """
    )
    op.execute("CREATE INDEX reviews_by_version ON reviews (model_version_id, review_id DESC)")
    op.execute("CREATE INDEX reviews_by_model ON reviews (model_id, review_id DESC)")
    op.execute(
        """
        CREATE TABLE comments (
            comment_id         text PRIMARY KEY,
            stream_version     bigint NOT NULL,
            subject_kind       text NOT NULL,
            subject_id         text NOT NULL,
            parent_comment_id  text NOT NULL,
            author_id          text NOT NULL,
            author_name        text NOT NULL,
            body               text NOT NULL,
            status             text NOT NULL,
            created_at         timestamptz NOT NULL,
            updated_at         timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX comments_by_subject ON comments (subject_kind, subject_id, comment_id)")
    op.execute(
        """
        CREATE TABLE favorites (
            target_kind  text NOT NULL,
            target_id    text NOT NULL,
            user_id      text NOT NULL,
            created_at   timestamptz NOT NULL,
            PRIMARY KEY (target_kind, target_id, user_id)
        )
        """
    )
    op.execute("CREATE INDEX favorites_by_user ON favorites (user_id, created_at DESC, target_id)")
    op.execute(
        """
        CREATE TABLE follows (
            follower_id  text NOT NULL,
            followee_id  text NOT NULL,
            created_at   timestamptz NOT NULL,
            PRIMARY KEY (follower_id, followee_id)
        )
        """
    )
    op.execute("CREATE INDEX follows_by_follower ON follows (follower_id, created_at DESC, followee_id)")
    op.execute("CREATE INDEX follows_by_followee ON follows (followee_id, created_at DESC, follower_id)")
    op.execute(
        """
        CREATE TABLE collections (
            collection_id   text PRIMARY KEY,
            stream_version  bigint NOT NULL,
            owner_id        text NOT NULL,
            owner_name      text NOT NULL,
            name            text NOT NULL,
            description     text NOT NULL,
            visibility      text NOT NULL,
            item_kind       text NOT NULL,
            status          text NOT NULL,
            created_at      timestamptz NOT NULL,
            updated_at      timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX collections_by_owner ON collections (owner_id, collection_id DESC)")
    op.execute(
        """
        CREATE TABLE collection_items (
            collection_id  text NOT NULL REFERENCES collections ON DELETE CASCADE,
            item_kind      text NOT NULL,
            item_id        text NOT NULL,
            added_at       timestamptz NOT NULL,
            PRIMARY KEY (collection_id, item_id)
        )
        """
    )
    op.execute("CREATE INDEX collection_items_by_item ON collection_items (item_kind, item_id)")
    op.execute("CREATE INDEX collection_items_by_time ON collection_items (collection_id, added_at DESC, item_id)")
    # Idempotent creation (PostImage, PostComment, CreateCollection): one item per (owner, kind, request id);
    # the fingerprint tells a retry from another request reusing the id.
    op.execute(
        """
        CREATE TABLE community_requests (
            owner_id     text NOT NULL,
            kind         text NOT NULL,
            request_id   text NOT NULL,
            item_id      text NOT NULL,
            fingerprint  text NOT NULL,
            PRIMARY KEY (owner_id, kind, request_id)
        )
        """
    )
    # The last catalog.ModelStatsUpdated of each model (its stream version is the next append's expected one).
    op.execute(
        """
        CREATE TABLE model_stats (
            model_id         text PRIMARY KEY,
            stream_version   bigint NOT NULL,
            computed_at      timestamptz NOT NULL,
            periods          jsonb NOT NULL,
            rolling_nonzero  boolean NOT NULL
        )
        """
    )
    # The stats job refreshes counts of windows that shrink with time (Day, Week, ...) when they are old.
    op.execute("CREATE INDEX model_stats_to_refresh ON model_stats (computed_at) WHERE rolling_nonzero")
    # When the stats job last recounted a model and found nothing to emit (so it waits before the next try).
    op.execute("CREATE TABLE model_stats_checks (model_id text PRIMARY KEY, checked_at timestamptz NOT NULL)")
    # Work queues of the stats job: models / images whose counts may have changed. Marked with an upsert that
    # updates (so a writer holds the row's lock until it commits and the job's DELETE waits for it).
    op.execute("CREATE TABLE stats_dirty (model_id text PRIMARY KEY, marked_at timestamptz NOT NULL)")
    op.execute("CREATE TABLE image_stats_dirty (image_id text PRIMARY KEY, marked_at timestamptz NOT NULL)")
    # Downloads are counted by the file RPCs (catalog_0002's download_counts); this trigger marks the model
    # for the stats job in the same transaction, without the download path knowing about stats.
    op.execute(
        """
        CREATE FUNCTION mark_download_stats() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO stats_dirty (model_id, marked_at) VALUES (NEW.model_id, now())
            ON CONFLICT (model_id) DO UPDATE SET marked_at = excluded.marked_at;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER download_counts_mark_stats AFTER INSERT OR UPDATE OF count ON download_counts
        FOR EACH ROW EXECUTE FUNCTION mark_download_stats()
        """
    )
    # Resource linking by hash and by name (catalog_0001's tables): a 12-hex "AutoV3" hash of a non-safetensors
    # file is the start of its SHA256; a resource without a hash is matched by file name without extension.
    op.execute("CREATE INDEX file_hashes_sha256_prefix ON file_hashes (left(upper(value), 12)) WHERE kind = 'SHA256'")
    op.execute(
        "CREATE INDEX model_files_by_name_key ON model_files "
        "(lower(regexp_replace(name, '^.*/|\\.[A-Za-z0-9]{1,12}$', '', 'g')))"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS model_files_by_name_key")
    op.execute("DROP INDEX IF EXISTS file_hashes_sha256_prefix")
    op.execute("DROP TRIGGER IF EXISTS download_counts_mark_stats ON download_counts")
    op.execute("DROP FUNCTION IF EXISTS mark_download_stats()")
    for table in (
        "image_stats_dirty",
        "stats_dirty",
        "model_stats_checks",
        "model_stats",
        "community_requests",
        "collection_items",
        "collections",
        "follows",
        "favorites",
        "comments",
        "reviews",
        "image_versions",
        "image_resources",
        "images",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
