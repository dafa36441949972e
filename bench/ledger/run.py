"""Benchmark of the ledger service: transfers per second through gRPC against a durable PostgreSQL.

Starts its own durable PostgreSQL (fsync on, synchronous_commit on) and NATS JetStream, runs the ledger
as a real subprocess (`python -m modelhub.ledger`, outbox relay on), and drives it from a load-generator
process of its own (bench/ledger/load.py), so that neither the client's CPU nor the benchmark's is in the
server's process. Measures, in one run:
- commit latency: single-row INSERT + COMMIT from one connection (what one durable commit costs here);
- a sweep over SWEEP calls in flight, each with its own baseline measured just before it at as many
  connections: baseline = single-row INSERT + COMMIT transactions per second (psycopg async, one row per
  transaction); single = Transfer RPCs per second (one TIP leg between two of USERS funded users, as the
  paying user), with p50/p99 latency;
- tip: Tip RPCs per second with the 5 % fee leg at CONCURRENCY in flight, so that every call also credits
  the one PLATFORM_FEES row (the hot-row case);
- batched: transfers per second through BatchTransfer (BATCHED: transfers per call, calls in flight).
For every ledger phase it records the CPU seconds used by each ledger process, PostgreSQL, NATS and the
load generator, per transfer; the batches the ledger formed (count, mean size, mean time, mean queueing,
scraped from each worker's Prometheus metrics); and the load average (other work on the machine makes
wall-clock figures noisy; CPU per transfer is the steadier figure). The goals block judges every goal at
every concurrency of the sweep and says plainly whether it is met.
WORKERS (env BENCH_LEDGER_WORKERS, default 2) is the ledger's MODELHUB_LEDGER_WORKERS: that many server
processes on the port. The client spreads its calls over CHANNELS connections, so that SO_REUSEPORT
spreads them over the workers. Writes bench/results/ledger.json (or BENCH_LEDGER_RESULTS).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc.aio
import psycopg

from modelhub.core.nats import connect, events_stream_name
from modelhub.devstack.nats import NatsServer
from modelhub.devstack.ports import free_port
from modelhub.devstack.postgres import PostgresServer
from modelhub.ledger.adapters.migrations import upgrade

SWEEP = (16, 32, 64)  # calls in flight for single transfers, each with its baseline at as many connections
CONCURRENCY = 64  # the tip phase
WORKERS = int(os.environ.get("BENCH_LEDGER_WORKERS", "2"))  # 2 measured best here (docs/ledger.md)
BATCHES_IN_FLIGHT = os.environ.get("BENCH_LEDGER_BATCHES_IN_FLIGHT", "")  # the ledger's default when empty
CHANNELS = 8  # client connections; the kernel spreads them over the workers by a hash of their ports
SECONDS = float(os.environ.get("BENCH_LEDGER_SECONDS", "10"))
BATCHED = ((100, 4), (500, 4), (500, 8))  # (transfers per call, calls in flight); 500 is the API's maximum
TIP_FEE_BASIS_POINTS = 500
SECRET = "ledger-bench-secret-long-enough-for-hs256"
LOAD = Path(__file__).parent / "load.py"
RESULTS = Path(os.environ.get("BENCH_LEDGER_RESULTS", Path(__file__).parent.parent / "results" / "ledger.json"))
GOALS = {"single_per_s": 1000, "single_p99_ms": 25.0, "batched_per_s": 5000, "single_to_baseline": 0.5}


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


def start_ledger(database_url: str, nats_url: str, port: int, metrics_port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "MODELHUB_LEDGER_DATABASE_URL": database_url,
        "MODELHUB_LEDGER_NATS_URL": nats_url,
        "MODELHUB_LEDGER_GRPC_PORT": str(port),
        "MODELHUB_LEDGER_METRICS_PORT": str(metrics_port),
        "MODELHUB_LEDGER_JWT_SECRET": SECRET,
        "MODELHUB_LEDGER_LOG_LEVEL": "WARNING",
        "MODELHUB_LEDGER_TIP_FEE_BASIS_POINTS": str(TIP_FEE_BASIS_POINTS),
        "MODELHUB_LEDGER_WORKERS": str(WORKERS),
    }
    if BATCHES_IN_FLIGHT:
        env["MODELHUB_LEDGER_BATCHES_IN_FLIGHT"] = BATCHES_IN_FLIGHT
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


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def server_pids(ledger: subprocess.Popen[bytes]) -> list[int]:
    """The processes serving: the ledger itself, or its workers."""
    return [ledger.pid] if WORKERS == 1 else children(ledger.pid)


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU time of a process so far (Linux /proc), with its exited children's if asked."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped_children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process, its live children and the children it has reaped (PostgreSQL's backends)."""
    return cpu_seconds(pid, reaped_children=True) + sum(cpu_seconds(c) for c in children(pid))


def scrape(port: int) -> dict[str, float]:
    """The batcher's histogram sums and counts from one worker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    pattern = r"^(modelhub_ledger_batch_\w+_(?:sum|count)) ([0-9.e+]+)$"
    return {m.group(1): float(m.group(2)) for m in re.finditer(pattern, text, re.MULTILINE)}


def batch_stats(before: list[dict[str, float]], after: list[dict[str, float]], seconds: float) -> dict[str, Any]:
    """Batches formed during a phase, over all workers."""

    def delta(name: str) -> float:
        return sum(a.get(name, 0.0) - b.get(name, 0.0) for b, a in zip(before, after, strict=True))

    batches = delta("modelhub_ledger_batch_requests_count")
    if not batches:
        return {"batches": 0}
    return {
        "batches": int(batches),
        "per_s": round(batches / seconds),
        "mean_requests": round(delta("modelhub_ledger_batch_requests_sum") / batches, 1),
        "mean_ms": round(delta("modelhub_ledger_batch_seconds_sum") * 1000 / batches, 2),
        "mean_queue_ms": round(
            delta("modelhub_ledger_batch_queue_seconds_sum")
            * 1000
            / max(1.0, delta("modelhub_ledger_batch_queue_seconds_count")),
            2,
        ),
    }


def check_audit(database_url: str) -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "modelhub.ledger.audit", "--database-url", database_url],
        check=False,
        capture_output=True,
        text=True,
    )
    return result.returncode == 0


def postmaster_pid(postgres: PostgresServer) -> int:
    return int((postgres.data_dir / "postmaster.pid").read_text().split()[0])


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="modelhub-bench-ledger-"))
    root.chmod(0o755)  # PostgreSQL runs as the postgres user when we are root
    postgres = PostgresServer(root / "postgres", durable=True)
    nats_server = NatsServer(root / "nats")
    postgres.start()
    nats_server.start()
    ledger: subprocess.Popen[bytes] | None = None
    phases: dict[str, dict[str, Any]] = {}
    baselines: dict[int, dict[str, Any]] = {}
    try:
        baseline_url = postgres.create_database("baseline")
        commit_latency = asyncio.run(measure_baseline(baseline_url, 1, 3.0))

        database_url = postgres.create_database("ledger")
        upgrade(database_url)
        port, metrics_port = free_port(), free_port()
        address = f"127.0.0.1:{port}"
        ledger = start_ledger(database_url, nats_server.url, port, metrics_port)
        asyncio.run(wait_ready(address))
        pids = server_pids(ledger)
        pg_pid, nats_pid = postmaster_pid(postgres), nats_server.pid
        assert nats_pid is not None
        metrics_ports = [metrics_port + i for i in range(len(pids))] if WORKERS > 1 else [metrics_port]

        def phase(name: str, mode: str, concurrency: int, batch_size: int = 0) -> None:
            asyncio.run(wait_relayed(database_url, nats_server.url))
            scraped = [scrape(p) for p in metrics_ports]
            ledger_before = [cpu_seconds(pid) for pid in pids]
            pg_before, nats_before = tree_cpu_seconds(pg_pid), cpu_seconds(nats_pid)
            started = time.perf_counter()
            run = load(address, mode, concurrency, SECONDS, batch_size)
            wall = time.perf_counter() - started
            ledger_cpu = [round(cpu_seconds(pid) - b, 2) for pid, b in zip(pids, ledger_before, strict=True)]
            pg_cpu = tree_cpu_seconds(pg_pid) - pg_before
            nats_cpu = cpu_seconds(nats_pid) - nats_before
            transfers = max(1, run["all_transfers"])
            result: dict[str, Any] = {"in_flight": concurrency}
            if batch_size:
                result["transfers_per_call"] = batch_size
                result["transfers_per_s"] = round(run["transfers"] / run["elapsed_s"])
                result["failures"] = run["failures"]
                result["calls"] = summary(run["calls"], run["elapsed_s"], run["latencies_ms"])
            else:
                result |= summary(run["calls"], run["elapsed_s"], run["latencies_ms"])
            result["batches"] = batch_stats(scraped, [scrape(p) for p in metrics_ports], wall)
            result["cpu_ms_per_transfer"] = {
                "ledger": round(sum(ledger_cpu) * 1000 / transfers, 3),
                "postgres": round(pg_cpu * 1000 / transfers, 3),
                "nats": round(nats_cpu * 1000 / transfers, 3),
                "client": round(run["cpu_s"] * 1000 / transfers, 3),
            }
            result["cpu_s"] = {
                "ledger_processes": ledger_cpu,
                "postgres": round(pg_cpu, 2),
                "nats": round(nats_cpu, 2),
                "client": run["cpu_s"],
                "phase_wall_s": round(wall, 1),
            }
            result["load_average_1m_after"] = round(os.getloadavg()[0], 2)
            phases[name] = result
            print(name, json.dumps(result), flush=True)

        load(address, "fund", 1, 0)
        for concurrency in SWEEP:
            baselines[concurrency] = asyncio.run(measure_baseline(baseline_url, concurrency, SECONDS))
            baselines[concurrency]["load_average_1m_after"] = round(os.getloadavg()[0], 2)
            print("baseline", concurrency, json.dumps(baselines[concurrency]), flush=True)
            phase(f"single_{concurrency}", "single", concurrency)
        phase(f"tip_{CONCURRENCY}", "tip", CONCURRENCY)
        for size, in_flight in BATCHED:
            phase(f"batch_{size}x{in_flight}", "batch", in_flight, size)
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

    single_goals = []
    for concurrency in SWEEP:
        single, baseline = phases[f"single_{concurrency}"], baselines[concurrency]
        ratio = round(single["per_s"] / baseline["per_s"], 3)
        single_goals.append(
            {
                "in_flight": concurrency,
                "per_s": single["per_s"],
                "p99_ms": single["p99_ms"],
                "baseline_per_s": baseline["per_s"],
                "ratio_to_baseline": ratio,
                "rate_met": single["per_s"] >= GOALS["single_per_s"],
                "p99_met": single["p99_ms"] <= GOALS["single_p99_ms"],
                "ratio_met": ratio >= GOALS["single_to_baseline"],
            }
        )
    batched_best = max((p for n, p in phases.items() if n.startswith("batch_")), key=lambda p: p["transfers_per_s"])
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
            "ledger_batches_in_flight": BATCHES_IN_FLIGHT or "service default",
            "client": f"bench/ledger/load.py in its own process, grpc.aio, {CHANNELS} channels (connections)",
            "measure_seconds": SECONDS,
            "users": 2_000,
            "single": "Transfer RPC, one TIP leg between two random users, authenticated as the payer",
            "tip": f"Tip RPC, {TIP_FEE_BASIS_POINTS} bp fee, {CONCURRENCY} in flight: two linked legs, every call "
            "credits PLATFORM_FEES",
            "batched": "BatchTransfer RPCs of user-to-user transfers, as a service",
            "baseline": "psycopg async, one connection per client, INSERT of one row + COMMIT per transaction; "
            "measured just before the single-transfer phase of the same concurrency",
            "cpu": "CPU seconds over the whole phase (2 s warm-up included) divided by the transfers made in it; "
            "postgres = all its processes; client = the load generator",
        },
        "commit_latency_one_connection": commit_latency,
        "baselines": {str(c): b for c, b in baselines.items()},
        "phases": phases,
        "audit_passed": audit_ok,
        "goals": {
            "targets": {
                "single_transfers_per_s": GOALS["single_per_s"],
                "single_p99_ms": GOALS["single_p99_ms"],
                "batched_transfers_per_s": GOALS["batched_per_s"],
                "single_to_baseline_ratio": GOALS["single_to_baseline"],
            },
            "judged": "each single-transfer goal at every concurrency of the sweep, against the baseline measured "
            "at the same concurrency; the rate and p99 goals count as met only together at one concurrency",
            "single": single_goals,
            "single_rate_and_p99_met_together": any(g["rate_met"] and g["p99_met"] for g in single_goals),
            "single_ratio_met_at": [g["in_flight"] for g in single_goals if g["ratio_met"]],
            "batched": {
                "best_transfers_per_s": batched_best["transfers_per_s"],
                "at": f"{batched_best['transfers_per_call']} per call, {batched_best['in_flight']} in flight",
                "met": batched_best["transfers_per_s"] >= GOALS["batched_per_s"],
            },
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["goals"], indent=2))


if __name__ == "__main__":
    main()
