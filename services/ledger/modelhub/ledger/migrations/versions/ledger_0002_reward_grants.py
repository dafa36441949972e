"""Reward rules' daily caps: Buzz granted per (user, rule, UTC day).

Revision ID: ledger_0002
Revises: ledger_0001
Create Date: 2026-11-21
"""

from alembic import op

revision = "ledger_0002"
down_revision = "ledger_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written by the rewards consumer in the transaction that records the source event in its inbox. A
    # total may exceed the rule's cap when the cap was lowered or a grant was caught up after a crash
    # (see modelhub.ledger.entrypoints.consumers): the cap is a setting, not a table constraint.
    op.execute(
        """
        CREATE TABLE reward_grants (
            user_id     text NOT NULL CHECK (user_id <> ''),
            rule        text NOT NULL,
            day         date NOT NULL,
            total       bigint NOT NULL DEFAULT 0 CHECK (total >= 0),
            updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (user_id, rule, day)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE reward_grants")
