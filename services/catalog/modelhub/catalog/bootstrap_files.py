"""Wiring of the catalog's files part (FileService and its background jobs), called from bootstrap.py with
one line each. Nothing is built at import time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from modelhub.catalog.adapters.blobs import blob_store
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.entrypoints import grpc_files
from modelhub.catalog.handlers.files import FileCatalog
from modelhub.core.grpc.server import ServiceRegistration

if TYPE_CHECKING:  # bootstrap imports this module
    from modelhub.catalog.bootstrap import Catalog

Job = tuple[float, asyncio.Event, Callable[[], Awaitable[int]], str]
"""The arguments of bootstrap.every: interval in seconds, the stop event, the job, its name."""


def build_files(settings: CatalogSettings, catalog: Catalog) -> FileCatalog:
    """The file use cases over the catalog's engine, event store, model use cases and clock, and the blob
    store under `data_dir` (one per directory per process, shared by the servicer and the jobs)."""
    return FileCatalog(
        catalog.engine,
        catalog.store,
        catalog.models,
        blob_store(settings.data_dir, settings.max_file_size_bytes),
        clock=catalog.clock,
        session_ttl=timedelta(seconds=settings.upload_session_ttl_seconds),
        download_window_seconds=settings.download_window_seconds,
        hot_reads=catalog.hot_reads,
    )


def registration(settings: CatalogSettings, catalog: Catalog) -> ServiceRegistration:
    """FileService, for bootstrap.registrations."""
    servicer = grpc_files.FileServicer(
        build_files(settings, catalog),
        max_file_size=settings.max_file_size_bytes,
        max_chunk_bytes=settings.upload_chunk_max_bytes,
        download_chunk_bytes=settings.download_chunk_bytes,
        session_ttl=timedelta(seconds=settings.upload_session_ttl_seconds),
    )
    return ServiceRegistration(grpc_files.SERVICE_NAME, servicer, grpc_files.add_to_server)


def jobs(settings: CatalogSettings, catalog: Catalog, stop: asyncio.Event) -> list[Job]:
    """The background jobs of files, for bootstrap.serve: pickle scans, AutoV3 hashes, download-count events,
    cleanup."""
    if not settings.run_file_jobs:
        return []
    files = build_files(settings, catalog)
    return [
        (settings.scan_interval_seconds, stop, files.scan_pending, "file scan"),
        (settings.scan_interval_seconds, stop, files.hash_auto_v3, "AutoV3 hashing"),
        (settings.stats_interval_seconds, stop, files.flush_download_counts, "download counts"),
        (settings.cleanup_interval_seconds, stop, files.clean_up, "upload cleanup"),
    ]
