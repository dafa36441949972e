"""Processes of the local platform: pid files that survive a crash, and stopping processes we did not fork.

A pid file here holds the pid and the process's command line (JSON), so a pid reused by an unrelated
process after a crash or reboot is never mistaken for ours.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path


def cmdline(pid: int) -> list[str] | None:
    """The command line of a live process, or None if it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None  # zombie or kernel thread
    return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    return cmdline(pid) is not None


def write_pid_file(path: Path, pid: int) -> None:
    """Record pid and its command line in path."""
    # Right after fork/exec the kernel may not show the new command line yet: give it a moment.
    deadline = time.monotonic() + 2.0
    while (command := cmdline(pid)) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "cmdline": command}) + "\n")


def read_pid_file(path: Path) -> int | None:
    """The pid recorded in path if that process still runs the recorded command line, else None."""
    try:
        record = json.loads(path.read_text())
        pid = int(record["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    current = cmdline(pid)
    return pid if current is not None and current == record.get("cmdline") else None


def terminate(pid: int, timeout: float = 10.0, sig: signal.Signals = signal.SIGTERM) -> bool:
    """Send sig, wait up to timeout for the process to go, then SIGKILL it. True if it went on its own.

    A process that leads its own process group (our services and NATS do) is signalled with its group.
    """
    if not _send(pid, sig):
        return True
    if wait_gone(pid, timeout):
        return True
    _send(pid, signal.SIGKILL)
    wait_gone(pid, 10.0)
    return False


def _send(pid: int, sig: signal.Signals) -> bool:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until the process is gone (or a zombie); False on timeout."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server could not bind host:port right now (something listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False
