"""The Elasticsearch request bodies, asserted without a cluster: every sort, period, filter, facet, cursor, and
what user text can and cannot become."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelhub.search.adapters.engines import es_translation as es
from modelhub.search.adapters.engines.layout import FACET_FIELDS
from modelhub.search.domain import cursors, ranking
from modelhub.search.domain.cursors import Cursor
from modelhub.search.domain.documents import Period, PeriodStats
from modelhub.search.domain.queries import (
    FacetValue,
    ImageQuery,
    ImageSort,
    ModelFacet,
    ModelFilters,
    ModelHit,
    ModelQuery,
    ModelSort,
    Suggestion,
    SuggestionKind,
)
from modelhub.search.domain.validation import check_image_query, check_model_query, check_suggest

from .contract.factories import image, model

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
PG = 1


def body(**query: Any) -> dict[str, Any]:
    return es.model_search_body(check_model_query(ModelQuery(**{"browsing_level": PG} | query)), NOW)


def bool_part(b: dict[str, Any]) -> dict[str, Any]:
    query = b["query"]
    if "function_score" in query:
        query = query["function_score"]["query"]
    result: dict[str, Any] = query["bool"]
    return result


# -- layout ---------------------------------------------------------------------------------------------------


def test_index_settings_mirror_tantivys_analyzer() -> None:
    settings = es.index_settings(shards=3, replicas=1)

    assert settings["number_of_shards"] == 3
    assert settings["number_of_replicas"] == 1
    analysis = settings["analysis"]
    assert analysis["tokenizer"]["modelhub_words"] == {"type": "pattern", "pattern": r"[^\p{L}\p{N}]+"}
    assert analysis["analyzer"][es.TEXT_ANALYZER]["filter"] == ["modelhub_short", "lowercase", "asciifolding"]
    assert analysis["filter"]["modelhub_short"] == {"type": "length", "max": 39}


def test_mappings_are_strict_and_hold_every_sort_key_as_a_long() -> None:
    models = es.model_mappings()
    images = es.image_mappings()

    assert models["dynamic"] == images["dynamic"] == "strict"
    for field in ranking.all_sort_fields():
        assert models["properties"][field] == {"type": "long"}
    for field in ranking.IMAGE_SORT_FIELDS.values():
        assert images["properties"][field] == {"type": "long"}
    for field in FACET_FIELDS.values():
        assert models["properties"][field] == {"type": "keyword"}
    assert models["properties"]["name"]["analyzer"] == es.TEXT_ANALYZER
    assert images["properties"]["prompt"]["analyzer"] == es.TEXT_ANALYZER


def test_a_model_document_as_stored() -> None:
    doc = model(
        "m1",
        "Café Noir",
        tags=("Anime", "noir"),
        hashes=("ab12cd34",),
        creator_username="Émile",
        nsfw_level=1 | 4,
        stats={Period.ALL_TIME: PeriodStats(downloads=99, thumbs_up=3)},
        model_stream_version=4,
        stats_stream_version=2,
    )

    source = es.model_source(doc)

    assert source["hash"] == ["AB12CD34"]
    assert source["tag"] == ["anime", "noir"]
    assert source["tags_text"] == ["Anime", "noir"]
    assert source["nsfw"] == ["1", "4"]
    assert source["tag_suggest"] == ["anime\x01anime", "noir\x01noir"]
    assert source["creator_suggest"] == ["emile\x01Émile"]
    assert source["version"] == 6
    assert ranking.key_value(source["key_downloads_all"]) == 99
    assert ranking.key_value(source["key_downloads_day"]) == 0
    assert set(source) == set(es.model_mappings()["properties"])


def test_an_image_document_as_stored() -> None:
    source = es.image_source(image("i1", tags=("Cat",), nsfw_level=0))

    assert source["tag"] == ["cat"]
    assert source["nsfw"] == ["0"]
    assert set(source) == set(es.image_mappings()["properties"])


def test_bulk_actions_carry_explicit_ids_and_external_versions() -> None:
    (action,) = es.model_actions("idx", [model("m1", model_stream_version=3, stats_stream_version=4)])

    assert {k: v for k, v in action.items() if k != "_source"} == {
        "_op_type": "index",
        "_index": "idx",
        "_id": "m1",
        "version": 7,
        "version_type": "external",
    }
    (image_action,) = es.image_actions("img", [image("i1", stream_version=9)])
    assert (image_action["_id"], image_action["version"]) == ("i1", 9)
    assert es.delete_action("idx", "m1") == {"_op_type": "delete", "_index": "idx", "_id": "m1"}


# -- sorts and periods ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("period", list(Period))
@pytest.mark.parametrize("sort", [*ranking.METRIC_SORTS, ModelSort.NEWEST])
def test_every_sort_and_period_orders_by_its_key_then_id(sort: ModelSort, period: Period) -> None:
    b = body(sort=sort, period=period)

    assert b["sort"] == [{ranking.sort_field(sort, period): {"order": "desc"}}, {"model_id": {"order": "asc"}}]
    assert "function_score" not in b["query"]


@pytest.mark.parametrize(
    ("sort", "period", "field"),
    [
        (ModelSort.HIGHEST_RATED, Period.WEEK, "key_rating_week"),
        (ModelSort.MOST_DOWNLOADED, Period.DAY, "key_downloads_day"),
        (ModelSort.MOST_LIKED, Period.MONTH, "key_favorites_month"),
        (ModelSort.MOST_DISCUSSED, Period.YEAR, "key_comments_year"),
        (ModelSort.MOST_COLLECTED, Period.ALL_TIME, "key_collected_all"),
        (ModelSort.MOST_IMAGES, Period.DAY, "key_images_day"),
        (ModelSort.NEWEST, Period.WEEK, "key_newest"),
    ],
)
def test_sort_field_names(sort: ModelSort, period: Period, field: str) -> None:
    assert ranking.sort_field(sort, period) == field


@pytest.mark.parametrize(
    ("period", "days"), [(Period.DAY, 1), (Period.WEEK, 7), (Period.MONTH, 30), (Period.YEAR, 365)]
)
def test_newest_over_a_period_keeps_models_published_within_it(period: Period, days: int) -> None:
    filters = bool_part(body(sort=ModelSort.NEWEST, period=period))["filter"]

    since = int((NOW - timedelta(days=days)).timestamp())
    assert {"range": {"published_s": {"gte": since}}} in filters


@pytest.mark.parametrize("sort", [ModelSort.NEWEST, ModelSort.MOST_DOWNLOADED])
def test_no_time_window_otherwise(sort: ModelSort) -> None:
    period = Period.ALL_TIME if sort is ModelSort.NEWEST else Period.DAY
    filters = bool_part(body(sort=sort, period=period))["filter"]

    assert not any("range" in f for f in filters)


def test_relevance_multiplies_the_text_score_by_popularity() -> None:
    b = body(text="dragon", sort=ModelSort.RELEVANCE)

    function_score = b["query"]["function_score"]
    assert function_score["field_value_factor"] == {"field": "popularity", "modifier": "ln2p", "missing": 0}
    assert function_score["boost_mode"] == "multiply"
    assert b["sort"] == [{"_score": {"order": "desc"}}, {"model_id": {"order": "asc"}}]


# -- text -----------------------------------------------------------------------------------------------------


def word_clauses(b: dict[str, Any]) -> list[list[dict[str, Any]]]:
    return [clause["dis_max"]["queries"] for clause in bool_part(b).get("must", [])]


def fuzziness(clauses: list[dict[str, Any]], field: str) -> list[int]:
    found = []
    for c in clauses:
        match = c["constant_score"]["filter"].get("match", {}).get(field)
        if match is not None:
            found.append(match.get("fuzziness", 0))
    return found


@pytest.mark.parametrize(("word", "edits"), [("ab", 0), ("abc", 1), ("abcde", 1), ("abcdef", 2), ("abcdefghij", 2)])
def test_typo_tolerance_per_word_length(word: str, edits: int) -> None:
    (clauses,) = word_clauses(body(text=word))

    assert fuzziness(clauses, "name") == ([0, edits] if edits else [0])
    assert fuzziness(clauses, "description") == ([0, edits] if edits else [0])


def test_each_word_is_a_dis_max_of_constant_scores() -> None:
    (clauses,) = word_clauses(body(text="Dragon"))

    boosts = {
        (next(iter(c["constant_score"]["filter"])), json.dumps(c["constant_score"]["filter"], sort_keys=True)): c[
            "constant_score"
        ]["boost"]
        for c in clauses
    }
    assert sorted(boosts.values(), reverse=True) == [8.0, 6.0, 5.0, 4.0, 4.0, 2.0, 1.5, 1.5, 1.0, 1.0, 0.5]
    assert {"constant_score": {"filter": {"prefix": {"name": {"value": "dragon"}}}, "boost": 4.0}} in clauses


def test_every_word_must_match() -> None:
    b = body(text="anime dragon girl")

    assert len(bool_part(b)["must"]) == 3


def test_hex_words_also_match_hashes_and_long_ones_only_hashes() -> None:
    sha = "ab" * 32
    short, long_ = word_clauses(body(text=f"0a1b2c3d {sha}"))

    assert {"constant_score": {"filter": {"term": {"hash": "0A1B2C3D"}}, "boost": 16.0}} in short
    assert len(short) > 1
    assert long_ == [{"constant_score": {"filter": {"term": {"hash": sha.upper()}}, "boost": 16.0}}]


def test_a_long_word_that_is_not_a_hash_matches_nothing() -> None:
    assert bool_part(body(text="x" * 50))["must"] == [{"match_none": {}}]


def test_no_words_no_text_clause() -> None:
    assert "must" not in bool_part(body(text=" ()[]:!* "))


def keys(value: Any) -> set[str]:
    """Every key of a JSON value, at any depth."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys(v)}
    return set()


INJECTIONS = [
    'name:"dragon" AND tag:anime',
    "(dragon OR knight) NOT -x +y",
    "dragon^10 drag?n dr*n dragon~2",
    "[* TO *] {a TO b}",
    "/dr.*n/ \\ \" ' ` ; --",
    '{"query": {"match_all": {}}}',
    "_id:1 _index:other",
    "{!lucene}x ${jndi:ldap://x}",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_user_text_only_reaches_match_prefix_and_term_clauses_as_plain_words(text: str) -> None:
    b = body(text=text, sort=ModelSort.RELEVANCE) if re.search(r"\w", text) else body(text=text)

    query_types = keys(b["query"])
    for forbidden in ("query_string", "simple_query_string", "regexp", "wildcard", "script", "script_score"):
        assert forbidden not in query_types
    for clauses in word_clauses(b):
        for c in clauses:
            ((kind, spec),) = c["constant_score"]["filter"].items()
            ((field, options),) = spec.items()
            assert field in {"name", "trained_words", "tags_text", "creator_text", "description", "hash"}
            value = options["query"] if kind == "match" else options["value"] if kind == "prefix" else options
            assert re.fullmatch(r"[^\W_]+", value), value


# -- filters, visibility, facets, cursors --------------------------------------------------------------------


def test_every_filter() -> None:
    filters = ModelFilters(
        types=("LORA", "VAE"),
        base_models=("SDXL 1.0",),
        tags=("Anime",),
        creator_user_ids=("u1",),
        file_formats=("GGUF",),
        hashes=("ab12cd34",),
        allow_no_credit=True,
        allow_derivatives=False,
        allow_different_license=True,
        allow_commercial_use=("Image", "Sell"),
    )

    clauses = bool_part(body(filters=filters))["filter"]

    assert clauses == [
        {"terms": {"nsfw": ["1"]}},
        {"terms": {"type": ["LORA", "VAE"]}},
        {"terms": {"base_model": ["SDXL 1.0"]}},
        {"terms": {"tag": ["anime"]}},
        {"terms": {"creator_user_id": ["u1"]}},
        {"terms": {"file_format": ["GGUF"]}},
        {"terms": {"hash": ["AB12CD34"]}},
        {"term": {"allow_no_credit": True}},
        {"term": {"allow_derivatives": False}},
        {"term": {"allow_different_license": True}},
        {"term": {"commercial_use": "Image"}},
        {"term": {"commercial_use": "Sell"}},
    ]


@pytest.mark.parametrize(
    ("level", "allowed", "must_not"),
    [
        (1, ["1"], [{"term": {"nsfw": "32"}}]),
        (1 | 2, ["1", "2"], [{"term": {"nsfw": "32"}}]),
        (31, ["1", "2", "4", "8", "16"], [{"term": {"nsfw": "32"}}]),
        (63, ["1", "2", "4", "8", "16", "32", "0"], None),
        (32, ["32", "0"], None),
    ],
)
def test_browsing_levels(level: int, allowed: list[str], must_not: list[dict[str, Any]] | None) -> None:
    b = bool_part(body(browsing_level=level))

    assert b["filter"][0] == {"terms": {"nsfw": allowed}}
    assert b.get("must_not") == must_not


def test_facets_are_terms_aggregations() -> None:
    b = body(facets=tuple(ModelFacet))

    assert b["aggs"] == {
        facet.value: {"terms": {"field": FACET_FIELDS[facet], "size": 50, "shard_size": 500}} for facet in ModelFacet
    }
    assert "aggs" not in body()


def test_a_page_asks_for_one_more_hit_and_continues_with_search_after() -> None:
    query = ModelQuery(browsing_level=PG, sort=ModelSort.MOST_LIKED, period=Period.WEEK, limit=5)
    token = cursors.encode("m", Cursor(cursors.model_fingerprint(query), 123456789, "m-7"))

    b = es.model_search_body(check_model_query(query), NOW)
    after = es.model_search_body(check_model_query(ModelQuery(**{**query.__dict__, "cursor": token})), NOW)

    assert b["size"] == 6
    assert "search_after" not in b
    assert after["search_after"] == [123456789, "m-7"]
    assert after["track_total_hits"] is False
    edited = cursors.encode("m", Cursor(cursors.model_fingerprint(query), 1e300, "m-7"))
    clamped = es.model_search_body(check_model_query(ModelQuery(**{**query.__dict__, "cursor": edited})), NOW)
    assert clamped["search_after"] == [ranking.MAX_KEY, "m-7"]


def test_images_body() -> None:
    search = check_image_query(
        ImageQuery(
            browsing_level=PG,
            text="castle cluds",
            model_version_ids=("v1",),
            model_ids=("m1",),
            creator_user_ids=("u1",),
            tags=("Night",),
            sort=ImageSort.MOST_COMMENTS,
            limit=3,
        )
    )

    b = es.image_search_body(search)

    assert b["query"]["bool"]["filter"] == [
        {"terms": {"nsfw": ["1"]}},
        {"terms": {"model_version_id": ["v1"]}},
        {"terms": {"model_id": ["m1"]}},
        {"terms": {"creator_user_id": ["u1"]}},
        {"terms": {"tag": ["night"]}},
        {
            "match": {
                "prompt": {
                    "query": "castle",
                    "fuzziness": 2,
                    "prefix_length": 0,
                    "fuzzy_transpositions": True,
                    "max_expansions": 200,
                }
            }
        },
        {
            "match": {
                "prompt": {
                    "query": "cluds",
                    "fuzziness": 1,
                    "prefix_length": 0,
                    "fuzzy_transpositions": True,
                    "max_expansions": 200,
                }
            }
        },
    ]
    assert b["sort"] == [{"key_comments": {"order": "desc"}}, {"image_id": {"order": "asc"}}]
    assert b["size"] == 4


@pytest.mark.parametrize("sort", list(ImageSort))
def test_image_sorts(sort: ImageSort) -> None:
    b = es.image_search_body(check_image_query(ImageQuery(browsing_level=PG, sort=sort)))

    assert b["sort"][0] == {ranking.IMAGE_SORT_FIELDS[sort]: {"order": "desc"}}


# -- suggestions ----------------------------------------------------------------------------------------------


def test_suggestion_bodies() -> None:
    bodies = es.suggest_bodies(check_suggest("Ani.m*", [], PG, 5))

    name = bodies[SuggestionKind.MODEL_NAME]
    assert name["query"]["bool"]["filter"][1:] == [
        {"match": {"name": {"query": "ani"}}},
        {"prefix": {"name": {"value": "m"}}},
    ]
    assert name["sort"] == [{"key_downloads_all": {"order": "desc"}}]
    tags = bodies[SuggestionKind.TAG]
    assert tags["query"]["bool"]["filter"][1] == {"prefix": {"tag_suggest": {"value": "ani.m*"}}}
    assert tags["aggs"]["values"]["terms"]["include"] == r"ani\.m\*.*"
    assert tags["aggs"]["values"]["terms"]["size"] == 5
    assert bodies[SuggestionKind.CREATOR]["aggs"]["values"]["terms"]["field"] == "creator_suggest"


def test_lucene_regex_escape() -> None:
    assert es.lucene_regex_escape('a.b*c?(d)[e]{f}|g+h"i#j@k&l<m>n~o\\p q') == (
        'a\\.b\\*c\\?\\(d\\)\\[e\\]\\{f\\}\\|g\\+h\\"i\\#j\\@k\\&l\\<m\\>n\\~o\\\\p\\ q'
    )


# -- responses ------------------------------------------------------------------------------------------------


def hit(model_id: str, key: int) -> dict[str, Any]:
    source = {"model_id": model_id, "name": model_id.upper(), "type": "LORA", "creator_username": "c", "nsfw_level": 1}
    return {"_source": source, "sort": [key, model_id]}


def test_model_page_from_a_response() -> None:
    query = ModelQuery(browsing_level=PG, sort=ModelSort.MOST_DOWNLOADED, limit=2, facets=(ModelFacet.TYPE,))
    search = check_model_query(query)
    k = ranking.compose
    response = {
        "hits": {"hits": [hit("a", k(30, "a")), hit("b", k(20, "b")), hit("c", k(10, "c"))]},
        "aggregations": {"type": {"buckets": [{"key": "VAE", "doc_count": 1}, {"key": "LORA", "doc_count": 2}]}},
    }

    page = es.model_page(search, response)

    assert page.hits == (
        ModelHit("a", "A", "LORA", "c", 1, 30.0),
        ModelHit("b", "B", "LORA", "c", 1, 20.0),
    )
    assert page.facets == {ModelFacet.TYPE: (FacetValue("LORA", 2), FacetValue("VAE", 1))}
    assert page.next_cursor is not None
    cursor = cursors.decode("m", page.next_cursor, search.fingerprint)
    assert (cursor.position, cursor.item_id, cursor.depth) == (k(20, "b"), "b", 2)


def test_the_last_page_has_no_cursor() -> None:
    search = check_model_query(ModelQuery(browsing_level=PG, limit=2))
    response = {"hits": {"hits": [hit("a", 2), hit("b", 1)]}}

    assert es.model_page(search, response).next_cursor is None
    assert es.model_page(search, {"hits": {"hits": []}}).next_cursor is None


def test_relevance_hits_show_the_score() -> None:
    search = check_model_query(ModelQuery(browsing_level=PG, text="a", sort=ModelSort.RELEVANCE, limit=1))
    response = {"hits": {"hits": [hit("a", 0) | {"sort": [12.5, "a"]}, hit("b", 0) | {"sort": [3.25, "b"]}]}}

    page = es.model_page(search, response)

    assert page.hits[0].sort_value == 12.5
    assert page.next_cursor is not None
    assert cursors.decode("m", page.next_cursor, search.fingerprint).position == 12.5


def test_suggestions_from_responses() -> None:
    names = {"hits": {"hits": [{"_source": {"name": "A"}}, {"_source": {"name": "A"}}, {"_source": {"name": "B"}}]}}
    tags = {"aggregations": {"values": {"buckets": [{"key": "emile\x01Émile", "doc_count": 3}]}}}

    assert es.suggestions(SuggestionKind.MODEL_NAME, names, 5) == [
        Suggestion(SuggestionKind.MODEL_NAME, "A", 1),
        Suggestion(SuggestionKind.MODEL_NAME, "B", 1),
    ]
    assert es.suggestions(SuggestionKind.CREATOR, tags, 5) == [Suggestion(SuggestionKind.CREATOR, "Émile", 3)]


def test_index_prefixes_are_checked() -> None:
    assert es.check_index_prefix("modelhub-prod_1") == "modelhub-prod_1"
    for bad in ("", "Upper", "-lead", "a b", "a*", "../x"):
        with pytest.raises(ValueError, match="prefix"):
            es.check_index_prefix(bad)
