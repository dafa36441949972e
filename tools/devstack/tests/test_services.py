"""Service discovery: ServiceSpec objects published as entry points in group `modelhub.services`."""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from modelhub.core.service_spec import ENTRY_POINT_GROUP, ServiceSpec
from modelhub.devstack import services


@pytest.fixture(autouse=True)
def importable_fake_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


def entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def spec(name: str, port: int, database: str = "", migrate: str = "") -> ServiceSpec:
    return ServiceSpec(
        name=name,
        database=database or name,
        default_grpc_port=port,
        migrate=migrate or f"m.{name}:migrate",
        serve_module=f"m.{name}.serve",
    )


def test_discover_loads_the_specs_named_by_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    found = [entry_point("fake", "devstack_fake_service:SPEC")]
    monkeypatch.setattr(services, "entry_points", lambda group: found if group == ENTRY_POINT_GROUP else [])
    assert services.discover() == [importlib.import_module("devstack_fake_service").SPEC]


def test_an_entry_point_that_is_not_a_spec_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "entry_points", lambda group: [entry_point("x", "devstack_fake_service:migrate")])
    with pytest.raises(TypeError, match="not a ServiceSpec"):
        services.discover()


def test_specs_are_sorted_and_names_and_databases_unique() -> None:
    assert [s.name for s in services.checked([spec("search", 50053), spec("catalog", 50051)])] == [
        "catalog",
        "search",
    ]
    with pytest.raises(ValueError, match="same database"):
        services.checked([spec("a", 1), spec("b", 2, database="a")])


def test_spec_validation_and_conventions() -> None:
    ledger = spec("ledger", 50052)
    assert ledger.env_prefix == "MODELHUB_LEDGER_"
    assert ledger.metrics_port == 51052
    with pytest.raises(ValueError, match="name"):
        spec("Ledger", 50052)
    with pytest.raises(ValueError, match="module:function"):
        spec("ledger", 50052, migrate="modelhub.ledger.migrate")
    with pytest.raises(ValueError, match="out of range"):
        spec("ledger", 70000)
