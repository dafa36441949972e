"""BlobStore: resumable uploads, content addressing, and what a crash, a retry or a race leaves behind."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import zlib
from datetime import timedelta
from pathlib import Path

import blake3
import grpc
import pytest

from modelhub.catalog.files import blobstore
from modelhub.catalog.files.blobstore import BlobStore, StoredBlob
from modelhub.catalog.files.errors import (
    BlobNotFound,
    EmptyFile,
    FileTooLarge,
    UploadFinished,
    UploadNotFound,
    UploadOffsetMismatch,
)
from modelhub.catalog.files.hashing import FileHashes
from modelhub.core.errors import InvalidArgument
from modelhub.core.grpc.errors import status_code_for

MIB = 1 << 20


def expected_hashes(data: bytes) -> FileHashes:
    sha256 = hashlib.sha256(data).hexdigest().upper()
    window = data[0x100000:0x110000]
    return FileHashes(
        sha256=sha256,
        auto_v1=hashlib.sha256(window).hexdigest()[:8].upper() if len(data) >= 2 * MIB else None,
        auto_v2=sha256[:10],
        crc32=f"{zlib.crc32(data):08X}",
        blake3=blake3.blake3(data).hexdigest().upper(),
        size=len(data),
    )


def files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


def upload(store: BlobStore, upload_id: str, data: bytes, chunk: int = 64 * 1024) -> None:
    offset = store.begin(upload_id).offset
    while offset < len(data):
        offset = store.append(upload_id, offset, data[offset : offset + chunk]).offset


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "store", max_size=8 * MIB)


def test_upload_in_chunks_then_finish_stores_a_content_addressed_read_only_blob(store: BlobStore) -> None:
    data = random.Random(1).randbytes(2 * MIB + 777)
    upload(store, "u1", data, chunk=100_003)

    blob = store.finish("u1")

    assert blob.hashes == expected_hashes(data)
    assert blob.size == len(data)
    sha = blob.hashes.sha256
    assert blob.path == store.root / "blobs" / sha[:2] / sha[2:4] / sha
    assert files_under(store.root) == [blob.path, store.root / "uploads" / "u1.done"]
    assert blob.path.stat().st_mode & 0o777 == 0o444
    with store.open_blob(sha.lower()) as file:
        assert file.read() == data
    assert store.exists(sha)


def test_begin_is_idempotent_and_resume_reports_the_offset(store: BlobStore) -> None:
    assert store.begin("u1").offset == 0
    store.append("u1", 0, b"abc")

    assert store.begin("u1").offset == 3  # a retried begin
    assert store.resume("u1").offset == 3
    assert not store.resume("u1").finished


def test_append_at_a_wrong_offset_is_refused_and_names_the_offset_to_resume_from(store: BlobStore) -> None:
    store.begin("u1")
    store.append("u1", 0, b"0123456789")

    for wrong in (0, 5, 11):  # a replayed chunk, an overlap, a gap
        with pytest.raises(UploadOffsetMismatch) as caught:
            store.append("u1", wrong, b"xx")
        assert caught.value.committed_offset == 10
        assert caught.value.metadata["committed_offset"] == "10"
        assert status_code_for(caught.value) is grpc.StatusCode.ABORTED

    store.append("u1", 10, b"!")
    assert store.finish("u1").hashes == expected_hashes(b"0123456789!")


def test_concurrent_appends_at_the_same_offset_store_the_bytes_once(store: BlobStore) -> None:
    store.begin("u1")
    outcomes: list[str] = []

    def send(chunk: bytes) -> None:
        try:
            store.append("u1", 0, chunk)
            outcomes.append("stored")
        except UploadOffsetMismatch:
            outcomes.append("refused")

    threads = [threading.Thread(target=send, args=(bytes([n]) * MIB,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["refused", "refused", "refused", "stored"]
    assert store.resume("u1").offset == MIB
    content = (store.root / "uploads" / "u1.part").read_bytes()
    assert content == content[:1] * MIB
    assert store.finish("u1").hashes == expected_hashes(content)


def test_unknown_uploads_are_not_found(store: BlobStore) -> None:
    for call in (lambda: store.resume("nope"), lambda: store.append("nope", 0, b"x"), lambda: store.finish("nope")):
        with pytest.raises(UploadNotFound) as caught:
            call()
        assert status_code_for(caught.value) is grpc.StatusCode.NOT_FOUND


def test_a_file_over_the_size_limit_is_refused_and_the_upload_stays_usable(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, max_size=1000)
    store.begin("u1")
    store.append("u1", 0, bytes(600))

    with pytest.raises(FileTooLarge) as caught:
        store.append("u1", 600, bytes(401))

    assert status_code_for(caught.value) is grpc.StatusCode.INVALID_ARGUMENT
    assert "over the limit of 1000 bytes" in caught.value.message
    assert store.resume("u1").offset == 600
    store.append("u1", 600, bytes(400))  # exactly at the limit is allowed
    assert store.finish("u1").size == 1000


def test_a_zero_byte_upload_is_refused_at_finish_and_stays_open(store: BlobStore) -> None:
    store.begin("u1")

    with pytest.raises(EmptyFile) as caught:
        store.finish("u1")

    assert "must not be empty" in caught.value.message
    assert files_under(store.root / "blobs") == []
    store.append("u1", 0, b"x")
    assert store.finish("u1").size == 1


def test_identical_content_is_stored_once(store: BlobStore) -> None:
    data = random.Random(2).randbytes(300_000)
    upload(store, "first", data)
    upload(store, "second", data)

    first, second = store.finish("first"), store.finish("second")

    assert first.path == second.path
    assert files_under(store.root / "blobs") == [first.path]
    assert not (store.root / "uploads" / "first.part").exists()
    assert not (store.root / "uploads" / "second.part").exists()
    assert first.path.read_bytes() == data


def test_a_retried_finish_returns_the_same_blob_and_the_upload_takes_no_more_bytes(store: BlobStore) -> None:
    upload(store, "u1", b"weights")
    blob = store.finish("u1")

    assert store.finish("u1") == blob
    assert BlobStore(store.root, store.max_size).finish("u1") == blob  # after a restart too
    assert store.begin("u1").finished
    assert store.resume("u1").offset == len(b"weights")
    with pytest.raises(UploadFinished) as caught:
        store.append("u1", 7, b"more")
    assert status_code_for(caught.value) is grpc.StatusCode.FAILED_PRECONDITION


def test_concurrent_finishes_all_return_the_same_blob(store: BlobStore) -> None:
    data = random.Random(5).randbytes(3 * MIB)
    upload(store, "u1", data, chunk=MIB)
    results: list[StoredBlob] = []

    threads = [threading.Thread(target=lambda: results.append(store.finish("u1"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 4  # none failed (a failing thread appends nothing)
    assert all(result == results[0] for result in results)
    assert results[0].hashes == expected_hashes(data)


def test_a_crash_before_the_rename_leaves_no_blob_and_a_retry_completes(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = random.Random(3).randbytes(500_000)
    upload(store, "u1", data)
    real_replace = os.replace

    def crash_on_rename_into_blobs(source: str | Path, target: str | Path) -> None:
        if str(source).endswith(".part"):
            raise SystemExit("killed")  # the process dies after recording the hashes, before the rename
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_on_rename_into_blobs)
    with pytest.raises(SystemExit):
        store.finish("u1")
    monkeypatch.undo()

    assert files_under(store.root / "blobs") == []
    restarted = BlobStore(store.root, store.max_size)
    assert restarted.resume("u1").finished
    with pytest.raises(UploadFinished):
        restarted.append("u1", len(data), b"late chunk")
    blob = restarted.finish("u1")
    assert blob.hashes == expected_hashes(data)
    assert blob.path.read_bytes() == data
    assert not (store.root / "uploads" / "u1.part").exists()


def test_another_instance_sharing_the_directory_sees_and_continues_the_same_upload(tmp_path: Path) -> None:
    data = random.Random(4).randbytes(3 * MIB)
    one, two = BlobStore(tmp_path, 8 * MIB), BlobStore(tmp_path, 8 * MIB)  # e.g. two worker processes
    one.begin("u1")
    one.append("u1", 0, data[: MIB + 5])
    two.append("u1", MIB + 5, data[MIB + 5 : 2 * MIB])  # two rebuilds its hash state from the file
    one.append("u1", 2 * MIB, data[2 * MIB :])  # one catches up on the bytes two wrote

    assert one.finish("u1").hashes == expected_hashes(data)


@pytest.mark.parametrize("size", [8, 3 * MIB + 5], ids=["small-chunk-inline", "large-chunk-writer-thread"])
def test_a_failed_write_changes_nothing(store: BlobStore, monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    chunk = random.Random(size).randbytes(size)
    store.begin("u1")
    store.append("u1", 0, b"abc")
    real_write = blobstore._pwrite_all

    def disk_full_half_way(fd: int, data: bytes, offset: int) -> None:
        real_write(fd, bytes(data)[: len(data) // 2], offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(blobstore, "_pwrite_all", disk_full_half_way)
    with pytest.raises(OSError, match="No space left"):
        store.append("u1", 3, chunk)
    monkeypatch.undo()

    assert store.resume("u1").offset == 3
    assert (store.root / "uploads" / "u1.part").stat().st_size == 3
    store.append("u1", 3, chunk)
    assert store.finish("u1").hashes == expected_hashes(b"abc" + chunk)


def test_a_failed_hashing_of_a_large_chunk_takes_back_its_write(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk's write runs on a writer thread while this one hashes: when hashing fails, append waits for
    the write, cuts the part back and forgets the hash state, so the upload is exactly as before the chunk."""
    data = random.Random(1).randbytes(5 * MIB)
    part = store.root / "uploads" / "u1.part"
    store.begin("u1")
    store.append("u1", 0, data[:MIB])
    real_write = blobstore._pwrite_all
    written = threading.Event()

    def write_then_tell(fd: int, chunk: memoryview, offset: int) -> None:
        real_write(fd, chunk, offset)
        written.set()

    def hashing_fails(self: object, chunk: memoryview) -> None:
        assert written.wait(10)  # the write landed: append must take it back
        raise MemoryError("hashing failed")

    monkeypatch.setattr(blobstore, "_pwrite_all", write_then_tell)
    monkeypatch.setattr(blobstore.FileHasher, "update", hashing_fails)
    with pytest.raises(MemoryError):
        store.append("u1", MIB, data[MIB:])
    monkeypatch.undo()

    assert part.stat().st_size == MIB
    assert store.resume("u1").offset == MIB
    store.append("u1", MIB, data[MIB:])
    assert store.finish("u1").hashes == expected_hashes(data)


def test_a_large_chunk_is_written_while_it_is_hashed(store: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write of a large chunk runs on another thread, at the same time as its hashing (the write below
    waits until hashing has begun: were they one after the other, it would time out)."""
    data = random.Random(2).randbytes(4 * MIB + 3)
    real_write, real_update = blobstore._pwrite_all, blobstore.FileHasher.update
    hashing = threading.Event()
    writers: list[str] = []

    def write_once_hashing_began(fd: int, chunk: memoryview, offset: int) -> None:
        writers.append(threading.current_thread().name)
        assert hashing.wait(10), "the write did not overlap the hashing"
        real_write(fd, chunk, offset)

    def update(self: blobstore.FileHasher, chunk: memoryview) -> None:
        hashing.set()
        real_update(self, chunk)

    monkeypatch.setattr(blobstore, "_pwrite_all", write_once_hashing_began)
    monkeypatch.setattr(blobstore.FileHasher, "update", update)
    store.begin("u1")
    assert store.append("u1", 0, data).offset == len(data)
    monkeypatch.undo()

    assert writers and all(name.startswith("modelhub-blob-writer") for name in writers)
    assert store.finish("u1").hashes == expected_hashes(data)


@pytest.mark.parametrize("then_begun_anew", [False, True], ids=["finished", "finished-then-begun-anew"])
def test_an_append_that_lost_the_race_to_finish_never_writes_into_the_blob(
    store: BlobStore, monkeypatch: pytest.MonkeyPatch, then_begun_anew: bool
) -> None:
    upload(store, "u1", b"complete content")
    part = store.root / "uploads" / "u1.part"
    moved = store.root / "elsewhere"
    real_lock = blobstore._lock

    def finish_wins_while_waiting(fd: int) -> None:
        os.replace(part, moved)  # what finish does while the append waits for the lock
        if then_begun_anew:
            part.touch()  # and a new upload with the same id appears at the same path
        real_lock(fd)

    monkeypatch.setattr(blobstore, "_lock", finish_wins_while_waiting)

    with pytest.raises(UploadNotFound):
        store.append("u1", len(b"complete content"), b" and more")
    assert moved.read_bytes() == b"complete content"


def test_abort_drops_the_upload_and_is_idempotent(store: BlobStore) -> None:
    upload(store, "u1", b"partial")

    store.abort("u1")
    store.abort("u1")

    assert files_under(store.root) == []
    with pytest.raises(UploadNotFound):
        store.resume("u1")


def test_abort_after_finish_keeps_the_blob(store: BlobStore) -> None:
    upload(store, "u1", b"shared content")
    blob = store.finish("u1")

    store.abort("u1")

    assert files_under(store.root) == [blob.path]


def test_cleanup_removes_stale_orphans_and_keeps_what_is_live(store: BlobStore) -> None:
    for upload_id in ("stale", "kept", "recent", "busy", "finished"):
        upload(store, upload_id, upload_id.encode())
    store.finish("finished")
    uploads = store.root / "uploads"
    (uploads / "crashed.done.tmp").write_text("{")
    an_hour_ago = time.time() - 3600
    for name in ("stale.part", "kept.part", "busy.part", "finished.done", "crashed.done.tmp"):
        os.utime(uploads / name, (an_hour_ago, an_hour_ago))

    busy = os.open(uploads / "busy.part", os.O_RDWR)
    try:
        fcntl.flock(busy, fcntl.LOCK_EX)  # someone is appending right now
        removed = store.cleanup(older_than=timedelta(minutes=30), keep={"kept"})
    finally:
        os.close(busy)

    assert removed == ["finished", "stale"]
    assert sorted(path.name for path in uploads.iterdir()) == ["busy.part", "kept.part", "recent.part"]
    assert len(files_under(store.root / "blobs")) == 1  # cleanup never touches blobs
    assert store.resume("kept").offset == len(b"kept")


def test_blob_lookups(store: BlobStore) -> None:
    upload(store, "u1", b"abc")
    sha = store.finish("u1").hashes.sha256
    absent = "0" * 64

    assert store.exists(sha)
    assert not store.exists(absent)
    with pytest.raises(BlobNotFound):
        store.open_blob(absent)
    assert store.delete(sha)
    assert not store.delete(sha)
    assert not store.exists(sha)


@pytest.mark.parametrize("upload_id", ["", "../escape", "a/b", "x" * 129, "-leading-dash", "dots.part"])
def test_upload_ids_that_could_escape_the_directory_are_refused(store: BlobStore, upload_id: str) -> None:
    with pytest.raises(InvalidArgument, match="upload id"):
        store.begin(upload_id)


@pytest.mark.parametrize("sha256", ["", "abc", "../" + "0" * 61, "G" * 64])
def test_malformed_sha256_is_refused(store: BlobStore, sha256: str) -> None:
    with pytest.raises(InvalidArgument, match="not a SHA256"):
        store.exists(sha256)


# -- kill -9 in the middle of an upload ------------------------------------------------------------------

TOTAL = 4 * MIB
CHUNK = 64 * 1024
SEED = 20260101

CHILD = """
import random, sys, time
from pathlib import Path
from modelhub.catalog.files.blobstore import BlobStore, StoredBlob

root, upload_id, total, chunk, seed = Path(sys.argv[1]), sys.argv[2], *map(int, sys.argv[3:6])
data = random.Random(seed).randbytes(total)
store = BlobStore(root, max_size=total)
offset = store.begin(upload_id).offset
while offset < total - chunk:  # never the last chunk, and never finish: the parent kills it first
    offset = store.append(upload_id, offset, data[offset : offset + chunk]).offset
    print(offset, flush=True)
    time.sleep(0.002)
time.sleep(3600)
"""


def test_kill_9_mid_upload_leaves_no_blob_and_a_resumable_part(tmp_path: Path) -> None:
    root = tmp_path / "store"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), "u1", str(TOTAL), str(CHUNK), str(SEED)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acknowledged = 0
    try:
        while acknowledged < 2 * MIB + CHUNK:  # past the AutoV1 window
            line = child.stdout.readline()
            assert line, "the child exited before it was killed"
            acknowledged = int(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    assert files_under(root / "blobs") == []  # nothing half-written is ever visible
    restarted = BlobStore(root, max_size=TOTAL)  # a new process: the hash state is rebuilt from the part
    offset = restarted.resume("u1").offset
    assert acknowledged <= offset < TOTAL

    data = random.Random(SEED).randbytes(TOTAL)
    assert (root / "uploads" / "u1.part").read_bytes() == data[:offset]
    while offset < TOTAL:
        offset = restarted.append("u1", offset, data[offset : offset + 1_000_000]).offset
    blob = restarted.finish("u1")

    assert blob.hashes == expected_hashes(data)
    assert blob.path.read_bytes() == data


def test_cleanup_removes_the_orphan_of_a_killed_upload(tmp_path: Path) -> None:
    root = tmp_path / "store"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), "orphan", str(MIB), str(CHUNK), str(SEED)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline()  # it has written a chunk
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    part = root / "uploads" / "orphan.part"
    os.utime(part, (time.time() - 7200, time.time() - 7200))

    assert BlobStore(root, MIB).cleanup(older_than=timedelta(hours=1), keep=set()) == ["orphan"]
    assert not part.exists()
