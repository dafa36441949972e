"""Who may browse at which NSFW levels (pure)."""

from __future__ import annotations

import pytest

from modelhub.core.errors import InvalidArgument, PermissionDenied
from modelhub.search.domain.access import DEFAULT_BROWSING_LEVEL, Viewer, browsing_level, level_names


@pytest.mark.parametrize("viewer", list(Viewer))
def test_no_level_asked_means_pg(viewer: Viewer) -> None:
    assert browsing_level(None, viewer) == DEFAULT_BROWSING_LEVEL == 1


@pytest.mark.parametrize(
    ("viewer", "allowed", "refused"),
    [
        (Viewer.ANONYMOUS, [1, 2, 3], [4, 5, 8, 16, 31, 32]),
        (Viewer.USER, [1, 3, 4, 8, 16, 31], [32, 33, 63]),
        (Viewer.MODERATOR, [1, 31, 32, 63], []),
    ],
)
def test_each_viewer_may_ask_for_its_levels_only(viewer: Viewer, allowed: list[int], refused: list[int]) -> None:
    for level in allowed:
        assert browsing_level(level, viewer) == level
    for level in refused:
        with pytest.raises(PermissionDenied) as caught:
            browsing_level(level, viewer)
        assert caught.value.reason == "BROWSING_LEVEL_NOT_ALLOWED"


def test_the_refusal_says_what_is_allowed() -> None:
    with pytest.raises(PermissionDenied) as caught:
        browsing_level(5, Viewer.ANONYMOUS)
    assert "PG|PG13 (3)" in caught.value.message and "R is not allowed" in caught.value.message
    assert caught.value.metadata == {"max_browsing_level": "3", "requested_browsing_level": "5"}


@pytest.mark.parametrize("level", [0, -1, 64, 65, 1 << 31])
def test_a_level_that_is_no_set_of_levels_is_invalid(level: int) -> None:
    with pytest.raises(InvalidArgument) as caught:
        browsing_level(level, Viewer.MODERATOR)
    assert [v.field for v in caught.value.violations] == ["browsing_level"]


def test_level_names() -> None:
    assert level_names(0) == "none"
    assert level_names(35) == "PG|PG13|BLOCKED"
