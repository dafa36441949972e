"""ServiceSettings: local defaults, overridden by the service's own environment prefix only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from modelhub.core.config import DEV_JWT_SECRET, ServiceSettings, env_prefix, load_settings


class LedgerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=env_prefix("ledger"))

    service_name: str = "ledger"
    grpc_port: int = 50061
    daily_reward_cap: int = 100


class CatalogSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=env_prefix("catalog"))

    service_name: str = "catalog"
    grpc_port: int = 50052


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("MODELHUB_"):
            monkeypatch.delenv(key)


def test_env_prefix() -> None:
    assert env_prefix("ledger") == "MODELHUB_LEDGER_"
    assert env_prefix("model-files") == "MODELHUB_MODEL_FILES_"


def test_local_defaults() -> None:
    settings = LedgerSettings()
    assert settings.service_name == "ledger"
    assert (settings.grpc_host, settings.grpc_port, settings.grpc_address) == (
        "127.0.0.1",
        50061,
        "127.0.0.1:50061",
    )
    assert settings.metrics_port == 0
    assert settings.database_url.startswith("postgresql://")
    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert settings.jwt_algorithm == "HS256"
    assert settings.jwt_verification_key == DEV_JWT_SECRET
    assert (settings.jwt_audience, settings.jwt_issuer) == (None, None)
    assert settings.otlp_endpoint == ""
    assert settings.log_level == "INFO"
    assert settings.shutdown_grace_seconds == 10.0


def test_the_service_prefix_overrides_and_other_prefixes_do_not_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELHUB_LEDGER_GRPC_PORT", "6000")
    monkeypatch.setenv("MODELHUB_LEDGER_DATABASE_URL", "postgresql://ledger@db/ledger")
    monkeypatch.setenv("MODELHUB_LEDGER_DAILY_REWARD_CAP", "7")
    monkeypatch.setenv("MODELHUB_LEDGER_JWT_SECRET", "ledger-secret")
    monkeypatch.setenv("MODELHUB_CATALOG_GRPC_PORT", "7000")
    monkeypatch.setenv("MODELHUB_CATALOG_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("GRPC_PORT", "9999")
    ledger, catalog = LedgerSettings(), CatalogSettings()
    assert (ledger.grpc_port, ledger.database_url, ledger.daily_reward_cap) == (
        6000,
        "postgresql://ledger@db/ledger",
        7,
    )
    assert ledger.jwt_secret.get_secret_value() == "ledger-secret"
    assert "ledger-secret" not in repr(ledger)
    assert ledger.log_level == "INFO"
    assert (catalog.grpc_port, catalog.log_level) == (7000, "DEBUG")
    assert catalog.jwt_verification_key == DEV_JWT_SECRET


def test_load_settings_with_another_prefix_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELHUB_LEDGER_GRPC_PORT", "6000")
    monkeypatch.setenv("MODELHUB_LEDGER_NATS_URL", "nats://ledger-nats:4222")
    monkeypatch.setenv("MODELHUB_LEDGER2_GRPC_PORT", "6100")
    assert load_settings(LedgerSettings).grpc_port == 6000
    other = load_settings(LedgerSettings, "ledger2")
    assert (other.grpc_port, other.nats_url) == (6100, "nats://127.0.0.1:4222")
    assert load_settings(LedgerSettings, "MODELHUB_LEDGER2_", grpc_port=0).grpc_port == 0
    assert load_settings(LedgerSettings, nats_url="nats://x:1").nats_url == "nats://x:1"


def test_invalid_values_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELHUB_LEDGER_GRPC_PORT", "not-a-port")
    with pytest.raises(ValidationError):
        LedgerSettings()
    monkeypatch.delenv("MODELHUB_LEDGER_GRPC_PORT")
    monkeypatch.setenv("MODELHUB_LEDGER_LOG_LEVEL", "CHATTY")
    with pytest.raises(ValidationError):
        LedgerSettings()


def test_asymmetric_algorithms_need_a_public_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELHUB_LEDGER_JWT_ALGORITHM", "RS256")
    with pytest.raises(ValidationError, match="MODELHUB_LEDGER_JWT_PUBLIC_KEY"):
        LedgerSettings()
    monkeypatch.setenv("MODELHUB_LEDGER_JWT_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\n...")
    assert LedgerSettings().jwt_verification_key.startswith("-----BEGIN PUBLIC KEY-----")
