"""Load generator of the ledger benchmark, in a process of its own (its CPU is not the server's).

    python bench/ledger/load.py ADDRESS SECRET MODE CONCURRENCY SECONDS [BATCH_SIZE [CHANNELS]]

MODE: `fund` (mint yellow Buzz to every user), `single` (Transfer RPCs, one TIP leg user -> user, each
call as the paying user), `tip` (Tip RPCs with the platform fee leg: every call also credits the one
PLATFORM_FEES row), `batch` (BatchTransfer RPCs of BATCH_SIZE such transfers, as a service). Prints one
JSON object: calls, transfers, failures, elapsed seconds, latencies (ms) of the calls measured; and, over
the whole run (warm-up included), all_calls, all_transfers and the CPU seconds this process used (cpu_s). The calls
go round-robin over CHANNELS channels (default 1), each its own TCP connection, so that a ledger with
several worker processes on one port (SO_REUSEPORT spreads connections, not calls) gets load on each.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from typing import Any

import grpc.aio

from modelhub.core.grpc.auth import issue_token
from modelhub.ledger.v1 import ledger_pb2 as pb
from modelhub.ledger.v1.ledger_pb2_grpc import LedgerServiceStub

USERS = 2_000
FUNDS = 10_000_000
WARM_UP_SECONDS = 2.0


def user(i: int) -> str:
    return f"bench-user-{i}"


def tip_leg(payer: int, payee: int, amount: int) -> pb.Leg:
    return pb.Leg(
        type=pb.TRANSFER_TYPE_TIP,
        currency=pb.CURRENCY_YELLOW,
        debit=pb.AccountOwner(user_id=user(payer)),
        credit=pb.AccountOwner(user_id=user(payee)),
        amount=amount,
    )


def pair(rng: random.Random) -> tuple[int, int]:
    payer = rng.randrange(USERS)
    return payer, (payer + 1 + rng.randrange(USERS - 1)) % USERS


async def main(
    address: str, secret: str, mode: str, concurrency: int, seconds: float, batch_size: int, channels: int
) -> None:
    service = (("authorization", f"Bearer {issue_token('bench-service', ('service',), key=secret)}"),)
    users = [(("authorization", f"Bearer {issue_token(user(i), ('user',), key=secret)}"),) for i in range(USERS)]
    run = uuid.uuid4().hex[:8]
    latencies: list[float] = []
    counts = {"calls": 0, "transfers": 0, "failures": 0, "all_calls": 0, "all_transfers": 0}
    # A local subchannel pool per channel: otherwise channels to one address share one connection.
    opened = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(channels)
    ]
    stubs = [LedgerServiceStub(channel) for channel in opened]
    stub = stubs[0]
    try:
        if mode == "fund":
            for start in range(0, USERS, 500):
                batch = pb.BatchTransferRequest(
                    transfers=[
                        pb.TransferRequest(
                            idempotency_key=f"fund-{i}",
                            legs=[
                                pb.Leg(
                                    type=pb.TRANSFER_TYPE_PURCHASE,
                                    currency=pb.CURRENCY_YELLOW,
                                    debit=pb.AccountOwner(system=pb.SYSTEM_ACCOUNT_MINT),
                                    credit=pb.AccountOwner(user_id=user(i)),
                                    amount=FUNDS,
                                )
                            ],
                        )
                        for i in range(start, min(start + 500, USERS))
                    ]
                )
                response = await stub.BatchTransfer(batch, metadata=service, timeout=120)
                assert not any(r.HasField("failure") for r in response.results), response
            print(json.dumps({"funded": USERS}))
            return

        measuring_from = time.perf_counter() + WARM_UP_SECONDS
        stop_at = measuring_from + seconds
        measured_start = measured_end = 0.0

        async def worker(w: int) -> None:
            nonlocal measured_start, measured_end
            rng = random.Random(w)
            client = stubs[w % len(stubs)]
            n = 0
            while (now := time.perf_counter()) < stop_at:
                n += 1
                key = f"{run}-{w}-{n}"
                call: Any
                if mode == "batch":
                    items = []
                    for j in range(batch_size):
                        payer, payee = pair(rng)
                        items.append(pb.TransferRequest(idempotency_key=f"{key}-{j}", legs=[tip_leg(payer, payee, 1)]))
                    call = client.BatchTransfer(pb.BatchTransferRequest(transfers=items), metadata=service, timeout=60)
                    transfers = batch_size
                elif mode == "tip":
                    payer, payee = pair(rng)
                    tip = pb.TipRequest(
                        idempotency_key=key, from_user_id=user(payer), to_user_id=user(payee), amount=100
                    )
                    call = client.Tip(tip, metadata=users[payer], timeout=30)
                    transfers = 1
                else:
                    payer, payee = pair(rng)
                    request = pb.TransferRequest(idempotency_key=key, legs=[tip_leg(payer, payee, 1)])
                    call = client.Transfer(request, metadata=users[payer], timeout=30)
                    transfers = 1
                response = await call
                done = time.perf_counter()
                counts["all_calls"] += 1
                counts["all_transfers"] += transfers
                if now >= measuring_from and done <= stop_at:
                    if not measured_start:
                        measured_start = now
                    measured_end = max(measured_end, done)
                    latencies.append((done - now) * 1000)
                    counts["calls"] += 1
                    counts["transfers"] += transfers
                    if mode == "batch":
                        counts["failures"] += sum(1 for r in response.results if r.HasField("failure"))

        cpu_from = time.process_time()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        cpu_used = time.process_time() - cpu_from
    finally:
        for channel in opened:
            await channel.close(None)
    print(
        json.dumps(
            {
                **counts,
                "cpu_s": round(cpu_used, 3),
                "elapsed_s": measuring_from and (stop_at - measuring_from),
                "latencies_ms": sorted(latencies),
            }
        )
    )


if __name__ == "__main__":
    address, secret, mode, concurrency, seconds = sys.argv[1:6]
    batch_size = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    channels = int(sys.argv[7]) if len(sys.argv) > 7 else 1
    asyncio.run(main(address, secret, mode, int(concurrency), float(seconds), batch_size, channels))
