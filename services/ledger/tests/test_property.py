"""Property: random operation sequences (with retries) agree with a simple in-memory model of the ledger."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from modelhub.core.db import create_engine
from modelhub.core.errors import DomainError
from modelhub.ledger.audit import run_audit
from modelhub.ledger.bootstrap import build_ledger
from modelhub.ledger.domain import commands
from modelhub.ledger.domain.commands import Actor
from modelhub.ledger.domain.model import Currency, Owner, SystemAccount, TransferType
from modelhub.ledger.handlers import Ledger

from .helpers import MINT, SERVICE, leg

USERS = ("u0", "u1", "u2")
ESCROW = Owner.system(SystemAccount.GENERATION_ESCROW)
Y, B = Currency.YELLOW, Currency.BLUE

users = st.sampled_from(USERS)
amounts = st.integers(min_value=1, max_value=60)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("fund"), users, amounts, st.sampled_from([Y, B])),
        st.tuples(st.just("tip"), users, users, amounts),
        st.tuples(st.just("generation"), users, amounts),
        st.tuples(st.just("hold"), users, amounts),
        st.tuples(st.just("capture"), st.integers(0, 5), st.integers(0, 70)),
        st.tuples(st.just("void"), st.integers(0, 5)),
        st.tuples(st.just("retry"), st.integers(0, 40)),
    ),
    min_size=1,
    max_size=30,
)


@dataclass
class Model:
    """The reference: plain dictionaries, one operation at a time."""

    posted: dict[tuple[str, Currency], int] = field(default_factory=dict)
    pending: dict[tuple[str, Currency], int] = field(default_factory=dict)
    holds: list[list[Any]] = field(default_factory=list)  # [user, amount, open]

    def available(self, u: str, c: Currency) -> int:
        return self.posted.get((u, c), 0) - self.pending.get((u, c), 0)

    def add(self, book: dict[tuple[str, Currency], int], u: str, c: Currency, amount: int) -> None:
        book[(u, c)] = book.get((u, c), 0) + amount


class Runner:
    def __init__(self, ledger: Ledger, prefix: str) -> None:
        self.ledger = ledger
        self.prefix = prefix
        self.model = Model()
        self.hold_ids: list[str] = []
        self.done: list[tuple[tuple[Any, ...], str, tuple[bool, object]]] = []  # (op, key, outcome)

    def user(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    async def call(self, op: tuple[Any, ...], key: str) -> tuple[bool, object]:
        """Run `op` with `key`: (True, comparable result) or (False, the error's reason)."""
        try:
            return True, await self._call(op, key)
        except DomainError as error:
            return False, error.reason

    async def _call(self, op: tuple[Any, ...], key: str) -> object:
        kind = op[0]
        if kind == "fund":
            _, u, amount, currency = op
            records = await self.ledger.transfer(
                SERVICE,
                commands.transfer_command(
                    key, [leg(MINT, Owner.user(self.user(u)), amount, TransferType.PURCHASE, currency)]
                ),
            )
            return [r.id for r in records]
        if kind == "tip":
            _, a, b, amount = op
            command = commands.tip_command(key, self.user(a), self.user(b), amount, 0)
            return [r.id for r in await self.ledger.transfer(Actor(self.user(a)), command)]
        if kind == "generation":
            _, u, amount = op
            command = commands.pay_for_generation_command(key, self.user(u), amount)
            records = await self.ledger.pay_for_generation(Actor(self.user(u)), command)
            return [(r.id, r.leg.currency, r.leg.amount) for r in records]
        if kind == "hold":
            _, u, amount = op
            command = commands.place_hold_command(
                key, leg(Owner.user(self.user(u)), ESCROW, amount, TransferType.GENERATION), timedelta(hours=1)
            )
            return (await self.ledger.place_hold(Actor(self.user(u)), command)).id
        if kind == "capture":
            _, hold_id, amount = op
            capture = commands.capture_hold_command(key, hold_id, amount)
            return (await self.ledger.capture_hold(SERVICE, capture)).transfer.id
        if kind == "void":
            void = commands.void_hold_command(key, op[1])
            return (await self.ledger.void_hold(SERVICE, void)).released
        raise AssertionError(op)

    def concrete(self, op: tuple[Any, ...]) -> tuple[Any, ...]:
        """The request `op` stands for: a hold index becomes the id it names now (or an unknown id), so a
        retry later resends exactly this request even after more holds exist."""
        if op[0] not in ("capture", "void"):
            return op
        index = op[1]
        hold_id = self.hold_ids[index] if index < len(self.hold_ids) else "00000000-0000-7000-8000-000000000000"
        return (op[0], hold_id, *op[2:])

    def expect(self, op: tuple[Any, ...]) -> bool:
        """Apply `op` to the model; whether it should succeed."""
        m = self.model
        kind = op[0]
        if kind == "fund":
            m.add(m.posted, op[1], op[3], op[2])
            return True
        if kind == "tip":
            _, a, b, amount = op
            if a == b or m.available(a, Y) < amount:
                return False
            m.add(m.posted, a, Y, -amount)
            m.add(m.posted, b, Y, amount)
            return True
        if kind == "generation":
            _, u, amount = op
            blue = min(max(m.available(u, B), 0), amount)
            if m.available(u, Y) < amount - blue:
                return False
            m.add(m.posted, u, B, -blue)
            m.add(m.posted, u, Y, -(amount - blue))
            return True
        if kind == "hold":
            _, u, amount = op
            if m.available(u, Y) < amount:
                return False
            m.add(m.pending, u, Y, amount)
            m.holds.append([u, amount, True])
            return True
        index = op[1]
        if index >= len(m.holds) or not m.holds[index][2]:
            return False
        u, held, _ = m.holds[index]
        captured = 0
        if kind == "capture":
            captured = op[2] or held
            if captured > held:
                return False
        m.holds[index][2] = False
        m.add(m.pending, u, Y, -held)
        m.add(m.posted, u, Y, -captured)
        return True

    async def step(self, op: tuple[Any, ...]) -> None:
        if op[0] == "retry":
            if not self.done:
                return
            original, key, outcome = self.done[op[1] % len(self.done)]
            assert await self.call(original, key) == outcome, (original, key)
            return
        key = f"{self.prefix}-{len(self.done)}"
        request = self.concrete(op)
        should_succeed = self.expect(op)
        outcome = await self.call(request, key)
        assert outcome[0] == should_succeed, (op, outcome, self.model)
        if op[0] == "hold" and should_succeed:
            assert isinstance(outcome[1], str)
            self.hold_ids.append(outcome[1])
        self.done.append((request, key, outcome))

    async def check_balances(self) -> None:
        for u in USERS:
            for c in (Y, B):
                view = await self.ledger.balance(SERVICE, Owner.user(self.user(u)), c)
                assert (view.posted, view.pending) == (
                    self.model.posted.get((u, c), 0),
                    self.model.pending.get((u, c), 0),
                ), (u, c)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@example(ops=[("void", 0), ("fund", "u0", 1, Currency.YELLOW), ("hold", "u0", 1), ("retry", 0)])
@given(ops=operations)
def test_random_operations_match_the_model(migrated_url: str, ops: list[tuple[Any, ...]]) -> None:
    async def run() -> None:
        engine = create_engine(migrated_url, pool_size=2, max_overflow=0)
        try:
            runner = Runner(build_ledger(engine), uuid.uuid4().hex[:8])
            for op in ops:
                await runner.step(op)
                await runner.check_balances()
            assert await run_audit(engine) == []
        finally:
            await engine.dispose()

    asyncio.run(run())
