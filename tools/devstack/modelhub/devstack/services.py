"""Finding the services to run: `ServiceSpec` objects published as entry points in `modelhub.services`."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from modelhub.core.service_spec import ENTRY_POINT_GROUP, ServiceSpec


def discover(group: str = ENTRY_POINT_GROUP) -> list[ServiceSpec]:
    """Every installed service's spec, sorted by name."""
    specs = []
    for entry_point in entry_points(group=group):
        spec = entry_point.load()
        if not isinstance(spec, ServiceSpec):
            raise TypeError(
                f"entry point {entry_point.name} = {entry_point.value!r} in group {group!r} "
                f"is a {type(spec).__name__}, not a ServiceSpec"
            )
        specs.append(spec)
    return checked(specs)


def load(refs: list[str]) -> list[ServiceSpec]:
    """The specs named by "module:attribute" references (instead of the installed entry points)."""
    specs = []
    for ref in refs:
        module_name, _, attribute = ref.partition(":")
        spec = getattr(importlib.import_module(module_name), attribute or "SPEC")
        if not isinstance(spec, ServiceSpec):
            raise TypeError(f"{ref} is a {type(spec).__name__}, not a ServiceSpec")
        specs.append(spec)
    return checked(specs)


def checked(specs: list[ServiceSpec]) -> list[ServiceSpec]:
    """specs sorted by name; two services may not share a name or a database."""
    for attribute in ("name", "database"):
        seen: dict[object, str] = {}
        for spec in specs:
            value = getattr(spec, attribute)
            if value in seen:
                raise ValueError(f"services {seen[value]} and {spec.name} have the same {attribute}: {value}")
            seen[value] = spec.name
    return sorted(specs, key=lambda spec: spec.name)
