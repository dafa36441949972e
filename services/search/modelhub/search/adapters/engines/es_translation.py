"""Queries and documents as Elasticsearch request bodies, and responses back as pages. Pure functions.

The bodies mirror the tantivy adapter clause for clause, so both engines return the same documents in the same
order: the same per-word clauses and constant scores (modelhub.search.domain.ranking.TEXT_BOOSTS), the same
sort keys, the same visibility terms. User text only ever reaches Elasticsearch as the query string of a
`match` clause (one word, already split by modelhub.search.domain.text) or as a `term`/`prefix` value: never
through `query_string` or `simple_query_string`, so no query syntax is interpreted.

Relevance is the constant text score times ln(2 + popularity) (`function_score` with `field_value_factor`,
modifier `ln2p`), proportional to tantivy's log2(2 + popularity): the same order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from modelhub.search.adapters.engines import layout
from modelhub.search.adapters.engines.layout import (
    FACET_CANDIDATES,
    FACET_FIELDS,
    POPULARITY_FIELD,
    TEXT_FIELDS,
    suggest_display,
)
from modelhub.search.domain import cursors, ranking
from modelhub.search.domain.cursors import Cursor
from modelhub.search.domain.documents import ImageDocument, ModelDocument, Period
from modelhub.search.domain.queries import (
    FacetValue,
    ImageHit,
    ImagePage,
    ModelFacet,
    ModelHit,
    ModelPage,
    ModelSort,
    Suggestion,
    SuggestionKind,
)
from modelhub.search.domain.text import MAX_TOKEN_BYTES, QueryTerm, words
from modelhub.search.domain.validation import FACET_SIZE, ImageSearch, ModelSearch, SuggestRequest
from modelhub.search.domain.visibility import BLOCKED_TERM, visibility

Body = dict[str, Any]

TEXT_ANALYZER = "modelhub_text"
FUZZY_MAX_EXPANSIONS = 200
"""Terms one fuzzy word may expand to (Elasticsearch's default is 50; tantivy has no limit)."""

MODEL_HIT_SOURCE = ["model_id", "name", "type", "creator_username", "nsfw_level"]
IMAGE_HIT_SOURCE = ["image_id", "creator_username", "nsfw_level", "width", "height", "blurhash"]

# -- index layout ---------------------------------------------------------------------------------------------


def index_settings(shards: int = 1, replicas: int = 0) -> Body:
    """Index settings: the text analyzer matching tantivy's (split on anything but letters and digits, drop
    words of 40 bytes or more, lower case, ASCII folding)."""
    return {
        "number_of_shards": shards,
        "number_of_replicas": replicas,
        "analysis": {
            "tokenizer": {"modelhub_words": {"type": "pattern", "pattern": r"[^\p{L}\p{N}]+"}},
            "filter": {"modelhub_short": {"type": "length", "max": MAX_TOKEN_BYTES - 1}},
            "analyzer": {
                TEXT_ANALYZER: {
                    "type": "custom",
                    "tokenizer": "modelhub_words",
                    "filter": ["modelhub_short", "lowercase", "asciifolding"],
                }
            },
        },
    }


def _text() -> Body:
    return {"type": "text", "analyzer": TEXT_ANALYZER, "index_options": "freqs", "norms": False}


_KEYWORD: Body = {"type": "keyword"}
_STORED_ONLY: Body = {"type": "keyword", "index": False, "doc_values": False}


def model_mappings() -> Body:
    properties: Body = {
        "model_id": _KEYWORD,
        "name": _text(),
        "description": _text(),
        "tags_text": _text(),
        "trained_words": _text(),
        "creator_text": _text(),
        "hash": _KEYWORD,
        "type": _KEYWORD,
        "base_model": _KEYWORD,
        "tag": _KEYWORD,
        "file_format": _KEYWORD,
        "commercial_use": _KEYWORD,
        "nsfw": _KEYWORD,
        "creator_user_id": _KEYWORD,
        "creator_username": _STORED_ONLY,
        "tag_suggest": _KEYWORD,
        "creator_suggest": _KEYWORD,
        "allow_no_credit": {"type": "boolean"},
        "allow_derivatives": {"type": "boolean"},
        "allow_different_license": {"type": "boolean"},
        "nsfw_level": {"type": "integer", "index": False},
        "version": {"type": "long", "index": False},
        "published_s": {"type": "long"},
        POPULARITY_FIELD: {"type": "double"},
    }
    properties.update({field: {"type": "long"} for field in ranking.all_sort_fields()})
    return {"dynamic": "strict", "properties": properties}


def image_mappings() -> Body:
    properties: Body = {
        "image_id": _KEYWORD,
        "creator_user_id": _KEYWORD,
        "creator_username": _STORED_ONLY,
        "model_version_id": _KEYWORD,
        "model_id": _KEYWORD,
        "tag": _KEYWORD,
        "nsfw": _KEYWORD,
        "prompt": _text(),
        "nsfw_level": {"type": "integer", "index": False},
        "width": {"type": "integer", "index": False},
        "height": {"type": "integer", "index": False},
        "blurhash": _STORED_ONLY,
        "version": {"type": "long", "index": False},
    }
    properties.update({field: {"type": "long"} for field in ranking.IMAGE_SORT_FIELDS.values()})
    return {"dynamic": "strict", "properties": properties}


def model_source(doc: ModelDocument) -> Body:
    """The stored document of a model (the shared layout)."""
    return layout.model_fields(doc)


def image_source(doc: ImageDocument) -> Body:
    return layout.image_fields(doc)


# -- bulk actions ---------------------------------------------------------------------------------------------


def index_action(index: str, item_id: str, version: int, source: Body) -> Body:
    """Index with an explicit id and external versioning: Elasticsearch refuses (409) a version that is not
    higher than the stored one, so a stale or repeated write changes nothing."""
    return {
        "_op_type": "index",
        "_index": index,
        "_id": item_id,
        "version": max(version, 0),
        "version_type": "external",
        "_source": source,
    }


def delete_action(index: str, item_id: str) -> Body:
    return {"_op_type": "delete", "_index": index, "_id": item_id}


def model_actions(index: str, documents: Sequence[ModelDocument]) -> list[Body]:
    return [index_action(index, d.model_id, d.version, model_source(d)) for d in documents]


def image_actions(index: str, documents: Sequence[ImageDocument]) -> list[Body]:
    return [index_action(index, d.image_id, d.stream_version, image_source(d)) for d in documents]


# -- queries --------------------------------------------------------------------------------------------------


def _scored(clause: Body, boost_name: str) -> Body:
    return {"constant_score": {"filter": clause, "boost": ranking.TEXT_BOOSTS[boost_name]}}


def _match(field: str, token: str, edits: int = 0) -> Body:
    options: Body = {"query": token}
    if edits:
        options |= {"fuzziness": edits, "prefix_length": 0, "fuzzy_transpositions": True}
        options["max_expansions"] = FUZZY_MAX_EXPANSIONS
    return {"match": {field: options}}


def model_term_clause(term: QueryTerm) -> Body:
    """One query word: the best of its clauses (exact, prefix or fuzzy, per field) scores it."""
    clauses: list[Body] = []
    if term.hash_value is not None:
        clauses.append(_scored({"term": {"hash": term.hash_value}}, "hash"))
    if term.token is not None:
        for field, name in TEXT_FIELDS:
            clauses.append(_scored(_match(field, term.token), f"{name}_exact"))
            if term.max_edits:
                clauses.append(_scored(_match(field, term.token, term.max_edits), f"{name}_fuzzy"))
        if len(term.token) >= ranking.PREFIX_MIN_CHARS:
            clauses.append(_scored({"prefix": {"name": {"value": term.token}}}, "name_prefix"))
    if not clauses:
        return {"match_none": {}}
    return {"dis_max": {"queries": clauses, "tie_breaker": 0.0}}


def visibility_clauses(browsing_level: int) -> tuple[list[Body], list[Body]]:
    """(filter, must_not) clauses of a browsing level (modelhub.search.domain.visibility)."""
    v = visibility(browsing_level)
    must_not = [{"term": {"nsfw": BLOCKED_TERM}}] if v.exclude_blocked else []
    return [{"terms": {"nsfw": list(v.allowed)}}], must_not


def model_filter_clauses(search: ModelSearch, now: datetime) -> list[Body]:
    q = search.query
    f = q.filters
    clauses: list[Body] = []
    for field, values in (
        ("type", list(f.types)),
        ("base_model", list(f.base_models)),
        ("tag", [t.lower() for t in f.tags]),
        ("creator_user_id", list(f.creator_user_ids)),
        ("file_format", list(f.file_formats)),
        ("hash", [h.upper() for h in f.hashes]),
    ):
        if values:
            clauses.append({"terms": {field: values}})
    for field, flag in (
        ("allow_no_credit", f.allow_no_credit),
        ("allow_derivatives", f.allow_derivatives),
        ("allow_different_license", f.allow_different_license),
    ):
        if flag is not None:
            clauses.append({"term": {field: flag}})
    clauses += [{"term": {"commercial_use": use}} for use in f.allow_commercial_use]
    seconds = ranking.PERIOD_SECONDS.get(q.period)
    if q.sort is ModelSort.NEWEST and seconds is not None:
        since = ranking.epoch_seconds(now - timedelta(seconds=seconds))
        clauses.append({"range": {"published_s": {"gte": since}}})
    return clauses


def model_query(search: ModelSearch, now: datetime) -> Body:
    """The query part: text words (must), filters and visibility (filter, must_not); Relevance adds
    popularity with function_score."""
    visible, hidden = visibility_clauses(search.query.browsing_level)
    boolean: Body = {"filter": visible + model_filter_clauses(search, now)}
    if search.terms:
        boolean["must"] = [model_term_clause(t) for t in search.terms]
    if hidden:
        boolean["must_not"] = hidden
    query: Body = {"bool": boolean}
    if search.query.sort is ModelSort.RELEVANCE:
        query = {
            "function_score": {
                "query": query,
                "field_value_factor": {"field": POPULARITY_FIELD, "modifier": "ln2p", "missing": 0},
                "boost_mode": "multiply",
            }
        }
    return query


def model_sort(search: ModelSearch) -> list[Body]:
    q = search.query
    primary: Body
    if q.sort is ModelSort.RELEVANCE:
        primary = {"_score": {"order": "desc"}}
    else:
        primary = {ranking.sort_field(q.sort, q.period): {"order": "desc"}}
    return [primary, {"model_id": {"order": "asc"}}]


def _key(position: int | float) -> int:
    return min(max(int(position), 0), ranking.MAX_KEY)


def model_search_body(search: ModelSearch, now: datetime) -> Body:
    """The whole search request: one more hit than the page (to know whether another page follows), keyset
    continuation with search_after from the cursor, facets as terms aggregations over the whole result set."""
    q = search.query
    body: Body = {
        "query": model_query(search, now),
        "sort": model_sort(search),
        "size": q.limit + 1,
        "_source": MODEL_HIT_SOURCE,
        "track_total_hits": False,
    }
    if search.cursor is not None:
        position = search.cursor.position
        # A key is an integer and a score a number: coerced, so an edited cursor cannot make a bad request.
        after = float(position) if q.sort is ModelSort.RELEVANCE else _key(position)
        body["search_after"] = [after, search.cursor.item_id]
    if search.facets:
        body["aggs"] = {
            facet.value: {"terms": {"field": FACET_FIELDS[facet], "size": FACET_SIZE, "shard_size": FACET_CANDIDATES}}
            for facet in search.facets
        }
    return body


def image_search_body(search: ImageSearch) -> Body:
    q = search.query
    visible, hidden = visibility_clauses(q.browsing_level)
    filters = list(visible)
    for field, values in (
        ("model_version_id", list(q.model_version_ids)),
        ("model_id", list(q.model_ids)),
        ("creator_user_id", list(q.creator_user_ids)),
        ("tag", [t.lower() for t in q.tags]),
    ):
        if values:
            filters.append({"terms": {field: values}})
    for term in search.terms:
        filters.append(_match("prompt", term.token, term.max_edits) if term.token else {"match_none": {}})
    boolean: Body = {"filter": filters}
    if hidden:
        boolean["must_not"] = hidden
    body: Body = {
        "query": {"bool": boolean},
        "sort": [{ranking.IMAGE_SORT_FIELDS[q.sort]: {"order": "desc"}}, {"image_id": {"order": "asc"}}],
        "size": q.limit + 1,
        "_source": IMAGE_HIT_SOURCE,
        "track_total_hits": False,
    }
    if search.cursor is not None:
        body["search_after"] = [_key(search.cursor.position), search.cursor.item_id]
    return body


def lucene_regex_escape(text: str) -> str:
    """Every character but letters and digits escaped: the text matches itself in a Lucene regular expression."""
    return "".join(c if c.isalnum() else "\\" + c for c in text)


def suggest_bodies(request: SuggestRequest) -> dict[SuggestionKind, Body]:
    """One search per kind: tags and creators are the most frequent values starting with the prefix among
    visible models (terms aggregation, ordered by count then value); names come from the most downloaded
    visible models whose name has the prefix's words, the last as a prefix."""
    visible, hidden = visibility_clauses(request.browsing_level)
    bodies: dict[SuggestionKind, Body] = {}
    for kind in request.kinds:
        if kind is SuggestionKind.MODEL_NAME:
            prefix_words = words(request.prefix)
            if not prefix_words:
                continue
            filters = visible + [{"match": {"name": {"query": w}}} for w in prefix_words[:-1]]
            filters.append({"prefix": {"name": {"value": prefix_words[-1]}}})
            bodies[kind] = {
                "query": {"bool": {"filter": filters, "must_not": hidden}},
                "sort": [{ranking.sort_field(ModelSort.MOST_DOWNLOADED, Period.ALL_TIME): {"order": "desc"}}],
                "size": request.limit * 2,
                "_source": ["name"],
                "track_total_hits": False,
            }
        else:
            field = "tag_suggest" if kind is SuggestionKind.TAG else "creator_suggest"
            prefix_filter = {"prefix": {field: {"value": request.prefix}}}
            bodies[kind] = {
                "query": {"bool": {"filter": [*visible, prefix_filter], "must_not": hidden}},
                "size": 0,
                "track_total_hits": False,
                "aggs": {
                    "values": {
                        "terms": {
                            "field": field,
                            "size": request.limit,
                            "include": lucene_regex_escape(request.prefix) + ".*",
                            "order": [{"_count": "desc"}, {"_key": "asc"}],
                        }
                    }
                },
            }
    return bodies


# -- responses ------------------------------------------------------------------------------------------------


def _next_cursor(kind: str, fingerprint: str, hits: list[Mapping[str, Any]], limit: int, depth: int) -> str | None:
    if len(hits) <= limit or limit == 0:
        return None
    position, item_id = hits[limit - 1]["sort"]
    return cursors.encode(kind, Cursor(fingerprint, position, item_id, False, depth + limit))


def model_page(search: ModelSearch, response: Mapping[str, Any]) -> ModelPage:
    """A page from a search response (made with `model_search_body`)."""
    q = search.query
    hits = list(response["hits"]["hits"])
    page = []
    for hit in hits[: q.limit]:
        source = hit["_source"]
        position = hit["sort"][0]
        if q.sort is ModelSort.RELEVANCE:
            value = float(position)
        else:
            value = ranking.display_value(q.sort, ranking.key_value(int(position)))
        page.append(
            ModelHit(
                model_id=source["model_id"],
                name=source["name"],
                type=source["type"],
                creator_username=source.get("creator_username", ""),
                nsfw_level=int(source["nsfw_level"]),
                sort_value=value,
            )
        )
    facets: dict[ModelFacet, tuple[FacetValue, ...]] = {}
    aggregations = response.get("aggregations", {})
    for facet in search.facets:
        buckets = aggregations.get(facet.value, {}).get("buckets", [])
        values = (FacetValue(str(b["key"]), int(b["doc_count"])) for b in buckets)
        facets[facet] = tuple(sorted(values, key=lambda v: (-v.count, v.value)))
    depth = search.cursor.depth if search.cursor else 0
    return ModelPage(
        hits=tuple(page), next_cursor=_next_cursor("m", search.fingerprint, hits, q.limit, depth), facets=facets
    )


def image_page(search: ImageSearch, response: Mapping[str, Any]) -> ImagePage:
    q = search.query
    hits = list(response["hits"]["hits"])
    page = []
    for hit in hits[: q.limit]:
        source = hit["_source"]
        page.append(
            ImageHit(
                image_id=source["image_id"],
                creator_username=source.get("creator_username", ""),
                nsfw_level=int(source["nsfw_level"]),
                width=int(source["width"]),
                height=int(source["height"]),
                blurhash=source.get("blurhash", ""),
                sort_value=float(ranking.key_value(int(hit["sort"][0]))),
            )
        )
    depth = search.cursor.depth if search.cursor else 0
    return ImagePage(hits=tuple(page), next_cursor=_next_cursor("i", search.fingerprint, hits, q.limit, depth))


def suggestions(kind: SuggestionKind, response: Mapping[str, Any], limit: int) -> list[Suggestion]:
    """Suggestions of one kind from the response to its body (see `suggest_bodies`)."""
    if kind is SuggestionKind.MODEL_NAME:
        names = dict.fromkeys(hit["_source"]["name"] for hit in response["hits"]["hits"])
        return [Suggestion(kind, name, 1) for name in list(names)[:limit]]
    buckets = response.get("aggregations", {}).get("values", {}).get("buckets", [])
    return [
        Suggestion(kind, suggest_display(str(b["key"])), int(b["doc_count"])) for b in buckets if b["doc_count"] > 0
    ]


_SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def check_index_prefix(prefix: str) -> str:
    """Index names are lower case; the prefix must make valid names (letters, digits, '-' and '_')."""
    if not _SAFE_NAME.fullmatch(prefix):
        raise ValueError(f"index prefix {prefix!r} must be lower-case letters, digits, '-' or '_'")
    return prefix
