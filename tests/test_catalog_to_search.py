"""Catalog → search, end to end: the real `python -m modelhub.catalog` and `python -m modelhub.search` processes,
each with its own fresh database, sharing one NATS JetStream server. A model published through the catalog's
gRPC API becomes searchable (by name and by its file's SHA256) and disappears again when unpublished."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import struct
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest

from modelhub.catalog.v1 import files_pb2 as fpb
from modelhub.catalog.v1 import models_pb2 as mpb
from modelhub.catalog.v1.files_pb2_grpc import FileServiceStub
from modelhub.catalog.v1.models_pb2_grpc import ModelServiceStub
from modelhub.core.config import DEV_JWT_SECRET
from modelhub.core.grpc.auth import Role, issue_token
from modelhub.devstack.nats import NatsServer
from modelhub.devstack.ports import free_port
from modelhub.devstack.postgres import create_database, drop_database
from modelhub.devstack.waiting import wait_until
from modelhub.search.v1 import search_pb2 as spb
from modelhub.search.v1.search_pb2_grpc import SearchServiceStub

START_TIMEOUT = 90.0  # both processes migrate their databases at start, on a shared 2-core machine
PROPAGATION_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
# Every NSFW bit plus Blocked: the only level at which an unrated item (nsfw_level 0) is visible in search.
MODERATOR_BROWSING_LEVEL = 63


def metadata(subject: str, *roles: Role) -> tuple[tuple[str, str]]:
    """Call metadata with a token signed by the development secret both services use by default."""
    token = issue_token(subject, roles or ("user",), key=DEV_JWT_SECRET, extra_claims={"preferred_username": subject})
    return (("authorization", f"Bearer {token}"),)


def safetensors_bytes(data_size: int = 4096) -> bytes:
    """A valid safetensors file with one U8 tensor of random bytes (so its hashes are unique to this run)."""
    header = {"weight": {"dtype": "U8", "shape": [data_size], "data_offsets": [0, data_size]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + os.urandom(data_size)


@dataclass
class Service:
    name: str
    process: asyncio.subprocess.Process
    port: int
    log: Path


async def start_service(name: str, env: dict[str, str], port: int, log: Path) -> Service:
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"modelhub.{name}", env=os.environ | env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    return Service(name, process, port, log)


async def stop_service(service: Service) -> int | None:
    """SIGTERM, then SIGKILL if it does not stop in time; the exit status of the graceful stop (None if killed)."""
    if service.process.returncode is not None:
        return service.process.returncode
    service.process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(service.process.wait(), STOP_TIMEOUT)
    except TimeoutError:
        service.process.kill()
        await service.process.wait()
        return None


@pytest.fixture
def databases(postgres_admin_url: str) -> Iterator[tuple[str, str]]:
    """Two fresh, empty databases (catalog, search); the services migrate them at start."""
    names = [f"test_{uuid.uuid4().hex[:16]}" for _ in range(2)]
    urls = [create_database(postgres_admin_url, name) for name in names]
    try:
        yield urls[0], urls[1]
    finally:
        for name in names:
            drop_database(postgres_admin_url, name)


@pytest.fixture
async def services(
    databases: tuple[str, str], nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[tuple[Service, Service]]:
    """The catalog and search processes, started and stopped with SIGTERM; their logs are printed at teardown
    (pytest shows them when the test fails)."""
    catalog_db, search_db = databases
    started: list[Service] = []
    try:
        for name, db, extra in (
            ("catalog", catalog_db, {"SCAN_INTERVAL_SECONDS": "0.2", "SCHEDULE_INTERVAL_SECONDS": "0.5"}),
            ("search", search_db, {}),
        ):
            port = free_port()
            prefix = f"MODELHUB_{name.upper()}_"
            env = {
                f"{prefix}DATABASE_URL": db,
                f"{prefix}NATS_URL": nats_server.url,
                f"{prefix}GRPC_PORT": str(port),
                f"{prefix}METRICS_PORT": "0",
                f"{prefix}DATA_DIR": str(tmp_path / name),
                f"{prefix}MIGRATE_ON_START": "true",
            } | {prefix + key: value for key, value in extra.items()}
            started.append(await start_service(name, env, port, tmp_path / f"{name}.log"))
        yield started[0], started[1]
        for service in started:
            assert await stop_service(service) == 0, f"{service.name} did not stop cleanly on SIGTERM"
    finally:
        for service in started:
            await stop_service(service)
            print(f"----- {service.name} log -----\n{service.log.read_text(errors='replace')}")


async def ready(port: int) -> grpc.aio.Channel:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    await asyncio.wait_for(channel.channel_ready(), START_TIMEOUT)
    return channel


async def test_a_published_model_is_searchable_until_it_is_unpublished(services: tuple[Service, Service]) -> None:
    catalog, search = services
    alice = metadata("alice")
    moderator = metadata("mod", "moderator")
    name = f"Zephyrwing {uuid.uuid4().hex[:8]}"
    content = safetensors_bytes()
    sha256 = hashlib.sha256(content).hexdigest().upper()

    catalog_channel, search_channel = await ready(catalog.port), await ready(search.port)
    async with catalog_channel, search_channel:
        models, files = ModelServiceStub(catalog_channel), FileServiceStub(catalog_channel)
        searcher = SearchServiceStub(search_channel)

        model = (await models.CreateModel(mpb.CreateModelRequest(name=name, type="LORA"), metadata=alice)).model
        created = await models.CreateVersion(
            mpb.CreateVersionRequest(
                model_id=model.model_id, expected_version=model.version, name="v1", base_model="SD 1.5"
            ),
            metadata=alice,
        )
        session = (
            await files.StartUpload(
                fpb.StartUploadRequest(
                    model_version_id=created.model_version_id, file_name="zephyr.safetensors", size_bytes=len(content)
                ),
                metadata=alice,
            )
        ).upload

        async def chunks() -> AsyncIterator[fpb.UploadFileRequest]:
            yield fpb.UploadFileRequest(target=fpb.UploadTarget(upload_id=session.upload_id, offset=0))
            yield fpb.UploadFileRequest(chunk=content)

        await files.UploadFile(chunks(), metadata=alice)

        async def current() -> mpb.Model:
            return (await models.GetModel(mpb.GetModelRequest(model_id=model.model_id), metadata=alice)).model

        async def scanned() -> bool:
            found = [f for v in (await current()).versions for f in v.files]
            return bool(found) and all(f.scan_result == "Success" for f in found)

        await wait_until(scanned, PROPAGATION_TIMEOUT, "the catalog to scan the uploaded file", interval=0.2)

        async def at_current_version(change: Callable[[int], Awaitable[object]], what: str) -> None:
            """What a client does with optimistic concurrency: read the version, send the change, and on
            ABORTED (background jobs such as the AutoV3 hash append to the model) read again and retry."""

            async def attempt() -> bool:
                try:
                    await change((await current()).version)
                except grpc.aio.AioRpcError as error:
                    if error.code() is not grpc.StatusCode.ABORTED:
                        raise
                    return False
                return True

            await wait_until(attempt, PROPAGATION_TIMEOUT, what, interval=0.2)

        await at_current_version(
            lambda version: models.PublishModel(
                mpb.PublishModelRequest(model_id=model.model_id, expected_version=version), metadata=alice
            ),
            "the catalog to publish the model",
        )
        assert (await current()).status == "Published"

        async def hits(request: spb.SearchModelsRequest) -> list[spb.ModelHit]:
            return list((await searcher.SearchModels(request, metadata=moderator)).hits)

        by_name = spb.SearchModelsRequest(query=name, browsing_level=MODERATOR_BROWSING_LEVEL)
        by_hash = spb.SearchModelsRequest(
            filters=spb.ModelFilters(hashes=[sha256.lower()]), browsing_level=MODERATOR_BROWSING_LEVEL
        )
        by_hash_text = spb.SearchModelsRequest(query=sha256, browsing_level=MODERATOR_BROWSING_LEVEL)

        async def indexed() -> bool:
            return any(hit.model_id == model.model_id for hit in await hits(by_name))

        await wait_until(indexed, PROPAGATION_TIMEOUT, f"search to find {name!r}", interval=0.2)
        [hit] = [hit for hit in await hits(by_name) if hit.model_id == model.model_id]
        assert (hit.name, hit.type, hit.creator_username) == (name, "LORA", "alice")
        assert [h.model_id for h in await hits(by_hash)] == [model.model_id]
        assert [h.model_id for h in await hits(by_hash_text)] == [model.model_id]

        await at_current_version(
            lambda version: models.UnpublishModel(
                mpb.UnpublishModelRequest(model_id=model.model_id, expected_version=version), metadata=alice
            ),
            "the catalog to unpublish the model",
        )

        async def gone() -> bool:
            return not any(hit.model_id == model.model_id for hit in await hits(by_name))

        await wait_until(gone, PROPAGATION_TIMEOUT, f"search to drop {name!r}", interval=0.2)
        assert await hits(by_hash) == []
