"""How suggestions of several kinds share one answer. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from modelhub.search.domain.queries import Suggestion


def interleave(groups: Sequence[Sequence[Suggestion]], limit: int) -> list[Suggestion]:
    """Round-robin over the kinds (in the order asked), best first within each kind, at most `limit` in all:
    every kind asked for shows its best suggestions even when another kind has many."""
    result: list[Suggestion] = []
    for i in range(max((len(g) for g in groups), default=0)):
        for group in groups:
            if i < len(group) and len(result) < limit:
                result.append(group[i])
    return result
