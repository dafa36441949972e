"""A real PostgreSQL server in a directory of our own, run as a child process.

PostgreSQL refuses to run as root; when we are root the server runs as the unprivileged `postgres`
user (present wherever the PostgreSQL packages are installed), with its data directory owned by it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from modelhub.devstack.ports import free_port, wait_for_port

SUPERUSER = "modelhub"


def find_bindir() -> Path:
    """Directory of the PostgreSQL server binaries: $MODELHUB_PG_BINDIR, else the newest installed."""
    if env := os.environ.get("MODELHUB_PG_BINDIR"):
        return Path(env)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if candidates:
        return Path(candidates[-1])
    if initdb := shutil.which("initdb"):
        return Path(initdb).parent
    raise FileNotFoundError(
        "PostgreSQL server binaries not found: install PostgreSQL or set MODELHUB_PG_BINDIR to its bin directory"
    )


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


@dataclass
class PostgresServer:
    """One PostgreSQL cluster under `root` (data in root/data, log in root/postgres.log).

    `durable=False` turns off fsync: right for throwaway test clusters, never for data you keep.
    """

    root: Path
    port: int = 0
    durable: bool = True
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        self.root = Path(self.root).absolute()
        self.port = self.port or free_port()
        self._bindir = find_bindir()

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        """A libpq connection URL for `database` on this server."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def initialize(self) -> None:
        """Create the cluster unless it exists already (data survives restarts)."""
        self.root.mkdir(parents=True, exist_ok=True)
        _give_to_server_user(self.root)
        if (self.data_dir / "PG_VERSION").exists():
            return
        cmd = [str(self._bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "-E", "UTF8"]
        cmd += ["--auth=trust", "--locale=C"]
        if not self.durable:
            cmd.append("--no-sync")
        result = subprocess.run(_as_server_user(cmd), check=False, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed in {self.data_dir} (when run as root, every parent directory must be "
                f"searchable by the postgres user): {result.stderr.strip()}"
            )

    def start(self) -> None:
        """Initialize if needed, start the server and wait until it accepts connections."""
        self.initialize()
        options = [
            f"-p {self.port}",
            f"-c listen_addresses={self.host}",
            f"-c unix_socket_directories={self.root}",
            "-c max_connections=300",
            "-c shared_buffers=256MB",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        cmd = [str(self._bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file)]
        cmd += ["-o", " ".join(options), "-w", "-t", "60", "start"]
        result = subprocess.run(_as_server_user(cmd), check=False, capture_output=True, text=True)
        if result.returncode != 0:
            log = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr.strip()}\n{log}")
        wait_for_port(self.port)

    def running_pid(self) -> int | None:
        """Pid of a postmaster serving this data directory (this run's or one left by a crashed run), if any.

        A postmaster.pid whose process is gone, or is not a postgres of this data directory, is stale.
        """
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if Path(argv[0].decode()).name == "postgres" and str(self.data_dir).encode() in argv:
            return pid
        return None

    def remove_stale_pid_file(self) -> bool:
        """Delete postmaster.pid if no postmaster of ours runs (after a crash); True if one was deleted."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists() or self.running_pid() is not None:
            return False
        pid_file.unlink(missing_ok=True)
        return True

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are closed, committed data is kept)."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        cmd = [str(self._bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]
        subprocess.run(_as_server_user(cmd), check=False, capture_output=True)

    def create_database(self, name: str) -> str:
        """Create database `name` if it does not exist; return its URL."""
        return create_database(self.url(), name)


def create_database(admin_url: str, name: str) -> str:
    """Create database `name` through the server at admin_url if missing; return the new database's URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name`, closing any sessions still connected to it."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
