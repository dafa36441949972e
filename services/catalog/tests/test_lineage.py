"""Lineage: declared parents with relations, walking the graph both ways, cycles, licenses, visibility."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.domain import commands
from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.events import License
from modelhub.catalog.v1 import models_pb2 as pb
from modelhub.catalog.v1.models_pb2_grpc import ModelServiceStub
from modelhub.core.errors import PermissionDenied
from modelhub.core.grpc.errors import RpcErrorDetails, error_details

from .conftest import auth
from .model_helpers import ALICE, BOB, fields, published_model, ready_version

MERGE = pb.LINEAGE_RELATION_MERGE
FINETUNE = pb.LINEAGE_RELATION_FINETUNE
FORK = pb.LINEAGE_RELATION_FORK
ADAPTER_OF = pb.LINEAGE_RELATION_ADAPTER_OF
NO_DERIVATIVES = License(allow_derivatives=False)


async def failure(call: Any) -> RpcErrorDetails:
    with pytest.raises(grpc.RpcError) as error:
        await call
    return error_details(error.value)


async def current(catalog: Catalog, version_id: str) -> int:
    model_id = await catalog.models._model_of_version(version_id)
    return (await catalog.models.get_model(Actor("x", privileged=True), model_id)).version


def declare(
    stub: ModelServiceStub, version_id: str, expected: int, *parents: pb.ParentDeclaration, who: str = "alice"
) -> Any:
    request = pb.DeclareParentsRequest(model_version_id=version_id, expected_version=expected, parents=parents)
    return stub.DeclareParents(request, metadata=auth(who))


def parent(
    version_id: str, relation: int = FINETUNE, weight: float = 0.0, attribution: str = ""
) -> pb.ParentDeclaration:
    return pb.ParentDeclaration(parent_version_id=version_id, relation=relation, weight=weight, attribution=attribution)


async def chain(stub: ModelServiceStub, catalog: Catalog, length: int) -> list[str]:
    """Published versions v0 <- v1 <- ... (each a finetune of the one before), of one model each."""
    versions: list[str] = []
    for i in range(length):
        _, version_id = await published_model(catalog.models, name=f"m{i}")
        if versions:
            await declare(stub, version_id, await current(catalog, version_id), parent(versions[-1]))
        versions.append(version_id)
    return versions


def lineage(stub: ModelServiceStub, version_id: str, direction: int, depth: int = 0, who: tuple[Any, ...] = ()) -> Any:
    request = pb.GetLineageRequest(model_version_id=version_id, direction=direction, max_depth=depth)
    return stub.GetLineage(request, metadata=who)


async def test_a_merge_of_three_parents_is_a_weighted_recipe_with_attribution(
    models_stub: ModelServiceStub, catalog: Catalog
) -> None:
    parents = [(await published_model(catalog.models, Actor(f"creator-{i}"), name=f"base {i}"))[1] for i in range(3)]
    child, child_version = await published_model(catalog.models, name="merged")
    weights = [0.5, 0.3, 0.2]
    declared = await declare(
        models_stub,
        child_version,
        child.version,
        *(parent(p, MERGE, w, f"thanks creator-{i}") for i, (p, w) in enumerate(zip(parents, weights, strict=True))),
    )
    [version] = declared.model.versions
    assert [(p.parent_version_id, p.relation, p.weight) for p in version.parents] == [
        (p, MERGE, w) for p, w in zip(parents, weights, strict=True)
    ]
    walk = await lineage(models_stub, child_version, pb.LINEAGE_DIRECTION_ANCESTORS)
    assert sorted((n.model_version_id, n.depth) for n in walk.nodes) == sorted(
        [(child_version, 0)] + [(p, -1) for p in parents]
    )
    assert {(e.parent_version_id, e.weight, e.attribution) for e in walk.edges} == {
        (p, w, f"thanks creator-{i}") for i, (p, w) in enumerate(zip(parents, weights, strict=True))
    }
    for p in parents:  # and each parent sees the merge below it
        below = await lineage(models_stub, p, pb.LINEAGE_DIRECTION_DESCENDANTS)
        assert [(n.model_version_id, n.depth) for n in below.nodes if n.depth] == [(child_version, 1)]
    bad = await failure(
        declare(
            models_stub,
            child_version,
            declared.model.version,
            parent(parents[0], MERGE, 0.6),
            parent(parents[1], MERGE, 0.6),
        )
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "sum to 1" in bad.violations[0].description


async def test_ancestors_and_descendants_are_walked_to_the_depth_asked(
    models_stub: ModelServiceStub, catalog: Catalog
) -> None:
    v = await chain(models_stub, catalog, 5)
    up = await lineage(models_stub, v[4], pb.LINEAGE_DIRECTION_ANCESTORS, 2)
    assert [(n.model_version_id, n.depth) for n in up.nodes] == [(v[2], -2), (v[3], -1), (v[4], 0)]
    assert up.truncated
    up = await lineage(models_stub, v[4], pb.LINEAGE_DIRECTION_ANCESTORS, 10)
    assert [(n.model_version_id, n.depth) for n in up.nodes] == [(v[i], i - 4) for i in range(5)]
    assert not up.truncated
    default = await lineage(models_stub, v[0], pb.LINEAGE_DIRECTION_DESCENDANTS)  # default depth 3
    assert [(n.model_version_id, n.depth) for n in default.nodes] == [(v[0], 0), (v[1], 1), (v[2], 2), (v[3], 3)]
    assert default.truncated
    both = await lineage(models_stub, v[2], pb.LINEAGE_DIRECTION_BOTH, 1)
    assert [(n.model_version_id, n.depth) for n in both.nodes] == [(v[1], -1), (v[2], 0), (v[3], 1)]
    assert {(e.child_version_id, e.parent_version_id) for e in both.edges} == {(v[2], v[1]), (v[3], v[2])}


async def test_a_cycle_is_refused_however_long(models_stub: ModelServiceStub, catalog: Catalog) -> None:
    v = await chain(models_stub, catalog, 3)
    for ancestor_child in (v[1], v[2]):
        details = await failure(declare(models_stub, v[0], await current(catalog, v[0]), parent(ancestor_child)))
        assert (details.code, details.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "LINEAGE_CYCLE")
        assert ancestor_child in details.message
    itself = await failure(declare(models_stub, v[1], await current(catalog, v[1]), parent(v[1])))
    assert itself.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        not (await catalog.models.get_model(ALICE, await catalog.models._model_of_version(v[0]))).versions[v[0]].parents
    )


async def test_concurrent_declarations_on_different_models_cannot_close_a_cycle(
    models_stub: ModelServiceStub, catalog: Catalog
) -> None:
    _, x = await published_model(catalog.models, name="x")
    _, y = await published_model(catalog.models, name="y")
    outcomes = await asyncio.gather(
        declare(models_stub, x, await current(catalog, x), parent(y)),
        declare(models_stub, y, await current(catalog, y), parent(x)),
        return_exceptions=True,
    )
    failures = [error_details(o) for o in outcomes if isinstance(o, grpc.RpcError)]
    assert len(failures) == 1
    assert failures[0].reason == "LINEAGE_CYCLE"


async def test_derivatives_of_a_no_derivatives_model_are_refused_except_adapters_and_for_its_owner(
    models_stub: ModelServiceStub, catalog: Catalog
) -> None:
    _, protected = await published_model(catalog.models, BOB, name="protected", license=NO_DERIVATIVES)
    _, mine = await published_model(catalog.models, name="mine")
    for relation in (FORK, FINETUNE, pb.LINEAGE_RELATION_QUANTIZED_OF):
        details = await failure(declare(models_stub, mine, await current(catalog, mine), parent(protected, relation)))
        assert (details.code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "DERIVATIVES_NOT_ALLOWED")
    _, other = await published_model(catalog.models, Actor("carol"), name="for merge")
    merge = await failure(
        declare(
            models_stub, mine, await current(catalog, mine), parent(protected, MERGE, 0.5), parent(other, MERGE, 0.5)
        )
    )
    assert merge.reason == "DERIVATIVES_NOT_ALLOWED"
    adapter = await declare(models_stub, mine, await current(catalog, mine), parent(protected, ADAPTER_OF))
    assert adapter.model.versions[0].parents[0].relation == ADAPTER_OF
    # Bob may fork his own model.
    _, bobs = await published_model(catalog.models, BOB, name="bob's fork")
    forked = await declare(models_stub, bobs, await current(catalog, bobs), parent(protected, FORK), who="bob")
    assert forked.model.versions[0].parents[0].relation == FORK


async def test_a_parent_the_caller_cannot_see_does_not_exist_for_them(
    models_stub: ModelServiceStub, catalog: Catalog
) -> None:
    draft = await catalog.models.create_model(BOB, fields("bob's draft"))
    draft, draft_version = await ready_version(catalog.models, BOB, draft)
    _, mine = await published_model(catalog.models, name="mine")
    details = await failure(declare(models_stub, mine, await current(catalog, mine), parent(draft_version)))
    assert (details.code, details.reason) == (grpc.StatusCode.NOT_FOUND, "MODEL_VERSION_NOT_FOUND")
    missing = await failure(declare(models_stub, mine, await current(catalog, mine), parent("no-such-version")))
    assert details.message.replace(draft_version, "X") == missing.message.replace("no-such-version", "X")


async def test_the_walk_stops_at_versions_the_caller_cannot_see(
    models_stub: ModelServiceStub, catalog: Catalog
) -> None:
    v = await chain(models_stub, catalog, 3)
    middle = await catalog.models._model_of_version(v[1])
    model = await catalog.models.get_model(ALICE, middle)
    await catalog.models.unpublish_model(ALICE, middle, model.version, "", False)
    anonymous = await lineage(models_stub, v[2], pb.LINEAGE_DIRECTION_ANCESTORS)
    assert [n.model_version_id for n in anonymous.nodes] == [v[2]]
    assert not anonymous.edges
    owner = await lineage(models_stub, v[2], pb.LINEAGE_DIRECTION_ANCESTORS, who=auth("alice"))
    assert [n.model_version_id for n in owner.nodes] == [v[0], v[1], v[2]]


async def test_only_the_owner_declares_a_versions_parents(models_stub: ModelServiceStub, catalog: Catalog) -> None:
    _, theirs = await published_model(catalog.models, BOB, name="bob's")
    _, base = await published_model(catalog.models, name="base")
    details = await failure(declare(models_stub, theirs, await current(catalog, theirs), parent(base), who="carol"))
    assert (details.code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_MODEL_OWNER")


SAME_LICENSE_ONLY = License(allow_commercial_use=("Image",), allow_different_license=False)


async def test_derivatives_of_a_model_that_allows_no_other_license_keep_its_permissions(
    models_stub: ModelServiceStub, catalog: Catalog
) -> None:
    """Civitai's "use different permissions on merges" off: a finetune, merge, quantization or fork keeps the
    parent's license (adapters, and the parent's own creator, are free); a later license change is held to it."""
    _, strict = await published_model(catalog.models, BOB, name="strict", license=SAME_LICENSE_ONLY)
    _, loose = await published_model(catalog.models, name="loose")  # Civitai's defaults: everything allowed
    for relation in (FINETUNE, FORK, pb.LINEAGE_RELATION_QUANTIZED_OF):
        refused = await failure(declare(models_stub, loose, await current(catalog, loose), parent(strict, relation)))
        assert (refused.code, refused.reason) == (grpc.StatusCode.PERMISSION_DENIED, "DIFFERENT_LICENSE_NOT_ALLOWED")
        assert "allow_commercial_use=['Image']" in refused.message
    assert (
        not (await catalog.models.get_model(ALICE, await catalog.models._model_of_version(loose)))
        .versions[loose]
        .parents
    )
    adapter = await declare(models_stub, loose, await current(catalog, loose), parent(strict, ADAPTER_OF))
    assert adapter.model.versions[0].parents[0].relation == ADAPTER_OF
    _, bobs = await published_model(catalog.models, BOB, name="bob's own")
    assert (await declare(models_stub, bobs, await current(catalog, bobs), parent(strict), who="bob")).model

    # A merge with the strict parent: the child must carry the strict parent's permissions.
    _, matching = await published_model(catalog.models, name="matching", license=SAME_LICENSE_ONLY)
    merged = await declare(
        models_stub, matching, await current(catalog, matching), parent(strict, MERGE, 0.5), parent(loose, MERGE, 0.5)
    )
    assert {p.parent_version_id for p in merged.model.versions[0].parents} == {strict, loose}

    # Its creator may edit everything but those permissions.
    model = await catalog.models.get_model(ALICE, merged.model.model_id)
    relicensed = commands.ModelChanges(license=License())
    with pytest.raises(PermissionDenied) as caught:
        await catalog.models.update_model(ALICE, model.id, model.version, relicensed)
    assert caught.value.reason == "DIFFERENT_LICENSE_NOT_ALLOWED"
    assert (await catalog.models.get_model(ALICE, model.id)).license == SAME_LICENSE_ONLY
    renamed = await catalog.models.update_model(ALICE, model.id, model.version, commands.ModelChanges(name="renamed"))
    assert (renamed.name, renamed.license) == ("renamed", SAME_LICENSE_ONLY)
    # Once the version that declared the parent is deleted, the license is free again.
    model, second = await ready_version(catalog.models, ALICE, renamed, name="v2")
    model = await catalog.models.publish_version(ALICE, second, model.version)
    model = await catalog.models.delete_version(ALICE, matching, model.version)
    assert (await catalog.models.update_model(ALICE, model.id, model.version, relicensed)).license == License()
