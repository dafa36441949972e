"""The cluster engine: Elasticsearch through its official async client.

Each generation is a pair of indices, `<prefix>-models-<generation>` and `<prefix>-images-<generation>`; the
aliases `<prefix>-models` and `<prefix>-images` name the live pair. `promote` moves both aliases in one
`_aliases` request, which Elasticsearch applies atomically: a query goes to the old pair or the new one, never
to a half-built index, and never fails for the swap.

Writes use the bulk API with explicit ids and external versioning (ModelDocument.version /
ImageDocument.stream_version): a stale or repeated write gets 409 and is a success here (the index already
holds that state or a newer one). Items refused with 429 are retried with exponential backoff by the client's
bulk helper; any other failed item raises `IndexWriteError` after the whole batch was sent, so the caller
(the consumer) retries the batch, which is idempotent. Deletes are unconditional (404 is a success); ordering
a delete against writes of the same item is the writer's job (the service serializes them per item).
Writes become visible when `refresh` returns.

Request bodies are built by es_translation (pure, unit-tested); this module only sends them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from elasticsearch import AsyncElasticsearch, NotFoundError
from elasticsearch.helpers import async_streaming_bulk

from modelhub.core.errors import FailedPrecondition, NotFound
from modelhub.search.adapters.engines import es_translation as es
from modelhub.search.domain.documents import ImageDocument, ModelDocument
from modelhub.search.domain.queries import ImagePage, ImageQuery, ModelPage, ModelQuery, Suggestion, SuggestionKind
from modelhub.search.domain.suggestions import interleave
from modelhub.search.domain.validation import check_image_query, check_model_query, check_suggest

Clock = Callable[[], datetime]

BULK_CHUNK = 500
BULK_MAX_RETRIES = 8
BULK_INITIAL_BACKOFF = 0.5
BULK_MAX_BACKOFF = 30.0


class IndexWriteError(RuntimeError):
    """Some documents of a bulk request were refused for a reason other than a stale version."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ElasticsearchIndex:
    """One generation (a models index and an images index, or the live aliases); the SearchIndex port."""

    def __init__(self, client: AsyncElasticsearch, models: str, images: str, clock: Clock = _utcnow) -> None:
        self.client = client
        self.models = models
        self.images = images
        self._clock = clock

    async def _bulk(self, actions: list[dict[str, Any]]) -> None:
        failures: list[str] = []
        async for ok, item in async_streaming_bulk(
            self.client,
            actions,
            chunk_size=BULK_CHUNK,
            max_retries=BULK_MAX_RETRIES,
            initial_backoff=BULK_INITIAL_BACKOFF,
            max_backoff=BULK_MAX_BACKOFF,
            raise_on_error=False,
            raise_on_exception=True,
            yield_ok=False,
        ):
            if ok:
                continue
            op, result = next(iter(item.items()))
            status = result.get("status")
            if (op == "index" and status == 409) or (op == "delete" and status == 404):
                continue  # stale or repeated version / already absent: the index holds the outcome already
            failures.append(f"{op} {result.get('_id')}: {status} {result.get('error')}")
        if failures:
            raise IndexWriteError(f"{len(failures)} document(s) not written, e.g. {failures[0]}")

    async def upsert_models(self, documents: Sequence[ModelDocument]) -> None:
        if documents:
            await self._bulk(es.model_actions(self.models, documents))

    async def delete_models(self, model_ids: Sequence[str]) -> None:
        if model_ids:
            await self._bulk([es.delete_action(self.models, i) for i in model_ids])

    async def upsert_images(self, documents: Sequence[ImageDocument]) -> None:
        if documents:
            await self._bulk(es.image_actions(self.images, documents))

    async def delete_images(self, image_ids: Sequence[str]) -> None:
        if image_ids:
            await self._bulk([es.delete_action(self.images, i) for i in image_ids])

    async def refresh(self) -> None:
        await self.client.indices.refresh(index=f"{self.models},{self.images}")

    async def count_models(self) -> int:
        response = await self.client.count(index=self.models)
        return int(response["count"])

    async def search_models(self, query: ModelQuery) -> ModelPage:
        search = check_model_query(query)
        response = await self.client.search(index=self.models, body=es.model_search_body(search, self._clock()))
        return es.model_page(search, response.body)

    async def search_images(self, query: ImageQuery) -> ImagePage:
        search = check_image_query(query)
        response = await self.client.search(index=self.images, body=es.image_search_body(search))
        return es.image_page(search, response.body)

    async def suggest(
        self, prefix: str, kinds: Sequence[SuggestionKind], browsing_level: int, limit: int
    ) -> Sequence[Suggestion]:
        request = check_suggest(prefix, kinds, browsing_level, limit)
        bodies = es.suggest_bodies(request)
        responses = await asyncio.gather(
            *(self.client.search(index=self.models, body=body) for body in bodies.values())
        )
        groups = [
            es.suggestions(kind, response.body, request.limit) for kind, response in zip(bodies, responses, strict=True)
        ]
        return interleave(groups, request.limit)


class ElasticsearchEngine:
    """Generations as index pairs, the live one behind two aliases; the SearchEngine port."""

    def __init__(
        self,
        client: AsyncElasticsearch,
        *,
        prefix: str = "modelhub",
        shards: int = 1,
        replicas: int = 0,
        clock: Clock = _utcnow,
        owns_client: bool = True,
    ) -> None:
        self.client = client
        self.prefix = es.check_index_prefix(prefix)
        self.shards = shards
        self.replicas = replicas
        self._clock = clock
        self._owns_client = owns_client
        self._lock = asyncio.Lock()
        self._started = False

    @classmethod
    async def open(
        cls, url: str, *, prefix: str = "modelhub", api_key: str | None = None, clock: Clock = _utcnow
    ) -> ElasticsearchEngine:
        """An engine on the cluster at `url` (comma-separated for several nodes), with its live generation
        ready (created on a cluster that has none)."""
        hosts = [u.strip() for u in url.split(",") if u.strip()]
        client = AsyncElasticsearch(hosts, api_key=api_key, retry_on_timeout=True, max_retries=3)
        engine = cls(client, prefix=prefix, clock=clock)
        await engine.live()
        return engine

    @property
    def models_alias(self) -> str:
        return f"{self.prefix}-models"

    @property
    def images_alias(self) -> str:
        return f"{self.prefix}-images"

    def _indices(self, generation: str) -> tuple[str, str]:
        return f"{self.models_alias}-{generation}", f"{self.images_alias}-{generation}"

    async def _alias_targets(self, alias: str) -> list[str]:
        try:
            response = await self.client.indices.get_alias(name=alias)
        except NotFoundError:
            return []
        return sorted(response.body)

    async def _create(self) -> str:
        generation = f"g{time.time_ns():x}-{secrets.token_hex(3)}"
        models, images = self._indices(generation)
        settings = es.index_settings(self.shards, self.replicas)
        await self.client.indices.create(index=models, settings=settings, mappings=es.model_mappings())
        await self.client.indices.create(index=images, settings=settings, mappings=es.image_mappings())
        return generation

    async def _swap(self, generation: str) -> None:
        models, images = self._indices(generation)
        actions: list[dict[str, Any]] = []
        for alias, target in ((self.models_alias, models), (self.images_alias, images)):
            actions += [{"remove": {"index": old, "alias": alias}} for old in await self._alias_targets(alias)]
            actions.append({"add": {"index": target, "alias": alias, "is_write_index": True}})
        await self.client.indices.update_aliases(actions=actions)

    async def live(self) -> ElasticsearchIndex:
        if not self._started:
            async with self._lock:
                if not self._started:
                    if not await self._alias_targets(self.models_alias):
                        await self._swap(await self._create())
                    self._started = True
        return ElasticsearchIndex(self.client, self.models_alias, self.images_alias, self._clock)

    async def live_generation(self) -> str:
        """The generation the aliases point to."""
        await self.live()
        targets = await self._alias_targets(self.models_alias)
        if len(targets) != 1:
            raise FailedPrecondition(f"alias {self.models_alias} points to {targets}, not to one index")
        return targets[0].removeprefix(f"{self.models_alias}-")

    async def create_generation(self) -> tuple[str, ElasticsearchIndex]:
        await self.live()
        generation = await self._create()
        models, images = self._indices(generation)
        return generation, ElasticsearchIndex(self.client, models, images, self._clock)

    async def promote(self, generation: str) -> None:
        """Point both aliases at `generation` in one atomic alias update."""
        models, images = self._indices(generation)
        if not await self.client.indices.exists(index=f"{models},{images}"):
            raise NotFound(f"no index generation {generation!r}: create it with create_generation first")
        await self.client.indices.refresh(index=f"{models},{images}")
        async with self._lock:
            await self._swap(generation)

    async def drop_generation(self, generation: str) -> None:
        """Delete a generation's indices unless they are live (a no-op for one that does not exist)."""
        models, images = self._indices(generation)
        if models in await self._alias_targets(self.models_alias):
            raise FailedPrecondition(f"generation {generation!r} is live: promote another one before dropping it")
        await self.client.indices.delete(index=f"{models},{images}", ignore_unavailable=True)

    async def close(self) -> None:
        if self._owns_client:
            await self.client.close()
