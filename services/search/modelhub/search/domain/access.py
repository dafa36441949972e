"""Who may browse at which NSFW levels: the caller's browsing level, checked before any query runs.

NSFW levels are bit flags (PG=1, PG13=2, R=4, X=8, XXX=16, Blocked=32); a browsing level is an OR of them and
an item is shown when its level shares a bit with it (applied inside the engine, before pagination).
"""

from __future__ import annotations

from enum import Enum, IntFlag

from modelhub.core.errors import FieldViolation, InvalidArgument, PermissionDenied


class NsfwLevel(IntFlag):
    PG = 1
    PG13 = 2
    R = 4
    X = 8
    XXX = 16
    BLOCKED = 32


ALL_LEVELS = 63
DEFAULT_BROWSING_LEVEL = int(NsfwLevel.PG)
"""What a caller sees without asking for more: adult content is hidden by default."""


class Viewer(Enum):
    """What the caller is, as far as browsing levels go."""

    ANONYMOUS = "anonymous"
    USER = "user"
    MODERATOR = "moderator"  # moderators, admins, and internal services (which enforce their own callers' levels)


MAX_BROWSING_LEVEL: dict[Viewer, int] = {
    Viewer.ANONYMOUS: int(NsfwLevel.PG | NsfwLevel.PG13),
    Viewer.USER: ALL_LEVELS & ~NsfwLevel.BLOCKED,
    Viewer.MODERATOR: ALL_LEVELS,
}


def level_names(level: int) -> str:
    """`5` -> "PG|R"."""
    return "|".join(flag.name or "" for flag in NsfwLevel if level & flag) or "none"


def browsing_level(requested: int | None, viewer: Viewer, field: str = "browsing_level") -> int:
    """The level a query runs at: `requested` (None: the default), if the viewer may browse at it.

    Raises InvalidArgument for 0 or unknown bits, PermissionDenied when it asks for more than the viewer may see.
    """
    if requested is None:
        return DEFAULT_BROWSING_LEVEL
    if requested <= 0 or requested & ~ALL_LEVELS:
        raise InvalidArgument(
            f"browsing level {requested} is not a set of NSFW levels",
            violations=[FieldViolation(field, "must be an OR of PG=1, PG13=2, R=4, X=8, XXX=16, Blocked=32 (1 to 63)")],
        )
    allowed = MAX_BROWSING_LEVEL[viewer]
    excess = requested & ~allowed
    if excess:
        who = "anonymous callers" if viewer is Viewer.ANONYMOUS else f"{viewer.value}s"
        hint = " (sign in to see more)" if viewer is Viewer.ANONYMOUS else ""
        raise PermissionDenied(
            f"{who} may browse at most {level_names(allowed)} ({allowed}); {level_names(excess)} is not allowed{hint}",
            reason="BROWSING_LEVEL_NOT_ALLOWED",
            metadata={"max_browsing_level": str(allowed), "requested_browsing_level": str(requested)},
        )
    return requested
