"""A stand-in service for the `up` tests: a migration that creates a table, and a TCP server on its gRPC port.

Run as `python -m devstack_fake_service`; it answers each connection with the configuration it was given
(JSON) and, on SIGTERM, logs "fake stopped" and exits 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import psycopg

from modelhub.core.service_spec import ServiceSpec

SPEC = ServiceSpec(
    name="fake",
    database="fake_db",
    default_grpc_port=50999,
    migrate="devstack_fake_service:migrate",
    serve_module="devstack_fake_service",
)


def migrate(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS fake_migrated (at timestamptz DEFAULT now())")
        conn.execute("INSERT INTO fake_migrated DEFAULT VALUES")


async def serve() -> None:
    config = {k: v for k, v in os.environ.items() if k.startswith(SPEC.env_prefix)}
    answer = json.dumps(config).encode() + b"\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(answer)
        await writer.drain()
        writer.close()

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    grpc = await asyncio.start_server(handle, "127.0.0.1", int(config["MODELHUB_FAKE_GRPC_PORT"]))
    metrics = await asyncio.start_server(handle, "127.0.0.1", int(config["MODELHUB_FAKE_METRICS_PORT"]))
    print("fake listening", flush=True)
    await stop.wait()
    grpc.close()
    metrics.close()
    print("fake stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(serve())
