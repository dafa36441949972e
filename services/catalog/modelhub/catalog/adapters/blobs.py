"""The blob store as the file RPCs use it: one store per directory per process, and what a completed upload is
(format, validity, scan state). The collection of unreferenced blobs, and its lock, are in blob_collection.py.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from modelhub.catalog.domain.uploads import claimed_format, metadata_summary
from modelhub.catalog.domain.vocabulary import FileFormat, ScanResult
from modelhub.catalog.files.blobstore import BlobStore
from modelhub.catalog.files.errors import InvalidFile
from modelhub.catalog.files.formats import HEAD_SIZE, detect_format
from modelhub.catalog.files.inspection import inspect_blob
from modelhub.catalog.files.safetensors import parse_safetensors_header

_INSPECTED_INLINE: Final = frozenset({FileFormat.SAFE_TENSOR, FileFormat.GGUF, FileFormat.ONNX})
"""Formats that hold no code: checked while the upload completes (header checks only, fast). Everything
else may hide a pickle and is scanned by the background scanner."""

_stores_lock = threading.Lock()
_stores: dict[tuple[Path, int], BlobStore] = {}


def blob_store(root: Path, max_size: int) -> BlobStore:
    """The process's store for `root`: the servicer and the background jobs share it (and its in-memory
    hash state of open uploads, which the cleanup job drops for expired sessions)."""
    key = (root.resolve(), max_size)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = BlobStore(key[0], max_size)
        return store


@dataclass(frozen=True)
class Inspected:
    """What a completed upload is, before it becomes a file of its version."""

    format: FileFormat
    scan_result: ScanResult
    scan_message: str
    precision: str = ""
    safetensors_metadata: dict[str, str] | None = None
    tensor_count: int = 0


def inspect_upload(path: Path, size: int, file_name: str) -> Inspected:
    """Detect the format from the bytes and check what can be checked at once (synchronous: run it in a
    thread). Raises InvalidFile when the bytes break their format's rules, or are not the format the name
    promises (a name ending in .safetensors or .gguf). Pickle-based and unknown files come back Pending:
    the scanner looks inside them."""
    with path.open("rb") as file:
        head = file.read(HEAD_SIZE)
        detected = detect_format(head, size)
        claimed = claimed_format(file_name)
        if claimed is FileFormat.SAFE_TENSOR and detected is not FileFormat.SAFE_TENSOR:
            parse_safetensors_header(file, size)  # raises InvalidFile with the precise reason
            raise InvalidFile(f"{file_name!r} is named as a safetensors file, but its bytes are not one")
    if claimed is FileFormat.GGUF and detected is not FileFormat.GGUF:
        raise InvalidFile(
            f"{file_name!r} is named as a GGUF file, but it does not start with the GGUF magic and a known version"
        )
    if detected not in _INSPECTED_INLINE:
        return Inspected(detected, ScanResult.PENDING, "waiting for the pickle scan")
    inspection = inspect_blob(path, size)
    header = inspection.safetensors
    return Inspected(
        format=inspection.format,
        scan_result=inspection.scan.result,
        scan_message=inspection.scan.message,
        precision=inspection.precision.value if inspection.precision else "",
        safetensors_metadata=metadata_summary(header.metadata) if header else None,
        tensor_count=len(header.tensors) if header else 0,
    )
