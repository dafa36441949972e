"""Benchmark of the ledger service: transfers per second through gRPC against a durable PostgreSQL.

Starts its own durable PostgreSQL (fsync on, synchronous_commit on) and NATS JetStream, runs the ledger
as a real subprocess (`python -m modelhub.ledger`, outbox relay on), and drives it from a load-generator
process of its own (bench/ledger/load.py), so that neither the client's CPU nor the benchmark's is in the
server's process. Measures, in one run:
- baseline: single-row INSERT + COMMIT transactions per second that the same PostgreSQL server reaches
  with CONCURRENCY connections (psycopg async, one row per transaction);
- single: Transfer RPCs per second (one TIP leg between two of USERS funded users, as the paying user)
  with CONCURRENCY calls in flight, and their p50/p99 latency; again with half as many in flight;
- tip: Tip RPCs per second with the 5 % fee leg, so that every call also credits the one PLATFORM_FEES
  row (the hot-row case);
- batched: transfers per second through BatchTransfer (each of BATCH_SIZES transfers per call,
  BATCH_CONCURRENCY calls in flight).
WORKERS (env BENCH_LEDGER_WORKERS, default 2) is the ledger's MODELHUB_LEDGER_WORKERS: that many server
processes on the port. The client spreads its calls over CHANNELS connections, so that SO_REUSEPORT
spreads them over the workers; the CPU seconds each ledger process used per phase are recorded.
Writes bench/results/ledger.json (or BENCH_LEDGER_RESULTS).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc.aio
import psycopg

from modelhub.core.nats import connect, events_stream_name
from modelhub.devstack.nats import NatsServer
from modelhub.devstack.ports import free_port
from modelhub.devstack.postgres import PostgresServer
from modelhub.ledger.adapters.migrations import upgrade

CONCURRENCY = 64
WORKERS = int(os.environ.get("BENCH_LEDGER_WORKERS", "2"))  # 2 measured best here (docs/ledger.md)
CHANNELS = 8  # client connections; the kernel spreads them over the workers by a hash of their ports
SECONDS = 10.0
BATCH_SIZES = (100, 500)  # 500 is the most one BatchTransfer call may carry
BATCH_CONCURRENCY = 4
TIP_FEE_BASIS_POINTS = 500
SECRET = "ledger-bench-secret-long-enough-for-hs256"
LOAD = Path(__file__).parent / "load.py"
RESULTS = Path(os.environ.get("BENCH_LEDGER_RESULTS", Path(__file__).parent.parent / "results" / "ledger.json"))


async def measure_baseline(url: str, connections: int, seconds: float) -> dict[str, Any]:
    """Single-row INSERT + COMMIT per transaction from `connections` concurrent connections."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await admin.execute("CREATE TABLE IF NOT EXISTS bench_commits (id bigserial PRIMARY KEY, body text NOT NULL)")
    conns = [await psycopg.AsyncConnection.connect(url) for _ in range(connections)]
    latencies: list[float] = []
    warm_until = time.perf_counter() + 1.0
    stop_at = warm_until + seconds

    async def writer(conn: psycopg.AsyncConnection[Any]) -> None:
        while (start := time.perf_counter()) < stop_at:
            await conn.execute("INSERT INTO bench_commits (body) VALUES (%s)", ("x" * 64,))
            await conn.commit()
            done = time.perf_counter()
            if start >= warm_until and done <= stop_at:
                latencies.append((done - start) * 1000)

    try:
        await asyncio.gather(*(writer(c) for c in conns))
    finally:
        for conn in conns:
            await conn.close()
    return summary(len(latencies), seconds, sorted(latencies))


def summary(count: int, seconds: float, latencies: list[float]) -> dict[str, Any]:
    return {
        "per_s": round(count / seconds),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 2),
        "max_ms": round(latencies[-1], 2),
    }


def load(address: str, mode: str, concurrency: int, seconds: float, batch_size: int = 0) -> dict[str, Any]:
    cmd = [sys.executable, str(LOAD), address, SECRET, mode, str(concurrency), str(seconds), str(batch_size)]
    cmd.append(str(CHANNELS))
    result = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"load {mode} failed: {result.stderr[-3000:]}")
    out = result.stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def start_ledger(database_url: str, nats_url: str, port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "MODELHUB_LEDGER_DATABASE_URL": database_url,
        "MODELHUB_LEDGER_NATS_URL": nats_url,
        "MODELHUB_LEDGER_GRPC_PORT": str(port),
        "MODELHUB_LEDGER_JWT_SECRET": SECRET,
        "MODELHUB_LEDGER_LOG_LEVEL": "WARNING",
        "MODELHUB_LEDGER_TIP_FEE_BASIS_POINTS": str(TIP_FEE_BASIS_POINTS),
        "MODELHUB_LEDGER_WORKERS": str(WORKERS),
    }
    return subprocess.Popen([sys.executable, "-m", "modelhub.ledger"], env=env)


async def wait_ready(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), 60)


async def wait_relayed(database_url: str, nats_url: str, limit: float = 120.0) -> None:
    """Wait until the relay has published every committed event, so that one phase's backlog does not eat
    into the next phase's CPU."""
    nc = await connect(nats_url, "bench-ledger")
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + limit
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                cursor = await conn.execute("SELECT count(*) FROM events")
                row = await cursor.fetchone()
                published = (await js.stream_info(events_stream_name("ledger"))).state.messages
                if row is not None and published >= row[0]:
                    return
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


def server_pids(ledger: subprocess.Popen[bytes]) -> list[int]:
    """The processes serving: the ledger itself, or its workers."""
    if WORKERS == 1:
        return [ledger.pid]
    return [int(pid) for pid in Path(f"/proc/{ledger.pid}/task/{ledger.pid}/children").read_text().split()]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check_audit(database_url: str) -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "modelhub.ledger.audit", "--database-url", database_url],
        check=False,
        capture_output=True,
        text=True,
    )
    return result.returncode == 0


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="modelhub-bench-ledger-"))
    root.chmod(0o755)  # PostgreSQL runs as the postgres user when we are root
    postgres = PostgresServer(root / "postgres", durable=True)
    nats_server = NatsServer(root / "nats")
    postgres.start()
    nats_server.start()
    ledger: subprocess.Popen[bytes] | None = None
    try:
        baseline_url = postgres.create_database("baseline")
        baseline = asyncio.run(measure_baseline(baseline_url, CONCURRENCY, SECONDS))

        database_url = postgres.create_database("ledger")
        upgrade(database_url)
        port = free_port()
        address = f"127.0.0.1:{port}"
        ledger = start_ledger(database_url, nats_server.url, port)
        asyncio.run(wait_ready(address))

        pids = server_pids(ledger)
        cpu: dict[str, list[float]] = {}

        def phase(mode: str, concurrency: int, batch_size: int = 0) -> dict[str, Any]:
            asyncio.run(wait_relayed(database_url, nats_server.url))
            before = [cpu_seconds(pid) for pid in pids]
            run = load(address, mode, concurrency, SECONDS, batch_size)
            name = f"{mode}_{batch_size or concurrency}"
            cpu[name] = [round(cpu_seconds(pid) - b, 2) for pid, b in zip(pids, before, strict=True)]
            return run

        load(address, "fund", 1, 0)
        single_run = phase("single", CONCURRENCY)
        single_half_run = phase("single", CONCURRENCY // 2)
        tip_run = phase("tip", CONCURRENCY)
        batch_runs = {size: phase("batch", BATCH_CONCURRENCY, size) for size in BATCH_SIZES}
        ledger.terminate()
        ledger.wait(60)
        ledger = None
        audit_ok = check_audit(database_url)
    finally:
        if ledger is not None:
            ledger.kill()
            ledger.wait()
        nats_server.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)

    single = summary(single_run["calls"], single_run["elapsed_s"], single_run["latencies_ms"])
    single_half = summary(single_half_run["calls"], single_half_run["elapsed_s"], single_half_run["latencies_ms"])
    tip = summary(tip_run["calls"], tip_run["elapsed_s"], tip_run["latencies_ms"])
    result = {
        "benchmark": "ledger",
        "machine": {
            "cpus": os.cpu_count() or 0,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
        "settings": {
            "postgres": "fsync on, synchronous_commit on (durable)",
            "ledger": "python -m modelhub.ledger subprocess, outbox relay to JetStream on, default pool; each "
            "phase starts once the relay has published the previous phases' events",
            "ledger_workers": WORKERS,
            "client": f"bench/ledger/load.py in its own process, grpc.aio, {CHANNELS} channels (connections)",
            "concurrency": CONCURRENCY,
            "measure_seconds": SECONDS,
            "users": 2_000,
            "single": "Transfer RPC, one TIP leg between two random users, authenticated as the payer",
            "tip": f"Tip RPC, {TIP_FEE_BASIS_POINTS} bp fee: two linked legs, every call credits PLATFORM_FEES",
            "batched": f"BatchTransfer RPCs of {' or '.join(map(str, BATCH_SIZES))} user-to-user transfers, "
            f"{BATCH_CONCURRENCY} in flight",
            "baseline": "psycopg async, one connection per client, INSERT of one row + COMMIT per transaction",
        },
        "baseline_insert_commit": baseline,
        "single_transfers": single,
        f"single_transfers_{CONCURRENCY // 2}_in_flight": single_half,
        "tips_with_fee_leg": tip,
        "batched_transfers": {
            f"{size}_per_call": {
                "transfers_per_s": round(run["transfers"] / run["elapsed_s"]),
                "failures": run["failures"],
                "calls": summary(run["calls"], run["elapsed_s"], run["latencies_ms"]),
            }
            for size, run in batch_runs.items()
        },
        "single_to_baseline_ratio": round(single["per_s"] / baseline["per_s"], 3),
        "ledger_cpu_s_per_process_per_phase": cpu,
        "audit_passed": audit_ok,
        "goals": {
            "single_transfers_per_s": 1000,
            "single_p99_ms": 25,
            "batched_transfers_per_s": 5000,
            "single_to_baseline_ratio": 0.5,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
