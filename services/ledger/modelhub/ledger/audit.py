"""Audit the ledger's invariants: `python -m modelhub.ledger.audit --database-url postgresql://...`

Checks, each listing the rows that break it:

- the postings of each currency sum to zero, each transfer has exactly one debit and one credit posting of
  its amount, in its accounts and currency;
- every balance equals the fold of its postings (posted) and of its open holds (pending), and every
  posting's balance_after equals the running sum of its account;
- no account below its floor;
- no idempotency key applied twice: one request per (principal, key), no transfer without its applied
  request, at most one capture per hold, captures match their resolutions.

Exits 0 when every check passes, 1 listing the offending rows otherwise (2 on a usage error).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.db import create_engine


@dataclass(frozen=True)
class Finding:
    check: str
    row: str

    def __str__(self) -> str:
        return f"{self.check}: {self.row}"


CHECKS: Sequence[tuple[str, str]] = (
    (
        "postings-sum-to-zero-per-currency",
        "SELECT currency, sum(amount) AS total FROM postings GROUP BY currency HAVING sum(amount) <> 0",
    ),
    (
        "transfer-has-balanced-postings",
        """
        SELECT t.id AS transfer_id, t.amount, count(p.seq) AS postings, coalesce(sum(p.amount), 0) AS total
        FROM transfers t LEFT JOIN postings p ON p.transfer_id = t.id
        GROUP BY t.id, t.amount
        HAVING count(p.seq) <> 2 OR coalesce(sum(p.amount), 0) <> 0
            OR count(*) FILTER (WHERE p.account_id = t.debit_account_id AND p.amount = -t.amount) <> 1
            OR count(*) FILTER (WHERE p.account_id = t.credit_account_id AND p.amount = t.amount) <> 1
        """,
    ),
    (
        "posting-currency-matches-account",
        """
        SELECT p.seq, p.currency, a.currency AS account_currency FROM postings p
        JOIN accounts a ON a.id = p.account_id JOIN transfers t ON t.id = p.transfer_id
        WHERE p.currency <> a.currency OR p.currency <> t.currency
        """,
    ),
    (
        "posted-balance-equals-fold-of-postings",
        """
        SELECT a.id AS account_id, a.owner_kind || ':' || a.owner || '/' || a.currency AS account,
               b.posted, coalesce(f.total, 0) AS fold
        FROM accounts a LEFT JOIN balances b ON b.account_id = a.id
        LEFT JOIN (SELECT account_id, sum(amount) AS total FROM postings GROUP BY account_id) f
            ON f.account_id = a.id
        WHERE b.account_id IS NULL OR b.posted <> coalesce(f.total, 0)
        """,
    ),
    (
        "pending-balance-equals-open-holds",
        """
        SELECT b.account_id, b.pending, coalesce(h.total, 0) AS open_holds
        FROM balances b
        LEFT JOIN (SELECT debit_account_id, sum(amount) AS total FROM holds
                   WHERE NOT EXISTS (SELECT 1 FROM hold_resolutions r WHERE r.hold_id = holds.id)
                   GROUP BY debit_account_id) h ON h.debit_account_id = b.account_id
        WHERE b.pending <> coalesce(h.total, 0)
        """,
    ),
    (
        "balance-after-equals-running-sum",
        """
        SELECT seq, account_id, balance_after, running FROM (
            SELECT seq, account_id, balance_after,
                   sum(amount) OVER (PARTITION BY account_id ORDER BY seq) AS running
            FROM postings) x
        WHERE balance_after <> running
        """,
    ),
    (
        "balance-not-below-floor",
        "SELECT account_id, posted, pending, floor FROM balances WHERE floor IS NOT NULL AND posted - pending < floor",
    ),
    (
        "key-applied-once",
        """
        SELECT principal_id, idempotency_key, count(DISTINCT request_id) AS requests
        FROM transfers GROUP BY principal_id, idempotency_key HAVING count(DISTINCT request_id) > 1
        """,
    ),
    (
        "transfer-belongs-to-applied-request",
        """
        SELECT t.id AS transfer_id, t.principal_id, t.idempotency_key FROM transfers t
        LEFT JOIN requests r ON r.request_id = t.request_id
        WHERE r.request_id IS NULL OR r.failure_kind IS NOT NULL
           OR r.principal_id <> t.principal_id OR r.idempotency_key <> t.idempotency_key
        """,
    ),
    (
        "hold-captured-once-as-resolved",
        """
        SELECT h.id AS hold_id, r.status, r.captured_amount, count(t.id) AS captures, sum(t.amount) AS posted
        FROM holds h LEFT JOIN hold_resolutions r ON r.hold_id = h.id LEFT JOIN transfers t ON t.hold_id = h.id
        GROUP BY h.id, r.status, r.captured_amount, h.amount
        HAVING count(t.id) > 1
            OR (r.status = 'captured' AND (count(t.id) <> 1 OR sum(t.amount) <> r.captured_amount
                                           OR r.captured_amount > h.amount))
            OR (coalesce(r.status, 'pending') <> 'captured' AND count(t.id) <> 0)
        """,
    ),
)


async def run_audit(engine: AsyncEngine) -> list[Finding]:
    """Every invariant violation found, in one repeatable-read snapshot."""
    findings: list[Finding] = []
    async with engine.connect() as conn:
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        for name, sql in CHECKS:
            result = await conn.execute(text(sql))
            for row in result.mappings():
                findings.append(Finding(name, ", ".join(f"{k}={v}" for k, v in row.items())))
    return findings


async def _main(database_url: str) -> int:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        findings = await run_audit(engine)
    finally:
        await engine.dispose()
    for finding in findings:
        print(finding)
    if findings:
        print(f"audit FAILED: {len(findings)} offending row(s)", file=sys.stderr)
        return 1
    print(f"audit passed: {len(CHECKS)} checks")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelhub.ledger.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="libpq URL of the ledger's database")
    args = parser.parse_args(argv)
    return asyncio.run(_main(args.database_url))


if __name__ == "__main__":
    sys.exit(main())
