"""A projection kept live by its runner equals one rebuilt from the log, even with old-version events."""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.core.events.aggregate import load, save
from modelhub.core.events.projection import ProjectionRunner, rebuild
from modelhub.core.events.store import EventStore

from .widgets import Widget, WidgetNames, make_registry


async def _snapshot(engine: AsyncEngine) -> list[tuple[str, str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT widget, name, renames FROM widget_names ORDER BY widget"))
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_rebuild_equals_live_projection(engine: AsyncEngine) -> None:
    store = EventStore(make_registry())
    projection = WidgetNames()
    async with engine.begin() as conn:
        await projection.reset(conn)
    runner = ProjectionRunner(engine, store, projection, batch_size=7)

    for i in range(40):
        async with engine.begin() as conn:
            widget = await load(conn, store, Widget, f"widget-{i % 9}")
            widget.rename(f"name {i}")
            await save(conn, store, widget)
        if i % 5 == 0:
            await runner.run_once()
    assert await runner.catch_up() > 0
    live = await _snapshot(engine)
    assert len(live) == 9
    assert sum(r[2] for r in live) == 40

    replayed = await rebuild(engine, store, projection)
    assert replayed == 40
    assert await _snapshot(engine) == live
    assert await runner.catch_up() == 0  # the rebuild left the checkpoint at the end of the log
