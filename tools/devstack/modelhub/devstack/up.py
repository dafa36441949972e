"""`make up`: the whole platform on one machine, in the foreground, until Ctrl-C or `make down`.

Starts a durable PostgreSQL and a NATS server with JetStream (state under the state directory, so data
survives restarts), then for each installed service (entry points in group `modelhub.services`, see
modelhub.core.service_spec): creates its database, runs its migrations and starts it as a child process.
Prints where everything listens, then "modelhub is up". SIGINT, SIGTERM or SIGHUP stop everything in
order: services, then NATS (graceful), then PostgreSQL (fast shutdown).

    python -m modelhub.devstack.up --state-dir DIR [--service module:SPEC ...]

Layout of DIR: up.pid (the running `up`, locked while it runs), postgres/ (cluster and postgres.log),
nats/ (JetStream store and nats.log), logs/<service>.log, data/<service>/, run/<name>.pid (children's
pids, to stop what a crashed run left behind).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import grp
import os
import pwd
import signal
import stat
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from modelhub.core.service_spec import ServiceSpec
from modelhub.devstack import procs, services
from modelhub.devstack.nats import NatsServer
from modelhub.devstack.postgres import PostgresServer

DEFAULT_PG_PORT = 55432
DEFAULT_NATS_PORT = 4222
DEFAULT_NATS_MONITOR_PORT = 8222
# JetStream fsyncs every second: a machine crash loses at most ~1s of acknowledged messages, at a modest
# cost in publish throughput ("always" would fsync each write). See docs/operations.md.
NATS_SYNC_INTERVAL = "1s"
SERVICE_READY_TIMEOUT = 60.0
MIGRATE_TIMEOUT = 600.0
MIGRATE_SNIPPET = "import sys; from modelhub.core.service_spec import run_migrate; run_migrate(*sys.argv[1:3])"


class StartupError(Exception):
    """The platform cannot start; the message says why and what to do."""


class Shutdown(BaseException):
    """Raised by the signal handler: stop everything (a BaseException, like KeyboardInterrupt)."""


def say(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class Layout:
    """Where things live under the state directory."""

    root: Path

    @property
    def pid_file(self) -> Path:
        return self.root / "up.pid"

    @property
    def postgres(self) -> Path:
        return self.root / "postgres"

    @property
    def nats(self) -> Path:
        return self.root / "nats"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    def log_file(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def data_dir(self, service: str) -> Path:
        return self.root / "data" / service

    def child_pid_file(self, name: str) -> Path:
        return self.run / f"{name}.pid"


class PidLock:
    """DIR/up.pid: holds the pid of the running `up`, which keeps an exclusive flock on it while it runs.

    The lock, not the pid, says whether `up` runs: a pid file left by a crash is never locked.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode().strip() or "?"
            os.close(fd)
            raise StartupError(
                f"modelhub is already running with state directory {self.path.parent} (pid {other}); "
                "stop it with `make down` (or Ctrl-C in its terminal)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None


def running_pid(pid_file: Path) -> int | None:
    """Pid of the `up` that holds pid_file locked, or None (a stale pid file is removed)."""
    try:
        fd = os.open(pid_file, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode().strip()
            return int(text) if text.isdigit() else None
        pid_file.unlink(missing_ok=True)  # nobody holds it: left by a crash
        return None
    finally:
        os.close(fd)


def stop_leftovers(layout: Layout) -> list[str]:
    """Stop what a crashed `up` left running in this state directory; the names of what was stopped.

    Only call this while no `up` runs with this state directory (hold its PidLock).
    """
    stopped = []
    if layout.run.is_dir():
        for pid_file in sorted(layout.run.glob("*.pid"), key=lambda p: p.stem == "nats"):  # NATS last
            pid = procs.read_pid_file(pid_file)
            if pid is not None:
                procs.terminate(pid, timeout=30.0)
                stopped.append(f"{pid_file.stem} (pid {pid})")
            pid_file.unlink(missing_ok=True)
    if (layout.postgres / "data" / "PG_VERSION").exists():
        postgres = PostgresServer(layout.postgres)
        pid = postgres.running_pid()
        if pid is not None:
            postgres.stop()
            if procs.alive(pid):
                procs.terminate(pid, timeout=60.0, sig=signal.SIGINT)  # SIGINT = fast shutdown
            stopped.append(f"PostgreSQL (pid {pid})")
        postgres.remove_stale_pid_file()
    return stopped


def env_port(variable: str, default: int) -> int:
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise StartupError(f"{variable}={value!r} is not a TCP port number")
    return int(value)


@dataclass
class Service:
    """One service as run by the platform."""

    spec: ServiceSpec
    grpc_port: int
    metrics_port: int
    log_file: Path
    data_dir: Path
    database_url: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    reported_exit: bool = False

    @classmethod
    def configure(cls, spec: ServiceSpec, layout: Layout) -> Service:
        prefix = spec.env_prefix
        return cls(
            spec=spec,
            grpc_port=env_port(f"{prefix}GRPC_PORT", spec.default_grpc_port),
            metrics_port=env_port(f"{prefix}METRICS_PORT", spec.metrics_port),
            log_file=layout.log_file(spec.name),
            data_dir=layout.data_dir(spec.name),
        )

    def environment(self, nats_url: str) -> dict[str, str]:
        prefix = self.spec.env_prefix
        return {
            **os.environ,
            f"{prefix}DATABASE_URL": self.database_url,
            f"{prefix}NATS_URL": nats_url,
            f"{prefix}GRPC_PORT": str(self.grpc_port),
            f"{prefix}METRICS_PORT": str(self.metrics_port),
            f"{prefix}DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
        }


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\n".join(f"    | {line}" for line in text)


def _make_dirs(path: Path) -> None:
    """mkdir -p, with the directories it creates world-searchable (PostgreSQL may run as another user)."""
    missing = [p for p in [path, *path.parents] if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        directory.chmod(0o755)


def check_reachable_by_postgres(path: Path) -> None:
    """As root, PostgreSQL runs as `postgres`, which must be able to enter every directory above its data."""
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise StartupError("running as root needs a `postgres` user to run PostgreSQL as") from None
    groups = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if "postgres" in g.gr_mem}
    for directory in [*reversed(path.parents), path]:
        st = directory.stat()
        if not (
            st.st_mode & stat.S_IXOTH
            or (st.st_uid == user.pw_uid and st.st_mode & stat.S_IXUSR)
            or (st.st_gid in groups and st.st_mode & stat.S_IXGRP)
        ):
            raise StartupError(
                f"as root, PostgreSQL runs as user `postgres`, which cannot enter {directory} "
                f"(mode {stat.filemode(st.st_mode)}): choose a state directory it can reach "
                f"(MODELHUB_STATE_DIR=/var/lib/modelhub make up) or run `chmod o+x {directory}`"
            )


class Platform:
    """PostgreSQL, NATS and the services, started and stopped in order."""

    def __init__(self, layout: Layout, specs: list[ServiceSpec], stop_timeout: float = 10.0) -> None:
        self.layout = layout
        self.stop_timeout = stop_timeout
        self.postgres = PostgresServer(layout.postgres, port=env_port("MODELHUB_PG_PORT", DEFAULT_PG_PORT))
        self.nats = NatsServer(
            layout.nats,
            port=env_port("MODELHUB_NATS_PORT", DEFAULT_NATS_PORT),
            monitor_port=env_port("MODELHUB_NATS_MONITOR_PORT", DEFAULT_NATS_MONITOR_PORT),
            sync_interval=NATS_SYNC_INTERVAL,
            detached=True,
        )
        self.services = [Service.configure(spec, layout) for spec in specs]
        self.no_services_note = "no services installed yet"

    def check_ports(self) -> None:
        """Fail, naming every conflict at once, if a port we need is taken or wanted twice."""
        wanted = [
            ("PostgreSQL", self.postgres.port, "MODELHUB_PG_PORT"),
            ("NATS", self.nats.port, "MODELHUB_NATS_PORT"),
            ("NATS monitoring", self.nats.monitor_port, "MODELHUB_NATS_MONITOR_PORT"),
        ]
        for service in self.services:
            prefix = service.spec.env_prefix
            wanted.append((f"{service.spec.name} gRPC", service.grpc_port, f"{prefix}GRPC_PORT"))
            wanted.append((f"{service.spec.name} metrics", service.metrics_port, f"{prefix}METRICS_PORT"))
        problems: list[str] = []
        seen: dict[int, str] = {}
        for what, port, variable in wanted:
            if port in seen:
                problems.append(f"{what} and {seen[port]} both want port {port}: set {variable}")
            elif procs.port_in_use(port):
                problems.append(f"port {port} for {what} is already in use: stop what listens there or set {variable}")
            seen[port] = what
        if problems:
            raise StartupError("\n  ".join(["cannot start:", *problems]))

    def start(self) -> None:
        check_reachable_by_postgres(self.layout.root)
        for directory in (self.layout.logs, self.layout.run):
            directory.mkdir(exist_ok=True)
        self.check_ports()

        say(f"starting PostgreSQL on port {self.postgres.port} ...")
        self.postgres.start()
        say(f"starting NATS with JetStream on port {self.nats.port} ...")
        self.nats.start()
        assert self.nats.pid is not None
        procs.write_pid_file(self.layout.child_pid_file("nats"), self.nats.pid)

        for service in self.services:
            self._start_service(service)

    def _start_service(self, service: Service) -> None:
        spec = service.spec
        service.data_dir.mkdir(parents=True, exist_ok=True)
        service.database_url = self.postgres.create_database(spec.database)
        say(f"migrating {spec.name} (database {spec.database}) ...")
        with service.log_file.open("ab") as log:
            result = subprocess.run(
                [sys.executable, "-c", MIGRATE_SNIPPET, spec.migrate, service.database_url],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=MIGRATE_TIMEOUT,
                check=False,
            )
        if result.returncode != 0:
            raise StartupError(
                f"migrations of {spec.name} ({spec.migrate}) failed; from {service.log_file}:\n"
                + _log_tail(service.log_file)
            )

        say(f"starting {spec.name} on port {service.grpc_port} ...")
        with service.log_file.open("ab") as log:
            service.process = subprocess.Popen(
                [sys.executable, "-m", spec.serve_module],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=service.environment(self.nats.url),
                start_new_session=True,  # Ctrl-C reaches `up` only, which stops services first
            )
        procs.write_pid_file(self.layout.child_pid_file(spec.name), service.process.pid)
        deadline = time.monotonic() + SERVICE_READY_TIMEOUT
        while not procs.port_in_use(service.grpc_port):
            if (code := service.process.poll()) is not None:
                service.reported_exit = True
                raise StartupError(
                    f"{spec.name} exited with code {code} before listening on port {service.grpc_port}; "
                    f"from {service.log_file}:\n" + _log_tail(service.log_file)
                )
            if time.monotonic() > deadline:
                raise StartupError(
                    f"{spec.name} did not listen on port {service.grpc_port} within "
                    f"{SERVICE_READY_TIMEOUT:.0f}s; see {service.log_file}"
                )
            time.sleep(0.05)

    def table(self) -> str:
        """Where each thing listens, and its log."""

        def show(path: Path) -> str:
            try:
                return str(path.relative_to(Path.cwd()))
            except ValueError:
                return str(path)

        rows = [
            ("COMPONENT", "LISTENS ON", "METRICS / MONITORING", "LOG"),
            ("PostgreSQL", self.postgres.url(), "-", show(self.postgres.log_file)),
            (
                "NATS",
                self.nats.url,
                f"http://127.0.0.1:{self.nats.monitor_port}",
                show(self.nats.log_file),
            ),
        ]
        for service in self.services:
            rows.append(
                (
                    service.spec.name,
                    f"127.0.0.1:{service.grpc_port} (gRPC; database {service.spec.database})",
                    f"http://127.0.0.1:{service.metrics_port}/metrics",
                    show(service.log_file),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [
            "  " + "".join(cell.ljust(width + 2) for cell, width in zip(row, widths, strict=False)) + row[3]
            for row in rows
        ]
        if not self.services:
            lines.append(f"  ({self.no_services_note}: PostgreSQL and NATS only)")
        return "\n".join(lines)

    def watch(self) -> None:
        """Run until a signal arrives (Shutdown), reporting any child that dies meanwhile."""
        nats_reported = False
        while True:
            for service in self.services:
                if service.process is not None and not service.reported_exit:
                    code = service.process.poll()
                    if code is not None:
                        service.reported_exit = True
                        say(f"!! {service.spec.name} exited with code {code}; see {service.log_file}")
            if not self.nats.running and not nats_reported:
                nats_reported = True
                say(f"!! NATS exited; see {self.nats.log_file}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Services first (SIGTERM, then SIGKILL after stop_timeout), then NATS, then PostgreSQL."""
        running = [s for s in self.services if s.process is not None and s.process.poll() is None]
        for service in reversed(running):
            assert service.process is not None
            say(f"stopping {service.spec.name} ...")
            _signal_group(service.process, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for service in reversed(running):
            assert service.process is not None
            try:
                service.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{service.spec.name} did not stop within {self.stop_timeout:.0f}s: killing it")
                _signal_group(service.process, signal.SIGKILL)
                service.process.wait()
        for service in self.services:
            self.layout.child_pid_file(service.spec.name).unlink(missing_ok=True)
        if self.nats.running:
            say("stopping NATS ...")
        self.nats.stop()
        self.layout.child_pid_file("nats").unlink(missing_ok=True)
        if self.postgres.running_pid() is not None:
            say("stopping PostgreSQL ...")
        self.postgres.stop()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the service's process group (it leads one), so any workers it forked get it too."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _install_signal_handlers() -> None:
    stopping = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return  # already stopping; let it finish
        stopping = True
        raise Shutdown(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def run(state_dir: Path, service_refs: list[str] | None = None, stop_timeout: float = 10.0) -> int:
    """Start everything, wait for a signal, stop everything; the exit status.

    service_refs ("module:attribute" of ServiceSpec objects) replace the installed services when given;
    an empty list runs no service.
    """
    _install_signal_handlers()
    layout = Layout(state_dir.absolute())
    lock = PidLock(layout.pid_file)
    platform: Platform | None = None
    status = 0
    try:
        try:
            _make_dirs(layout.root)
            lock.acquire()
            for leftover in stop_leftovers(layout):
                say(f"stopped {leftover}, left running by an earlier run that did not stop cleanly")
            specs = services.discover() if service_refs is None else services.load(service_refs)
            platform = Platform(layout, specs, stop_timeout)
            if service_refs == []:
                platform.no_services_note = "services not started (--no-services)"
            platform.start()
            say("")
            say(f"modelhub is running (state in {layout.root})")
            say(platform.table())
            say("modelhub is up")
            say("Ctrl-C here, or `make down` in another terminal, stops it.")
            platform.watch()
        except Shutdown as stop:
            say(f"\n{stop} received: stopping modelhub ...")
        except StartupError as error:
            print(f"modelhub could not start: {error}", file=sys.stderr, flush=True)
            status = 1
        except Exception as error:
            traceback.print_exc()
            print(f"modelhub could not start: {error}", file=sys.stderr, flush=True)
            status = 1
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)  # let the teardown finish
            try:
                if platform is not None:
                    platform.stop()
            finally:
                lock.release()
    except Shutdown:  # a signal raced the handler swap above
        pass
    if status == 0:
        say("modelhub stopped")
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelhub.devstack.up", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("MODELHUB_STATE_DIR", ".state")),
        help="where PostgreSQL, NATS and the services keep data and logs ($MODELHUB_STATE_DIR or .state)",
    )
    parser.add_argument(
        "--service",
        action="append",
        metavar="MODULE:ATTRIBUTE",
        help="run this ServiceSpec instead of the installed services (repeatable)",
    )
    parser.add_argument("--no-services", action="store_true", help="run PostgreSQL and NATS only (no service)")
    parser.add_argument(
        "--stop-timeout", type=float, default=10.0, help="seconds a service gets to stop before SIGKILL"
    )
    args = parser.parse_args(argv)
    refs: list[str] | None = [] if args.no_services else args.service
    return run(args.state_dir, refs, args.stop_timeout)


if __name__ == "__main__":
    sys.exit(main())
