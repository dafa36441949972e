"""Event store, checkpoints and consumer inbox.

Revision ID: core_0001
Revises:
Create Date: 2026-11-21
"""

from alembic import op

revision = "core_0001"
down_revision = None
branch_labels = ("core",)
depends_on = None


def upgrade() -> None:
    # transaction_id orders readers: see modelhub.core.events.store for why (xid8 + visibility horizon).
    op.execute(
        """
        CREATE TABLE events (
            position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            transaction_id  xid8 NOT NULL DEFAULT pg_current_xact_id(),
            event_id        uuid NOT NULL UNIQUE,
            stream_id       text NOT NULL,
            stream_version  bigint NOT NULL CHECK (stream_version > 0),
            event_type      text NOT NULL,
            schema_version  integer NOT NULL CHECK (schema_version > 0),
            payload         bytea NOT NULL,
            occurred_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
            correlation_id  text NOT NULL DEFAULT '',
            causation_id    text NOT NULL DEFAULT '',
            traceparent     text NOT NULL DEFAULT '',
            tracestate      text NOT NULL DEFAULT '',
            UNIQUE (stream_id, stream_version)
        )
        """
    )
    op.execute("CREATE INDEX events_global_order ON events (transaction_id, position)")
    # The log is append-only: history is corrected by new events, never edited.
    op.execute(
        """
        CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the event log is append-only: % is not allowed', TG_OP
                USING ERRCODE = 'restrict_violation';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events "
        "FOR EACH ROW EXECUTE FUNCTION events_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events "
        "FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change()"
    )
    op.execute(
        """
        CREATE TABLE checkpoints (
            name            text PRIMARY KEY,
            transaction_id  xid8 NOT NULL,
            position        bigint NOT NULL,
            updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE consumer_inbox (
            consumer      text NOT NULL,
            event_id      uuid NOT NULL,
            processed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (consumer, event_id)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE consumer_inbox")
    op.execute("DROP TABLE checkpoints")
    op.execute("DROP TABLE events")
    op.execute("DROP FUNCTION events_refuse_change()")
