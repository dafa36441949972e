"""Several server processes on one port: `MODELHUB_LEDGER_WORKERS=N python -m modelhub.ledger`.

The parent migrates the database, then starts N workers, each a fresh `python -m modelhub.ledger --worker I`
(spawned, never forked: grpc and fork do not mix) running the whole service with its own event loop,
engine and gRPC server, bound to the same port with SO_REUSEPORT: the kernel spreads incoming
connections (not calls: one HTTP/2 connection stays on one worker) over them. The parent forwards
SIGTERM and SIGINT to every worker, each stops gracefully as one process would, and the parent exits
once all have. If a worker dies on its own, the parent stops the others and exits with its status, so
the supervisor above (systemd, Kubernetes) restarts the service as a whole. A worker whose parent dies
gets SIGTERM (Linux).

- Connections: db_pool_size and db_max_overflow are for the whole service; each worker gets its share,
  rounded up, so N workers open about as many connections as one process did.
- Background work runs in worker 0 only: the outbox relay, the rewards consumer and the hold expiry.
  Each would be safe in every worker (the relay publishes only under its session advisory lock, the
  others wait as standbys; "ledger-rewards" is one durable pull consumer whose reward_grants rows are
  locked per event; expiry locks each hold's row and checks it is still due), but extra copies would only
  poll and contend on one machine: the relay has one leader anyway. Since the parent stops the whole
  service when a worker dies, worker 0 is never missing while the others serve.
- metrics_port (when not 0) becomes metrics_port + I for worker I.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from modelhub.ledger.config import LedgerSettings

log = logging.getLogger(__name__)

PARENT_PID_ENV = "MODELHUB_LEDGER_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def worker_env(settings: LedgerSettings, index: int) -> dict[str, str]:
    """The environment of worker `index`: the parent's, with its share of the pool and of the duties."""
    n = settings.workers
    prefix = settings.model_config.get("env_prefix", "")
    env = dict(os.environ)
    overrides: dict[str, object] = {
        "DB_POOL_SIZE": math.ceil(settings.db_pool_size / n),
        "DB_MAX_OVERFLOW": math.ceil(settings.db_max_overflow / n),
        "MIGRATE_ON_START": "false",  # the parent did
    }
    if index > 0:
        overrides |= {"RUN_RELAY": "false", "RUN_REWARDS": "false", "RUN_HOLD_EXPIRY": "false"}
    if settings.metrics_port:
        overrides["METRICS_PORT"] = settings.metrics_port + index
    env.update({f"{prefix}{name}": str(value) for name, value in overrides.items()})
    env[PARENT_PID_ENV] = str(os.getpid())
    return env


def die_with_parent() -> None:
    """In a worker: get SIGTERM when the parent dies (Linux; elsewhere a no-op)."""
    parent = os.environ.get(PARENT_PID_ENV)
    if not sys.platform.startswith("linux") or not parent:
        return
    import ctypes  # Linux only

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(parent):  # the parent died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)


def supervise(settings: LedgerSettings) -> int:
    """Run `settings.workers` worker processes until they have all exited; returns the exit status."""
    if settings.grpc_port == 0:
        raise SystemExit("MODELHUB_LEDGER_WORKERS > 1 needs a fixed MODELHUB_LEDGER_GRPC_PORT, not 0")
    if settings.migrate_on_start:
        from modelhub.ledger.adapters import migrations  # no database code unless needed

        migrations.upgrade(settings.database_url)
    workers: list[subprocess.Popen[bytes]] = []
    stopping = False
    forwarded: set[int] = set()

    def stop_all(sig: int) -> None:
        forwarded.add(sig)
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(sig)

    def on_signal(sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        log.info("received %s: stopping %d workers", signal.Signals(sig).name, len(workers))
        stopping = True
        stop_all(sig)  # a second signal is forwarded too: the workers then stop at once

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        for index in range(settings.workers):
            command = [sys.executable, "-m", "modelhub.ledger", "--worker", str(index)]
            # A group of its own: a terminal's Ctrl-C reaches the parent only, which forwards it once.
            workers.append(subprocess.Popen(command, env=worker_env(settings, index), process_group=0))
            if stopping:  # a signal came while starting: this one has not had it
                forwarded.add(signal.SIGTERM)
                workers[-1].send_signal(signal.SIGTERM)
        log.info("started %d ledger workers on port %d", settings.workers, settings.grpc_port)
        running = set(range(len(workers)))
        while running:
            for index in sorted(running):
                code = workers[index].poll()
                if code is None:
                    continue
                running.discard(index)
                if code < 0 and -code in forwarded:
                    # Ended by the signal the parent forwarded, before the worker had installed its handlers:
                    # it was still starting (not serving yet; any relay batch it began is crash-safe), so
                    # this is a clean stop, not a failure.
                    code = 0
                if code != 0 and status == 0:
                    status = code if code > 0 else 128 - code  # killed by signal -code
                if not stopping:
                    log.error("ledger worker %d exited (%s): stopping the others", index, code)
                    stopping = True
                    stop_all(signal.SIGTERM)
            time.sleep(0.05)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for worker in workers:  # only if the parent itself failed
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return status
