"""Keyset pagination of the gallery and community lists: page sizes and opaque cursors.

A cursor is the sort key of the last item of a page (an id, or a time and an id), base64-encoded with a
prefix naming the list, so a cursor from another list is refused instead of silently misread. Lists fetch
one item more than the page: a next cursor is given only when that item exists, so it never leads to an
empty page (at the time it was issued).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

from modelhub.catalog.domain.commands import Violations
from modelhub.common.v1 import pagination_pb2

T = TypeVar("T")
DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_SIZE: Final = 100


@dataclass(frozen=True)
class Page:
    size: int
    cursor: list[str] | None
    """The decoded sort key of the previous page's last item, or None for the first page."""


def page_of(
    request: pagination_pb2.PageRequest,
    list_name: str,
    *,
    default: int = DEFAULT_PAGE_SIZE,
    maximum: int = MAX_PAGE_SIZE,
) -> Page:
    """Validate a PageRequest for the list `list_name` (INVALID_ARGUMENT naming the bad field)."""
    v = Violations()
    size = request.page_size or default
    if size > maximum:
        v.add("page.page_size", f"must be at most {maximum}; got {size}")
    key: list[str] | None = None
    if request.cursor:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(request.cursor.encode()).decode())
        except (binascii.Error, UnicodeDecodeError, ValueError):
            decoded = None
        if (
            isinstance(decoded, list)
            and len(decoded) >= 2
            and decoded[0] == list_name
            and all(isinstance(part, str) for part in decoded)
        ):
            key = decoded[1:]
        else:
            v.add("page.cursor", "is not a cursor this list returned: start again without one")
    v.raise_if_any("request")
    return Page(size, key)


def id_after(page: Page) -> str | None:
    return page.cursor[0] if page.cursor else None


def time_after(page: Page) -> tuple[datetime, str] | None:
    """A (time, id) cursor; INVALID_ARGUMENT when the cursor is not one."""
    if not page.cursor:
        return None
    try:
        at, item = page.cursor
        return datetime.fromisoformat(at), item
    except ValueError:
        v = Violations()
        v.add("page.cursor", "is not a cursor this list returned: start again without one")
        v.raise_if_any("request")
        raise  # pragma: no cover - raise_if_any raised


def page_info(list_name: str, items: Sequence[T], size: int, key: list[str] | None) -> pagination_pb2.PageInfo:
    """The PageInfo of a page fetched with size + 1 items: `key` is the sort key of the page's last item."""
    if len(items) <= size or key is None:
        return pagination_pb2.PageInfo()
    cursor = base64.urlsafe_b64encode(json.dumps([list_name, *key]).encode()).decode()
    return pagination_pb2.PageInfo(next_cursor=cursor)
