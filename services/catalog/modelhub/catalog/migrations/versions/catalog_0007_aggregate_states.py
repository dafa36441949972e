"""Aggregate states: the state of a long-lived community aggregate (a collection) at a version of its stream,
so that a change reads only the events after it (adapters/community_repository.py).

Derived data, never the truth: events are immutable, so a state saved at version v stays right forever; a state
of another `schema` (the aggregate's fields changed since) is ignored and the stream folded from its start. Rows
are written in the transaction that appends the events they include.

The catalog's revisions form one fixed chain: catalog_0001 (models) <- catalog_0002 (files) <- catalog_0003
(community) <- catalog_0004 (AutoV3) <- catalog_0005 (image blobs) <- catalog_0006 (download claims) <-
catalog_0007 (this).

Revision ID: catalog_0007
Revises: catalog_0006
Create Date: 2026-11-21
"""

from alembic import op

revision = "catalog_0007"
down_revision = "catalog_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE aggregate_states (
            stream_id text PRIMARY KEY,
            version bigint NOT NULL,
            schema integer NOT NULL,
            state jsonb NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS aggregate_states")
