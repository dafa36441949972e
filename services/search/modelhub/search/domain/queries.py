"""What callers ask the index, and what it answers. Validated here, translated by each engine adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from modelhub.search.domain.documents import Period


class ModelSort(StrEnum):
    """Orders for model results (Civitai's names). Each is computed over the query's period."""

    HIGHEST_RATED = "Highest Rated"  # Bayesian weighted rating of thumbs up/down
    MOST_DOWNLOADED = "Most Downloaded"
    MOST_LIKED = "Most Liked"  # favourites
    MOST_DISCUSSED = "Most Discussed"  # comments
    MOST_COLLECTED = "Most Collected"
    MOST_IMAGES = "Most Images"
    NEWEST = "Newest"
    RELEVANCE = "Relevance"  # text score; only with a text query


class ImageSort(StrEnum):
    """Orders for gallery image results."""

    MOST_REACTIONS = "Most Reactions"
    MOST_COMMENTS = "Most Comments"
    NEWEST = "Newest"


class ModelFacet(StrEnum):
    """Fields a model query can count values of."""

    TYPE = "type"
    BASE_MODEL = "base_model"
    TAG = "tag"
    NSFW_LEVEL = "nsfw_level"
    FILE_FORMAT = "file_format"
    COMMERCIAL_USE = "commercial_use"


@dataclass(frozen=True)
class ModelFilters:
    """Every filter is an AND of its fields; inside one field the values are ORed (empty = no filter)."""

    types: tuple[str, ...] = ()
    base_models: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    creator_user_ids: tuple[str, ...] = ()
    file_formats: tuple[str, ...] = ()
    # Exact match on any hash kind, case-insensitive (the index holds upper-case hex).
    hashes: tuple[str, ...] = ()
    allow_no_credit: bool | None = None
    allow_derivatives: bool | None = None
    allow_different_license: bool | None = None
    # Models allowing every one of these commercial uses.
    allow_commercial_use: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelQuery:
    """A search over models. `browsing_level` is the caller's NSFW bit mask, applied inside the engine."""

    browsing_level: int
    text: str = ""
    filters: ModelFilters = ModelFilters()
    sort: ModelSort = ModelSort.HIGHEST_RATED
    period: Period = Period.ALL_TIME
    facets: tuple[ModelFacet, ...] = ()
    limit: int = 20
    cursor: str | None = None


@dataclass(frozen=True)
class FacetValue:
    value: str
    count: int


@dataclass(frozen=True)
class ModelHit:
    model_id: str
    name: str
    type: str
    creator_username: str
    nsfw_level: int
    # The value the page was ordered by (for display and debugging).
    sort_value: float


@dataclass(frozen=True)
class ModelPage:
    hits: tuple[ModelHit, ...]
    # None when there is nothing after this page; never set on an empty page.
    next_cursor: str | None
    facets: dict[ModelFacet, tuple[FacetValue, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageQuery:
    browsing_level: int
    text: str = ""  # over the prompt
    model_version_ids: tuple[str, ...] = ()
    model_ids: tuple[str, ...] = ()
    creator_user_ids: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    sort: ImageSort = ImageSort.NEWEST
    limit: int = 20
    cursor: str | None = None


@dataclass(frozen=True)
class ImageHit:
    image_id: str
    creator_username: str
    nsfw_level: int
    width: int
    height: int
    blurhash: str
    sort_value: float


@dataclass(frozen=True)
class ImagePage:
    hits: tuple[ImageHit, ...]
    next_cursor: str | None


class SuggestionKind(StrEnum):
    MODEL_NAME = "model_name"
    TAG = "tag"
    CREATOR = "creator"


@dataclass(frozen=True)
class Suggestion:
    kind: SuggestionKind
    text: str
    # How many visible models the suggestion leads to (for tags and creators) or 1 (model names).
    weight: int
