"""Which items a browsing level shows, in terms an engine can filter on before it paginates. Pure.

An item's NSFW level is a set of bits (modelhub.search.domain.access.NsfwLevel). The index stores each set
bit as a term ("1", "2", "4", ... "32"), and "0" for an item not rated yet. With browsing level `b`:

- an item is shown when one of its bits is in `b` (`level & b != 0`);
- an item with the Blocked bit (32) is shown only when `b` has Blocked too (moderator views), whatever its
  other bits;
- an unrated item (level 0) is shown only when `b` has Blocked: ratings come from moderation shortly after
  an item is posted, and until then nobody but moderators can know what it shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelhub.search.domain.access import ALL_LEVELS, NsfwLevel

UNRATED_TERM = "0"
BLOCKED_TERM = str(int(NsfwLevel.BLOCKED))
BITS = tuple(int(flag) for flag in NsfwLevel)


def _terms(level: int) -> tuple[str, ...]:
    return tuple(str(bit) for bit in BITS if level & bit) or (UNRATED_TERM,)


_TERMS = [_terms(level) for level in range(ALL_LEVELS + 1)]


def level_terms(level: int) -> tuple[str, ...]:
    """The terms an item of NSFW `level` is indexed under (bits beyond Blocked are ignored)."""
    return _TERMS[level & ALL_LEVELS]


@dataclass(frozen=True)
class Visibility:
    """Filter of one browsing level: any of `allowed`, and not `BLOCKED_TERM` when `exclude_blocked`."""

    allowed: tuple[str, ...]
    exclude_blocked: bool


def visibility(browsing_level: int) -> Visibility:
    """The filter an engine applies for `browsing_level` (validated: 1 to 63)."""
    level = browsing_level & ALL_LEVELS
    moderator = bool(level & NsfwLevel.BLOCKED)
    allowed = tuple(str(bit) for bit in BITS if level & bit)
    if moderator:
        allowed = (*allowed, UNRATED_TERM)
    return Visibility(allowed=allowed, exclude_blocked=not moderator)


def is_visible(level: int, browsing_level: int) -> bool:
    """The same rule on plain integers (for tests and callers outside an engine)."""
    level &= ALL_LEVELS
    if level & NsfwLevel.BLOCKED and not browsing_level & NsfwLevel.BLOCKED:
        return False
    if level == 0:
        return bool(browsing_level & NsfwLevel.BLOCKED)
    return bool(level & browsing_level)
