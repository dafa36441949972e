"""Use cases of the gallery: post, read, list, edit, delete and download images, and the collection of image
blobs no image uses any more.

Posting, step by step, and what a crash at each step leaves:
1. the bytes are fingerprinted (which also refuses what is not a whole, supported, reasonably sized image)
   and their generation metadata read; nothing is stored yet;
2. the shared lock of the image blob collection is taken (adapters/blob_collection.py), held until step 4
   ends, committed or not: a collection never deletes bytes between their storing and their image's commit,
   even when a deleted image's identical, unreferenced blob was about to be collected;
3. the file (and ComfyUI's JSON, if any) go to the content-addressed image store: identical bytes are one
   blob (stored again onto the same path); a crash after this step leaves an unreferenced blob, never served,
   which the collection deletes once older than its age;
4. one transaction links the resources to versions, appends catalog.ImagePosted and catalog.ImageSnapshot,
   and fills the read models; a crash before its commit leaves nothing else.
With a request id, a retry after a lost answer returns the image the first attempt posted (also when both
race: the second's request row clashes, and it returns the winner's image); a retry after a crash before the
commit posts anew, storing the bytes again.

Deleting an image keeps its row and events (the log is append-only) but no longer serves its files; the
collection (`collect_blobs`, run by the image cleanup job) deletes a blob once no image that is not Deleted
uses it (Hidden images keep theirs) and it is older than the age. A crash mid-collection leaves blobs that the
next round deletes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import BinaryIO, Final

from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from uuid_utils.compat import uuid7

from modelhub.catalog.adapters import community_queries as q
from modelhub.catalog.adapters import relink
from modelhub.catalog.adapters.blob_collection import IMAGE_BLOBS_LOCK, BlobCollector
from modelhub.catalog.adapters.community_projection import image_fingerprint
from modelhub.catalog.adapters.community_repository import CommunityRepository
from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.community_base import not_found
from modelhub.catalog.domain.community_events import GenerationSettings
from modelhub.catalog.domain.gallery import (
    MAX_IMAGE_BYTES,
    Image,
    ImageCounts,
    ImageStatus,
    StoredImage,
    choose_link,
    hash_link,
    merge_metadata,
    name_key,
    resource_of,
    settings_of,
)
from modelhub.catalog.files.blobstore import BlobStore
from modelhub.catalog.files.errors import BlobNotFound
from modelhub.catalog.handlers import Clock, utcnow
from modelhub.catalog.handlers.community_support import (
    UseCases,
    expect,
    is_request_clash,
    version_ref,
    visible_model,
    visible_version,
)
from modelhub.catalog.images import GenerationMetadata, fingerprint_image, read_generation_metadata
from modelhub.core.errors import FieldViolation, InvalidArgument, NotFound
from modelhub.core.events.store import EventStore

log = logging.getLogger(__name__)

RELINK_BATCH: Final = 20
"""Queued short hashes the re-link job handles per round."""


@dataclass(frozen=True)
class NewImage:
    """A validated PostImage: the bytes and what the poster states."""

    data: bytes
    gallery_version_id: str
    tags: tuple[str, ...]
    stated: GenerationMetadata | None
    request_id: str


@dataclass(frozen=True)
class ImageView:
    """An image with its live counts."""

    row: q.ImageRow
    counts: ImageCounts


def too_large(size: int) -> InvalidArgument:
    return InvalidArgument(
        f"the image has {size} bytes, over modelhub's limit of {MAX_IMAGE_BYTES} bytes: downscale or compress it",
        violations=[FieldViolation("chunk", f"at most {MAX_IMAGE_BYTES} bytes in all")],
        reason="IMAGE_FILE_TOO_LARGE",
    )


class Gallery(UseCases):
    """Gallery images over one database, its event store and the image blob store."""

    def __init__(self, engine: AsyncEngine, store: EventStore, blobs: BlobStore, *, clock: Clock = utcnow) -> None:
        super().__init__(engine, store, clock=clock)
        self.blobs = blobs
        self.collector = BlobCollector(engine, blobs, IMAGE_BLOBS_LOCK, q.referenced_image_blobs)
        """The image blob collection, and its lock that posts hold (it also bounds how many store at once)."""

    # -- posting ------------------------------------------------------------------------------------------

    async def post_image(self, actor: Actor, new: NewImage) -> ImageView:
        if len(new.data) > MAX_IMAGE_BYTES:
            raise too_large(len(new.data))
        fingerprint = await asyncio.to_thread(fingerprint_image, new.data)
        digest = image_fingerprint(fingerprint.sha256, new.gallery_version_id, new.tags)
        if existing := await self.created_by(actor, "image", new.request_id, digest):
            return await self.get_image(actor, existing)
        metadata = merge_metadata(await asyncio.to_thread(read_generation_metadata, new.data), new.stated)
        stored = StoredImage(
            fingerprint.sha256,
            fingerprint.mime_type,
            len(new.data),
            fingerprint.width,
            fingerprint.height,
            fingerprint.phash,
            fingerprint.blurhash,
        )
        image_id = str(uuid7())

        async def post(settings: GenerationSettings, repo: CommunityRepository, now: datetime) -> str:
            gallery = None
            if new.gallery_version_id:
                gallery = version_ref(await visible_version(repo.conn, actor, new.gallery_version_id))
            resources = []
            for resource in metadata.resources:
                by_hash = []
                if resource.hash and resource.hash_kind:
                    if resource.hash_kind.value == relink.AUTO_V3:  # may become known later: see adapters/relink.py
                        await relink.lock_for_lookup(repo.conn, relink.AUTO_V3, resource.hash)
                    by_hash = await q.versions_by_hash(repo.conn, resource.hash, resource.hash_kind.value, actor)
                by_name = [] if resource.hash else await q.versions_by_name(repo.conn, name_key(resource.name), actor)
                resources.append(resource_of(resource, choose_link(resource, by_hash, by_name)))
            image = Image.post(
                image_id,
                actor,
                gallery=gallery,
                stored=stored,
                tags=new.tags,
                generation=settings,
                resources=tuple(resources),
                request_id=new.request_id,
                now=now,
            )
            await repo.save_image(image, ImageCounts())
            return image_id

        try:
            async with self.collector.writing():  # from storing the bytes until the image is committed
                await asyncio.to_thread(self._store, new.data)
                settings = settings_of(
                    metadata,
                    await asyncio.to_thread(self._store_text, metadata.comfyui_prompt),
                    await asyncio.to_thread(self._store_text, metadata.comfyui_workflow),
                )
                posted = await self.run(None, partial(post, settings))
        except exc.IntegrityError as error:
            if not is_request_clash(error):
                raise
            posted = await self.created_by(actor, "image", new.request_id, digest) or image_id
        return await self.get_image(actor, posted)

    def _store(self, data: bytes) -> str:
        """Store bytes in the image store; returns their SHA256 (identical bytes are stored once)."""
        upload_id = f"image-{uuid7()}"
        self.blobs.begin(upload_id)
        try:
            self.blobs.append(upload_id, 0, data)
            stored = self.blobs.finish(upload_id)
        finally:
            self.blobs.abort(upload_id)  # drops the part or the finish marker; the blob stays
        return stored.hashes.sha256

    def _store_text(self, value: str | None) -> str:
        return self._store(value.encode()) if value else ""

    # -- re-linking ----------------------------------------------------------------------------------------

    async def relink_queued(self, limit: int = RELINK_BATCH) -> int:
        """Link the images whose unlinked resources name a short hash that became known since they were posted
        (adapters/relink.py); returns how many queued hashes were handled.

        Each image is its own transaction (catalog.ImageResourcesLinked and a catalog.ImageSnapshot), linked as
        at posting time but with what is visible to the image's owner now (public versions and their own).
        A queued hash is dropped only after all its images were handled: a crash in between handles it again,
        and linking what is linked already records nothing, so nothing is linked twice or missed."""
        async with self.engine.connect() as conn:
            entries = await relink.queued(conn, limit)
        for entry in entries:
            async with self.engine.connect() as conn:
                image_ids = await relink.images_naming(conn, entry.hash_kind, entry.hash)
            for image_id in image_ids:
                await self.run(None, partial(self._relink, image_id))
        async with self.engine.begin() as conn:
            await relink.done(conn, entries)
        return len(entries)

    async def _relink(self, image_id: str, repo: CommunityRepository, now: datetime) -> None:
        image = await repo.load_image(image_id)
        owner = Actor(image.owner_id)
        links = {}
        for position, resource in enumerate(image.resources):
            if resource.hash and resource.hash_kind and not resource.model_version_id:
                found = hash_link(await q.versions_by_hash(repo.conn, resource.hash, resource.hash_kind, owner))
                if found is not None:
                    links[position] = found
        image.link_resources(links, now)
        if image.pending:
            await repo.save_image(image)

    # -- reading ------------------------------------------------------------------------------------------

    async def get_image(self, actor: Actor | None, image_id: str) -> ImageView:
        """The image if visible to `actor` (Deleted ones only to their owner and privileged users)."""

        async def read(conn: AsyncConnection) -> ImageView:
            row = await q.image(conn, image_id)
            if row is None or not await q.image_visible(conn, image_id, actor):
                raise not_found("image", image_id)
            return ImageView(row, await q.image_counts(conn, image_id))

        return await self.read(read)

    async def list_images(
        self, actor: Actor | None, by: str, key: str, *, after: str | None, limit: int
    ) -> list[ImageView]:
        """Visible images of a version, a model or a user ("version", "model", "user"), newest first. The version
        or model must be visible to `actor` (NotFound otherwise: a list must not reveal a hidden one)."""

        async def read(conn: AsyncConnection) -> list[ImageView]:
            if by == "version":
                await visible_version(conn, actor, key)
            elif by == "model":
                await visible_model(conn, actor, key)
            rows = await q.list_images(conn, by, key, actor, after, limit)
            return [ImageView(row, await q.image_counts(conn, row.image_id)) for row in rows]

        return await self.read(read)

    async def visible_version_ids(self, actor: Actor | None, version_ids: list[str]) -> set[str]:
        return await self.read(lambda conn: q.visible_versions(conn, version_ids, actor))

    # -- changing -----------------------------------------------------------------------------------------

    async def update_image(
        self, actor: Actor, image_id: str, expected_version: int, tags: tuple[str, ...] | None, hidden: bool | None
    ) -> ImageView:
        async def update(repo: CommunityRepository, now: datetime) -> None:
            image = await self._editable(repo, actor, image_id)
            expect(image, expected_version)
            image.update(actor, tags, hidden, now)
            await repo.save_image(image)

        await self.run(expected_version, update)
        return await self.get_image(actor, image_id)

    async def delete_image(self, actor: Actor, image_id: str, expected_version: int | None) -> ImageView:
        """Delete; a retried delete of a deleted image succeeds and changes nothing."""

        async def delete(repo: CommunityRepository, now: datetime) -> None:
            image = await self._editable(repo, actor, image_id)
            expect(image, expected_version)
            image.delete(actor, now)
            await repo.save_image(image)

        await self.run(expected_version, delete)
        return await self.get_image(actor, image_id)

    async def _editable(self, repo: CommunityRepository, actor: Actor, image_id: str) -> Image:
        image = await repo.load_image(image_id)
        if not image.exists or not await q.image_visible(repo.conn, image_id, actor):
            raise not_found("image", image_id)
        image.require_editor(actor)
        return image

    # -- files --------------------------------------------------------------------------------------------

    async def open_part(self, actor: Actor | None, image_id: str, part: str) -> tuple[str, int, BinaryIO]:
        """(content type, size, open file) of the image file ("file") or its ComfyUI JSON ("comfyui_prompt",
        "comfyui_workflow"); NotFound when the image is not visible, is deleted, or has no such part (also when
        the part's bytes are gone)."""
        row = (await self.get_image(actor, image_id)).row
        if row.status == ImageStatus.DELETED:  # its owner and moderators still see it; its files are not served
            raise NotFound(
                f"image {image_id} is deleted: its files are no longer served",
                reason="IMAGE_DELETED",
                metadata={"image_id": image_id},
            )
        sha, mime = {
            "file": (row.blob_sha256, row.mime_type),
            "comfyui_prompt": (row.generation.comfyui_prompt_sha256, "application/json"),
            "comfyui_workflow": (row.generation.comfyui_workflow_sha256, "application/json"),
        }[part]
        absent = not_found(f"image {part.replace('_', ' ')}", image_id)
        if not sha:
            raise absent
        try:
            handle = await asyncio.to_thread(self.blobs.open_blob, sha)
        except BlobNotFound:
            # Deleted (and collected) since it was read, or the image store lost it (restored from another time).
            log.warning("image %s: its %s (blob %s) is not in the image store", image_id, part, sha)
            raise absent from None
        size = await asyncio.to_thread(lambda: handle.seek(0, 2))
        handle.seek(0)
        return mime, size, handle

    # -- blob collection ----------------------------------------------------------------------------------

    async def collect_blobs(self, older_than: timedelta) -> list[str]:
        """Delete image blobs unmodified for `older_than` that no image that is not Deleted uses (file or ComfyUI
        JSON); returns their SHA256s (see the module doc)."""
        return await self.collector.collect(older_than)

    async def clean_up(self, *, older_than: timedelta) -> int:
        """The image cleanup job's round: collect, and log what was collected. Returns 0 (a round does all it
        can: nothing to run again at once)."""
        collected = await self.collect_blobs(older_than)
        if collected:
            log.info("image cleanup: %d blobs collected", len(collected))
        return 0
