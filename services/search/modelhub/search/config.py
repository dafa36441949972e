"""The search service's settings: environment variables MODELHUB_SEARCH_*, with local defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from modelhub.core.config import ServiceSettings, env_prefix


class SearchSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=env_prefix("search"), extra="ignore", frozen=True)

    service_name: str = "search"
    grpc_port: int = Field(default=50054, ge=0, le=65535)
    database_url: str = "postgresql://modelhub@127.0.0.1:5432/search"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    migrate_on_start: bool = True

    engine: Literal["tantivy", "elasticsearch"] = "tantivy"
    """Which search engine holds the index: the embedded tantivy (one machine) or an Elasticsearch cluster."""
    data_dir: Path = Path(".state/data/search")
    """Where the service keeps local files (`make up` sets it to the same place); the tantivy index lives in
    <data_dir>/index."""
    index_dir: Path | None = None
    """The tantivy index directory; default <data_dir>/index."""
    tantivy_writer_heap_mb: int = Field(default=128, ge=16, le=4096)
    """Memory the tantivy index writer may buffer before it flushes a segment."""
    elasticsearch_url: str = ""
    """Elasticsearch URL(s), comma-separated (required with engine=elasticsearch)."""
    elasticsearch_index_prefix: str = "modelhub"
    """Names of the indices (<prefix>-models-<generation>) and aliases (<prefix>-models) this service owns."""
    elasticsearch_api_key: str = ""
    """API key for Elasticsearch, if the cluster needs one."""

    run_consumer: bool = True
    """Index the catalog's events from this process (the durable consumer "search-catalog")."""
    consumer_batch_size: int = Field(default=10_000, ge=1, le=20_000)
    """Events pulled and indexed per transaction, with one index commit each: larger batches amortize the commit
    (and the merging of the segments each commit adds) when there is a backlog; a lone event still goes through
    alone after consumer_fetch_timeout_seconds. The durable consumer is created allowing twice as many
    unacknowledged messages, for the batch being applied and the one pulled ahead of it (an existing durable
    consumer is brought to that limit when the service starts)."""
    consumer_fetch_timeout_seconds: float = Field(default=0.05, gt=0, le=5)
    """How long one pull waits for its batch to fill: bounds the delay a lone event adds to freshness."""
    consumer_inbox_retention_days: float = Field(default=7.0, ge=0)
    """The consumer's inbox rows (the ids of events applied) are deleted after this many days; 0 keeps them
    forever. Safe here because the mirror's version guard makes an event applied twice change nothing."""
    catalog_producer: str = "catalog"
    """The producer whose stream is consumed (stream <PRODUCER>_EVENTS, subjects events.<producer>.>)."""

    reindex_batch_size: int = Field(default=2000, ge=1, le=100_000)
    """Documents written per engine call while a rebuild copies the mirror into a fresh generation."""
    reindex_max_catch_up_rounds: int = Field(default=5, ge=0, le=100)
    """Catch-up passes over what changed during a rebuild before the short pause that finishes it."""
    reindex_pause_threshold: int = Field(default=2000, ge=0)
    """A rebuild pauses live indexing to finish once a catch-up pass found at most this many changes."""

    @model_validator(mode="after")
    def _check_engine(self) -> Self:
        if self.engine == "elasticsearch" and not self.elasticsearch_url.strip():
            raise ValueError("engine=elasticsearch needs an Elasticsearch URL: set MODELHUB_SEARCH_ELASTICSEARCH_URL")
        return self

    @property
    def tantivy_dir(self) -> Path:
        """The directory of the tantivy index (generations are sub-directories)."""
        return self.index_dir if self.index_dir is not None else self.data_dir / "index"
