"""Upload sessions and the rules of what a file upload may be (pure: no I/O).

A session is opened for one file of one version, with its size declared up front, so that a zero-byte file
or one over the limit is refused before any byte travels. Its bytes go to the blob store; when the declared
size is reached the file is checked and added to the version as a file fact of the model aggregate
(`Model.add_file`), with file id = upload id, so a retried completion adds the same file (a no-op).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from modelhub.catalog.domain.commands import MAX_REQUEST_ID, Violations
from modelhub.catalog.domain.vocabulary import FileFormat, FileType, SizeKind
from modelhub.core.errors import NotFound

MAX_FILE_NAME: Final = 255
METADATA_MAX_KEYS: Final = 100
METADATA_MAX_VALUE: Final = 2_000
METADATA_MAX_TOTAL: Final = 64_000
"""A safetensors header's __metadata__ is kept as a summary: at most this many keys, each value cut to
METADATA_MAX_VALUE characters, at most METADATA_MAX_TOTAL characters in all (training tools write megabytes
of tag frequencies there; the file itself keeps the whole header)."""

CLAIMED_FORMATS: Final[Mapping[str, FileFormat]] = {
    ".safetensors": FileFormat.SAFE_TENSOR,
    ".sft": FileFormat.SAFE_TENSOR,
    ".gguf": FileFormat.GGUF,
}
"""File name endings that promise a format whose validity can be checked: bytes that are not a valid file
of that format are refused (a broken "x.safetensors" is never stored as an opaque Other file)."""


class UploadStatus(StrEnum):
    OPEN = "Open"
    COMPLETED = "Completed"
    REJECTED = "Rejected"
    ABORTED = "Aborted"
    EXPIRED = "Expired"


@dataclass(frozen=True)
class UploadRequest:
    """A validated StartUpload."""

    model_version_id: str
    file_name: str
    file_type: str
    size_bytes: int
    size_kind: str
    request_id: str


@dataclass(frozen=True)
class UploadSession:
    upload_id: str
    owner_id: str
    request_id: str
    model_id: str
    model_version_id: str
    file_name: str
    file_type: str
    size_kind: str
    size_bytes: int
    status: UploadStatus
    created_at: datetime
    updated_at: datetime
    error_reason: str = ""
    error_message: str = ""
    blob_sha256: str | None = None

    def expires_at(self, ttl: timedelta) -> datetime:
        return self.updated_at + ttl

    def same_request(self, request: UploadRequest) -> bool:
        """Whether a StartUpload retried with this session's request id asks for the same file."""
        return (
            request.model_version_id,
            request.file_name,
            request.file_type,
            request.size_bytes,
            request.size_kind,
        ) == (
            self.model_version_id,
            self.file_name,
            self.file_type,
            self.size_bytes,
            self.size_kind,
        )


def upload_not_found(upload_id: str) -> NotFound:
    """The same answer for a session that does not exist and one that belongs to someone else."""
    return NotFound(f"upload {upload_id} not found", reason="UPLOAD_NOT_FOUND", metadata={"upload_id": upload_id})


def check_file_name(v: Violations, field: str, name: str) -> str:
    name = unicodedata.normalize("NFC", name.strip())
    if not 1 <= len(name) <= MAX_FILE_NAME:
        v.add(field, f"must be 1 to {MAX_FILE_NAME} characters; got {len(name)}")
    elif any(c in "/\\" for c in name) or name in (".", ".."):
        v.add(field, "must be a plain file name, without '/' or '\\'")
    elif any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
        v.add(field, "must not contain control characters")
    return name


def upload_request(
    model_version_id: str,
    file_name: str,
    file_type: str,
    size_bytes: int,
    size_kind: str,
    request_id: str,
    *,
    max_size: int,
) -> UploadRequest:
    """Validate a StartUpload (raises InvalidArgument naming every bad field)."""
    v = Violations()
    version_id = model_version_id.strip()
    if not version_id:
        v.add("model_version_id", "is required")
    name = check_file_name(v, "file_name", file_name)
    file_type = file_type.strip() or FileType.MODEL.value
    if file_type not in {t.value for t in FileType}:
        v.add("file_type", f"must be one of {', '.join(t.value for t in FileType)}; got {file_type!r}")
    if size_bytes <= 0:
        v.add("size_bytes", f"a file must not be empty: declare its size in bytes (at least 1); got {size_bytes}")
    elif size_bytes > max_size:
        v.add("size_bytes", f"{size_bytes} bytes is over the limit of {max_size} bytes per file")
    size_kind = size_kind.strip().lower()
    if size_kind and size_kind not in {k.value for k in SizeKind}:
        v.add("size_kind", f"must be empty or one of {', '.join(k.value for k in SizeKind)}; got {size_kind!r}")
    request_id = request_id.strip()
    if len(request_id) > MAX_REQUEST_ID:
        v.add("request_id", f"must be at most {MAX_REQUEST_ID} characters; got {len(request_id)}")
    v.raise_if_any("upload")
    return UploadRequest(version_id, name, file_type, size_bytes, size_kind, request_id)


def claimed_format(file_name: str) -> FileFormat | None:
    """The checkable format a file's name promises, if any."""
    lowered = file_name.lower()
    return next((fmt for ending, fmt in CLAIMED_FORMATS.items() if lowered.endswith(ending)), None)


def metadata_summary(metadata: Mapping[str, str]) -> dict[str, str]:
    """The part of a safetensors __metadata__ kept with the file (see METADATA_MAX_*), keys in order."""
    summary: dict[str, str] = {}
    total = 0
    for key in sorted(metadata)[:METADATA_MAX_KEYS]:
        value = metadata[key]
        if len(value) > METADATA_MAX_VALUE:
            value = value[: METADATA_MAX_VALUE - 1] + "…"
        total += len(key) + len(value)
        if total > METADATA_MAX_TOTAL:
            break
        summary[key[:METADATA_MAX_VALUE]] = value
    return summary
