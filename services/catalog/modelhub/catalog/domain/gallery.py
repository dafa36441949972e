"""The gallery image aggregate (stream "image-<id>"), and the pure rules of posting: how metadata read from the
file and metadata the poster states are merged, and how a resource is linked to a catalog version.

Metadata merge: the file is the evidence. Each field the file carries wins; fields it lacks are taken from
what the poster states; the poster's resources are added when the file does not name them already (same
hash, or same kind and name). `source` says where the fields came from: the file's parser when it had any.

Linking: a resource named by hash is linked to the oldest visible version holding a file with that hash (the
same bytes uploaded twice are the same resource; the oldest is the original); a resource named only by name
is linked when exactly one visible version has a file of that name, and left unlinked (name kept) otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Final

from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.community_base import CommunityAggregate
from modelhub.catalog.domain.community_events import (
    GenerationSettings,
    ImageCountsPublished,
    ImageDeleted,
    ImagePosted,
    ImageResource,
    ImageResourcesLinked,
    ImageUpdated,
)
from modelhub.catalog.images import GenerationMetadata, Resource
from modelhub.core.errors import FailedPrecondition

MAX_IMAGE_BYTES: Final = 32 * 1024 * 1024
"""The largest image file PostImage takes."""


class ImageStatus(StrEnum):
    PUBLISHED = "Published"
    HIDDEN = "Hidden"
    DELETED = "Deleted"


def image_stream(image_id: str) -> str:
    return f"image-{image_id}"


@dataclass(frozen=True)
class ImageCounts:
    """What the image's snapshot counts: favourites (reactions), comments, collections holding it."""

    reactions: int = 0
    comments: int = 0
    collected: int = 0


@dataclass(frozen=True)
class StoredImage:
    """The file as stored and fingerprinted."""

    blob_sha256: str
    mime_type: str
    size_bytes: int
    width: int
    height: int
    phash: str
    blurhash: str


@dataclass(frozen=True)
class VersionRef:
    """A catalog version a resource may be linked to."""

    model_version_id: str
    model_id: str


class Image(CommunityAggregate):
    kind = "image"

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.owner_name = ""
        self.status = ImageStatus.PUBLISHED
        self.gallery: VersionRef | None = None
        self.stored = StoredImage("", "", 0, 0, 0, "", "")
        self.tags: tuple[str, ...] = ()
        self.generation = GenerationSettings()
        self.resources: tuple[ImageResource, ...] = ()
        self.nsfw_level = 0
        self.request_id = ""
        self.created_at: datetime | None = None
        self.updated_at: datetime | None = None
        self.counts = ImageCounts()
        """The counts of the last snapshot appended (the stats job appends a new one when they change)."""

    @property
    def public(self) -> bool:
        return self.status == ImageStatus.PUBLISHED

    @property
    def linked_versions(self) -> list[VersionRef]:
        """Every version that made the image: the gallery's, then linked resources', without repeats."""
        refs = [self.gallery] if self.gallery else []
        refs += [VersionRef(r.model_version_id, r.model_id) for r in self.resources if r.model_version_id]
        return list(dict.fromkeys(refs))

    def apply(self, event: object) -> None:
        match event:
            case ImagePosted():
                self.exists = True
                self.id, self.owner_id, self.owner_name = event.image_id, event.owner_user_id, event.owner_username
                if event.model_version_id:
                    self.gallery = VersionRef(event.model_version_id, event.model_id)
                self.stored = StoredImage(
                    event.blob_sha256,
                    event.mime_type,
                    event.size_bytes,
                    event.width,
                    event.height,
                    event.phash,
                    event.blurhash,
                )
                self.tags, self.generation, self.resources = event.tags, event.generation, event.resources
                self.request_id = event.request_id
                self.created_at = self.updated_at = event.at
            case ImageUpdated():
                self.tags = event.tags
                self.status = ImageStatus.HIDDEN if event.hidden else ImageStatus.PUBLISHED
                self.updated_at = event.at
            case ImageDeleted():
                self.status = ImageStatus.DELETED
                self.updated_at = event.at
            case ImageResourcesLinked():
                self.resources = event.resources
            case ImageCountsPublished():
                self.counts = ImageCounts(event.reactions, event.comments, event.collected)

    @classmethod
    def post(
        cls,
        image_id: str,
        actor: Actor,
        *,
        gallery: VersionRef | None,
        stored: StoredImage,
        tags: tuple[str, ...],
        generation: GenerationSettings,
        resources: tuple[ImageResource, ...],
        request_id: str,
        now: datetime,
    ) -> Image:
        image = cls(image_stream(image_id))
        image.record(
            ImagePosted(
                image_id=image_id,
                owner_user_id=actor.id,
                owner_username=actor.name or actor.id,
                model_version_id=gallery.model_version_id if gallery else "",
                model_id=gallery.model_id if gallery else "",
                blob_sha256=stored.blob_sha256,
                mime_type=stored.mime_type,
                size_bytes=stored.size_bytes,
                width=stored.width,
                height=stored.height,
                phash=stored.phash,
                blurhash=stored.blurhash,
                tags=tags,
                generation=generation,
                resources=resources,
                request_id=request_id,
                at=now,
            )
        )
        return image

    def update(self, actor: Actor, tags: tuple[str, ...] | None, hidden: bool | None, now: datetime) -> None:
        """Edit tags and/or hide or show the image; no event when nothing changes."""
        self._require_not_deleted()
        new_tags = self.tags if tags is None else tags
        new_hidden = (self.status == ImageStatus.HIDDEN) if hidden is None else hidden
        if new_tags != self.tags or new_hidden != (self.status == ImageStatus.HIDDEN):
            self.record(ImageUpdated(self.id, new_tags, new_hidden, actor.id, now))

    def delete(self, actor: Actor, now: datetime) -> None:
        """Delete for good; deleting a deleted image changes nothing (a retried delete succeeds)."""
        if self.status != ImageStatus.DELETED:
            self.record(ImageDeleted(self.id, actor.id, now))

    def link_resources(self, links: dict[int, VersionRef], now: datetime) -> None:
        """Link unlinked resources (by position) to versions found since the image was posted. A resource that
        is linked already keeps its link; nothing is recorded when nothing changes (a re-run) or the image is
        deleted."""
        if self.status == ImageStatus.DELETED:
            return
        resources = list(self.resources)
        for position, ref in links.items():
            if 0 <= position < len(resources) and not resources[position].model_version_id:
                resources[position] = replace(
                    resources[position], model_version_id=ref.model_version_id, model_id=ref.model_id
                )
        if tuple(resources) != self.resources:
            self.record(ImageResourcesLinked(self.id, tuple(resources), now))

    def _require_not_deleted(self) -> None:
        if self.status == ImageStatus.DELETED:
            raise FailedPrecondition(
                f"image {self.id} is deleted", reason="IMAGE_DELETED", metadata={"image_id": self.id}
            )


# -- posting rules (pure) ---------------------------------------------------------------------------------

_FIELDS: Final = (
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


def _same_resource(a: Resource, b: Resource) -> bool:
    if a.hash and b.hash:
        return a.hash == b.hash
    return a.kind == b.kind and a.name.casefold() == b.name.casefold()


def merge_metadata(from_file: GenerationMetadata | None, stated: GenerationMetadata | None) -> GenerationMetadata:
    """The file's metadata, completed by what the poster states (see the module doc)."""
    if from_file is None:
        return stated or GenerationMetadata()
    if stated is None:
        return from_file
    filled = {name: getattr(stated, name) for name in _FIELDS if getattr(from_file, name) is None}
    extra = {**stated.extra, **from_file.extra}
    resources = list(from_file.resources)
    resources += [r for r in stated.resources if not any(_same_resource(r, f) for f in from_file.resources)]
    return replace(from_file, **filled, extra=extra, resources=tuple(resources))


def choose_link(resource: Resource, by_hash: list[VersionRef], by_name: list[VersionRef]) -> VersionRef | None:
    """The version a resource is linked to (see the module doc): `by_hash` and `by_name` are the visible
    versions whose files match the resource's hash / name."""
    if resource.hash:
        return hash_link(by_hash)
    candidates = set(by_name)
    return candidates.pop() if len(candidates) == 1 else None


def hash_link(by_hash: list[VersionRef]) -> VersionRef | None:
    """The version a resource named by hash is linked to: the oldest of those holding a file with the hash."""
    return min(by_hash, key=lambda ref: ref.model_version_id) if by_hash else None


def name_key(name: str) -> str:
    """How resource and file names are compared: the base name, without extension, lower case
    ("SDXL/juggernautXL_v9.safetensors" and "juggernautxl_v9" match). Its SQL twin is
    adapters/community_queries.NAME_KEY_SQL."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    stem, dot, extension = base.rpartition(".")
    if dot and stem and 1 <= len(extension) <= 12 and extension.isalnum():
        base = stem
    return base.lower()


def settings_of(meta: GenerationMetadata, prompt_sha256: str = "", workflow_sha256: str = "") -> GenerationSettings:
    """The settings stored in the event: ComfyUI's JSON is replaced by the SHA256 of its stored blob."""
    return GenerationSettings(
        **{name: getattr(meta, name) for name in _FIELDS},
        extra=dict(meta.extra),
        source=meta.source.value,
        comfyui_prompt_sha256=prompt_sha256,
        comfyui_workflow_sha256=workflow_sha256,
    )


def resource_of(resource: Resource, link: VersionRef | None) -> ImageResource:
    return ImageResource(
        kind=resource.kind.value,
        name=resource.name,
        weight=resource.weight,
        hash=resource.hash or "",
        hash_kind=resource.hash_kind.value if resource.hash_kind else "",
        model_version_id=link.model_version_id if link else "",
        model_id=link.model_id if link else "",
    )
