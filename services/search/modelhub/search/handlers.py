"""Use cases: index catalog changes (the consumer's side) and answer queries (the gRPC side)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.search.adapters.mirror import Documents, Mirror, MirrorRow, Table, decoded_payloads
from modelhub.search.domain.ports import SearchEngine, SearchIndex
from modelhub.search.domain.queries import ImagePage, ImageQuery, ModelPage, ModelQuery, Suggestion, SuggestionKind


async def write_documents(index: SearchIndex, documents: Documents, *, refresh: bool = True) -> None:
    """Apply `documents` to one index generation; with `refresh`, they are searchable when this returns."""
    if documents.models:
        await index.upsert_models(documents.models)
    if documents.deleted_models:
        await index.delete_models(documents.deleted_models)
    if documents.images:
        await index.upsert_images(documents.images)
    if documents.deleted_images:
        await index.delete_images(documents.deleted_images)
    if refresh and documents.count:
        await index.refresh()


class Indexer:
    """Brings catalog changes into the mirror and the live index, in the caller's database transaction.

    `apply` runs inside the consumer's transaction, after the batch's events were claimed in its inbox:

    1. take the index-writes lock (shared; a rebuild's final swap holds it exclusively, so a batch is written
       either wholly before the swap, and caught up by the rebuild from the mirror, or wholly after it, into the
       new generation), then lock the mirror rows of the models the batch touches, in id order;
    2. store each event's state in the mirror unless a newer one is there (version guard);
    3. for every item whose mirror rows changed, build its document from the mirror (or a delete, when it is
       not public), write the live index and refresh it;
    4. return; the consumer commits, then acks.

    Crash or error before the index write: the transaction rolls back, nothing happened, the events are
    redelivered. After the index write but before the commit: the index is ahead of the mirror until the
    redelivery, which changes the same rows again and writes the same documents (idempotent). After the commit:
    the redelivered events are duplicates in the inbox and are not applied. An event older than the mirror's
    state changes no row and writes nothing, so redelivery, replay and reordering leave the index as it was.
    """

    def __init__(self, engine: SearchEngine, mirror: Mirror) -> None:
        self.engine = engine
        self.mirror = mirror

    async def apply(self, conn: AsyncConnection, rows: Sequence[MirrorRow]) -> Documents:
        """Apply `rows` to the mirror and the live index; returns what was written to the index."""
        await self.mirror.lock_for_writing(conn)
        await self.mirror.lock_models(conn, (r.key for r in rows if r.table is not Table.IMAGES))
        changed = await self.mirror.put(conn, rows)
        documents = await self.mirror.documents(
            conn,
            changed[Table.MODELS] | changed[Table.MODEL_STATS],
            changed[Table.IMAGES],
            decoded_payloads(rows, changed),  # the events' payloads, decoded once by the consumer
        )
        if documents.count:
            # Looked up after taking the lock: a swap cannot happen between here and the commit.
            await write_documents(await self.engine.live(), documents)
        return documents


class Searcher:
    """Queries run against the live generation (a rebuild's swap is atomic for them)."""

    def __init__(self, engine: SearchEngine) -> None:
        self.engine = engine

    async def models(self, query: ModelQuery) -> ModelPage:
        return await (await self.engine.live()).search_models(query)

    async def images(self, query: ImageQuery) -> ImagePage:
        return await (await self.engine.live()).search_images(query)

    async def suggest(
        self, prefix: str, kinds: Sequence[SuggestionKind], browsing_level: int, limit: int
    ) -> Sequence[Suggestion]:
        return await (await self.engine.live()).suggest(prefix, kinds, browsing_level, limit)
