"""The gRPC servicer: protobuf in, domain query, protobuf out. Thin on purpose (queries are latency-bound).

Errors are DomainErrors, mapped to statuses by libs/core: a bad request is INVALID_ARGUMENT with field
violations named as in the request message (`query`, `page.page_size`, `page.cursor`, ...), never INTERNAL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
import grpc.aio

from modelhub.common.v1 import pagination_pb2
from modelhub.core.errors import FieldViolation, InvalidArgument
from modelhub.core.grpc.auth import current_principal, require_principal
from modelhub.core.grpc.registration import add_service
from modelhub.search.domain.access import Viewer, browsing_level
from modelhub.search.domain.documents import Period
from modelhub.search.domain.queries import (
    ImagePage,
    ImageQuery,
    ImageSort,
    ModelFacet,
    ModelFilters,
    ModelPage,
    ModelQuery,
    ModelSort,
    Suggestion,
    SuggestionKind,
)
from modelhub.search.domain.text import MAX_TEXT_CHARS, words
from modelhub.search.handlers import Searcher
from modelhub.search.rebuild import Rebuilder
from modelhub.search.v1 import search_pb2, search_pb2_grpc

SERVICE_NAME = "modelhub.search.v1.SearchService"
PUBLIC_METHODS = frozenset(f"/{SERVICE_NAME}/{m}" for m in ("SearchModels", "SearchImages", "Suggest"))
"""Anonymous callers may search (at the anonymous browsing levels); Reindex needs the admin role."""
DEFAULT_PAGE_SIZE = 20
DEFAULT_SUGGESTIONS = 10

Context = grpc.aio.ServicerContext[Any, Any]
E = TypeVar("E")

_PERIODS: Mapping[int, Period] = {
    search_pb2.PERIOD_UNSPECIFIED: Period.ALL_TIME,
    search_pb2.PERIOD_DAY: Period.DAY,
    search_pb2.PERIOD_WEEK: Period.WEEK,
    search_pb2.PERIOD_MONTH: Period.MONTH,
    search_pb2.PERIOD_YEAR: Period.YEAR,
    search_pb2.PERIOD_ALL_TIME: Period.ALL_TIME,
}
_MODEL_SORTS: Mapping[int, ModelSort] = {
    search_pb2.MODEL_SORT_HIGHEST_RATED: ModelSort.HIGHEST_RATED,
    search_pb2.MODEL_SORT_MOST_DOWNLOADED: ModelSort.MOST_DOWNLOADED,
    search_pb2.MODEL_SORT_MOST_LIKED: ModelSort.MOST_LIKED,
    search_pb2.MODEL_SORT_MOST_DISCUSSED: ModelSort.MOST_DISCUSSED,
    search_pb2.MODEL_SORT_MOST_COLLECTED: ModelSort.MOST_COLLECTED,
    search_pb2.MODEL_SORT_MOST_IMAGES: ModelSort.MOST_IMAGES,
    search_pb2.MODEL_SORT_NEWEST: ModelSort.NEWEST,
    search_pb2.MODEL_SORT_RELEVANCE: ModelSort.RELEVANCE,
}
_FACETS: Mapping[search_pb2.ModelFacet.ValueType, ModelFacet] = {
    search_pb2.MODEL_FACET_TYPE: ModelFacet.TYPE,
    search_pb2.MODEL_FACET_BASE_MODEL: ModelFacet.BASE_MODEL,
    search_pb2.MODEL_FACET_TAG: ModelFacet.TAG,
    search_pb2.MODEL_FACET_NSFW_LEVEL: ModelFacet.NSFW_LEVEL,
    search_pb2.MODEL_FACET_FILE_FORMAT: ModelFacet.FILE_FORMAT,
    search_pb2.MODEL_FACET_COMMERCIAL_USE: ModelFacet.COMMERCIAL_USE,
}
_FACETS_PB: Mapping[ModelFacet, search_pb2.ModelFacet.ValueType] = {v: k for k, v in _FACETS.items()}
_IMAGE_SORTS: Mapping[int, ImageSort] = {
    search_pb2.IMAGE_SORT_UNSPECIFIED: ImageSort.NEWEST,
    search_pb2.IMAGE_SORT_MOST_REACTIONS: ImageSort.MOST_REACTIONS,
    search_pb2.IMAGE_SORT_MOST_COMMENTS: ImageSort.MOST_COMMENTS,
    search_pb2.IMAGE_SORT_NEWEST: ImageSort.NEWEST,
}
_KINDS: Mapping[search_pb2.SuggestionKind.ValueType, SuggestionKind] = {
    search_pb2.SUGGESTION_KIND_MODEL_NAME: SuggestionKind.MODEL_NAME,
    search_pb2.SUGGESTION_KIND_TAG: SuggestionKind.TAG,
    search_pb2.SUGGESTION_KIND_CREATOR: SuggestionKind.CREATOR,
}
_KINDS_PB: Mapping[SuggestionKind, search_pb2.SuggestionKind.ValueType] = {v: k for k, v in _KINDS.items()}
_FIELD_NAMES = {"text": "query", "limit": "page.page_size", "cursor": "page.cursor"}
"""Domain field names -> request field names, for the violations a caller reads."""


def viewer() -> Viewer:
    """What the caller may browse: anonymous, a signed-in user, or a moderator (admins and internal services
    count as moderators: a service such as the gateway enforces its own callers' levels)."""
    principal = current_principal()
    if principal is None:
        return Viewer.ANONYMOUS
    if principal.has_role("moderator", "admin", "service"):
        return Viewer.MODERATOR
    return Viewer.USER


def _enum(values: Mapping[Any, E], number: int, field: str, names: str) -> E:
    value = values.get(number)
    if value is None:
        raise InvalidArgument(
            f"{field} {number} is not one this service knows",
            violations=[FieldViolation(field, f"must be one of {names}")],
        )
    return value


def _names(enum_type: Any, values: Mapping[Any, Any]) -> str:
    return ", ".join(enum_type.Name(number) for number in values)


def _level(request: Any) -> int:
    requested = request.browsing_level if request.HasField("browsing_level") else None
    return browsing_level(requested, viewer())


def _page(page: pagination_pb2.PageRequest) -> tuple[int, str | None]:
    return page.page_size or DEFAULT_PAGE_SIZE, page.cursor or None


def model_query(request: search_pb2.SearchModelsRequest) -> ModelQuery:
    """The domain query of a request. Enums and the caller's right to its browsing level are checked here; text,
    limits, filter values and cursors by modelhub.search.domain.validation, which every engine applies."""
    f = request.filters
    filters = ModelFilters(
        types=tuple(f.types),
        base_models=tuple(f.base_models),
        tags=tuple(f.tags),
        creator_user_ids=tuple(f.creator_user_ids),
        file_formats=tuple(f.file_formats),
        hashes=tuple(f.hashes),
        allow_no_credit=f.allow_no_credit if f.HasField("allow_no_credit") else None,
        allow_derivatives=f.allow_derivatives if f.HasField("allow_derivatives") else None,
        allow_different_license=f.allow_different_license if f.HasField("allow_different_license") else None,
        allow_commercial_use=tuple(f.allow_commercial_use),
    )
    if request.sort == search_pb2.MODEL_SORT_UNSPECIFIED:
        # Relevance needs words to score; text of only punctuation is no text condition at all.
        sort = ModelSort.RELEVANCE if words(request.query[: MAX_TEXT_CHARS + 1]) else ModelSort.HIGHEST_RATED
    else:
        sort = _enum(_MODEL_SORTS, request.sort, "sort", _names(search_pb2.ModelSort, _MODEL_SORTS))
    facet_names = _names(search_pb2.ModelFacet, _FACETS)
    facets = tuple(dict.fromkeys(_enum(_FACETS, number, "facets", facet_names) for number in request.facets))
    limit, cursor = _page(request.page)
    return ModelQuery(
        browsing_level=_level(request),
        text=request.query,
        filters=filters,
        sort=sort,
        period=_enum(_PERIODS, request.period, "period", _names(search_pb2.Period, _PERIODS)),
        facets=facets,
        limit=limit,
        cursor=cursor,
    )


def image_query(request: search_pb2.SearchImagesRequest) -> ImageQuery:
    limit, cursor = _page(request.page)
    return ImageQuery(
        browsing_level=_level(request),
        text=request.query,
        model_version_ids=tuple(request.model_version_ids),
        model_ids=tuple(request.model_ids),
        creator_user_ids=tuple(request.creator_user_ids),
        tags=tuple(request.tags),
        sort=_enum(_IMAGE_SORTS, request.sort, "sort", _names(search_pb2.ImageSort, _IMAGE_SORTS)),
        limit=limit,
        cursor=cursor,
    )


def models_pb(page: ModelPage) -> search_pb2.SearchModelsResponse:
    return search_pb2.SearchModelsResponse(
        hits=[
            search_pb2.ModelHit(
                model_id=h.model_id,
                name=h.name,
                type=h.type,
                creator_username=h.creator_username,
                nsfw_level=h.nsfw_level,
                sort_value=h.sort_value,
            )
            for h in page.hits
        ],
        page_info=pagination_pb2.PageInfo(next_cursor=page.next_cursor or ""),
        facets=[
            search_pb2.FacetCounts(
                facet=_FACETS_PB[facet],
                values=[search_pb2.FacetValue(value=v.value, count=v.count) for v in values],
            )
            for facet, values in page.facets.items()
        ],
    )


def images_pb(page: ImagePage) -> search_pb2.SearchImagesResponse:
    return search_pb2.SearchImagesResponse(
        hits=[
            search_pb2.ImageHit(
                image_id=h.image_id,
                creator_username=h.creator_username,
                nsfw_level=h.nsfw_level,
                width=h.width,
                height=h.height,
                blurhash=h.blurhash,
                sort_value=h.sort_value,
            )
            for h in page.hits
        ],
        page_info=pagination_pb2.PageInfo(next_cursor=page.next_cursor or ""),
    )


def suggestions_pb(suggestions: list[Suggestion]) -> search_pb2.SuggestResponse:
    return search_pb2.SuggestResponse(
        suggestions=[search_pb2.Suggestion(kind=_KINDS_PB[s.kind], text=s.text, weight=s.weight) for s in suggestions]
    )


def _request_field_names(error: InvalidArgument) -> InvalidArgument:
    """The error of a search with its violations named as in the request message."""
    error.violations = [replace(v, field=_FIELD_NAMES.get(v.field, v.field)) for v in error.violations]
    return error


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, searcher: Searcher, rebuilder: Rebuilder) -> None:
        self.searcher = searcher
        self.rebuilder = rebuilder

    async def SearchModels(  # noqa: N802 - generated name
        self, request: search_pb2.SearchModelsRequest, context: Context
    ) -> search_pb2.SearchModelsResponse:
        try:
            page = await self.searcher.models(model_query(request))
        except InvalidArgument as error:
            raise _request_field_names(error) from None
        return models_pb(page)

    async def SearchImages(  # noqa: N802 - generated name
        self, request: search_pb2.SearchImagesRequest, context: Context
    ) -> search_pb2.SearchImagesResponse:
        try:
            page = await self.searcher.images(image_query(request))
        except InvalidArgument as error:
            raise _request_field_names(error) from None
        return images_pb(page)

    async def Suggest(  # noqa: N802 - generated name
        self, request: search_pb2.SuggestRequest, context: Context
    ) -> search_pb2.SuggestResponse:
        kind_names = _names(search_pb2.SuggestionKind, _KINDS)
        kinds = tuple(dict.fromkeys(_enum(_KINDS, k, "kinds", kind_names) for k in request.kinds)) or tuple(
            SuggestionKind
        )
        level = _level(request)
        suggestions = await self.searcher.suggest(request.prefix, kinds, level, request.limit or DEFAULT_SUGGESTIONS)
        return suggestions_pb(list(suggestions))

    async def Reindex(  # noqa: N802 - generated name
        self, request: search_pb2.ReindexRequest, context: Context
    ) -> search_pb2.ReindexResponse:
        require_principal("admin")
        report = await self.rebuilder.rebuild(replay_stream=request.replay_stream)
        response = search_pb2.ReindexResponse(
            generation=report.generation,
            models=report.models,
            images=report.images,
            replayed_events=report.replayed_events,
        )
        response.took.FromNanoseconds(int(report.took_seconds * 1e9))
        response.paused.FromNanoseconds(int(report.paused_seconds * 1e9))
        response.finished_at.FromDatetime(datetime.now(UTC))
        return response


def add_to_server(servicer: SearchServicer, server: grpc.aio.Server) -> None:
    """Like the generated add_SearchServiceServicer_to_server, but a request that does not parse (invalid UTF-8
    in a string field) reaches the error mapping as INVALID_ARGUMENT instead of failing inside grpc."""
    add_service(servicer, server, search_pb2, "SearchService")
