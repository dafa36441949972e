"""Opaque keyset cursors: where the next page starts, bound to the query that made it. Pure.

A cursor names the last item of a page by its position in the sort order, never by an offset: `position` is
the sort key (an integer, see modelhub.search.domain.ranking) or, for Relevance, the text score; `item_id`
breaks ties. The next page holds the items strictly after (position, item_id) in (position desc, id asc)
order, as the index is *then*: an item that stays in the result set with the same position is returned
exactly once across the pages, whatever is inserted, updated or deleted in between. (An item whose position
changes between two pages moves: it may show up twice or not at all; that is what "the order changed" means.)

The token is `m1.` / `i1.` (models / images, format version 1) followed by URL-safe base64 of a JSON array. It
carries a fingerprint of the query, so a cursor replayed with another query (other text, filters, sort,
period or browsing level) is refused with INVALID_ARGUMENT instead of silently paging something else. The page
size may change between pages. Tampering with a token can only move where a page of the same query starts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from modelhub.core.errors import FieldViolation, InvalidArgument
from modelhub.search.domain.queries import ImageQuery, ModelQuery

MAX_CURSOR_CHARS = 1024


@dataclass(frozen=True)
class Cursor:
    """Where a page ended.

    `ties_after`: other items had the same position after `item_id` when the page was made (engines that cannot
    filter on the tie-break field directly fetch that group again). `depth`: how many items came before, a
    sizing hint for engines that cannot start a search at a score (tantivy's Relevance).
    """

    fingerprint: str
    position: int | float
    item_id: str
    ties_after: bool = False
    depth: int = 0


def model_fingerprint(query: ModelQuery) -> str:
    """What a model cursor is bound to: everything that decides the result order and set (not limit, facets)."""
    f = query.filters
    canonical = [
        "models",
        query.browsing_level,
        query.text,
        query.sort.value,
        query.period.value,
        sorted(f.types),
        sorted(f.base_models),
        sorted(f.tags),
        sorted(f.creator_user_ids),
        sorted(f.file_formats),
        sorted(h.upper() for h in f.hashes),
        f.allow_no_credit,
        f.allow_derivatives,
        f.allow_different_license,
        sorted(f.allow_commercial_use),
    ]
    return _digest(canonical)


def image_fingerprint(query: ImageQuery) -> str:
    """What an image cursor is bound to."""
    canonical = [
        "images",
        query.browsing_level,
        query.text,
        query.sort.value,
        sorted(query.model_version_ids),
        sorted(query.model_ids),
        sorted(query.creator_user_ids),
        sorted(query.tags),
    ]
    return _digest(canonical)


def _digest(canonical: list[Any]) -> str:
    data = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.blake2b(data, digest_size=9).hexdigest()


def encode(kind: str, cursor: Cursor) -> str:
    """The opaque token of `cursor`; `kind` is "m" (models) or "i" (images)."""
    body = [cursor.fingerprint, cursor.position, cursor.item_id, int(cursor.ties_after), cursor.depth]
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return f"{kind}1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(kind: str, token: str, fingerprint: str, *, field: str = "cursor") -> Cursor:
    """The cursor in `token`, checked against the query's `fingerprint`.

    Raises InvalidArgument for anything that is not a cursor this service issued for this query.
    """
    cursor = _parse(kind, token, field)
    if cursor.fingerprint != fingerprint:
        raise InvalidArgument(
            "the cursor belongs to another query: repeat the query that returned it, or drop the cursor to start "
            "from the first page",
            violations=[FieldViolation(field, "cursor of a different query (text, filters, sort or level)")],
            reason="CURSOR_QUERY_MISMATCH",
        )
    return cursor


def _invalid(field: str, detail: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid cursor: {detail}; pass the next_cursor of a previous page unchanged, or none for the first page",
        violations=[FieldViolation(field, detail)],
        reason="INVALID_CURSOR",
    )


def _parse(kind: str, token: str, field: str) -> Cursor:
    prefix = f"{kind}1."
    if len(token) > MAX_CURSOR_CHARS:
        raise _invalid(field, f"longer than {MAX_CURSOR_CHARS} characters")
    if not token.startswith(prefix):
        raise _invalid(field, "not a cursor of this search (unknown format or kind)")
    payload = token[len(prefix) :]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        body = json.loads(raw.decode())
    except (binascii.Error, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _invalid(field, "not decodable") from e
    if not (isinstance(body, list) and len(body) == 5):
        raise _invalid(field, "malformed")
    fingerprint, position, item_id, ties_after, depth = body
    valid = (
        isinstance(fingerprint, str)
        and isinstance(position, int | float)
        and not isinstance(position, bool)
        and isinstance(item_id, str)
        and ties_after in (0, 1)
        and isinstance(depth, int)
        and not isinstance(depth, bool)
        and depth >= 0
    )
    if not valid:
        raise _invalid(field, "malformed")
    if isinstance(position, float) and not math.isfinite(position):  # engines never return NaN or infinity
        raise _invalid(field, "malformed")
    return Cursor(fingerprint, position, item_id, bool(ties_after), depth)
