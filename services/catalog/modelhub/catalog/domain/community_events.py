"""Domain events of the gallery and community aggregates (payloads in catalog_community.proto and catalog.proto).

Field names equal the payload messages' field names, so adapters/community_events.py maps both ways with one
generic function. `at` is when the catalog decided the change (its injected clock); `by_user_id` who asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class GenerationSettings:
    """How an image was made, as stored with it (ComfyUI's JSON is referenced by blob, not carried)."""

    prompt: str | None = None
    negative_prompt: str | None = None
    sampler: str | None = None
    scheduler: str | None = None
    cfg_scale: float | None = None
    steps: int | None = None
    seed: int | None = None
    clip_skip: int | None = None
    width: int | None = None
    height: int | None = None
    denoising_strength: float | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    source: str = "user"
    comfyui_prompt_sha256: str = ""
    comfyui_workflow_sha256: str = ""


@dataclass(frozen=True)
class ImageResource:
    """A resource used to make an image, with the version it was linked to ("" when none)."""

    kind: str
    name: str
    weight: float | None = None
    hash: str = ""
    hash_kind: str = ""
    model_version_id: str = ""
    model_id: str = ""


# -- images (stream image-<id>) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ImagePosted:
    image_id: str
    owner_user_id: str
    owner_username: str
    model_version_id: str
    model_id: str
    blob_sha256: str
    mime_type: str
    size_bytes: int
    width: int
    height: int
    phash: str
    blurhash: str
    tags: tuple[str, ...]
    generation: GenerationSettings
    resources: tuple[ImageResource, ...]
    request_id: str
    at: datetime


@dataclass(frozen=True)
class ImageUpdated:
    image_id: str
    tags: tuple[str, ...]
    hidden: bool
    by_user_id: str
    at: datetime


@dataclass(frozen=True)
class ImageResourcesLinked:
    """Unlinked resources got linked (a hash they name became known later); `resources` is the whole list."""

    image_id: str
    resources: tuple[ImageResource, ...]
    at: datetime


@dataclass(frozen=True)
class ImageDeleted:
    image_id: str
    by_user_id: str
    at: datetime


@dataclass(frozen=True)
class ImageCountsPublished:
    """The counts a catalog.ImageSnapshot carried (the snapshot itself is built in the adapters)."""

    image_id: str
    reactions: int
    comments: int
    collected: int


# -- reviews (stream review-<version>-<user>) ------------------------------------------------------------


@dataclass(frozen=True)
class ReviewCreated:
    """catalog.ReviewCreated (the committed contract): once per user and version, ever."""

    review_id: str
    model_id: str
    model_version_id: str
    author_user_id: str
    recommended: bool
    created_at: datetime


@dataclass(frozen=True)
class ReviewWritten:
    review_id: str
    model_id: str
    model_version_id: str
    author_user_id: str
    author_username: str
    recommended: bool
    text: str
    by_user_id: str
    at: datetime


@dataclass(frozen=True)
class ReviewDeleted:
    review_id: str
    model_id: str
    model_version_id: str
    author_user_id: str
    by_user_id: str
    at: datetime


# -- comments (stream comment-<id>) ----------------------------------------------------------------------


@dataclass(frozen=True)
class CommentPosted:
    comment_id: str
    subject_kind: str
    subject_id: str
    parent_comment_id: str
    author_user_id: str
    author_username: str
    body: str
    request_id: str
    at: datetime


@dataclass(frozen=True)
class CommentEdited:
    comment_id: str
    body: str
    by_user_id: str
    at: datetime


@dataclass(frozen=True)
class CommentDeleted:
    comment_id: str
    by_user_id: str
    at: datetime


# -- favourites and follows ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FavoriteAdded:
    target_kind: str
    target_id: str
    user_id: str
    at: datetime


@dataclass(frozen=True)
class FavoriteRemoved:
    target_kind: str
    target_id: str
    user_id: str
    at: datetime


@dataclass(frozen=True)
class UserFollowed:
    follower_user_id: str
    followee_user_id: str
    at: datetime


@dataclass(frozen=True)
class UserUnfollowed:
    follower_user_id: str
    followee_user_id: str
    at: datetime


# -- collections (stream collection-<id>) ----------------------------------------------------------------


@dataclass(frozen=True)
class CollectionCreated:
    collection_id: str
    owner_user_id: str
    owner_username: str
    name: str
    description: str
    visibility: str
    item_kind: str
    request_id: str
    at: datetime


@dataclass(frozen=True)
class CollectionUpdated:
    collection_id: str
    name: str
    description: str
    visibility: str
    by_user_id: str
    at: datetime


@dataclass(frozen=True)
class CollectionItemAdded:
    collection_id: str
    item_kind: str
    item_id: str
    by_user_id: str
    at: datetime


@dataclass(frozen=True)
class CollectionItemRemoved:
    collection_id: str
    item_kind: str
    item_id: str
    by_user_id: str
    at: datetime


@dataclass(frozen=True)
class CollectionDeleted:
    collection_id: str
    by_user_id: str
    at: datetime


# -- stats (stream model-stats-<model_id>) ---------------------------------------------------------------


@dataclass(frozen=True)
class PeriodStats:
    """A model's counts over one period (field names of CatalogModelPeriodStats)."""

    period: str
    downloads: int = 0
    favorites: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    comments: int = 0
    images: int = 0
    collected: int = 0
    tipped_amount: int = 0


@dataclass(frozen=True)
class ModelStatsUpdated:
    """catalog.ModelStatsUpdated (the committed contract): absolute counts per period."""

    model_id: str
    periods: tuple[PeriodStats, ...]
    computed_at: datetime


CommunityEvent = (
    ImagePosted
    | ImageUpdated
    | ImageDeleted
    | ImageResourcesLinked
    | ImageCountsPublished
    | ReviewCreated
    | ReviewWritten
    | ReviewDeleted
    | CommentPosted
    | CommentEdited
    | CommentDeleted
    | FavoriteAdded
    | FavoriteRemoved
    | UserFollowed
    | UserUnfollowed
    | CollectionCreated
    | CollectionUpdated
    | CollectionItemAdded
    | CollectionItemRemoved
    | CollectionDeleted
    | ModelStatsUpdated
)
