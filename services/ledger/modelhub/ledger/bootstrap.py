"""Wiring: the one place that builds the ledger's dependencies. Nothing is built at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.db import create_engine
from modelhub.core.events.relay import OutboxRelay
from modelhub.core.events.store import EventStore
from modelhub.core.grpc.server import GrpcServer, ServiceRegistration
from modelhub.core.nats import connect
from modelhub.core.runtime import settle_after_startup
from modelhub.ledger.adapters import migrations
from modelhub.ledger.adapters.events import PRODUCER, make_registry
from modelhub.ledger.config import LedgerSettings
from modelhub.ledger.entrypoints.consumers import serve_rewards
from modelhub.ledger.entrypoints.grpc import SERVICE_NAME, LedgerServicer, add_to_server
from modelhub.ledger.handlers import Clock, Ledger, utcnow

log = logging.getLogger(__name__)


def build_ledger(engine: AsyncEngine, *, clock: Clock = utcnow, batches_in_flight: int = 1) -> Ledger:
    return Ledger(engine, EventStore(make_registry()), clock=clock, max_batches_in_flight=batches_in_flight)


def build_server(settings: LedgerSettings, ledger: Ledger) -> GrpcServer:
    servicer = LedgerServicer(ledger, tip_fee_basis_points=settings.tip_fee_basis_points)
    # Several workers bind the same port; the kernel spreads incoming connections over them.
    options = [("grpc.so_reuseport", 1)] if settings.workers > 1 else []
    return GrpcServer(settings, [ServiceRegistration(SERVICE_NAME, servicer, add_to_server)], options=options)


async def expire_holds_forever(ledger: Ledger, stop: asyncio.Event, interval: float) -> None:
    """Expire due holds every `interval` seconds until `stop` is set."""
    while not stop.is_set():
        try:
            while await ledger.expire_due_holds() > 0:
                pass
        except Exception:  # an outage: try again next round
            log.exception("expiring holds failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def serve(settings: LedgerSettings) -> None:
    """Migrate, then serve gRPC with the outbox relay, the rewards consumer and the hold expiry loop beside
    it, until SIGTERM."""
    if settings.migrate_on_start:
        await asyncio.to_thread(migrations.upgrade, settings.database_url)
    engine = create_engine(
        settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
    )
    ledger = build_ledger(engine, batches_in_flight=settings.batches_in_flight)
    server = build_server(settings, ledger)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    if settings.run_hold_expiry:
        tasks.append(asyncio.create_task(expire_holds_forever(ledger, stop, settings.hold_expiry_interval_seconds)))
    nc = None
    try:
        if settings.run_relay:
            nc = await connect(settings.nats_url, f"{settings.service_name}-relay")
            relay = OutboxRelay(engine, ledger.store, nc, PRODUCER)
            await relay.setup(replicas=settings.stream_replicas)
            tasks.append(asyncio.create_task(relay.run(stop)))
        if settings.run_rewards:  # in the background: it waits for NATS and for the catalog's stream
            tasks.append(asyncio.create_task(serve_rewards(ledger, settings, stop)))
        settle_after_startup()  # what was built so far lives as long as the process (modelhub.core.runtime)
        await server.serve()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if nc is not None:
            await nc.close()
        await engine.dispose()
