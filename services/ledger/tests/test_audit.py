"""The audit command: passes on a healthy ledger, names the rows of a corrupted one."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.ledger.audit import run_audit
from modelhub.ledger.domain import commands
from modelhub.ledger.domain.commands import Actor
from modelhub.ledger.domain.model import Owner, SystemAccount, TransferType
from modelhub.ledger.handlers import Ledger

from .helpers import SERVICE, audit, fund, leg, transfer, user


async def populate(ledger: Ledger) -> None:
    await fund(ledger, "alice", 100)
    await ledger.transfer(Actor("alice"), transfer("t1", leg(user("alice"), user("bob"), 10)))
    hold = await ledger.place_hold(
        Actor("alice"),
        commands.place_hold_command(
            "h1",
            leg(user("alice"), Owner.system(SystemAccount.GENERATION_ESCROW), 20, TransferType.GENERATION),
            timedelta(minutes=5),
        ),
    )
    await ledger.place_hold(
        Actor("alice"),
        commands.place_hold_command(
            "h2",
            leg(user("alice"), Owner.system(SystemAccount.GENERATION_ESCROW), 5, TransferType.GENERATION),
            timedelta(minutes=5),
        ),
    )
    await ledger.capture_hold(SERVICE, commands.capture_hold_command("c1", hold.id, 15))


async def test_audit_passes_on_a_healthy_ledger(ledger: Ledger, migrated_url: str) -> None:
    await populate(ledger)
    result = audit(migrated_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audit passed" in result.stdout


async def test_audit_detects_a_corrupted_balance(ledger: Ledger, engine: AsyncEngine, migrated_url: str) -> None:
    await populate(ledger)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE balances SET posted = posted + 7 WHERE account_id = "
                "(SELECT id FROM accounts WHERE owner = 'bob')"
            )
        )
    result = audit(migrated_url)
    assert result.returncode == 1
    assert "posted-balance-equals-fold-of-postings" in result.stdout and "user:bob/yellow" in result.stdout
    assert "audit FAILED" in result.stderr


async def test_audit_detects_tampered_history(ledger: Ledger, engine: AsyncEngine) -> None:
    await populate(ledger)
    async with engine.begin() as conn:
        # On purpose: switch the append-only guard off and edit history as an attacker (or a bug) would.
        await conn.execute(text("ALTER TABLE postings DISABLE TRIGGER postings_append_only"))
        await conn.execute(text("UPDATE postings SET amount = amount + 1 WHERE seq = (SELECT max(seq) FROM postings)"))
        await conn.execute(text("ALTER TABLE postings ENABLE TRIGGER postings_append_only"))
        await conn.execute(text("UPDATE balances SET pending = pending + 3 WHERE floor = 0 AND pending > 0"))
    checks = {finding.check for finding in await run_audit(engine)}
    assert {
        "postings-sum-to-zero-per-currency",
        "transfer-has-balanced-postings",
        "posted-balance-equals-fold-of-postings",
        "balance-after-equals-running-sum",
        "pending-balance-equals-open-holds",
    } <= checks


async def test_audit_detects_a_key_applied_twice(ledger: Ledger, engine: AsyncEngine) -> None:
    await populate(ledger)
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE transfers DISABLE TRIGGER transfers_append_only"))
        await conn.execute(
            text("ALTER TABLE transfers DROP CONSTRAINT transfers_principal_id_idempotency_key_leg_index_key")
        )
        await conn.execute(
            text(
                "INSERT INTO transfers (id, request_id, principal_id, idempotency_key, leg_index, type, currency, "
                "debit_account_id, credit_account_id, amount, memo, metadata, created_at) "
                "SELECT gen_random_uuid(), gen_random_uuid(), principal_id, idempotency_key, leg_index, type, "
                "currency, debit_account_id, credit_account_id, amount, memo, metadata, created_at FROM transfers "
                "WHERE idempotency_key = 't1'"
            )
        )
    checks = {finding.check for finding in await run_audit(engine)}
    assert {"key-applied-once", "transfer-belongs-to-applied-request", "transfer-has-balanced-postings"} <= checks


def test_audit_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelhub.ledger.audit"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
