"""Who may do what: owner, another user, anonymous and moderator over every mutating RPC, and visibility.

Rules: anonymous callers are UNAUTHENTICATED on every mutation; someone who may not see an item (a draft
model, a draft version) gets NOT_FOUND exactly as for an id that never existed; someone who may see it but
does not own it gets PERMISSION_DENIED; the owner and moderators may change it (the domain's own rules
still apply: e.g. a version of a draft model cannot be published yet)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.v1 import models_pb2 as pb
from modelhub.catalog.v1.models_pb2_grpc import ModelServiceStub
from modelhub.core.grpc.errors import error_details

from .conftest import auth
from .model_helpers import ALICE, fields, published_model, ready_version

OK = grpc.StatusCode.OK
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

CALLERS: dict[str, tuple[tuple[str, str], ...]] = {
    "owner": auth("alice"),
    "other": auth("bob"),
    "anonymous": (),
    "moderator": auth("mod", "moderator"),
}

Call = Callable[[ModelServiceStub, str, str, int, Any], Awaitable[Any]]

MODEL_RPCS: dict[str, Call] = {
    "UpdateModel": lambda s, m, v, e, md: s.UpdateModel(
        pb.UpdateModelRequest(model_id=m, expected_version=e, update_mask=FieldMask(paths=["name"]), name="X"),
        metadata=md,
    ),
    "PublishModel": lambda s, m, v, e, md: s.PublishModel(
        pb.PublishModelRequest(model_id=m, expected_version=e), metadata=md
    ),
    "UnpublishModel": lambda s, m, v, e, md: s.UnpublishModel(
        pb.UnpublishModelRequest(model_id=m, expected_version=e, reason="r"), metadata=md
    ),
    "DeleteModel": lambda s, m, v, e, md: s.DeleteModel(
        pb.DeleteModelRequest(model_id=m, expected_version=e), metadata=md
    ),
    "CreateVersion": lambda s, m, v, e, md: s.CreateVersion(
        pb.CreateVersionRequest(model_id=m, expected_version=e, name="v9", base_model="SD 1.5"), metadata=md
    ),
}
VERSION_RPCS: dict[str, Call] = {
    "UpdateVersion": lambda s, m, v, e, md: s.UpdateVersion(
        pb.UpdateVersionRequest(
            model_version_id=v, expected_version=e, update_mask=FieldMask(paths=["changelog"]), changelog="c"
        ),
        metadata=md,
    ),
    "PublishVersion": lambda s, m, v, e, md: s.PublishVersion(
        pb.PublishVersionRequest(model_version_id=v, expected_version=e), metadata=md
    ),
    "DeleteVersion": lambda s, m, v, e, md: s.DeleteVersion(
        pb.DeleteVersionRequest(model_version_id=v, expected_version=e), metadata=md
    ),
    "DeclareParents": lambda s, m, v, e, md: s.DeclareParents(
        pb.DeclareParentsRequest(model_version_id=v, expected_version=e), metadata=md
    ),
}

# What the owner and moderators get where the domain's rules, not permissions, decide.
STATE_RULES: dict[tuple[str, str], grpc.StatusCode] = {
    ("draft model", "UnpublishModel"): PRECONDITION,  # only a published model can be unpublished
    ("draft model", "PublishVersion"): PRECONDITION,  # publish the model first
    ("published version", "DeleteVersion"): PRECONDITION,  # the last published version stays
}


async def outcome(call: Awaitable[Any]) -> grpc.StatusCode:
    try:
        await call
    except grpc.RpcError as error:
        return error_details(error).code
    return OK


async def target(catalog: Catalog, state: str) -> tuple[str, str, int]:
    """A fresh model in `state`: (model id, the version to act on, the model's version)."""
    models = catalog.models
    if state == "draft model":
        model = await models.create_model(ALICE, fields())
        model, version_id = await ready_version(models, ALICE, model)
        return model.id, version_id, model.version
    model, version_id = await published_model(models)
    if state == "draft version":
        model, version_id = await ready_version(models, ALICE, model, "v2")
    return model.id, version_id, model.version


def expected(state: str, rpc: str, caller: str) -> grpc.StatusCode:
    if caller == "anonymous":
        return UNAUTHENTICATED
    if caller == "other":
        return DENIED if state == "published version" else NOT_FOUND
    return STATE_RULES.get((state, rpc), OK)


CASES = [
    (state, rpc, caller)
    for state in ("draft model", "published version", "draft version")
    for rpc in ([*MODEL_RPCS, *VERSION_RPCS] if state != "draft version" else list(VERSION_RPCS))
    for caller in CALLERS
]


async def test_the_authorization_matrix_over_every_mutating_rpc(
    models_stub: ModelServiceStub, catalog: Catalog
) -> None:
    got: dict[tuple[str, str, str], grpc.StatusCode] = {}
    for state, rpc, caller in CASES:
        model_id, version_id, version = await target(catalog, state)
        call = {**MODEL_RPCS, **VERSION_RPCS}[rpc]
        got[state, rpc, caller] = await outcome(call(models_stub, model_id, version_id, version, CALLERS[caller]))
        if got[state, rpc, caller] != OK:  # a refusal changes nothing
            assert (await catalog.models.get_model(ALICE, model_id)).version == version
    assert got == {case: expected(*case) for case in CASES}


@pytest.mark.parametrize(
    ("caller", "code"), [("owner", OK), ("other", OK), ("moderator", OK), ("anonymous", UNAUTHENTICATED)]
)
async def test_anyone_with_a_token_may_create_a_model(
    models_stub: ModelServiceStub, caller: str, code: grpc.StatusCode
) -> None:
    call = models_stub.CreateModel(pb.CreateModelRequest(name="m", type="LORA"), metadata=CALLERS[caller])
    assert await outcome(call) == code


async def test_only_moderators_unpublish_for_a_violation(models_stub: ModelServiceStub, catalog: Catalog) -> None:
    model, _ = await published_model(catalog.models)
    request = pb.UnpublishModelRequest(model_id=model.id, expected_version=model.version, reason="spam", violation=True)
    assert await outcome(models_stub.UnpublishModel(request, metadata=CALLERS["owner"])) == DENIED
    response = await models_stub.UnpublishModel(request, metadata=CALLERS["moderator"])
    assert response.model.status == "UnpublishedViolation"
    republish = pb.PublishModelRequest(model_id=model.id, expected_version=response.model.version)
    assert await outcome(models_stub.PublishModel(republish, metadata=CALLERS["owner"])) == DENIED
    owner_view = (await models_stub.GetModel(pb.GetModelRequest(model_id=model.id), metadata=CALLERS["owner"])).model
    assert owner_view.unpublished_reason == "spam"


async def test_private_items_read_as_missing_to_others(models_stub: ModelServiceStub, catalog: Catalog) -> None:
    draft = await catalog.models.create_model(ALICE, fields())
    draft, draft_version = await ready_version(catalog.models, ALICE, draft)
    public, public_version = await published_model(catalog.models, name="Public")
    public, hidden_version = await ready_version(catalog.models, ALICE, public, "v2")

    async def read(model_id: str, caller: str) -> grpc.StatusCode:
        return await outcome(models_stub.GetModel(pb.GetModelRequest(model_id=model_id), metadata=CALLERS[caller]))

    assert [await read(draft.id, c) for c in CALLERS] == [OK, NOT_FOUND, NOT_FOUND, OK]
    assert [await read(public.id, c) for c in CALLERS] == [OK, OK, OK, OK]
    # The refusal is word for word the one for an id that never existed.
    with pytest.raises(grpc.RpcError) as hidden:
        await models_stub.GetModel(pb.GetModelRequest(model_id=draft.id), metadata=CALLERS["other"])
    with pytest.raises(grpc.RpcError) as missing:
        await models_stub.GetModel(pb.GetModelRequest(model_id="no-such-model"), metadata=CALLERS["other"])
    assert error_details(hidden.value).message.replace(draft.id, "X") == error_details(missing.value).message.replace(
        "no-such-model", "X"
    )
    # A draft version of a public model is left out for others, shown to the owner and moderators.
    for caller, versions in [
        ("other", [public_version]),
        ("anonymous", [public_version]),
        ("moderator", [hidden_version, public_version]),
    ]:
        got = (await models_stub.GetModel(pb.GetModelRequest(model_id=public.id), metadata=CALLERS[caller])).model
        assert [v.model_version_id for v in got.versions] == versions
    for version_id in (draft_version, hidden_version):
        lineage = models_stub.GetLineage(pb.GetLineageRequest(model_version_id=version_id), metadata=CALLERS["other"])
        assert await outcome(lineage) == NOT_FOUND
