"""Rules of downloads and hash lookups (pure: no I/O).

What counts as a download: a DownloadFile that starts at byte 0 and asks for the whole file, by anyone but
the model's owner (a creator's own downloads earn nothing in the ledger's reward rules). A resumed download
(offset > 0) or a ranged read (a length short of the end) is the same download going on, or a tool peeking at
a header: not counted. A signed-in user's downloads of one version count once per UTC day (`download_day`):
a download started over, or fetched again by a script, is not another downloader, and the counts feed the
Most Downloaded sort and the creator's rewards. Anonymous downloads have no identity to tell apart: each
counts. Counts are kept per version per window of a fixed length aligned to the epoch, and a
window becomes one catalog.DownloadsCounted after it closed (never one event per download).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

from modelhub.catalog.domain.commands import Violations
from modelhub.catalog.domain.vocabulary import HashKind

HASH_LENGTHS: Final = {
    HashKind.SHA256: 64,
    HashKind.AUTO_V1: 8,
    HashKind.AUTO_V2: 10,
    HashKind.CRC32: 8,
    HashKind.BLAKE3: 64,
    HashKind.AUTO_V3: 64,
}
"""Hex digits of each hash kind (Civitai's kinds, upper-case hex)."""
SHORT_HASH_LENGTH: Final = 12
"""An A1111 short hash ("Lora hashes", "TI hashes"): the first 12 digits of a file's AutoV3 (a safetensors LoRA)
or of its SHA256 (other LoRAs, and embeddings of any format). A lookup by it matches either prefix."""
_HEX: Final = re.compile(r"[0-9A-F]+")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class HashQuery:
    value: str
    """Upper-case hex, as the hashes are stored."""
    kind: HashKind | None

    @property
    def short(self) -> bool:
        """An A1111 short hash: matched against the start of AutoV3 and SHA256 values (SHORT_HASH_LENGTH)."""
        return len(self.value) == SHORT_HASH_LENGTH


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
    elif parsed == HashKind.AUTO_V3 and len(normalized) not in (HASH_LENGTHS[parsed], SHORT_HASH_LENGTH):
        v.add("hash", f"an AutoV3 hash has 64 hex digits, or 12 for A1111's short form; got {len(normalized)}")
    elif parsed is not None and parsed != HashKind.AUTO_V3 and len(normalized) != HASH_LENGTHS[parsed]:
        v.add("hash", f"a {parsed.value} hash has {HASH_LENGTHS[parsed]} hex digits; got {len(normalized)}")
    elif len(normalized) not in {*HASH_LENGTHS.values(), SHORT_HASH_LENGTH}:
        lengths = ", ".join(f"{k.value} {n}" for k, n in HASH_LENGTHS.items())
        v.add("hash", f"no hash kind has {len(normalized)} hex digits ({lengths}; A1111's short hash 12)")
    v.raise_if_any("hash lookup")
    return HashQuery(normalized, parsed)


def counts_as_download(offset: int, length: int, size: int, caller_id: str | None, owner_id: str) -> bool:
    """Whether a download request counts (see the module docstring)."""
    whole = offset == 0 and (length == 0 or length >= size)
    return whole and caller_id != owner_id


def download_day(now: datetime) -> date:
    """The UTC day within which one user's downloads of a version count once."""
    return now.astimezone(UTC).date()


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
