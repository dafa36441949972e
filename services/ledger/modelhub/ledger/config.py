"""The ledger's settings: environment variables MODELHUB_LEDGER_*, with local defaults."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from modelhub.core.config import ServiceSettings, env_prefix
from modelhub.ledger.domain.model import INT64_MAX


class LedgerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=env_prefix("ledger"), extra="ignore", frozen=True)

    service_name: str = "ledger"
    grpc_port: int = Field(default=50052, ge=0, le=65535)
    database_url: str = "postgresql://modelhub@127.0.0.1:5432/ledger"
    db_pool_size: int = Field(default=20, ge=1)
    """Database connections kept open, for the whole service: with several workers each gets its share."""
    db_max_overflow: int = Field(default=10, ge=0)
    """Extra connections opened under load, for the whole service, shared out like db_pool_size."""
    workers: int = Field(default=1, ge=1, le=64)
    """Server processes: more than 1 starts that many workers on the same port (SO_REUSEPORT) under a
    parent that forwards SIGTERM/SIGINT; the relay, rewards and hold expiry run in worker 0 only."""
    batches_in_flight: int = Field(default=1, ge=1, le=16)
    """Batches of posting requests a process writes at the same time, each in its own transaction on its own
    connection. More than 1 lets a batch be decided and written while another waits for its commit (lower
    latency when CPU is to spare), but batches get smaller, cost more CPU per request and contend for the
    same rows; 1 measured best on a 2-core machine (docs/ledger.md, Performance)."""
    tip_fee_basis_points: int = Field(default=0, ge=0, lt=10_000)
    """Platform fee on tips in 1/100 %, paid to system:platform-fees as a linked leg (0 = no fee leg)."""
    hold_expiry_interval_seconds: float = Field(default=1.0, gt=0)
    """How often the service looks for pending holds past their timeout."""
    run_hold_expiry: bool = True
    """Expire due holds from this process (the sweep every hold_expiry_interval_seconds)."""
    run_relay: bool = True
    """Publish the ledger's events to JetStream from this process (the outbox relay)."""
    migrate_on_start: bool = True
    run_rewards: bool = True
    """Grant reward Buzz for catalog events from this process (the consumer "ledger-rewards")."""
    rewards_inbox_retention_days: float = Field(default=7.0, ge=0)
    """The rewards consumer's inbox rows (the ids of events handled) are deleted after this many days; 0 keeps
    them forever. Safe because a grant's idempotency key (`reward:<event id>`, kept by the ledger for good) makes
    an event handled twice grant nothing twice."""
    reward_review_amount: int = Field(default=5, ge=0, le=INT64_MAX)
    """Blue Buzz a user earns per review written (0 turns the rule off)."""
    reward_review_daily_cap: int = Field(default=50, ge=0, le=INT64_MAX)
    """The most blue Buzz one user earns from reviews per UTC day."""
    reward_version_published_amount: int = Field(default=50, ge=0, le=INT64_MAX)
    """Blue Buzz a creator earns per model version published (0 turns the rule off)."""
    reward_version_published_daily_cap: int = Field(default=150, ge=0, le=INT64_MAX)
    """The most blue Buzz one creator earns from publishing per UTC day."""
    reward_download_amount: int = Field(default=1, ge=0, le=INT64_MAX)
    """Blue Buzz a creator earns per download of their model versions (0 turns the rule off)."""
    reward_download_daily_cap: int = Field(default=500, ge=0, le=INT64_MAX)
    """The most blue Buzz one creator earns from downloads per UTC day."""
