"""`python -m modelhub.search`: serve the search service (configuration from MODELHUB_SEARCH_*)."""

from __future__ import annotations

import asyncio

from modelhub.search.config import SearchSettings


def main() -> None:
    from modelhub.core.telemetry.logging import configure_logging
    from modelhub.core.telemetry.tracing import configure_tracing, shutdown_tracing
    from modelhub.search.bootstrap import serve

    settings = SearchSettings()
    configure_logging(settings.service_name, settings.log_level)
    configure_tracing(settings.service_name, settings.otlp_endpoint)
    try:
        asyncio.run(serve(settings))
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    main()
