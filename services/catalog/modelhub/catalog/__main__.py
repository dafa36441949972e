"""`python -m modelhub.catalog`: serve the catalog (configuration from MODELHUB_CATALOG_*)."""

from __future__ import annotations

import asyncio

from modelhub.catalog.config import CatalogSettings


def main() -> None:
    from modelhub.catalog.bootstrap import serve
    from modelhub.core.telemetry.logging import configure_logging
    from modelhub.core.telemetry.tracing import configure_tracing, shutdown_tracing

    settings = CatalogSettings()
    if settings.allocator_tuning:
        from modelhub.catalog.allocator import tune_allocator

        tune_allocator()
    configure_logging(settings.service_name, settings.log_level)
    configure_tracing(settings.service_name, settings.otlp_endpoint)
    try:
        asyncio.run(serve(settings))
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    main()
