"""Use cases of the ledger: one database transaction per command, or, for posting requests, per batch of
concurrent commands (see `_write_batch` and docs/ledger.md, Performance), with the same guarantees.

The shape of every mutating command:

1. validate and authorize (pure: nothing is written when either fails, and the key stays unused);
2. in one transaction: lock the involved balance rows in account-id order (a hold row first, if any),
   decide the outcome with the domain rules, record the request under its idempotency key, write the
   postings, the balances and the events, commit;
3. if the key is taken (a retry, or a concurrent duplicate that committed first: the INSERT waits on the
   unique index until the other transaction ends), roll back and answer the stored outcome instead, or
   IDEMPOTENCY_KEY_REUSED if the stored request had other content.

State-dependent failures (insufficient funds, a resolved or expired hold) are recorded under the key too:
a failed key stays failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Hashable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import psycopg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from uuid_utils.compat import uuid7

from modelhub.core.errors import DomainError, NotFound
from modelhub.core.events.store import EventStore
from modelhub.core.telemetry.propagation import inject_headers
from modelhub.ledger.adapters.repository import (
    REQUESTS_KEY,
    BatchRepository,
    BatchWrite,
    LedgerRepository,
    MissingAccounts,
    NewRequest,
    StoredRequest,
    create_accounts,
)
from modelhub.ledger.batching import Batcher
from modelhub.ledger.domain import events
from modelhub.ledger.domain.commands import (
    Actor,
    CaptureHoldCommand,
    Command,
    PayForGenerationCommand,
    PlaceHoldCommand,
    TransferCommand,
    VoidHoldCommand,
)
from modelhub.ledger.domain.errors import (
    HoldExpired,
    HoldNotFound,
    IdempotencyKeyReused,
    LedgerFailure,
    restore_failure,
)
from modelhub.ledger.domain.model import AccountKey, BalanceState, Currency, Owner
from modelhub.ledger.domain.results import (
    BalanceView,
    CaptureResult,
    Outcome,
    PostingRecord,
    TransferRecord,
    VoidResult,
)
from modelhub.ledger.domain.rules import (
    HoldState,
    HoldStatus,
    Plan,
    authorize_debit_of,
    authorize_legs,
    authorize_read,
    authorize_service,
    capture_amount,
    check_pending,
    generation_legs,
    plan_transfer,
    split_generation,
)

T = TypeVar("T")
log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class _KeyTaken(Exception):
    """The idempotency key is recorded already: roll back and answer the stored outcome."""


class _Failed(Exception):
    """Commit what was written (the failed request), then raise `failure`."""

    def __init__(self, failure: LedgerFailure) -> None:
        self.failure = failure


class _Alone:
    """A batch could not be written as a whole: the request runs in a transaction of its own instead."""


class _Replay:
    """The request's key was recorded before its batch: answer the stored outcome."""


_ALONE = _Alone()
_REPLAY = _Replay()


@dataclass(eq=False)
class _Job:
    """One posting request waiting for its batch."""

    actor: Actor
    command: TransferCommand | PayForGenerationCommand
    keys: frozenset[AccountKey]
    planner: Callable[[Mapping[AccountKey, BalanceState]], Plan]
    """Decides the request's legs on its locked balances (raises LedgerFailure)."""
    future: asyncio.Future[object]
    request: NewRequest
    """Prepared by the caller (fingerprint included), outside the batch's transaction."""
    carrier: dict[str, str] = field(default_factory=dict)
    """The caller's trace context, for the events."""

    @property
    def dedup_key(self) -> Hashable:
        return (self.actor.id, self.command.key)


class _HeldConnection:
    """The database connection one batcher slot writes its batches through: checked out of the pool at the
    first batch and kept while batches keep coming, so that consecutive batches cost no checkout, no
    liveness ping and no reset; given back when the slot's queue runs dry, dropped after a failure."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self._raw: psycopg.AsyncConnection[Any] | None = None

    async def get(self) -> psycopg.AsyncConnection[Any]:
        if self._raw is None:
            conn = await self._engine.connect()
            try:
                raw = (await conn.get_raw_connection()).driver_connection
            except BaseException:
                await conn.close()
                raise
            assert raw is not None
            self._conn, self._raw = conn, raw
        return self._raw

    async def discard(self) -> None:
        """Close it for good (after a failure it may be broken, or still in a transaction)."""
        conn, self._conn, self._raw = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()

    async def release(self) -> None:
        """Give it back to the pool."""
        conn, self._conn, self._raw = self._conn, None, None
        if conn is not None:
            await conn.close()


class Ledger:
    """The ledger's use cases over one database (engine) and its event store.

    Posting requests (transfer, pay_for_generation, the items of batch) go through an in-process batcher
    by default: concurrent requests share one transaction (see _write_batch); `batching=False` gives each
    its own.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        store: EventStore,
        *,
        clock: Clock = utcnow,
        batching: bool = True,
        max_batch: int = 1000,
        max_batches_in_flight: int = 1,
    ) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self._batcher: Batcher[_Job, _HeldConnection] | None = (
            Batcher(self._flush, self._held_connection, max_items=max_batch, max_in_flight=max_batches_in_flight)
            if batching
            else None
        )

    # -- plumbing ---------------------------------------------------------------------------------------

    async def _run(
        self,
        actor: Actor,
        command: Command,
        keys: Collection[AccountKey],
        body: Callable[[LedgerRepository, dict[AccountKey, BalanceState]], Awaitable[T]],
        replay: Callable[[LedgerRepository, StoredRequest], Awaitable[T]],
    ) -> T:
        """Run `body` in a transaction with `keys` locked; handle creation of accounts and taken keys."""
        for _ in range(3):
            try:
                async with self.engine.begin() as conn:
                    repo = LedgerRepository(conn, self.store)
                    balances = await repo.lock_balances(keys) if keys else {}
                    try:
                        return await body(repo, balances)
                    except _Failed as failed:
                        result_failure = failed.failure
                # committed the failed request
                raise result_failure
            except MissingAccounts as missing:
                await create_accounts(self.engine, missing.keys)
            except _KeyTaken:
                return await self._replay(actor, command, replay)
        raise RuntimeError("accounts kept disappearing while the request ran")  # pragma: no cover

    async def _replay(
        self,
        actor: Actor,
        command: Command,
        replay: Callable[[LedgerRepository, StoredRequest], Awaitable[T]],
    ) -> T:
        async with self.engine.connect() as conn:
            repo = LedgerRepository(conn, self.store)
            stored = await repo.load_request(actor.id, command.key)
            if stored is None:  # pragma: no cover - the row committed before we were told it exists
                raise RuntimeError(f"request {command.key!r} vanished")
            if stored.operation != command.operation or stored.fingerprint != command.fingerprint():
                raise IdempotencyKeyReused(command.key)
            if stored.failure_kind is not None:
                raise _restore(stored)
            return await replay(repo, stored)

    def _request(self, actor: Actor, command: Command, request_id: uuid.UUID, hold_id: str | None = None) -> NewRequest:
        return NewRequest(
            principal_id=actor.id,
            key=command.key,
            request_id=request_id,
            operation=command.operation,
            fingerprint=command.fingerprint(),
            now=self.clock(),
            hold_id=hold_id,
        )

    async def _record(
        self,
        repo: LedgerRepository,
        actor: Actor,
        command: Command,
        request_id: uuid.UUID,
        *,
        failure: LedgerFailure | None = None,
        hold_id: str | None = None,
    ) -> None:
        """Record the request (or its failure) under its key; on a taken key, roll back and replay."""
        if not await repo.insert_request(self._request(actor, command, request_id, hold_id), failure):
            raise _KeyTaken
        if failure is not None:
            raise _Failed(failure)

    async def _fail(
        self, repo: LedgerRepository, actor: Actor, command: Command, request_id: uuid.UUID, failure: LedgerFailure
    ) -> NoReturn:
        """Record `failure` under the command's key, commit, and raise it (or replay a taken key)."""
        await self._record(repo, actor, command, request_id, failure=failure)
        raise AssertionError("_record raises when given a failure")  # pragma: no cover

    async def _post(
        self,
        repo: LedgerRepository,
        actor: Actor,
        command: TransferCommand | PayForGenerationCommand,
        request_id: uuid.UUID,
        plan: Plan,
    ) -> list[TransferRecord]:
        """Record the request and post the plan (one statement), then append its events."""
        legs = [(uuid7(), i, p.leg, p.debit_after, p.credit_after) for i, p in enumerate(plan.posted)]
        records = await repo.post(
            request=self._request(actor, command, request_id),
            legs=legs,
            balances=plan.balances,
            changed=plan.changed,
            memo=command.memo,
            metadata=command.metadata,
        )
        if records is None:
            raise _KeyTaken
        await repo.append(
            f"ledger-request-{request_id}",
            [
                events.TransferPosted(
                    transfer_id=str(transfer_id),
                    idempotency_key=command.key,
                    principal_id=actor.id,
                    leg_index=index,
                    leg_count=len(legs),
                    leg=leg,
                    memo=command.memo,
                    metadata=command.metadata,
                    debit_balance_after=debit_after,
                    credit_balance_after=credit_after,
                )
                for transfer_id, index, leg, debit_after, credit_after in legs
            ],
        )
        return records

    @staticmethod
    async def _replay_transfers(repo: LedgerRepository, stored: StoredRequest) -> list[TransferRecord]:
        return await repo.transfers_of_request(stored.request_id)

    # -- transfers --------------------------------------------------------------------------------------

    async def transfer(self, actor: Actor, command: TransferCommand) -> list[TransferRecord]:
        """Post linked legs, all or nothing."""
        keys, planner = self._transfer_plan(actor, command)
        return await self._posting(actor, command, keys, planner)

    @staticmethod
    def _transfer_plan(
        actor: Actor, command: TransferCommand
    ) -> tuple[frozenset[AccountKey], Callable[[Mapping[AccountKey, BalanceState]], Plan]]:
        authorize_legs(actor, command.legs)
        keys = frozenset(k for leg in command.legs for k in (leg.debit_key, leg.credit_key))

        def planner(balances: Mapping[AccountKey, BalanceState]) -> Plan:
            return plan_transfer(command.legs, balances)

        return keys, planner

    async def pay_for_generation(self, actor: Actor, command: PayForGenerationCommand) -> list[TransferRecord]:
        """Charge a generation: blue Buzz first, then yellow, in one transaction."""
        authorize_debit_of(actor, command.user_id)
        user = Owner.user(command.user_id)
        escrow_legs = generation_legs(command.user_id, 1, 1)
        keys = frozenset(k for leg in escrow_legs for k in (leg.debit_key, leg.credit_key))

        def planner(balances: Mapping[AccountKey, BalanceState]) -> Plan:
            from_blue, from_yellow = split_generation(
                command.user_id,
                command.amount,
                balances[AccountKey(user, Currency.BLUE)],
                balances[AccountKey(user, Currency.YELLOW)],
            )
            return plan_transfer(generation_legs(command.user_id, from_blue, from_yellow), balances)

        return await self._posting(actor, command, keys, planner)

    async def batch(
        self, actor: Actor, commands: Sequence[TransferCommand | DomainError]
    ) -> list[list[TransferRecord] | DomainError]:
        """Each command on its own: one's failure does not affect the others. Invalid items come in as
        their error. The items are queued in order, so the batcher applies them in order (most often in
        one transaction), each with its own outcome."""
        if self._batcher is None:
            results: list[list[TransferRecord] | DomainError] = []
            for command in commands:
                if isinstance(command, DomainError):
                    results.append(command)
                    continue
                try:
                    results.append(await self.transfer(actor, command))
                except DomainError as error:
                    results.append(error)
            return results
        slots: list[_Job | DomainError] = []
        for command in commands:
            if isinstance(command, DomainError):
                slots.append(command)
                continue
            try:
                keys, planner = self._transfer_plan(actor, command)
            except DomainError as error:
                slots.append(error)
                continue
            slots.append(self._submit(actor, command, keys, planner))
        # Awaited one after the other, not as tasks: the futures are mostly settled by one batch together.
        answers: list[list[TransferRecord] | DomainError] = []
        for slot in slots:
            if isinstance(slot, DomainError):
                answers.append(slot)
                continue
            try:
                answers.append(await self._settle(slot))
            except DomainError as error:
                answers.append(error)
        return answers

    # -- batching ---------------------------------------------------------------------------------------

    def _submit(
        self,
        actor: Actor,
        command: TransferCommand | PayForGenerationCommand,
        keys: frozenset[AccountKey],
        planner: Callable[[Mapping[AccountKey, BalanceState]], Plan],
    ) -> _Job:
        """Queue a posting request for the batcher (the caller then awaits `_settle`)."""
        assert self._batcher is not None
        future = asyncio.get_running_loop().create_future()
        job = _Job(actor, command, keys, planner, future, self._request(actor, command, uuid7()))
        inject_headers(job.carrier)
        self._batcher.submit(job)
        return job

    async def _settle(self, job: _Job) -> list[TransferRecord]:
        """The outcome of a submitted job: its records, its failure raised, the stored outcome of its key,
        or, when its batch failed as a whole, its outcome in a transaction of its own."""
        outcome = await job.future
        if outcome is _REPLAY:
            return await self._replay(job.actor, job.command, self._replay_transfers)
        if outcome is _ALONE:
            return await self._alone(job.actor, job.command, job.keys, job.planner)
        return outcome  # type: ignore[return-value]

    async def _posting(
        self,
        actor: Actor,
        command: TransferCommand | PayForGenerationCommand,
        keys: frozenset[AccountKey],
        planner: Callable[[Mapping[AccountKey, BalanceState]], Plan],
    ) -> list[TransferRecord]:
        """Post through the batcher, or alone when batching is off."""
        if self._batcher is not None:
            return await self._settle(self._submit(actor, command, keys, planner))
        return await self._alone(actor, command, keys, planner)

    async def _alone(
        self,
        actor: Actor,
        command: TransferCommand | PayForGenerationCommand,
        keys: frozenset[AccountKey],
        planner: Callable[[Mapping[AccountKey, BalanceState]], Plan],
    ) -> list[TransferRecord]:
        """Post in a transaction of its own."""

        async def body(repo: LedgerRepository, balances: dict[AccountKey, BalanceState]) -> list[TransferRecord]:
            request_id = uuid7()
            try:
                plan = planner(balances)
            except LedgerFailure as failure:
                await self._fail(repo, actor, command, request_id, failure)
            return await self._post(repo, actor, command, request_id, plan)

        return await self._run(actor, command, keys, body, self._replay_transfers)

    @asynccontextmanager
    async def _held_connection(self) -> AsyncIterator[_HeldConnection]:
        held = _HeldConnection(self.engine)
        try:
            yield held
        finally:
            await held.release()

    async def _flush(self, held: _HeldConnection, jobs: list[_Job]) -> None:
        """Write a batch and settle its jobs. If the batch as a whole fails (anything but a request's own
        LedgerFailure, which is recorded as its outcome), every job is retried in a transaction of its own,
        so one bad request cannot fail the others."""
        try:
            outcomes = await self._write_batch(jobs, held)
        except Exception:
            log.warning("a batch of %d requests failed: running each alone", len(jobs), exc_info=True)
            await held.discard()  # it may be broken: the next batch checks out a fresh one
            outcomes = [_ALONE] * len(jobs)
        for job, outcome in zip(jobs, outcomes, strict=True):
            if job.future.done():
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    async def _write_batch(self, jobs: list[_Job], held: _HeldConnection) -> list[object]:
        """One transaction for all `jobs`: lock the union of their balance rows in account-id order (one
        statement, so concurrent batches and single requests never deadlock), skip the keys recorded
        already, decide each request in queue order on the balances the requests before it left, then write
        everything (requests, failed ones included; balances; transfers; postings; events) in one statement
        and commit. A key taken meanwhile by a concurrent transaction fails the write (unique violation):
        nothing of the batch is written; roll back and decide again.

        Two round trips, in pipeline mode: BEGIN with the lock and the key lookup; the write with COMMIT."""
        keys = frozenset().union(*(job.keys for job in jobs))
        requests = {(job.actor.id, job.command.key) for job in jobs}
        for _ in range(5):
            raw = await held.get()
            repo = BatchRepository(raw, self.store)
            try:
                async with raw.pipeline(), raw.transaction():
                    balances, taken = await repo.lock_and_find_taken(keys, requests)
                    outcomes, write = self._plan_batch(jobs, balances, taken)
                    await repo.post_batch(write)
                # The pipeline's exit sent the write and the COMMIT together and raised the write's error.
                return outcomes
            except MissingAccounts as missing:
                await create_accounts(self.engine, missing.keys)
            except psycopg.errors.UniqueViolation as violation:
                if violation.diag.constraint_name != REQUESTS_KEY:
                    raise
                # The COMMIT queued behind the failed write was skipped: end the failed transaction.
                await raw.rollback()
        raise RuntimeError("the batch kept meeting taken keys or missing accounts")

    def _plan_batch(
        self, jobs: list[_Job], balances: dict[AccountKey, BalanceState], taken: set[tuple[str, str]]
    ) -> tuple[list[object], BatchWrite]:
        running = dict(balances)
        write = BatchWrite()
        outcomes: list[object] = []
        for job in jobs:
            actor, command = job.actor, job.command
            if (actor.id, command.key) in taken:
                outcomes.append(_REPLAY)
                continue
            request = job.request
            try:
                plan = job.planner({k: running[k] for k in job.keys})
            except LedgerFailure as failure:
                write.requests.append((request, failure))
                outcomes.append(failure)
                continue
            write.requests.append((request, None))
            for key in plan.changed:
                state = running[key] = plan.balances[key]
                write.balances[state.account_id] = state
            metadata = dict(command.metadata)
            stream = f"ledger-request-{request.request_id}"
            records = []
            for index, posted in enumerate(plan.posted):
                transfer_id = uuid7()
                leg = posted.leg
                debit, credit = running[leg.debit_key].account_id, running[leg.credit_key].account_id
                write.transfers.append((transfer_id, request, index, leg, debit, credit, command.memo, metadata))
                write.postings.append((transfer_id, debit, leg.currency.value, -leg.amount, posted.debit_after))
                write.postings.append((transfer_id, credit, leg.currency.value, leg.amount, posted.credit_after))
                write.new_events.append(
                    (
                        stream,
                        index + 1,
                        events.TransferPosted(
                            transfer_id=str(transfer_id),
                            idempotency_key=command.key,
                            principal_id=actor.id,
                            leg_index=index,
                            leg_count=len(plan.posted),
                            leg=leg,
                            memo=command.memo,
                            metadata=command.metadata,
                            debit_balance_after=posted.debit_after,
                            credit_balance_after=posted.credit_after,
                        ),
                        job.carrier,
                    )
                )
                records.append(
                    TransferRecord(
                        id=str(transfer_id),
                        idempotency_key=command.key,
                        principal_id=actor.id,
                        leg_index=index,
                        leg=leg,
                        memo=command.memo,
                        metadata=dict(command.metadata),
                        hold_id="",
                        created_at=request.now,
                    )
                )
            outcomes.append(records)
        return outcomes, write

    # -- holds ------------------------------------------------------------------------------------------

    async def place_hold(self, actor: Actor, command: PlaceHoldCommand) -> HoldState:
        authorize_legs(actor, [command.leg])
        leg = command.leg

        async def body(repo: LedgerRepository, balances: dict[AccountKey, BalanceState]) -> HoldState:
            request_id = uuid7()
            plan = Plan(dict(balances))
            try:
                plan.reserve(leg.debit_key, leg.amount)
            except LedgerFailure as failure:
                await self._fail(repo, actor, command, request_id, failure)
            now = self.clock()
            hold = HoldState(
                id=str(uuid7()),
                key=command.key,
                principal_id=actor.id,
                leg=leg,
                memo=command.memo,
                metadata=dict(command.metadata),
                created_at=now,
                expires_at=now + command.timeout,
            )
            await self._record(repo, actor, command, request_id, hold_id=hold.id)
            await repo.write_balances(plan.balances[k] for k in plan.changed)
            await repo.insert_hold(hold=hold, request_id=request_id, balances=plan.balances)
            await repo.append(
                f"ledger-hold-{hold.id}",
                [
                    events.HoldPlaced(
                        hold.id, command.key, actor.id, leg, command.memo, command.metadata, hold.expires_at
                    )
                ],
            )
            return hold

        async def replay(repo: LedgerRepository, stored: StoredRequest) -> HoldState:
            hold = await repo.get_hold(stored.hold_id)
            assert hold is not None
            return hold

        return await self._run(actor, command, {leg.debit_key, leg.credit_key}, body, replay)

    async def _locked_hold(
        self, repo: LedgerRepository, hold_id: str
    ) -> tuple[HoldState | None, dict[AccountKey, BalanceState]]:
        hold = await repo.get_hold(hold_id, lock=True)
        if hold is None:
            return None, {}
        return hold, await repo.lock_balances({hold.leg.debit_key, hold.leg.credit_key})

    async def _expire(
        self, repo: LedgerRepository, hold: HoldState, balances: dict[AccountKey, BalanceState]
    ) -> HoldState:
        """Release a due hold and record its expiry (within the caller's transaction)."""
        plan = Plan(dict(balances))
        plan.release(hold.leg.debit_key, hold.leg.amount)
        expired = replace(hold, status=HoldStatus.EXPIRED, resolved_at=self.clock())
        await repo.write_balances(plan.balances[k] for k in plan.changed)
        await repo.insert_resolution(expired)
        await repo.append(f"ledger-hold-{hold.id}", [events.HoldExpired(hold.id, hold.leg.amount)], expected_version=1)
        return expired

    async def _resolve(
        self,
        actor: Actor,
        command: CaptureHoldCommand | VoidHoldCommand,
        apply: Callable[[LedgerRepository, HoldState, dict[AccountKey, BalanceState], uuid.UUID], Awaitable[T]],
        replay: Callable[[LedgerRepository, StoredRequest], Awaitable[T]],
    ) -> T:
        authorize_service(actor, "resolving a hold")

        async def body(repo: LedgerRepository, _: dict[AccountKey, BalanceState]) -> T:
            request_id = uuid7()
            hold, balances = await self._locked_hold(repo, command.hold_id)
            try:
                if hold is None:
                    raise HoldNotFound(command.hold_id)
                check_pending(hold)
                if hold.is_due(self.clock()):
                    await self._expire(repo, hold, balances)
                    raise HoldExpired(hold.id)
                if isinstance(command, CaptureHoldCommand):
                    capture_amount(hold, command.amount)
            except LedgerFailure as failure:
                await self._fail(repo, actor, command, request_id, failure)
            return await apply(repo, hold, balances, request_id)

        return await self._run(actor, command, (), body, replay)

    async def capture_hold(self, actor: Actor, command: CaptureHoldCommand) -> CaptureResult:
        """Post all or part of a pending hold; the rest is released."""

        async def apply(
            repo: LedgerRepository, hold: HoldState, balances: dict[AccountKey, BalanceState], request_id: uuid.UUID
        ) -> CaptureResult:
            amount = capture_amount(hold, command.amount)
            plan = Plan(dict(balances))
            plan.release(hold.leg.debit_key, hold.leg.amount)
            leg = replace(hold.leg, amount=amount)
            posted = plan.post(leg)
            transfer_id = uuid7()
            request = self._request(actor, command, request_id, hold_id=hold.id)
            now = request.now
            records = await repo.post(
                request=request,
                legs=[(transfer_id, 0, leg, posted.debit_after, posted.credit_after)],
                balances=plan.balances,
                changed=plan.changed,
                memo=hold.memo,
                metadata=hold.metadata,
            )
            if records is None:
                raise _KeyTaken
            [record] = records
            captured = replace(
                hold,
                status=HoldStatus.CAPTURED,
                captured_amount=amount,
                capture_transfer_id=str(transfer_id),
                resolved_at=now,
            )
            await repo.insert_resolution(captured)
            released = hold.leg.amount - amount
            await repo.append(
                f"ledger-hold-{hold.id}",
                [
                    events.HoldCaptured(
                        hold.id, str(transfer_id), leg, amount, released, posted.debit_after, posted.credit_after
                    )
                ],
                expected_version=1,
            )
            return CaptureResult(captured, record, released)

        async def replay(repo: LedgerRepository, stored: StoredRequest) -> CaptureResult:
            hold = await repo.get_hold(command.hold_id)
            [record] = await repo.transfers_of_request(stored.request_id)
            assert hold is not None
            return CaptureResult(hold, record, hold.leg.amount - hold.captured_amount)

        return await self._resolve(actor, command, apply, replay)

    async def void_hold(self, actor: Actor, command: VoidHoldCommand) -> VoidResult:
        """Release a pending hold without posting."""

        async def apply(
            repo: LedgerRepository, hold: HoldState, balances: dict[AccountKey, BalanceState], request_id: uuid.UUID
        ) -> VoidResult:
            await self._record(repo, actor, command, request_id, hold_id=hold.id)
            plan = Plan(dict(balances))
            plan.release(hold.leg.debit_key, hold.leg.amount)
            voided = replace(hold, status=HoldStatus.VOIDED, resolved_at=self.clock())
            await repo.write_balances(plan.balances[k] for k in plan.changed)
            await repo.insert_resolution(voided)
            await repo.append(
                f"ledger-hold-{hold.id}", [events.HoldVoided(hold.id, hold.leg.amount)], expected_version=1
            )
            return VoidResult(voided, hold.leg.amount)

        async def replay(repo: LedgerRepository, stored: StoredRequest) -> VoidResult:
            hold = await repo.get_hold(command.hold_id)
            assert hold is not None
            return VoidResult(hold, hold.leg.amount)

        return await self._resolve(actor, command, apply, replay)

    async def expire_due_holds(self, limit: int = 100) -> int:
        """Expire pending holds whose time has come (by the injected clock); returns how many."""
        async with self.engine.connect() as conn:
            due = await LedgerRepository(conn, self.store).due_holds(self.clock(), limit)
        expired = 0
        for hold_id in due:
            async with self.engine.begin() as conn:
                repo = LedgerRepository(conn, self.store)
                hold, balances = await self._locked_hold(repo, hold_id)
                if hold is not None and hold.is_due(self.clock()):
                    await self._expire(repo, hold, balances)
                    expired += 1
        return expired

    # -- reads ------------------------------------------------------------------------------------------

    async def balance(self, actor: Actor, owner: Owner, currency: Currency) -> BalanceView:
        authorize_read(actor, owner)
        key = AccountKey(owner, currency)
        async with self.engine.connect() as conn:
            state = await LedgerRepository(conn, self.store).balance(key)
        if state is None:
            return BalanceView(key, 0, 0)
        return BalanceView(key, state.posted, state.pending)

    async def postings(
        self, actor: Actor, owner: Owner, currency: Currency, before_seq: int | None, page_size: int
    ) -> tuple[list[PostingRecord], int | None]:
        """A page of postings, newest first, and the `before_seq` of the next page (None at the end)."""
        authorize_read(actor, owner)
        async with self.engine.connect() as conn:
            rows = await LedgerRepository(conn, self.store).postings(
                AccountKey(owner, currency), before_seq, page_size + 1
            )
        if len(rows) > page_size:
            return rows[:page_size], rows[page_size - 1].seq
        return rows, None

    async def get_hold(self, actor: Actor, hold_id: str) -> HoldState:
        async with self.engine.connect() as conn:
            hold = await LedgerRepository(conn, self.store).get_hold(hold_id)
        if hold is None:
            raise NotFound(f"no hold {hold_id}", reason="HOLD_NOT_FOUND", metadata={"hold_id": hold_id})
        if not (actor.is_service or actor.may_read_all or actor.id in {hold.principal_id, hold.leg.debit.name}):
            raise NotFound(f"no hold {hold_id}", reason="HOLD_NOT_FOUND", metadata={"hold_id": hold_id})
        return hold

    async def outcome(self, actor: Actor, key: str, principal_id: str = "") -> Outcome:
        """The stored outcome of the request with idempotency `key` in `principal_id`'s namespace."""
        namespace = principal_id or actor.id
        if namespace != actor.id and not (actor.is_service or actor.may_read_all):
            authorize_service(actor, "reading another principal's requests")
        async with self.engine.connect() as conn:
            repo = LedgerRepository(conn, self.store)
            stored = await repo.load_request(namespace, key)
            if stored is None:
                raise NotFound(f"no request with key {key!r}", reason="KEY_NOT_FOUND", metadata={"key": key})
            if stored.failure_kind is not None:
                return Outcome(stored.operation, failure=_restore(stored))
            transfers = await repo.transfers_of_request(stored.request_id)
            hold = await repo.get_hold(stored.hold_id) if stored.hold_id else None
        return Outcome(stored.operation, transfers, hold)


def _restore(stored: StoredRequest) -> LedgerFailure:
    return restore_failure(
        stored.failure_kind or "FailedPrecondition",
        stored.failure_reason or "FAILED_PRECONDITION",
        stored.failure_message or "",
        stored.failure_metadata,
    )
