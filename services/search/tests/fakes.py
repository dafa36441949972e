"""An in-memory SearchEngine behind the domain's port, for unit tests of what sits above the engine (the
indexer, the rebuild's phases). It keeps the port's write contract (version guard, refresh makes writes
visible) and answers queries naively; the engines' own behaviour is the contract suite's business."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from modelhub.search.domain.documents import ImageDocument, ModelDocument
from modelhub.search.domain.queries import (
    ImageHit,
    ImagePage,
    ImageQuery,
    ModelHit,
    ModelPage,
    ModelQuery,
    Suggestion,
    SuggestionKind,
)
from modelhub.search.domain.visibility import is_visible


@dataclass
class FakeIndex:
    name: str
    models: dict[str, ModelDocument] = field(default_factory=dict)
    images: dict[str, ImageDocument] = field(default_factory=dict)
    visible_models: dict[str, ModelDocument] = field(default_factory=dict)
    visible_images: dict[str, ImageDocument] = field(default_factory=dict)
    refreshes: int = 0
    dropped: bool = False

    async def upsert_models(self, documents: Sequence[ModelDocument]) -> None:
        for doc in documents:
            old = self.models.get(doc.model_id)
            if old is None or old.version <= doc.version:
                self.models[doc.model_id] = doc

    async def delete_models(self, model_ids: Sequence[str]) -> None:
        for model_id in model_ids:
            self.models.pop(model_id, None)

    async def upsert_images(self, documents: Sequence[ImageDocument]) -> None:
        for doc in documents:
            old = self.images.get(doc.image_id)
            if old is None or old.stream_version <= doc.stream_version:
                self.images[doc.image_id] = doc

    async def delete_images(self, image_ids: Sequence[str]) -> None:
        for image_id in image_ids:
            self.images.pop(image_id, None)

    async def refresh(self) -> None:
        self.visible_models = dict(self.models)
        self.visible_images = dict(self.images)
        self.refreshes += 1

    async def search_models(self, query: ModelQuery) -> ModelPage:
        text = query.text.lower()
        hits = [
            ModelHit(d.model_id, d.name, d.type, d.creator_username, d.nsfw_level, 0.0)
            for d in sorted(self.visible_models.values(), key=lambda d: d.model_id)
            if is_visible(d.nsfw_level, query.browsing_level) and text in d.name.lower()
        ]
        return ModelPage(hits=tuple(hits[: query.limit]), next_cursor=None)

    async def search_images(self, query: ImageQuery) -> ImagePage:
        hits = [
            ImageHit(d.image_id, d.creator_username, d.nsfw_level, d.width, d.height, d.blurhash, 0.0)
            for d in sorted(self.visible_images.values(), key=lambda d: d.image_id)
            if is_visible(d.nsfw_level, query.browsing_level) and query.text.lower() in d.prompt.lower()
        ]
        return ImagePage(hits=tuple(hits[: query.limit]), next_cursor=None)

    async def suggest(
        self, prefix: str, kinds: Sequence[SuggestionKind], browsing_level: int, limit: int
    ) -> Sequence[Suggestion]:
        return []

    async def count_models(self) -> int:
        return len(self.visible_models)


class FakeEngine:
    def __init__(self) -> None:
        self._names = (f"g{n}" for n in itertools.count(1))
        first = next(self._names)
        self.generations: dict[str, FakeIndex] = {first: FakeIndex(first)}
        self.live_name = first
        self.closed = False

    async def live(self) -> FakeIndex:
        return self.generations[self.live_name]

    async def live_generation(self) -> str:
        return self.live_name

    async def create_generation(self) -> tuple[str, FakeIndex]:
        name = next(self._names)
        self.generations[name] = FakeIndex(name)
        return name, self.generations[name]

    async def promote(self, generation: str) -> None:
        self.live_name = generation

    async def drop_generation(self, generation: str) -> None:
        if generation == self.live_name:
            raise ValueError("cannot drop the live generation")
        index = self.generations.pop(generation, None)
        if index is not None:
            index.dropped = True

    async def close(self) -> None:
        self.closed = True
