"""Builders shared by the file RPC tests: file contents (valid and hostile), hashes computed independently of
the service, and upload/download clients."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import zlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import blake3
import grpc
import pytest

from modelhub.catalog.v1 import files_pb2 as fpb
from modelhub.catalog.v1.files_pb2_grpc import FileServiceStub
from modelhub.core.grpc.errors import RpcErrorDetails, error_details

from .conftest import auth

ALICE_MD = auth("alice", name="Alice")
BOB_MD = auth("bob", name="Bob")
MOD_MD = auth("mod", "moderator")
MIB = 1 << 20


def safetensors_bytes(
    data_size: int = 4096, *, metadata: dict[str, str] | None = None, seed: bytes = b"", pad: bool = True
) -> bytes:
    """A valid safetensors file with one U8 tensor of `data_size` bytes (its bytes depend on `seed`)."""
    header: dict[str, Any] = {"weight": {"dtype": "U8", "shape": [data_size], "data_offsets": [0, data_size]}}
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    data = (hashlib.sha256(seed).digest() * (data_size // 32 + 1))[:data_size] if seed else os.urandom(data_size)
    return struct.pack("<Q", len(raw)) + raw + data


def big_safetensors(size: int) -> bytes:
    """A valid safetensors file of exactly `size` bytes, random data (a header padded to 128 bytes)."""
    data_size = size - 8 - 128
    raw = json.dumps({"weight": {"dtype": "U8", "shape": [data_size], "data_offsets": [0, data_size]}}).encode()
    return struct.pack("<Q", 128) + raw.ljust(128) + os.urandom(data_size)


class _RunsCommand:
    """A pickle whose loading would run `os.system` (only ever dumped here, never loaded)."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("echo pwned",))


def dangerous_pickle() -> bytes:
    return pickle.dumps({"state_dict": {"w": [1.0, 2.0]}, "hook": _RunsCommand()}, protocol=4)


def clean_pickle() -> bytes:
    return pickle.dumps({"state_dict": {"w": [1.0, 2.0, 3.0]}}, protocol=4)


def expected_hashes(content: bytes) -> dict[str, str]:
    """Every hash kind computed here, independently of the service (Civitai's definitions)."""
    sha256 = hashlib.sha256(content).hexdigest().upper()
    hashes = {
        "SHA256": sha256,
        "AutoV2": sha256[:10],
        "CRC32": f"{zlib.crc32(content):08X}",
        "BLAKE3": blake3.blake3(content).hexdigest().upper(),
    }
    if len(content) >= 2 * MIB:
        hashes["AutoV1"] = hashlib.sha256(content[MIB : MIB + 0x10000]).hexdigest()[:8].upper()
    return hashes


async def failure(call: Any) -> RpcErrorDetails:
    with pytest.raises(grpc.RpcError) as error:
        await call
    return error_details(error.value)


async def start(
    stub: FileServiceStub,
    version_id: str,
    size: int,
    name: str = "model.safetensors",
    metadata: Any = ALICE_MD,
    **fields: Any,
) -> fpb.Upload:
    request = fpb.StartUploadRequest(model_version_id=version_id, file_name=name, size_bytes=size, **fields)
    return (await stub.StartUpload(request, metadata=metadata)).upload


async def _messages(upload_id: str, offset: int, chunks: Sequence[bytes]) -> AsyncIterator[fpb.UploadFileRequest]:
    yield fpb.UploadFileRequest(target=fpb.UploadTarget(upload_id=upload_id, offset=offset))
    for chunk in chunks:
        yield fpb.UploadFileRequest(chunk=chunk)


def split(content: bytes, chunk: int) -> list[bytes]:
    return [content[i : i + chunk] for i in range(0, len(content), chunk)]


async def send(
    stub: FileServiceStub,
    upload_id: str,
    content: bytes,
    offset: int = 0,
    chunk: int = MIB,
    metadata: Any = ALICE_MD,
) -> fpb.Upload:
    """Stream content[offset:] in chunks; the response's session.

    To see a refusal's status, send no chunks (content[:offset]): a grpc.aio client that is still writing
    when the server ends the call may report INTERNAL instead of the server's status (grpc issue 36066)."""
    call = stub.UploadFile(_messages(upload_id, offset, split(content[offset:], chunk)), metadata=metadata)
    return (await call).upload


async def upload(
    stub: FileServiceStub,
    version_id: str,
    content: bytes,
    name: str = "model.safetensors",
    metadata: Any = ALICE_MD,
    **fields: Any,
) -> fpb.Upload:
    """StartUpload + one UploadFile stream of the whole content; the completed session."""
    session = await start(stub, version_id, len(content), name, metadata, **fields)
    return await send(stub, session.upload_id, content, metadata=metadata)


async def download(
    stub: FileServiceStub, file_id: str, offset: int = 0, length: int = 0, metadata: Any = None
) -> tuple[fpb.DownloadHeader, bytes]:
    header: fpb.DownloadHeader | None = None
    data = bytearray()
    async for message in stub.DownloadFile(
        fpb.DownloadFileRequest(file_id=file_id, offset=offset, length=length), metadata=metadata
    ):
        if message.WhichOneof("content") == "header":
            assert header is None, "one header, first"
            header = message.header
        else:
            assert header is not None, "the header comes first"
            data += message.chunk
    assert header is not None
    return header, bytes(data)


def files_on_disk(root: Path) -> list[Path]:
    """Every file under the store's directory (blobs and uploads)."""
    return sorted(p for p in root.rglob("*") if p.is_file())
