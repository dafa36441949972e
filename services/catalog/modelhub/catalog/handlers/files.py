"""Use cases of files: resumable uploads, downloads with counting, lookup by hash, and the background jobs
(pickle scans, download-count events, cleanup of abandoned uploads and unreferenced blobs).

Write paths, and what a crash, a retry or a race does to each (docs/catalog.md, "Files"):

- StartUpload: the empty part file is created first, then the session row commits. A crash in between
  leaves a part without a session, removed by the cleanup job; a retried StartUpload with the same request
  id returns the session the first attempt committed (the row's unique (owner, request id) key decides a
  race; the loser drops its part).
- UploadFile: every chunk is appended at exactly the stored offset (the blob store refuses any other), so a
  byte is never written twice or skipped. A dropped stream or a crash keeps what was appended; GetUpload
  tells the offset to resume from, and the hashes are rebuilt from the part file if the process restarted.
- Completion (the declared size reached): blob store finish (fsync, hashes recorded, atomic rename into the
  content-addressed store), the blob's SHA256 noted on the session, the bytes inspected, the file added to
  its version through the model aggregate (file id = upload id), the session marked Completed. Each step is
  idempotent: a retry after a crash anywhere redoes what is missing (finish returns the same blob, adding the
  same file again is a no-op), and a file is never half-visible: it is in the version's read model (and
  downloadable once clean) only after the model's transaction commits. A file the inspection refuses is never
  added; its session is Rejected and its blob is collected later. Completion runs shielded from the
  client's cancellation, so a client that drops the connection after its last chunk does not interrupt it.
- Download counting: one upsert per counted download, committed before the first byte is sent (a crash
  loses no counted download, and nothing is counted twice: the count is not retried, a client retry is a
  new download; a signed-in user's claim of the day is in the same transaction, so a retry of theirs the same
  day counts nothing more). The flusher appends catalog.DownloadsCounted for each closed window and marks the window
  emitted in one transaction, so each window is reported exactly once; a download counted into a window
  that was emitted meanwhile goes into the next window.
- Scanner: scans files whose scan result is Pending and records the verdict through the aggregate. A crash
  mid-scan leaves the file Pending and it is scanned again; two scanners may scan one file twice, and the
  second identical verdict records nothing.
- AutoV3: hashes SafeTensor files that have no AutoV3 yet (after the header, from the stored blob: off the
  upload's path) and records it through the aggregate (catalog.ModelFileHashesAdded). A crash before the
  commit leaves the file pending and it is hashed again (same bytes, same value); two jobs may hash one file
  twice, and the second records nothing. Publication never waits for it.
- Cleanup: expires sessions idle longer than the session lifetime (and deletes their bytes), removes part
  files no session owns, deletes download claims older than yesterday, and deletes blobs that no file and no open
  session references, under the blob lock that completions hold (adapters/blob_collection.py) so that it
  never deletes bytes a completion is about to reference.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import BinaryIO, Final
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from uuid_utils.compat import uuid7

from modelhub.catalog.adapters import downloads, hot_reads, queries, uploads
from modelhub.catalog.adapters.blob_collection import FILE_BLOBS_LOCK, BlobCollector
from modelhub.catalog.adapters.blobs import inspect_upload
from modelhub.catalog.adapters.events import timestamp
from modelhub.catalog.adapters.repository import ModelRepository
from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.downloads import HashQuery, counts_as_download, download_day, window_of
from modelhub.catalog.domain.events import FileHash, ModelFile
from modelhub.catalog.domain.model import MAX_FILES_PER_VERSION, Model, Version, can_see, version_not_found
from modelhub.catalog.domain.uploads import UploadRequest, UploadSession, UploadStatus, upload_not_found
from modelhub.catalog.domain.vocabulary import HashKind, ModelStatus, ScanResult, VersionStatus
from modelhub.catalog.files.blobstore import BlobStore
from modelhub.catalog.files.errors import InvalidFile, UploadNotFound, UploadOffsetMismatch
from modelhub.catalog.files.hashing import auto_v3_of
from modelhub.catalog.files.inspection import inspect_blob
from modelhub.catalog.handlers import Clock, utcnow
from modelhub.catalog.handlers.models import ModelCatalog
from modelhub.core import locks
from modelhub.core.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StreamVersionConflict,
)
from modelhub.core.events.model import NewEvent
from modelhub.core.events.store import EventStore
from modelhub.events.v1.catalog_pb2 import CatalogDownloadsCounted

log = logging.getLogger(__name__)

FLUSH_LOCK: Final = "catalog:downloads-flush"
MAX_WINDOW_HOPS: Final = 100
"""A download counted into an emitted window moves on to the next one, at most this many times."""
SCAN_BATCH: Final = 20
AUTO_V3_BATCH: Final = 20
FLUSH_BATCH: Final = 500
EXPIRE_BATCH: Final = 1000


class _NotCounted(Exception):
    """Every window a download could go into was emitted already: its transaction rolls back."""


def downloads_stream(model_version_id: str) -> str:
    """The stream of a version's catalog.DownloadsCounted events (windows in order, never overlapping)."""
    return f"downloads-{model_version_id}"


@dataclass(frozen=True)
class UploadView:
    """A session as its owner sees it: where it resumes, and the file it became."""

    session: UploadSession
    offset: int
    file: downloads.FileRecord | None = None


@dataclass
class Download:
    """An authorized download: the file, the range to send, and the open blob (the caller closes it)."""

    record: downloads.FileRecord
    offset: int
    length: int
    handle: BinaryIO

    async def chunks(self, size: int) -> AsyncIterator[bytes]:
        """The range's bytes in pieces of at most `size`, read in a thread."""
        await asyncio.to_thread(self.handle.seek, self.offset)
        left = self.length
        while left > 0:
            data = await asyncio.to_thread(self.handle.read, min(size, left))
            if not data:
                raise OSError(f"stored file {self.record.file.blob_sha256} ended {left} bytes early")
            left -= len(data)
            yield data

    def close(self) -> None:
        self.handle.close()


def file_not_found(file_id: str) -> NotFound:
    return NotFound(f"file {file_id} not found", reason="FILE_NOT_FOUND", metadata={"file_id": file_id})


class FileCatalog:
    """Uploads, downloads, hash lookups and the file jobs, over the catalog's database and a blob store."""

    def __init__(
        self,
        engine: AsyncEngine,
        store: EventStore,
        models: ModelCatalog,
        blobs: BlobStore,
        *,
        clock: Clock = utcnow,
        session_ttl: timedelta = timedelta(hours=24),
        download_window_seconds: int = 300,
        hot_reads: AsyncEngine | None = None,
    ) -> None:
        self.engine = engine
        # Single-statement reads run outside a transaction: no BEGIN and ROLLBACK round trips (a statement
        # sees one snapshot either way).
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.hot_reads = hot_reads or self.reads
        """The lookup by hash's pool (adapters/hot_reads.py; `reads` when none is given)."""
        self.store = store
        self.models = models
        self.blobs = blobs
        self.clock = clock
        self.session_ttl = session_ttl
        self.download_window_seconds = download_window_seconds
        self.collector = BlobCollector(engine, blobs, FILE_BLOBS_LOCK, uploads.referenced_blobs)
        """The blob collection, and its lock that completions hold (it also bounds how many run at once)."""
        self._auto_v3_skipped: set[str] = set()
        """Files the AutoV3 job failed on (see hash_auto_v3)."""

    # -- upload sessions ------------------------------------------------------------------------------------

    async def start_upload(self, actor: Actor, request: UploadRequest) -> UploadView:
        """Open a session for one file of a version the caller owns (see the module doc for retries)."""
        if request.request_id:
            existing = await self._by_request(actor, request)
            if existing is not None:
                return await self.view(existing)
        async with self.engine.connect() as conn:
            model_id = await ModelRepository(conn, self.store).model_of_version(request.model_version_id)
            model = await queries.load_model(conn, model_id)
        if model is None:
            raise version_not_found(request.model_version_id)
        version = self._upload_target(model, actor, request.model_version_id)
        if any(f.name == request.file_name for f in version.files.values()):
            raise AlreadyExists(
                f"version {version.id} has a file named {request.file_name!r} already: remove it or choose another "
                "name",
                reason="FILE_NAME_TAKEN",
            )
        if len(version.files) >= MAX_FILES_PER_VERSION:
            raise FailedPrecondition(
                f"version {version.id} has {MAX_FILES_PER_VERSION} files, the most a version may have",
                reason="TOO_MANY_FILES",
            )
        upload_id = str(uuid7())
        await asyncio.to_thread(self.blobs.begin, upload_id)
        async with self.engine.begin() as conn:
            session = await uploads.insert(conn, upload_id, actor.id, model.id, request, self.clock())
        if session is None:  # a concurrent attempt with the same request id committed first
            await asyncio.to_thread(self.blobs.abort, upload_id)
            existing = await self._by_request(actor, request)
            if existing is None:  # pragma: no cover - the row that clashed is committed
                raise AssertionError(f"upload request {request.request_id!r} clashed but is not found")
            return await self.view(existing)
        return UploadView(session, 0)

    @staticmethod
    def _upload_target(model: Model, actor: Actor, version_id: str) -> Version:
        """The version to upload to: NotFound unless the caller sees it, PermissionDenied unless it is the
        model's owner (moderators moderate files; they do not upload them), FailedPrecondition if deleted."""
        if not model.visible_to(actor):
            raise version_not_found(version_id)
        version = model.visible_version(version_id, actor)
        if actor.id != model.owner_id:
            raise PermissionDenied(
                f"only the owner of model {model.id} uploads its files",
                reason="NOT_MODEL_OWNER",
                metadata={"model_id": model.id},
            )
        if model.status == ModelStatus.DELETED:
            raise FailedPrecondition(f"model {model.id} is deleted", reason="MODEL_DELETED")
        if version.status == VersionStatus.DELETED:
            raise FailedPrecondition(f"model version {version_id} is deleted", reason="VERSION_DELETED")
        return version

    async def _by_request(self, actor: Actor, request: UploadRequest) -> UploadSession | None:
        async with self.reads.connect() as conn:
            existing = await uploads.by_request(conn, actor.id, request.request_id)
        if existing is not None and not existing.same_request(request):
            raise AlreadyExists(
                f"request id {request.request_id!r} was used for another upload ({existing.upload_id}, "
                f"{existing.file_name!r}): use a new request id for a new upload",
                reason="REQUEST_ID_REUSED",
                metadata={"upload_id": existing.upload_id},
            )
        return existing

    async def session_of(self, actor: Actor, upload_id: str) -> UploadSession:
        """The caller's session; NotFound for an unknown id and for another user's session alike."""
        async with self.reads.connect() as conn:
            session = await uploads.get(conn, upload_id)
        if session is None or session.owner_id != actor.id:
            raise upload_not_found(upload_id)
        return session

    async def view(self, session: UploadSession) -> UploadView:
        """The session with its offset (from the stored bytes) and, once completed, its file."""
        if session.status == UploadStatus.OPEN:
            try:
                state = await asyncio.to_thread(self.blobs.resume, session.upload_id)
                offset = state.offset
            except UploadNotFound:
                offset = 0  # aborted or expired a moment ago; the row says so on the next read
            return UploadView(session, offset)
        if session.status == UploadStatus.COMPLETED:
            async with self.reads.connect() as conn:
                record = await downloads.file_by_id(conn, session.upload_id)
            return UploadView(session, session.size_bytes, record)
        offset = session.size_bytes if session.status == UploadStatus.REJECTED else 0
        return UploadView(session, offset)

    async def get_upload(self, actor: Actor, upload_id: str) -> UploadView:
        return await self.view(await self.session_of(actor, upload_id))

    async def resume(self, actor: Actor, upload_id: str, offset: int) -> tuple[UploadSession, int]:
        """Open an UploadFile stream: the caller's open session, touched (it is active), and its offset,
        which must be `offset` (UploadOffsetMismatch, ABORTED, names the one to resume from)."""
        session = await self.session_of(actor, upload_id)
        if session.status != UploadStatus.OPEN:
            raise FailedPrecondition(
                f"upload {upload_id} is {session.status.value.lower()} and takes no more bytes: see GetUpload, or "
                "start a new upload",
                reason="UPLOAD_ENDED",
                metadata={"upload_id": upload_id, "state": session.status.value},
            )
        async with self.engine.begin() as conn:
            touched = await uploads.touch(conn, upload_id, self.clock())
        if touched is None:
            return await self.resume(actor, upload_id, offset)  # it ended meanwhile: report how
        state = await asyncio.to_thread(self.blobs.begin, upload_id)
        if offset != state.offset:
            raise UploadOffsetMismatch(upload_id, offset, state.offset)
        return touched, state.offset

    async def append(self, session: UploadSession, offset: int, chunk: bytes | memoryview) -> int:
        """Store `chunk` at `offset`; returns the new offset. Nothing is stored past the declared size."""
        end = offset + len(chunk)
        if end > session.size_bytes:
            raise InvalidArgument(
                f"upload {session.upload_id} declared {session.size_bytes} bytes; this chunk would bring it to {end}: "
                "send exactly the declared size (start a new upload for a different file)",
                reason="UPLOAD_SIZE_EXCEEDED",
                metadata={"upload_id": session.upload_id, "size_bytes": str(session.size_bytes)},
            )
        state = await asyncio.to_thread(self.blobs.append, session.upload_id, offset, chunk)
        return state.offset

    async def complete(self, session: UploadSession) -> UploadView:
        """Turn a session whose bytes all arrived into a file of its version (idempotent; see the module doc).
        Raises the refusal (InvalidFile, or the aggregate's: version deleted, name taken, ...) after
        recording it on the session."""
        upload_id = session.upload_id
        async with self.collector.writing():
            stored = await asyncio.to_thread(self.blobs.finish, upload_id)
            async with self.engine.begin() as conn:
                await uploads.record_blob(conn, upload_id, stored.hashes.sha256)
            try:
                inspected = await asyncio.to_thread(inspect_upload, stored.path, stored.size, session.file_name)
            except InvalidFile as error:
                await self._end(session, UploadStatus.REJECTED, error)
                raise
            by_kind = stored.hashes.by_kind()
            file = ModelFile(
                file_id=upload_id,
                name=session.file_name,
                type=session.file_type,
                format=inspected.format.value,
                size_bytes=stored.size,
                blob_sha256=stored.hashes.sha256,
                hashes=tuple(FileHash(kind.value, by_kind[kind]) for kind in HashKind if kind in by_kind),
                scan_result=inspected.scan_result.value,
                scan_message=inspected.scan_message,
                precision=inspected.precision,
                size_kind=session.size_kind,
                safetensors_metadata=inspected.safetensors_metadata or {},
                tensor_count=inspected.tensor_count,
            )
            async with self.engine.connect() as conn:
                added = await downloads.file_by_id(conn, upload_id) is not None
            if not added:  # else a completion before a crash added it (it may have been scanned since)
                try:
                    await self.models.add_file(Actor(session.owner_id), session.model_version_id, file)
                except (NotFound, PermissionDenied, FailedPrecondition, AlreadyExists) as error:
                    await self._end(session, UploadStatus.REJECTED, error)
                    raise
            await self._end(session, UploadStatus.COMPLETED)
        async with self.engine.connect() as conn:
            current = await uploads.get(conn, upload_id)
        return await self.view(current or session)

    async def _end(self, session: UploadSession, status: UploadStatus, error: DomainError | None = None) -> None:
        async with self.engine.begin() as conn:
            if status == UploadStatus.COMPLETED:
                # The file is in its version now, whatever else happened to the session meanwhile (an abort
                # racing with the last chunk): the session says what is true.
                await conn.execute(
                    text("UPDATE uploads SET state = 'Completed', updated_at = :now WHERE upload_id = :u"),
                    {"u": session.upload_id, "now": self.clock()},
                )
                return
            await uploads.end(
                conn,
                session.upload_id,
                status,
                self.clock(),
                reason=error.reason if error else "",
                message=error.message if error else "",
            )

    async def abort_upload(self, actor: Actor, upload_id: str) -> UploadView:
        """Drop an open session and its bytes (a stored blob stays for the collector). Idempotent; a session
        that ended otherwise is returned as it is."""
        session = await self.session_of(actor, upload_id)
        if session.status == UploadStatus.OPEN:
            async with self.engine.begin() as conn:
                ended = await uploads.end(conn, upload_id, UploadStatus.ABORTED, self.clock())
            session = ended or await self.session_of(actor, upload_id)
        if session.status == UploadStatus.ABORTED:
            await asyncio.to_thread(self.blobs.abort, upload_id)
        return await self.view(session)

    async def remove_file(self, actor: Actor, file_id: str, expected_version: int) -> Model:
        """Remove a file from its version (the owner, a moderator or an admin; see Model.remove_file). Its blob
        is collected by the cleanup job once nothing references it."""
        async with self.reads.connect() as conn:
            record = await downloads.file_by_id(conn, file_id)
        if record is None or not can_see(actor, record.owner_id, record.model_status, record.version_status):
            raise file_not_found(file_id)
        return await self.models.remove_file(actor, record.model_version_id, file_id, expected_version)

    # -- downloads and lookups ------------------------------------------------------------------------------

    async def open_download(self, actor: Actor | None, file_id: str, offset: int, length: int) -> Download:
        """Authorize a download of a clean file the caller may see, count it (see domain/downloads.py), and
        open its bytes."""
        async with self.reads.connect() as conn:
            record = await downloads.file_by_id(conn, file_id)
        if record is None or not can_see(actor, record.owner_id, record.model_status, record.version_status):
            raise file_not_found(file_id)
        file = record.file
        if file.scan_result != ScanResult.SUCCESS:
            detail = f": {file.scan_message}" if file.scan_message else ""
            raise FailedPrecondition(
                f"file {file_id} is not downloadable: its scan result is {file.scan_result}{detail}",
                reason="FILE_NOT_CLEAN",
                metadata={"file_id": file_id, "scan_result": file.scan_result},
            )
        violations = []
        if not 0 <= offset <= file.size_bytes:
            violations.append(
                FieldViolation("offset", f"must be 0 to the file's size, {file.size_bytes}; got {offset}")
            )
        if length < 0:
            violations.append(FieldViolation("length", f"must be 0 (to the end) or positive; got {length}"))
        if violations:
            raise InvalidArgument(
                "invalid download range: check " + ", ".join(v.field for v in violations), violations=violations
            )
        span = file.size_bytes - offset if length == 0 else min(length, file.size_bytes - offset)
        handle = await asyncio.to_thread(self.blobs.open_blob, file.blob_sha256)
        try:
            if counts_as_download(offset, length, file.size_bytes, actor.id if actor else None, record.owner_id):
                await self._count(record, actor.id if actor else None)
        except BaseException:
            handle.close()
            raise
        return Download(record, offset, span, handle)

    async def _count(self, record: downloads.FileRecord, downloader: str | None) -> None:
        """Count one download of the record's version, unless `downloader` (signed in) had one counted today."""
        now = self.clock()
        window = window_of(now, self.download_window_seconds)
        try:
            async with self.engine.begin() as conn:
                if downloader is not None and not await downloads.claim_download(
                    conn, record.model_version_id, downloader, download_day(now)
                ):
                    return
                for _ in range(MAX_WINDOW_HOPS):
                    if await downloads.count_download(
                        conn, record.model_version_id, record.model_id, record.owner_id, window
                    ):
                        return
                    window = window.next()
                raise _NotCounted  # rolls the claim back with the count that did not happen
        except _NotCounted:
            log.error(
                "download of version %s not counted: %d windows ahead are emitted",
                record.model_version_id,
                MAX_WINDOW_HOPS,
            )

    async def file_by_hash(self, actor: Actor | None, query: HashQuery) -> downloads.FileRecord:
        """The file a hash designates among those the caller may see (one indexed query, on the hot reads' pool)."""
        viewer, privileged = (actor.id, actor.privileged) if actor else ("", False)
        record = await hot_reads.read(
            self.hot_reads, self.reads, lambda conn: downloads.file_by_hash(conn, query, viewer, privileged)
        )
        if record is None:
            kind = f"{query.kind.value} " if query.kind else ""
            raise NotFound(
                f"no file with {kind}hash {query.value}", reason="FILE_NOT_FOUND", metadata={"hash": query.value}
            )
        return record

    # -- background jobs ------------------------------------------------------------------------------------

    async def scan_pending(self, limit: int = SCAN_BATCH) -> int:
        """Scan up to `limit` files waiting for their pickle scan and record the verdicts; returns how many."""
        async with self.engine.connect() as conn:
            pending = await downloads.pending_scans(conn, limit)
        for version_id, file_id, sha256, size in pending:
            try:
                inspection = await asyncio.to_thread(inspect_blob, self.blobs.blob_path(sha256), size)
                result, message = inspection.scan.result, inspection.scan.message
            except InvalidFile as error:
                result, message = ScanResult.ERROR, error.message
            except FileNotFoundError:
                result, message = ScanResult.ERROR, "the stored file is missing: remove the file and upload it again"
            except Exception as error:  # a scanner bug on hostile bytes must not block the queue behind this file
                log.exception("scan of file %s failed", file_id)
                result, message = ScanResult.ERROR, f"the file could not be scanned ({type(error).__name__})"
            await self.models.record_scan(version_id, file_id, result, message)
            log.info("file %s scanned: %s %s", file_id, result.value, message)
        return len(pending)

    async def hash_auto_v3(self, limit: int = AUTO_V3_BATCH) -> int:
        """Compute and record the AutoV3 of up to `limit` SafeTensor files that lack one; returns how many were
        handled. A file whose AutoV3 cannot be computed or recorded (its blob is missing, its bytes changed) is
        logged and skipped until the process restarts, so it never blocks the files behind it."""
        async with self.engine.connect() as conn:
            pending = await downloads.pending_auto_v3(conn, limit, sorted(self._auto_v3_skipped))
        for version_id, file_id, sha256 in pending:
            try:
                value = await asyncio.to_thread(auto_v3_of, self.blobs.blob_path(sha256))
                await self.models.add_file_hashes(version_id, file_id, (FileHash(HashKind.AUTO_V3.value, value),))
            except StreamVersionConflict:
                raise  # busy model: the next round tries again
            except (OSError, DomainError) as error:
                log.error("AutoV3 of file %s not recorded, skipped until restart: %s", file_id, error)
                self._auto_v3_skipped.add(file_id)
        return len(pending)

    async def flush_download_counts(self, limit: int = FLUSH_BATCH) -> int:
        """Emit catalog.DownloadsCounted for up to `limit` closed windows; returns how many were emitted.

        One transaction: the windows' rows are locked, their events appended to each version's downloads
        stream, and the rows marked with the event ids. A crash before the commit emits nothing (the next
        round does it all); after it, the rows are marked and never emitted again. Flushers in several
        processes take turns (an advisory lock; a busy flusher makes the others skip the round)."""
        now = self.clock()
        async with self.engine.begin() as conn:
            if not await locks.try_lock(conn, FLUSH_LOCK):
                return 0
            windows = await downloads.closed_windows(conn, now, limit)
            emitted: list[tuple[downloads.ClosedWindow, UUID]] = []
            for version_id, group in itertools.groupby(windows, key=lambda w: w.model_version_id):
                closed = list(group)
                stream = downloads_stream(version_id)
                recorded = await self.store.append(
                    conn,
                    stream,
                    [
                        NewEvent(
                            CatalogDownloadsCounted(
                                model_id=w.model_id,
                                model_version_id=w.model_version_id,
                                creator_user_id=w.creator_user_id,
                                count=w.count,
                                window_start=timestamp(w.window_start),
                                window_end=timestamp(w.window_end),
                            )
                        )
                        for w in closed
                    ],
                    expected_version=await self.store.stream_version(conn, stream),
                )
                emitted.extend(zip(closed, (r.event_id for r in recorded), strict=True))
            if emitted:
                await downloads.mark_emitted(conn, emitted)
        return len(emitted)

    async def clean_up(self, *, older_than: timedelta | None = None) -> int:
        """Expire idle sessions (deleting their bytes), remove part files no open session owns, and collect
        unreferenced blobs, all idle for `older_than` (default: the session lifetime); prune the download claims
        of days before yesterday (a replica whose clock lags may still count yesterday). Returns the number of
        sessions expired when a batch was full (so the job runs again at once), else 0."""
        ttl = self.session_ttl if older_than is None else older_than
        async with self.engine.begin() as conn:
            expired = await uploads.expire_idle(conn, self.clock() - ttl, EXPIRE_BATCH)
        for upload_id in expired:
            await asyncio.to_thread(self.blobs.abort, upload_id)
        async with self.engine.connect() as conn:
            keep = await uploads.open_ids(conn)
        removed = await asyncio.to_thread(self.blobs.cleanup, ttl, keep)
        collected = await self.collect_blobs(ttl)
        async with self.engine.begin() as conn:
            pruned = await downloads.prune_claims(conn, download_day(self.clock()) - timedelta(days=1))
        if expired or removed or collected or pruned:
            log.info(
                "cleanup: %d sessions expired, %d parts removed, %d blobs collected, %d past download claims pruned",
                len(expired),
                len(removed),
                len(collected),
                pruned,
            )
        return len(expired) if len(expired) == EXPIRE_BATCH else 0

    async def collect_blobs(self, older_than: timedelta) -> list[str]:
        """Delete stored blobs unmodified for `older_than` that no file and no open session references.

        The age matters for one case only: a completion that crashed after storing its blob and before
        noting it on its session; its retry finds the blob as long as the session lives."""
        return await self.collector.collect(older_than)
