"""Gallery images made with A1111: "Lora hashes" and "TI hashes" (12 hex digits) link to the versions whose files
they name, by the start of the file's AutoV3 (a safetensors LoRA) or of its SHA256 (other LoRAs, embeddings);
images posted before a LoRA's AutoV3 was known are linked once it is, and a post racing with the recording is
never left behind."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.catalog.adapters import relink
from modelhub.catalog.adapters.projection import ModelProjection
from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.bootstrap_community import build_gallery
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.domain.events import FileHash, FileHashesAdded
from modelhub.catalog.handlers.files import FileCatalog
from modelhub.catalog.handlers.gallery import Gallery
from modelhub.catalog.v1.files_pb2_grpc import FileServiceStub
from modelhub.devstack.waiting import wait_until

from .community_helpers import event_types, post
from .file_helpers import clean_pickle, safetensors_bytes, upload
from .image_samples import png
from .model_helpers import ALICE, BOB
from .test_autov3 import addnet_hash
from .test_files_rpc_lookup import draft_version, publish


@pytest.fixture
def gallery(settings: CatalogSettings, catalog: Catalog) -> Gallery:
    return build_gallery(settings, catalog)


def a1111_png(lora_hash: str, ti_hash: str = "0123456789ab") -> bytes:
    """What A1111 writes for an image made with the LoRA `knight` and the embedding `easyneg`."""
    parameters = (
        "a knight in armor <lora:knight:0.8>\n"
        "Negative prompt: easyneg\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x48, Model hash: 6ce0161689, "
        f'Lora hashes: "knight: {lora_hash.lower()}", TI hashes: "easyneg: {ti_hash.lower()}", Version: v1.10.1'
    )
    return png({"parameters": parameters})


def links(view: object) -> dict[str, tuple[str, str]]:
    return {r.name: (r.hash_kind, r.model_version_id) for r in view.row.resources}  # type: ignore[attr-defined]


async def published_upload(
    files_stub: FileServiceStub, catalog: Catalog, name: str, content: bytes, file_name: str
) -> tuple[str, str]:
    """A published version holding one uploaded file: (model id, version id)."""
    version_id = await draft_version(catalog, name=name)
    done = await upload(files_stub, version_id, content, file_name)
    await publish(catalog, ALICE, done.model_id)
    return done.model_id, version_id


async def test_lora_and_ti_hashes_link_by_the_autov3_or_sha256_prefix(
    files_stub: FileServiceStub, files: FileCatalog, catalog: Catalog, gallery: Gallery
) -> None:
    lora = safetensors_bytes(4096, metadata={"ss_output_name": "knight"})
    embedding = safetensors_bytes(768, metadata={"name": "easyneg"})
    _, lora_version = await published_upload(files_stub, catalog, "Knight", lora, "knight.safetensors")
    _, ti_version = await published_upload(files_stub, catalog, "EasyNeg", embedding, "easyneg.safetensors")
    # The same LoRA uploaded again later: the link goes to the original (the oldest version), as documented.
    await published_upload(files_stub, catalog, "Knight copy", lora, "knight-copy.safetensors")
    await files.hash_auto_v3()

    view = await post(gallery, BOB, a1111_png(addnet_hash(lora)[:12], hashlib.sha256(embedding).hexdigest()[:12]))

    assert links(view)["knight"] == ("AutoV3", lora_version)  # a safetensors LoRA: its AutoV3
    assert links(view)["easyneg"] == ("AutoV3", ti_version)  # an embedding: A1111 hashes the whole file
    listed = await gallery.list_images(None, "version", lora_version, after=None, limit=5)
    assert [v.row.image_id for v in listed] == [view.row.image_id]


async def test_a_pt_lora_links_by_its_sha256_prefix(
    files_stub: FileServiceStub, files: FileCatalog, catalog: Catalog, gallery: Gallery
) -> None:
    pt = clean_pickle()
    version_id = await draft_version(catalog, name="Old knight")
    done = await upload(files_stub, version_id, pt, "knight.pt")
    await files.scan_pending()
    await publish(catalog, ALICE, done.model_id)

    view = await post(gallery, BOB, a1111_png(done.file.blob_sha256[:12]))

    assert links(view)["knight"] == ("AutoV3", version_id)


async def test_an_image_posted_before_the_autov3_was_known_is_linked_once_it_is(
    files_stub: FileServiceStub, files: FileCatalog, catalog: Catalog, gallery: Gallery
) -> None:
    lora = safetensors_bytes(4096, metadata={"ss_output_name": "knight"})
    _, lora_version = await published_upload(files_stub, catalog, "Knight", lora, "knight.safetensors")
    short = addnet_hash(lora)[:12]
    early = await post(gallery, BOB, a1111_png(short))
    assert links(early)["knight"] == ("AutoV3", "")  # the job has not hashed the LoRA yet
    assert await gallery.relink_queued() == 0

    await files.hash_auto_v3()
    assert await gallery.relink_queued() == 1

    view = await gallery.get_image(None, early.row.image_id)
    assert links(view)["knight"] == ("AutoV3", lora_version)
    stream = f"image-{early.row.image_id}"
    assert (await event_types(catalog.engine, stream))[-2:] == ["catalog.ImageResourcesLinked", "catalog.ImageSnapshot"]
    listed = await gallery.list_images(None, "version", lora_version, after=None, limit=5)
    assert [v.row.image_id for v in listed] == [early.row.image_id]
    assert await gallery.relink_queued() == 0  # the queue is empty

    # A crash after linking and before the queue entry was dropped: the job runs again and links nothing twice.
    count = len(await event_types(catalog.engine, stream))
    async with catalog.engine.begin() as conn:
        await relink.enqueue(conn, relink.AUTO_V3, short, catalog.clock())
    assert await gallery.relink_queued() == 1
    assert len(await event_types(catalog.engine, stream)) == count


async def test_re_linking_links_only_versions_the_images_owner_may_see(
    files_stub: FileServiceStub, files: FileCatalog, catalog: Catalog, gallery: Gallery
) -> None:
    lora = safetensors_bytes(4096)
    version_id = await draft_version(catalog, name="Secret knight")
    await upload(files_stub, version_id, lora, "knight.safetensors")  # Alice's draft
    bobs = await post(gallery, BOB, a1111_png(addnet_hash(lora)[:12]))
    alices = await post(gallery, ALICE, a1111_png(addnet_hash(lora)[:12]))

    await files.hash_auto_v3()
    await gallery.relink_queued()

    assert links(await gallery.get_image(BOB, bobs.row.image_id))["knight"] == ("AutoV3", "")
    assert links(await gallery.get_image(ALICE, alices.row.image_id))["knight"] == ("AutoV3", version_id)


async def advisory_lock_waiters(engine: AsyncEngine, count: int) -> bool:
    """Whether at least `count` sessions of the test's database wait for an advisory lock."""
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
            )
        )
        return int(result.scalar_one()) >= count


async def waiting_on_a_lock(engine: AsyncEngine) -> bool:
    """Whether a session of the test's database waits for an advisory lock."""
    return await advisory_lock_waiters(engine, 1)


async def test_recording_an_autov3_waits_for_a_post_that_is_looking_its_short_hash_up(
    files_stub: FileServiceStub, files: FileCatalog, catalog: Catalog, engine: AsyncEngine
) -> None:
    """Otherwise the post could commit unlinked after the re-link job looked for images (adapters/relink.py)."""
    lora = safetensors_bytes(4096)
    await published_upload(files_stub, catalog, "Knight", lora, "knight.safetensors")
    async with engine.begin() as posting:
        await relink.lock_for_lookup(posting, relink.AUTO_V3, addnet_hash(lora)[:12])  # a post, mid-transaction
        recording = asyncio.create_task(files.hash_auto_v3())
        await wait_until(lambda: waiting_on_a_lock(engine), 10, "the recording to wait for the post")
        assert not recording.done()
    assert await recording == 1
    async with engine.connect() as conn:
        queued = await relink.queued(conn, 10)
    assert [(e.hash_kind, e.hash) for e in queued] == [("AutoV3", addnet_hash(lora)[:12])]


async def test_a_post_waits_for_an_autov3_being_recorded_and_then_links_to_it(
    files_stub: FileServiceStub, catalog: Catalog, gallery: Gallery, engine: AsyncEngine
) -> None:
    lora = safetensors_bytes(4096)
    version_id = await draft_version(catalog, name="Knight")
    done = await upload(files_stub, version_id, lora, "knight.safetensors")
    await publish(catalog, ALICE, done.model_id)
    model = await catalog.models.get_model(ALICE, done.model_id)
    autov3 = (FileHash("AutoV3", addnet_hash(lora)),)
    # The recording transaction (what recording catalog.ModelFileHashesAdded does to the read models), held open.
    async with engine.begin() as recording:
        event = FileHashesAdded(done.model_id, version_id, done.file.file_id, autov3, catalog.clock())
        await ModelProjection().apply_event(recording, event, model.version + 1)
        posting = asyncio.create_task(post(gallery, BOB, a1111_png(autov3[0].value[:12])))
        await wait_until(lambda: waiting_on_a_lock(engine), 10, "the post to wait for the recording")
        assert not posting.done()
    view = await posting
    assert links(view)["knight"] == ("AutoV3", version_id)
