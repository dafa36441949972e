"""What the index holds: one document per public model and per public gallery image.

Documents are built from the catalog's state-carrying events (catalog.ModelSnapshot,
catalog.ModelStatsUpdated, catalog.ImageSnapshot). Each carries the stream versions it was built from, so an
older state never overwrites a newer one (see `newer_than`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Period(StrEnum):
    """The window a sort's metric is counted over (Civitai's names)."""

    DAY = "Day"
    WEEK = "Week"
    MONTH = "Month"
    YEAR = "Year"
    ALL_TIME = "AllTime"


@dataclass(frozen=True)
class PeriodStats:
    """A model's counts over one period."""

    downloads: int = 0
    favorites: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    comments: int = 0
    images: int = 0
    collected: int = 0
    tipped_amount: int = 0


@dataclass(frozen=True)
class ModelDocument:
    """A published model with its public versions, as the index holds it."""

    model_id: str
    name: str
    description: str
    type: str
    tags: tuple[str, ...]
    trained_words: tuple[str, ...]
    creator_user_id: str
    creator_username: str
    base_models: tuple[str, ...]
    file_formats: tuple[str, ...]
    # Upper-case hex of every hash kind of every file (exact match only).
    hashes: tuple[str, ...]
    allow_no_credit: bool
    allow_commercial_use: tuple[str, ...]
    allow_derivatives: bool
    allow_different_license: bool
    nsfw_level: int
    status: str
    created_at: datetime
    published_at: datetime | None
    version_ids: tuple[str, ...] = ()
    stats: dict[Period, PeriodStats] = field(default_factory=dict)
    # The stream versions this document was built from: the model stream and the model's stats stream.
    model_stream_version: int = 0
    stats_stream_version: int = 0

    @property
    def version(self) -> int:
        """Grows whenever either source stream moves on, so a later document always has a higher version."""
        return self.model_stream_version + self.stats_stream_version


@dataclass(frozen=True)
class ImageStats:
    """A gallery image's counts."""

    reactions: int = 0
    comments: int = 0
    collected: int = 0


@dataclass(frozen=True)
class ImageDocument:
    """A published gallery image, as the index holds it."""

    image_id: str
    creator_user_id: str
    creator_username: str
    model_version_ids: tuple[str, ...]
    model_ids: tuple[str, ...]
    tags: tuple[str, ...]
    nsfw_level: int
    prompt: str
    negative_prompt: str
    width: int
    height: int
    blurhash: str
    created_at: datetime
    stats: ImageStats = ImageStats()
    stream_version: int = 0
