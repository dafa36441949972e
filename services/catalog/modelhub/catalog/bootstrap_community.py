"""Wiring of the catalog's gallery and community (GalleryService, CommunityService, the stats, re-link and image
cleanup jobs), from bootstrap.py with one line each. Nothing is built at import time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from modelhub.catalog.adapters.blobs import blob_store
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.domain.gallery import MAX_IMAGE_BYTES
from modelhub.catalog.entrypoints import grpc_community, grpc_gallery
from modelhub.catalog.files.blobstore import BlobStore
from modelhub.catalog.handlers.collections import Collections
from modelhub.catalog.handlers.comments import Comments
from modelhub.catalog.handlers.gallery import Gallery
from modelhub.catalog.handlers.reviews import Reviews
from modelhub.catalog.handlers.social import Favorites, Follows
from modelhub.catalog.handlers.stats import Stats
from modelhub.core.grpc.server import ServiceRegistration

if TYPE_CHECKING:  # bootstrap imports this module
    from modelhub.catalog.bootstrap import Catalog

Job = tuple[float, asyncio.Event, Callable[[], Awaitable[int]], str]
"""The arguments of bootstrap.every: interval in seconds, the stop event, the job, its name."""


def image_blobs(data_dir: Path) -> BlobStore:
    """The image store: content-addressed like model files, in a directory of its own (data_dir/images), so
    that each blob collection sees only its own blobs."""
    return blob_store(data_dir / "images", MAX_IMAGE_BYTES)


def build_gallery(settings: CatalogSettings, catalog: Catalog) -> Gallery:
    return Gallery(catalog.engine, catalog.store, image_blobs(settings.data_dir), clock=catalog.clock)


def build_community(catalog: Catalog) -> grpc_community.Community:
    engine, store, clock = catalog.engine, catalog.store, catalog.clock
    return grpc_community.Community(
        reviews=Reviews(engine, store, clock=clock),
        comments=Comments(engine, store, clock=clock),
        favorites=Favorites(engine, store, clock=clock),
        follows=Follows(engine, store, clock=clock),
        collections=Collections(engine, store, clock=clock),
        stats=Stats(engine, store, clock=clock),
    )


def registrations(settings: CatalogSettings, catalog: Catalog) -> list[ServiceRegistration]:
    """GalleryService and CommunityService, for bootstrap.registrations."""
    return [
        ServiceRegistration(
            grpc_gallery.SERVICE_NAME,
            grpc_gallery.GalleryServicer(build_gallery(settings, catalog), settings),
            grpc_gallery.add_to_server,
        ),
        ServiceRegistration(
            grpc_community.SERVICE_NAME,
            grpc_community.CommunityServicer(build_community(catalog)),
            grpc_community.add_to_server,
        ),
    ]


def jobs(settings: CatalogSettings, catalog: Catalog, stop: asyncio.Event) -> list[Job]:
    """The stats job (model stats and image snapshots when counts changed), the re-link job (images naming a
    short hash that became known since) and, where the file jobs run (RUN_FILE_JOBS), the image cleanup job:
    the collection of image blobs, on the files' cleanup schedule and with the same age (the upload session
    lifetime), for bootstrap.serve."""
    stats = Stats(catalog.engine, catalog.store, clock=catalog.clock)
    gallery = build_gallery(settings, catalog)
    scheduled: list[Job] = [
        (settings.stats_interval_seconds, stop, stats.run_once, "community stats"),
        (settings.scan_interval_seconds, stop, gallery.relink_queued, "image re-link"),
    ]
    if settings.run_file_jobs:
        age = timedelta(seconds=settings.upload_session_ttl_seconds)
        scheduled.append(
            (settings.cleanup_interval_seconds, stop, partial(gallery.clean_up, older_than=age), "image cleanup")
        )
    return scheduled
