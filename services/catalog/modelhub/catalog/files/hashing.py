"""Every hash modelhub keeps of a file (Civitai's kinds, upper-case hex), computed in one streaming pass.

- SHA256: the full digest; the blob's address in the store.
- AutoV1: the first 8 hex digits of SHA256 over the 64 KiB at offset 1 MiB (A1111's legacy `model_hash`).
  A1111 hashes whatever it can read there; modelhub defines AutoV1 as absent for files smaller than 2 MiB,
  where that window says little about the file.
- AutoV2: the first 10 hex digits of SHA256.
- CRC32 (8 hex digits; zlib's CRC-32, computed by ISA-L's carry-less-multiply code, a tenth of zlib's CPU) and
  BLAKE3 (64 hex digits).
- AutoV3 (SafeTensor files only): SHA256 of the bytes after the safetensors header, from 8 + header length to
  the end: A1111's `addnet_hash_safetensors`, whose first 12 hex digits A1111 writes as a LoRA's hash ("Lora
  hashes"). Not part of the streaming pass (a second full SHA256 there would halve upload throughput):
  `auto_v3_of` computes it from the stored blob afterwards.

Speed: SHA256 is the slowest of the three digests. Chunks are gathered into 1 MiB batches, and each batch's
SHA256 runs on a worker thread while the calling thread computes BLAKE3 and CRC32 (hashlib, blake3 and isal
release the GIL on large buffers): with a spare core, hashing all kinds costs little more than SHA256 alone.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

import blake3
from isal import isal_zlib

from modelhub.catalog.domain.vocabulary import HashKind
from modelhub.catalog.files.errors import InvalidFile
from modelhub.catalog.files.pools import LazyPool

AUTO_V1_OFFSET: Final = 0x100000
"""AutoV1 hashes the window [1 MiB, 1 MiB + 64 KiB)."""
AUTO_V1_LENGTH: Final = 0x10000
AUTO_V1_MIN_SIZE: Final = 0x200000
"""Files smaller than 2 MiB have no AutoV1."""

BATCH_SIZE: Final = 1 << 20
"""Chunks are hashed in batches of this many bytes: large enough for the thread hand-off to pay."""
_PARALLEL_MIN: Final = 256 << 10
"""Below this, hashing SHA256 on another thread costs more than it saves."""

_Bytes: TypeAlias = bytes | bytearray | memoryview


_sha256_pool = LazyPool(4, "modelhub-sha256")
"""The SHA256 side of every hasher."""


@dataclass(frozen=True)
class FileHashes:
    """The hashes of one file's complete content, as upper-case hex."""

    sha256: str
    auto_v1: str | None
    auto_v2: str
    crc32: str
    blake3: str
    size: int

    def by_kind(self) -> dict[HashKind, str]:
        """Each hash under its kind (AutoV1 left out when the file has none), e.g. for lookup rows."""
        hashes = {
            HashKind.SHA256: self.sha256,
            HashKind.AUTO_V2: self.auto_v2,
            HashKind.CRC32: self.crc32,
            HashKind.BLAKE3: self.blake3,
        }
        if self.auto_v1 is not None:
            hashes[HashKind.AUTO_V1] = self.auto_v1
        return hashes


class FileHasher:
    """Computes `FileHashes` over bytes fed in order, in chunks of any size; nothing is read twice.

    Not thread-safe: one feeder at a time (the blob store serialises appends to an upload).
    """

    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()
        self._blake3 = blake3.blake3()
        self._crc32 = 0
        self._auto_v1 = hashlib.sha256()
        self._size = 0  # bytes fed so far, batched or not
        self._hashed = 0  # bytes that went through the digests
        self._batch = bytearray()

    @property
    def size(self) -> int:
        """How many bytes were fed so far."""
        return self._size

    def update(self, chunk: _Bytes) -> None:
        """Feed the next bytes of the file."""
        view = memoryview(chunk).cast("B")
        self._size += len(view)
        if self._batch:
            room = BATCH_SIZE - len(self._batch)
            self._batch += view[:room]
            view = view[room:]
            if len(self._batch) < BATCH_SIZE:
                return
            self._flush()
        # Whole batches straight from the caller's buffer (no copy); the tail waits for more bytes.
        whole = len(view) - len(view) % BATCH_SIZE
        if whole:
            self._digest(view[:whole])
        if whole < len(view):
            self._batch += view[whole:]

    def result(self) -> FileHashes:
        """The hashes of everything fed so far (feeding may go on afterwards)."""
        self._flush()
        sha256 = self._sha256.hexdigest().upper()
        auto_v1 = self._auto_v1.hexdigest()[:8].upper() if self._size >= AUTO_V1_MIN_SIZE else None
        return FileHashes(
            sha256=sha256,
            auto_v1=auto_v1,
            auto_v2=sha256[:10],
            crc32=f"{self._crc32:08X}",
            blake3=self._blake3.hexdigest().upper(),
            size=self._size,
        )

    def _flush(self) -> None:
        if self._batch:
            self._digest(memoryview(self._batch))
            self._batch = bytearray()

    def _digest(self, data: memoryview) -> None:
        start = self._hashed
        self._hashed += len(data)
        # The AutoV1 window may begin or end inside this piece, or span several pieces.
        low = max(start, AUTO_V1_OFFSET)
        high = min(self._hashed, AUTO_V1_OFFSET + AUTO_V1_LENGTH)
        if low < high:
            self._auto_v1.update(data[low - start : high - start])
        if len(data) >= _PARALLEL_MIN:
            sha256_done = _sha256_pool.get().submit(self._sha256.update, data)
            self._blake3.update(data)
            self._crc32 = isal_zlib.crc32(data, self._crc32)
            sha256_done.result()
        else:
            self._sha256.update(data)
            self._blake3.update(data)
            self._crc32 = isal_zlib.crc32(data, self._crc32)


def hash_file(path: Path, chunk_size: int = BATCH_SIZE) -> FileHashes:
    """The hashes of a whole file, read once."""
    hasher = FileHasher()
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as file:
        while count := file.readinto(buffer):
            hasher.update(view[:count])
    return hasher.result()


AUTO_V3_SHORT: Final = 12
"""Hex digits of the AutoV3 prefix A1111 writes in "Lora hashes"."""


def auto_v3_of(path: Path, chunk_size: int = BATCH_SIZE) -> str:
    """The AutoV3 hash (upper-case hex, 64 digits) of the safetensors file at `path`: SHA256 of everything after
    the header, which A1111 computes the same way whatever the header says (its metadata can change without
    changing the hash). Raises InvalidFile when the file is too short to hold the header it declares."""
    sha256 = hashlib.sha256()
    buffer = bytearray(chunk_size)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as file:
        size = path.stat().st_size
        head = file.read(8)
        if len(head) < 8:
            raise InvalidFile(f"safetensors file is {size} bytes, too short to hold the 8-byte header length")
        (header_length,) = struct.unpack("<Q", head)
        if 8 + header_length > size:
            raise InvalidFile(f"safetensors header length {header_length} exceeds the file size ({size} bytes)")
        file.seek(8 + header_length)
        while count := file.readinto(buffer):
            sha256.update(view[:count])
    return sha256.hexdigest().upper()
