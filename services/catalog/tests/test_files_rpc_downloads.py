"""Download counting over a real server and database: what counts (a signed-in user's downloads of a version
once a day), aggregation per version and window, catalog.DownloadsCounted exactly once per closed window (also
with racing flushers and late downloads), and the events published to JetStream once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import grpc
import pytest
from nats.errors import TimeoutError as NatsTimeout
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.catalog.adapters.events import make_registry
from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.handlers import files as files_module
from modelhub.catalog.handlers.files import FileCatalog, downloads_stream
from modelhub.catalog.v1.files_pb2_grpc import FileServiceStub
from modelhub.core.events.relay import OutboxRelay
from modelhub.core.nats import connect, events_stream_name, events_subject
from modelhub.events.v1 import catalog_pb2, envelope_pb2

from .conftest import FakeClock, auth
from .file_helpers import ALICE_MD, BOB_MD, download, failure, safetensors_bytes, upload
from .model_helpers import ALICE, fields, version

WINDOW = 300  # the default download_window_seconds


@pytest.fixture
async def public_file(catalog: Catalog, files_stub: FileServiceStub) -> tuple[str, str, str]:
    """(model id, version id, file id) of a published model of alice's with one clean file."""
    model = await catalog.models.create_model(ALICE, fields())
    model, version_id = await catalog.models.create_version(ALICE, model.id, model.version, version())
    done = await upload(files_stub, version_id, safetensors_bytes())
    model = await catalog.models.get_model(ALICE, model.id)
    await catalog.models.publish_model(ALICE, model.id, model.version)
    return model.id, version_id, done.file.file_id


async def counts(engine: AsyncEngine) -> list[tuple[datetime, int, bool]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT window_start, count, event_id IS NOT NULL FROM download_counts ORDER BY window_start")
        )
        return [(r[0], r[1], r[2]) for r in result]


async def emitted(catalog: Catalog, engine: AsyncEngine, version_id: str) -> list[catalog_pb2.CatalogDownloadsCounted]:
    async with engine.connect() as conn:
        records = await catalog.store.read_stream(conn, downloads_stream(version_id))
    payloads = [catalog.store.registry.decode(r.event_type, r.schema_version, r.payload) for r in records]
    assert all(isinstance(p, catalog_pb2.CatalogDownloadsCounted) for p in payloads)
    return payloads  # type: ignore[return-value]


async def test_whole_downloads_by_others_count_and_a_closed_window_is_emitted_once(
    files_stub: FileServiceStub,
    files: FileCatalog,
    catalog: Catalog,
    engine: AsyncEngine,
    clock: FakeClock,
    public_file: tuple[str, str, str],
    settings: CatalogSettings,
) -> None:
    assert settings.download_window_seconds == WINDOW
    model_id, version_id, file_id = public_file
    await download(files_stub, file_id, metadata=BOB_MD)  # counts
    await download(files_stub, file_id)  # anonymous: counts
    await download(files_stub, file_id, offset=10, metadata=BOB_MD)  # a resume: the same download going on
    await download(files_stub, file_id, length=8, metadata=BOB_MD)  # a peek at the header
    await download(files_stub, file_id, metadata=ALICE_MD)  # the owner's own: never counted
    await asyncio.gather(*(download(files_stub, file_id, metadata=auth(f"user-{i}")) for i in range(10)))
    [(window_start, count, sent)] = await counts(engine)
    assert (count, sent) == (12, False)
    assert window_start.timestamp() % WINDOW == 0 and window_start <= clock.now

    assert await files.flush_download_counts() == 0  # the window is still open
    clock.advance(seconds=WINDOW)
    first, second = await asyncio.gather(files.flush_download_counts(), files.flush_download_counts())
    assert sorted((first, second)) == [0, 1]
    assert await files.flush_download_counts() == 0
    [event] = await emitted(catalog, engine, version_id)
    assert (event.model_id, event.model_version_id, event.creator_user_id, event.count) == (
        model_id,
        version_id,
        "alice",
        12,
    )
    assert event.window_start.ToDatetime().timestamp() == window_start.timestamp()
    assert event.window_end.ToSeconds() - event.window_start.ToSeconds() == WINDOW


async def test_a_signed_in_users_downloads_of_a_version_count_once_a_day(
    files_stub: FileServiceStub,
    files: FileCatalog,
    engine: AsyncEngine,
    clock: FakeClock,
    public_file: tuple[str, str, str],
) -> None:
    """A download started over, or fetched again by a script, is not another downloader: the counts rank models
    (Most Downloaded) and pay creators. Anonymous downloads cannot be told apart and each counts."""
    _, _, file_id = public_file

    async def counted() -> int:
        return sum(count for _, count, _ in await counts(engine))

    await asyncio.gather(*(download(files_stub, file_id, metadata=BOB_MD) for _ in range(3)))
    await download(files_stub, file_id, metadata=BOB_MD)
    assert await counted() == 1
    await download(files_stub, file_id, metadata=auth("carol"))
    await download(files_stub, file_id)
    await download(files_stub, file_id)
    assert await counted() == 4

    clock.advance(days=1)
    await download(files_stub, file_id, metadata=BOB_MD)
    assert await counted() == 5, "a new day, a new count"
    async with engine.connect() as conn:
        claims = await conn.execute(text("SELECT user_id, day FROM download_claims ORDER BY day, user_id"))
        assert [(user, day.isoformat()) for user, day in claims] == [
            ("bob", "2026-01-01"),
            ("carol", "2026-01-01"),
            ("bob", "2026-01-02"),
        ]
    await files.clean_up()
    async with engine.connect() as conn:
        left = await conn.execute(text("SELECT user_id, day FROM download_claims"))
        assert [(user, day.isoformat()) for user, day in left] == [
            ("bob", "2026-01-01"),
            ("carol", "2026-01-01"),
            ("bob", "2026-01-02"),
        ], "yesterday's are kept: a replica's clock may lag"
    clock.advance(days=1)
    await files.clean_up()
    async with engine.connect() as conn:
        left = await conn.execute(text("SELECT user_id, day FROM download_claims ORDER BY user_id"))
        assert [(user, day.isoformat()) for user, day in left] == [("bob", "2026-01-02")], "older days are pruned"


async def test_a_download_dated_in_an_emitted_window_counts_in_the_next_one(
    files_stub: FileServiceStub,
    files: FileCatalog,
    catalog: Catalog,
    engine: AsyncEngine,
    clock: FakeClock,
    public_file: tuple[str, str, str],
) -> None:
    """A replica whose clock is behind counts into a window another replica emitted already: the download
    goes into the following window instead of being lost or changing what was reported."""
    _, version_id, file_id = public_file
    await download(files_stub, file_id, metadata=BOB_MD)
    clock.advance(seconds=WINDOW)
    assert await files.flush_download_counts() == 1
    clock.advance(seconds=-WINDOW)  # the lagging clock
    await download(files_stub, file_id, metadata=auth("carol"))
    rows = await counts(engine)
    assert [(count, sent) for _, count, sent in rows] == [(1, True), (1, False)]
    assert (rows[1][0] - rows[0][0]) == timedelta(seconds=WINDOW)
    clock.advance(seconds=2 * WINDOW)
    assert await files.flush_download_counts() == 1
    assert [e.count for e in await emitted(catalog, engine, version_id)] == [1, 1]


async def test_a_download_that_finds_no_window_to_count_in_keeps_no_claim(
    files_stub: FileServiceStub,
    files: FileCatalog,
    engine: AsyncEngine,
    clock: FakeClock,
    public_file: tuple[str, str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Claim and count commit together: a download counted nowhere (every window it may go into was emitted)
    leaves no claim behind, so the user's next download that day counts."""
    _, _, file_id = public_file
    await download(files_stub, file_id, metadata=BOB_MD)
    clock.advance(seconds=WINDOW)
    assert await files.flush_download_counts() == 1
    clock.advance(seconds=-WINDOW)  # a lagging clock, and no window ahead allowed
    monkeypatch.setattr(files_module, "MAX_WINDOW_HOPS", 1)
    await download(files_stub, file_id, metadata=auth("carol"))

    async def claims() -> list[str]:
        async with engine.connect() as conn:
            return list((await conn.execute(text("SELECT user_id FROM download_claims ORDER BY user_id"))).scalars())

    assert await claims() == ["bob"]
    assert [count for _, count, _ in await counts(engine)] == [1]
    monkeypatch.setattr(files_module, "MAX_WINDOW_HOPS", 100)
    await download(files_stub, file_id, metadata=auth("carol"))
    assert await claims() == ["bob", "carol"]
    assert [count for _, count, _ in await counts(engine)] == [1, 1]


async def test_downloads_of_hidden_or_unknown_files_are_refused_and_not_counted(
    files_stub: FileServiceStub, catalog: Catalog, engine: AsyncEngine, public_file: tuple[str, str, str]
) -> None:
    model_id, _, file_id = public_file
    model = await catalog.models.get_model(ALICE, model_id)
    await catalog.models.unpublish_model(ALICE, model_id, model.version, "later", False)
    hidden = await failure(download(files_stub, file_id, metadata=BOB_MD))
    assert (hidden.code, hidden.reason) == (grpc.StatusCode.NOT_FOUND, "FILE_NOT_FOUND")
    unknown = await failure(download(files_stub, "no-such-file"))
    assert (unknown.code, unknown.message) == (grpc.StatusCode.NOT_FOUND, "file no-such-file not found")
    bad = await failure(download(files_stub, file_id, offset=10**9, metadata=ALICE_MD))
    assert (bad.code, [v.field for v in bad.violations]) == (grpc.StatusCode.INVALID_ARGUMENT, ["offset"])
    assert await counts(engine) == []


async def test_download_counts_are_published_once(
    files_stub: FileServiceStub,
    files: FileCatalog,
    catalog: Catalog,
    engine: AsyncEngine,
    clock: FakeClock,
    public_file: tuple[str, str, str],
    nats_url: str,
    unique_name: str,
) -> None:
    _, version_id, file_id = public_file
    for i in range(3):
        await download(files_stub, file_id, metadata=auth(f"user-{i}"))
    clock.advance(seconds=WINDOW)
    await files.flush_download_counts()
    producer = unique_name.lower()
    nc = await connect(nats_url, "catalog-files-test")
    try:
        relay = OutboxRelay(engine, catalog.store, nc, producer)
        await relay.setup()
        while await relay.publish_once():
            pass
        await files.flush_download_counts()  # nothing new
        assert await relay.publish_once() == 0
        sub = await nc.jetstream().pull_subscribe(
            events_subject(producer, "DownloadsCounted"), stream=events_stream_name(producer)
        )
        received: list[envelope_pb2.EventEnvelope] = []
        while True:
            try:
                batch = await sub.fetch(100, timeout=1)
            except NatsTimeout:
                break
            for message in batch:
                received.append(envelope_pb2.EventEnvelope.FromString(message.data))
                await message.ack()
    finally:
        await nc.close()
    [envelope] = received
    assert (envelope.event_type, envelope.stream_id, envelope.stream_version) == (
        "catalog.DownloadsCounted",
        downloads_stream(version_id),
        1,
    )
    payload = make_registry().decode(envelope.event_type, envelope.schema_version, envelope.payload)
    assert isinstance(payload, catalog_pb2.CatalogDownloadsCounted) and payload.count == 3
