"""What each sort orders by, computed once at index time so every engine orders identically. Pure.

Every sort (but Relevance) orders by one integer *sort key* per document, descending, then by id ascending:

    key = value << 31 | tiebreak(id)

`value` is the sort's metric over the period (clamped to 32 bits), `tiebreak` 31 bits of a hash of the id. The
key fits a signed 64-bit integer (Elasticsearch's `long`) and an unsigned one (tantivy's `u64`). Equal metric
values, very common (every model without a download today has 0 for "Most Downloaded, Day"), are thus spread
over distinct keys in a stable, arbitrary order; the rare keys that still collide are ordered by id. Keyset
pagination continues from (key, id) (modelhub.search.domain.cursors).

Relevance orders by a text score that depends only on the document and the query (constant clause scores
times a popularity factor, see `TEXT_BOOSTS` and `popularity_weight`), never on corpus statistics, so a
document's score does not move while other documents change and a cursor stays exact.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime

from modelhub.search.domain.documents import ImageDocument, ModelDocument, Period, PeriodStats
from modelhub.search.domain.queries import ImageSort, ModelSort

VALUE_BITS = 32
TIEBREAK_BITS = 31
MAX_VALUE = (1 << VALUE_BITS) - 1
MAX_KEY = (1 << (VALUE_BITS + TIEBREAK_BITS)) - 1

# Bayesian weighted rating: the share of positive reviews pulled towards PRIOR_MEAN as if every model had
# PRIOR_WEIGHT extra reviews at that share. Most reviews on a model hub are positive, so the prior sits high:
# an unreviewed model rates 0.9, one positive review 0.909, a thousand reviews at 96% positive 0.959.
PRIOR_MEAN = 0.9
PRIOR_WEIGHT = 10
RATING_SCALE = 1_000_000_000
"""A rating in [0, 1] is stored as an integer in [0, RATING_SCALE] (nine decimal places)."""

METRIC_SORTS: tuple[ModelSort, ...] = (
    ModelSort.HIGHEST_RATED,
    ModelSort.MOST_DOWNLOADED,
    ModelSort.MOST_LIKED,
    ModelSort.MOST_DISCUSSED,
    ModelSort.MOST_COLLECTED,
    ModelSort.MOST_IMAGES,
)
"""Sorts by a count (or the rating) over the query's period; Newest and Relevance are not among them."""

_SORT_SLUG = {
    ModelSort.HIGHEST_RATED: "rating",
    ModelSort.MOST_DOWNLOADED: "downloads",
    ModelSort.MOST_LIKED: "favorites",
    ModelSort.MOST_DISCUSSED: "comments",
    ModelSort.MOST_COLLECTED: "collected",
    ModelSort.MOST_IMAGES: "images",
}
_PERIOD_SLUG = {
    Period.DAY: "day",
    Period.WEEK: "week",
    Period.MONTH: "month",
    Period.YEAR: "year",
    Period.ALL_TIME: "all",
}

PERIOD_SECONDS = {
    Period.DAY: 86_400,
    Period.WEEK: 7 * 86_400,
    Period.MONTH: 30 * 86_400,
    Period.YEAR: 365 * 86_400,
}
"""Newest with a period other than AllTime keeps only models first published within that window."""

# Text relevance: each query word scores the best of these clauses (a disjunction max), the words' scores
# add up, and the sum is multiplied by the document's popularity factor (1 to 2).
TEXT_BOOSTS = {
    "hash": 16.0,
    "name_exact": 8.0,
    "name_prefix": 4.0,
    "trained_words_exact": 6.0,
    "tags_exact": 5.0,
    "creator_exact": 4.0,
    "name_fuzzy": 2.0,
    "trained_words_fuzzy": 1.5,
    "tags_fuzzy": 1.5,
    "creator_fuzzy": 1.0,
    "description_exact": 1.0,
    "description_fuzzy": 0.5,
}
PREFIX_MIN_CHARS = 2
"""Shorter words are not matched as name prefixes (one letter would match a large part of the index)."""


def sort_field(sort: ModelSort, period: Period) -> str:
    """The name of the index field holding the key of `sort` over `period` (the same in every engine)."""
    if sort is ModelSort.NEWEST:
        return "key_newest"
    if sort is ModelSort.RELEVANCE:
        raise ValueError("Relevance has no sort key: it orders by the text score")
    return f"key_{_SORT_SLUG[sort]}_{_PERIOD_SLUG[period]}"


_PERIOD_FIELDS = {
    p: tuple(
        sort_field(s, p)
        for s in (
            ModelSort.HIGHEST_RATED,
            ModelSort.MOST_DOWNLOADED,
            ModelSort.MOST_LIKED,
            ModelSort.MOST_DISCUSSED,
            ModelSort.MOST_COLLECTED,
            ModelSort.MOST_IMAGES,
        )
    )
    for p in Period
}
_NO_STATS = PeriodStats()


def all_sort_fields() -> list[str]:
    """Every model sort-key field: one per metric sort and period, plus Newest."""
    return [sort_field(s, p) for s in METRIC_SORTS for p in Period] + [sort_field(ModelSort.NEWEST, Period.ALL_TIME)]


IMAGE_SORT_FIELDS = {
    ImageSort.MOST_REACTIONS: "key_reactions",
    ImageSort.MOST_COMMENTS: "key_comments",
    ImageSort.NEWEST: "key_newest",
}


def bayesian_rating(thumbs_up: int, thumbs_down: int) -> float:
    """(v·R + m·C) / (v + m) with v reviews, R their positive share, C = PRIOR_MEAN and m = PRIOR_WEIGHT."""
    up = max(thumbs_up, 0)
    votes = up + max(thumbs_down, 0)
    return (up + PRIOR_WEIGHT * PRIOR_MEAN) / (votes + PRIOR_WEIGHT)


def tiebreak(item_id: str) -> int:
    """31 bits of BLAKE2b of the id: a stable, well-spread order among equal values."""
    digest = hashlib.blake2b(item_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - TIEBREAK_BITS)


def id_hash(item_id: str) -> int:
    """63 bits of BLAKE2b of the id (engines use it to find a document's stored version quickly)."""
    digest = hashlib.blake2b(item_id.encode(), digest_size=8, person=b"modelhub-id").digest()
    return int.from_bytes(digest, "big") >> 1


def compose(value: int, item_id: str) -> int:
    """The sort key of `value` (clamped to 0..MAX_VALUE) for the item `item_id`."""
    return _compose(value, tiebreak(item_id))


def _compose(value: int, tie: int) -> int:
    if not 0 <= value <= MAX_VALUE:
        value = 0 if value < 0 else MAX_VALUE
    return (value << TIEBREAK_BITS) | tie


def key_value(key: int) -> int:
    """The metric value a sort key was composed from."""
    return key >> TIEBREAK_BITS


def epoch_seconds(moment: datetime) -> int:
    return max(int(moment.timestamp()), 0)


def published_at(doc: ModelDocument) -> datetime:
    """When the model was first published (its creation time if the catalog never said)."""
    return doc.published_at or doc.created_at


def metric_value(stats: PeriodStats, sort: ModelSort) -> int:
    """The integer a metric sort orders by (the rating scaled by RATING_SCALE)."""
    match sort:
        case ModelSort.HIGHEST_RATED:
            return round(bayesian_rating(stats.thumbs_up, stats.thumbs_down) * RATING_SCALE)
        case ModelSort.MOST_DOWNLOADED:
            return stats.downloads
        case ModelSort.MOST_LIKED:
            return stats.favorites
        case ModelSort.MOST_DISCUSSED:
            return stats.comments
        case ModelSort.MOST_COLLECTED:
            return stats.collected
        case ModelSort.MOST_IMAGES:
            return stats.images
        case _:
            raise ValueError(f"{sort} is not a metric sort")


def display_value(sort: ModelSort, value: int) -> float:
    """The value shown for a hit (`ModelHit.sort_value`): the count, the rating in [0, 1], or epoch seconds."""
    return value / RATING_SCALE if sort is ModelSort.HIGHEST_RATED else float(value)


def model_sort_keys(doc: ModelDocument) -> dict[str, int]:
    """Every sort key of a model document, by field name (hot on the indexing path: kept inline)."""
    tie = tiebreak(doc.model_id)
    keys = {}
    for period, (rating, downloads, favorites, comments, collected, images) in _PERIOD_FIELDS.items():
        st = doc.stats.get(period, _NO_STATS)
        keys[rating] = _compose(round(bayesian_rating(st.thumbs_up, st.thumbs_down) * RATING_SCALE), tie)
        keys[downloads] = _compose(st.downloads, tie)
        keys[favorites] = _compose(st.favorites, tie)
        keys[comments] = _compose(st.comments, tie)
        keys[collected] = _compose(st.collected, tie)
        keys[images] = _compose(st.images, tie)
    keys["key_newest"] = _compose(epoch_seconds(published_at(doc)), tie)
    return keys


def image_sort_keys(doc: ImageDocument) -> dict[str, int]:
    """Every sort key of an image document, by field name."""
    tie = tiebreak(doc.image_id)
    return {
        IMAGE_SORT_FIELDS[ImageSort.MOST_REACTIONS]: _compose(doc.stats.reactions, tie),
        IMAGE_SORT_FIELDS[ImageSort.MOST_COMMENTS]: _compose(doc.stats.comments, tie),
        IMAGE_SORT_FIELDS[ImageSort.NEWEST]: _compose(epoch_seconds(doc.created_at), tie),
    }


POPULARITY_SATURATION = 7
"""log10 of the all-time downloads at which popularity stops growing (10 million)."""


def popularity_weight(doc: ModelDocument) -> float:
    """w in [0, 2], stored per document: Relevance multiplies the text score by log2(2 + w), a factor from 1
    (never downloaded) to 2 (10 million downloads or more). Popularity can at most double a score, so an
    exact name match (8) always beats a fuzzy one (2 x 2)."""
    downloads = doc.stats.get(Period.ALL_TIME, PeriodStats()).downloads
    return 2.0 * min(1.0, math.log10(1 + max(downloads, 0)) / POPULARITY_SATURATION)
