"""A relay in its own process, for kill -9 tests: `python relay_worker.py DB_URL NATS_URL PRODUCER [CRASH_AT]`.

With CRASH_AT = n, the process kills itself (SIGKILL) on its n-th checkpoint save: after JetStream has
acknowledged a batch and before the checkpoint records it, the worst moment for a relay to die.
"""

import asyncio
import os
import signal
import sys

from modelhub.core.db import create_engine
from modelhub.core.events import relay as relay_module
from modelhub.core.events.relay import OutboxRelay
from modelhub.core.events.store import EventStore
from modelhub.core.nats import connect

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.widgets import make_registry


async def main(db_url: str, nats_url: str, producer: str, crash_at: int) -> None:
    if crash_at:
        saves = 0
        real_save = relay_module.save_checkpoint

        async def save_then_maybe_die(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal saves
            saves += 1
            if saves == crash_at:
                os.kill(os.getpid(), signal.SIGKILL)
            await real_save(*args, **kwargs)

        relay_module.save_checkpoint = save_then_maybe_die  # type: ignore[assignment]
    engine = create_engine(db_url)
    nc = await connect(nats_url, "relay-worker")
    relay = OutboxRelay(engine, EventStore(make_registry()), nc, producer, batch_size=50)
    await relay.setup()
    print("ready", flush=True)
    await relay.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 0))
