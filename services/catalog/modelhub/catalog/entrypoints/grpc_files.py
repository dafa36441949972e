"""FileService: protobuf in, use case, protobuf out. Errors are DomainErrors (mapped by libs/core)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Final

import grpc
import grpc.aio
from google.protobuf.message import Message

from modelhub.catalog.domain.commands import Violations
from modelhub.catalog.domain.downloads import hash_query
from modelhub.catalog.domain.uploads import UploadStatus, upload_request
from modelhub.catalog.domain.vocabulary import ScanResult
from modelhub.catalog.entrypoints.grpc_models import file_pb, model_pb
from modelhub.catalog.entrypoints.grpc_support import Context, actor, optional_actor, to_timestamp
from modelhub.catalog.handlers.files import FileCatalog, UploadView
from modelhub.catalog.v1 import files_pb2 as pb
from modelhub.core.errors import FieldViolation, InvalidArgument
from modelhub.core.grpc.registration import Undecodable, add_service, lenient, reject_undecodable

log = logging.getLogger(__name__)

SERVICE_NAME: Final = "modelhub.catalog.v1.FileService"
PUBLIC_METHODS: Final = frozenset(f"/{SERVICE_NAME}/{m}" for m in ("DownloadFile", "GetFileByHash"))
"""Methods anonymous callers may use (public files only)."""

UPLOAD_STATES: Final[Mapping[UploadStatus, pb.UploadState.ValueType]] = {
    UploadStatus.OPEN: pb.UPLOAD_STATE_OPEN,
    UploadStatus.COMPLETED: pb.UPLOAD_STATE_COMPLETED,
    UploadStatus.REJECTED: pb.UPLOAD_STATE_REJECTED,
    UploadStatus.ABORTED: pb.UPLOAD_STATE_ABORTED,
    UploadStatus.EXPIRED: pb.UPLOAD_STATE_EXPIRED,
}


_CHUNK_TAG: Final = pb.UploadFileRequest.DESCRIPTOR.fields_by_name["chunk"].number << 3 | 2
"""The first byte of an UploadFileRequest that carries a chunk: its field number, wire type 2 (length-delimited)."""
_parse_upload_message = lenient(pb.UploadFileRequest.FromString)


def _upload_message(data: bytes) -> memoryview | Message | Undecodable:
    """UploadFile's request deserializer. A message that is a chunk and nothing else (every message of an upload
    but the first) becomes a view of the chunk's bytes inside the received buffer; anything else is parsed by
    protobuf as usual.

    Why: protobuf's parser copies each chunk into a new bytes object. The copy itself is cheap, but each one is
    a fresh multi-megabyte allocation, often of pages the kernel must fault in again, and that costs: without
    it uploads run 15-40 % faster on the 2-core benchmark machine (docs/catalog.md, Performance)."""
    if len(data) >= 2 and data[0] == _CHUNK_TAG:
        length, shift, position = 0, 0, 1
        while position < min(len(data), 11):  # the length: a varint of at most 10 bytes
            byte = data[position]
            position += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                if position + length == len(data):
                    return memoryview(data)[position:]
                break
    return _parse_upload_message(data)


def add_to_server(servicer: FileServicer, server: grpc.aio.Server) -> None:
    """Register FileService's methods (unary and streaming) with lenient request parsing; UploadFile's chunk
    messages are read in place (`_upload_message`)."""
    add_service(servicer, server, pb, "FileService", deserializers={"UploadFile": _upload_message})


def _required(field: str, value: str) -> str:
    value = value.strip()
    if not value:
        v = Violations()
        v.add(field, "is required")
        v.raise_if_any("request")
    return value


def _chunk_of(message: pb.UploadFileRequest) -> bytes:
    if message.WhichOneof("content") != "chunk":
        raise InvalidArgument(
            "only the first message of an upload names the target; the others carry bytes",
            violations=[FieldViolation("target", "is allowed in the first message only")],
        )
    return message.chunk


def _log_outcome(task: asyncio.Task[UploadView]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.info("upload completion after the client left: %s", error)


class FileServicer:
    """modelhub.catalog.v1.FileService over the FileCatalog use cases."""

    public_methods: Final = PUBLIC_METHODS

    def __init__(
        self,
        files: FileCatalog,
        *,
        max_file_size: int,
        max_chunk_bytes: int,
        download_chunk_bytes: int,
        session_ttl: timedelta,
    ) -> None:
        self.files = files
        self.max_file_size = max_file_size
        self.max_chunk_bytes = max_chunk_bytes
        self.download_chunk_bytes = download_chunk_bytes
        self.session_ttl = session_ttl

    def upload_pb(self, view: UploadView) -> pb.Upload:
        s = view.session
        message = pb.Upload(
            upload_id=s.upload_id,
            model_id=s.model_id,
            model_version_id=s.model_version_id,
            file_name=s.file_name,
            file_type=s.file_type,
            size_kind=s.size_kind,
            size_bytes=s.size_bytes,
            offset=view.offset,
            state=UPLOAD_STATES[s.status],
            error_reason=s.error_reason,
            error_message=s.error_message,
            created_at=to_timestamp(s.created_at),
            updated_at=to_timestamp(s.updated_at),
            expires_at=to_timestamp(s.expires_at(self.session_ttl)) if s.status == UploadStatus.OPEN else None,
            max_chunk_bytes=self.max_chunk_bytes,
        )
        if view.file is not None:
            message.file.CopyFrom(
                file_pb(view.file.file, downloadable=view.file.file.scan_result == ScanResult.SUCCESS)
            )
        return message

    async def StartUpload(self, request: pb.StartUploadRequest, context: Context) -> pb.StartUploadResponse:  # noqa: N802 - generated name
        request = reject_undecodable(request)
        caller = actor()
        command = upload_request(
            request.model_version_id,
            request.file_name,
            request.file_type,
            request.size_bytes,
            request.size_kind,
            request.request_id,
            max_size=self.max_file_size,
        )
        return pb.StartUploadResponse(upload=self.upload_pb(await self.files.start_upload(caller, command)))

    async def UploadFile(  # noqa: N802 - generated name
        self, request_iterator: AsyncIterator[pb.UploadFileRequest], context: Context
    ) -> pb.UploadFileResponse:
        caller = actor()
        first = reject_undecodable(await anext(aiter(request_iterator), None))
        if first is None or isinstance(first, memoryview) or first.WhichOneof("content") != "target":
            raise InvalidArgument(
                "the first message of an upload names the upload and the offset its bytes start at",
                violations=[FieldViolation("target", "is required in the first message (and only there)")],
            )
        session, offset = await self.files.resume(
            caller, _required("target.upload_id", first.target.upload_id), first.target.offset
        )
        # One append in flight while the next chunk is received: storing and hashing (in a thread) overlap
        # with the transport. Appends stay in order: each starts once the previous one has finished.
        storing: asyncio.Future[int] | None = None
        try:
            async for raw in request_iterator:
                chunk = raw if isinstance(raw, memoryview) else _chunk_of(reject_undecodable(raw))
                if len(chunk) > self.max_chunk_bytes:
                    raise InvalidArgument(
                        f"a chunk may carry at most {self.max_chunk_bytes} bytes; got {len(chunk)}",
                        violations=[FieldViolation("chunk", f"at most {self.max_chunk_bytes} bytes")],
                    )
                if storing is not None:
                    offset = await storing
                    storing = None
                if chunk:
                    storing = asyncio.ensure_future(self.files.append(session, offset, chunk))
            if storing is not None:
                offset = await storing
                storing = None
        finally:
            if storing is not None:  # the stream failed while a chunk was being stored: let it finish
                await asyncio.gather(storing, return_exceptions=True)
        if offset < session.size_bytes:
            return pb.UploadFileResponse(upload=self.upload_pb(UploadView(session, offset)))
        # Every byte is here: complete even if the client goes away now (a retry would redo it anyway).
        completion = asyncio.ensure_future(self.files.complete(session))
        try:
            view = await asyncio.shield(completion)
        except asyncio.CancelledError:
            completion.add_done_callback(_log_outcome)
            raise
        return pb.UploadFileResponse(upload=self.upload_pb(view))

    async def GetUpload(self, request: pb.GetUploadRequest, context: Context) -> pb.GetUploadResponse:  # noqa: N802 - generated name
        request = reject_undecodable(request)
        caller = actor()
        view = await self.files.get_upload(caller, _required("upload_id", request.upload_id))
        return pb.GetUploadResponse(upload=self.upload_pb(view))

    async def AbortUpload(self, request: pb.AbortUploadRequest, context: Context) -> pb.AbortUploadResponse:  # noqa: N802 - generated name
        request = reject_undecodable(request)
        caller = actor()
        view = await self.files.abort_upload(caller, _required("upload_id", request.upload_id))
        return pb.AbortUploadResponse(upload=self.upload_pb(view))

    async def DownloadFile(  # noqa: N802 - generated name
        self, request: pb.DownloadFileRequest, context: Context
    ) -> AsyncIterator[pb.DownloadFileResponse]:
        request = reject_undecodable(request)
        viewer = optional_actor()
        download = await self.files.open_download(
            viewer, _required("file_id", request.file_id), request.offset, request.length
        )
        try:
            record = download.record
            yield pb.DownloadFileResponse(
                header=pb.DownloadHeader(
                    file=file_pb(record.file, downloadable=True),
                    model_id=record.model_id,
                    model_version_id=record.model_version_id,
                    offset=download.offset,
                    length=download.length,
                )
            )
            async for data in download.chunks(self.download_chunk_bytes):
                yield pb.DownloadFileResponse(chunk=data)
        finally:
            download.close()

    async def GetFileByHash(self, request: pb.GetFileByHashRequest, context: Context) -> pb.GetFileByHashResponse:  # noqa: N802 - generated name
        request = reject_undecodable(request)
        record = await self.files.file_by_hash(optional_actor(), hash_query(request.hash, request.kind))
        return pb.GetFileByHashResponse(
            file=file_pb(record.file, downloadable=record.file.scan_result == ScanResult.SUCCESS),
            model_id=record.model_id,
            model_name=record.model_name,
            model_type=record.model_type,
            creator_user_id=record.owner_id,
            creator_username=record.owner_name,
            model_version_id=record.model_version_id,
            version_name=record.version_name,
            base_model=record.base_model,
            version_status=record.version_status,
            match_count=record.match_count,
        )

    async def RemoveFile(self, request: pb.RemoveFileRequest, context: Context) -> pb.RemoveFileResponse:  # noqa: N802 - generated name
        request = reject_undecodable(request)
        caller = actor()
        if request.expected_version < 1:
            v = Violations()
            v.add("expected_version", "is required: send the model's `version` from your last read (GetModel)")
            v.raise_if_any("request")
        model = await self.files.remove_file(caller, _required("file_id", request.file_id), request.expected_version)
        return pb.RemoveFileResponse(model=model_pb(model, caller))
