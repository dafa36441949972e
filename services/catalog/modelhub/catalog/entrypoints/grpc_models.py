"""ModelService: protobuf in, command, protobuf out. Errors are DomainErrors (mapped by libs/core)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import Final

import grpc.aio

from modelhub.catalog.domain import commands
from modelhub.catalog.domain.commands import Actor, ParentRequest, Violations
from modelhub.catalog.domain.events import License, ModelFile
from modelhub.catalog.domain.model import Model
from modelhub.catalog.domain.vocabulary import Relation
from modelhub.catalog.entrypoints.grpc_support import (
    Context,
    actor,
    from_timestamp,
    optional_actor,
    to_timestamp,
)
from modelhub.catalog.handlers.models import DEFAULT_LINEAGE_DEPTH, MAX_LINEAGE_DEPTH, Lineage, ModelCatalog
from modelhub.catalog.v1 import models_pb2 as pb
from modelhub.common.v1 import pagination_pb2
from modelhub.core.grpc.auth import require_principal
from modelhub.core.grpc.registration import add_service

SERVICE_NAME: Final = "modelhub.catalog.v1.ModelService"
PUBLIC_METHODS: Final = frozenset(
    f"/{SERVICE_NAME}/{m}" for m in ("GetModel", "ListModels", "GetLineage", "ListBaseModels")
)
"""Methods anonymous callers may use (they see public items only)."""
DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_SIZE: Final = 100
_CURSOR_PREFIX: Final = "m1:"

RELATIONS: Final[Mapping[pb.LineageRelation.ValueType, Relation]] = {
    pb.LINEAGE_RELATION_FINETUNE: Relation.FINETUNE,
    pb.LINEAGE_RELATION_MERGE: Relation.MERGE,
    pb.LINEAGE_RELATION_ADAPTER_OF: Relation.ADAPTER_OF,
    pb.LINEAGE_RELATION_QUANTIZED_OF: Relation.QUANTIZED_OF,
    pb.LINEAGE_RELATION_FORK: Relation.FORK,
}
_MODEL_VIEWS: Final = frozenset({pb.MODEL_VIEW_UNSPECIFIED, pb.MODEL_VIEW_FULL, pb.MODEL_VIEW_BASIC})
_RELATION_PB: Final[Mapping[Relation, pb.LineageRelation.ValueType]] = {v: k for k, v in RELATIONS.items()}
_MODEL_MASK: Final = frozenset({"name", "description", "type", "tags", "license"})
_VERSION_MASK: Final = frozenset({"name", "base_model", "trained_words", "changelog", "early_access_days"})


def add_to_server(servicer: ModelServicer, server: grpc.aio.Server) -> None:
    add_service(servicer, server, pb, "ModelService")


# -- protobuf -> domain -------------------------------------------------------------------------------------


def _license(request_license: pb.License, present: bool) -> License:
    """The request's license; Civitai's defaults (everything allowed) when the request has none."""
    if not present:
        return License()
    return License(
        request_license.allow_no_credit,
        tuple(request_license.allow_commercial_use),
        request_license.allow_derivatives,
        request_license.allow_different_license,
    )


def _required(field: str, value: str) -> str:
    v = Violations()
    value = commands.require_id(v, field, value)
    v.raise_if_any("request")
    return value


def _expected(expected_version: int) -> int:
    if expected_version < 1:
        v = Violations()
        v.add("expected_version", "is required: send the model's `version` from your last read (GetModel)")
        v.raise_if_any("request")
    return expected_version


def _mask(paths: list[str], allowed: frozenset[str]) -> set[str]:
    v = Violations()
    unknown = sorted(set(paths) - allowed)
    if unknown:
        v.add("update_mask", f"unknown field(s) {', '.join(unknown)}: use {', '.join(sorted(allowed))}")
    if not paths:
        v.add("update_mask", f"name the fields to change: {', '.join(sorted(allowed))}")
    v.raise_if_any("request")
    return set(paths)


def _when(message: pb.PublishModelRequest | pb.PublishVersionRequest) -> datetime | None:
    return from_timestamp(message.publish_at) if message.HasField("publish_at") else None


def _encode_cursor(model_id: str) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{model_id}".encode()).decode()


def _decode_cursor(cursor: str) -> str | None:
    if not cursor:
        return None
    try:
        decoded = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if not decoded.startswith(_CURSOR_PREFIX):
        v = Violations()
        v.add("page.cursor", "is not a cursor this list returned: start again without one")
        v.raise_if_any("request")
    return decoded.removeprefix(_CURSOR_PREFIX)


# -- domain -> protobuf -------------------------------------------------------------------------------------


def file_pb(file: ModelFile, *, downloadable: bool, metadata: bool = True) -> pb.ModelFile:
    """A file as the API shows it; without `metadata`, its safetensors metadata summary is left out."""
    return pb.ModelFile(
        file_id=file.file_id,
        name=file.name,
        type=file.type,
        format=file.format,
        size_bytes=file.size_bytes,
        precision=file.precision,
        size_kind=file.size_kind,
        blob_sha256=file.blob_sha256,
        hashes=[pb.FileHash(kind=h.kind, value=h.value) for h in file.hashes],
        scan_result=file.scan_result,
        scan_message=file.scan_message,
        safetensors_metadata=dict(file.safetensors_metadata) if metadata else None,
        tensor_count=file.tensor_count,
        downloadable=downloadable,
    )


def model_pb(model: Model, viewer: Actor | None, *, with_versions: bool = True, file_metadata: bool = True) -> pb.Model:
    """The model as `viewer` may see it: versions they may not see are left out, newest first; without
    `file_metadata`, each file without its safetensors metadata summary (ModelView BASIC)."""
    message = pb.Model(
        model_id=model.id,
        name=model.name,
        description=model.description,
        type=model.type,
        status=model.status.value,
        tags=list(model.tags),
        creator_user_id=model.owner_id,
        creator_username=model.owner_name,
        license=pb.License(
            allow_no_credit=model.license.allow_no_credit,
            allow_commercial_use=list(model.license.allow_commercial_use),
            allow_derivatives=model.license.allow_derivatives,
            allow_different_license=model.license.allow_different_license,
        ),
        nsfw_level=model.nsfw_level,
        created_at=to_timestamp(model.created_at),
        updated_at=to_timestamp(model.updated_at),
        published_at=to_timestamp(model.published_at),
        scheduled_publish_at=to_timestamp(model.scheduled_at),
        unpublished_reason=model.unpublished_reason if model.is_editor(viewer) else "",
        version=model.version,
    )
    if not with_versions:
        return message
    for version in reversed(model.versions.values()):
        if not model.version_visible_to(version, viewer):
            continue
        message.versions.append(
            pb.ModelVersion(
                model_version_id=version.id,
                model_id=model.id,
                name=version.name,
                base_model=version.base_model,
                trained_words=list(version.trained_words),
                changelog=version.changelog,
                status=version.status.value,
                early_access_days=version.early_access_days,
                early_access_ends_at=to_timestamp(version.early_access_ends_at),
                published_at=to_timestamp(version.published_at),
                scheduled_publish_at=to_timestamp(version.scheduled_at),
                created_at=to_timestamp(version.created_at),
                updated_at=to_timestamp(version.updated_at),
                files=[
                    file_pb(f, downloadable=model.file_downloadable(version, f, viewer), metadata=file_metadata)
                    for f in version.files.values()
                ],
                parents=[
                    pb.LineageParent(
                        parent_model_id=p.parent_model_id,
                        parent_version_id=p.parent_version_id,
                        relation=_RELATION_PB[p.relation],
                        weight=p.weight,
                        attribution=p.attribution,
                    )
                    for p in version.parents
                ],
            )
        )
    return message


def lineage_pb(lineage: Lineage) -> pb.GetLineageResponse:
    return pb.GetLineageResponse(
        nodes=[
            pb.LineageNode(
                model_version_id=n.version_id,
                model_id=n.model_id,
                model_name=n.model_name,
                version_name=n.version_name,
                base_model=n.base_model,
                creator_user_id=n.owner_id,
                depth=n.depth,
            )
            for n in lineage.nodes
        ],
        edges=[
            pb.LineageEdge(
                child_version_id=e.child_version_id,
                parent_version_id=e.parent_version_id,
                relation=_RELATION_PB[e.relation],
                weight=e.weight,
                attribution=e.attribution,
            )
            for e in lineage.edges
        ],
        truncated=lineage.truncated,
    )


class ModelServicer:
    """modelhub.catalog.v1.ModelService over the ModelCatalog use cases."""

    public_methods: Final = PUBLIC_METHODS

    def __init__(self, models: ModelCatalog) -> None:
        self.models = models

    async def CreateModel(self, request: pb.CreateModelRequest, context: Context) -> pb.CreateModelResponse:  # noqa: N802 - generated name
        caller = actor()
        fields = commands.model_fields(
            request.name,
            request.description,
            request.type,
            request.tags,
            _license(request.license, request.HasField("license")),
        )
        model = await self.models.create_model(caller, fields, commands.check_request_id(request.request_id))
        return pb.CreateModelResponse(model=model_pb(model, caller))

    async def UpdateModel(self, request: pb.UpdateModelRequest, context: Context) -> pb.UpdateModelResponse:  # noqa: N802 - generated name
        caller = actor()
        model_id = _required("model_id", request.model_id)
        paths = _mask(list(request.update_mask.paths), _MODEL_MASK)
        changes = commands.model_changes(
            name=request.name if "name" in paths else None,
            description=request.description if "description" in paths else None,
            type=request.type if "type" in paths else None,
            tags=list(request.tags) if "tags" in paths else None,
            license=_license(request.license, True) if "license" in paths else None,
        )
        model = await self.models.update_model(caller, model_id, _expected(request.expected_version), changes)
        return pb.UpdateModelResponse(model=model_pb(model, caller))

    async def PublishModel(self, request: pb.PublishModelRequest, context: Context) -> pb.PublishModelResponse:  # noqa: N802 - generated name
        caller = actor()
        model = await self.models.publish_model(
            caller, _required("model_id", request.model_id), _expected(request.expected_version), _when(request)
        )
        return pb.PublishModelResponse(model=model_pb(model, caller))

    async def UnpublishModel(self, request: pb.UnpublishModelRequest, context: Context) -> pb.UnpublishModelResponse:  # noqa: N802 - generated name
        caller = actor()
        model = await self.models.unpublish_model(
            caller,
            _required("model_id", request.model_id),
            _expected(request.expected_version),
            commands.check_reason(request.reason),
            request.violation,
        )
        return pb.UnpublishModelResponse(model=model_pb(model, caller))

    async def DeleteModel(self, request: pb.DeleteModelRequest, context: Context) -> pb.DeleteModelResponse:  # noqa: N802 - generated name
        caller = actor()
        model = await self.models.delete_model(
            caller, _required("model_id", request.model_id), _expected(request.expected_version)
        )
        return pb.DeleteModelResponse(model=model_pb(model, caller))

    async def GetModel(self, request: pb.GetModelRequest, context: Context) -> pb.GetModelResponse:  # noqa: N802 - generated name
        viewer = optional_actor()
        model_id = _required("model_id", request.model_id)
        if request.view not in _MODEL_VIEWS:
            v = Violations()
            v.add("view", f"must be MODEL_VIEW_FULL or MODEL_VIEW_BASIC (or unset); got {request.view}")
            v.raise_if_any("request")
        model = await self.models.get_model(viewer, model_id)
        return pb.GetModelResponse(model=model_pb(model, viewer, file_metadata=request.view != pb.MODEL_VIEW_BASIC))

    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:  # noqa: N802 - generated name
        viewer = optional_actor()
        owner = request.creator_user_id.strip() or require_principal().id
        size = request.page.page_size or DEFAULT_PAGE_SIZE
        if size > MAX_PAGE_SIZE:
            v = Violations()
            v.add("page.page_size", f"must be at most {MAX_PAGE_SIZE}; got {size}")
            v.raise_if_any("request")
        after = _decode_cursor(request.page.cursor)
        models = await self.models.list_models(viewer, owner, after=after, limit=size + 1)
        page, more = models[:size], len(models) > size
        return pb.ListModelsResponse(
            models=[model_pb(m, viewer, with_versions=False) for m in page],
            page_info=pagination_pb2.PageInfo(next_cursor=_encode_cursor(page[-1].id) if more else ""),
        )

    async def CreateVersion(self, request: pb.CreateVersionRequest, context: Context) -> pb.CreateVersionResponse:  # noqa: N802 - generated name
        caller = actor()
        model_id = _required("model_id", request.model_id)
        fields = commands.version_fields(
            request.name, request.base_model, request.trained_words, request.changelog, request.early_access_days
        )
        model, version_id = await self.models.create_version(
            caller, model_id, _expected(request.expected_version), fields
        )
        return pb.CreateVersionResponse(model=model_pb(model, caller), model_version_id=version_id)

    async def UpdateVersion(self, request: pb.UpdateVersionRequest, context: Context) -> pb.UpdateVersionResponse:  # noqa: N802 - generated name
        caller = actor()
        version_id = _required("model_version_id", request.model_version_id)
        paths = _mask(list(request.update_mask.paths), _VERSION_MASK)
        changes = commands.version_changes(
            name=request.name if "name" in paths else None,
            base_model=request.base_model if "base_model" in paths else None,
            trained_words=list(request.trained_words) if "trained_words" in paths else None,
            changelog=request.changelog if "changelog" in paths else None,
            early_access_days=request.early_access_days if "early_access_days" in paths else None,
        )
        model = await self.models.update_version(caller, version_id, _expected(request.expected_version), changes)
        return pb.UpdateVersionResponse(model=model_pb(model, caller))

    async def PublishVersion(self, request: pb.PublishVersionRequest, context: Context) -> pb.PublishVersionResponse:  # noqa: N802 - generated name
        caller = actor()
        model = await self.models.publish_version(
            caller,
            _required("model_version_id", request.model_version_id),
            _expected(request.expected_version),
            _when(request),
        )
        return pb.PublishVersionResponse(model=model_pb(model, caller))

    async def DeleteVersion(self, request: pb.DeleteVersionRequest, context: Context) -> pb.DeleteVersionResponse:  # noqa: N802 - generated name
        caller = actor()
        model = await self.models.delete_version(
            caller, _required("model_version_id", request.model_version_id), _expected(request.expected_version)
        )
        return pb.DeleteVersionResponse(model=model_pb(model, caller))

    async def DeclareParents(self, request: pb.DeclareParentsRequest, context: Context) -> pb.DeclareParentsResponse:  # noqa: N802 - generated name
        caller = actor()
        version_id = _required("model_version_id", request.model_version_id)
        v = Violations()
        parents = []
        for index, parent in enumerate(request.parents):
            relation = RELATIONS.get(parent.relation)
            if relation is None:
                v.add(f"parents[{index}].relation", "must be one of finetune, merge, adapter-of, quantized-of, fork")
                continue
            parents.append(ParentRequest(parent.parent_version_id, relation, parent.weight, parent.attribution))
        v.raise_if_any("parents")
        model = await self.models.declare_parents(
            caller, version_id, _expected(request.expected_version), commands.parent_requests(parents)
        )
        return pb.DeclareParentsResponse(model=model_pb(model, caller))

    async def GetLineage(self, request: pb.GetLineageRequest, context: Context) -> pb.GetLineageResponse:  # noqa: N802 - generated name
        viewer = optional_actor()
        version_id = _required("model_version_id", request.model_version_id)
        depth = request.max_depth or DEFAULT_LINEAGE_DEPTH
        if depth > MAX_LINEAGE_DEPTH:
            v = Violations()
            v.add("max_depth", f"must be 1 to {MAX_LINEAGE_DEPTH} (0 means {DEFAULT_LINEAGE_DEPTH}); got {depth}")
            v.raise_if_any("request")
        direction = request.direction or pb.LINEAGE_DIRECTION_ANCESTORS
        if direction not in pb.LineageDirection.values():
            v = Violations()
            v.add("direction", "must be ANCESTORS, DESCENDANTS or BOTH")
            v.raise_if_any("request")
        lineage = await self.models.get_lineage(
            viewer,
            version_id,
            ancestors=direction in (pb.LINEAGE_DIRECTION_ANCESTORS, pb.LINEAGE_DIRECTION_BOTH),
            descendants=direction in (pb.LINEAGE_DIRECTION_DESCENDANTS, pb.LINEAGE_DIRECTION_BOTH),
            max_depth=depth,
        )
        return lineage_pb(lineage)

    async def ListBaseModels(self, request: pb.ListBaseModelsRequest, context: Context) -> pb.ListBaseModelsResponse:  # noqa: N802 - generated name
        return pb.ListBaseModelsResponse(base_models=list(self.models.base_models()))
