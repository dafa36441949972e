"""The engine port: what the service needs from a search engine. One contract suite runs against every adapter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from modelhub.search.domain.documents import ImageDocument, ModelDocument
from modelhub.search.domain.queries import ImagePage, ImageQuery, ModelPage, ModelQuery, Suggestion, SuggestionKind


class SearchIndex(Protocol):
    """One generation of the index (models + images). Writes are idempotent: a document never replaces one
    with a higher `ModelDocument.version` / `ImageDocument.stream_version` (so replicas racing, redelivery and
    replay cannot regress it); deleting an absent id is a no-op. Writes become visible once `refresh` returns."""

    async def upsert_models(self, documents: Sequence[ModelDocument]) -> None: ...

    async def delete_models(self, model_ids: Sequence[str]) -> None: ...

    async def upsert_images(self, documents: Sequence[ImageDocument]) -> None: ...

    async def delete_images(self, image_ids: Sequence[str]) -> None: ...

    async def refresh(self) -> None: ...

    async def search_models(self, query: ModelQuery) -> ModelPage: ...

    async def search_images(self, query: ImageQuery) -> ImagePage: ...

    async def suggest(
        self, prefix: str, kinds: Sequence[SuggestionKind], browsing_level: int, limit: int
    ) -> Sequence[Suggestion]: ...

    async def count_models(self) -> int: ...


class SearchEngine(Protocol):
    """Holds index generations and says which one is live. A rebuild writes a fresh generation, then
    `promote`s it: queries switch atomically and never see a half-built index."""

    async def live(self) -> SearchIndex: ...

    async def live_generation(self) -> str:
        """The name of the live generation (opening the engine's live one first, like `live`)."""
        ...

    async def create_generation(self) -> tuple[str, SearchIndex]: ...

    async def promote(self, generation: str) -> None: ...

    async def drop_generation(self, generation: str) -> None: ...

    async def close(self) -> None: ...
