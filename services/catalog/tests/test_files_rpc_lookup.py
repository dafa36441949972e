"""GetFileByHash over a real server: every hash kind, any case, visibility, the rule for a hash shared by
several versions, and bad input."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pydantic
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from modelhub.catalog.adapters import hot_reads
from modelhub.catalog.bootstrap import Catalog, build_catalog
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.v1 import files_pb2 as fpb
from modelhub.catalog.v1 import models_pb2 as mpb
from modelhub.catalog.v1.files_pb2_grpc import FileServiceStub
from modelhub.catalog.v1.models_pb2_grpc import ModelServiceStub

from .conftest import auth
from .file_helpers import ALICE_MD, BOB_MD, MIB, big_safetensors, expected_hashes, failure, upload
from .model_helpers import ALICE, fields, version

BOB = Actor("bob", "Bob")


async def draft_version(catalog: Catalog, owner: Actor = ALICE, name: str = "Dreamy") -> str:
    model = await catalog.models.create_model(owner, fields(name))
    _, version_id = await catalog.models.create_version(owner, model.id, model.version, version())
    return version_id


async def publish(catalog: Catalog, owner: Actor, model_id: str) -> None:
    model = await catalog.models.get_model(owner, model_id)
    await catalog.models.publish_model(owner, model_id, model.version)


async def lookup(stub: FileServiceStub, value: str, kind: str = "", metadata: Any = None) -> fpb.GetFileByHashResponse:
    return await stub.GetFileByHash(fpb.GetFileByHashRequest(hash=value, kind=kind), metadata=metadata)


async def test_every_hash_kind_finds_the_file_in_any_case(files_stub: FileServiceStub, catalog: Catalog) -> None:
    content = big_safetensors(2 * MIB + 100)  # large enough for an AutoV1
    done = await upload(files_stub, await draft_version(catalog), content)
    await publish(catalog, ALICE, done.model_id)
    hashes = expected_hashes(content)
    assert set(hashes) == {"SHA256", "AutoV1", "AutoV2", "CRC32", "BLAKE3"}
    for kind, value in hashes.items():
        for asked in (value, value.lower()):
            for asked_kind in ("", kind, kind.lower()):
                found = await lookup(files_stub, asked, asked_kind)  # anonymous: the version is public
                assert (found.file.file_id, found.model_version_id, found.match_count) == (
                    done.file.file_id,
                    done.model_version_id,
                    1,
                ), (kind, asked, asked_kind)
    found = await lookup(files_stub, hashes["SHA256"])
    assert (found.model_name, found.model_type, found.creator_user_id, found.creator_username) == (
        "Dreamy",
        "Checkpoint",
        "alice",
        "Alice",
    )
    assert (found.version_name, found.base_model, found.version_status) == ("v1", "SDXL 1.0", "Published")
    assert found.file.downloadable and {h.kind: h.value for h in found.file.hashes} == hashes
    # The right value under another kind is not a match.
    wrong_kind = await failure(lookup(files_stub, hashes["BLAKE3"], "SHA256"))
    assert (wrong_kind.code, wrong_kind.reason) == (grpc.StatusCode.NOT_FOUND, "FILE_NOT_FOUND")


async def test_a_draft_file_is_found_only_by_those_who_see_the_draft(
    files_stub: FileServiceStub, catalog: Catalog
) -> None:
    done = await upload(files_stub, await draft_version(catalog), big_safetensors(4096))
    sha = done.file.blob_sha256
    assert (await lookup(files_stub, sha, metadata=ALICE_MD)).file.file_id == done.file.file_id
    assert (await lookup(files_stub, sha, metadata=auth("mod", "moderator"))).file.file_id == done.file.file_id
    for metadata in (None, BOB_MD):
        hidden = await failure(lookup(files_stub, sha, metadata=metadata))
        assert (hidden.code, hidden.message) == (grpc.StatusCode.NOT_FOUND, f"no file with hash {sha}")
    unknown = await failure(lookup(files_stub, "0" * 64, metadata=BOB_MD))
    assert unknown.message == f"no file with hash {'0' * 64}"  # the same answer as for a hidden file


async def test_a_hash_shared_by_several_versions_answers_the_public_original(
    files_stub: FileServiceStub, catalog: Catalog
) -> None:
    """The rule: among the files the caller may see, public versions first, then the earliest upload."""
    content = big_safetensors(4096)
    bob_draft = await upload(files_stub, await draft_version(catalog, BOB, "Bob's copy"), content, metadata=BOB_MD)
    alice_first = await upload(files_stub, await draft_version(catalog), content)
    alice_second = await upload(files_stub, await draft_version(catalog, name="Again"), content)
    sha = alice_first.file.blob_sha256
    await publish(catalog, ALICE, alice_second.model_id)
    await publish(catalog, ALICE, alice_first.model_id)

    anonymous = await lookup(files_stub, sha)
    assert (anonymous.file.file_id, anonymous.match_count) == (alice_first.file.file_id, 2)
    # Bob sees his own draft too, but a public version comes first.
    bobs = await lookup(files_stub, sha, metadata=BOB_MD)
    assert (bobs.file.file_id, bobs.match_count) == (alice_first.file.file_id, 3)
    # With no public version among them, the earliest upload the caller sees (Bob's draft, for Bob).
    await publish(catalog, BOB, bob_draft.model_id)
    assert (await lookup(files_stub, sha)).file.file_id == bob_draft.file.file_id
    for _ in range(3):  # deterministic
        assert (await lookup(files_stub, sha, metadata=ALICE_MD)).file.file_id == bob_draft.file.file_id


async def test_bad_lookups_name_the_field(files_stub: FileServiceStub) -> None:
    cases = {
        ("", ""): "hash",
        ("xyz", ""): "hash",
        ("ABCDEF0123", "SHA256"): "hash",
        ("ABCDEF012", ""): "hash",
        ("ABCDEF0123", "MD5"): "kind",
    }
    for (value, kind), field in cases.items():
        bad = await failure(lookup(files_stub, value, kind))
        assert bad.code == grpc.StatusCode.INVALID_ARGUMENT, (value, kind)
        assert [v.field for v in bad.violations] == [field], (value, kind)


async def test_hot_reads_survive_postgresql_dropping_the_pooled_connections(
    files_stub: FileServiceStub, models_stub: ModelServiceStub, catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    """The hot reads' pool (GetFileByHash, GetModel) does not ping what it checks out (adapters/hot_reads.py):
    when PostgreSQL dropped its connections (a restart), both still answer, once more through the main engine,
    and the dead connections leave the pool."""
    content = big_safetensors(MIB + 7)
    done = await upload(files_stub, await draft_version(catalog), content)
    await publish(catalog, ALICE, done.model_id)
    sha256 = expected_hashes(content)["SHA256"]
    get_model = mpb.GetModelRequest(model_id=done.model_id)
    assert (await lookup(files_stub, sha256)).file.file_id == done.file.file_id  # hot connections are pooled
    assert (await models_stub.GetModel(get_model)).model.model_id == done.model_id

    async def drop_connections() -> None:
        async with catalog.engine.connect() as conn:
            dropped = await conn.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert dropped.scalar_one() >= 1

    with caplog.at_level(logging.WARNING, logger=hot_reads.__name__):
        await drop_connections()
        assert (await lookup(files_stub, sha256)).file.file_id == done.file.file_id
        assert (await lookup(files_stub, sha256)).file.file_id == done.file.file_id  # a new hot connection
        await drop_connections()
        assert (await models_stub.GetModel(get_model)).model.model_id == done.model_id
    assert sum("running it again" in r.message for r in caplog.records) == 2  # each read met a dead connection

    for _ in range(3):
        assert (await lookup(files_stub, sha256)).file.file_id == done.file.file_id
        assert (await models_stub.GetModel(get_model)).model.model_id == done.model_id


async def test_the_hot_reads_pool_size_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """MODELHUB_CATALOG_HOT_READ_POOL_SIZE sets how many connections the hot reads keep (and never exceed)."""
    assert CatalogSettings().hot_read_pool_size == hot_reads.POOL_SIZE
    monkeypatch.setenv("MODELHUB_CATALOG_HOT_READ_POOL_SIZE", "3")
    settings = CatalogSettings()
    assert settings.hot_read_pool_size == 3
    engine = create_async_engine("postgresql+psycopg://modelhub@127.0.0.1:1/unused")  # never connects here
    catalog = build_catalog(engine, hot_read_pool_size=settings.hot_read_pool_size)
    try:
        pool: Any = catalog.hot_reads.pool
        assert (pool.size(), pool._max_overflow) == (3, 0)
    finally:
        await catalog.dispose()
        await engine.dispose()
    monkeypatch.setenv("MODELHUB_CATALOG_HOT_READ_POOL_SIZE", "0")
    with pytest.raises(pydantic.ValidationError, match="hot_read_pool_size"):
        CatalogSettings()
