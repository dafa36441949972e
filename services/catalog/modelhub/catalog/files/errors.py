"""Errors of the file pipeline, as modelhub domain errors (the gRPC layer maps them to status codes)."""

from __future__ import annotations

from modelhub.core.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound


class InvalidFile(InvalidArgument):
    """The file's bytes are not what its format requires; `reason` in the message says what is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="INVALID_FILE")


class EmptyFile(InvalidArgument):
    """A zero-byte upload: there is nothing to store."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(
            f"upload {upload_id!r} has no bytes: a file must not be empty",
            reason="EMPTY_FILE",
            metadata={"upload_id": upload_id},
        )


class FileTooLarge(InvalidArgument):
    """The upload would grow beyond the store's size limit."""

    def __init__(self, upload_id: str, size: int, max_size: int) -> None:
        super().__init__(
            f"upload {upload_id!r} would reach {size} bytes, over the limit of {max_size} bytes per file",
            reason="FILE_TOO_LARGE",
            metadata={"upload_id": upload_id, "size": str(size), "max_size": str(max_size)},
        )


class UploadNotFound(NotFound):
    """No upload session with this id (never begun, aborted, cleaned up, or finished long ago)."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(
            f"upload {upload_id!r} does not exist (it was never begun, or was aborted or expired): begin a new one",
            reason="UPLOAD_NOT_FOUND",
            metadata={"upload_id": upload_id},
        )


class UploadOffsetMismatch(Conflict):
    """An append at an offset other than the upload's current size: resume from `committed_offset`."""

    def __init__(self, upload_id: str, offset: int, committed_offset: int) -> None:
        super().__init__(
            f"upload {upload_id!r} holds {committed_offset} bytes, so the next chunk must start at offset "
            f"{committed_offset}, not {offset}: resume from {committed_offset}",
            reason="UPLOAD_OFFSET_MISMATCH",
            metadata={"upload_id": upload_id, "offset": str(offset), "committed_offset": str(committed_offset)},
        )
        self.committed_offset = committed_offset


class BlobNotFound(NotFound):
    """No stored blob has this SHA256."""

    def __init__(self, sha256: str) -> None:
        super().__init__(f"no stored file has SHA256 {sha256}", reason="BLOB_NOT_FOUND", metadata={"sha256": sha256})


class UploadFinished(FailedPrecondition):
    """The upload was finished already: its bytes are a stored blob and can change no more."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(
            f"upload {upload_id!r} is finished already and takes no more bytes: begin a new upload",
            reason="UPLOAD_FINISHED",
            metadata={"upload_id": upload_id},
        )
