"""Query validation shared by the gRPC layer and every engine: a bad query is refused the same way everywhere.

`check_model_query`, `check_image_query` and `check_suggest` raise InvalidArgument (with one FieldViolation per
problem, all problems at once) and otherwise return what an engine needs: the query's terms and its decoded
cursor. Engines call them on every query (they are cheap), so no input reaches an engine unchecked; the gRPC
layer may call them first to fail fast. Nothing here looks at the index.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from modelhub.core.errors import FieldViolation, InvalidArgument
from modelhub.search.domain import cursors
from modelhub.search.domain.access import ALL_LEVELS
from modelhub.search.domain.cursors import Cursor
from modelhub.search.domain.queries import ImageQuery, ModelFacet, ModelQuery, ModelSort, SuggestionKind
from modelhub.search.domain.text import MAX_TERMS, MAX_TEXT_CHARS, QueryTerm, query_terms, suggestion_prefix

MIN_LIMIT = 1
MAX_LIMIT = 100
MAX_FILTER_VALUES = 50
MAX_VALUE_CHARS = 200
MAX_SUGGEST_LIMIT = 50
MAX_PREFIX_CHARS = 100
FACET_SIZE = 50
"""Most values a facet reports (the most frequent ones)."""

_HASH = re.compile(r"[0-9A-Fa-f]{8,64}")


@dataclass(frozen=True)
class ModelSearch:
    """A checked model query: the query itself, its text terms and its decoded cursor."""

    query: ModelQuery
    terms: tuple[QueryTerm, ...]
    cursor: Cursor | None
    fingerprint: str
    facets: tuple[ModelFacet, ...]


@dataclass(frozen=True)
class ImageSearch:
    query: ImageQuery
    terms: tuple[QueryTerm, ...]
    cursor: Cursor | None
    fingerprint: str


@dataclass(frozen=True)
class SuggestRequest:
    prefix: str
    kinds: tuple[SuggestionKind, ...]
    browsing_level: int
    limit: int


def _check_level(level: int, problems: list[FieldViolation]) -> None:
    if not 1 <= level <= ALL_LEVELS:
        problems.append(
            FieldViolation(
                "browsing_level", f"{level} is not an OR of PG=1, PG13=2, R=4, X=8, XXX=16, Blocked=32 (1 to 63)"
            )
        )


def _check_limit(limit: int, maximum: int, problems: list[FieldViolation]) -> None:
    if not MIN_LIMIT <= limit <= maximum:
        problems.append(FieldViolation("limit", f"{limit} is out of range: ask for {MIN_LIMIT} to {maximum} items"))


def _check_text(text: str, problems: list[FieldViolation], field: str = "text") -> tuple[QueryTerm, ...]:
    if len(text) > MAX_TEXT_CHARS:
        problems.append(FieldViolation(field, f"{len(text)} characters; at most {MAX_TEXT_CHARS} are searched"))
        return ()
    terms = query_terms(text)
    if len(terms) > MAX_TERMS:
        problems.append(FieldViolation(field, f"{len(terms)} words; at most {MAX_TERMS} are searched"))
        return ()
    return terms


def _check_values(field: str, values: Sequence[str], problems: list[FieldViolation]) -> None:
    if len(values) > MAX_FILTER_VALUES:
        problems.append(FieldViolation(field, f"{len(values)} values; at most {MAX_FILTER_VALUES}"))
        return
    for value in values:
        if not value or len(value) > MAX_VALUE_CHARS:
            problems.append(FieldViolation(field, f"values must have 1 to {MAX_VALUE_CHARS} characters"))
            return


def _raise(problems: list[FieldViolation], what: str) -> None:
    if problems:
        detail = "; ".join(f"{p.field}: {p.description}" for p in problems)
        raise InvalidArgument(f"invalid {what}: {detail}", violations=problems)


def check_model_query(query: ModelQuery) -> ModelSearch:
    """Check a model query; raises InvalidArgument listing every problem."""
    problems: list[FieldViolation] = []
    _check_level(query.browsing_level, problems)
    _check_limit(query.limit, MAX_LIMIT, problems)
    terms = _check_text(query.text, problems)
    f = query.filters
    for field, values in (
        ("filters.types", f.types),
        ("filters.base_models", f.base_models),
        ("filters.tags", f.tags),
        ("filters.creator_user_ids", f.creator_user_ids),
        ("filters.file_formats", f.file_formats),
        ("filters.hashes", f.hashes),
        ("filters.allow_commercial_use", f.allow_commercial_use),
    ):
        _check_values(field, values, problems)
    bad_hashes = [h for h in f.hashes[:MAX_FILTER_VALUES] if not _HASH.fullmatch(h)]
    if bad_hashes:
        problems.append(FieldViolation("filters.hashes", f"{bad_hashes[0][:80]!r} is not 8 to 64 hex digits"))
    if query.sort is ModelSort.RELEVANCE and not terms and not problems:
        problems.append(FieldViolation("sort", "Relevance needs query text (letters or digits); pick another sort"))
    _raise(problems, "model search")
    fingerprint = cursors.model_fingerprint(query)
    cursor = cursors.decode("m", query.cursor, fingerprint) if query.cursor else None
    return ModelSearch(query, terms, cursor, fingerprint, tuple(dict.fromkeys(query.facets)))


def check_image_query(query: ImageQuery) -> ImageSearch:
    """Check an image query; raises InvalidArgument listing every problem."""
    problems: list[FieldViolation] = []
    _check_level(query.browsing_level, problems)
    _check_limit(query.limit, MAX_LIMIT, problems)
    terms = _check_text(query.text, problems)
    for field, values in (
        ("model_version_ids", query.model_version_ids),
        ("model_ids", query.model_ids),
        ("creator_user_ids", query.creator_user_ids),
        ("tags", query.tags),
    ):
        _check_values(field, values, problems)
    _raise(problems, "image search")
    fingerprint = cursors.image_fingerprint(query)
    cursor = cursors.decode("i", query.cursor, fingerprint) if query.cursor else None
    return ImageSearch(query, terms, cursor, fingerprint)


def check_suggest(prefix: str, kinds: Sequence[SuggestionKind], browsing_level: int, limit: int) -> SuggestRequest:
    """Check a suggestion request; no kinds means every kind. Raises InvalidArgument listing every problem."""
    problems: list[FieldViolation] = []
    _check_level(browsing_level, problems)
    _check_limit(limit, MAX_SUGGEST_LIMIT, problems)
    normalized = ""
    if len(prefix) > MAX_PREFIX_CHARS:
        problems.append(FieldViolation("prefix", f"{len(prefix)} characters; at most {MAX_PREFIX_CHARS}"))
    else:
        normalized = suggestion_prefix(prefix)
        if not any(c.isalnum() for c in normalized):
            problems.append(FieldViolation("prefix", "type at least one letter or digit"))
    _raise(problems, "suggestion request")
    return SuggestRequest(normalized, tuple(dict.fromkeys(kinds or tuple(SuggestionKind))), browsing_level, limit)
