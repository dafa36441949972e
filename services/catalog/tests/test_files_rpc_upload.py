"""FileService uploads over a real server, database and blob store: chunked and resumable uploads, hashes,
idempotency, authorization, content addressing, and the file becoming part of its version."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.files import blobstore
from modelhub.catalog.handlers.files import FileCatalog
from modelhub.catalog.v1 import files_pb2 as fpb
from modelhub.catalog.v1 import models_pb2 as pb
from modelhub.catalog.v1.files_pb2_grpc import FileServiceStub
from modelhub.catalog.v1.models_pb2_grpc import ModelServiceStub
from modelhub.devstack.waiting import wait_until

from .conftest import auth
from .file_helpers import (
    ALICE_MD,
    BOB_MD,
    MIB,
    MOD_MD,
    big_safetensors,
    download,
    expected_hashes,
    failure,
    files_on_disk,
    safetensors_bytes,
    send,
    split,
    start,
    upload,
)
from .model_helpers import ALICE, fields, version


@pytest.fixture
async def version_id(catalog: Catalog) -> str:
    """A draft version of a draft model of alice's."""
    model = await catalog.models.create_model(ALICE, fields())
    _, vid = await catalog.models.create_version(ALICE, model.id, model.version, version())
    return vid


async def published_version(catalog: Catalog, stub: FileServiceStub) -> tuple[str, str]:
    """A published model and version of alice's, with one clean file; returns (version id, file id)."""
    model = await catalog.models.create_model(ALICE, fields("Published"))
    model, vid = await catalog.models.create_version(ALICE, model.id, model.version, version())
    done = await upload(stub, vid, safetensors_bytes(seed=b"published"))
    model = await catalog.models.get_model(ALICE, model.id)
    await catalog.models.publish_model(ALICE, model.id, model.version)
    return vid, done.file.file_id


async def test_a_chunked_upload_survives_a_dropped_connection_and_resumes_to_exact_hashes(
    files_stub: FileServiceStub, models_stub: ModelServiceStub, version_id: str, catalog: Catalog
) -> None:
    content = big_safetensors(8 * MIB + 12345)  # multi-megabyte, not a multiple of the chunk size
    chunks = split(content, MIB)
    session = await start(files_stub, version_id, len(content), size_kind="pruned")
    assert (session.state, session.offset, session.max_chunk_bytes) == (fpb.UPLOAD_STATE_OPEN, 0, 2 * MIB)

    hang = asyncio.Event()

    async def three_chunks_then_hang() -> AsyncIterator[fpb.UploadFileRequest]:
        yield fpb.UploadFileRequest(target=fpb.UploadTarget(upload_id=session.upload_id, offset=0))
        for chunk in chunks[:3]:
            yield fpb.UploadFileRequest(chunk=chunk)
        await hang.wait()  # the connection "drops" below, mid-stream

    call = files_stub.UploadFile(three_chunks_then_hang(), metadata=ALICE_MD)

    async def three_stored() -> bool:
        got = await files_stub.GetUpload(fpb.GetUploadRequest(upload_id=session.upload_id), metadata=ALICE_MD)
        return got.upload.offset == 3 * MIB

    await wait_until(three_stored, 10, "three chunks stored")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    resumed = await files_stub.GetUpload(fpb.GetUploadRequest(upload_id=session.upload_id), metadata=ALICE_MD)
    assert (resumed.upload.state, resumed.upload.offset) == (fpb.UPLOAD_STATE_OPEN, 3 * MIB)
    # Resuming from the wrong offset is refused with the right one, and stores nothing.
    wrong = await failure(send(files_stub, session.upload_id, content[: 2 * MIB], offset=2 * MIB))
    assert (wrong.code, wrong.reason, wrong.metadata["committed_offset"]) == (
        grpc.StatusCode.ABORTED,
        "UPLOAD_OFFSET_MISMATCH",
        str(3 * MIB),
    )

    done = await send(files_stub, session.upload_id, content, offset=3 * MIB, chunk=2 * MIB)
    assert done.state == fpb.UPLOAD_STATE_COMPLETED
    assert done.offset == len(content)
    file = done.file
    assert {h.kind: h.value for h in file.hashes} == expected_hashes(content)
    assert file.blob_sha256 == hashlib.sha256(content).hexdigest().upper()
    assert (file.file_id, file.name, file.format, file.size_bytes, file.scan_result, file.size_kind) == (
        session.upload_id,
        "model.safetensors",
        "SafeTensor",
        len(content),
        "Success",
        "pruned",
    )
    assert file.tensor_count == 1

    model = (await models_stub.GetModel(pb.GetModelRequest(model_id=session.model_id), metadata=ALICE_MD)).model
    [listed] = model.versions[0].files
    assert listed.file_id == file.file_id and listed.downloadable

    header, data = await download(files_stub, file.file_id, metadata=ALICE_MD)
    assert data == content and header.length == len(content)
    header, tail = await download(files_stub, file.file_id, offset=5 * MIB, metadata=ALICE_MD)
    assert (header.offset, tail) == (5 * MIB, content[5 * MIB :])
    _, middle = await download(files_stub, file.file_id, offset=100, length=1000, metadata=ALICE_MD)
    assert middle == content[100:1100]


async def test_a_stream_cancelled_while_a_chunk_is_stored_leaves_that_chunk_whole_and_the_upload_usable(
    files_stub: FileServiceStub, version_id: str, settings: CatalogSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client goes away while the server writes a chunk (on its writer thread): the append in flight ends,
    whole, before the stream's handler lets go of the upload; nothing else is stored, the part is unlocked (the
    abort below takes its lock) and the upload can be resumed or aborted at once."""
    content = big_safetensors(6 * MIB)
    chunks = split(content, 2 * MIB)
    session = await start(files_stub, version_id, len(content))
    real_write = blobstore._pwrite_all
    second_write_began, cancelled = threading.Event(), threading.Event()

    def slow_second_write(fd: int, data: memoryview, offset: int) -> None:
        if offset == 2 * MIB:
            second_write_began.set()
            cancelled.wait(10)
        real_write(fd, data, offset)

    monkeypatch.setattr(blobstore, "_pwrite_all", slow_second_write)
    hang = asyncio.Event()

    async def chunks_then_hang() -> AsyncIterator[fpb.UploadFileRequest]:
        # Two of the three chunks: had the third been sent, the server could receive it before it sees the
        # cancellation, and store it once the slow write ends (right, but not this test's case).
        yield fpb.UploadFileRequest(target=fpb.UploadTarget(upload_id=session.upload_id, offset=0))
        for chunk in chunks[:2]:
            yield fpb.UploadFileRequest(chunk=chunk)
        await hang.wait()

    call = files_stub.UploadFile(chunks_then_hang(), metadata=ALICE_MD)
    assert await asyncio.to_thread(second_write_began.wait, 10)
    call.cancel()
    cancelled.set()
    with pytest.raises(asyncio.CancelledError):
        await call

    async def two_chunks_stored() -> bool:
        got = await files_stub.GetUpload(fpb.GetUploadRequest(upload_id=session.upload_id), metadata=ALICE_MD)
        return got.upload.offset == 4 * MIB

    await wait_until(two_chunks_stored, 10, "the chunk in flight stored whole")
    [part] = files_on_disk(settings.data_dir)
    assert part.read_bytes() == content[: 4 * MIB]
    aborted = await files_stub.AbortUpload(fpb.AbortUploadRequest(upload_id=session.upload_id), metadata=ALICE_MD)
    assert aborted.upload.state == fpb.UPLOAD_STATE_ABORTED
    assert files_on_disk(settings.data_dir) == []


async def test_safetensors_metadata_is_kept_as_a_bounded_summary(files_stub: FileServiceStub, version_id: str) -> None:
    metadata = {"ss_base_model_version": "sdxl_base_v1-0", "ss_tag_frequency": "x" * 10_000}
    done = await upload(files_stub, version_id, safetensors_bytes(metadata=metadata))
    kept = dict(done.file.safetensors_metadata)
    assert kept["ss_base_model_version"] == "sdxl_base_v1-0"
    assert len(kept["ss_tag_frequency"]) == 2000 and kept["ss_tag_frequency"].endswith("…")


async def test_get_model_leaves_out_the_metadata_summaries_in_its_basic_view(
    files_stub: FileServiceStub, models_stub: ModelServiceStub, version_id: str
) -> None:
    """MODEL_VIEW_BASIC: every file without its safetensors metadata summary (a model with many files stays
    under clients' default receive limit); unset and FULL carry it; an unknown view is INVALID_ARGUMENT."""
    done = await upload(files_stub, version_id, safetensors_bytes(metadata={"ss_base_model_version": "sdxl"}))

    async def files(view: int) -> list[pb.ModelFile]:
        request = pb.GetModelRequest(model_id=done.model_id, view=view)  # type: ignore[arg-type]
        model = (await models_stub.GetModel(request, metadata=ALICE_MD)).model
        return [f for v in model.versions for f in v.files]

    full, unset, basic = (
        await files(pb.MODEL_VIEW_FULL),
        await files(pb.MODEL_VIEW_UNSPECIFIED),
        await files(pb.MODEL_VIEW_BASIC),
    )
    assert full == unset and [dict(f.safetensors_metadata) for f in full] == [{"ss_base_model_version": "sdxl"}]
    assert [dict(f.safetensors_metadata) for f in basic] == [{}]
    for f in basic:
        f.safetensors_metadata.update(full[0].safetensors_metadata)
    assert basic == full  # nothing else differs (tensor_count, hashes, scan result...)
    refused = await failure(files(7))
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in refused.violations] == ["view"]


async def test_a_retried_start_with_the_same_request_id_opens_one_session(
    files_stub: FileServiceStub, version_id: str, settings: CatalogSettings
) -> None:
    first, second = await asyncio.gather(
        start(files_stub, version_id, 100, request_id="req-1"), start(files_stub, version_id, 100, request_id="req-1")
    )
    assert first.upload_id == second.upload_id
    parts = list((settings.data_dir / "uploads").glob("*.part"))
    assert [p.stem for p in parts] == [first.upload_id]  # the loser of the race dropped its part

    reused = await failure(start(files_stub, version_id, 200, request_id="req-1"))
    assert (reused.code, reused.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")


async def test_a_retried_final_stream_after_completion_is_refused_and_the_session_tells_what_happened(
    files_stub: FileServiceStub, version_id: str
) -> None:
    content = safetensors_bytes()
    done = await upload(files_stub, version_id, content)
    again = await failure(send(files_stub, done.upload_id, content, offset=len(content)))
    assert (again.code, again.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "UPLOAD_ENDED")
    got = await files_stub.GetUpload(fpb.GetUploadRequest(upload_id=done.upload_id), metadata=ALICE_MD)
    assert (got.upload.state, got.upload.file.file_id) == (fpb.UPLOAD_STATE_COMPLETED, done.upload_id)


async def test_a_completion_interrupted_after_the_bytes_are_stored_completes_on_retry(
    files_stub: FileServiceStub, files: FileCatalog, version_id: str
) -> None:
    """The store finished the blob, then the process died before the file was added: the session stays open
    at full offset, and an UploadFile with no more bytes completes it, adding the file once."""
    content = safetensors_bytes()
    session = await start(files_stub, version_id, len(content))
    await send(files_stub, session.upload_id, content[:100])
    # Store the rest and finish the blob directly, as a completion that crashed after finish would have.
    await asyncio.to_thread(files.blobs.append, session.upload_id, 100, content[100:])
    await asyncio.to_thread(files.blobs.finish, session.upload_id)

    got = await files_stub.GetUpload(fpb.GetUploadRequest(upload_id=session.upload_id), metadata=ALICE_MD)
    assert (got.upload.state, got.upload.offset) == (fpb.UPLOAD_STATE_OPEN, len(content))
    done = await send(files_stub, session.upload_id, content, offset=len(content))
    assert done.state == fpb.UPLOAD_STATE_COMPLETED
    assert {h.kind: h.value for h in done.file.hashes} == expected_hashes(content)


async def test_identical_content_is_stored_once(
    files_stub: FileServiceStub, catalog: Catalog, version_id: str, settings: CatalogSettings
) -> None:
    content = safetensors_bytes(seed=b"same")
    model = await catalog.models.create_model(ALICE, fields("Other"))
    _, other_version = await catalog.models.create_version(ALICE, model.id, model.version, version())
    first = await upload(files_stub, version_id, content)
    second = await upload(files_stub, other_version, content, name="copy.safetensors")
    assert first.file.blob_sha256 == second.file.blob_sha256
    assert first.file.file_id != second.file.file_id
    blobs = [p for p in files_on_disk(settings.data_dir) if p.parent.parent.parent.name == "blobs"]
    assert [p.name for p in blobs] == [first.file.blob_sha256]
    assert not list((settings.data_dir / "uploads").glob("*.part"))


async def test_only_the_owner_uploads_and_sessions_are_private(
    files_stub: FileServiceStub, catalog: Catalog, version_id: str
) -> None:
    # A draft: others cannot see it, so it does not exist for them (moderators see it, but do not upload).
    hidden = await failure(start(files_stub, version_id, 100, metadata=BOB_MD))
    assert (hidden.code, hidden.reason) == (grpc.StatusCode.NOT_FOUND, "MODEL_VERSION_NOT_FOUND")
    moderator = await failure(start(files_stub, version_id, 100, metadata=MOD_MD))
    assert (moderator.code, moderator.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_MODEL_OWNER")
    anonymous = await failure(start(files_stub, version_id, 100, metadata=None))
    assert anonymous.code == grpc.StatusCode.UNAUTHENTICATED

    # A published version: visible to others, who still may not upload.
    published, _ = await published_version(catalog, files_stub)
    visible = await failure(start(files_stub, published, 100, metadata=BOB_MD))
    assert (visible.code, visible.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_MODEL_OWNER")

    # Alice's session is invisible to Bob, whatever he tries.
    session = await start(files_stub, version_id, 100)
    for call in (
        files_stub.GetUpload(fpb.GetUploadRequest(upload_id=session.upload_id), metadata=BOB_MD),
        files_stub.AbortUpload(fpb.AbortUploadRequest(upload_id=session.upload_id), metadata=BOB_MD),
        send(files_stub, session.upload_id, b"", metadata=BOB_MD),
    ):
        refused = await failure(call)
        assert (refused.code, refused.reason) == (grpc.StatusCode.NOT_FOUND, "UPLOAD_NOT_FOUND")
        assert refused.message == f"upload {session.upload_id} not found"  # as for an id that does not exist
    unknown = await failure(files_stub.GetUpload(fpb.GetUploadRequest(upload_id="no-such-upload"), metadata=ALICE_MD))
    assert (unknown.code, unknown.message) == (grpc.StatusCode.NOT_FOUND, "upload no-such-upload not found")
    still = await files_stub.GetUpload(fpb.GetUploadRequest(upload_id=session.upload_id), metadata=ALICE_MD)
    assert (still.upload.state, still.upload.offset) == (fpb.UPLOAD_STATE_OPEN, 0)


async def test_an_aborted_upload_takes_no_more_bytes_and_leaves_nothing(
    files_stub: FileServiceStub, version_id: str, settings: CatalogSettings, models_stub: ModelServiceStub
) -> None:
    content = safetensors_bytes()
    session = await start(files_stub, version_id, len(content))
    await send(files_stub, session.upload_id, content[:1000])
    aborted = await files_stub.AbortUpload(fpb.AbortUploadRequest(upload_id=session.upload_id), metadata=ALICE_MD)
    assert aborted.upload.state == fpb.UPLOAD_STATE_ABORTED
    again = await files_stub.AbortUpload(fpb.AbortUploadRequest(upload_id=session.upload_id), metadata=ALICE_MD)
    assert again.upload.state == fpb.UPLOAD_STATE_ABORTED
    refused = await failure(send(files_stub, session.upload_id, content[:1000], offset=1000))
    assert (refused.code, refused.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "UPLOAD_ENDED")
    assert files_on_disk(settings.data_dir) == []
    model = (await models_stub.GetModel(pb.GetModelRequest(model_id=session.model_id), metadata=ALICE_MD)).model
    assert list(model.versions[0].files) == []


async def test_bad_upload_requests_are_refused_with_the_field_named(
    files_stub: FileServiceStub, version_id: str
) -> None:
    bad = await failure(
        files_stub.StartUpload(
            fpb.StartUploadRequest(
                model_version_id=version_id, file_name="../etc/passwd", file_type="Weights", size_bytes=1, size_kind="x"
            ),
            metadata=ALICE_MD,
        )
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in bad.violations} == {"file_name", "file_type", "size_kind"}

    session = await start(files_stub, version_id, 100)

    async def no_target() -> AsyncIterator[fpb.UploadFileRequest]:
        yield fpb.UploadFileRequest(chunk=b"x")

    missing = await failure(files_stub.UploadFile(no_target(), metadata=ALICE_MD))
    assert (missing.code, [v.field for v in missing.violations]) == (grpc.StatusCode.INVALID_ARGUMENT, ["target"])

    async def target_twice() -> AsyncIterator[fpb.UploadFileRequest]:
        for _ in range(2):
            yield fpb.UploadFileRequest(target=fpb.UploadTarget(upload_id=session.upload_id, offset=0))

    twice = await failure(files_stub.UploadFile(target_twice(), metadata=ALICE_MD))
    assert twice.code == grpc.StatusCode.INVALID_ARGUMENT

    taken = await upload(files_stub, version_id, safetensors_bytes(), name="taken.safetensors")
    assert taken.state == fpb.UPLOAD_STATE_COMPLETED
    clash = await failure(start(files_stub, version_id, 100, name="taken.safetensors"))
    assert (clash.code, clash.reason) == (grpc.StatusCode.ALREADY_EXISTS, "FILE_NAME_TAKEN")


async def test_a_version_with_an_uploaded_clean_file_publishes_and_its_file_is_public(
    files_stub: FileServiceStub, catalog: Catalog
) -> None:
    version_id, file_id = await published_version(catalog, files_stub)
    header, data = await download(files_stub, file_id)  # anonymous
    assert header.model_version_id == version_id and len(data) == header.file.size_bytes
    other = auth("carol")
    _, same = await download(files_stub, file_id, metadata=other)
    assert same == data


async def test_the_owner_removes_a_file_and_its_blob_is_collected(
    files_stub: FileServiceStub, files: FileCatalog, version_id: str, settings: CatalogSettings, catalog: Catalog
) -> None:
    done = await upload(files_stub, version_id, safetensors_bytes())
    model = await catalog.models.get_model(ALICE, done.model_id)
    stale = await failure(
        files_stub.RemoveFile(fpb.RemoveFileRequest(file_id=done.file.file_id, expected_version=1), metadata=ALICE_MD)
    )
    assert stale.code == grpc.StatusCode.ABORTED
    removed = await files_stub.RemoveFile(
        fpb.RemoveFileRequest(file_id=done.file.file_id, expected_version=model.version), metadata=ALICE_MD
    )
    assert list(removed.model.versions[0].files) == []
    blob: Path = files.blobs.blob_path(done.file.blob_sha256)
    assert blob.exists()
    assert await files.collect_blobs(older_than=timedelta(0)) == [done.file.blob_sha256]
    assert not blob.exists()
