"""How a service tells the local platform (`make up`) what it is, how to migrate it and how to run it.

Each service package publishes one `ServiceSpec` as a Python entry point in the group `modelhub.services`,
in its pyproject.toml:

    [project.entry-points."modelhub.services"]
    ledger = "modelhub.ledger.spec:SPEC"

where `modelhub/ledger/spec.py` holds (importing nothing else of the service):

    SPEC = ServiceSpec(
        name="ledger",
        database="ledger",
        default_grpc_port=50052,
        migrate="modelhub.ledger.adapters.migrations:upgrade",
        serve_module="modelhub.ledger.entrypoints.serve",
    )

The platform creates the database, calls `migrate` with its URL, then runs `python -m <serve_module>` with
MODELHUB_<NAME>_DATABASE_URL, MODELHUB_<NAME>_NATS_URL, MODELHUB_<NAME>_GRPC_PORT and
MODELHUB_<NAME>_METRICS_PORT set, and stops it with SIGTERM.
"""

from __future__ import annotations

import asyncio
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass

ENTRY_POINT_GROUP = "modelhub.services"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class ServiceSpec:
    """What the local platform needs to know to run one service.

    name: short lower-case name (`ledger`); the environment prefix is MODELHUB_<NAME>_.
    database: the PostgreSQL database the service owns (created if missing).
    default_grpc_port: where the service's gRPC server listens by default.
    migrate: "module:function", a function taking the database URL (a libpq `postgresql://` URL) that
        brings the schema up to date; it may be a coroutine function. Must be idempotent.
    serve_module: module run with `python -m` to serve; it reads its configuration from MODELHUB_<NAME>_*
        and stops gracefully on SIGTERM.
    default_metrics_port: where Prometheus metrics are served; 0 means default_grpc_port + 1000.
    """

    name: str
    database: str
    default_grpc_port: int
    migrate: str
    serve_module: str
    default_metrics_port: int = 0

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"service name {self.name!r} must match {_NAME.pattern}")
        if not _REF.match(self.migrate):
            raise ValueError(f"migrate {self.migrate!r} of service {self.name!r} must be 'module:function'")
        for port in (self.default_grpc_port, self.metrics_port):
            if not 0 < port < 65536:
                raise ValueError(f"port {port} of service {self.name!r} is out of range")

    @property
    def env_prefix(self) -> str:
        """The prefix of the service's environment variables, e.g. MODELHUB_LEDGER_."""
        return f"MODELHUB_{self.name.upper()}_"

    @property
    def metrics_port(self) -> int:
        """The default metrics port."""
        return self.default_metrics_port or self.default_grpc_port + 1000

    def run_migrations(self, database_url: str) -> None:
        """Import and call the `migrate` function with database_url (awaiting it if it is a coroutine)."""
        run_migrate(self.migrate, database_url)


def run_migrate(ref: str, database_url: str) -> None:
    """Call the migrate function named by ref ("module:function") with database_url."""
    result = load_ref(ref)(database_url)
    if asyncio.iscoroutine(result):
        asyncio.run(result)


def load_ref(ref: str) -> Callable[..., object]:
    """Import "package.module:attribute" and return the attribute."""
    module_name, _, attribute = ref.partition(":")
    target: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{ref} is not callable")
    return target
