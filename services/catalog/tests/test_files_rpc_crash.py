"""kill -9 of the catalog mid-upload (a real `python -m modelhub.catalog` process): nothing becomes visible,
the upload resumes after a restart to exact hashes, and an abandoned one leaves no orphan on disk once the
cleanup job ran."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import grpc.aio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.catalog.bootstrap import build_catalog
from modelhub.catalog.bootstrap_files import build_files
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.domain.uploads import upload_request
from modelhub.catalog.handlers.files import FileCatalog
from modelhub.catalog.v1 import files_pb2 as fpb
from modelhub.catalog.v1.files_pb2_grpc import FileServiceStub
from modelhub.devstack.ports import free_port
from modelhub.devstack.waiting import wait_until

from .conftest import SECRET
from .file_helpers import ALICE_MD, MIB, big_safetensors, expected_hashes, files_on_disk, send, split, start
from .model_helpers import ALICE, fields, version


@asynccontextmanager
async def catalog_process(settings: CatalogSettings, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """The catalog as operators run it, serving FileService on `port` (no relay, no background jobs)."""
    env = os.environ | {
        "MODELHUB_CATALOG_DATABASE_URL": settings.database_url,
        "MODELHUB_CATALOG_GRPC_PORT": str(port),
        "MODELHUB_CATALOG_JWT_SECRET": SECRET,
        "MODELHUB_CATALOG_DATA_DIR": str(settings.data_dir),
        "MODELHUB_CATALOG_RUN_RELAY": "false",
        "MODELHUB_CATALOG_RUN_SCHEDULER": "false",
        "MODELHUB_CATALOG_RUN_FILE_JOBS": "false",
        "MODELHUB_CATALOG_MIGRATE_ON_START": "false",
        "MODELHUB_CATALOG_LOG_LEVEL": "ERROR",
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelhub.catalog", env=env)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 60)
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)


async def kill_mid_upload(
    settings: CatalogSettings, version_id: str, content: bytes, rng: random.Random
) -> tuple[str, int]:
    """Start a server, upload part of `content`, kill -9 the server after a random number of chunks (never the
    last); returns the upload id and how many bytes were stored when it died."""
    chunks = split(content, MIB)
    stop_after = rng.randint(1, len(chunks) - 1)
    port = free_port()
    async with catalog_process(settings, port) as process, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = FileServiceStub(channel)
        session = await start(stub, version_id, len(content))
        part = settings.data_dir / "uploads" / f"{session.upload_id}.part"
        never = asyncio.Event()

        async def messages() -> AsyncIterator[fpb.UploadFileRequest]:
            yield fpb.UploadFileRequest(target=fpb.UploadTarget(upload_id=session.upload_id, offset=0))
            for chunk in chunks[:stop_after]:
                yield fpb.UploadFileRequest(chunk=chunk)
            await never.wait()  # the last chunks never leave before the kill

        call = stub.UploadFile(messages(), metadata=ALICE_MD)

        async def stored() -> bool:
            return part.exists() and part.stat().st_size >= stop_after * MIB

        await wait_until(stored, 30, f"{stop_after} chunks on disk")
        process.send_signal(signal.SIGKILL)
        await process.wait()
        with pytest.raises(grpc.aio.AioRpcError):
            await call
    return session.upload_id, part.stat().st_size


async def visible_files(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT file_id FROM model_files"))).scalars())


def blobs(settings: CatalogSettings) -> list[Path]:
    return [p for p in files_on_disk(settings.data_dir) if "blobs" in p.parts]


@pytest.fixture
def real_clock_files(engine: AsyncEngine, settings: CatalogSettings) -> FileCatalog:
    """The jobs with the wall clock, as the killed process used it for the sessions' times."""
    return build_files(settings, build_catalog(engine))


async def test_kill_9_mid_upload_shows_nothing_and_the_upload_resumes_after_restart(
    engine: AsyncEngine, settings: CatalogSettings, real_clock_files: FileCatalog
) -> None:
    catalog = real_clock_files
    model = await catalog.models.create_model(ALICE, fields())
    _, version_id = await catalog.models.create_version(ALICE, model.id, model.version, version())
    content = big_safetensors(6 * MIB + 777)
    upload_id, stored = await kill_mid_upload(settings, version_id, content, random.Random(7))
    assert stored % MIB == 0 and 0 < stored < len(content)
    assert await visible_files(engine) == []
    assert blobs(settings) == []

    port = free_port()
    async with catalog_process(settings, port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = FileServiceStub(channel)
        got = await stub.GetUpload(fpb.GetUploadRequest(upload_id=upload_id), metadata=ALICE_MD)
        assert (got.upload.state, got.upload.offset) == (fpb.UPLOAD_STATE_OPEN, stored)
        done = await send(stub, upload_id, content, offset=stored)
    assert done.state == fpb.UPLOAD_STATE_COMPLETED
    assert {h.kind: h.value for h in done.file.hashes} == expected_hashes(content)
    assert await visible_files(engine) == [upload_id]
    assert [p.name for p in blobs(settings)] == [done.file.blob_sha256]


async def test_an_upload_abandoned_by_a_kill_9_leaves_no_orphan_after_cleanup(
    engine: AsyncEngine, settings: CatalogSettings, real_clock_files: FileCatalog
) -> None:
    files = real_clock_files
    model = await files.models.create_model(ALICE, fields())
    _, version_id = await files.models.create_version(ALICE, model.id, model.version, version())
    upload_id, _ = await kill_mid_upload(settings, version_id, big_safetensors(4 * MIB), random.Random(11))
    # A second orphan: a completion that died after storing its blob, before adding the file.
    other = await files.start_upload(
        ALICE, upload_request(version_id, "b.safetensors", "", 3 * MIB, "", "", max_size=MIB**3)
    )
    await asyncio.to_thread(files.blobs.append, other.session.upload_id, 0, big_safetensors(3 * MIB))
    await asyncio.to_thread(files.blobs.finish, other.session.upload_id)
    assert files_on_disk(settings.data_dir) != []

    assert await files.clean_up() == 0
    assert len(files_on_disk(settings.data_dir)) == 3, "within the session lifetime, everything stays"
    await files.clean_up(older_than=timedelta(0))
    assert files_on_disk(settings.data_dir) == []
    assert await visible_files(engine) == []
    for upload in (upload_id, other.session.upload_id):
        assert (await files.get_upload(ALICE, upload)).session.status.value == "Expired"
