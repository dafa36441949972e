"""PostgreSQL access for the ledger: every statement the handlers need, on the caller's connection.

Locking: balance rows are locked with one `SELECT ... ORDER BY account_id FOR UPDATE`, so concurrent
transactions always take them in the same order (no deadlocks); a hold row is locked before its balances.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import RowMapping, TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from uuid_utils.compat import uuid7

from modelhub.core.events.model import NewEvent
from modelhub.core.events.store import NO_STREAM, EventStore
from modelhub.ledger.adapters.events import to_payload
from modelhub.ledger.domain import events
from modelhub.ledger.domain.errors import LedgerFailure, failure_kind
from modelhub.ledger.domain.model import AccountKey, BalanceState, Currency, Leg, Owner, TransferType, floor_of
from modelhub.ledger.domain.results import PostingRecord, TransferRecord
from modelhub.ledger.domain.rules import HoldState, HoldStatus


class MissingAccounts(Exception):
    """Some accounts of a request do not exist yet: create them (outside the transaction), then retry."""

    def __init__(self, keys: Collection[AccountKey]) -> None:
        super().__init__(", ".join(str(k) for k in keys))
        self.keys = list(keys)


@dataclass(frozen=True)
class NewRequest:
    """A request to record under its idempotency key."""

    principal_id: str
    key: str
    request_id: uuid.UUID
    operation: str
    fingerprint: str
    now: datetime
    hold_id: str | None = None


@dataclass(frozen=True)
class StoredRequest:
    principal_id: str
    idempotency_key: str
    request_id: uuid.UUID
    operation: str
    fingerprint: str
    failure_kind: str | None
    failure_reason: str | None
    failure_message: str | None
    failure_metadata: Mapping[str, str]
    hold_id: str


@dataclass
class BatchWrite:
    """What one batch of posting requests writes: requests (applied or failed), transfers, postings, events,
    and the final state of every balance it changed."""

    requests: list[tuple[NewRequest, LedgerFailure | None]] = field(default_factory=list)
    balances: dict[int, BalanceState] = field(default_factory=dict)
    transfers: list[tuple[uuid.UUID, NewRequest, int, Leg, int, int, str, Mapping[str, str]]] = field(
        default_factory=list
    )
    """(transfer id, request, leg index, leg, debit account id, credit account id, memo, metadata)"""
    postings: list[tuple[uuid.UUID, int, str, int, int]] = field(default_factory=list)
    new_events: list[tuple[str, int, events.LedgerEvent, Mapping[str, str]]] = field(default_factory=list)
    """(stream id, stream version, event, trace carrier)"""

    def parameters(self, store: EventStore) -> dict[str, str]:
        """The five JSON documents of _POST_BATCH."""
        requests = [
            {
                "n": n,
                "principal_id": r.principal_id,
                "key": r.key,
                "request_id": str(r.request_id),
                "operation": r.operation,
                "fingerprint": r.fingerprint,
                "failure_kind": failure_kind(f) if f else None,
                "failure_reason": f.reason if f else None,
                "failure_message": f.message if f else None,
                "failure_metadata": dict(f.metadata) if f else None,
                "created_at": r.now.isoformat(),
            }
            for n, (r, f) in enumerate(self.requests)
        ]
        balances = [
            {"id": b.account_id, "posted": b.posted, "pending": b.pending}
            for b in sorted(self.balances.values(), key=lambda s: s.account_id)
        ]
        transfers = [
            {
                "n": n,
                "id": str(transfer_id),
                "request_id": str(request.request_id),
                "principal_id": request.principal_id,
                "key": request.key,
                "leg_index": index,
                "type": leg.type.value,
                "currency": leg.currency.value,
                "debit": debit,
                "credit": credit,
                "amount": leg.amount,
                "memo": memo,
                "metadata": metadata,
                "created_at": request.now.isoformat(),
            }
            for n, (transfer_id, request, index, leg, debit, credit, memo, metadata) in enumerate(self.transfers)
        ]
        postings = [
            {"n": n, "transfer_id": str(t), "account_id": a, "currency": c, "amount": amount, "balance_after": after}
            for n, (t, a, c, amount, after) in enumerate(self.postings)
        ]
        new_events = []
        for n, (stream_id, version, event, carrier) in enumerate(self.new_events):
            payload = to_payload(event)
            event_type, schema_version = store.registry.type_of(payload)
            new_events.append(
                {
                    "n": n,
                    "event_id": str(uuid7()),
                    "stream_id": stream_id,
                    "stream_version": version,
                    "event_type": event_type,
                    "schema_version": schema_version,
                    "payload": base64.b64encode(payload.SerializeToString(deterministic=True)).decode("ascii"),
                    "traceparent": carrier.get("traceparent", ""),
                    "tracestate": carrier.get("tracestate", ""),
                }
            )
        return {
            "requests": json.dumps(requests),
            "balances": json.dumps(balances),
            "transfers": json.dumps(transfers),
            "postings": json.dumps(postings),
            "events": json.dumps(new_events),
        }


_LOCK_BALANCES = text(
    """
    SELECT a.id, a.owner_kind, a.owner, a.currency, b.posted, b.pending, b.floor
    FROM accounts a JOIN balances b ON b.account_id = a.id
    WHERE (a.owner_kind, a.owner, a.currency) IN (
        SELECT * FROM unnest(CAST(:kinds AS text[]), CAST(:owners AS text[]), CAST(:currencies AS text[])))
    ORDER BY a.id
    FOR UPDATE OF b
    """
)

_CREATE_ACCOUNTS = text(
    """
    WITH wanted AS (
        SELECT * FROM unnest(CAST(:kinds AS text[]), CAST(:owners AS text[]), CAST(:currencies AS text[]),
                             CAST(:floors AS bigint[])) AS w(owner_kind, owner, currency, floor)
    ), created AS (
        INSERT INTO accounts (owner_kind, owner, currency, floor)
        SELECT owner_kind, owner, currency, floor FROM wanted ORDER BY owner_kind, owner, currency
        ON CONFLICT DO NOTHING
        RETURNING id, floor
    )
    INSERT INTO balances (account_id, floor) SELECT id, floor FROM created
    """
)

_WRITE_BALANCES = text(
    """
    UPDATE balances b SET posted = v.posted, pending = v.pending
    FROM unnest(CAST(:ids AS bigint[]), CAST(:posted AS bigint[]), CAST(:pending AS bigint[]))
        AS v(id, posted, pending)
    WHERE b.account_id = v.id
    """
)

_INSERT_REQUEST = text(
    """
    INSERT INTO requests (principal_id, idempotency_key, request_id, operation, fingerprint, failure_kind,
                          failure_reason, failure_message, failure_metadata, hold_id, created_at)
    VALUES (:principal_id, :key, :request_id, :operation, :fingerprint, :failure_kind, :failure_reason,
            :failure_message, CAST(:failure_metadata AS jsonb), CAST(:hold_id AS uuid), :now)
    ON CONFLICT DO NOTHING
    RETURNING 1
    """
)

_POST = text(
    """
    WITH req AS (
        INSERT INTO requests (principal_id, idempotency_key, request_id, operation, fingerprint, hold_id, created_at)
        VALUES (:principal_id, :key, :request_id, :operation, :fingerprint, CAST(:hold_id AS uuid), :now)
        ON CONFLICT DO NOTHING
        RETURNING request_id
    ), bal AS (
        UPDATE balances b SET posted = v.posted, pending = v.pending
        FROM unnest(CAST(:b_ids AS bigint[]), CAST(:b_posted AS bigint[]), CAST(:b_pending AS bigint[]))
            AS v(id, posted, pending)
        WHERE b.account_id = v.id AND EXISTS (SELECT 1 FROM req)
        RETURNING 1
    ), t AS (
        INSERT INTO transfers (id, request_id, principal_id, idempotency_key, leg_index, type, currency,
                               debit_account_id, credit_account_id, amount, memo, metadata, hold_id, created_at)
        SELECT v.id, :request_id, :principal_id, :key, v.leg_index, v.type, v.currency, v.debit, v.credit,
               v.amount, :memo, CAST(:metadata AS jsonb), CAST(:hold_id AS uuid), :now
        FROM unnest(CAST(:ids AS uuid[]), CAST(:leg_indexes AS integer[]), CAST(:types AS text[]),
                    CAST(:currencies AS text[]), CAST(:debits AS bigint[]), CAST(:credits AS bigint[]),
                    CAST(:amounts AS bigint[]))
            AS v(id, leg_index, type, currency, debit, credit, amount)
        WHERE EXISTS (SELECT 1 FROM req)
        ORDER BY v.leg_index
        RETURNING id
    ), p AS (
        INSERT INTO postings (transfer_id, account_id, currency, amount, balance_after)
        SELECT p.transfer_id, p.account_id, p.currency, p.amount, p.balance_after
        FROM unnest(CAST(:p_transfers AS uuid[]), CAST(:p_accounts AS bigint[]), CAST(:p_currencies AS text[]),
                    CAST(:p_amounts AS bigint[]), CAST(:p_after AS bigint[]))
            WITH ORDINALITY AS p(transfer_id, account_id, currency, amount, balance_after, n)
        WHERE EXISTS (SELECT 1 FROM t WHERE t.id = p.transfer_id)
        ORDER BY p.n
        RETURNING 1
    )
    SELECT count(*) FROM req
    """
)
"""One round trip for the whole write of a posting request: record the key (the INSERT waits on the unique
index while a concurrent duplicate is in flight), and only if it was free, write the balances, the transfers
and their postings."""

_POST_BATCH = """
WITH req AS (
    INSERT INTO requests (principal_id, idempotency_key, request_id, operation, fingerprint, failure_kind,
                          failure_reason, failure_message, failure_metadata, created_at)
    SELECT r.principal_id, r.key, r.request_id, r.operation, r.fingerprint, r.failure_kind, r.failure_reason,
           r.failure_message, r.failure_metadata, r.created_at
    FROM json_to_recordset(%(requests)s::json) AS r(
        n integer, principal_id text, key text, request_id uuid, operation text, fingerprint text,
        failure_kind text, failure_reason text, failure_message text, failure_metadata jsonb, created_at timestamptz)
    ORDER BY r.n
    RETURNING 1
), bal AS (
    UPDATE balances b SET posted = v.posted, pending = v.pending
    FROM json_to_recordset(%(balances)s::json) AS v(id bigint, posted bigint, pending bigint)
    WHERE b.account_id = v.id
    RETURNING 1
), t AS (
    INSERT INTO transfers (id, request_id, principal_id, idempotency_key, leg_index, type, currency,
                           debit_account_id, credit_account_id, amount, memo, metadata, created_at)
    SELECT v.id, v.request_id, v.principal_id, v.key, v.leg_index, v.type, v.currency, v.debit, v.credit,
           v.amount, v.memo, v.metadata, v.created_at
    FROM json_to_recordset(%(transfers)s::json) AS v(
        n integer, id uuid, request_id uuid, principal_id text, key text, leg_index integer, type text,
        currency text, debit bigint, credit bigint, amount bigint, memo text, metadata jsonb, created_at timestamptz)
    ORDER BY v.n
    RETURNING id
), p AS (
    INSERT INTO postings (transfer_id, account_id, currency, amount, balance_after)
    SELECT p.transfer_id, p.account_id, p.currency, p.amount, p.balance_after
    FROM json_to_recordset(%(postings)s::json) AS p(
        n integer, transfer_id uuid, account_id bigint, currency text, amount bigint, balance_after bigint)
    WHERE EXISTS (SELECT 1 FROM t WHERE t.id = p.transfer_id)
    ORDER BY p.n
    RETURNING 1
), e AS (
    INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, payload,
                        correlation_id, causation_id, traceparent, tracestate)
    SELECT e.event_id, e.stream_id, e.stream_version, e.event_type, e.schema_version,
           decode(e.payload, 'base64'), e.event_id::text, '', e.traceparent, e.tracestate
    FROM json_to_recordset(%(events)s::json) AS e(
        n integer, event_id uuid, stream_id text, stream_version bigint, event_type text, schema_version integer,
        payload text, traceparent text, tracestate text)
    ORDER BY e.n
    RETURNING 1
)
SELECT 1
"""
"""One statement for the whole write of a batch of posting requests (the in-process batcher's), on the
psycopg connection: record every key (applied and failed requests alike), write the final balances, insert
the transfers, their postings and their events, in queue order. The rows travel as five JSON documents
(json.dumps is C, and PostgreSQL parses them fast), not as dozens of arrays that the driver would adapt
element by element. A key taken meanwhile (a concurrent duplicate committed first; the INSERT waits for it
on the primary key) fails the statement with a unique violation on REQUESTS_KEY, so nothing of the batch
is written and the COMMIT sent behind it in the same round trip does not happen."""

REQUESTS_KEY = "requests_pkey"
"""The constraint a taken idempotency key violates."""

_EXISTING_REQUESTS = text(
    """
    SELECT r.principal_id, r.idempotency_key FROM requests r
    JOIN unnest(CAST(:principals AS text[]), CAST(:keys AS text[])) AS w(principal_id, key)
        ON r.principal_id = w.principal_id AND r.idempotency_key = w.key
    """
)

_TRANSFER_COLUMNS = """
    t.id, t.seq, t.principal_id, t.idempotency_key, t.leg_index, t.type, t.currency, t.amount, t.memo,
    t.metadata, t.hold_id, t.created_at,
    da.owner_kind AS debit_kind, da.owner AS debit_owner, ca.owner_kind AS credit_kind, ca.owner AS credit_owner
"""

_TRANSFER_JOINS = """
    JOIN accounts da ON da.id = t.debit_account_id
    JOIN accounts ca ON ca.id = t.credit_account_id
"""

_HOLD_COLUMNS = """
    h.id, h.principal_id, h.idempotency_key, h.type, h.currency, h.amount, h.memo, h.metadata, h.created_at,
    h.expires_at, da.owner_kind AS debit_kind, da.owner AS debit_owner, ca.owner_kind AS credit_kind,
    ca.owner AS credit_owner
"""


def _owner(kind: str, name: str) -> Owner:
    return Owner.parse(f"{kind}:{name}")


def _leg(row: RowMapping) -> Leg:
    """The leg stored in a transfer or hold row."""
    return Leg(
        TransferType(row["type"]),
        Currency(row["currency"]),
        _owner(row["debit_kind"], row["debit_owner"]),
        _owner(row["credit_kind"], row["credit_owner"]),
        int(row["amount"]),
    )


def _transfer(row: RowMapping) -> TransferRecord:
    leg = _leg(row)
    return TransferRecord(
        id=str(row["id"]),
        idempotency_key=row["idempotency_key"],
        principal_id=row["principal_id"],
        leg_index=row["leg_index"],
        leg=leg,
        memo=row["memo"],
        metadata=dict(row["metadata"]),
        hold_id=str(row["hold_id"]) if row["hold_id"] else "",
        created_at=row["created_at"],
    )


def _key_arrays(keys: Iterable[AccountKey]) -> dict[str, list[Any]]:
    ordered = sorted(set(keys))
    return {
        "kinds": [k.owner.kind.value for k in ordered],
        "owners": [k.owner.name for k in ordered],
        "currencies": [k.currency.value for k in ordered],
    }


async def create_accounts(engine: AsyncEngine, keys: Collection[AccountKey]) -> None:
    """Create the accounts that do not exist yet, in their own short transaction."""
    params: dict[str, Any] = _key_arrays(keys)
    params["floors"] = [floor_of(k.owner) for k in sorted(set(keys))]
    async with engine.begin() as conn:
        await conn.execute(_CREATE_ACCOUNTS, params)


def _psycopg(statement: TextClause) -> str:
    """A text() statement's SQL with psycopg's placeholders (`:name` -> `%(name)s`)."""
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", statement.text)


_LOCK_BALANCES_PG = _psycopg(_LOCK_BALANCES)
_EXISTING_REQUESTS_PG = _psycopg(_EXISTING_REQUESTS)


class BatchRepository:
    """The three statements of a batch (lock, taken keys, write), straight on the psycopg connection: a batch
    runs them once per transaction however many requests it carries, so SQLAlchemy's per-statement work
    is saved, and the lock and the key lookup go to the server in one round trip (pipeline mode)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], store: EventStore) -> None:
        self.conn = conn
        self.store = store

    async def lock_and_find_taken(
        self, keys: Collection[AccountKey], requests: Collection[tuple[str, str]]
    ) -> tuple[dict[AccountKey, BalanceState], set[tuple[str, str]]]:
        """Lock the balances of `keys` in account-id order (MissingAccounts if any does not exist) and say
        which (principal, key) pairs are recorded already."""
        pairs = list(requests)
        async with self.conn.pipeline():
            locked = await self.conn.execute(_LOCK_BALANCES_PG, _key_arrays(keys))
            found = await self.conn.execute(
                _EXISTING_REQUESTS_PG, {"principals": [p for p, _ in pairs], "keys": [k for _, k in pairs]}
            )
            rows = await locked.fetchall()
            taken = {(row[0], row[1]) for row in await found.fetchall()}
        states = {}
        for account_id, kind, owner, currency, posted, pending, floor in rows:
            key = AccountKey(_owner(kind, owner), Currency(currency))
            states[key] = BalanceState(account_id, key, posted, pending, floor)
        missing = set(keys) - states.keys()
        if missing:
            raise MissingAccounts(missing)
        return states, taken

    async def post_batch(self, batch: BatchWrite) -> None:
        """Write a whole batch in one statement (see _POST_BATCH). In pipeline mode the statement is only
        queued: its error, if any (a taken key: a unique violation on REQUESTS_KEY), arrives with the
        pipeline's next sync, and the transaction must then be rolled back."""
        if batch.requests:
            await self.conn.execute(_POST_BATCH, batch.parameters(self.store))


class LedgerRepository:
    """The ledger's tables, read and written on one connection (the caller owns the transaction)."""

    def __init__(self, conn: AsyncConnection, store: EventStore) -> None:
        self.conn = conn
        self.store = store

    # -- balances ---------------------------------------------------------------------------------------

    async def lock_balances(self, keys: Collection[AccountKey]) -> dict[AccountKey, BalanceState]:
        """Lock the balances of `keys` in account-id order; MissingAccounts if any does not exist."""
        result = await self.conn.execute(_LOCK_BALANCES, _key_arrays(keys))
        states = {}
        for row in result.mappings():
            key = AccountKey(_owner(row["owner_kind"], row["owner"]), Currency(row["currency"]))
            states[key] = BalanceState(row["id"], key, row["posted"], row["pending"], row["floor"])
        missing = set(keys) - states.keys()
        if missing:
            raise MissingAccounts(missing)
        return states

    async def write_balances(self, states: Iterable[BalanceState]) -> None:
        rows = sorted(states, key=lambda s: s.account_id)
        if not rows:
            return
        await self.conn.execute(
            _WRITE_BALANCES,
            {
                "ids": [s.account_id for s in rows],
                "posted": [s.posted for s in rows],
                "pending": [s.pending for s in rows],
            },
        )

    async def balance(self, key: AccountKey) -> BalanceState | None:
        result = await self.conn.execute(
            text(
                "SELECT a.id, b.posted, b.pending, b.floor FROM accounts a JOIN balances b ON b.account_id = a.id "
                "WHERE a.owner_kind = :kind AND a.owner = :owner AND a.currency = :currency"
            ),
            {"kind": key.owner.kind.value, "owner": key.owner.name, "currency": key.currency.value},
        )
        row = result.mappings().first()
        if row is None:
            return None
        return BalanceState(row["id"], key, row["posted"], row["pending"], row["floor"])

    # -- requests (idempotency) -------------------------------------------------------------------------

    async def insert_request(self, request: NewRequest, failure: LedgerFailure | None = None) -> bool:
        """Record the request (or its failure) under its key; False when the key is taken (after the holder
        committed)."""
        result = await self.conn.execute(
            _INSERT_REQUEST,
            {
                "principal_id": request.principal_id,
                "key": request.key,
                "request_id": request.request_id,
                "operation": request.operation,
                "fingerprint": request.fingerprint,
                "failure_kind": failure_kind(failure) if failure else None,
                "failure_reason": failure.reason if failure else None,
                "failure_message": failure.message if failure else None,
                "failure_metadata": json.dumps(failure.metadata) if failure else None,
                "hold_id": request.hold_id,
                "now": request.now,
            },
        )
        return result.first() is not None

    async def load_request(self, principal_id: str, key: str) -> StoredRequest | None:
        result = await self.conn.execute(
            text("SELECT * FROM requests WHERE principal_id = :p AND idempotency_key = :k"),
            {"p": principal_id, "k": key},
        )
        row = result.mappings().first()
        if row is None:
            return None
        return StoredRequest(
            principal_id=row["principal_id"],
            idempotency_key=row["idempotency_key"],
            request_id=row["request_id"],
            operation=row["operation"],
            fingerprint=row["fingerprint"],
            failure_kind=row["failure_kind"],
            failure_reason=row["failure_reason"],
            failure_message=row["failure_message"],
            failure_metadata=dict(row["failure_metadata"] or {}),
            hold_id=str(row["hold_id"]) if row["hold_id"] else "",
        )

    # -- transfers --------------------------------------------------------------------------------------

    async def post(
        self,
        *,
        request: NewRequest,
        legs: Sequence[tuple[uuid.UUID, int, Leg, int, int]],
        balances: Mapping[AccountKey, BalanceState],
        changed: Iterable[AccountKey],
        memo: str,
        metadata: Mapping[str, str],
    ) -> list[TransferRecord] | None:
        """Record `request` and apply it: write the `changed` balances, insert the transfers (id, leg index,
        leg, debit balance after, credit balance after) and their postings. None, with nothing written, when
        the key is taken already."""
        p_transfers: list[uuid.UUID] = []
        p_accounts: list[int] = []
        p_currencies: list[str] = []
        p_amounts: list[int] = []
        p_after: list[int] = []
        for transfer_id, _, leg, debit_after, credit_after in legs:
            for account, amount, after in (
                (balances[leg.debit_key].account_id, -leg.amount, debit_after),
                (balances[leg.credit_key].account_id, leg.amount, credit_after),
            ):
                p_transfers.append(transfer_id)
                p_accounts.append(account)
                p_currencies.append(leg.currency.value)
                p_amounts.append(amount)
                p_after.append(after)
        written = sorted((balances[k] for k in set(changed)), key=lambda s: s.account_id)
        result = await self.conn.execute(
            _POST,
            {
                "request_id": request.request_id,
                "principal_id": request.principal_id,
                "key": request.key,
                "operation": request.operation,
                "fingerprint": request.fingerprint,
                "hold_id": request.hold_id,
                "now": request.now,
                "b_ids": [b.account_id for b in written],
                "b_posted": [b.posted for b in written],
                "b_pending": [b.pending for b in written],
                "memo": memo,
                "metadata": json.dumps(dict(metadata), sort_keys=True),
                "ids": [t[0] for t in legs],
                "leg_indexes": [t[1] for t in legs],
                "types": [t[2].type.value for t in legs],
                "currencies": [t[2].currency.value for t in legs],
                "debits": [balances[t[2].debit_key].account_id for t in legs],
                "credits": [balances[t[2].credit_key].account_id for t in legs],
                "amounts": [t[2].amount for t in legs],
                "p_transfers": p_transfers,
                "p_accounts": p_accounts,
                "p_currencies": p_currencies,
                "p_amounts": p_amounts,
                "p_after": p_after,
            },
        )
        if not result.scalar_one():
            return None
        return [
            TransferRecord(
                id=str(transfer_id),
                idempotency_key=request.key,
                principal_id=request.principal_id,
                leg_index=index,
                leg=leg,
                memo=memo,
                metadata=dict(metadata),
                hold_id=request.hold_id or "",
                created_at=request.now,
            )
            for transfer_id, index, leg, _, _ in legs
        ]

    async def transfers_of_request(self, request_id: uuid.UUID) -> list[TransferRecord]:
        result = await self.conn.execute(
            text(
                f"SELECT {_TRANSFER_COLUMNS} FROM transfers t {_TRANSFER_JOINS} "
                "WHERE t.request_id = :r ORDER BY t.leg_index"
            ),
            {"r": request_id},
        )
        return [_transfer(row) for row in result.mappings()]

    async def transfer_by_id(self, transfer_id: str) -> TransferRecord | None:
        result = await self.conn.execute(
            text(f"SELECT {_TRANSFER_COLUMNS} FROM transfers t {_TRANSFER_JOINS} WHERE t.id = :id"),
            {"id": uuid.UUID(transfer_id)},
        )
        row = result.mappings().first()
        return _transfer(row) if row else None

    async def postings(self, key: AccountKey, before_seq: int | None, limit: int) -> list[PostingRecord]:
        """The account's postings, newest first, older than `before_seq` when given."""
        result = await self.conn.execute(
            text(
                f"""
                SELECT p.seq AS posting_seq, p.amount AS posting_amount, p.balance_after, {_TRANSFER_COLUMNS}
                FROM accounts a
                JOIN postings p ON p.account_id = a.id
                JOIN transfers t ON t.id = p.transfer_id
                {_TRANSFER_JOINS}
                WHERE a.owner_kind = :kind AND a.owner = :owner AND a.currency = :currency
                  AND (CAST(:before AS bigint) IS NULL OR p.seq < :before)
                ORDER BY p.seq DESC
                LIMIT :limit
                """
            ),
            {
                "kind": key.owner.kind.value,
                "owner": key.owner.name,
                "currency": key.currency.value,
                "before": before_seq,
                "limit": limit,
            },
        )
        return [
            PostingRecord(row["posting_seq"], row["posting_amount"], row["balance_after"], _transfer(row))
            for row in result.mappings()
        ]

    # -- holds ------------------------------------------------------------------------------------------

    async def insert_hold(
        self,
        *,
        hold: HoldState,
        request_id: uuid.UUID,
        balances: Mapping[AccountKey, BalanceState],
    ) -> None:
        await self.conn.execute(
            text(
                """
                INSERT INTO holds (id, request_id, principal_id, idempotency_key, type, currency, debit_account_id,
                                   credit_account_id, amount, memo, metadata, created_at, expires_at)
                VALUES (:id, :request_id, :principal_id, :key, :type, :currency, :debit, :credit, :amount, :memo,
                        CAST(:metadata AS jsonb), :created_at, :expires_at)
                """
            ),
            {
                "id": uuid.UUID(hold.id),
                "request_id": request_id,
                "principal_id": hold.principal_id,
                "key": hold.key,
                "type": hold.leg.type.value,
                "currency": hold.leg.currency.value,
                "debit": balances[hold.leg.debit_key].account_id,
                "credit": balances[hold.leg.credit_key].account_id,
                "amount": hold.leg.amount,
                "memo": hold.memo,
                "metadata": json.dumps(dict(hold.metadata), sort_keys=True),
                "created_at": hold.created_at,
                "expires_at": hold.expires_at,
            },
        )

    async def get_hold(self, hold_id: str, *, lock: bool = False) -> HoldState | None:
        """The hold and its resolution. With `lock`, the hold row is locked first, and the resolution is
        read afterwards in a statement of its own, so that it sees what a competing resolver committed."""
        result = await self.conn.execute(
            text(
                f"SELECT {_HOLD_COLUMNS} FROM holds h "
                "JOIN accounts da ON da.id = h.debit_account_id JOIN accounts ca ON ca.id = h.credit_account_id "
                "WHERE h.id = :id" + (" FOR UPDATE OF h" if lock else "")
            ),
            {"id": uuid.UUID(hold_id)},
        )
        row = result.mappings().first()
        if row is None:
            return None
        leg = _leg(row)
        hold = HoldState(
            id=str(row["id"]),
            key=row["idempotency_key"],
            principal_id=row["principal_id"],
            leg=leg,
            memo=row["memo"],
            metadata=dict(row["metadata"]),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
        )
        resolution = await self.conn.execute(
            text("SELECT status, captured_amount, transfer_id, resolved_at FROM hold_resolutions WHERE hold_id = :id"),
            {"id": uuid.UUID(hold_id)},
        )
        res = resolution.mappings().first()
        if res is None:
            return hold
        return HoldState(
            **{
                **hold.__dict__,
                "status": HoldStatus(res["status"]),
                "captured_amount": res["captured_amount"],
                "capture_transfer_id": str(res["transfer_id"]) if res["transfer_id"] else "",
                "resolved_at": res["resolved_at"],
            }
        )

    async def insert_resolution(self, hold: HoldState) -> None:
        await self.conn.execute(
            text(
                "INSERT INTO hold_resolutions (hold_id, status, captured_amount, transfer_id, resolved_at) "
                "VALUES (:id, :status, :captured, :transfer, :at)"
            ),
            {
                "id": uuid.UUID(hold.id),
                "status": hold.status.value,
                "captured": hold.captured_amount,
                "transfer": uuid.UUID(hold.capture_transfer_id) if hold.capture_transfer_id else None,
                "at": hold.resolved_at,
            },
        )

    async def due_holds(self, now: datetime, limit: int) -> list[str]:
        result = await self.conn.execute(
            text(
                "SELECT h.id FROM holds h WHERE h.expires_at <= :now "
                "AND NOT EXISTS (SELECT 1 FROM hold_resolutions r WHERE r.hold_id = h.id) "
                "ORDER BY h.expires_at LIMIT :limit"
            ),
            {"now": now, "limit": limit},
        )
        return [str(row[0]) for row in result]

    # -- events -----------------------------------------------------------------------------------------

    async def append(
        self, stream_id: str, new: Sequence[events.LedgerEvent], *, expected_version: int = NO_STREAM
    ) -> None:
        await self.store.append(
            self.conn, stream_id, [NewEvent(to_payload(e)) for e in new], expected_version=expected_version
        )
