"""`make up` / `make down`: the local platform as a user runs it, in a subprocess, on free ports."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import psycopg
import pytest

from modelhub.devstack import procs
from modelhub.devstack.ports import free_port
from modelhub.devstack.up import StartupError, check_reachable_by_postgres

TESTS_DIR = Path(__file__).parent


class Up:
    """`python -m modelhub.devstack.up` running in the background, its output collected line by line."""

    def __init__(self, state_dir: Path, env: dict[str, str], *args: str) -> None:
        self.lines: list[str] = []
        self._up = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modelhub.devstack.up", "--state-dir", str(state_dir), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=state_dir.parent,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.strip() == "modelhub is up":
                self._up.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_up(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._up.wait(0.1) and self.process.poll() is None and time.monotonic() < deadline:
            pass
        assert self._up.is_set(), f"`up` did not come up (exit code {self.process.poll()}):\n{self.output}"

    def wait(self, timeout: float = 60.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self, sig: signal.Signals = signal.SIGINT) -> int:
        self.process.send_signal(sig)
        return self.wait()


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: its 0700 parents would shut out the postgres user when we are root.
    root = Path(tempfile.mkdtemp(prefix="modelhub-test-up-"))
    root.chmod(0o755)
    try:
        yield root / "state"
    finally:
        down = [sys.executable, "-m", "modelhub.devstack.down", "--state-dir", str(root / "state")]
        subprocess.run(down, capture_output=True, timeout=120, check=False)  # in case a test failed
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def env() -> dict[str, str]:
    """Environment with free, non-default ports for everything."""
    return {
        **os.environ,
        "MODELHUB_PG_PORT": str(free_port()),
        "MODELHUB_NATS_PORT": str(free_port()),
        "MODELHUB_NATS_MONITOR_PORT": str(free_port()),
        "MODELHUB_FAKE_GRPC_PORT": str(free_port()),
        "MODELHUB_FAKE_METRICS_PORT": str(free_port()),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
    }


def pg_url(env: dict[str, str], database: str = "postgres") -> str:
    return f"postgresql://modelhub@127.0.0.1:{env['MODELHUB_PG_PORT']}/{database}"


def nats_url(env: dict[str, str]) -> str:
    return f"nats://127.0.0.1:{env['MODELHUB_NATS_PORT']}"


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def platform_pids(state: Path) -> dict[str, int]:
    """Pids of the platform's children, from the pid files `up` and PostgreSQL keep."""
    pids = {"postgres": int((state / "postgres/data/postmaster.pid").read_text().split()[0])}
    for pid_file in (state / "run").glob("*.pid"):
        pids[pid_file.stem] = json.loads(pid_file.read_text())["pid"]
    return pids


def assert_all_stopped(pids: dict[str, int], env: dict[str, str], *port_variables: str) -> None:
    assert [name for name, pid in pids.items() if procs.alive(pid)] == []
    variables = ["MODELHUB_PG_PORT", "MODELHUB_NATS_PORT", "MODELHUB_NATS_MONITOR_PORT", *port_variables]
    assert [v for v in variables if listening(int(env[v]))] == []


async def jetstream_round_trip(url: str, publish: bool) -> int:
    """Messages in stream KEEP (created, and one published, when publish)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        if publish:
            await js.add_stream(name="KEEP", subjects=["keep.>"])
            await js.publish("keep.one", b"survives restarts")
        info = await js.stream_info("KEEP")
        return info.state.messages
    finally:
        await nc.close()


def test_platform_without_services_keeps_its_data_across_restarts(state_dir: Path, env: dict[str, str]) -> None:
    state_dir.mkdir()
    (state_dir / "up.pid").write_text("999999\n")  # stale, as after a crash: must not stop `up`

    up = Up(state_dir, env, "--no-services")
    up.wait_up()
    assert "services not started" in up.output
    assert pg_url(env) in up.output
    assert nats_url(env) in up.output
    assert "sync_interval: 1s" in (state_dir / "nats/nats.conf").read_text()
    with psycopg.connect(pg_url(env), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('written before the restart')")
    assert asyncio.run(jetstream_round_trip(nats_url(env), publish=True)) == 1

    second = Up(state_dir, env, "--no-services")  # same state directory: refused
    assert second.wait() == 1
    assert "already running" in second.output

    pids = platform_pids(state_dir)
    assert up.stop(signal.SIGINT) == 0, up.output
    assert up.lines[-1] == "modelhub stopped"
    assert_all_stopped(pids, env)
    assert not (state_dir / "up.pid").exists()

    up = Up(state_dir, env, "--no-services")
    up.wait_up()
    with psycopg.connect(pg_url(env)) as conn:
        assert conn.execute("SELECT note FROM kept").fetchall() == [("written before the restart",)]
    assert asyncio.run(jetstream_round_trip(nats_url(env), publish=False)) == 1
    assert up.stop(signal.SIGTERM) == 0, up.output


def test_service_is_migrated_started_and_stopped_by_down_even_after_a_crash(
    state_dir: Path, env: dict[str, str]
) -> None:
    grpc_port = int(env["MODELHUB_FAKE_GRPC_PORT"])
    up = Up(state_dir, env, "--service", "devstack_fake_service:SPEC")
    up.wait_up()
    assert f"127.0.0.1:{grpc_port}" in up.output
    assert "state/logs/fake.log" in up.output  # relative to the working directory

    with socket.create_connection(("127.0.0.1", grpc_port)) as conn:
        config = json.loads(conn.makefile().readline())
    assert config == {
        "MODELHUB_FAKE_DATABASE_URL": pg_url(env, "fake_db"),
        "MODELHUB_FAKE_NATS_URL": nats_url(env),
        "MODELHUB_FAKE_GRPC_PORT": str(grpc_port),
        "MODELHUB_FAKE_METRICS_PORT": env["MODELHUB_FAKE_METRICS_PORT"],
        "MODELHUB_FAKE_DATA_DIR": str(state_dir / "data/fake"),
    }

    # A crash of `up` itself leaves PostgreSQL, NATS and the service running: the next `up` stops them.
    up.stop(signal.SIGKILL)
    leftover = platform_pids(state_dir)
    assert all(procs.alive(pid) for pid in leftover.values())
    up = Up(state_dir, env, "--service", "devstack_fake_service:SPEC")
    up.wait_up()
    assert up.output.count("left running by an earlier run") == 3, up.output
    assert not any(procs.alive(pid) for pid in leftover.values())
    with psycopg.connect(pg_url(env, "fake_db")) as conn:
        assert conn.execute("SELECT count(*) FROM fake_migrated").fetchone() == (2,)  # migrated each start

    pids = platform_pids(state_dir)
    down = subprocess.run(
        [sys.executable, "-m", "modelhub.devstack.down", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert down.returncode == 0, down.stderr
    assert "modelhub stopped" in down.stdout
    assert up.wait() == 0, up.output
    assert_all_stopped(pids, env, "MODELHUB_FAKE_GRPC_PORT", "MODELHUB_FAKE_METRICS_PORT")
    assert "fake stopped" in (state_dir / "logs/fake.log").read_text()  # got SIGTERM, not SIGKILL

    again = subprocess.run(
        [sys.executable, "-m", "modelhub.devstack.down", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0
    assert "not running" in again.stdout


def test_a_taken_port_fails_clearly_and_starts_nothing(state_dir: Path, env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(env["MODELHUB_NATS_PORT"])))
        taken.listen()
        up = Up(state_dir, env, "--no-services")
        assert up.wait() == 1
    assert f"port {env['MODELHUB_NATS_PORT']} for NATS is already in use" in up.output
    assert "MODELHUB_NATS_PORT" in up.output
    assert not listening(int(env["MODELHUB_PG_PORT"]))
    assert not (state_dir / "postgres").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")
def test_a_state_dir_the_postgres_user_cannot_reach_is_refused_clearly() -> None:
    private = Path(tempfile.mkdtemp(prefix="modelhub-test-private-"))  # mode 0700, like /root
    try:
        (private / "state").mkdir()
        with pytest.raises(StartupError, match=f"cannot enter {private} .*MODELHUB_STATE_DIR"):
            check_reachable_by_postgres(private / "state")
    finally:
        shutil.rmtree(private)
