"""The search engine side of the search benchmark: realistic documents and queries, raw engine figures.

bench/search/run.py (which writes bench/results/search.json) uses these to put the engine's own figures beside
the service's, measured in the same run:

- `iter_models(n, seed)`: n model documents with realistic distributions (see `Catalogue`), generated lazily;
- `query_mix(n, seed)`: a realistic mix of model queries (text + filters + facets + sort over a period);
- `bulk_index(index, documents)`: the engine's raw bulk indexing rate (documents/s), port calls only;
- `measure_queries(index, queries)`: raw query latency (p50/p99, ms) at the port, one query at a time;
  `measure_shapes` the same per query shape (`query_shape`: browse / text / tag page, filters, Newest's window,
  Relevance, facets), to see which shapes make the tail.

Run on its own it prints the raw figures of the tantivy engine:

    python bench/search/engine_bench.py [MODELS] [QUERIES] [--index DIR]

With `--index DIR` the index is built in DIR once (kept) and later runs only query it: at 1M documents the build
takes minutes, the queries seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from modelhub.search.domain.documents import ModelDocument, Period, PeriodStats
from modelhub.search.domain.ports import SearchIndex
from modelhub.search.domain.queries import ModelFacet, ModelFilters, ModelQuery, ModelSort

NOW = datetime(2026, 3, 1, tzinfo=UTC)

# Shares on a Civitai-like hub (rounded, from its public listings): LoRAs dominate, then checkpoints.
TYPES = {
    "LORA": 0.58,
    "Checkpoint": 0.17,
    "TextualInversion": 0.07,
    "LoCon": 0.05,
    "DoRA": 0.02,
    "Controlnet": 0.01,
    "VAE": 0.01,
    "Upscaler": 0.01,
    "MotionModule": 0.005,
    "Poses": 0.01,
    "Wildcards": 0.01,
    "Workflows": 0.02,
    "Hypernetwork": 0.005,
    "AestheticGradient": 0.005,
    "Other": 0.025,
}
BASE_MODELS = {
    "SDXL 1.0": 0.22,
    "SD 1.5": 0.24,
    "Pony": 0.2,
    "Illustrious": 0.14,
    "Flux.1 D": 0.1,
    "Flux.1 S": 0.02,
    "SD 3.5": 0.02,
    "NoobAI": 0.02,
    "Other": 0.04,
}
NSFW = {1: 0.55, 2: 0.14, 4: 0.15, 8: 0.09, 16: 0.04, 1 | 4: 0.02, 0: 0.01}
FORMATS = {"SafeTensor": 0.93, "PickleTensor": 0.04, "GGUF": 0.02, "Diffusers": 0.01}
COMMERCIAL = ["Image", "RentCivit", "Rent", "Sell"]
PERIOD_SHARE = {Period.DAY: 0.004, Period.WEEK: 0.025, Period.MONTH: 0.09, Period.YEAR: 0.6, Period.ALL_TIME: 1.0}


def _words(text: str) -> list[str]:
    return text.split()


CORE_TAGS = _words(
    "anime character style concept clothing woman man realistic photorealistic portrait landscape fantasy "
    "scifi cyberpunk armor dress hair eyes background building vehicle animal cat dog dragon monster "
    "game celebrity cartoon comic painting watercolor lineart sketch 3d render pixelart chibi cute horror "
    "nature city food flower weapon sword magic steampunk retro vintage poster tool pose lighting detail"
)
ADJECTIVES = _words(
    "dreamy epic realistic soft dark bright vivid cinematic retro neon ultra hyper classic modern gothic "
    "ethereal detailed minimal painted glossy dusty frozen golden crimson silent wild mystic cosmic"
)
NOUNS = _words(
    "portrait anime style mix diffusion vision dream art lines shade light fusion world girl knight city "
    "forest ocean dragon robot flower armor texture skin eyes sketch paint tone photo cinema studio"
)
SUFFIXES = ["", "", "", " XL", " v2", " v3", " LoRA", " Pony", " Flux", " 1.5", " Turbo", " Lightning"]
FILLER = _words(
    "this model was trained on a curated dataset of high quality images works best with a weight of around "
    "use the trigger word for stronger effect recommended sampler steps cfg scale negative prompt hires fix "
    "upscale for more detail merges well with other models please leave a review if you like it"
)


K = TypeVar("K")


def _weighted(rng: random.Random, table: Mapping[K, float]) -> K:
    return rng.choices(list(table), weights=list(table.values()))[0]


class Catalogue:
    """Draws models: names from word lists, tags from a Zipf-distributed vocabulary (a few very common, a long
    tail), creators Zipf-distributed too (a few prolific), downloads log-normal (most models have a few
    hundred, a few have millions) with the other counts in proportion, publish times skewed to recent."""

    def __init__(self, seed: int, tags: int = 3_000, creators: int = 20_000) -> None:
        self.rng = random.Random(seed)
        self.tags = CORE_TAGS + [f"{self.rng.choice(ADJECTIVES)}{self.rng.choice(NOUNS)}{i}" for i in range(tags)]
        self.tag_weights = list(itertools.accumulate(1 / (rank + 1) ** 1.1 for rank in range(len(self.tags))))
        self.creators = [f"{self.rng.choice(ADJECTIVES)}_{self.rng.choice(NOUNS)}{i}" for i in range(creators)]
        self.creator_weights = list(itertools.accumulate(1 / (rank + 1) ** 0.9 for rank in range(creators)))

    def _stats(self) -> dict[Period, PeriodStats]:
        rng = self.rng
        downloads = int(rng.lognormvariate(6.0, 2.0))
        rating_share = min(max(rng.gauss(0.93, 0.06), 0.0), 1.0)
        stats = {}
        for period, share in PERIOD_SHARE.items():
            d = int(downloads * share * rng.uniform(0.3, 1.7)) if period is not Period.ALL_TIME else downloads
            reviews = int(d * rng.uniform(0.002, 0.02))
            up = int(reviews * rating_share)
            stats[period] = PeriodStats(
                downloads=d,
                favorites=int(d * rng.uniform(0.02, 0.12)),
                thumbs_up=up,
                thumbs_down=reviews - up,
                comments=int(d * rng.uniform(0.0, 0.01)),
                images=int(d * rng.uniform(0.0, 0.03)),
                collected=int(d * rng.uniform(0.0, 0.05)),
                tipped_amount=int(d * rng.uniform(0.0, 0.5)),
            )
        return stats

    def model(self, number: int) -> ModelDocument:
        rng = self.rng
        name = f"{rng.choice(ADJECTIVES).title()} {rng.choice(NOUNS).title()}{rng.choice(SUFFIXES)}"
        tags = tuple(dict.fromkeys(rng.choices(self.tags, cum_weights=self.tag_weights, k=rng.randint(2, 8))))
        creator = rng.choices(range(len(self.creators)), cum_weights=self.creator_weights)[0]
        base = _weighted(rng, BASE_MODELS)
        versions = rng.choices([1, 2, 3, 5], weights=[0.6, 0.25, 0.1, 0.05])[0]
        bases = (base,) if rng.random() < 0.9 else tuple(dict.fromkeys((base, _weighted(rng, BASE_MODELS))))
        formats = tuple(dict.fromkeys(_weighted(rng, FORMATS) for _ in range(versions)))
        hashes = tuple(
            h
            for _ in range(versions)
            for h in (f"{rng.getrandbits(256):064X}", f"{rng.getrandbits(40):010X}", f"{rng.getrandbits(32):08X}")
        )
        age_days = 1100 * rng.random() ** 2  # more models recently
        published = NOW - timedelta(days=age_days)
        return ModelDocument(
            model_id=f"m{number}",
            name=name,
            description=" ".join(rng.choices(FILLER, k=rng.randint(8, 40))),
            type=_weighted(rng, TYPES),
            tags=tags,
            trained_words=tuple(rng.choices(NOUNS, k=rng.randint(0, 2))),
            creator_user_id=f"u{creator}",
            creator_username=self.creators[creator],
            base_models=bases,
            file_formats=formats,
            hashes=hashes,
            allow_no_credit=rng.random() < 0.7,
            allow_commercial_use=tuple(c for c in COMMERCIAL if rng.random() < 0.5),
            allow_derivatives=rng.random() < 0.8,
            allow_different_license=rng.random() < 0.4,
            nsfw_level=_weighted(rng, NSFW),
            status="Published",
            created_at=published - timedelta(days=rng.random() * 3),
            published_at=published,
            version_ids=tuple(f"v{number}-{i}" for i in range(versions)),
            stats=self._stats(),
            model_stream_version=rng.randint(1, 6),
            stats_stream_version=rng.randint(1, 40),
        )


def iter_models(n: int, seed: int = 20260301) -> Iterator[ModelDocument]:
    """n model documents, m0 to m<n-1>, the same for the same seed."""
    catalogue = Catalogue(seed)
    return (catalogue.model(i) for i in range(n))


def batches(documents: Iterable[ModelDocument], size: int) -> Iterator[list[ModelDocument]]:
    iterator = iter(documents)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def query_mix(n: int, seed: int = 7) -> list[ModelQuery]:
    """A mix like a model hub's traffic: 45% browsing (a sort over a period, a type / base model filter,
    facets on the first page), 40% text searches (Relevance mostly, some typos, sometimes filtered), 15% tag
    pages. Browsing levels: 70% anonymous PG, 20% PG|PG13, 10% signed-in adults (PG to XXX)."""
    rng = random.Random(seed)
    catalogue = Catalogue(20260301)
    popular_tags = catalogue.tags[:200]
    sorts = [s for s in ModelSort if s is not ModelSort.RELEVANCE]
    queries = []
    for _ in range(n):
        level = rng.choices([1, 3, 31], weights=[0.7, 0.2, 0.1])[0]
        facets = (ModelFacet.TYPE, ModelFacet.BASE_MODEL, ModelFacet.TAG) if rng.random() < 0.5 else ()
        limit = rng.choice([20, 20, 20, 50, 100])
        kind = rng.random()
        filters = ModelFilters()
        if rng.random() < 0.35:
            filters = ModelFilters(types=(_weighted(rng, TYPES),))
        if rng.random() < 0.3:
            filters = ModelFilters(types=filters.types, base_models=(_weighted(rng, BASE_MODELS),))
        if kind < 0.45:
            query = ModelQuery(
                browsing_level=level,
                filters=filters,
                sort=rng.choice(sorts),
                period=rng.choice(list(Period)),
                facets=facets,
                limit=limit,
            )
        elif kind < 0.85:
            words = [rng.choice(NOUNS + ADJECTIVES + CORE_TAGS) for _ in range(rng.choices([1, 2, 3], [5, 4, 1])[0])]
            if rng.random() < 0.15:  # a typo: one letter replaced
                w = words[0]
                i = rng.randrange(len(w))
                words[0] = w[:i] + rng.choice("aeiourst") + w[i + 1 :]
            sort = ModelSort.RELEVANCE if rng.random() < 0.75 else rng.choice(sorts)
            query = ModelQuery(
                browsing_level=level,
                text=" ".join(words),
                filters=filters if rng.random() < 0.4 else ModelFilters(),
                sort=sort,
                period=rng.choice(list(Period)),
                facets=facets,
                limit=limit,
            )
        else:
            query = ModelQuery(
                browsing_level=level,
                filters=ModelFilters(tags=(rng.choice(popular_tags),)),
                sort=rng.choice(sorts),
                period=rng.choice(list(Period)),
                facets=facets,
                limit=limit,
            )
        queries.append(query)
    return queries


@dataclass(frozen=True)
class BulkResult:
    documents: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0


async def bulk_index(index: SearchIndex, documents: Iterable[ModelDocument], batch_size: int = 5_000) -> BulkResult:
    """Write `documents` through the port in batches, then refresh; the time covers writing and refreshing only
    (documents are generated before each batch's clock starts)."""
    count = 0
    elapsed = 0.0
    for batch in batches(documents, batch_size):
        started = time.perf_counter()
        await index.upsert_models(batch)
        elapsed += time.perf_counter() - started
        count += len(batch)
    started = time.perf_counter()
    await index.refresh()
    elapsed += time.perf_counter() - started
    return BulkResult(count, elapsed)


@dataclass(frozen=True)
class Latency:
    queries: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    hits: int


def latency(samples: Sequence[float], hits: int = 0) -> Latency:
    """Percentiles of `samples` (seconds) in milliseconds."""
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(p * len(ordered)) - 1)] * 1000

    return Latency(len(ordered), pct(0.5), pct(0.99), statistics.fmean(ordered) * 1000, ordered[-1] * 1000, hits)


async def measure_queries(index: SearchIndex, queries: Sequence[ModelQuery], warmup: int = 100) -> Latency:
    """Run the queries one at a time at the port (after `warmup` of them unmeasured); latency per query."""
    for query in queries[:warmup]:
        await index.search_models(query)
    samples = []
    hits = 0
    for query in queries:
        started = time.perf_counter()
        page = await index.search_models(query)
        samples.append(time.perf_counter() - started)
        hits += len(page.hits)
    return latency(samples, hits)


def query_shape(query: ModelQuery) -> str:
    """What decides a query's cost: browse / text / tag page, its filters, Newest's time window, Relevance,
    facets. E.g. "text type rel F" (words, a type filter, Relevance, facets asked)."""
    kind = "text" if query.text else "tag" if query.filters.tags else "browse"
    filters = "+".join(n for n, v in (("type", query.filters.types), ("base", query.filters.base_models)) if v)
    window = query.sort is ModelSort.NEWEST and query.period is not Period.ALL_TIME
    parts = [kind, filters or "nofilt", "win" if window else "", "rel" if query.sort is ModelSort.RELEVANCE else ""]
    return " ".join(p for p in [*parts, "F" if query.facets else "noF"] if p)


async def measure_shapes(
    index: SearchIndex, queries: Sequence[ModelQuery], warmup: int = 100
) -> tuple[Latency, dict[str, Latency]]:
    """`measure_queries`, and the same samples grouped by `query_shape` (slowest p99 first)."""
    for query in queries[:warmup]:
        await index.search_models(query)
    samples: dict[str, list[float]] = {}
    every = []
    for query in queries:
        started = time.perf_counter()
        await index.search_models(query)
        seconds = time.perf_counter() - started
        samples.setdefault(query_shape(query), []).append(seconds)
        every.append(seconds)
    shapes = {shape: latency(s) for shape, s in samples.items()}
    return latency(every), dict(sorted(shapes.items(), key=lambda kv: -kv[1].p99_ms))


async def measure_next_pages(index: SearchIndex, queries: Sequence[ModelQuery], warmup: int = 50) -> Latency:
    """Latency of the second page (keyset continuation) of each query that has one."""
    seconds = []
    for query in queries:
        first = await index.search_models(query)
        if first.next_cursor is None:
            continue
        started = time.perf_counter()
        await index.search_models(replace(query, cursor=first.next_cursor, facets=()))
        seconds.append(time.perf_counter() - started)
    return latency(seconds[warmup:] or seconds)


async def measure_suggestions(index: SearchIndex, prefixes: Sequence[str], warmup: int = 50) -> Latency:
    for prefix in prefixes[:warmup]:
        await index.suggest(prefix, [], 1, 10)
    samples = []
    for prefix in prefixes:
        started = time.perf_counter()
        await index.suggest(prefix, [], 1, 10)
        samples.append(time.perf_counter() - started)
    return latency(samples)


def suggestion_prefixes(n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    words = NOUNS + ADJECTIVES + CORE_TAGS
    return [rng.choice(words)[: rng.randint(1, 4)] for _ in range(n)]


async def main(models: int, queries: int, directory: str | None) -> None:
    from modelhub.search.adapters.engines.lru import LruCache
    from modelhub.search.adapters.engines.tantivy_engine import TantivyEngine

    with tempfile.TemporaryDirectory(prefix="modelhub-search-bench-") as scratch:
        root = Path(directory or scratch)
        built = (root / "LIVE").exists()
        engine = TantivyEngine(root, heap_bytes=256_000_000, threads=0)
        try:
            index = await engine.live()
            if built:
                print(f"querying the index in {root} ({await index.count_models():,} models)")
            else:
                started = time.perf_counter()
                bulk = await bulk_index(index, iter_models(models))
                print(
                    f"indexed {bulk.documents:,} models: {bulk.per_second:,.0f} docs/s (engine calls only; "
                    f"{time.perf_counter() - started:.1f} s with generating them)"
                )
            mix = query_mix(queries)
            overall, shapes = await measure_shapes(index, mix)
            print(f"queries (load average {os.getloadavg()[0]:.1f}): {overall}")
            print(f"  {'shape':28} {'n':>5} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
            for shape, f in shapes.items():
                print(f"  {shape:28} {f.queries:5} {f.p50_ms:7.1f} {f.p99_ms:7.1f} {f.max_ms:7.1f}")
            cache = index.models.facet_cache
            index.models.facet_cache = LruCache(0)  # every facet computed
            print(f"queries, facet cache off: {await measure_queries(index, mix)}")
            index.models.facet_cache = cache
            print(f"next pages: {await measure_next_pages(index, mix[: queries // 2])}")
            print(f"suggest: {await measure_suggestions(index, suggestion_prefixes(500))}")
        finally:
            await engine.close()


if __name__ == "__main__":
    arguments = sys.argv[1:]
    index_dir = None
    if "--index" in arguments:
        at = arguments.index("--index")
        index_dir = arguments[at + 1]
        del arguments[at : at + 2]
    counts = [int(a) for a in arguments[:2]]
    asyncio.run(main(counts[0] if counts else 100_000, counts[1] if len(counts) > 1 else 2_000, index_dir))
