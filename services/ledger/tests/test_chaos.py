"""kill -9 of the service under load, again and again: nothing applied twice, no acknowledged transfer lost,
nothing half-applied, every event published.

Each round starts the service (a real `python -m modelhub.ledger` process), drives it with concurrent
clients (transfers between a few users, so that requests share batches, rows and locks; some fail on
insufficient funds), and SIGKILLs it at a random moment while calls are in flight. The next round first
retries, with the same keys, every call that got no answer. After the last kill a final run retries what
is left until every key has a definitive answer; then: every answer ever given is the answer given again,
the applied transfers are exactly the acknowledged ones (count and sum), the audit passes, and JetStream
holds every committed event exactly once. The default run kills 3 times; `make chaos` kills 20 times.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import grpc.aio
import pytest
from sqlalchemy import text

from modelhub.core.db import create_engine
from modelhub.core.grpc.errors import error_details
from modelhub.core.nats import connect, events_stream_name
from modelhub.devstack.nats import NatsServer
from modelhub.devstack.ports import free_port
from modelhub.ledger.audit import run_audit
from modelhub.ledger.v1 import ledger_pb2 as pb
from modelhub.ledger.v1.ledger_pb2_grpc import LedgerServiceStub

from .conftest import SECRET, auth

USERS = 8
FUNDS = 20_000
CLIENTS = 24

Outcome = tuple[str, object]
"""("ok", transfer ids), ("error", reason) for a definitive answer, ("lost", code) when none came."""


@asynccontextmanager
async def service(database_url: str, nats_url: str, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    env = os.environ | {
        "MODELHUB_LEDGER_DATABASE_URL": database_url,
        "MODELHUB_LEDGER_NATS_URL": nats_url,
        "MODELHUB_LEDGER_GRPC_PORT": str(port),
        "MODELHUB_LEDGER_JWT_SECRET": SECRET,
        "MODELHUB_LEDGER_LOG_LEVEL": "ERROR",
        "MODELHUB_LEDGER_TIP_FEE_BASIS_POINTS": "500",
        "MODELHUB_LEDGER_RUN_REWARDS": "false",
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelhub.ledger", env=env)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)


def user(i: int) -> str:
    return f"chaos-{i}"


class Load:
    """The requests of the whole test, keyed by idempotency key, and every answer they got."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.requests: dict[str, tuple[int, int, int, bool]] = {}  # key -> payer, payee, amount, tip?
        self.answers: dict[str, Outcome] = {}  # the first definitive answer of each key
        self.unanswered: list[str] = []
        self.lost_calls = 0

    def new_key(self) -> str:
        key = f"k{len(self.requests)}"
        payer = self.rng.randrange(USERS)
        payee = (payer + 1 + self.rng.randrange(USERS - 1)) % USERS
        self.requests[key] = (payer, payee, self.rng.randint(1, 900), self.rng.random() < 0.3)
        return key

    async def send(self, stub: LedgerServiceStub, key: str) -> Outcome:
        payer, payee, amount, tip = self.requests[key]
        try:
            if tip:  # two linked legs, the fee one on the shared PLATFORM_FEES row
                request = pb.TipRequest(
                    idempotency_key=key, from_user_id=user(payer), to_user_id=user(payee), amount=amount
                )
                response = await stub.Tip(request, metadata=auth(user(payer)), timeout=10)
            else:
                leg = pb.Leg(
                    type=pb.TRANSFER_TYPE_TIP,
                    currency=pb.CURRENCY_YELLOW,
                    debit=pb.AccountOwner(user_id=user(payer)),
                    credit=pb.AccountOwner(user_id=user(payee)),
                    amount=amount,
                )
                response = await stub.Transfer(  # type: ignore[assignment]
                    pb.TransferRequest(idempotency_key=key, legs=[leg]), metadata=auth(user(payer)), timeout=10
                )
        except grpc.aio.AioRpcError as error:
            details = error_details(error)
            if details.reason is None:
                return "lost", details.code.name
            return "error", details.reason
        return "ok", tuple(t.id for t in response.transfers)

    async def definitive(self, stub: LedgerServiceStub, key: str) -> Outcome:
        """An answer from a running service: a call that meets a connection still settling is retried,
        as a client would."""
        for _ in range(20):
            outcome = await self.send(stub, key)
            if outcome[0] != "lost":
                return outcome
            await asyncio.sleep(0.1)
        raise AssertionError(f"{key}: no answer from the running service: {outcome}")

    def record(self, key: str, outcome: Outcome) -> None:
        if outcome[0] == "lost":
            self.lost_calls += 1
            self.unanswered.append(key)
            return
        first = self.answers.setdefault(key, outcome)
        assert outcome == first, f"{key} answered {outcome}, earlier {first}"

    async def round(self, stub: LedgerServiceStub, stop: asyncio.Event) -> None:
        """Retry what is unanswered, then send new requests, from CLIENTS clients until `stop`."""
        retry, self.unanswered = self.unanswered, []

        async def client() -> None:
            while not stop.is_set():
                key = retry.pop() if retry else self.new_key()
                self.record(key, await self.send(stub, key))

        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        self.unanswered.extend(retry)


@pytest.mark.parametrize(
    "kills",
    [pytest.param(3, id="3-kills"), pytest.param(20, marks=pytest.mark.chaos, id="20-kills")],
)
async def test_kill_9_under_load(kills: int, migrated_url: str, nats_server: NatsServer) -> None:
    port = free_port()
    load = Load(seed=kills)
    async with service(migrated_url, nats_server.url, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = LedgerServiceStub(ch)
        for i in range(USERS):
            fund = pb.Leg(
                type=pb.TRANSFER_TYPE_PURCHASE,
                currency=pb.CURRENCY_YELLOW,
                debit=pb.AccountOwner(system=pb.SYSTEM_ACCOUNT_MINT),
                credit=pb.AccountOwner(user_id=user(i)),
                amount=FUNDS,
            )
            await stub.Transfer(
                pb.TransferRequest(idempotency_key=f"fund-{i}", legs=[fund]), metadata=auth("payments", "service")
            )

    for _ in range(kills):
        async with (
            service(migrated_url, nats_server.url, port) as process,
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
        ):
            stop = asyncio.Event()
            running = asyncio.create_task(load.round(LedgerServiceStub(channel), stop))
            await asyncio.sleep(load.rng.uniform(0.05, 1.0))
            stop.set()
            process.kill()  # SIGKILL: no shutdown; transactions and batches in flight are cut off
            await running
            await process.wait()
    assert load.lost_calls > 0, "no kill cut off a call in flight"

    # Restart and retry every unanswered request with the same key until it has a definitive answer.
    async with service(migrated_url, nats_server.url, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = LedgerServiceStub(ch)
        while load.unanswered:
            key = load.unanswered.pop()
            load.record(key, await load.definitive(stub, key))
        # Every key answers as it answered the first time: acknowledged transfers kept, failures kept.
        for key, first in load.answers.items():
            assert await load.definitive(stub, key) == first, key

        engine = create_engine(migrated_url, pool_size=1, max_overflow=0)
        try:
            assert await run_audit(engine) == []
            acknowledged = {k for k, (kind, _) in load.answers.items() if kind == "ok"}
            assert len(acknowledged) > kills
            legs = sum(len(load.answers[k][1]) for k in acknowledged)  # type: ignore[arg-type]
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text("SELECT count(*), count(DISTINCT idempotency_key) FROM transfers WHERE idempotency_key ~ '^k'")
                )
                applied_legs, applied_keys = rows.one()
                ids = {
                    str(r[0])
                    for r in await conn.execute(text("SELECT id FROM transfers WHERE idempotency_key LIKE 'k%'"))
                }
                events = (await conn.execute(text("SELECT count(*) FROM events"))).scalar_one()
            assert (applied_keys, applied_legs) == (len(acknowledged), legs)  # none lost, none applied twice
            assert ids == {i for k in acknowledged for i in load.answers[k][1]}  # type: ignore[attr-defined]
            # Every committed event reaches JetStream exactly once (the relay restarts from its checkpoint).
            nc = await connect(nats_server.url, "chaos-test")
            try:
                js = nc.jetstream()
                for _ in range(400):
                    published = (await js.stream_info(events_stream_name("ledger"))).state.messages
                    if published >= events:
                        break
                    await asyncio.sleep(0.05)
                assert published == events
            finally:
                await nc.close()
        finally:
            await engine.dispose()
