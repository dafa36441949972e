"""`make down`: stop a platform started by `make up` (in another terminal) with the same state directory.

Sends SIGTERM to the `up` process named in DIR/up.pid and waits until it has stopped everything. If no
`up` runs, stops whatever a crashed one left behind (services, NATS, PostgreSQL).

    python -m modelhub.devstack.down --state-dir DIR [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from modelhub.devstack import procs
from modelhub.devstack.up import Layout, PidLock, StartupError, running_pid, stop_leftovers


def down(state_dir: Path, timeout: float = 120.0) -> int:
    """Stop the platform using state_dir; the exit status."""
    layout = Layout(state_dir.absolute())
    pid = running_pid(layout.pid_file)
    if pid is None:
        if not layout.root.is_dir():
            print(f"modelhub is not running (no state directory {layout.root})")
            return 0
        lock = PidLock(layout.pid_file)
        try:
            lock.acquire()  # keeps a concurrent `up` from starting while we clean up
        except StartupError as error:  # an `up` started meanwhile
            print(error, file=sys.stderr)
            return 1
        try:
            leftovers = stop_leftovers(layout)
        finally:
            lock.release()
        for leftover in leftovers:
            print(f"stopped {leftover}, left running by a run that did not stop cleanly")
        print("modelhub is not running")
        return 0

    print(f"stopping modelhub (pid {pid}) ...", flush=True)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running_pid(layout.pid_file) == pid and procs.alive(pid):
        if time.monotonic() > deadline:
            print(f"modelhub (pid {pid}) is still stopping after {timeout:.0f}s", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print("modelhub stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelhub.devstack.down", description=__doc__.partition("\n")[0])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("MODELHUB_STATE_DIR", ".state")),
        help="the state directory `up` was started with ($MODELHUB_STATE_DIR or .state)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for everything to stop")
    args = parser.parse_args(argv)
    return down(args.state_dir, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
