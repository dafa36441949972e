"""The mirror of the catalog: the latest snapshot of every model, model's stats and gallery image.

Revision ID: search_0001
Revises:
Create Date: 2026-11-21
"""

from alembic import op

revision = "search_0001"
down_revision = None
branch_labels = ("search",)
depends_on = "core_0001"

_TABLES = {
    "mirror_models": "model_id",
    "mirror_model_stats": "model_id",
    "mirror_images": "image_id",
}


def upgrade() -> None:
    # One row per catalog item: the payload bytes of the newest event seen for it (by stream version), at the
    # schema version they were written with. Written by the consumer "search-catalog" in the transaction that
    # claims the events in its inbox, with a version guard (a row only moves to a higher version). `tx` is the
    # transaction that last changed the row: a rebuild catches up with rows changed by transactions it may
    # not have seen (see modelhub.search.adapters.mirror). `public` says whether the item belongs in the index.
    for table, key in _TABLES.items():
        op.execute(
            f"""
            CREATE TABLE {table} (
                {key}           text PRIMARY KEY CHECK ({key} <> ''),
                version         bigint NOT NULL CHECK (version > 0),
                schema_version  integer NOT NULL CHECK (schema_version > 0),
                payload         bytea NOT NULL,
                public          boolean NOT NULL,
                event_id        uuid NOT NULL,
                tx              xid8 NOT NULL DEFAULT pg_current_xact_id(),
                updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
            )
            """
        )
        op.execute(f"CREATE INDEX {table}_tx ON {table} (tx)")
    # One row per model ever seen, locked by every writer for the models it touches, in id order, before it
    # reads or writes their mirror rows: two transactions touching one model (its snapshot in one, its stats in
    # the other) run one after the other, even before the model's first row exists.
    op.execute("CREATE TABLE mirror_model_locks (model_id text PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE mirror_model_locks")
    for table in _TABLES:
        op.execute(f"DROP TABLE {table}")
