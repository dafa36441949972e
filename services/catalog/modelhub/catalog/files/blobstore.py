"""Content-addressed file storage on a local directory, filled through resumable upload sessions.

Layout under `root`:

    uploads/<upload_id>.part       the bytes of an upload so far
    uploads/<upload_id>.done       after finish: the file's hashes (JSON), so a retried finish gets the answer
    blobs/<SHA[:2]>/<SHA[2:4]>/<SHA>   complete files, named by their upper-case SHA256, read-only

Guarantees (crash = the process is killed, or the machine stops):

- Only complete files ever exist under blobs/: finish fsyncs the part, then renames it into place (atomic
  within one filesystem) and fsyncs the directory. Identical content is stored once: a second upload of it
  replaces the first copy by an identical one.
- An upload's offset is its part file's size. `append` refuses any chunk that does not start exactly there
  (UploadOffsetMismatch carries the offset to resume from), so no byte is written twice or skipped, whatever
  the client retries. Appends are not fsynced one by one (every WRITEBACK_EVERY bytes a background flush
  pushes the part to disk, which also leaves finish's fsync little to do): after a process crash every
  appended byte is in the file; after a machine crash the file may have lost its newest bytes, and resume
  reports the shorter offset, from which the client sends again. Finish is the durability point.
- Hash state: a live FileHasher per upload stays in memory; when it is missing or behind the file (the
  process restarted, another process appended, a write failed half-way) it is rebuilt or caught up by reading
  the part file, so the hashes always describe exactly the bytes in the file.
- finish is idempotent: once the hashes are recorded (uploads/<id>.done, written before the rename), a
  retried finish, even after a crash half-way, completes the rename if needed and returns the same blob.
- A large chunk is written by a writer thread while the calling thread hashes it (the hashing module runs
  SHA256 on a third thread): write and hashes overlap, on as many cores as there are. `append` returns, and
  unlocks the part, only once both are over; when either fails, the part is cut back to its size before the
  chunk and the hash state is dropped (rebuilt from the file on the next append), so a failed append changes
  nothing, whichever thread failed.
- Appends, finish, resume and abort of one upload are serialised with an exclusive flock on its part file,
  which also excludes other processes sharing the directory; each re-checks, holding the lock, that the
  part is still the one it opened (not finished or aborted meanwhile).

The store is synchronous (file I/O and hashing): async callers run its methods with asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, Final

from modelhub.catalog.files.errors import (
    BlobNotFound,
    EmptyFile,
    FileTooLarge,
    UploadFinished,
    UploadNotFound,
    UploadOffsetMismatch,
)
from modelhub.catalog.files.hashing import BATCH_SIZE, FileHasher, FileHashes
from modelhub.catalog.files.pools import LazyPool
from modelhub.core.errors import FieldViolation, InvalidArgument

_UPLOAD_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_SHA256: Final = re.compile(r"[0-9A-Fa-f]{64}")
_PART: Final = ".part"
_DONE: Final = ".done"
_TEMPORARY: Final = ".tmp"

WRITEBACK_EVERY: Final = 32 << 20
"""Each time an upload grows past a multiple of this many bytes, its part is flushed to disk in the background."""
PARALLEL_WRITE_MIN = 256 << 10
"""Chunks at least this large are written on a writer thread while being hashed; smaller ones are written inline
(the thread hand-off would cost more than the overlap saves)."""


@dataclass(frozen=True)
class UploadState:
    upload_id: str
    offset: int
    """Bytes stored so far: the next chunk starts here."""
    finished: bool = False
    """finish() ran; `offset` is then the file's size."""


@dataclass(frozen=True)
class StoredBlob:
    hashes: FileHashes
    size: int
    path: Path


def _lock(fd: int) -> None:
    """Wait for the exclusive lock of an upload's part file (a seam for the tests of lost races)."""
    fcntl.flock(fd, fcntl.LOCK_EX)


_writeback_pool = LazyPool(2, "modelhub-blob-writeback")
"""Background flushes of part files (they wait for the disk)."""
_writer_pool = LazyPool(4, "modelhub-blob-writer")
"""The writes of large chunks, which run beside their hashing (one per append in flight)."""


def _write_back(part: Path) -> None:
    """Push the part's written bytes to disk now, so that finish's fsync finds little left to do.

    Best effort: the upload may be finished or aborted meanwhile, and finish's fsync is what counts."""
    with contextlib.suppress(OSError):
        fd = os.open(part, os.O_RDONLY)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


class BlobStore:
    """Upload sessions and content-addressed blobs under `root`; files above `max_size` bytes are refused."""

    def __init__(self, root: Path, max_size: int) -> None:
        self.root = root
        self.max_size = max_size
        self._uploads = root / "uploads"
        self._blobs = root / "blobs"
        self._uploads.mkdir(parents=True, exist_ok=True)
        self._blobs.mkdir(parents=True, exist_ok=True)
        _fsync_directory(root)  # the two directories must outlive a machine crash before any file in them
        # upload id -> ((device, inode) of its part file, the hasher of that file's first hasher.size bytes)
        self._hashers: dict[str, tuple[tuple[int, int], FileHasher]] = {}

    # -- upload sessions ------------------------------------------------------------------------------

    def begin(self, upload_id: str) -> UploadState:
        """Open an upload. A retried begin (the part exists, or finish ran) returns the upload's state."""
        if self._marker(upload_id).exists():
            return self.resume(upload_id)
        try:
            fd = os.open(self._part(upload_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self.resume(upload_id)
        os.close(fd)
        return UploadState(upload_id, 0)

    def resume(self, upload_id: str) -> UploadState:
        """The upload's state: where the next chunk must start. Rebuilds the hash state if it was lost."""
        try:
            with self._locked(upload_id) as fd:
                if (hashes := self._recorded_hashes(upload_id)) is not None:
                    return UploadState(upload_id, hashes.size, finished=True)  # finish was interrupted
                size = os.fstat(fd).st_size
                self._hasher_at(upload_id, fd, size)
                return UploadState(upload_id, size)
        except UploadNotFound:
            if (hashes := self._recorded_hashes(upload_id)) is not None:
                return UploadState(upload_id, hashes.size, finished=True)
            raise

    def append(self, upload_id: str, offset: int, chunk: bytes | bytearray | memoryview) -> UploadState:
        """Store `chunk` at `offset`, which must be the upload's current size. Returns the new state.

        Refused, changing nothing: a wrong offset (UploadOffsetMismatch, with the offset to resume from),
        a file growing over max_size (FileTooLarge), a finished upload (UploadFinished).
        """
        chunk = memoryview(chunk).cast("B")
        try:
            with self._locked(upload_id) as fd:
                if self._marker(upload_id).exists():
                    raise UploadFinished(upload_id)
                return self._append_locked(upload_id, fd, offset, chunk)
        except UploadNotFound:
            if self._marker(upload_id).exists():
                raise UploadFinished(upload_id) from None
            raise

    def _append_locked(self, upload_id: str, fd: int, offset: int, chunk: memoryview) -> UploadState:
        size = os.fstat(fd).st_size
        if offset != size:
            raise UploadOffsetMismatch(upload_id, offset, size)
        if size + len(chunk) > self.max_size:
            raise FileTooLarge(upload_id, size + len(chunk), self.max_size)
        hasher = self._hasher_at(upload_id, fd, size)
        try:
            if len(chunk) < PARALLEL_WRITE_MIN:
                _pwrite_all(fd, chunk, size)
                hasher.update(chunk)
            else:
                writing = _writer_pool.get().submit(_pwrite_all, fd, chunk, size)
                try:
                    hasher.update(chunk)
                finally:
                    # Whatever happened here, the write must be over before the part is cut back, unlocked or
                    # closed (the caller closes `fd` when this returns).
                    futures.wait([writing])
                writing.result()
        except BaseException:
            # Keep the file as acknowledged, and forget a hash state that may not match it any more.
            self._hashers.pop(upload_id, None)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
        if (size + len(chunk)) // WRITEBACK_EVERY > size // WRITEBACK_EVERY:
            _writeback_pool.get().submit(_write_back, self._part(upload_id))
        return UploadState(upload_id, size + len(chunk))

    def finish(self, upload_id: str) -> StoredBlob:
        """Make the upload a stored blob and return it; retrying returns the same blob.

        A zero-byte upload is refused (EmptyFile) and stays open. Steps, each safe to crash after: fsync the
        part; record the hashes (uploads/<id>.done, written atomically); rename the part into blobs/ and fsync
        the directory. A retry after a crash redoes what is missing; a retry after success (or racing it)
        finds the part gone and the hashes recorded, and returns the blob.
        """
        try:
            with self._locked(upload_id) as fd:
                hashes = self._recorded_hashes(upload_id)
                if hashes is None:
                    size = os.fstat(fd).st_size
                    if size == 0:
                        raise EmptyFile(upload_id)
                    hashes = self._hasher_at(upload_id, fd, size).result()
                    os.fsync(fd)
                    self._record_hashes(upload_id, hashes)
                target = self.blob_path(hashes.sha256)
                self._make_directories(target.parent)
                os.replace(self._part(upload_id), target)
                _fsync_directory(target.parent)
                os.fchmod(fd, 0o444)  # blobs never change (after the rename: a retried finish reopens the part)
        except UploadNotFound:
            hashes = self._recorded_hashes(upload_id)
            if hashes is None:
                raise
            return self._stored(hashes)
        self._hashers.pop(upload_id, None)
        return StoredBlob(hashes, hashes.size, target)

    def abort(self, upload_id: str) -> None:
        """Drop the upload and its bytes (a stored blob stays: other files may share it). Idempotent."""
        part = self._part(upload_id)
        with contextlib.suppress(UploadNotFound), self._locked(upload_id):
            part.unlink()
        self._marker(upload_id).unlink(missing_ok=True)
        self._hashers.pop(upload_id, None)

    def cleanup(self, older_than: timedelta, keep: set[str]) -> list[str]:
        """Remove uploads untouched for `older_than` whose ids are not in `keep`, and leftover temporary files.

        For the orphans of crashed or abandoned clients. An upload being written to right now (its lock held)
        is skipped. Returns the ids of the uploads removed.
        """
        cutoff = time.time() - older_than.total_seconds()
        removed: set[str] = set()
        for entry in os.scandir(self._uploads):
            name = entry.name
            upload_id, kind = os.path.splitext(name)
            with contextlib.suppress(FileNotFoundError):
                if upload_id in keep or entry.stat().st_mtime >= cutoff:
                    continue
                if kind == _PART and self._remove_idle_part(Path(entry.path)):
                    removed.add(upload_id)
                elif kind == _DONE:
                    os.unlink(entry.path)
                    removed.add(upload_id)
                elif kind == _TEMPORARY:
                    os.unlink(entry.path)
        for upload_id in list(self._hashers):
            if not self._part(upload_id).exists():
                self._hashers.pop(upload_id, None)
        return sorted(removed)

    # -- blobs ----------------------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        """Where the blob with this SHA256 (hex, any case) lives, whether or not it exists."""
        if not _SHA256.fullmatch(sha256):
            raise InvalidArgument(
                f"{sha256!r} is not a SHA256: expected 64 hexadecimal digits",
                violations=[FieldViolation("sha256", "64 hexadecimal digits")],
            )
        sha256 = sha256.upper()
        return self._blobs / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file()

    def open_blob(self, sha256: str) -> BinaryIO:
        """The stored file, open for reading (seekable, for ranged downloads). The caller closes it."""
        try:
            return self.blob_path(sha256).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(sha256.upper()) from None

    def delete(self, sha256: str) -> bool:
        """Remove a blob (garbage collection); False when it did not exist.

        The caller decides that nothing references the blob, including uploads finishing now: collect only
        blobs unreferenced for longer than an upload may stay open.
        """
        try:
            self.blob_path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    # -- internals ------------------------------------------------------------------------------------

    def _part(self, upload_id: str) -> Path:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise InvalidArgument(
                f"upload id {upload_id!r} is invalid: use 1 to 128 letters, digits, '-' or '_'",
                violations=[FieldViolation("upload_id", "1 to 128 letters, digits, '-' or '_'")],
            )
        return self._uploads / f"{upload_id}{_PART}"

    def _marker(self, upload_id: str) -> Path:
        return self._part(upload_id).with_suffix(_DONE)

    @contextlib.contextmanager
    def _locked(self, upload_id: str) -> Iterator[int]:
        """The part file, open for reading and writing and exclusively locked; UploadNotFound if absent."""
        part = self._part(upload_id)
        try:
            fd = os.open(part, os.O_RDWR)
        except FileNotFoundError:
            raise UploadNotFound(upload_id) from None
        try:
            _lock(fd)
            # While this waited, the upload may have been finished (renamed into blobs/) or aborted: writing
            # through this descriptor would then change a stored blob or a dropped file.
            opened = os.fstat(fd)
            try:
                current = os.stat(part)
            except FileNotFoundError:
                raise UploadNotFound(upload_id) from None
            if (opened.st_dev, opened.st_ino) != (current.st_dev, current.st_ino):
                raise UploadNotFound(upload_id)
            yield fd
        finally:
            os.close(fd)  # releases the lock

    def _hasher_at(self, upload_id: str, fd: int, size: int) -> FileHasher:
        """The upload's hasher, fed exactly the file's first `size` bytes (reading the file when behind)."""
        stat = os.fstat(fd)
        identity = (stat.st_dev, stat.st_ino)
        known = self._hashers.get(upload_id)
        if known is None or known[0] != identity or known[1].size > size:
            known = (identity, FileHasher())
            self._hashers[upload_id] = known
        hasher = known[1]
        while hasher.size < size:
            data = os.pread(fd, min(BATCH_SIZE, size - hasher.size), hasher.size)
            if not data:
                raise OSError(f"upload {upload_id!r}: the part file ended at {hasher.size} of {size} bytes")
            hasher.update(data)
        return hasher

    def _recorded_hashes(self, upload_id: str) -> FileHashes | None:
        try:
            return FileHashes(**json.loads(self._marker(upload_id).read_text()))
        except FileNotFoundError:
            return None

    def _record_hashes(self, upload_id: str, hashes: FileHashes) -> None:
        marker = self._marker(upload_id)
        temporary = marker.with_name(marker.name + _TEMPORARY)
        with temporary.open("w") as file:
            json.dump(asdict(hashes), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, marker)
        _fsync_directory(self._uploads)

    def _stored(self, hashes: FileHashes) -> StoredBlob:
        path = self.blob_path(hashes.sha256)
        if not path.is_file():
            raise BlobNotFound(hashes.sha256)
        return StoredBlob(hashes, hashes.size, path)

    def _make_directories(self, directory: Path) -> None:
        for level in (directory.parent, directory):
            try:
                level.mkdir()
            except FileExistsError:
                continue
            _fsync_directory(level.parent)

    def _remove_idle_part(self, part: Path) -> bool:
        fd = os.open(part, os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # being written to right now
            if os.fstat(fd).st_ino != os.stat(part).st_ino:
                return False
            part.unlink()
            return True
        finally:
            os.close(fd)
