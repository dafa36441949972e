"""How user text becomes search terms: tokens, the typo rule, hash look-alikes. Pure; shared by every engine.

User text is never handed to an engine's query parser: it is split into words here and each word becomes
literal term clauses (exact, prefix, fuzzy), so quotes, brackets, `field:value`, `AND`/`OR`/`NOT` and the
like are searched for as the words they contain.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_TEXT_CHARS = 200
"""Longest query text accepted (characters); longer is INVALID_ARGUMENT."""

MAX_TERMS = 16
"""Most words a query may have; more is INVALID_ARGUMENT (each word is a clause in every engine)."""

MAX_TOKEN_BYTES = 40
"""Words of this many UTF-8 bytes or more are not indexed as text (as tantivy's remove_long filter); a hash
that long is still found through the hash field."""

HASH_MIN_CHARS = 8
HASH_MAX_CHARS = 64
"""File hashes are 8 (CRC32, AutoV1), 10 (AutoV2), 12 (AutoV3 as A1111 writes it) or 64 (SHA256, BLAKE3,
AutoV3) hex digits."""

_WORD = re.compile(r"[^\W_]+")
_HEX = re.compile(r"[0-9a-f]+")


def fold(text: str) -> str:
    """Lower case without diacritics ("Café" -> "cafe"), as the index stores text."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    """The words of `text`: runs of letters and digits, folded; everything else separates words."""
    return _WORD.findall(fold(text))


def max_edits(token: str) -> int:
    """Typo tolerance of one word: exact below 3 characters, one edit for 3 to 5, two from 6 on."""
    n = len(token)
    if n < 3:
        return 0
    if n < 6:
        return 1
    return 2


@dataclass(frozen=True)
class QueryTerm:
    """One word of a query and how it may match.

    `token` is None when the word is too long to be indexed as text (only its hash clause can match);
    `hash_value` is the upper-case form when the word could be a file hash.
    """

    word: str
    token: str | None
    max_edits: int
    hash_value: str | None


def query_terms(text: str) -> tuple[QueryTerm, ...]:
    """The terms of a query text; empty when it has no letters or digits (no text condition).

    Every term must match (AND); each term matches exactly, by prefix (names) or within `max_edits` edits.
    """
    terms = []
    for word in words(text):
        token = word if len(word.encode()) < MAX_TOKEN_BYTES else None
        is_hash = HASH_MIN_CHARS <= len(word) <= HASH_MAX_CHARS and _HEX.fullmatch(word) is not None
        terms.append(
            QueryTerm(
                word=word,
                token=token,
                max_edits=max_edits(word) if token is not None else 0,
                hash_value=word.upper() if is_hash else None,
            )
        )
    return tuple(terms)


def suggestion_prefix(prefix: str) -> str:
    """A suggestion prefix as it is matched: folded, control characters dropped, inner spaces collapsed."""
    cleaned = "".join(c for c in fold(prefix) if unicodedata.category(c)[0] != "C")
    return " ".join(cleaned.split())
