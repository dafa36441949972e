"""The catalog's settings: environment variables MODELHUB_CATALOG_*, with local defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from modelhub.catalog.adapters.hot_reads import POOL_SIZE
from modelhub.core.config import ServiceSettings, env_prefix

GIB = 1024**3
MIB = 1024**2


class CatalogSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=env_prefix("catalog"), extra="ignore", frozen=True)

    service_name: str = "catalog"
    grpc_port: int = Field(default=50053, ge=0, le=65535)
    database_url: str = "postgresql://modelhub@127.0.0.1:5432/catalog"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)
    hot_read_pool_size: int = Field(default=POOL_SIZE, ge=1)
    """Connections kept for GetModel and GetFileByHash beside the main pool, never more (adapters/hot_reads.py):
    raise it with the calls in flight those reads see at peak; each is a PostgreSQL backend."""
    migrate_on_start: bool = True
    allocator_tuning: bool = True
    """At start-up, have glibc keep freed upload buffers for reuse (allocator.py; docs/catalog.md, Performance)."""

    data_dir: Path = Path.home() / ".modelhub" / "catalog"
    """Where model files live (content-addressed blobs and upload sessions); `make up` sets it."""
    max_file_size_bytes: int = Field(default=8 * GIB, ge=1)
    """The largest file a version may carry."""
    upload_chunk_max_bytes: int = Field(default=2 * MIB, ge=1024, le=16 * MIB)
    """The largest chunk one upload message may carry; the server's gRPC message limit follows it."""
    download_chunk_bytes: int = Field(default=1 * MIB, ge=1024, le=3 * MIB)
    """Bytes per message of a download stream."""
    upload_session_ttl_seconds: float = Field(default=24 * 3600.0, gt=0)
    """An upload session idle this long is abandoned and its partial file removed."""

    run_scheduler: bool = True
    """Publish models and versions whose scheduled time came, from this process."""
    schedule_interval_seconds: float = Field(default=5.0, gt=0)
    """How often the scheduler looks for due publications."""
    stats_interval_seconds: float = Field(default=60.0, gt=0)
    """How often counts (downloads, reactions, ...) are aggregated into events."""
    run_relay: bool = True
    """Publish the catalog's events to JetStream from this process (the outbox relay)."""

    # Files (handlers/files.py): background jobs and download counting.
    run_file_jobs: bool = True
    """Scan pending files, emit download counts and clean up abandoned uploads, from this process."""
    scan_interval_seconds: float = Field(default=2.0, gt=0)
    """How often the scanner looks for files waiting for their pickle scan."""
    download_window_seconds: int = Field(default=300, ge=1, le=86_400)
    """Downloads are counted per version per window of this length (aligned to the epoch); one
    catalog.DownloadsCounted per version per closed window."""
    cleanup_interval_seconds: float = Field(default=600.0, gt=0)
    """How often abandoned uploads and unreferenced stored files are removed."""
