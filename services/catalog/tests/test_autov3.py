"""AutoV3 (the SHA256 of a safetensors file after its header, A1111's "addnet" hash): computed off the upload's
path by a background job from the stored blob, recorded once on the model aggregate (event, read models,
snapshot), looked up in full and by A1111's 12-digit short form, and the migration that queues existing files."""

from __future__ import annotations

import asyncio
import hashlib
import struct
from pathlib import Path

import grpc
import pytest
from alembic import command
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.catalog.adapters import downloads
from modelhub.catalog.adapters.migrations import VERSIONS
from modelhub.catalog.adapters.projection import ModelProjection
from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.bootstrap_files import build_files
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.domain.events import FileHash
from modelhub.catalog.files import InvalidFile, auto_v3_of
from modelhub.catalog.handlers.files import FileCatalog
from modelhub.catalog.v1.files_pb2_grpc import FileServiceStub
from modelhub.core.db import alembic_config, sqlalchemy_url
from modelhub.core.errors import FailedPrecondition
from modelhub.core.events.projection import rebuild

from .community_helpers import last_payload
from .file_helpers import ALICE_MD, MIB, clean_pickle, expected_hashes, failure, safetensors_bytes, upload
from .model_helpers import ALICE
from .test_files_rpc_lookup import draft_version, lookup, publish
from .test_models_events import read_models


def addnet_hash(content: bytes) -> str:
    """A1111's `addnet_hash_safetensors`, written out independently: SHA256 of everything after the header."""
    (header_length,) = struct.unpack("<Q", content[:8])
    return hashlib.sha256(content[8 + header_length :]).hexdigest().upper()


async def model_events(catalog: Catalog, model_id: str) -> list[str]:
    async with catalog.engine.connect() as conn:
        return [e.event_type for e in await catalog.store.read_stream(conn, f"model-{model_id}")]


# -- the hash -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1 << 20, 1000])
def test_auto_v3_is_the_sha256_of_the_bytes_after_the_header(tmp_path: Path, chunk_size: int) -> None:
    content = safetensors_bytes(2 * MIB + 17, metadata={"ss_output_name": "my_lora", "note": "x" * 300})
    path = tmp_path / "lora.safetensors"
    path.write_bytes(content)

    value = auto_v3_of(path, chunk_size)

    assert value == addnet_hash(content)
    assert value != hashlib.sha256(content).hexdigest().upper()  # the header is left out


def test_the_header_does_not_change_auto_v3(tmp_path: Path) -> None:
    """Editing a file's metadata changes its SHA256, never its AutoV3 (A1111's hash survives metadata edits)."""
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(safetensors_bytes(4096, metadata={"trigger": "knight"}, seed=b"same tensors"))
    b.write_bytes(safetensors_bytes(4096, metadata={"trigger": "knight, armor", "v": "2"}, seed=b"same tensors"))

    assert auto_v3_of(a) == auto_v3_of(b)
    assert hashlib.sha256(a.read_bytes()).digest() != hashlib.sha256(b.read_bytes()).digest()


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"\x01\x00", "too short"), (struct.pack("<Q", 100) + b"{}", "exceeds the file size")],
)
def test_a_file_too_short_for_its_header_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(InvalidFile, match=message):
        auto_v3_of(path)


# -- the job and the aggregate --------------------------------------------------------------------------------


async def test_the_job_records_a_safetensors_files_autov3_once_and_publication_never_waits_for_it(
    files_stub: FileServiceStub, files: FileCatalog, catalog: Catalog
) -> None:
    lora = safetensors_bytes(3 * MIB + 5, metadata={"ss_output_name": "knight"})
    version_id = await draft_version(catalog)
    st = await upload(files_stub, version_id, lora, "knight.safetensors")
    pt = await upload(files_stub, version_id, clean_pickle(), "knight.pt")
    assert await files.scan_pending() == 1  # the pickle
    # Published before the AutoV3 is known: it is a lookup aid, not a check.
    await publish(catalog, ALICE, st.model_id)
    model = await catalog.models.get_model(ALICE, st.model_id)
    assert "AutoV3" not in {h.kind for h in model.versions[version_id].files[st.file.file_id].hashes}

    assert await files.hash_auto_v3() == 1  # the safetensors file only
    assert await files.hash_auto_v3() == 0

    expected = addnet_hash(lora)
    model = await catalog.models.get_model(None, st.model_id)
    file = model.versions[version_id].files[st.file.file_id]
    assert file.hashes[-1] == FileHash("AutoV3", expected)
    assert {h.kind: h.value for h in file.hashes[:-1]} == expected_hashes(lora)  # the others untouched
    assert "AutoV3" not in {h.kind for h in model.versions[version_id].files[pt.file.file_id].hashes}
    types = await model_events(catalog, st.model_id)
    assert types.count("catalog.ModelFileHashesAdded") == 1
    assert types[-2:] == ["catalog.ModelFileHashesAdded", "catalog.ModelSnapshot"]
    added = await last_payload(catalog, f"model-{st.model_id}", "catalog.ModelFileHashesAdded")
    assert (added.file_id, [(h.kind, h.value) for h in added.hashes]) == (st.file.file_id, [("AutoV3", expected)])
    snapshot = await last_payload(catalog, f"model-{st.model_id}", "catalog.ModelSnapshot")
    [snapshot_file] = [f for f in snapshot.versions[0].files if f.file_id == st.file.file_id]
    assert ("AutoV3", expected) in [(h.kind, h.value) for h in snapshot_file.hashes]

    # Recording the same hash again (a retry, a second job) records nothing; another value is refused.
    again = await catalog.models.add_file_hashes(version_id, st.file.file_id, (FileHash("AutoV3", expected),))
    assert again.version == model.version
    with pytest.raises(FailedPrecondition) as mismatch:
        await catalog.models.add_file_hashes(version_id, st.file.file_id, (FileHash("AutoV3", "0" * 64),))
    assert mismatch.value.reason == "FILE_HASH_MISMATCH"
    assert (await catalog.models.get_model(None, st.model_id)).version == model.version


async def test_two_jobs_hashing_the_same_files_record_each_autov3_once(
    files_stub: FileServiceStub, settings: CatalogSettings, catalog: Catalog
) -> None:
    """Replicas running the job at once: both may hash a file, one records it, the other's command is a no-op
    (re-run on the fresh state after the stream conflict)."""
    version_id = await draft_version(catalog)
    done = [await upload(files_stub, version_id, safetensors_bytes(4096), f"part{i}.safetensors") for i in range(3)]

    await asyncio.gather(build_files(settings, catalog).hash_auto_v3(), build_files(settings, catalog).hash_auto_v3())

    types = await model_events(catalog, done[0].model_id)
    assert types.count("catalog.ModelFileHashesAdded") == 3
    async with catalog.engine.connect() as conn:
        assert await downloads.pending_auto_v3(conn, 10) == []


async def test_a_file_whose_autov3_cannot_be_computed_is_skipped_without_blocking_the_others(
    files_stub: FileServiceStub, files: FileCatalog, catalog: Catalog
) -> None:
    version_id = await draft_version(catalog)
    lost = await upload(files_stub, version_id, safetensors_bytes(4096), "lost.safetensors")
    kept = await upload(files_stub, version_id, safetensors_bytes(4096), "kept.safetensors")
    files.blobs.blob_path(lost.file.blob_sha256).unlink()  # the stored bytes are gone (a storage fault)

    assert await files.hash_auto_v3() == 2
    assert await files.hash_auto_v3() == 0  # the lost one is not retried in a loop

    model = await catalog.models.get_model(ALICE, kept.model_id)
    kinds = {f.name: {h.kind for h in f.hashes} for f in model.versions[version_id].files.values()}
    assert "AutoV3" in kinds["kept.safetensors"] and "AutoV3" not in kinds["lost.safetensors"]
    async with catalog.engine.connect() as conn:  # still pending: a restarted job tries it again
        assert [p[1] for p in await downloads.pending_auto_v3(conn, 10)] == [lost.file.file_id]


async def test_read_models_rebuilt_from_the_log_equal_the_live_ones_with_autov3(
    files_stub: FileServiceStub, files: FileCatalog, catalog: Catalog, engine: AsyncEngine
) -> None:
    version_id = await draft_version(catalog)
    await upload(files_stub, version_id, safetensors_bytes(4096), "hashed.safetensors")
    await files.hash_auto_v3()
    await upload(files_stub, version_id, safetensors_bytes(4096), "pending.safetensors")
    await upload(files_stub, version_id, clean_pickle(), "other.pt")
    live = await read_models(engine)
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT name, auto_v3_pending FROM model_files"))
        pending = {name: flag for name, flag in rows}
    assert pending == {"hashed.safetensors": False, "pending.safetensors": True, "other.pt": False}

    await rebuild(engine, catalog.store, ModelProjection())

    assert await read_models(engine) == live


# -- lookups --------------------------------------------------------------------------------------------------


async def test_get_file_by_hash_finds_autov3_in_full_and_by_a1111s_short_hash(
    files_stub: FileServiceStub, files: FileCatalog, catalog: Catalog
) -> None:
    lora = safetensors_bytes(4096, metadata={"ss_output_name": "knight"})
    st = await upload(files_stub, await draft_version(catalog, name="Knight"), lora, "knight.safetensors")
    await publish(catalog, ALICE, st.model_id)
    pt = await upload(files_stub, await draft_version(catalog, name="Old knight"), clean_pickle(), "old_knight.pt")
    await files.scan_pending()
    await publish(catalog, ALICE, pt.model_id)
    autov3 = addnet_hash(lora)
    unknown_yet = await failure(lookup(files_stub, autov3[:12]))
    assert unknown_yet.code == grpc.StatusCode.NOT_FOUND  # the job has not run yet

    await files.hash_auto_v3()

    for asked in (autov3, autov3.lower(), autov3[:12], autov3[:12].lower()):
        for kind in ("", "AutoV3", "autov3"):
            found = await lookup(files_stub, asked, kind)
            assert (found.file.file_id, found.match_count) == (st.file.file_id, 1), (asked, kind)
    # A1111's short hash of other files (a .pt LoRA, any embedding) is the start of their SHA256.
    assert (await lookup(files_stub, pt.file.blob_sha256[:12].lower())).file.file_id == pt.file.file_id
    assert (await lookup(files_stub, st.file.blob_sha256[:12], "AutoV3")).file.file_id == st.file.file_id
    # The full AutoV3 is no SHA256.
    assert (await failure(lookup(files_stub, autov3, "SHA256"))).code == grpc.StatusCode.NOT_FOUND
    for value, kind in (("ABCDEF0123", "AutoV3"), (autov3[:12], "SHA256"), (autov3[:12], "AutoV2")):
        bad = await failure(lookup(files_stub, value, kind))
        assert (bad.code, [v.field for v in bad.violations]) == (grpc.StatusCode.INVALID_ARGUMENT, ["hash"])


async def test_a_drafts_short_hash_is_found_only_by_those_who_see_the_draft(
    files_stub: FileServiceStub, files: FileCatalog, catalog: Catalog
) -> None:
    lora = safetensors_bytes(4096)
    await upload(files_stub, await draft_version(catalog), lora, "draft.safetensors")
    await files.hash_auto_v3()
    short = addnet_hash(lora)[:12]
    assert (await lookup(files_stub, short, metadata=ALICE_MD)).match_count == 1
    hidden = await failure(lookup(files_stub, short))
    assert (hidden.code, hidden.message) == (grpc.StatusCode.NOT_FOUND, f"no file with hash {short}")


async def test_short_hash_lookups_and_the_job_queue_are_index_scans(catalog: Catalog, engine: AsyncEngine) -> None:
    """Plans with sequential scans disabled: each statement can use its index (a small table would otherwise
    be scanned whatever the indexes)."""
    async with engine.connect() as conn:
        await conn.execute(text("SET enable_seqscan = off"))
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        params = {"value": "0123456789AB", "viewer": "", "privileged": False, "kind": None}
        plan = "\n".join(
            r[0] for r in await (await driver.execute("EXPLAIN " + downloads.BY_SHORT_HASH_SQL, params)).fetchall()
        )
        pending = "\n".join(
            r[0]
            for r in await conn.execute(
                text("EXPLAIN SELECT file_id FROM model_files WHERE auto_v3_pending ORDER BY file_id LIMIT 20")
            )
        )
    assert "file_hashes_autov3_prefix" in plan and "file_hashes_sha256_prefix" in plan, plan
    assert "model_files_auto_v3_pending" in pending, pending


# -- migration ------------------------------------------------------------------------------------------------


def test_the_migration_queues_existing_safetensors_files_without_autov3(database_url: str) -> None:
    config = alembic_config(database_url, [VERSIONS])
    command.upgrade(config, "catalog_0003")
    engine = create_sync_engine(sqlalchemy_url(database_url))
    files = {"old.safetensors": "SafeTensor", "hashed.safetensors": "SafeTensor", "old.ckpt": "PickleTensor"}
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO models (model_id, stream_version, owner_id, owner_name, name, description, type, "
                    "status, allow_no_credit, allow_commercial_use, allow_derivatives, allow_different_license, "
                    "created_at, updated_at) VALUES ('m', 1, 'alice', 'Alice', 'M', '', 'LORA', 'Draft', true, "
                    "'{}', true, true, now(), now())"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO model_versions (model_version_id, model_id, position, name, base_model, "
                    "trained_words, changelog, early_access_days, status, created_at, updated_at) "
                    "VALUES ('v', 'm', 1, 'v1', 'SD 1.5', '{}', '', 0, 'Draft', now(), now())"
                )
            )
            for position, (name, file_format) in enumerate(files.items()):
                conn.execute(
                    text(
                        "INSERT INTO model_files (file_id, model_version_id, model_id, position, name, type, format, "
                        "size_bytes, precision, size_kind, blob_sha256, scan_result, scan_message, "
                        "safetensors_metadata, tensor_count, created_at) VALUES (:name, 'v', 'm', :p, :name, "
                        "'Model', :format, 1, '', '', :sha, 'Success', '', '{}', 1, now())"
                    ),
                    {"name": name, "p": position, "format": file_format, "sha": "A" * 64},
                )
            conn.execute(
                text(
                    "INSERT INTO file_hashes (file_id, kind, value, position) "
                    "VALUES ('hashed.safetensors', 'AutoV3', :v, 0)"
                ),
                {"v": "B" * 64},
            )

        command.upgrade(config, "heads")

        with engine.connect() as conn:
            pending = {f: flag for f, flag in conn.execute(text("SELECT file_id, auto_v3_pending FROM model_files"))}
        assert pending == {"old.safetensors": True, "hashed.safetensors": False, "old.ckpt": False}
    finally:
        engine.dispose()
