"""The collection of image blobs: a deleted image's file and ComfyUI JSON are deleted (its row and events stay,
its files are not served), Hidden images and images sharing bytes with a deleted one keep theirs, bytes a
crashed post left are deleted once older than the age, the collection and posts exclude each other through the
image blob lock (the collection waits its turn under overlapping posts, for a while), and the cleanup job runs
it on the files' schedule with their age."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import grpc
import grpc.aio
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modelhub.catalog import bootstrap_community
from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.bootstrap_community import build_gallery
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.files.blobstore import BlobStore
from modelhub.catalog.handlers.gallery import Gallery
from modelhub.catalog.v1 import gallery_pb2 as gpb
from modelhub.catalog.v1 import gallery_pb2_grpc
from modelhub.devstack.waiting import wait_until

from .community_helpers import count_events, post
from .conftest import auth
from .file_helpers import failure
from .image_samples import comfyui_graph, comfyui_workflow, picture, png
from .model_helpers import ALICE, BOB
from .test_autov3_gallery import advisory_lock_waiters, waiting_on_a_lock
from .test_gallery_grpc import download

ALICE_MD = auth("alice")
BOB_MD = auth("bob")
NOW = timedelta(0)
"""An age every blob has: collect whatever nothing references."""


@pytest.fixture
def gallery(settings: CatalogSettings, catalog: Catalog) -> Gallery:
    """The gallery use cases, sharing the server's image store (settings.data_dir)."""
    return build_gallery(settings, catalog)


@pytest.fixture
def gallery_stub(channel: grpc.aio.Channel) -> gallery_pb2_grpc.GalleryServiceStub:
    return gallery_pb2_grpc.GalleryServiceStub(channel)


def image(size: tuple[int, int]) -> bytes:
    return png(image=picture(size=size))


def orphan(blobs: BlobStore, data: bytes, *, age: timedelta = NOW) -> str:
    """Store `data` as a post does before its commit, and make the blob `age` old; returns its SHA256."""
    upload_id = f"image-orphan-{len(data)}-{time.monotonic_ns()}"
    blobs.begin(upload_id)
    blobs.append(upload_id, 0, data)
    stored = blobs.finish(upload_id)
    blobs.abort(upload_id)
    then = time.time() - age.total_seconds()
    os.utime(stored.path, (then, then))
    return stored.hashes.sha256


async def test_a_deleted_images_file_and_comfyui_json_are_collected_and_nothing_else_changes(
    catalog: Catalog, gallery: Gallery, gallery_stub: gallery_pb2_grpc.GalleryServiceStub
) -> None:
    data = png(
        {"prompt": json.dumps(comfyui_graph()), "workflow": json.dumps(comfyui_workflow())},
        image=picture(size=(40, 30)),
    )
    view = await post(gallery, ALICE, data)
    image_id, generation = view.row.image_id, view.row.generation
    shas = {view.row.blob_sha256, generation.comfyui_prompt_sha256, generation.comfyui_workflow_sha256}
    assert len(shas) == 3 and all(gallery.blobs.exists(sha) for sha in shas)
    assert await gallery.collect_blobs(NOW) == [], "a Published image keeps its bytes"

    await gallery.delete_image(ALICE, image_id, None)
    parts = (gpb.IMAGE_PART_FILE, gpb.IMAGE_PART_COMFYUI_PROMPT, gpb.IMAGE_PART_COMFYUI_WORKFLOW)
    for part in parts:  # not served from the deletion on, to its owner too, though the bytes are still there
        refused = await failure(download(gallery_stub, image_id, part, ALICE_MD))
        assert (refused.code, refused.reason) == (grpc.StatusCode.NOT_FOUND, "IMAGE_DELETED")
    deleted = await gallery.get_image(ALICE, image_id)
    events = await count_events(catalog.engine)

    assert set(await gallery.collect_blobs(NOW)) == shas

    assert not any(gallery.blobs.exists(sha) for sha in shas)
    assert await gallery.collect_blobs(NOW) == []
    assert await count_events(catalog.engine) == events
    assert await gallery.get_image(ALICE, image_id) == deleted, "the row stays, Deleted, for its owner"
    assert deleted.row.status == "Deleted"
    for md in ((), BOB_MD):
        missing = await failure(gallery_stub.GetImage(gpb.GetImageRequest(image_id=image_id), metadata=md))
        assert missing.code == grpc.StatusCode.NOT_FOUND
    for part in parts:
        refused = await failure(download(gallery_stub, image_id, part, ALICE_MD))
        assert (refused.code, refused.reason) == (grpc.StatusCode.NOT_FOUND, "IMAGE_DELETED")


async def test_hidden_images_and_images_sharing_bytes_with_a_deleted_one_keep_their_bytes(
    gallery: Gallery, gallery_stub: gallery_pb2_grpc.GalleryServiceStub
) -> None:
    hidden_data, shared = image((41, 30)), image((42, 30))
    hidden = await post(gallery, ALICE, hidden_data)
    await gallery.update_image(ALICE, hidden.row.image_id, hidden.row.version, None, True)
    first = await post(gallery, ALICE, shared, tags=["first"])
    second = await post(gallery, BOB, shared, tags=["second"])
    assert first.row.blob_sha256 == second.row.blob_sha256
    await gallery.delete_image(ALICE, first.row.image_id, None)

    assert await gallery.collect_blobs(NOW) == []

    assert await download(gallery_stub, hidden.row.image_id, gpb.IMAGE_PART_FILE, ALICE_MD) == (
        "image/png",
        hidden_data,
    )
    assert await download(gallery_stub, second.row.image_id, gpb.IMAGE_PART_FILE) == ("image/png", shared)
    # Should its bytes go all the same (a restore from another time), the download says so cleanly.
    assert gallery.blobs.delete(second.row.blob_sha256)
    gone = await failure(download(gallery_stub, second.row.image_id, gpb.IMAGE_PART_FILE))
    assert (gone.code, gone.reason) == (grpc.StatusCode.NOT_FOUND, "IMAGE_FILE_NOT_FOUND")


async def test_bytes_a_post_stored_before_crashing_are_kept_while_young_and_collected_once_old(
    gallery: Gallery,
) -> None:
    young = await asyncio.to_thread(orphan, gallery.blobs, image((43, 30)), age=timedelta(minutes=59))
    old = await asyncio.to_thread(orphan, gallery.blobs, image((44, 30)), age=timedelta(minutes=61))

    assert await gallery.collect_blobs(timedelta(hours=1)) == [old]

    assert gallery.blobs.exists(young) and not gallery.blobs.exists(old)


def pause_posts(
    gallery: Gallery, monkeypatch: pytest.MonkeyPatch, count: int = 1
) -> tuple[asyncio.Event, asyncio.Event]:
    """Hold the next `count` posts between storing their bytes and committing their image (the shared lock
    held): returns (the first one stored, let them commit)."""
    stored, commit = asyncio.Event(), asyncio.Event()
    run = gallery.run
    paused = 0

    async def run_when_told(*args: Any, **kwargs: Any) -> Any:
        nonlocal paused
        if paused < count:
            paused += 1
            stored.set()
            await commit.wait()
        return await run(*args, **kwargs)

    monkeypatch.setattr(gallery, "run", run_when_told)
    return stored, commit


async def test_a_collection_waits_for_a_post_holding_the_lock_and_then_keeps_the_bytes_it_references(
    gallery: Gallery, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post of bytes identical to a deleted image's stores them onto the unreferenced blob's path; collected
    then, the new image would have no bytes."""
    data = image((45, 30))
    doomed = await post(gallery, ALICE, data)
    await gallery.delete_image(ALICE, doomed.row.image_id, None)
    stored, commit = pause_posts(gallery, monkeypatch)
    posting = asyncio.create_task(post(gallery, BOB, data))
    await asyncio.wait_for(stored.wait(), 10)

    collecting = asyncio.create_task(gallery.collect_blobs(NOW))
    await wait_until(lambda: advisory_lock_waiters(engine, 1), 10, "the collection to wait for the post")
    assert not collecting.done() and gallery.blobs.exists(doomed.row.blob_sha256)

    commit.set()
    again = await posting
    assert await collecting == [], "the post committed first: its image references the bytes"
    mime, size, handle = await gallery.open_part(BOB, again.row.image_id, "file")
    with handle:
        assert (mime, size, handle.read()) == ("image/png", len(data), data)


async def test_a_collection_gets_its_turn_while_posts_keep_overlapping(
    gallery: Gallery, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a steady stream of posts one nearly always holds the shared lock; a collection that only tried the
    lock would skip every round. It waits for the posts in flight, and posts made meanwhile wait for its batch."""
    doomed = await post(gallery, ALICE, image((49, 30)))
    await gallery.delete_image(ALICE, doomed.row.image_id, None)
    stored, commit = pause_posts(gallery, monkeypatch)
    first = asyncio.create_task(post(gallery, BOB, image((50, 30))))
    await asyncio.wait_for(stored.wait(), 10)  # the first post holds the shared lock
    collecting = asyncio.create_task(gallery.collect_blobs(NOW))
    await wait_until(lambda: advisory_lock_waiters(engine, 1), 10, "the collection to wait for the first post")

    second = asyncio.create_task(post(gallery, BOB, image((51, 30))))
    await wait_until(lambda: advisory_lock_waiters(engine, 2), 10, "the second post to queue behind the collection")
    assert not collecting.done() and not second.done()

    commit.set()
    assert await collecting == [doomed.row.blob_sha256]
    for posted in (await first, await second):
        assert gallery.blobs.exists(posted.row.blob_sha256)
    assert not gallery.blobs.exists(doomed.row.blob_sha256)


async def test_a_collection_round_stops_when_a_post_keeps_the_lock_past_the_wait(
    gallery: Gallery, monkeypatch: pytest.MonkeyPatch
) -> None:
    doomed = await post(gallery, ALICE, image((52, 30)))
    await gallery.delete_image(ALICE, doomed.row.image_id, None)
    monkeypatch.setattr(gallery.collector, "lock_wait", timedelta(milliseconds=200))
    stored, commit = pause_posts(gallery, monkeypatch)
    posting = asyncio.create_task(post(gallery, BOB, image((53, 30))))
    await asyncio.wait_for(stored.wait(), 10)

    started = time.monotonic()
    assert await gallery.collect_blobs(NOW) == []
    assert time.monotonic() - started >= 0.2, "the round waited for the post before it stopped"
    assert gallery.blobs.exists(doomed.row.blob_sha256)

    commit.set()
    await posting
    assert await gallery.collect_blobs(NOW) == [doomed.row.blob_sha256], "the next round goes on"


async def test_a_post_of_bytes_being_collected_waits_for_the_batch_and_stores_them_again(
    gallery: Gallery, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = image((46, 30))
    doomed = await post(gallery, ALICE, data)
    sha = doomed.row.blob_sha256
    await gallery.delete_image(ALICE, doomed.row.image_id, None)
    decided, go_on = asyncio.Event(), asyncio.Event()
    referenced = gallery.collector.referenced

    async def decide_then_wait(conn: AsyncConnection, candidates: Sequence[str]) -> set[str]:
        found = await referenced(conn, candidates)
        decided.set()
        await go_on.wait()
        return found

    monkeypatch.setattr(gallery.collector, "referenced", decide_then_wait)
    collecting = asyncio.create_task(gallery.collect_blobs(NOW))
    await asyncio.wait_for(decided.wait(), 10)  # the batch holds the lock and found the blob unreferenced
    posting = asyncio.create_task(post(gallery, BOB, data))
    await wait_until(lambda: waiting_on_a_lock(engine), 10, "the post to wait for the collection batch")
    assert not posting.done()

    go_on.set()
    assert await collecting == [sha]
    again = await posting
    assert again.row.blob_sha256 == sha and gallery.blobs.exists(sha)


async def test_the_image_cleanup_job_runs_on_the_files_cleanup_schedule_with_the_session_lifetime_as_age(
    settings: CatalogSettings, catalog: Catalog
) -> None:
    configured = settings.model_copy(update={"upload_session_ttl_seconds": 3600.0, "cleanup_interval_seconds": 7.0})
    jobs = {
        name: (interval, job)
        for interval, _, job, name in bootstrap_community.jobs(configured, catalog, asyncio.Event())
    }
    interval, cleanup = jobs["image cleanup"]
    blobs = bootstrap_community.image_blobs(settings.data_dir)
    young = await asyncio.to_thread(orphan, blobs, image((47, 30)), age=timedelta(minutes=59))
    old = await asyncio.to_thread(orphan, blobs, image((48, 30)), age=timedelta(minutes=61))

    assert (interval, await cleanup()) == (7.0, 0)

    assert blobs.exists(young) and not blobs.exists(old)
    without_file_jobs = settings.model_copy(update={"run_file_jobs": False})
    names = [name for *_, name in bootstrap_community.jobs(without_file_jobs, catalog, asyncio.Event())]
    assert "image cleanup" not in names
