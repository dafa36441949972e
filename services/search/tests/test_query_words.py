"""How query text becomes words (modelhub.search.domain.text)."""

from __future__ import annotations

import pytest

from modelhub.search.domain.text import max_edits, query_terms, suggestion_prefix, words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Anime Girl", ["anime", "girl"]),
        ('name:"x" AND (y OR z)', ["name", "x", "and", "y", "or", "z"]),
        ("snake_case-and.dots", ["snake", "case", "and", "dots"]),
        ("Café Crème", ["cafe", "creme"]),
        ("日本語 テスト", ["日本語", "テスト"]),
        ("sd1.5 v2", ["sd1", "5", "v2"]),
        ("  *** ", []),
    ],
)
def test_words(text: str, expected: list[str]) -> None:
    assert words(text) == expected


@pytest.mark.parametrize(
    ("word", "edits"), [("a", 0), ("ab", 0), ("abc", 1), ("abcde", 1), ("abcdef", 2), ("x" * 30, 2)]
)
def test_edit_distance_rule(word: str, edits: int) -> None:
    assert max_edits(word) == edits


def test_hash_look_alikes() -> None:
    sha, short, not_hex, too_short = query_terms("ABCDEF0123456789" * 4 + " 0a1b2c3d xyz12345 0a1b2c3")

    assert (sha.token, sha.hash_value) == (None, "ABCDEF0123456789" * 4)  # too long to be a text word
    assert (short.token, short.hash_value, short.max_edits) == ("0a1b2c3d", "0A1B2C3D", 2)
    assert not_hex.hash_value is None
    assert too_short.hash_value is None


def test_suggestion_prefix() -> None:
    assert suggestion_prefix("  Émile\x00\x01  Zola ") == "emile zola"
