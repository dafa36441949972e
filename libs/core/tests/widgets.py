"""A tiny event-sourced domain used by the library's tests: widgets that are created and renamed.

`testing.WidgetRenamed` has two schema versions: v1 (one free-form name) and v2 (display name + slug), with
an upcaster from v1 to v2, as a real service would evolve a payload.
"""

from __future__ import annotations

import re

from google.protobuf.message import Message
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.core.events.aggregate import Aggregate
from modelhub.core.events.model import ReceivedEvent, RecordedEvent
from modelhub.core.events.registry import EventRegistry
from modelhub.testing.v1 import testing_pb2

RENAMED = "testing.WidgetRenamed"


def make_registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(RENAMED, testing_pb2.WidgetRenamed, version=1)
    registry.register(RENAMED, testing_pb2.WidgetRenamedV2, version=2)

    @registry.upcaster(RENAMED, from_version=1)
    def split_name(old: testing_pb2.WidgetRenamed) -> Message:
        return testing_pb2.WidgetRenamedV2(display_name=old.name, slug=slugify(old.name))

    return registry


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def renamed(name: str) -> testing_pb2.WidgetRenamedV2:
    return testing_pb2.WidgetRenamedV2(display_name=name, slug=slugify(name))


class Widget(Aggregate):
    """Aggregate: a widget's current name and how often it was renamed."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.name = ""
        self.renames = 0

    def rename(self, name: str) -> None:
        if not name:
            raise ValueError("a widget needs a name")
        if name != self.name:
            self.record(renamed(name))

    def apply(self, payload: Message) -> None:
        assert isinstance(payload, testing_pb2.WidgetRenamedV2)
        self.name = payload.display_name
        self.renames += 1


class WidgetNames:
    """Projection: widget id -> (name, renames). Its table is created on reset."""

    name = "widget_names"

    async def reset(self, conn: AsyncConnection) -> None:
        await conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS widget_names "
                "(widget text PRIMARY KEY, name text NOT NULL, renames int NOT NULL)"
            )
        )
        await conn.execute(text("DELETE FROM widget_names"))

    async def apply(self, conn: AsyncConnection, event: RecordedEvent, payload: Message) -> None:
        assert isinstance(payload, testing_pb2.WidgetRenamedV2)
        await conn.execute(
            text(
                "INSERT INTO widget_names VALUES (:w, :n, 1) ON CONFLICT (widget) "
                "DO UPDATE SET name = excluded.name, renames = widget_names.renames + 1"
            ),
            {"w": event.stream_id, "n": payload.display_name},
        )


async def create_effects_table(conn: AsyncConnection) -> None:
    """A consumer's effect table: one row per applied event, with a count that would show a double apply."""
    await conn.execute(
        text(
            "CREATE TABLE IF NOT EXISTS effects "
            "(event_id uuid PRIMARY KEY, stream_id text NOT NULL, applied int NOT NULL DEFAULT 1)"
        )
    )


async def record_effect(conn: AsyncConnection, event: ReceivedEvent) -> None:
    """Handler: the effect of an event. A second apply would bump `applied` to 2."""
    await conn.execute(
        text(
            "INSERT INTO effects (event_id, stream_id) VALUES (:id, :s) "
            "ON CONFLICT (event_id) DO UPDATE SET applied = effects.applied + 1"
        ),
        {"id": event.event_id, "s": event.stream_id},
    )
