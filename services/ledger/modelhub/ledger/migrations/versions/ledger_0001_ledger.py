"""Ledger tables: accounts, balances (projection), requests (idempotency), transfers, postings, holds.

Revision ID: ledger_0001
Revises:
Create Date: 2026-11-21
"""

from alembic import op

revision = "ledger_0001"
down_revision = None
branch_labels = ("ledger",)
depends_on = "core_0001"

_IMMUTABLE = ("requests", "transfers", "postings", "holds", "hold_resolutions")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE accounts (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            owner_kind  text NOT NULL CHECK (owner_kind IN ('user', 'system')),
            owner       text NOT NULL CHECK (owner <> ''),
            currency    text NOT NULL CHECK (currency IN ('yellow', 'blue')),
            floor       bigint,
            created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
            UNIQUE (owner_kind, owner, currency),
            CHECK (owner_kind = 'system' OR floor = 0)
        )
        """
    )
    # The balance projection, kept in the same transaction as the postings; `floor` is copied from the
    # account so that the database itself refuses a balance below it, whatever the code does.
    op.execute(
        """
        CREATE TABLE balances (
            account_id  bigint PRIMARY KEY REFERENCES accounts (id),
            posted      bigint NOT NULL DEFAULT 0,
            pending     bigint NOT NULL DEFAULT 0 CHECK (pending >= 0),
            floor       bigint,
            CHECK (floor IS NULL OR posted - pending >= floor)
        )
        """
    )
    # One row per applied or failed request: (principal, key) is the idempotency key's namespace.
    op.execute(
        """
        CREATE TABLE requests (
            principal_id     text NOT NULL,
            idempotency_key  text NOT NULL,
            request_id       uuid NOT NULL UNIQUE,
            operation        text NOT NULL,
            fingerprint      text NOT NULL,
            failure_kind     text,
            failure_reason   text,
            failure_message  text,
            failure_metadata jsonb,
            hold_id          uuid,
            created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (principal_id, idempotency_key)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE transfers (
            id                 uuid PRIMARY KEY,
            seq                bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            request_id         uuid NOT NULL,
            principal_id       text NOT NULL,
            idempotency_key    text NOT NULL,
            leg_index          integer NOT NULL CHECK (leg_index >= 0),
            type               text NOT NULL,
            currency           text NOT NULL,
            debit_account_id   bigint NOT NULL REFERENCES accounts (id),
            credit_account_id  bigint NOT NULL REFERENCES accounts (id),
            amount             bigint NOT NULL CHECK (amount > 0),
            memo               text NOT NULL DEFAULT '',
            metadata           jsonb NOT NULL DEFAULT '{}',
            hold_id            uuid,
            created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
            UNIQUE (principal_id, idempotency_key, leg_index),
            CHECK (debit_account_id <> credit_account_id)
        )
        """
    )
    op.execute("CREATE INDEX transfers_request ON transfers (request_id, leg_index)")
    op.execute("CREATE UNIQUE INDEX transfers_one_capture_per_hold ON transfers (hold_id) WHERE hold_id IS NOT NULL")
    op.execute(
        """
        CREATE TABLE postings (
            seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            transfer_id    uuid NOT NULL REFERENCES transfers (id),
            account_id     bigint NOT NULL REFERENCES accounts (id),
            currency       text NOT NULL,
            amount         bigint NOT NULL CHECK (amount <> 0),
            balance_after  bigint NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX postings_account ON postings (account_id, seq)")
    op.execute("CREATE INDEX postings_transfer ON postings (transfer_id)")
    op.execute(
        """
        CREATE TABLE holds (
            id                 uuid PRIMARY KEY,
            request_id         uuid NOT NULL UNIQUE,
            principal_id       text NOT NULL,
            idempotency_key    text NOT NULL,
            type               text NOT NULL,
            currency           text NOT NULL,
            debit_account_id   bigint NOT NULL REFERENCES accounts (id),
            credit_account_id  bigint NOT NULL REFERENCES accounts (id),
            amount             bigint NOT NULL CHECK (amount > 0),
            memo               text NOT NULL DEFAULT '',
            metadata           jsonb NOT NULL DEFAULT '{}',
            created_at         timestamptz NOT NULL,
            expires_at         timestamptz NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE hold_resolutions (
            hold_id          uuid PRIMARY KEY REFERENCES holds (id),
            status           text NOT NULL CHECK (status IN ('captured', 'voided', 'expired')),
            captured_amount  bigint NOT NULL DEFAULT 0 CHECK (captured_amount >= 0),
            transfer_id      uuid REFERENCES transfers (id),
            resolved_at      timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX holds_expiry ON holds (expires_at)")
    # History is append-only: corrections are new transfers. (Balances are a projection and do change.)
    op.execute(
        """
        CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the ledger is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'restrict_violation';
        END $$
        """
    )
    for table in _IMMUTABLE:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
        )


def downgrade() -> None:
    for table in ("hold_resolutions", "holds", "postings", "transfers", "requests", "balances", "accounts"):
        op.execute(f"DROP TABLE {table}")
    op.execute("DROP FUNCTION ledger_refuse_change()")
