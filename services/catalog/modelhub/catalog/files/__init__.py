"""The catalog's file pipeline: hashing while streaming in, format detection, safetensors validation, pickle
scanning and content-addressed storage. A library without I/O beyond the local files it is given: no
database, no network. Every function is synchronous; async callers use asyncio.to_thread.
"""

from modelhub.catalog.domain.vocabulary import FileFormat, Precision, ScanResult
from modelhub.catalog.files.blobstore import BlobStore, StoredBlob, UploadState
from modelhub.catalog.files.errors import (
    BlobNotFound,
    EmptyFile,
    FileTooLarge,
    InvalidFile,
    UploadFinished,
    UploadNotFound,
    UploadOffsetMismatch,
)
from modelhub.catalog.files.formats import HEAD_SIZE, detect_format
from modelhub.catalog.files.hashing import FileHasher, FileHashes, auto_v3_of, hash_file
from modelhub.catalog.files.inspection import FileInspection, inspect_blob
from modelhub.catalog.files.safetensors import (
    SafetensorsHeader,
    TensorInfo,
    parse_safetensors_header,
    read_safetensors_header,
)
from modelhub.catalog.files.scanning import ScanOutcome, scan_pickle

__all__ = [
    "HEAD_SIZE",
    "BlobNotFound",
    "BlobStore",
    "EmptyFile",
    "FileFormat",
    "FileHasher",
    "FileHashes",
    "FileInspection",
    "FileTooLarge",
    "InvalidFile",
    "Precision",
    "SafetensorsHeader",
    "ScanOutcome",
    "ScanResult",
    "StoredBlob",
    "TensorInfo",
    "UploadFinished",
    "UploadNotFound",
    "UploadOffsetMismatch",
    "UploadState",
    "auto_v3_of",
    "detect_format",
    "hash_file",
    "inspect_blob",
    "parse_safetensors_header",
    "read_safetensors_header",
    "scan_pickle",
]
