"""The mirror: the catalog's latest state per item, kept in the search database, that documents are built from.

Three tables (migration search_0001) hold, per model, per model's stats and per image, the payload bytes of the
newest event seen (by stream version) and that version. Why a mirror and not "event in, document out":

- **Two sources, one document.** A model's document joins its snapshot (stream "model-<id>") and its stats
  (stream "model-stats-<id>"); either event alone cannot rebuild it.
- **Order.** JetStream may deliver an older event after a newer one (retries, a relay republish). Every write
  here is guarded (`ON CONFLICT ... DO UPDATE ... WHERE excluded.version > table.version`), so an older state
  never replaces a newer one, and a redelivered or replayed event changes nothing (no row is returned, no
  document is rewritten).
- **Rebuilds.** The snapshots are state-carrying: the newest one of an item says everything its older ones did.
  The mirror is therefore the catalog's stream compacted to one event per item, and a fresh index generation is
  built from it (ADR 0008).

Every writer takes the *index-writes* advisory lock in shared mode for its transaction (`lock_for_writing`), then
locks the models it touches (`lock_models`); a
rebuild's final step takes it exclusively, which waits for writers in flight and holds new ones back briefly
(see modelhub.search.reindex).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from google.protobuf.message import Message
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.core import locks
from modelhub.core.events.model import ReceivedEvent
from modelhub.core.events.registry import EventRegistry
from modelhub.events.v1 import catalog_pb2
from modelhub.search.adapters.events import (
    IMAGE_SNAPSHOT,
    MODEL_SNAPSHOT,
    MODEL_STATS_UPDATED,
    PUBLISHED,
    InvalidCatalogEvent,
    image_document,
    model_document,
)
from modelhub.search.adapters.pg_arrays import bool_array, bytea_array, int_array, text_array, uuid_array
from modelhub.search.domain.documents import ImageDocument, ModelDocument

INDEX_WRITES_LOCK = "search:index-writes"
"""Advisory lock: shared by every transaction that writes the mirror and the index, exclusive for a rebuild's
final catch-up and swap."""


class Table(StrEnum):
    MODELS = "mirror_models"
    MODEL_STATS = "mirror_model_stats"
    IMAGES = "mirror_images"

    @property
    def key(self) -> str:
        return "image_id" if self is Table.IMAGES else "model_id"

    @property
    def event_type(self) -> str:
        return {Table.MODELS: MODEL_SNAPSHOT, Table.MODEL_STATS: MODEL_STATS_UPDATED, Table.IMAGES: IMAGE_SNAPSHOT}[
            self
        ]


@dataclass(frozen=True)
class MirrorRow:
    """What one event contributes to the mirror: the newest known state of one item."""

    table: Table
    key: str
    version: int
    schema_version: int
    payload: bytes
    public: bool
    event_id: uuid.UUID
    decoded: Message | None = field(default=None, compare=False, repr=False)
    """The payload already decoded (and upcast) by the consumer, if at hand: building a document from the row
    at this version then skips decoding its bytes again."""


Decoded = Mapping[tuple[Table, str, int], Message]
"""Payloads already decoded, by (table, item, version)."""


def decoded_payloads(rows: Iterable[MirrorRow], changed: Mapping[Table, set[str]]) -> Decoded:
    """The decoded payloads of the rows that `Mirror.put` just wrote (`changed`: what it returned), by
    (table, item, version): the mirror holds exactly these payloads at these versions until the transaction
    ends (the item's lock is held), so a document built from them equals one built from the stored bytes. Of
    several rows of one item, the one written is the first of the highest version, as in `put`."""
    decoded: dict[tuple[Table, str, int], Message] = {}
    for r in rows:
        if r.decoded is not None and r.key in changed[r.table]:
            decoded.setdefault((r.table, r.key, r.version), r.decoded)
    return decoded


@dataclass(frozen=True)
class Documents:
    """What the index must hold for a set of items: documents to write, ids to remove."""

    models: list[ModelDocument]
    deleted_models: list[str]
    images: list[ImageDocument]
    deleted_images: list[str]

    @property
    def count(self) -> int:
        return len(self.models) + len(self.deleted_models) + len(self.images) + len(self.deleted_images)


def mirror_row(event: ReceivedEvent) -> MirrorRow:
    """The mirror row an event carries: its item, stream version, raw payload (at its schema version) and whether
    the item is public. Raises InvalidCatalogEvent when the event breaks its contract."""
    payload = event.payload
    match payload:
        case catalog_pb2.CatalogModelSnapshot():
            table, key, public = Table.MODELS, payload.model_id, payload.status == PUBLISHED
        case catalog_pb2.CatalogModelStatsUpdated():
            table, key, public = Table.MODEL_STATS, payload.model_id, True
        case catalog_pb2.CatalogImageSnapshot():
            table, key, public = Table.IMAGES, payload.image_id, payload.status == PUBLISHED
        case _:
            raise TypeError(f"search does not index {event.event_type}")
    if not key:
        raise InvalidCatalogEvent(f"{event.event_type} {event.event_id} names no item id")
    if event.stream_version < 1:
        raise InvalidCatalogEvent(f"{event.event_type} {event.event_id} has no stream version")
    return MirrorRow(
        table=table,
        key=key,
        version=event.stream_version,
        schema_version=event.envelope.schema_version,
        payload=event.envelope.payload,
        public=public,
        event_id=event.event_id,
        decoded=payload,
    )


def _put_sql(table: Table) -> str:
    key = table.key
    return f"""
        INSERT INTO {table} AS t ({key}, version, schema_version, payload, public, event_id)
        SELECT * FROM unnest(CAST(:keys AS text[]), CAST(:versions AS bigint[]), CAST(:schemas AS integer[]),
                             CAST(:payloads AS bytea[]), CAST(:publics AS boolean[]), CAST(:event_ids AS uuid[]))
        ON CONFLICT ({key}) DO UPDATE
        SET version = excluded.version, schema_version = excluded.schema_version, payload = excluded.payload,
            public = excluded.public, event_id = excluded.event_id, tx = pg_current_xact_id(),
            updated_at = clock_timestamp()
        WHERE excluded.version > t.version
        RETURNING {key}
    """


_PUT = {table: text(_put_sql(table)) for table in Table}
_HORIZON = text("SELECT CAST(pg_snapshot_xmin(pg_current_snapshot()) AS text)")
# A model's document reads two rows (snapshot, stats) that different events change. A writer first locks every
# model it touches in mirror_model_locks, in id order, with one statement that inserts the rows of new models
# and locks those of known ones: two transactions touching one model run one after the other (the later one
# builds from the other's committed state, so stats can never undo an unpublish nor an unpublish lose stats),
# also before the model's first row exists; one statement in one order leaves no room for a deadlock.
_LOCK_MODELS = text(
    "INSERT INTO mirror_model_locks (model_id) SELECT unnest(CAST(:ids AS text[])) "
    "ON CONFLICT (model_id) DO UPDATE SET model_id = excluded.model_id"
)
_MODELS_BY_ID = text(
    """
    SELECT m.model_id, m.version, m.schema_version, m.payload, m.public,
           s.version AS s_version, s.schema_version AS s_schema_version, s.payload AS s_payload
    FROM mirror_models m LEFT JOIN mirror_model_stats s USING (model_id)
    WHERE m.model_id = ANY(CAST(:ids AS text[]))
    """
)
_IMAGES_BY_ID = text(
    "SELECT image_id, version, schema_version, payload, public FROM mirror_images "
    "WHERE image_id = ANY(CAST(:ids AS text[]))"
)
_PUBLIC_MODELS_PAGE = text(
    """
    SELECT m.model_id, m.version, m.schema_version, m.payload, m.public,
           s.version AS s_version, s.schema_version AS s_schema_version, s.payload AS s_payload
    FROM mirror_models m LEFT JOIN mirror_model_stats s USING (model_id)
    WHERE m.public AND m.model_id > :after
    ORDER BY m.model_id LIMIT :limit
    """
)
_PUBLIC_IMAGES_PAGE = text(
    "SELECT image_id, version, schema_version, payload, public FROM mirror_images "
    "WHERE public AND image_id > :after ORDER BY image_id LIMIT :limit"
)
_CHANGED_MODELS = text(
    """
    SELECT model_id FROM mirror_models WHERE tx >= CAST(:horizon AS xid8)
    UNION SELECT model_id FROM mirror_model_stats WHERE tx >= CAST(:horizon AS xid8)
    """
)
_CHANGED_IMAGES = text("SELECT image_id FROM mirror_images WHERE tx >= CAST(:horizon AS xid8)")


_NOTHING_DECODED: Decoded = {}


class Mirror:
    """Reads and writes the mirror tables on the caller's connection (and so in the caller's transaction)."""

    def __init__(self, registry: EventRegistry) -> None:
        self.registry = registry

    @staticmethod
    async def lock_for_writing(conn: AsyncConnection) -> None:
        """Take the index-writes lock in shared mode until the transaction ends (waits while a rebuild swaps)."""
        await locks.lock(conn, INDEX_WRITES_LOCK, shared=True)

    @staticmethod
    async def lock_models(conn: AsyncConnection, model_ids: Iterable[str]) -> None:
        """Lock these models, in id order, until the transaction ends (waits for writers holding any of them)."""
        ids = sorted(set(model_ids))
        if ids:
            await conn.execute(_LOCK_MODELS, {"ids": text_array(ids)})

    @staticmethod
    async def put(conn: AsyncConnection, rows: Iterable[MirrorRow]) -> dict[Table, set[str]]:
        """Store each row unless the mirror holds the same or a newer version of its item; returns the keys
        that changed, per table. Several rows of one item keep the newest (one statement cannot update a row
        twice)."""
        newest: dict[tuple[Table, str], MirrorRow] = {}
        for row in rows:
            seen = newest.get((row.table, row.key))
            if seen is None or row.version > seen.version:
                newest[(row.table, row.key)] = row
        changed: dict[Table, set[str]] = {table: set() for table in Table}
        for table in Table:
            # In key order: two transactions locking rows of the same items lock them in the same order.
            batch = sorted((r for (t, _), r in newest.items() if t is table), key=lambda r: r.key)
            if not batch:
                continue
            result = await conn.execute(
                _PUT[table],
                {
                    "keys": text_array(r.key for r in batch),
                    "versions": int_array(r.version for r in batch),
                    "schemas": int_array(r.schema_version for r in batch),
                    "payloads": bytea_array(r.payload for r in batch),
                    "publics": bool_array(r.public for r in batch),
                    "event_ids": uuid_array(r.event_id for r in batch),
                },
            )
            changed[table].update(result.scalars())
        return changed

    async def documents(
        self, conn: AsyncConnection, model_ids: Iterable[str], image_ids: Iterable[str], decoded: Decoded | None = None
    ) -> Documents:
        """What the index must hold for these items, from the mirror: a document for each public one, a delete
        for the others (including models whose snapshot has not arrived: only their stats are known).

        `decoded` holds payloads at hand (the consumer's batch): a mirror row at one of those versions is built
        from it instead of decoding the row's bytes again."""
        known = decoded or _NOTHING_DECODED
        model_ids, image_ids = sorted(set(model_ids)), sorted(set(image_ids))
        docs = Documents([], [], [], [])
        if model_ids:
            rows = (await conn.execute(_MODELS_BY_ID, {"ids": text_array(model_ids)})).all()
            found = set()
            for row in rows:
                found.add(row.model_id)
                if row.public:
                    docs.models.append(self._model(row, known))
                else:
                    docs.deleted_models.append(row.model_id)
            docs.deleted_models.extend(m for m in model_ids if m not in found)
        if image_ids:
            rows = (await conn.execute(_IMAGES_BY_ID, {"ids": text_array(image_ids)})).all()
            found = set()
            for row in rows:
                found.add(row.image_id)
                if row.public:
                    docs.images.append(self._image(row, known))
                else:
                    docs.deleted_images.append(row.image_id)
            docs.deleted_images.extend(i for i in image_ids if i not in found)
        return docs

    async def public_models(self, conn: AsyncConnection, batch_size: int) -> AsyncIterator[list[ModelDocument]]:
        """Every public model's document, in batches (keyset over model ids: each batch its own statement)."""
        after = ""
        while True:
            rows = (await conn.execute(_PUBLIC_MODELS_PAGE, {"after": after, "limit": batch_size})).all()
            if not rows:
                return
            yield [self._model(row) for row in rows]
            after = rows[-1].model_id

    async def public_images(self, conn: AsyncConnection, batch_size: int) -> AsyncIterator[list[ImageDocument]]:
        """Every public image's document, in batches."""
        after = ""
        while True:
            rows = (await conn.execute(_PUBLIC_IMAGES_PAGE, {"after": after, "limit": batch_size})).all()
            if not rows:
                return
            yield [self._image(row) for row in rows]
            after = rows[-1].image_id

    @staticmethod
    async def horizon(conn: AsyncConnection) -> int:
        """The oldest transaction still running: every transaction below it has ended, and what it wrote is
        visible to statements from now on. Rows changed by later transactions are found by `changed_since`."""
        return int((await conn.execute(_HORIZON)).scalar_one())

    @staticmethod
    async def changed_since(conn: AsyncConnection, horizon: int) -> tuple[list[str], list[str]]:
        """Models and images whose rows were changed by a transaction at or after `horizon`."""
        params = {"horizon": str(horizon)}
        models = list((await conn.execute(_CHANGED_MODELS, params)).scalars())
        images = list((await conn.execute(_CHANGED_IMAGES, params)).scalars())
        return models, images

    def _model(self, row: Row[Any], known: Decoded = _NOTHING_DECODED) -> ModelDocument:
        snapshot = known.get((Table.MODELS, row.model_id, row.version))
        if snapshot is None:
            snapshot = self.registry.decode(MODEL_SNAPSHOT, row.schema_version, row.payload)
        assert isinstance(snapshot, catalog_pb2.CatalogModelSnapshot)
        if row.s_version is None:  # no stats event yet
            return model_document(snapshot, row.version)
        stats = known.get((Table.MODEL_STATS, row.model_id, row.s_version))
        if stats is None:
            stats = self.registry.decode(MODEL_STATS_UPDATED, row.s_schema_version, row.s_payload)
        assert isinstance(stats, catalog_pb2.CatalogModelStatsUpdated)
        return model_document(snapshot, row.version, stats, row.s_version)

    def _image(self, row: Row[Any], known: Decoded = _NOTHING_DECODED) -> ImageDocument:
        snapshot = known.get((Table.IMAGES, row.image_id, row.version))
        if snapshot is None:
            snapshot = self.registry.decode(IMAGE_SNAPSHOT, row.schema_version, row.payload)
        assert isinstance(snapshot, catalog_pb2.CatalogImageSnapshot)
        return image_document(snapshot, row.version)
