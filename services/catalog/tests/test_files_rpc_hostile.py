"""Hostile files through the real upload path: each is refused, or stored and marked Danger, with a clear
message, and nothing of it becomes public."""

from __future__ import annotations

import asyncio
import json
import struct

import grpc
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.handlers.files import FileCatalog
from modelhub.catalog.v1 import files_pb2 as fpb
from modelhub.catalog.v1 import models_pb2 as pb
from modelhub.catalog.v1.files_pb2_grpc import FileServiceStub
from modelhub.catalog.v1.models_pb2_grpc import ModelServiceStub

from .file_helpers import (
    ALICE_MD,
    clean_pickle,
    dangerous_pickle,
    download,
    failure,
    safetensors_bytes,
    send,
    start,
    upload,
)
from .model_helpers import ALICE, event_types, fields, version


@pytest.fixture
async def version_id(catalog: Catalog) -> str:
    model = await catalog.models.create_model(ALICE, fields())
    _, vid = await catalog.models.create_version(ALICE, model.id, model.version, version())
    return vid


def _header(document: dict[str, object], length: int | None = None) -> bytes:
    raw = json.dumps(document).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw


TRUNCATED = safetensors_bytes(4096)[:3000]
"""A valid file cut short: its tensor ends past the end of the data."""
OVERSIZED_HEADER = _header({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, length=200_000_000) + b"\0"
"""A header length of 200 MB, over the 100 MB limit (and over the file)."""
HEADER_PAST_THE_FILE = _header({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, length=5_000)
"""A header length beyond the end of the file."""
OFFSETS_PAST_THE_END = _header({"w": {"dtype": "U8", "shape": [64], "data_offsets": [1000, 1064]}}) + b"\0" * 64
"""A tensor whose offsets point past the end of the data section."""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (TRUNCATED, "past its end"),
        (OVERSIZED_HEADER, "header length 200000000 exceeds"),
        (HEADER_PAST_THE_FILE, "exceeds the file size"),
        (OFFSETS_PAST_THE_END, "past its end"),
        (b"not a safetensors file at all", "safetensors"),
    ],
    ids=["truncated", "oversized-header", "header-past-the-file", "offsets-past-the-end", "garbage"],
)
async def test_an_invalid_safetensors_file_is_refused_and_never_added(
    files_stub: FileServiceStub,
    models_stub: ModelServiceStub,
    files: FileCatalog,
    version_id: str,
    content: bytes,
    message: str,
) -> None:
    session = await start(files_stub, version_id, len(content), name="hostile.safetensors")
    refused = await failure(send(files_stub, session.upload_id, content))
    assert (refused.code, refused.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FILE")
    assert message in refused.message
    got = await files_stub.GetUpload(fpb.GetUploadRequest(upload_id=session.upload_id), metadata=ALICE_MD)
    assert (got.upload.state, got.upload.error_reason, got.upload.error_message) == (
        fpb.UPLOAD_STATE_REJECTED,
        "INVALID_FILE",
        refused.message,
    )
    model = (await models_stub.GetModel(pb.GetModelRequest(model_id=session.model_id), metadata=ALICE_MD)).model
    assert list(model.versions[0].files) == []
    # Nothing to publish: the version has no file.
    nothing = await failure(
        models_stub.PublishModel(
            pb.PublishModelRequest(model_id=model.model_id, expected_version=model.version), metadata=ALICE_MD
        )
    )
    assert (nothing.code, nothing.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOTHING_TO_PUBLISH")


async def test_a_pickle_that_imports_os_system_is_marked_danger_and_never_downloadable(
    files_stub: FileServiceStub, models_stub: ModelServiceStub, files: FileCatalog, version_id: str, catalog: Catalog
) -> None:
    done = await upload(files_stub, version_id, dangerous_pickle(), name="model.ckpt")
    assert (done.state, done.file.format, done.file.scan_result) == (
        fpb.UPLOAD_STATE_COMPLETED,
        "PickleTensor",
        "Pending",
    )
    assert not done.file.downloadable
    pending = await failure(download(files_stub, done.file.file_id, metadata=ALICE_MD))
    assert (pending.code, pending.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "FILE_NOT_CLEAN")

    assert await files.scan_pending() == 1
    assert await files.scan_pending() == 0  # nothing left to scan
    model = (await models_stub.GetModel(pb.GetModelRequest(model_id=done.model_id), metadata=ALICE_MD)).model
    [file] = model.versions[0].files
    assert (file.scan_result, file.downloadable) == ("Danger", False)
    assert "posix.system" in file.scan_message or "os.system" in file.scan_message

    refused = await failure(download(files_stub, file.file_id, metadata=ALICE_MD))
    assert (refused.code, refused.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "FILE_NOT_CLEAN")
    assert "Danger" in refused.message
    unpublishable = await failure(
        models_stub.PublishModel(
            pb.PublishModelRequest(model_id=model.model_id, expected_version=model.version), metadata=ALICE_MD
        )
    )
    assert (unpublishable.code, unpublishable.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOTHING_TO_PUBLISH")
    assert "not scanned clean" in unpublishable.message


async def test_a_clean_pickle_is_scanned_clean_then_downloadable(
    files_stub: FileServiceStub, files: FileCatalog, version_id: str
) -> None:
    content = clean_pickle()
    done = await upload(files_stub, version_id, content, name="model.pt")
    assert done.file.scan_result == "Pending"
    await files.scan_pending()
    _, data = await download(files_stub, done.file.file_id, metadata=ALICE_MD)
    assert data == content


async def test_two_scanners_racing_record_one_verdict(
    files_stub: FileServiceStub, files: FileCatalog, version_id: str, engine: AsyncEngine
) -> None:
    """The scanner keeps no state of its own: a file whose verdict was not recorded (a crash mid-scan) is still
    Pending and is scanned by the next run; scanners racing on one file record its verdict once."""
    done = await upload(files_stub, version_id, dangerous_pickle(), name="model.bin")
    await asyncio.gather(files.scan_pending(), files.scan_pending())
    types = await event_types(engine, f"model-{done.model_id}")
    assert types.count("catalog.ModelFileScanned") == 1
    assert await files.scan_pending() == 0


async def test_empty_and_oversized_files_are_refused_before_any_byte_is_sent(
    files_stub: FileServiceStub, version_id: str, settings: CatalogSettings
) -> None:
    empty = await failure(start(files_stub, version_id, 0))
    assert empty.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in empty.violations] == ["size_bytes"]
    assert "must not be empty" in empty.violations[0].description

    over = await failure(start(files_stub, version_id, settings.max_file_size_bytes + 1))
    assert over.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"over the limit of {settings.max_file_size_bytes} bytes" in over.violations[0].description


async def test_bytes_beyond_the_declared_size_are_refused_and_not_stored(
    files_stub: FileServiceStub, version_id: str, settings: CatalogSettings
) -> None:
    content = safetensors_bytes()
    session = await start(files_stub, version_id, len(content) - 10)
    refused = await failure(send(files_stub, session.upload_id, content, chunk=len(content)))
    assert (refused.code, refused.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "UPLOAD_SIZE_EXCEEDED")
    got = await files_stub.GetUpload(fpb.GetUploadRequest(upload_id=session.upload_id), metadata=ALICE_MD)
    assert (got.upload.state, got.upload.offset) == (fpb.UPLOAD_STATE_OPEN, 0)
