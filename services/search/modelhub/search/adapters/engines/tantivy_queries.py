"""ModelQuery / ImageQuery as tantivy queries, built clause by clause (user text never reaches a query parser).

Scores: filters are wrapped in constant-score-0 clauses, text clauses in constant scores from
`ranking.TEXT_BOOSTS`, so a score depends only on the document and the query (see modelhub.search.domain.ranking).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import tantivy
from tantivy import Occur, Query

from modelhub.search.adapters.engines.layout import TEXT_FIELDS
from modelhub.search.domain import ranking
from modelhub.search.domain.queries import ModelFilters, ModelQuery, ModelSort
from modelhub.search.domain.text import QueryTerm
from modelhub.search.domain.validation import ImageSearch, ModelSearch
from modelhub.search.domain.visibility import BITS, BLOCKED_TERM, UNRATED_TERM, visibility

_B = ranking.TEXT_BOOSTS
_RATED_TERMS = frozenset(str(bit) for bit in BITS if str(bit) != BLOCKED_TERM)

Clauses = list[tuple[Occur, Query]]


class QueryBuilder:
    """Builds queries against one schema, normalizing words with the analyzer the index was written with."""

    def __init__(self, schema: tantivy.Schema, analyzer: tantivy.TextAnalyzer) -> None:
        self.schema = schema
        self.analyzer = analyzer

    # -- building blocks ---------------------------------------------------------------------------------

    def _filter(self, query: Query) -> tuple[Occur, Query]:
        return Occur.Must, Query.const_score_query(query, 0.0)

    def _any_of(self, field: str, values: Sequence[object]) -> Query:
        if len(values) == 1:  # a term's postings intersect faster than a term set's bitset
            return self._term(field, values[0])
        return Query.term_set_query(self.schema, field, list(values))

    def _term(self, field: str, value: object) -> Query:
        return Query.term_query(self.schema, field, value)

    def _scored(self, query: Query, boost_name: str) -> Query:
        return Query.const_score_query(query, _B[boost_name])

    def _token(self, term: QueryTerm) -> str | None:
        """The word as the index holds it (the analyzer's folding wins over Python's if they differ)."""
        if term.token is None:
            return None
        analyzed = self.analyzer.analyze(term.token)
        return analyzed[0] if len(analyzed) == 1 else term.token

    def visibility_clauses(self, browsing_level: int) -> Clauses:
        """The browsing level's filter. A level that shows every rated bit (signed-in adults: 31, moderators: 63)
        is written as exclusions only (unrated, blocked; nothing for 63): the same documents, since every
        document has at least one `nsfw` term, but intersecting with other clauses costs a fraction of a union of
        five big posting lists (measured at 1M documents: a type filter at level 31, 17 ms -> 6 ms)."""
        v = visibility(browsing_level)
        if _RATED_TERMS.issubset(v.allowed):
            hidden = [t for t in (UNRATED_TERM, BLOCKED_TERM) if t not in v.allowed]
            return [(Occur.MustNot, self._term("nsfw", t)) for t in hidden]
        clauses: Clauses = [self._filter(self._any_of("nsfw", v.allowed))]
        if v.exclude_blocked:
            clauses.append((Occur.MustNot, self._term("nsfw", BLOCKED_TERM)))
        return clauses

    def visibility_query(self, browsing_level: int) -> Query:
        return all_of(self.visibility_clauses(browsing_level))

    # -- models --------------------------------------------------------------------------------------------

    def _model_term(self, term: QueryTerm) -> Query | None:
        """One query word: the best of its clauses (exact, prefix or fuzzy, per field) scores it."""
        clauses: list[Query] = []
        if term.hash_value is not None:
            clauses.append(self._scored(self._term("hash", term.hash_value), "hash"))
        token = self._token(term)
        if token is not None:
            edits = term.max_edits
            for field, name in TEXT_FIELDS:
                clauses.append(self._scored(self._term(field, token), f"{name}_exact"))
                if edits:
                    fuzzy = Query.fuzzy_term_query(self.schema, field, token, distance=edits)
                    clauses.append(self._scored(fuzzy, f"{name}_fuzzy"))
            if len(token) >= ranking.PREFIX_MIN_CHARS:
                prefix = Query.fuzzy_term_query(self.schema, "name", token, distance=0, prefix=True)
                clauses.append(self._scored(prefix, "name_prefix"))
        if not clauses:
            return None
        return Query.disjunction_max_query(clauses)

    def _model_filters(self, filters: ModelFilters) -> Clauses:
        clauses: Clauses = []
        for field, values in (
            ("type", filters.types),
            ("base_model", filters.base_models),
            ("tag", [t.lower() for t in filters.tags]),
            ("creator_user_id", filters.creator_user_ids),
            ("file_format", filters.file_formats),
            ("hash", [h.upper() for h in filters.hashes]),
        ):
            if values:
                clauses.append(self._filter(self._any_of(field, values)))
        for field, flag in (
            ("allow_no_credit", filters.allow_no_credit),
            ("allow_derivatives", filters.allow_derivatives),
            ("allow_different_license", filters.allow_different_license),
        ):
            if flag is not None:
                clauses.append(self._filter(self._term(field, flag)))
        clauses.extend(self._filter(self._term("commercial_use", use)) for use in filters.allow_commercial_use)
        return clauses

    def period_since(self, query: ModelQuery, now: datetime) -> int | None:
        """Newest over a period keeps models first published since then (epoch seconds); None: no window
        (metric sorts read the period's counts instead)."""
        seconds = ranking.PERIOD_SECONDS.get(query.period)
        if query.sort is not ModelSort.NEWEST or seconds is None:
            return None
        return ranking.epoch_seconds(now - timedelta(seconds=seconds))

    def _period_clause(self, query: ModelQuery, now: datetime) -> Clauses:
        since = self.period_since(query, now)
        if since is None:
            return []
        return [self._filter(Query.range_query(self.schema, "published_s", tantivy.FieldType.Unsigned, since, None))]

    def models(self, search: ModelSearch, now: datetime) -> Query:
        """Every document the query matches (text, filters, period, browsing level), scored for Relevance."""
        q = search.query
        clauses = self.visibility_clauses(q.browsing_level)
        clauses += self._model_filters(q.filters)
        clauses += self._period_clause(q, now)
        for term in search.terms:
            word = self._model_term(term)
            # A word that can match nothing (too long to be indexed, not a hash) matches no document.
            clauses.append((Occur.Must, word if word is not None else Query.empty_query()))
        return all_of(clauses)

    # -- images --------------------------------------------------------------------------------------------

    def _prompt_term(self, term: QueryTerm) -> Query:
        token = self._token(term)
        if token is None:
            return Query.empty_query()
        exact = self._term("prompt", token)
        if not term.max_edits:
            return exact
        return Query.boolean_query(
            [
                (Occur.Should, exact),
                (Occur.Should, Query.fuzzy_term_query(self.schema, "prompt", token, distance=term.max_edits)),
            ]
        )

    def images(self, search: ImageSearch) -> Query:
        q = search.query
        clauses = self.visibility_clauses(q.browsing_level)
        for field, values in (
            ("model_version_id", q.model_version_ids),
            ("model_id", q.model_ids),
            ("creator_user_id", q.creator_user_ids),
            ("tag", [t.lower() for t in q.tags]),
        ):
            if values:
                clauses.append(self._filter(self._any_of(field, values)))
        clauses += [self._filter(self._prompt_term(term)) for term in search.terms]
        return all_of(clauses)

    # -- keys ----------------------------------------------------------------------------------------------

    def key_below(self, field: str, key: int) -> Query:
        return Query.range_query(self.schema, field, tantivy.FieldType.Unsigned, None, key, include_upper=False)

    def key_equal(self, field: str, key: int) -> Query:
        return Query.range_query(self.schema, field, tantivy.FieldType.Unsigned, key, key)

    def name_prefix(self, words: Sequence[str], browsing_level: int) -> Query:
        """Visible models whose name has every word, the last one as a prefix (autocomplete)."""
        clauses = self.visibility_clauses(browsing_level)
        tokens = [self._token(QueryTerm(w, w, 0, None)) or w for w in words]
        clauses += [self._filter(self._term("name", t)) for t in tokens[:-1]]
        last = Query.fuzzy_term_query(self.schema, "name", tokens[-1], distance=0, prefix=True)
        clauses.append(self._filter(last))
        return all_of(clauses)


def all_of(clauses: Clauses) -> Query:
    """The conjunction of `clauses`. With no positive clause (only exclusions, or none) it starts from every
    document, scoring 0: a tantivy boolean query of exclusions alone matches nothing."""
    if all(occur == Occur.MustNot for occur, _ in clauses):
        clauses = [(Occur.Must, Query.const_score_query(Query.all_query(), 0.0)), *clauses]
    return Query.boolean_query(clauses)


def restrict(query: Query, *conditions: Query) -> Query:
    """`query` (its score kept) and every condition (scoring nothing)."""
    clauses: Clauses = [(Occur.Must, query)]
    clauses += [(Occur.Must, Query.const_score_query(c, 0.0)) for c in conditions]
    return Query.boolean_query(clauses)
