"""MODELHUB_LEDGER_WORKERS: what each worker process is told, and that workers do not outlive their parent
(serving and SIGTERM with 2 workers: test_events)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import grpc.aio
import pytest

from modelhub.devstack.nats import NatsServer
from modelhub.devstack.ports import free_port
from modelhub.ledger.config import LedgerSettings
from modelhub.ledger.workers import PARENT_PID_ENV, supervise, worker_env

from .conftest import SECRET


def test_workers_share_the_pool_and_only_worker_0_runs_the_background_work(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = LedgerSettings(workers=3, db_pool_size=20, db_max_overflow=10, metrics_port=9100)
    first, last = worker_env(settings, 0), worker_env(settings, 2)
    for env in (first, last):
        assert (env["MODELHUB_LEDGER_DB_POOL_SIZE"], env["MODELHUB_LEDGER_DB_MAX_OVERFLOW"]) == ("7", "4")
        assert env["MODELHUB_LEDGER_MIGRATE_ON_START"] == "false"
        assert PARENT_PID_ENV in env
    assert "MODELHUB_LEDGER_RUN_RELAY" not in first or first["MODELHUB_LEDGER_RUN_RELAY"] != "false"
    assert (first["MODELHUB_LEDGER_METRICS_PORT"], last["MODELHUB_LEDGER_METRICS_PORT"]) == ("9100", "9102")
    for duty in ("RUN_RELAY", "RUN_REWARDS", "RUN_HOLD_EXPIRY"):
        assert last[f"MODELHUB_LEDGER_{duty}"] == "false"
    for name, value in last.items():
        if name.startswith("MODELHUB_LEDGER_"):
            monkeypatch.setenv(name, value)
    worker = LedgerSettings()  # as worker 2 reads its environment
    assert (worker.db_pool_size, worker.db_max_overflow, worker.metrics_port) == (7, 4, 9102)
    assert (worker.run_relay, worker.run_rewards, worker.run_hold_expiry, worker.migrate_on_start) == (False,) * 4


def test_several_workers_need_a_fixed_port() -> None:
    with pytest.raises(SystemExit, match="GRPC_PORT"):
        supervise(LedgerSettings(workers=2, grpc_port=0))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal and /proc are Linux's")
async def test_workers_stop_when_the_parent_is_killed(migrated_url: str, nats_server: NatsServer) -> None:
    port = free_port()
    env = os.environ | {
        "MODELHUB_LEDGER_DATABASE_URL": migrated_url,
        "MODELHUB_LEDGER_NATS_URL": nats_server.url,
        "MODELHUB_LEDGER_GRPC_PORT": str(port),
        "MODELHUB_LEDGER_JWT_SECRET": SECRET,
        "MODELHUB_LEDGER_WORKERS": "2",
        "MODELHUB_LEDGER_RUN_REWARDS": "false",
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelhub.ledger", env=env)
    workers: list[int] = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
        workers = [int(pid) for pid in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()]
        assert len(workers) == 2
        process.kill()
        await process.wait()
        for _ in range(300):  # orphans, reaped by init once they have stopped gracefully
            if not any(Path(f"/proc/{pid}").exists() for pid in workers):
                break
            await asyncio.sleep(0.1)
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def test_sigterm_while_workers_start_is_a_clean_stop(migrated_url: str, nats_server: NatsServer) -> None:
    """A SIGTERM that reaches workers before they have installed their handlers ends them by the signal's
    default action; they were not serving yet, so the parent still exits 0 (it used to exit 143)."""
    env = os.environ | {
        "MODELHUB_LEDGER_DATABASE_URL": migrated_url,
        "MODELHUB_LEDGER_NATS_URL": nats_server.url,
        "MODELHUB_LEDGER_GRPC_PORT": str(free_port()),
        "MODELHUB_LEDGER_JWT_SECRET": SECRET,
        "MODELHUB_LEDGER_WORKERS": "2",
        "MODELHUB_LEDGER_RUN_REWARDS": "false",
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelhub.ledger", env=env)
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    try:
        for _ in range(300):  # both workers exist, still importing (long before they serve)
            if children.exists() and len(children.read_text().split()) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(children.read_text().split()) == 2
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
