"""Use cases of collections (of models or of images; Public, Unlisted or Private).

Crash, retry, redelivery: see handlers/community_support.py. CreateCollection with a request id is
idempotent; items are a set, so a retried add or remove changes nothing the second time.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection
from uuid_utils.compat import uuid7

from modelhub.catalog.adapters import community_queries as q
from modelhub.catalog.adapters.community_projection import collection_fingerprint
from modelhub.catalog.adapters.community_repository import CommunityRepository
from modelhub.catalog.domain.collections import Collection, Visibility, collection_stream
from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.community_base import SubjectKind, can_view, not_found
from modelhub.catalog.handlers.community_support import UseCases, expect, is_request_clash, visible_subject


class Collections(UseCases):
    async def create(
        self,
        actor: Actor,
        name: str,
        description: str,
        visibility: Visibility,
        item_kind: SubjectKind,
        request_id: str,
    ) -> q.CollectionRow:
        digest = collection_fingerprint(name, description, visibility.value, item_kind.value)
        if existing := await self.created_by(actor, "collection", request_id, digest):
            return await self.get(actor, existing)
        collection_id = str(uuid7())

        async def create(repo: CommunityRepository, now: datetime) -> None:
            collection = Collection.create(
                collection_id, actor, name, description, visibility, item_kind, request_id, now
            )
            await repo.save(collection)

        try:
            await self.run(None, create)
        except exc.IntegrityError as error:
            if not is_request_clash(error):
                raise
            collection_id = await self.created_by(actor, "collection", request_id, digest) or collection_id
        return await self.get(actor, collection_id)

    async def update(
        self,
        actor: Actor,
        collection_id: str,
        expected_version: int,
        name: str | None,
        description: str | None,
        visibility: Visibility | None,
    ) -> q.CollectionRow:
        async def update(repo: CommunityRepository, now: datetime) -> None:
            collection = await self._editable(repo, actor, collection_id)
            expect(collection, expected_version)
            collection.update(actor, name, description, visibility, now)
            await repo.save(collection)

        await self.run(expected_version, update)
        return await self.get(actor, collection_id)

    async def delete(self, actor: Actor, collection_id: str, expected_version: int | None) -> q.CollectionRow:
        async def delete(repo: CommunityRepository, now: datetime) -> None:
            collection = await self._editable(repo, actor, collection_id)
            expect(collection, expected_version)
            collection.delete(actor, now)
            await repo.save(collection)

        await self.run(expected_version, delete)
        return await self.get(actor, collection_id)

    async def add_item(
        self, actor: Actor, collection_id: str, kind: SubjectKind, item_id: str
    ) -> tuple[q.CollectionRow, bool]:
        """Add a model or image the actor may see; False when it was in the collection already."""

        async def add(repo: CommunityRepository, now: datetime) -> bool:
            collection = await self._editable(repo, actor, collection_id)
            collection.require_kind(kind)
            await visible_subject(repo.conn, actor, kind, item_id)
            added = collection.add_item(actor, kind, item_id, now)
            await repo.save(collection)
            return added

        added = await self.run(None, add)
        return await self.get(actor, collection_id), added

    async def remove_item(self, actor: Actor, collection_id: str, item_id: str) -> tuple[q.CollectionRow, bool]:
        """Remove an item (also one no longer visible); False when it was not in the collection."""

        async def remove(repo: CommunityRepository, now: datetime) -> bool:
            collection = await self._editable(repo, actor, collection_id)
            removed = collection.remove_item(actor, item_id, now)
            await repo.save(collection)
            return removed

        removed = await self.run(None, remove)
        return await self.get(actor, collection_id), removed

    async def get(self, actor: Actor | None, collection_id: str) -> q.CollectionRow:
        """A collection the actor may see: Public and Unlisted ones to everyone, the rest to their owner and
        privileged users only."""

        async def read(conn: AsyncConnection) -> q.CollectionRow:
            row = await q.collection(conn, collection_id)
            public = row is not None and row.status == "Active" and row.visibility != Visibility.PRIVATE
            if row is None or not can_view(actor, row.owner_id, public):
                raise not_found("collection", collection_id)
            return row

        return await self.read(read)

    async def list_collections(
        self, actor: Actor | None, owner_id: str, *, after: str | None, limit: int
    ) -> list[q.CollectionRow]:
        return await self.read(lambda conn: q.list_collections(conn, owner_id, actor, after, limit))

    async def list_items(
        self, actor: Actor | None, collection_id: str, *, after: tuple[datetime, str] | None, limit: int
    ) -> list[q.Edge]:
        await self.get(actor, collection_id)
        return await self.read(lambda conn: q.list_collection_items(conn, collection_id, actor, after, limit))

    async def _editable(self, repo: CommunityRepository, actor: Actor, collection_id: str) -> Collection:
        collection = await repo.load(Collection, collection_stream(collection_id))
        collection.require_editor(actor, collection_id)
        return collection
