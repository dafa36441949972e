"""The document layout every engine indexes: field names and values, so both engines hold the same thing.

- analyzed text (split on anything but letters and digits, words of 40 bytes or more dropped, lower case,
  ASCII folding): name, description, tags_text, trained_words, creator_text; prompt on images;
- exact terms for filters and facets: type, base_model, tag (lower case), file_format, commercial_use,
  creator_user_id, hash (upper case), nsfw (one term per NSFW bit, modelhub.search.domain.visibility), the ids,
  and the suggestion keys `<folded>\\x01<as written>` (tag_suggest, creator_suggest);
- numbers: one sort key per sort and period (modelhub.search.domain.ranking), published_s (Newest's period),
  popularity (Relevance's weight), version; and what a hit shows (nsfw_level, width, height, blurhash, ...).
"""

from __future__ import annotations

from typing import Any

from modelhub.search.domain import ranking
from modelhub.search.domain.documents import ImageDocument, ModelDocument
from modelhub.search.domain.queries import ModelFacet
from modelhub.search.domain.text import fold
from modelhub.search.domain.visibility import level_terms

FACET_FIELDS = {
    ModelFacet.TYPE: "type",
    ModelFacet.BASE_MODEL: "base_model",
    ModelFacet.TAG: "tag",
    ModelFacet.NSFW_LEVEL: "nsfw",
    ModelFacet.FILE_FORMAT: "file_format",
    ModelFacet.COMMERCIAL_USE: "commercial_use",
}

TEXT_FIELDS = (
    ("name", "name"),
    ("trained_words", "trained_words"),
    ("tags_text", "tags"),
    ("creator_text", "creator"),
    ("description", "description"),
)
"""(field, TEXT_BOOSTS name prefix) of the model fields a query word is looked up in."""

FACET_CANDIDATES = 500
"""Values each segment (tantivy) or shard (Elasticsearch) proposes per facet before the top FACET_SIZE are
picked: counts are exact for fields with fewer distinct values than this in each segment or shard, and close
for the long tail of tags."""

POPULARITY_FIELD = "popularity"
SUGGEST_SEPARATOR = "\x01"


def suggest_key(value: str) -> str:
    """`<folded>\\x01<as written>`: a folded prefix finds it, the part after the separator is shown."""
    return f"{fold(value)}{SUGGEST_SEPARATOR}{value}"


def suggest_display(key: str) -> str:
    return key.split(SUGGEST_SEPARATOR, 1)[-1]


def model_fields(doc: ModelDocument) -> dict[str, Any]:
    """The indexed values of a model document (lists for multi-valued fields)."""
    fields: dict[str, Any] = {
        "model_id": doc.model_id,
        "version": doc.version,
        "name": doc.name,
        "description": doc.description,
        "tags_text": list(doc.tags),
        "trained_words": list(doc.trained_words),
        "creator_text": doc.creator_username,
        "hash": [h.upper() for h in doc.hashes],
        "type": doc.type,
        "base_model": list(doc.base_models),
        "tag": [t.lower() for t in doc.tags],
        "file_format": list(doc.file_formats),
        "commercial_use": list(doc.allow_commercial_use),
        "nsfw": list(level_terms(doc.nsfw_level)),
        "creator_user_id": doc.creator_user_id,
        "creator_username": doc.creator_username,
        "tag_suggest": [suggest_key(t.lower()) for t in doc.tags],
        "creator_suggest": [suggest_key(doc.creator_username)] if doc.creator_username else [],
        "allow_no_credit": doc.allow_no_credit,
        "allow_derivatives": doc.allow_derivatives,
        "allow_different_license": doc.allow_different_license,
        "nsfw_level": doc.nsfw_level,
        "published_s": ranking.epoch_seconds(ranking.published_at(doc)),
        POPULARITY_FIELD: ranking.popularity_weight(doc),
    }
    fields.update(ranking.model_sort_keys(doc))
    return fields


def image_fields(doc: ImageDocument) -> dict[str, Any]:
    """The indexed values of an image document."""
    fields: dict[str, Any] = {
        "image_id": doc.image_id,
        "version": doc.stream_version,
        "creator_user_id": doc.creator_user_id,
        "creator_username": doc.creator_username,
        "model_version_id": list(doc.model_version_ids),
        "model_id": list(doc.model_ids),
        "tag": [t.lower() for t in doc.tags],
        "nsfw": list(level_terms(doc.nsfw_level)),
        "prompt": doc.prompt,
        "nsfw_level": doc.nsfw_level,
        "width": doc.width,
        "height": doc.height,
        "blurhash": doc.blurhash,
    }
    fields.update(ranking.image_sort_keys(doc))
    return fields
