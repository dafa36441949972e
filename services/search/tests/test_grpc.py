"""The gRPC API on a real server and the real tantivy engine: who may see what, and bad input is a clear
INVALID_ARGUMENT (or a literal search), never INTERNAL."""

from __future__ import annotations

import random
import string

import grpc
import grpc.aio
import pytest

from modelhub.common.v1 import pagination_pb2
from modelhub.core.grpc.errors import error_details
from modelhub.core.grpc.server import GrpcServer
from modelhub.search.adapters.events import image_document, model_document
from modelhub.search.adapters.mirror import Documents
from modelhub.search.bootstrap import Search
from modelhub.search.handlers import write_documents
from modelhub.search.v1 import search_pb2, search_pb2_grpc

from .catalog_events import image_snapshot, model_snapshot, model_stats
from .conftest import auth

Stub = search_pb2_grpc.SearchServiceStub


@pytest.fixture
async def indexed(search: Search) -> Search:
    """A few models and images at different NSFW levels, written straight into the live index."""
    models = [
        model_document(model_snapshot("pg", name="Castle Knight (v2) [SDXL]", nsfw_level=1), 1),
        model_document(
            model_snapshot("pg13", name="Castle Guard", nsfw_level=2), 1, model_stats("pg13", downloads=5), 1
        ),
        model_document(model_snapshot("r", name="Castle Siege", nsfw_level=4), 1),
        model_document(model_snapshot("blocked", name="Castle Blocked", nsfw_level=32), 1),
        model_document(model_snapshot("quote", name='Say "AND" OR NOT name:knight', nsfw_level=1), 1),
    ]
    images = [image_document(image_snapshot("i-pg", prompt="castle at dusk", nsfw_level=1), 1)]
    await write_documents(await search.engine.live(), Documents(models, [], images, []))
    return search


async def ids(
    stub: Stub, request: search_pb2.SearchModelsRequest, metadata: tuple[tuple[str, str], ...] | None = None
) -> list[str]:
    response = await stub.SearchModels(request, metadata=metadata)
    return [h.model_id for h in response.hits]


async def failure(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def violated(error: grpc.aio.AioRpcError) -> list[str]:
    return [v.field for v in error_details(error).violations]


async def test_anonymous_callers_see_pg_by_default_and_pg13_when_asked(indexed: Search, stub: Stub) -> None:
    assert set(await ids(stub, search_pb2.SearchModelsRequest(query="castle"))) == {"pg"}
    both = search_pb2.SearchModelsRequest(query="castle", browsing_level=3)
    assert set(await ids(stub, both)) == {"pg", "pg13"}


async def test_users_may_see_all_but_blocked_and_moderators_everything(indexed: Search, stub: Stub) -> None:
    request = search_pb2.SearchModelsRequest(query="castle", browsing_level=31)
    assert set(await ids(stub, request, auth("u1"))) == {"pg", "pg13", "r"}
    everything = search_pb2.SearchModelsRequest(query="castle", browsing_level=63)
    assert set(await ids(stub, everything, auth("mod", "moderator"))) == {"pg", "pg13", "r", "blocked"}


@pytest.mark.parametrize(
    ("level", "metadata"),
    [(4, None), (31, None), (32, "user"), (63, "user")],
)
async def test_asking_for_more_than_the_caller_may_see_is_permission_denied(
    indexed: Search, stub: Stub, level: int, metadata: str | None
) -> None:
    request = search_pb2.SearchModelsRequest(query="castle", browsing_level=level)
    error = await failure(stub.SearchModels(request, metadata=auth("u1") if metadata else None))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_details(error).reason == "BROWSING_LEVEL_NOT_ALLOWED"


async def test_facets_sorts_and_pages_come_back(indexed: Search, stub: Stub) -> None:
    request = search_pb2.SearchModelsRequest(
        browsing_level=3,
        sort=search_pb2.MODEL_SORT_MOST_DOWNLOADED,
        period=search_pb2.PERIOD_WEEK,
        facets=[search_pb2.MODEL_FACET_NSFW_LEVEL, search_pb2.MODEL_FACET_TYPE],
        page=pagination_pb2.PageRequest(page_size=2),
    )
    first = await stub.SearchModels(request)
    assert first.hits[0].model_id == "pg13"
    assert first.hits[0].sort_value == 5
    assert first.page_info.next_cursor
    facets = {f.facet: {v.value: v.count for v in f.values} for f in first.facets}
    assert facets[search_pb2.MODEL_FACET_TYPE] == {"LORA": 3}
    assert facets[search_pb2.MODEL_FACET_NSFW_LEVEL] == {"1": 2, "2": 1}
    request.page.cursor = first.page_info.next_cursor
    second = await stub.SearchModels(request)
    seen = [h.model_id for h in first.hits] + [h.model_id for h in second.hits]
    assert sorted(seen) == ["pg", "pg13", "quote"] and not second.page_info.next_cursor


async def test_images_and_suggestions(indexed: Search, stub: Stub) -> None:
    images = await stub.SearchImages(search_pb2.SearchImagesRequest(query="castle"))
    assert [h.image_id for h in images.hits] == ["i-pg"]
    suggestions = await stub.Suggest(
        search_pb2.SuggestRequest(prefix="cas", kinds=[search_pb2.SUGGESTION_KIND_MODEL_NAME])
    )
    assert [s.text for s in suggestions.suggestions] == ["Castle Knight (v2) [SDXL]"]


@pytest.mark.parametrize(
    "text",
    [
        "Castle Knight (v2) [SDXL]",
        "name:knight",
        '"AND" OR NOT',
        "castle AND NOT guard",
        "*:*",
        "castle~2^10",
        "{!lucene} [* TO *]",
        "\\ / ( ) [ ] { } : ^ ~ * ? ! + - && ||",
        "'; DROP TABLE mirror_models; --",
        "\u0000\u200b\ufeff",
    ],
)
async def test_query_syntax_typed_by_users_is_searched_literally(indexed: Search, stub: Stub, text: str) -> None:
    found = await ids(stub, search_pb2.SearchModelsRequest(query=text))
    assert set(found) <= {"pg", "quote"}


async def test_literal_search_finds_what_the_words_say(indexed: Search, stub: Stub) -> None:
    assert await ids(stub, search_pb2.SearchModelsRequest(query="Castle Knight (v2) [SDXL]")) == ["pg"]
    assert await ids(stub, search_pb2.SearchModelsRequest(query='"AND" OR NOT name:knight')) == ["quote"]


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (search_pb2.SearchModelsRequest(query="x" * 201), ["query"]),
        (search_pb2.SearchModelsRequest(query=" ".join(["word"] * 40)), ["query"]),
        (search_pb2.SearchModelsRequest(page=pagination_pb2.PageRequest(page_size=101)), ["page.page_size"]),
        (search_pb2.SearchModelsRequest(page=pagination_pb2.PageRequest(cursor="garbage")), ["page.cursor"]),
        (search_pb2.SearchModelsRequest(page=pagination_pb2.PageRequest(cursor="m1.!!!")), ["page.cursor"]),
        (search_pb2.SearchModelsRequest(page=pagination_pb2.PageRequest(cursor="c" * 5000)), ["page.cursor"]),
        (search_pb2.SearchModelsRequest(sort=99), ["sort"]),  # type: ignore[arg-type]
        (search_pb2.SearchModelsRequest(period=42), ["period"]),  # type: ignore[arg-type]
        (search_pb2.SearchModelsRequest(facets=[77]), ["facets"]),  # type: ignore[list-item]
        (search_pb2.SearchModelsRequest(browsing_level=0), ["browsing_level"]),
        (search_pb2.SearchModelsRequest(browsing_level=64), ["browsing_level"]),
        (search_pb2.SearchModelsRequest(sort=search_pb2.MODEL_SORT_RELEVANCE), ["sort"]),
        (search_pb2.SearchModelsRequest(filters=search_pb2.ModelFilters(hashes=["not-a-hash"])), ["filters.hashes"]),
        (search_pb2.SearchModelsRequest(filters=search_pb2.ModelFilters(tags=["t"] * 51)), ["filters.tags"]),
        (search_pb2.SearchModelsRequest(filters=search_pb2.ModelFilters(tags=[""])), ["filters.tags"]),
    ],
)
async def test_bad_model_searches_are_invalid_arguments_naming_the_field(
    indexed: Search, stub: Stub, request_: search_pb2.SearchModelsRequest, fields: list[str]
) -> None:
    error = await failure(stub.SearchModels(request_))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert violated(error) == fields
    assert error.details()  # a message a person can act on


async def test_a_cursor_of_another_query_is_refused(indexed: Search, stub: Stub) -> None:
    request = search_pb2.SearchModelsRequest(browsing_level=3, page=pagination_pb2.PageRequest(page_size=1))
    cursor = (await stub.SearchModels(request)).page_info.next_cursor
    other = search_pb2.SearchModelsRequest(query="castle", page=pagination_pb2.PageRequest(cursor=cursor))
    error = await failure(stub.SearchModels(other))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(error).reason == "CURSOR_QUERY_MISMATCH"
    images = search_pb2.SearchImagesRequest(page=pagination_pb2.PageRequest(cursor=cursor))
    assert violated(await failure(stub.SearchImages(images))) == ["page.cursor"]


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (search_pb2.SuggestRequest(prefix=""), ["prefix"]),
        (search_pb2.SuggestRequest(prefix="!!!"), ["prefix"]),
        (search_pb2.SuggestRequest(prefix="a" * 101), ["prefix"]),
        (search_pb2.SuggestRequest(prefix="cas", limit=51), ["limit"]),
        (search_pb2.SuggestRequest(prefix="cas", kinds=[9]), ["kinds"]),  # type: ignore[list-item]
    ],
)
async def test_bad_suggestion_requests(
    indexed: Search, stub: Stub, request_: search_pb2.SuggestRequest, fields: list[str]
) -> None:
    error = await failure(stub.Suggest(request_))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated(error) == fields


async def test_a_request_that_does_not_parse_is_invalid_argument(indexed: Search, server: GrpcServer) -> None:
    # Field 1 (query, a string) with invalid UTF-8.
    raw = b"\x0a\x02\xff\xfe"
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = channel.unary_unary("/modelhub.search.v1.SearchService/SearchModels")
        error = await failure(call(raw))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated(error) == ["request"]


async def test_reindex_is_for_admins(indexed: Search, stub: Stub) -> None:
    error = await failure(stub.Reindex(search_pb2.ReindexRequest()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    error = await failure(stub.Reindex(search_pb2.ReindexRequest(), metadata=auth("u1", "moderator")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    response = await stub.Reindex(search_pb2.ReindexRequest(), metadata=auth("root", "admin"))
    assert response.generation and response.took.ToNanoseconds() > 0


def nasty_strings(count: int, seed: int = 7) -> list[str]:
    """Random text from ASCII punctuation, letters, digits, control characters, combining marks, emoji and
    other scripts, 0 to 260 characters long (a fixed seed: the same strings every run)."""
    rng = random.Random(seed)
    pools = [string.punctuation, string.ascii_letters + string.digits + " ", "\x00\x07\t\n\u200b\ufeff",
             "\u0301\u0308éßçøŁ", "日本語の城😀🏰", "АБВ ابت עברית"]  # fmt: skip
    return ["".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(0, 260))) for _ in range(count)]


async def test_no_input_makes_a_server_error(indexed: Search, stub: Stub) -> None:
    rng = random.Random(11)
    outcomes: dict[str, list[str]] = {}
    for text in nasty_strings(80):
        cursor = text[: rng.randint(0, 40)] if rng.random() < 0.3 else ""
        page = pagination_pb2.PageRequest(page_size=rng.randint(0, 200), cursor=cursor)
        for call in (
            stub.SearchModels(search_pb2.SearchModelsRequest(query=text, page=page)),
            stub.SearchImages(search_pb2.SearchImagesRequest(query=text, page=page)),
            stub.Suggest(search_pb2.SuggestRequest(prefix=text)),
        ):
            try:
                await call
                outcome = "OK"
            except grpc.aio.AioRpcError as error:
                outcome = error.code().name
            outcomes.setdefault(outcome, []).append(text)
    assert set(outcomes) <= {"OK", "INVALID_ARGUMENT"}, {k: v[:3] for k, v in outcomes.items()}
    assert outcomes.keys() == {"OK", "INVALID_ARGUMENT"}  # the strings exercise both paths
