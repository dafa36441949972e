"""Cursor tokens and query fingerprints (modelhub.search.domain.cursors)."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelhub.core.errors import InvalidArgument
from modelhub.search.domain import cursors
from modelhub.search.domain.cursors import Cursor
from modelhub.search.domain.documents import Period
from modelhub.search.domain.queries import ImageQuery, ModelFacet, ModelFilters, ModelQuery, ModelSort


@given(
    position=st.one_of(st.integers(0, 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False)),
    item_id=st.text(max_size=60),
    ties=st.booleans(),
    depth=st.integers(0, 10**6),
)
def test_round_trip(position: int | float, item_id: str, ties: bool, depth: int) -> None:
    cursor = Cursor("f" * 18, position, item_id, ties, depth)
    token = cursors.encode("m", cursor)

    assert token.startswith("m1.")
    assert cursors.decode("m", token, "f" * 18) == cursor


@given(st.text(max_size=300))
def test_any_other_text_is_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        cursors.decode("m", token, "f" * 18)
    assert error.value.violations[0].field == "cursor"


def test_the_fingerprint_covers_what_decides_the_results() -> None:
    base = ModelQuery(browsing_level=1, text="x", sort=ModelSort.MOST_LIKED, period=Period.WEEK)
    same = [replace(base, limit=77), replace(base, facets=(ModelFacet.TAG,)), replace(base, cursor="c")]
    different = [
        replace(base, text="y"),
        replace(base, browsing_level=3),
        replace(base, sort=ModelSort.NEWEST),
        replace(base, period=Period.DAY),
        replace(base, filters=ModelFilters(tags=("a",))),
        replace(base, filters=ModelFilters(allow_no_credit=False)),
    ]

    fingerprint = cursors.model_fingerprint(base)
    assert all(cursors.model_fingerprint(q) == fingerprint for q in same)
    assert len({cursors.model_fingerprint(q) for q in different} | {fingerprint}) == len(different) + 1
    assert cursors.model_fingerprint(replace(base, filters=ModelFilters(tags=("a", "b")))) == (
        cursors.model_fingerprint(replace(base, filters=ModelFilters(tags=("b", "a"))))
    )
    image = ImageQuery(browsing_level=1)
    assert cursors.image_fingerprint(image) != cursors.image_fingerprint(replace(image, tags=("x",)))


def test_non_finite_positions_are_refused() -> None:
    token = "m1." + base64.urlsafe_b64encode(b'["f",Infinity,"a",0,0]').decode()

    with pytest.raises(InvalidArgument, match="malformed"):
        cursors.decode("m", token, "f")
