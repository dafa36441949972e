"""The engine contract suite: every test runs against each SearchEngine adapter.

tantivy always (on a temporary directory); Elasticsearch when MODELHUB_TEST_ELASTICSEARCH_URL names a cluster
(each test then owns indices under a unique prefix, deleted afterwards).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from modelhub.search.domain.ports import SearchEngine, SearchIndex

from .factories import NOW

ES_URL = os.environ.get("MODELHUB_TEST_ELASTICSEARCH_URL", "")


class FakeClock:
    """The engines' clock (Newest over a period is counted back from it); moves only when told to."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(
    params=[
        "tantivy",
        pytest.param(
            "elasticsearch",
            marks=pytest.mark.skipif(not ES_URL, reason="set MODELHUB_TEST_ELASTICSEARCH_URL to run against a cluster"),
        ),
    ]
)
def engine_factory(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Callable[[], SearchEngine]:
    """Makes engines on this test's storage (a directory, or an index prefix): a second one sees the first's."""
    if request.param == "tantivy":
        from modelhub.search.adapters.engines.tantivy_engine import TantivyEngine

        return lambda: TantivyEngine(tmp_path / "index", heap_bytes=16_000_000, clock=clock)

    from elasticsearch import AsyncElasticsearch

    from modelhub.search.adapters.engines.elasticsearch_engine import ElasticsearchEngine

    prefix = f"modelhub-test-{os.urandom(5).hex()}"
    return lambda: ElasticsearchEngine(AsyncElasticsearch(ES_URL), prefix=prefix, clock=clock)


@pytest.fixture
async def search_engine(engine_factory: Callable[[], SearchEngine]) -> AsyncIterator[SearchEngine]:
    engine = engine_factory()
    try:
        yield engine
    finally:
        await engine.close()
        await _drop_test_indices(engine)


async def _drop_test_indices(engine: SearchEngine) -> None:
    """Elasticsearch keeps indices after the test: delete this test's."""
    from modelhub.search.adapters.engines.elasticsearch_engine import ElasticsearchEngine

    if isinstance(engine, ElasticsearchEngine):
        from elasticsearch import AsyncElasticsearch

        async with AsyncElasticsearch(ES_URL) as client:
            await client.indices.delete(index=f"{engine.prefix}-*", ignore_unavailable=True, allow_no_indices=True)


@pytest.fixture
async def index(search_engine: SearchEngine) -> SearchIndex:
    return await search_engine.live()
