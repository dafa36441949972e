"""ModelService over a real server and database: the model life cycle, bad input, concurrency, idempotency."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.domain.vocabulary import ScanResult
from modelhub.catalog.v1 import models_pb2 as pb
from modelhub.catalog.v1.models_pb2_grpc import ModelServiceStub
from modelhub.common.v1 import pagination_pb2
from modelhub.core.grpc.errors import RpcErrorDetails, error_details

from .conftest import FakeClock, auth
from .model_helpers import ALICE, a_file, event_types, ready_version
from .model_helpers import fields as fields_for_hash

ALICE_MD = auth("alice", name="Alice")


async def failure(call: Any) -> RpcErrorDetails:
    with pytest.raises(grpc.RpcError) as error:
        await call
    return error_details(error.value)


async def create(stub: ModelServiceStub, name: str = "Dreamy", **fields: Any) -> pb.Model:
    request = pb.CreateModelRequest(name=name, type="Checkpoint", description="d", tags=["Anime"], **fields)
    return (await stub.CreateModel(request, metadata=ALICE_MD)).model


async def add_clean_file(catalog: Catalog, version_id: str) -> None:
    await catalog.models.add_file(ALICE, version_id, a_file(f"file-{version_id}"))
    await catalog.models.record_scan(version_id, f"file-{version_id}", ScanResult.SUCCESS)


async def version_of(stub: ModelServiceStub, model_id: str) -> int:
    return (await stub.GetModel(pb.GetModelRequest(model_id=model_id), metadata=ALICE_MD)).model.version


async def test_a_model_goes_from_draft_to_published_with_its_version(
    models_stub: ModelServiceStub, catalog: Catalog, engine: AsyncEngine
) -> None:
    model = await create(models_stub)
    assert (model.status, model.creator_user_id, model.creator_username, list(model.tags)) == (
        "Draft",
        "alice",
        "Alice",
        ["anime"],
    )
    created = await models_stub.CreateVersion(
        pb.CreateVersionRequest(
            model_id=model.model_id, expected_version=model.version, name="v1", base_model="pony", early_access_days=3
        ),
        metadata=ALICE_MD,
    )
    version_id = created.model_version_id
    assert created.model.versions[0].base_model == "Pony"
    await add_clean_file(catalog, version_id)
    published = (
        await models_stub.PublishModel(
            pb.PublishModelRequest(
                model_id=model.model_id, expected_version=await version_of(models_stub, model.model_id)
            ),
            metadata=ALICE_MD,
        )
    ).model
    assert published.status == "Published"
    [v] = published.versions
    assert v.status == "Published"
    assert v.early_access_ends_at.ToDatetime() - v.published_at.ToDatetime() == timedelta(days=3)
    assert [f.downloadable for f in v.files] == [True]
    assert {h.kind for h in v.files[0].hashes} == {"SHA256", "AutoV2", "BLAKE3"}
    # Anyone reads the published model, from the read models, exactly as the owner's call returned it.
    read = (await models_stub.GetModel(pb.GetModelRequest(model_id=model.model_id))).model
    assert read == published
    assert await event_types(engine, f"model-{model.model_id}") == [
        "catalog.ModelCreated",
        "catalog.ModelSnapshot",
        "catalog.ModelVersionCreated",
        "catalog.ModelSnapshot",
        "catalog.ModelFileAdded",
        "catalog.ModelSnapshot",
        "catalog.ModelFileScanned",
        "catalog.ModelSnapshot",
        "catalog.ModelPublished",
        "catalog.ModelVersionPublished",
        "catalog.ModelSnapshot",
    ]


async def test_an_edit_with_a_stale_version_is_aborted_and_names_the_current_one(
    models_stub: ModelServiceStub,
) -> None:
    model = await create(models_stub)
    first = pb.UpdateModelRequest(
        model_id=model.model_id, expected_version=model.version, update_mask=FieldMask(paths=["name"]), name="One"
    )
    updated = (await models_stub.UpdateModel(first, metadata=ALICE_MD)).model
    stale = pb.UpdateModelRequest(
        model_id=model.model_id,
        expected_version=model.version,
        update_mask=FieldMask(paths=["description"]),
        description="two",
    )
    details = await failure(models_stub.UpdateModel(stale, metadata=ALICE_MD))
    assert details.code == grpc.StatusCode.ABORTED
    assert details.reason == "STREAM_VERSION_CONFLICT"
    assert details.metadata["actual_version"] == str(updated.version)
    assert f"version {updated.version}" in details.message
    after = (await models_stub.GetModel(pb.GetModelRequest(model_id=model.model_id), metadata=ALICE_MD)).model
    assert (after.name, after.description, after.version) == ("One", "d", updated.version)


async def test_concurrent_edits_of_one_model_give_one_winner_and_conflicts_not_lost_updates(
    models_stub: ModelServiceStub, engine: AsyncEngine
) -> None:
    model = await create(models_stub)

    async def edit(i: int) -> str:
        request = pb.UpdateModelRequest(
            model_id=model.model_id,
            expected_version=model.version,
            update_mask=FieldMask(paths=["description"]),
            description=f"editor {i}",
        )
        try:
            await models_stub.UpdateModel(request, metadata=auth(f"editor-{i}", "moderator"))
        except grpc.RpcError as error:
            return error.code().name  # the losers: ABORTED
        return f"editor {i}"

    outcomes = await asyncio.gather(*(edit(i) for i in range(8)))
    winners = [o for o in outcomes if o.startswith("editor")]
    assert len(winners) == 1
    assert sorted(set(outcomes) - set(winners)) == ["ABORTED"]
    after = (await models_stub.GetModel(pb.GetModelRequest(model_id=model.model_id), metadata=ALICE_MD)).model
    assert after.description == winners[0]
    assert (await event_types(engine, f"model-{model.model_id}")).count("catalog.ModelUpdated") == 1


async def test_a_retried_create_with_the_same_request_id_makes_one_model(
    models_stub: ModelServiceStub, engine: AsyncEngine
) -> None:
    results = await asyncio.gather(*(create(models_stub, request_id="req-1") for _ in range(4)))
    assert len({m.model_id for m in results}) == 1
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM models"))).scalar_one() == 1
    reused = await failure(
        models_stub.CreateModel(pb.CreateModelRequest(request_id="req-1", name="Other", type="LORA"), metadata=ALICE_MD)
    )
    assert (reused.code, reused.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    # Another user's request id is their own.
    other = await models_stub.CreateModel(
        pb.CreateModelRequest(request_id="req-1", name="Dreamy", type="Checkpoint"), metadata=auth("bob")
    )
    assert other.model.model_id != results[0].model_id


async def test_bad_input_is_invalid_argument_with_every_field_and_changes_nothing(
    models_stub: ModelServiceStub, engine: AsyncEngine
) -> None:
    details = await failure(
        models_stub.CreateModel(
            pb.CreateModelRequest(
                name=" ", type="Lora", tags=["x" * 51], license=pb.License(allow_commercial_use=["Free"])
            ),
            metadata=ALICE_MD,
        )
    )
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in details.violations} == {"name", "type", "tags[0]", "license.allow_commercial_use[0]"}
    model = await create(models_stub)
    cases = [
        models_stub.UpdateModel(
            pb.UpdateModelRequest(model_id=model.model_id, expected_version=model.version), metadata=ALICE_MD
        ),
        models_stub.UpdateModel(
            pb.UpdateModelRequest(
                model_id=model.model_id, expected_version=model.version, update_mask=FieldMask(paths=["owner"])
            ),
            metadata=ALICE_MD,
        ),
        models_stub.PublishModel(pb.PublishModelRequest(model_id=model.model_id), metadata=ALICE_MD),
        models_stub.CreateVersion(
            pb.CreateVersionRequest(model_id=model.model_id, expected_version=model.version, name="v", base_model="X"),
            metadata=ALICE_MD,
        ),
        models_stub.GetModel(pb.GetModelRequest(model_id="")),
        models_stub.GetLineage(pb.GetLineageRequest(model_version_id="v", max_depth=11)),
        models_stub.ListModels(
            pb.ListModelsRequest(creator_user_id="alice", page=pagination_pb2.PageRequest(cursor="garbage"))
        ),
        models_stub.UnpublishModel(
            pb.UnpublishModelRequest(model_id=model.model_id, expected_version=model.version, reason="r" * 1001),
            metadata=ALICE_MD,
        ),
    ]
    for call in cases:
        assert (await failure(call)).code == grpc.StatusCode.INVALID_ARGUMENT
    assert await event_types(engine, f"model-{model.model_id}") == ["catalog.ModelCreated", "catalog.ModelSnapshot"]


async def test_publishing_without_a_clean_file_is_refused_with_the_reason(
    models_stub: ModelServiceStub, catalog: Catalog
) -> None:
    model = await create(models_stub)
    created = await models_stub.CreateVersion(
        pb.CreateVersionRequest(
            model_id=model.model_id, expected_version=model.version, name="v1", base_model="SD 1.5"
        ),
        metadata=ALICE_MD,
    )
    await catalog.models.add_file(ALICE, created.model_version_id, a_file("f1"))
    details = await failure(
        models_stub.PublishModel(
            pb.PublishModelRequest(
                model_id=model.model_id, expected_version=await version_of(models_stub, model.model_id)
            ),
            metadata=ALICE_MD,
        )
    )
    assert (details.code, details.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOTHING_TO_PUBLISH")
    assert "Pending" in details.message
    got = (await models_stub.GetModel(pb.GetModelRequest(model_id=model.model_id), metadata=ALICE_MD)).model
    assert [f.downloadable for f in got.versions[0].files] == [False]


async def test_a_scheduled_publication_happens_when_due_and_once(
    models_stub: ModelServiceStub, catalog: Catalog, clock: FakeClock, engine: AsyncEngine
) -> None:
    model = await create(models_stub)
    created = await models_stub.CreateVersion(
        pb.CreateVersionRequest(
            model_id=model.model_id, expected_version=model.version, name="v1", base_model="SD 1.5"
        ),
        metadata=ALICE_MD,
    )
    await add_clean_file(catalog, created.model_version_id)
    at = Timestamp()
    at.FromDatetime(clock.now.replace(hour=12))
    scheduled = (
        await models_stub.PublishModel(
            pb.PublishModelRequest(
                model_id=model.model_id, expected_version=await version_of(models_stub, model.model_id), publish_at=at
            ),
            metadata=ALICE_MD,
        )
    ).model
    assert (scheduled.status, scheduled.scheduled_publish_at) == ("Scheduled", at)
    hidden = await failure(models_stub.GetModel(pb.GetModelRequest(model_id=model.model_id)))
    assert hidden.code == grpc.StatusCode.NOT_FOUND
    assert await catalog.models.publish_due() == 0
    clock.advance(hours=12)
    assert await catalog.models.publish_due() == 1
    assert await catalog.models.publish_due() == 0  # a second run (or a restart) finds nothing due
    public = (await models_stub.GetModel(pb.GetModelRequest(model_id=model.model_id))).model
    assert public.status == "Published"
    assert public.published_at == at
    types = await event_types(engine, f"model-{model.model_id}")
    assert types.count("catalog.ModelVersionPublished") == 1
    # Now a second version, scheduled on the published model.
    second = await models_stub.CreateVersion(
        pb.CreateVersionRequest(
            model_id=model.model_id, expected_version=public.version, name="v2", base_model="SD 1.5"
        ),
        metadata=ALICE_MD,
    )
    await add_clean_file(catalog, second.model_version_id)
    at.FromDatetime(clock.now.replace(hour=18))
    await models_stub.PublishVersion(
        pb.PublishVersionRequest(
            model_version_id=second.model_version_id,
            expected_version=await version_of(models_stub, model.model_id),
            publish_at=at,
        ),
        metadata=ALICE_MD,
    )
    anonymous = (await models_stub.GetModel(pb.GetModelRequest(model_id=model.model_id))).model
    assert [v.name for v in anonymous.versions] == ["v1"]
    clock.advance(hours=6)
    assert await catalog.models.publish_due() == 1
    anonymous = (await models_stub.GetModel(pb.GetModelRequest(model_id=model.model_id))).model
    assert [v.name for v in anonymous.versions] == ["v2", "v1"]
    assert (await event_types(engine, f"model-{model.model_id}")).count("catalog.ModelVersionPublished") == 2


async def test_list_models_pages_newest_first_and_hides_private_ones_from_others(
    models_stub: ModelServiceStub, catalog: Catalog
) -> None:
    ids = [(await create(models_stub, name=f"m{i}")).model_id for i in range(5)]
    seen: list[str] = []
    cursor = ""
    while True:
        page = await models_stub.ListModels(
            pb.ListModelsRequest(page=pagination_pb2.PageRequest(page_size=2, cursor=cursor)), metadata=ALICE_MD
        )
        assert page.models, "a cursor never leads to an empty page"
        seen += [m.model_id for m in page.models]
        cursor = page.page_info.next_cursor
        if not cursor:
            break
    assert seen == ids[::-1]
    assert not (await models_stub.ListModels(pb.ListModelsRequest(creator_user_id="alice"))).models
    moderator = await models_stub.ListModels(
        pb.ListModelsRequest(creator_user_id="alice"), metadata=auth("m", "moderator")
    )
    assert len(moderator.models) == 5
    details = await failure(models_stub.ListModels(pb.ListModelsRequest()))
    assert details.code == grpc.StatusCode.UNAUTHENTICATED


async def test_base_models_come_from_the_curated_list(models_stub: ModelServiceStub) -> None:
    names = list((await models_stub.ListBaseModels(pb.ListBaseModelsRequest())).base_models)
    assert {"SD 1.5", "SDXL 1.0", "Pony", "Illustrious", "Flux.1 D", "Flux.1 S", "SD 3.5", "Other"} <= set(names)
    assert len(names) == len(set(names))


async def test_files_are_found_by_any_hash_kind_in_any_case_only_where_visible(catalog: Catalog) -> None:
    model = await catalog.models.create_model(ALICE, fields_for_hash())
    model, version_id = await ready_version(catalog.models, ALICE, model)
    sha = a_file(f"file-{version_id}").blob_sha256
    for value, kind in [(sha.lower(), None), (sha, "SHA256"), (sha[:10].lower(), "AutoV2"), (sha[:10], None)]:
        [match] = await catalog.models.find_by_hash(ALICE, value, kind)
        assert (match.model_id, match.version_id, match.file_id) == (model.id, version_id, f"file-{version_id}")
    assert await catalog.models.find_by_hash(ALICE, sha[:10], "SHA256") == []
    assert await catalog.models.find_by_hash(None, sha) == []  # a draft's files are not found by others
