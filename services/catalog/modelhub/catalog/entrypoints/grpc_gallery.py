"""GalleryService: protobuf in, command, protobuf out. Errors are DomainErrors (mapped by libs/core)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Final

import grpc.aio

from modelhub.catalog.config import CatalogSettings
from modelhub.catalog.domain import commands
from modelhub.catalog.domain.commands import Actor, Violations
from modelhub.catalog.domain.community_base import check_tags
from modelhub.catalog.domain.gallery import MAX_IMAGE_BYTES
from modelhub.catalog.entrypoints.grpc_paging import id_after, page_info, page_of
from modelhub.catalog.entrypoints.grpc_support import Context, actor, optional_actor, to_timestamp
from modelhub.catalog.handlers.gallery import Gallery, ImageView, NewImage, too_large
from modelhub.catalog.images import GenerationMetadata, Resource, classify_hash
from modelhub.catalog.v1 import gallery_pb2 as pb
from modelhub.core.errors import FieldViolation, InvalidArgument
from modelhub.core.grpc.registration import add_service

SERVICE_NAME: Final = "modelhub.catalog.v1.GalleryService"
PUBLIC_METHODS: Final = frozenset(f"/{SERVICE_NAME}/{m}" for m in ("GetImage", "ListImages", "DownloadImage"))
"""Methods anonymous callers may use (they see public images only)."""
_MASK: Final = frozenset({"tags", "hidden"})
_PARTS: Final = {
    pb.IMAGE_PART_UNSPECIFIED: "file",
    pb.IMAGE_PART_FILE: "file",
    pb.IMAGE_PART_COMFYUI_PROMPT: "comfyui_prompt",
    pb.IMAGE_PART_COMFYUI_WORKFLOW: "comfyui_workflow",
}
_OPTIONAL: Final = (
    "prompt",
    "negative_prompt",
    "sampler",
    "scheduler",
    "cfg_scale",
    "steps",
    "seed",
    "clip_skip",
    "width",
    "height",
    "denoising_strength",
)


def add_to_server(servicer: GalleryServicer, server: grpc.aio.Server) -> None:
    add_service(servicer, server, pb, "GalleryService")


def _invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument(f"invalid request: {field} {description}", violations=[FieldViolation(field, description)])


def _prefixed(error: InvalidArgument, prefix: str) -> list[FieldViolation]:
    return [FieldViolation(f"{prefix}.{v.field}", v.description) for v in error.violations] or [
        FieldViolation(prefix, error.message)
    ]


def stated_metadata(
    settings: pb.GenerationSettings, resources: Iterable[pb.ImageResource]
) -> GenerationMetadata | None:
    """What the poster states, validated by GenerationMetadata (INVALID_ARGUMENT naming every bad field)."""
    violations: list[FieldViolation] = []
    parsed: list[Resource] = []
    for index, resource in enumerate(resources):
        field = f"header.resources[{index}]"
        hashed = None
        if resource.hash:
            hashed = classify_hash(resource.hash)
            if hashed is None:
                violations.append(
                    FieldViolation(f"{field}.hash", "must be hex: AutoV1 (8), AutoV2 (10), AutoV3 (12) or SHA256 (64)")
                )
                continue
        try:
            parsed.append(
                Resource(
                    kind=resource.kind,  # type: ignore[arg-type] # checked (and converted) by Resource
                    name=resource.name.strip(),
                    weight=resource.weight if resource.HasField("weight") else None,
                    hash=hashed[0] if hashed else None,
                    hash_kind=hashed[1] if hashed else None,
                )
            )
        except InvalidArgument as error:
            violations += _prefixed(error, field)
    values = {name: getattr(settings, name) for name in _OPTIONAL if settings.HasField(name)}
    if not values and not settings.extra and not parsed and not violations:
        return None
    try:
        metadata = GenerationMetadata(**values, extra=dict(settings.extra), resources=tuple(parsed))
    except InvalidArgument as error:
        violations += _prefixed(error, "header.generation")
    if violations:
        raise InvalidArgument(
            "invalid image header: check " + ", ".join(v.field for v in violations), violations=violations
        )
    return metadata


def _header(header: pb.PostImageHeader) -> tuple[str, str, tuple[str, ...], GenerationMetadata | None]:
    v = Violations()
    tags = check_tags(v, "header.tags", header.tags)
    v.raise_if_any("image header")
    return (
        commands.check_request_id(header.request_id),
        header.model_version_id.strip(),
        tags,
        stated_metadata(header.generation, header.resources),
    )


def _id(field: str, value: str) -> str:
    v = Violations()
    value = commands.require_id(v, field, value)
    v.raise_if_any("request")
    return value


class GalleryServicer:
    """modelhub.catalog.v1.GalleryService over the Gallery use cases."""

    public_methods: Final = PUBLIC_METHODS

    def __init__(self, gallery: Gallery, settings: CatalogSettings) -> None:
        self.gallery = gallery
        self.chunk_bytes = settings.download_chunk_bytes

    async def _images_pb(self, views: list[ImageView], viewer: Actor | None) -> list[pb.Image]:
        """Images as `viewer` may see them: links to versions it may not see are left out."""
        ids = {r.model_version_id for view in views for r in view.row.resources if r.model_version_id}
        ids |= {view.row.gallery_version_id for view in views if view.row.gallery_version_id}
        visible = await self.gallery.visible_version_ids(viewer, sorted(ids)) if ids else set()
        return [_image_pb(view, visible) for view in views]

    async def _image_pb(self, view: ImageView, viewer: Actor | None) -> pb.Image:
        return (await self._images_pb([view], viewer))[0]

    async def PostImage(self, requests: AsyncIterator[pb.PostImageRequest], context: Context) -> pb.PostImageResponse:  # noqa: N802 - generated name
        caller = actor()
        header: tuple[str, str, tuple[str, ...], GenerationMetadata | None] | None = None
        data = bytearray()
        async for message in requests:
            part = message.WhichOneof("part")
            if header is None:
                if part != "header":
                    raise _invalid("header", "must come first: send a PostImageHeader, then the image's bytes")
                header = _header(message.header)
            elif part == "header":
                raise _invalid("header", "must be sent once, in the first message")
            elif part == "chunk":
                data.extend(message.chunk)
                if len(data) > MAX_IMAGE_BYTES:
                    raise too_large(len(data))
        if header is None:
            raise _invalid("header", "is required: send a PostImageHeader, then the image's bytes")
        if not data:
            raise _invalid("chunk", "the image's bytes are required after the header")
        request_id, version_id, tags, stated = header
        view = await self.gallery.post_image(caller, NewImage(bytes(data), version_id, tags, stated, request_id))
        return pb.PostImageResponse(image=await self._image_pb(view, caller))

    async def GetImage(self, request: pb.GetImageRequest, context: Context) -> pb.GetImageResponse:  # noqa: N802 - generated name
        viewer = optional_actor()
        view = await self.gallery.get_image(viewer, _id("image_id", request.image_id))
        return pb.GetImageResponse(image=await self._image_pb(view, viewer))

    async def ListImages(self, request: pb.ListImagesRequest, context: Context) -> pb.ListImagesResponse:  # noqa: N802 - generated name
        viewer = optional_actor()
        given = [
            (by, value.strip())
            for by, value in (
                ("version", request.model_version_id),
                ("model", request.model_id),
                ("user", request.user_id),
            )
            if value.strip()
        ]
        if len(given) != 1:
            raise _invalid("model_version_id", "name exactly one of model_version_id, model_id, user_id")
        (by, key), page = given[0], page_of(request.page, "images")
        views = await self.gallery.list_images(viewer, by, key, after=id_after(page), limit=page.size + 1)
        shown = views[: page.size]
        return pb.ListImagesResponse(
            images=await self._images_pb(shown, viewer),
            page_info=page_info("images", views, page.size, [shown[-1].row.image_id] if shown else None),
        )

    async def UpdateImage(self, request: pb.UpdateImageRequest, context: Context) -> pb.UpdateImageResponse:  # noqa: N802 - generated name
        caller = actor()
        image_id = _id("image_id", request.image_id)
        paths = set(request.update_mask.paths)
        v = Violations()
        if not paths or paths - _MASK:
            v.add("update_mask", f"name the fields to change, among: {', '.join(sorted(_MASK))}")
        if request.expected_version < 1:
            v.add("expected_version", "is required: send the image's `version` from your last read (GetImage)")
        tags = check_tags(v, "tags", request.tags) if "tags" in paths else None
        v.raise_if_any("request")
        hidden = request.hidden if "hidden" in paths else None
        view = await self.gallery.update_image(caller, image_id, request.expected_version, tags, hidden)
        return pb.UpdateImageResponse(image=await self._image_pb(view, caller))

    async def DeleteImage(self, request: pb.DeleteImageRequest, context: Context) -> pb.DeleteImageResponse:  # noqa: N802 - generated name
        caller = actor()
        image_id = _id("image_id", request.image_id)
        view = await self.gallery.delete_image(caller, image_id, request.expected_version or None)
        return pb.DeleteImageResponse(image=await self._image_pb(view, caller))

    async def DownloadImage(  # noqa: N802 - generated name
        self, request: pb.DownloadImageRequest, context: Context
    ) -> AsyncIterator[pb.DownloadImageResponse]:
        viewer = optional_actor()
        part = _PARTS.get(request.part)
        if part is None:
            raise _invalid("part", "must be FILE, COMFYUI_PROMPT or COMFYUI_WORKFLOW")
        mime, size, handle = await self.gallery.open_part(viewer, _id("image_id", request.image_id), part)
        try:
            first = True
            while chunk := await asyncio.to_thread(handle.read, self.chunk_bytes):
                yield pb.DownloadImageResponse(
                    mime_type=mime if first else "", size_bytes=size if first else 0, chunk=chunk
                )
                first = False
        finally:
            handle.close()


def _image_pb(view: ImageView, visible: set[str]) -> pb.Image:
    row = view.row
    g = row.generation
    generation = pb.GenerationSettings(
        extra=dict(g.extra),
        source=g.source,
        has_comfyui_prompt=bool(g.comfyui_prompt_sha256),
        has_comfyui_workflow=bool(g.comfyui_workflow_sha256),
    )
    for name in _OPTIONAL:
        value = getattr(g, name)
        if value is not None:
            setattr(generation, name, value)
    resources = [
        pb.ImageResource(
            kind=r.kind,
            name=r.name,
            weight=r.weight,
            hash=r.hash,
            hash_kind=r.hash_kind,
            model_version_id=r.model_version_id if r.model_version_id in visible else "",
            model_id=r.model_id if r.model_version_id in visible else "",
        )
        for r in row.resources
    ]
    gallery_visible = row.gallery_version_id in visible
    version_ids = [row.gallery_version_id] if gallery_visible else []
    version_ids += [r.model_version_id for r in row.resources if r.model_version_id in visible]
    return pb.Image(
        image_id=row.image_id,
        status=row.status,
        creator_user_id=row.owner_id,
        creator_username=row.owner_name,
        model_version_id=row.gallery_version_id if gallery_visible else "",
        model_id=row.gallery_model_id if gallery_visible else "",
        mime_type=row.mime_type,
        size_bytes=row.size_bytes,
        width=row.width,
        height=row.height,
        phash=row.phash,
        blurhash=row.blurhash,
        nsfw_level=row.nsfw_level,
        tags=list(row.tags),
        generation=generation,
        resources=resources,
        model_version_ids=list(dict.fromkeys(version_ids)),
        counts=pb.ImageCounts(
            reactions=view.counts.reactions, comments=view.counts.comments, collected=view.counts.collected
        ),
        created_at=to_timestamp(row.created_at),
        updated_at=to_timestamp(row.updated_at),
        version=row.version,
    )
