"""`python -m modelhub.ledger`: serve the ledger (configuration from MODELHUB_LEDGER_*)."""

from __future__ import annotations

import asyncio
import gc

from modelhub.core.telemetry.logging import configure_logging
from modelhub.core.telemetry.tracing import configure_tracing, shutdown_tracing
from modelhub.ledger.bootstrap import serve
from modelhub.ledger.config import LedgerSettings


def main() -> None:
    settings = LedgerSettings()
    configure_logging(settings.service_name, settings.log_level)
    configure_tracing(settings.service_name, settings.otlp_endpoint)
    gc.freeze()  # what start-up allocated stays out of every later collection
    gc.set_threshold(50_000, 20, 20)  # fewer young collections: short calls allocate a lot, briefly
    try:
        asyncio.run(serve(settings))
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    main()
