"""`python -m modelhub.ledger`: serve the ledger (configuration from MODELHUB_LEDGER_*).

With MODELHUB_LEDGER_WORKERS=N > 1 this process only supervises N worker processes (see workers.py),
each started as `python -m modelhub.ledger --worker I`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from modelhub.ledger.config import LedgerSettings


def serve_here(settings: LedgerSettings, worker: int | None) -> None:
    from modelhub.core.telemetry.logging import configure_logging  # not in the supervisor
    from modelhub.core.telemetry.tracing import configure_tracing, shutdown_tracing
    from modelhub.ledger.bootstrap import serve  # grpc is imported by workers only

    configure_logging(settings.service_name, settings.log_level)
    configure_tracing(settings.service_name, settings.otlp_endpoint)
    if worker is not None:
        from modelhub.ledger.workers import die_with_parent

        die_with_parent()
    try:
        asyncio.run(serve(settings))
    finally:
        shutdown_tracing()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modelhub.ledger", description=__doc__)
    parser.add_argument("--worker", type=int, default=None, help="internal: serve as worker I of a supervisor")
    args = parser.parse_args(argv)
    settings = LedgerSettings()
    if settings.workers > 1 and args.worker is None:
        from modelhub.core.telemetry.logging import configure_logging
        from modelhub.ledger.workers import supervise

        configure_logging(settings.service_name, settings.log_level)
        sys.exit(supervise(settings))
    serve_here(settings, args.worker)


if __name__ == "__main__":
    main()
