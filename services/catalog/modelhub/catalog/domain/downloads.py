"""Rules of downloads and hash lookups (pure: no I/O).

What counts as a download: a DownloadFile that starts at byte 0 and asks for the whole file, by anyone but
the model's owner (a creator's own downloads earn nothing in the ledger's reward rules). A resumed download
(offset > 0) or a ranged read (a length short of the end) is the same download going on, or a tool peeking at
a header: not counted. Counts are kept per version per window of a fixed length aligned to the epoch, and a
window becomes one catalog.DownloadsCounted after it closed (never one event per download).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from modelhub.catalog.domain.commands import Violations
from modelhub.catalog.domain.vocabulary import HashKind

HASH_LENGTHS: Final = {
    HashKind.SHA256: 64,
    HashKind.AUTO_V1: 8,
    HashKind.AUTO_V2: 10,
    HashKind.CRC32: 8,
    HashKind.BLAKE3: 64,
}
"""Hex digits of each hash kind (Civitai's kinds, upper-case hex)."""
_HEX: Final = re.compile(r"[0-9A-F]+")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class HashQuery:
    value: str
    """Upper-case hex, as the hashes are stored."""
    kind: HashKind | None


def hash_query(value: str, kind: str) -> HashQuery:
    """Validate a lookup by hash: hex of a length some kind has (or `kind`'s length when given)."""
    v = Violations()
    normalized = value.strip().upper()
    parsed: HashKind | None = None
    if kind.strip():
        parsed = next((k for k in HashKind if k.value.lower() == kind.strip().lower()), None)
        if parsed is None:
            v.add("kind", f"must be empty or one of {', '.join(k.value for k in HashKind)}; got {kind!r}")
    if not normalized:
        v.add("hash", "is required")
    elif not _HEX.fullmatch(normalized):
        v.add("hash", "must be hexadecimal digits (0-9, A-F, any case)")
    elif parsed is not None and len(normalized) != HASH_LENGTHS[parsed]:
        v.add("hash", f"a {parsed.value} hash has {HASH_LENGTHS[parsed]} hex digits; got {len(normalized)}")
    elif len(normalized) not in set(HASH_LENGTHS.values()):
        lengths = ", ".join(f"{k.value} {n}" for k, n in HASH_LENGTHS.items())
        v.add("hash", f"no hash kind has {len(normalized)} hex digits ({lengths})")
    v.raise_if_any("hash lookup")
    return HashQuery(normalized, parsed)


def counts_as_download(offset: int, length: int, size: int, caller_id: str | None, owner_id: str) -> bool:
    """Whether a download request counts (see the module docstring)."""
    whole = offset == 0 and (length == 0 or length >= size)
    return whole and caller_id != owner_id


@dataclass(frozen=True)
class Window:
    """A counting window [start, end)."""

    start: datetime
    end: datetime

    def next(self) -> Window:
        return Window(self.end, self.end + (self.end - self.start))


def window_of(at: datetime, length_seconds: int) -> Window:
    """The window of `length_seconds` (aligned to the epoch) that contains `at`."""
    elapsed = int((at - _EPOCH).total_seconds())
    start = _EPOCH + timedelta(seconds=elapsed - elapsed % length_seconds)
    return Window(start, start + timedelta(seconds=length_seconds))
