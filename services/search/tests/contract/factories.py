"""Small documents for the contract suite: every field has a plain default a test can override."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from modelhub.search.domain.documents import ImageDocument, ImageStats, ModelDocument, Period, PeriodStats
from modelhub.search.domain.ports import SearchIndex
from modelhub.search.domain.queries import ImagePage, ModelPage

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


def stats(**counts: int) -> PeriodStats:
    return PeriodStats(**counts)


def all_periods(**counts: int) -> dict[Period, PeriodStats]:
    """The same counts in every period."""
    return {p: PeriodStats(**counts) for p in Period}


def model(model_id: str, name: str | None = None, **fields: Any) -> ModelDocument:
    doc = ModelDocument(
        model_id=model_id,
        name=name if name is not None else f"Model {model_id}",
        description="",
        type="LORA",
        tags=(),
        trained_words=(),
        creator_user_id="u-1",
        creator_username="creator",
        base_models=("SDXL 1.0",),
        file_formats=("SafeTensor",),
        hashes=(),
        allow_no_credit=True,
        allow_commercial_use=(),
        allow_derivatives=True,
        allow_different_license=False,
        nsfw_level=1,
        status="Published",
        created_at=NOW - timedelta(days=400),
        published_at=NOW - timedelta(days=400),
        model_stream_version=1,
    )
    return replace(doc, **fields)


def image(image_id: str, **fields: Any) -> ImageDocument:
    doc = ImageDocument(
        image_id=image_id,
        creator_user_id="u-1",
        creator_username="creator",
        model_version_ids=("mv-1",),
        model_ids=("m-1",),
        tags=(),
        nsfw_level=1,
        prompt="",
        negative_prompt="",
        width=512,
        height=768,
        blurhash="LEHV6nWB2yk8pyo0adR*.7kCMdnj",
        created_at=NOW - timedelta(days=1),
        stats=ImageStats(),
        stream_version=1,
    )
    return replace(doc, **fields)


async def load(index: SearchIndex, models: Sequence[ModelDocument] = (), images: Sequence[ImageDocument] = ()) -> None:
    """Write documents and make them searchable."""
    await index.upsert_models(models)
    await index.upsert_images(images)
    await index.refresh()


def model_ids(page: ModelPage) -> list[str]:
    """The ids of a page's hits, in order."""
    return [h.model_id for h in page.hits]


def image_ids(page: ImagePage) -> list[str]:
    return [h.image_id for h in page.hits]
