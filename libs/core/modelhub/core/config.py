"""Service configuration from environment variables, one prefix per service, with local defaults.

Each service subclasses `ServiceSettings`, sets its own prefix and defaults, and loads it once in its
bootstrap::

    class LedgerSettings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix=env_prefix("ledger"))
        service_name: str = "ledger"
        grpc_port: int = 50061

    settings = LedgerSettings()  # reads MODELHUB_LEDGER_GRPC_PORT, MODELHUB_LEDGER_DATABASE_URL, ...

Defaults are for one developer machine; every one of them can be overridden by the environment.
"""

from __future__ import annotations

from typing import Any, Literal, Self, TypeVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

JwtAlgorithm = Literal[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA"
]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

DEV_JWT_SECRET = "modelhub-local-development-secret-do-not-deploy"
"""The HMAC secret used when none is configured: fine on a laptop, never in a cluster."""

S = TypeVar("S", bound="ServiceSettings")


def env_prefix(service: str) -> str:
    """The environment prefix of a service: `env_prefix("ledger") == "MODELHUB_LEDGER_"`."""
    return f"MODELHUB_{service.strip().upper().replace('-', '_')}_"


class ServiceSettings(BaseSettings):
    """Settings every service has. Subclasses set `model_config.env_prefix` and their own defaults."""

    model_config = SettingsConfigDict(env_prefix="MODELHUB_", extra="ignore", frozen=True)

    service_name: str = "modelhub"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50051, ge=0, le=65535, description="0 picks a free port (tests).")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Prometheus /metrics port; 0 = off.")
    database_url: str = "postgresql://modelhub@127.0.0.1:5432/modelhub"
    nats_url: str = "nats://127.0.0.1:4222"
    # Replicas of the JetStream streams this service creates (its events, the dead letters): 1 on one
    # machine, 3 in a cluster so a NATS node can fail without losing acknowledged events.
    stream_replicas: int = Field(default=1, ge=1, le=5)

    jwt_algorithm: JwtAlgorithm = "HS256"
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    """HMAC key for HS* algorithms."""
    jwt_public_key: str = ""
    """PEM public key for RS*/PS*/ES*/EdDSA algorithms (required for those)."""
    jwt_audience: str | None = None
    """When set, tokens must carry this `aud`."""
    jwt_issuer: str | None = None
    """When set, tokens must carry this `iss`."""
    jwt_leeway_seconds: float = Field(default=10.0, ge=0)

    otlp_endpoint: str = ""
    """OTLP/gRPC collector, e.g. http://127.0.0.1:4317; empty = no trace export."""
    log_level: LogLevel = "INFO"
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _check_jwt_key(self) -> Self:
        if not self.jwt_algorithm.startswith("HS") and not self.jwt_public_key.strip():
            raise ValueError(
                f"jwt_algorithm {self.jwt_algorithm} needs a PEM public key: set "
                f"{self.model_config.get('env_prefix', '')}JWT_PUBLIC_KEY"
            )
        return self

    @property
    def grpc_address(self) -> str:
        """host:port the gRPC server binds."""
        return f"{self.grpc_host}:{self.grpc_port}"

    @property
    def jwt_verification_key(self) -> str:
        """The key that verifies tokens: the HMAC secret or the PEM public key, per the algorithm."""
        if self.jwt_algorithm.startswith("HS"):
            return self.jwt_secret.get_secret_value()
        return self.jwt_public_key


def load_settings(cls: type[S], prefix: str | None = None, **overrides: Any) -> S:
    """Build `cls` from the environment, optionally under another prefix; `overrides` win over both.

    `prefix` may be a full prefix (`"MODELHUB_LEDGER_"`) or a service name (`"ledger"`).
    """
    if prefix is None:
        return cls(**overrides)
    full = prefix if prefix.endswith("_") else env_prefix(prefix)
    return cls(_env_prefix=full, **overrides)
