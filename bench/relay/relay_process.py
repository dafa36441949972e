"""The outbox relay in a process of its own, as it runs in production beside (not inside) consumers.

`python relay_process.py DB_URL NATS_URL PRODUCER`; runs until terminated.
"""

import asyncio
import sys

from modelhub.core.db import create_engine
from modelhub.core.events.registry import EventRegistry
from modelhub.core.events.relay import OutboxRelay
from modelhub.core.events.store import EventStore
from modelhub.core.nats import connect


async def main(db_url: str, nats_url: str, producer: str) -> None:
    engine = create_engine(db_url)
    nc = await connect(nats_url, f"relay-{producer}")
    relay = OutboxRelay(engine, EventStore(EventRegistry()), nc, producer)
    await relay.setup()
    await relay.publish_once()  # connect to the database before reporting ready
    print("ready", flush=True)
    await relay.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
