"""The tantivy schemas of the shared layout (modelhub.search.adapters.engines.layout) and its text analyzer.

Exact-term fields use the raw tokenizer without frequencies; facet fields are also columnar ("fast"); numbers
are u64 / f64 columns; id_hash and version serve the stale-write check.
"""

from __future__ import annotations

from typing import Any

import orjson
import tantivy

from modelhub.search.adapters.engines import layout
from modelhub.search.domain import ranking
from modelhub.search.domain.documents import ImageDocument, ModelDocument
from modelhub.search.domain.text import MAX_TOKEN_BYTES

SCHEMA_VERSION = 1
"""Bumped when the layout changes: a generation of another layout must be rebuilt (reindex)."""

TEXT_TOKENIZER = "modelhub_text"


def text_analyzer() -> tantivy.TextAnalyzer:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(MAX_TOKEN_BYTES))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .build()
    )


def _raw(builder: tantivy.SchemaBuilder, name: str, *, stored: bool = False, fast: bool = False) -> None:
    builder.add_text_field(name, stored=stored, fast=fast, tokenizer_name="raw", index_option="basic")


def _text(builder: tantivy.SchemaBuilder, name: str, *, stored: bool = False) -> None:
    builder.add_text_field(name, stored=stored, tokenizer_name=TEXT_TOKENIZER, index_option="freq")


def model_schema() -> tantivy.Schema:
    b = tantivy.SchemaBuilder()
    _raw(b, "model_id", stored=True)
    b.add_unsigned_field("id_hash", fast=True)
    b.add_unsigned_field("version", stored=True, fast=True)
    _text(b, "name", stored=True)
    _text(b, "description")
    _text(b, "tags_text")
    _text(b, "trained_words")
    _text(b, "creator_text")
    _raw(b, "hash")
    _raw(b, "type", stored=True, fast=True)
    _raw(b, "base_model", fast=True)
    _raw(b, "tag", fast=True)
    _raw(b, "file_format", fast=True)
    _raw(b, "commercial_use", fast=True)
    _raw(b, "nsfw", fast=True)
    _raw(b, "creator_user_id")
    _raw(b, "creator_username", stored=True)
    _raw(b, "tag_suggest")
    _raw(b, "creator_suggest")
    b.add_boolean_field("allow_no_credit", indexed=True)
    b.add_boolean_field("allow_derivatives", indexed=True)
    b.add_boolean_field("allow_different_license", indexed=True)
    b.add_unsigned_field("nsfw_level", stored=True)
    b.add_unsigned_field("published_s", fast=True)
    b.add_float_field("popularity", fast=True)
    for field in ranking.all_sort_fields():
        b.add_unsigned_field(field, fast=True)
    return b.build()


def image_schema() -> tantivy.Schema:
    b = tantivy.SchemaBuilder()
    _raw(b, "image_id", stored=True)
    b.add_unsigned_field("id_hash", fast=True)
    b.add_unsigned_field("version", stored=True, fast=True)
    _raw(b, "creator_user_id")
    _raw(b, "creator_username", stored=True)
    _raw(b, "model_version_id")
    _raw(b, "model_id")
    _raw(b, "tag")
    _raw(b, "nsfw")
    _text(b, "prompt")
    b.add_unsigned_field("nsfw_level", stored=True)
    b.add_unsigned_field("width", stored=True)
    b.add_unsigned_field("height", stored=True)
    _raw(b, "blurhash", stored=True)
    for field in ranking.IMAGE_SORT_FIELDS.values():
        b.add_unsigned_field(field, fast=True)
    return b.build()


def model_fields(doc: ModelDocument) -> dict[str, Any]:
    return {**layout.model_fields(doc), "id_hash": ranking.id_hash(doc.model_id)}


def image_fields(doc: ImageDocument) -> dict[str, Any]:
    return {**layout.image_fields(doc), "id_hash": ranking.id_hash(doc.image_id)}


def to_json(fields: dict[str, Any]) -> str:
    """A document's fields as the JSON object `IndexWriter.add_json` takes: tantivy parses it against the schema
    in Rust, which costs about half of building a `tantivy.Document` from the Python values first (measured on
    the indexing path, where this runs for every document written)."""
    return orjson.dumps(fields).decode()
