"""GetModel's read (adapters/queries.py: load_model): one statement over the read models that gives back the
model folded from its stream, reached through indexes only (the catalog holds many files)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.catalog.adapters import queries
from modelhub.catalog.adapters.repository import ModelRepository
from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.domain import commands
from modelhub.catalog.domain.model import Model
from modelhub.catalog.domain.vocabulary import Relation, ScanResult

from .conftest import FakeClock
from .model_helpers import ALICE, BOB, a_file, fields, published_model, ready_version
from .test_models_events import busy_history

_STATE = (
    "id",
    "version",
    "exists",
    "owner_id",
    "owner_name",
    "name",
    "description",
    "type",
    "tags",
    "license",
    "status",
    "nsfw_level",
    "unpublished_reason",
    "created_at",
    "updated_at",
    "published_at",
    "scheduled_at",
)


def state(model: Model) -> dict[str, Any]:
    """What a read returns of a model: its fields, and its versions in order with their files (in order, with
    their hashes in order) and parents."""
    return {name: getattr(model, name) for name in _STATE} | {
        "versions": list(model.versions.items()),
        "file order": [list(v.files) for v in model.versions.values()],  # dicts compare without order
    }


async def rich_model(catalog: Catalog, clock: FakeClock) -> str:
    """A model with a merge of two parents (weights, attribution), several files per version (added in an
    order their ids do not follow), a scheduled version, and timestamps with microseconds."""
    models = catalog.models
    _, left = await published_model(models, BOB, name="left")
    _, right = await published_model(models, BOB, name="right")
    model = await models.create_model(ALICE, fields("merged", tags=("b", "a")))
    model, v1 = await ready_version(models, ALICE, model)
    clock.advance(microseconds=1)
    for file_id in ("zz-second", "aa-third"):
        await models.add_file(ALICE, v1, a_file(file_id))
        model = await models.record_scan(v1, file_id, ScanResult.SUCCESS)
    recipe = [
        commands.ParentRequest(left, Relation.MERGE, 0.3, "left half"),
        commands.ParentRequest(right, Relation.MERGE, 0.7),
    ]
    model = await models.declare_parents(ALICE, v1, model.version, commands.parent_requests(recipe))
    model = await models.publish_model(ALICE, model.id, model.version)
    model, v2 = await ready_version(models, ALICE, model, "v2")
    await models.publish_version(ALICE, v2, model.version, clock.now + timedelta(days=1, microseconds=7))
    return model.id


async def test_the_read_equals_the_model_folded_from_its_stream(
    catalog: Catalog, engine: AsyncEngine, clock: FakeClock
) -> None:
    clock.advance(microseconds=123_457)  # timestamps keep their microseconds through the read's JSON
    await busy_history(catalog, clock)
    rich = await rich_model(catalog, clock)
    async with engine.connect() as conn:
        model_ids = list((await conn.execute(text("SELECT model_id FROM models"))).scalars())
        assert len(model_ids) == 6
        for model_id in model_ids:
            folded = await ModelRepository(conn, catalog.store).load(model_id)
            read = await queries.load_model(conn, model_id)  # inside a transaction of `conn`, too
            assert read is not None
            assert state(read) == state(folded)
        assert await queries.load_model(conn, "no-such-model") is None

    read = await catalog.models.get_model(ALICE, rich)  # the handler's path: autocommit
    v1, v2 = read.versions.values()
    assert [f.file_id for f in v1.files.values()] == [f"file-{v1.id}", "zz-second", "aa-third"]
    assert [(p.relation, p.weight, p.attribution) for p in v1.parents] == [
        (Relation.MERGE, 0.3, "left half"),
        (Relation.MERGE, 0.7, ""),
    ]
    assert v2.scheduled_at is not None and v2.scheduled_at.microsecond == 123_458 + 7


async def test_the_read_reaches_every_row_through_an_index(
    catalog: Catalog, clock: FakeClock, migrated_url: str
) -> None:
    """With sequential scans priced out, any table the statement can only scan shows up in the plan: each such
    scan reads every file of the catalog (that made GetModel slow once)."""
    model_id = await rich_model(catalog, clock)
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        await conn.execute("SET enable_seqscan = off")
        cursor = await conn.execute(f"EXPLAIN {queries.LOAD_MODEL_SQL}", {"model_id": model_id})
        plan = "\n".join(str(row[0]) for row in await cursor.fetchall())
    assert "Seq Scan" not in plan, plan
    for table in ("models", "model_tags", "model_versions", "model_files", "file_hashes", "lineage_edges"):
        assert f" on {table}" in plan, f"{table} is not read:\n{plan}"
