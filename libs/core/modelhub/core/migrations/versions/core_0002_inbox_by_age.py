"""The consumer inbox by age, for pruning rows past a consumer's retention.

Revision ID: core_0002
Revises: core_0001
Create Date: 2026-11-21
"""

from alembic import op

revision = "core_0002"
down_revision = "core_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX consumer_inbox_by_age ON consumer_inbox (consumer, processed_at)")


def downgrade() -> None:
    op.execute("DROP INDEX consumer_inbox_by_age")
