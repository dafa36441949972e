"""A client's `expected_version` is stale only when an edit came after it: the catalog's background facts about
files (scan verdicts, hashes added after upload) do not refuse an editor, a scheduled publication and other
editors' changes do (docs/adr/0010-background-changes-do-not-conflict.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.catalog.adapters.repository import ModelRepository
from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.domain import commands
from modelhub.catalog.domain.events import FileHash
from modelhub.catalog.domain.model import Model
from modelhub.catalog.domain.vocabulary import ModelStatus, ScanResult
from modelhub.catalog.v1 import models_pb2 as pb
from modelhub.catalog.v1.models_pb2_grpc import ModelServiceStub
from modelhub.core.errors import FailedPrecondition, StreamVersionConflict

from .conftest import FakeClock, auth
from .model_helpers import ALICE, MOD, a_file, event_types, fields, version

AUTO_V3 = FileHash("AutoV3", "AB" * 32)


def describe(text: str) -> commands.ModelChanges:
    return commands.model_changes(description=text)


async def draft_with_file(catalog: Catalog) -> tuple[Model, str, str]:
    """A Draft model with one version and one file waiting for its scan; returns it, the version and file ids."""
    model = await catalog.models.create_model(ALICE, fields())
    model, version_id = await catalog.models.create_version(ALICE, model.id, model.version, version())
    file_id = f"file-{version_id}"
    model = await catalog.models.add_file(ALICE, version_id, a_file(file_id))
    return model, version_id, file_id


async def load(catalog: Catalog, model_id: str) -> Model:
    async with catalog.engine.connect() as conn:
        return await ModelRepository(conn, catalog.store).load(model_id)


async def refused(catalog: Catalog, model_id: str, expected_version: int) -> StreamVersionConflict:
    """Send an edit with `expected_version`, expect the conflict, and check that it wrote nothing."""
    before = await event_types(catalog.engine, f"model-{model_id}")
    with pytest.raises(StreamVersionConflict) as conflict:
        await catalog.models.update_model(ALICE, model_id, expected_version, describe("refused edit"))
    assert await event_types(catalog.engine, f"model-{model_id}") == before
    assert (await load(catalog, model_id)).description != "refused edit"
    return conflict.value


async def test_an_edit_from_before_a_scan_verdict_and_new_hashes_succeeds_and_keeps_both(catalog: Catalog) -> None:
    model, version_id, file_id = await draft_with_file(catalog)
    read = model.version  # what the editor's GetModel returned
    await catalog.models.record_scan(version_id, file_id, ScanResult.SUCCESS)
    await catalog.models.add_file_hashes(version_id, file_id, (AUTO_V3,))

    edited = await catalog.models.update_model(ALICE, model.id, read, describe("edited after the scan"))

    assert await event_types(catalog.engine, model.stream_id) == [
        "catalog.ModelCreated",
        "catalog.ModelSnapshot",
        "catalog.ModelVersionCreated",
        "catalog.ModelSnapshot",
        "catalog.ModelFileAdded",
        "catalog.ModelSnapshot",
        "catalog.ModelFileScanned",
        "catalog.ModelSnapshot",
        "catalog.ModelFileHashesAdded",
        "catalog.ModelSnapshot",
        "catalog.ModelUpdated",  # appended at the current version, after the background facts
        "catalog.ModelSnapshot",
    ]
    # No lost update: the stream, the read models and the returned model all carry the edit and both facts.
    for seen in (edited, await load(catalog, model.id), await catalog.models.get_model(ALICE, model.id)):
        file = seen.versions[version_id].files[file_id]
        assert (seen.version, seen.description) == (read + 6, "edited after the scan")
        assert file.scan_result == ScanResult.SUCCESS
        assert AUTO_V3 in file.hashes
    # The model returned after the save and the one folded from the log agree on where the last edit is.
    assert (await load(catalog, model.id)).last_edit_version == edited.last_edit_version == read + 5


async def test_rules_run_on_the_state_with_the_verdict(catalog: Catalog) -> None:
    """A publication decided before the verdict is checked against it: a clean file publishes, a dangerous
    one is refused (FailedPrecondition, nothing written) however old the editor's version is."""
    clean, clean_version, clean_file = await draft_with_file(catalog)
    await catalog.models.record_scan(clean_version, clean_file, ScanResult.SUCCESS)
    published = await catalog.models.publish_model(ALICE, clean.id, clean.version)
    assert published.status == ModelStatus.PUBLISHED

    danger, danger_version, danger_file = await draft_with_file(catalog)
    await catalog.models.record_scan(danger_version, danger_file, ScanResult.DANGER, "os.system")
    before = await event_types(catalog.engine, danger.stream_id)
    with pytest.raises(FailedPrecondition, match="not scanned clean"):
        await catalog.models.publish_model(ALICE, danger.id, danger.version)
    assert await event_types(catalog.engine, danger.stream_id) == before


async def test_an_edit_from_before_another_edit_is_refused_also_when_a_scan_came_after_it(
    catalog: Catalog,
) -> None:
    model, version_id, file_id = await draft_with_file(catalog)
    read = model.version
    other = await catalog.models.update_version(MOD, version_id, read, commands.version_changes(changelog="mod's"))
    scanned = await catalog.models.record_scan(version_id, file_id, ScanResult.SUCCESS)
    assert scanned.version == other.version + 2

    conflict = await refused(catalog, model.id, read)
    assert (conflict.expected_version, conflict.actual_version) == (read, scanned.version)
    # Between the other edit and now only the scan came: the version read after that edit is current.
    edited = await catalog.models.update_model(ALICE, model.id, other.version, describe("after the mod's edit"))
    assert edited.versions[version_id].changelog == "mod's"
    assert edited.versions[version_id].files[file_id].scan_result == ScanResult.SUCCESS


async def test_an_expected_version_ahead_of_the_stream_is_refused(catalog: Catalog) -> None:
    model, version_id, file_id = await draft_with_file(catalog)
    await catalog.models.record_scan(version_id, file_id, ScanResult.SUCCESS)
    current = (await load(catalog, model.id)).version
    for ahead in (current + 1, current + 2, current + 100):
        conflict = await refused(catalog, model.id, ahead)
        assert (conflict.expected_version, conflict.actual_version) == (ahead, current)


async def test_a_scheduled_publication_makes_an_earlier_version_stale(catalog: Catalog, clock: FakeClock) -> None:
    """The scheduler's publication changes the status the editor's view was based on (the model goes public):
    an edit from before it is refused, and goes through once re-read."""
    model, version_id, file_id = await draft_with_file(catalog)
    model = await catalog.models.record_scan(version_id, file_id, ScanResult.SUCCESS)
    publish_at = clock.now + timedelta(hours=1)
    scheduled = await catalog.models.publish_model(ALICE, model.id, model.version, publish_at)
    assert scheduled.status == ModelStatus.SCHEDULED
    read = scheduled.version
    clock.advance(hours=1)
    assert await catalog.models.publish_due() == 1

    conflict = await refused(catalog, model.id, read)
    reread = await load(catalog, model.id)
    assert reread.status == ModelStatus.PUBLISHED
    assert conflict.actual_version == reread.version
    edited = await catalog.models.update_model(ALICE, model.id, reread.version, describe("now public"))
    assert (edited.status, edited.description) == (ModelStatus.PUBLISHED, "now public")


async def test_a_scan_committed_between_the_load_and_the_append_is_no_conflict(catalog: Catalog) -> None:
    """The race the store's key catches: the edit is run again on the fresh state and commits after the scan."""
    model, version_id, file_id = await draft_with_file(catalog)
    read = model.version
    attempts: list[int] = []

    async def scan_meanwhile(conn: AsyncConnection) -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) == 1:  # another transaction commits the verdict after the edit loaded the model
            await catalog.models.record_scan(version_id, file_id, ScanResult.SUCCESS)

    edited = await catalog.models._change(
        model.id, ALICE, read, lambda m, now: m.update(ALICE, describe("raced a scan"), now), prepare=scan_meanwhile
    )
    assert attempts == [1, 2]
    assert edited.description == "raced a scan"
    assert edited.versions[version_id].files[file_id].scan_result == ScanResult.SUCCESS
    assert (await event_types(catalog.engine, model.stream_id))[-4:] == [
        "catalog.ModelFileScanned",
        "catalog.ModelSnapshot",
        "catalog.ModelUpdated",
        "catalog.ModelSnapshot",
    ]


async def test_an_edit_committed_between_the_load_and_the_append_is_a_conflict(catalog: Catalog) -> None:
    model, _, _ = await draft_with_file(catalog)
    read = model.version

    async def edit_meanwhile(conn: AsyncConnection) -> None:
        await catalog.models.update_model(MOD, model.id, read, commands.model_changes(name="Mod's name"))

    with pytest.raises(StreamVersionConflict) as conflict:
        await catalog.models._change(
            model.id,
            ALICE,
            read,
            lambda m, now: m.update(ALICE, describe("lost the race"), now),
            prepare=edit_meanwhile,
        )
    after = await load(catalog, model.id)
    assert conflict.value.actual_version == after.version == read + 2
    assert (after.name, after.description) == ("Mod's name", "a model")


async def test_update_model_after_a_scan_verdict_is_ok_through_the_server(
    models_stub: ModelServiceStub, catalog: Catalog
) -> None:
    alice = auth("alice", name="Alice")
    created = (
        await models_stub.CreateModel(
            pb.CreateModelRequest(name="Dreamy", type="LORA", description="d", tags=["anime"]), metadata=alice
        )
    ).model
    version_id = (
        await models_stub.CreateVersion(
            pb.CreateVersionRequest(
                model_id=created.model_id, expected_version=created.version, name="v1", base_model="SDXL 1.0"
            ),
            metadata=alice,
        )
    ).model_version_id
    await catalog.models.add_file(ALICE, version_id, a_file("f1"))
    read = (await models_stub.GetModel(pb.GetModelRequest(model_id=created.model_id), metadata=alice)).model
    await catalog.models.record_scan(version_id, "f1", ScanResult.SUCCESS)

    call = models_stub.UpdateModel(
        pb.UpdateModelRequest(
            model_id=created.model_id,
            expected_version=read.version,
            update_mask=FieldMask(paths=["description"]),
            description="edited while the scan ran",
        ),
        metadata=alice,
    )
    updated = (await call).model
    assert await call.code() == grpc.StatusCode.OK
    assert updated.description == "edited while the scan ran"
    assert [f.scan_result for f in updated.versions[0].files] == ["Success"]
    assert updated.version == read.version + 4


def test_the_check_accepts_exactly_the_versions_from_the_last_edit_on() -> None:
    """The domain rule without I/O: versions from the last edit's to the current one are accepted."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    model = Model.create("m1", ALICE, fields(), "", now)  # ModelCreated at 1
    model.create_version(ALICE, "v1", version(), now)  # VersionCreated at 2
    model.add_file(ALICE, "v1", a_file("f1"), now)  # FileAdded at 3
    model.record_scan("v1", "f1", ScanResult.SUCCESS, "", now)  # FileScanned at 4: commutes
    model.add_file_hashes("v1", "f1", (AUTO_V3,), now)  # FileHashesAdded at 5: commutes
    model.pending.clear()
    model.version = 6  # as saved, with its snapshot
    assert model.last_edit_version == 3
    for accepted in (3, 4, 5, 6):
        model.require_current(accepted)
    for stale in (0, 1, 2, 7):
        with pytest.raises(StreamVersionConflict):
            model.require_current(stale)
