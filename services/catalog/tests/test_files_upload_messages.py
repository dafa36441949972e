"""UploadFile's messages: a message that is only a chunk becomes a view of the received bytes (no copy); every
other message is parsed by protobuf, and the two always agree on what a message says. Chunks may be as large as
the configured UPLOAD_CHUNK_MAX_BYTES: the server's message limit follows it."""

from __future__ import annotations

import grpc.aio
from hypothesis import given
from hypothesis import strategies as st

from modelhub.catalog.bootstrap import Catalog, build_server
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.entrypoints import grpc_files
from modelhub.catalog.v1 import files_pb2 as fpb
from modelhub.catalog.v1.files_pb2_grpc import FileServiceStub
from modelhub.core.grpc.registration import Undecodable

from .file_helpers import MIB, big_safetensors, expected_hashes, send, start
from .model_helpers import ALICE, fields, version


def test_a_chunk_message_becomes_a_view_of_the_bytes_received() -> None:
    chunk = bytes(range(256)) * (MIB // 256) + b"tail"
    wire = fpb.UploadFileRequest(chunk=chunk).SerializeToString()

    decoded = grpc_files._upload_message(wire)

    assert isinstance(decoded, memoryview)
    assert decoded.obj is wire  # no copy: a view into what gRPC handed over
    assert decoded == chunk


def test_other_messages_are_parsed_by_protobuf() -> None:
    target = fpb.UploadFileRequest(target=fpb.UploadTarget(upload_id="u1", offset=42))
    assert grpc_files._upload_message(target.SerializeToString()) == target
    # A chunk followed by a target: the oneof's last field wins, as protobuf says.
    both = fpb.UploadFileRequest(chunk=b"abc").SerializeToString() + target.SerializeToString()
    assert grpc_files._upload_message(both) == target
    # Cut short (the length says more bytes than there are): refused like any message that does not parse.
    truncated = fpb.UploadFileRequest(chunk=b"abcdef").SerializeToString()[:-1]
    assert isinstance(grpc_files._upload_message(truncated), Undecodable)


@given(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"\x12" + b)))
def test_the_shortcut_agrees_with_protobuf_on_any_bytes(data: bytes) -> None:
    decoded = grpc_files._upload_message(data)
    if isinstance(decoded, memoryview):
        parsed = fpb.UploadFileRequest.FromString(data)
        assert parsed.WhichOneof("content") == "chunk"
        assert parsed.chunk == decoded


@given(st.binary(max_size=20_000))
def test_every_chunk_message_takes_the_shortcut(chunk: bytes) -> None:
    """Lengths of one to three varint bytes; an empty chunk is a chunk too."""
    decoded = grpc_files._upload_message(fpb.UploadFileRequest(chunk=chunk).SerializeToString())
    assert isinstance(decoded, memoryview)
    assert decoded == chunk


async def test_chunks_as_large_as_the_configured_maximum_are_taken(settings: CatalogSettings, catalog: Catalog) -> None:
    chunk = 6 * MIB
    raised = CatalogSettings(**{**settings.model_dump(), "upload_chunk_max_bytes": chunk})  # validated
    server = build_server(raised, catalog)
    await server.start()
    try:
        model = await catalog.models.create_model(ALICE, fields())
        _, version_id = await catalog.models.create_version(ALICE, model.id, model.version, version())
        content = big_safetensors(2 * chunk + 12345)
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = FileServiceStub(channel)
            session = await start(stub, version_id, len(content))
            assert session.max_chunk_bytes == chunk
            done = await send(stub, session.upload_id, content, chunk=chunk)
    finally:
        await server.stop(0)
    assert done.state == fpb.UPLOAD_STATE_COMPLETED
    assert {h.kind: h.value for h in done.file.hashes} == expected_hashes(content)
