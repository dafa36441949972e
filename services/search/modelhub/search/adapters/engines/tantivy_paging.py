"""Exact keyset pages on tantivy, which orders by one fast field and breaks ties arbitrarily.

Order: (key desc, id asc), the key from modelhub.search.domain.ranking; for Relevance (score desc, id asc).
tantivy returns the top k by key with equal keys in index order, so a page is made exact here: whenever the
group of documents sharing the boundary key might be cut, that group is fetched whole and sorted by id. Keys
embed a 31-bit hash of the id, so such groups are rare and tiny (one extra query on a few documents).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tantivy
from tantivy import Query

from modelhub.search.domain.cursors import Cursor
from modelhub.search.domain.ranking import MAX_KEY

TIE_GROUP_LIMIT = 100_000
"""Most documents one key can be shared by; keys embed an id hash, so real groups hold one or two."""

MAX_RELEVANCE_DEPTH = 10_000
"""tantivy cannot start a search at a score: Relevance pages re-rank the top hits, and a walk stops after this
many results (the last page then has no next cursor). Other sorts have no such limit."""


@dataclass
class Item:
    position: int | float
    address: tantivy.DocAddress
    item_id: str = ""


@dataclass(frozen=True)
class Window:
    """The first `limit` items after a cursor, whether more follow, and whether the last item's position is
    shared by items after it (for the next cursor)."""

    items: list[Item]
    has_more: bool
    ties_after: bool


def _addr(a: tantivy.DocAddress) -> tuple[int, int]:
    return a.segment_ord, a.doc


class KeysetPager:
    """Pages of one searcher; documents are read once (their stored fields) and kept for the hits."""

    def __init__(
        self,
        searcher: tantivy.Searcher,
        id_field: str,
        key_below: Callable[[str, int], Query],
        key_equal: Callable[[str, int], Query],
        restrict: Callable[[Query, Query], Query],
    ) -> None:
        self.searcher = searcher
        self._id_field = id_field
        self._key_below = key_below
        self._key_equal = key_equal
        self._restrict = restrict
        self._documents: dict[tuple[int, int], dict[str, list[Any]]] = {}

    def document(self, address: tantivy.DocAddress) -> dict[str, list[Any]]:
        """The stored fields of a document (read from the store once per pager)."""
        key = _addr(address)
        if key not in self._documents:
            self._documents[key] = self.searcher.doc(address).to_dict()
        return self._documents[key]

    def _resolve(self, items: list[Item]) -> list[Item]:
        for item in items:
            if not item.item_id:
                item.item_id = self.document(item.address)[self._id_field][0]
        return items

    def _by_key(self, query: Query, key_field: str, limit: int) -> list[Item]:
        result = self.searcher.search(query, limit, count=False, order_by_field=key_field, order=tantivy.Order.Desc)
        return [Item(int(position), address) for position, address in result.hits]

    def _group(self, query: Query, key_field: str, key: int) -> list[Item]:
        """Every document of `query` with sort key `key`, by id."""
        group = self._by_key(self._restrict(query, self._key_equal(key_field, key)), key_field, TIE_GROUP_LIMIT)
        return sorted(self._resolve(group), key=lambda i: i.item_id)

    def _top(self, query: Query, key_field: str, n: int) -> list[Item]:
        """The first n documents of `query` in (key desc, id asc) order, exactly, plus the one after them."""
        hits = self._by_key(query, key_field, n + 1)
        if len(hits) <= n:
            return sorted(self._resolve(hits), key=lambda i: (-i.position, i.item_id))
        boundary = hits[n - 1].position
        if hits[n].position < boundary:
            # Every document with a key >= boundary is among the first n hits: sorting them is exact.
            head = sorted(self._resolve(hits[:n]), key=lambda i: (-i.position, i.item_id))
            return [*head, hits[n]]
        # The group sharing the boundary key may go on beyond what was fetched: fetch it whole.
        above = [h for h in hits if h.position > boundary]
        ordered = sorted(self._resolve(above), key=lambda i: (-i.position, i.item_id))
        ordered += self._group(query, key_field, int(boundary))
        return ordered[: n + 1]

    def by_key(self, query: Query, key_field: str, cursor: Cursor | None, limit: int) -> Window:
        """The page after `cursor` in (key desc, id asc) order."""
        items: list[Item] = []
        rest = query
        if cursor is not None:
            key = min(max(int(cursor.position), 0), MAX_KEY)  # an edited cursor may hold any number
            if cursor.ties_after:
                items = [i for i in self._group(query, key_field, key) if i.item_id > cursor.item_id]
            rest = self._restrict(query, self._key_below(key_field, key))
        if len(items) <= limit:
            items += self._top(rest, key_field, limit + 1 - len(items))
        return _window(items, limit)

    def by_score(self, query: Query, weight_field: str, cursor: Cursor | None, limit: int) -> Window:
        """The page after `cursor` in (score desc, id asc) order (Relevance). tantivy cannot filter on a score,
        so this re-ranks the top k hits, growing k until the page is exact (see MAX_RELEVANCE_DEPTH)."""
        depth = cursor.depth if cursor is not None else 0
        if depth >= MAX_RELEVANCE_DEPTH:
            return Window([], False, False)
        cap = MAX_RELEVANCE_DEPTH + limit + 1
        k = min(max(64, (depth + limit) * 5 // 4 + 16), cap)
        while True:
            result = self.searcher.search(query, k, count=False, weight_by_field=weight_field)
            hits = [Item(float(score), address) for score, address in result.hits]
            final = len(hits) < k or k >= cap
            if not final:
                floor = hits[-1].position  # documents scoring this may have been cut off at k
                hits = [h for h in hits if h.position > floor]
            items, enough = self._after(hits, cursor, limit + 1)
            if enough or final:
                window = _window(items, limit)
                if depth + len(window.items) >= MAX_RELEVANCE_DEPTH:
                    return Window(window.items, False, False)
                return window
            k = min(k * 4, cap)

    def _after(self, hits: list[Item], cursor: Cursor | None, n: int) -> tuple[list[Item], bool]:
        """The first n of `hits` after the cursor in (score desc, id asc) order, and whether n were found.
        `hits` (by score, highest first) must hold whole groups of equal scores."""
        candidates: list[Item] = []
        for item in hits:
            if cursor is not None:
                if item.position > cursor.position:
                    continue
                if item.position == cursor.position and self._resolve([item])[0].item_id <= cursor.item_id:
                    continue
            if len(candidates) >= n and item.position < candidates[-1].position:
                break  # the group of equal scores at the n-th candidate is complete
            candidates.append(item)
        ordered = sorted(self._resolve(candidates), key=lambda i: (-i.position, i.item_id))
        return ordered[:n], len(ordered) >= n


def _window(items: list[Item], limit: int) -> Window:
    page = items[:limit]
    has_more = len(items) > limit and bool(page)
    ties_after = has_more and items[limit].position == page[-1].position
    return Window(page, has_more, ties_after)
