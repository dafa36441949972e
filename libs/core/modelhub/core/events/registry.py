"""Event schemas: which protobuf message each (event type, schema version) uses, and upcasters between them.

An event's payload is stored exactly as it was written. Readers always see the current schema version:
`decode` runs the chain of upcasters from the stored version to the newest one. Old versions stay
registered forever, so every event ever written stays readable (a frozen fixture of v1 events checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

M = TypeVar("M", bound=Message)
Upcaster = Callable[[Message], Message]


class UnknownEventType(LookupError):
    """No schema is registered for this (event type, schema version)."""


class UndecodableEvent(ValueError):
    """The payload bytes do not parse as the registered message, or an upcaster failed."""


@dataclass
class _EventSchemas:
    versions: dict[int, type[Message]] = field(default_factory=dict)
    upcasters: dict[int, Upcaster] = field(default_factory=dict)

    @property
    def current(self) -> int:
        return max(self.versions)


class EventRegistry:
    """Maps event types to protobuf messages per schema version, and chains upcasters between versions."""

    def __init__(self) -> None:
        self._types: dict[str, _EventSchemas] = {}
        self._by_class: dict[type[Message], tuple[str, int]] = {}

    def register(self, event_type: str, message: type[Message], version: int = 1) -> None:
        """Declare that `event_type` at schema `version` carries a `message` payload."""
        if version < 1:
            raise ValueError("schema versions start at 1")
        schemas = self._types.setdefault(event_type, _EventSchemas())
        if version in schemas.versions:
            raise ValueError(f"{event_type} v{version} is registered already")
        schemas.versions[version] = message
        self._by_class[message] = (event_type, version)

    def upcaster(
        self, event_type: str, from_version: int
    ) -> Callable[[Callable[[M], Message]], Callable[[M], Message]]:
        """Decorator registering the function that turns `from_version` payloads into `from_version + 1`."""

        def decorate(fn: Callable[[M], Message]) -> Callable[[M], Message]:
            schemas = self._types.get(event_type)
            if schemas is None or from_version not in schemas.versions:
                raise ValueError(f"register {event_type} v{from_version} before its upcaster")
            schemas.upcasters[from_version] = fn  # type: ignore[assignment]
            return fn

        return decorate

    def type_of(self, message: Message) -> tuple[str, int]:
        """(event type, schema version) for a payload; only the current version of a type may be written."""
        try:
            event_type, version = self._by_class[type(message)]
        except KeyError:
            raise UnknownEventType(f"{type(message).__name__} is not a registered event payload") from None
        current = self._types[event_type].current
        if version != current:
            raise UnknownEventType(f"{event_type} v{version} is outdated: write v{current}")
        return event_type, version

    def knows(self, event_type: str) -> bool:
        return event_type in self._types

    def current_version(self, event_type: str) -> int:
        return self._schemas(event_type).current

    def decode(self, event_type: str, version: int, payload: bytes) -> Message:
        """Parse a stored payload and upcast it to the current schema version of its type."""
        schemas = self._schemas(event_type)
        message_cls = schemas.versions.get(version)
        if message_cls is None:
            raise UnknownEventType(f"{event_type} has no schema version {version}")
        try:
            message: Message = message_cls.FromString(payload)
        except DecodeError as exc:
            raise UndecodableEvent(f"{event_type} v{version}: payload does not parse: {exc}") from exc
        while version < schemas.current:
            upcast = schemas.upcasters.get(version)
            if upcast is None:
                raise UnknownEventType(f"{event_type}: no upcaster from v{version} to v{version + 1}")
            try:
                message = upcast(message)
            except Exception as exc:
                raise UndecodableEvent(f"{event_type}: upcasting v{version} failed: {exc}") from exc
            version += 1
        return message

    def _schemas(self, event_type: str) -> _EventSchemas:
        try:
            return self._types[event_type]
        except KeyError:
            raise UnknownEventType(f"unknown event type {event_type!r}") from None
