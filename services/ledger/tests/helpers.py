"""Small builders shared by the ledger's tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.ledger.domain import commands
from modelhub.ledger.domain.commands import Actor, RawLeg
from modelhub.ledger.domain.model import Currency, Owner, SystemAccount, TransferType
from modelhub.ledger.handlers import Ledger

SERVICE = Actor("rewards-service", is_service=True)
MINT = Owner.system(SystemAccount.MINT)


def user(name: str) -> Owner:
    return Owner.user(name)


def leg(
    debit: Owner,
    credit: Owner,
    amount: int,
    type_: TransferType = TransferType.TIP,
    currency: Currency = Currency.YELLOW,
) -> RawLeg:
    return RawLeg(type_, currency, debit, credit, amount)


def transfer(
    key: str, *legs: RawLeg, memo: str = "", metadata: Mapping[str, str] | None = None
) -> commands.TransferCommand:
    return commands.transfer_command(key, list(legs), memo, metadata)


async def fund(ledger: Ledger, user_id: str, amount: int, currency: Currency = Currency.YELLOW, key: str = "") -> None:
    """Mint `amount` to a user (a purchase, by a service)."""
    await ledger.transfer(
        SERVICE,
        transfer(
            key or f"fund-{user_id}-{currency.value}-{amount}",
            leg(MINT, user(user_id), amount, TransferType.PURCHASE, currency),
        ),
    )


async def balance(ledger: Ledger, owner: Owner, currency: Currency = Currency.YELLOW) -> int:
    return (await ledger.balance(SERVICE, owner, currency)).posted


async def count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


def audit(url: str) -> subprocess.CompletedProcess[str]:
    """Run the audit command against a database, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "modelhub.ledger.audit", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
