"""Seeding the catalog's read models with many files for the by-hash benchmark, and the hashes they carry.

100,000 files through the model aggregate would take most of an hour on a small machine (each file is a
transaction that loads its model's whole stream), and the benchmark measures the lookup, not the write
path: so the projection tables are filled directly with set-based SQL (no events; a projection rebuild
would empty them). Every value is derived from the file's number, so the client can compute any file's
hashes without reading them back.
"""

from __future__ import annotations

import hashlib
from typing import Final

import psycopg

MODELS: Final = 2_000
VERSIONS_PER_MODEL: Final = 5
FILES_PER_VERSION: Final = 10
FILES_PER_MODEL: Final = VERSIONS_PER_MODEL * FILES_PER_VERSION
FILES: Final = MODELS * FILES_PER_MODEL
KINDS: Final = ("SHA256", "AutoV1", "AutoV2", "CRC32", "BLAKE3")

_SEED: Final = f"""
INSERT INTO models (model_id, stream_version, owner_id, owner_name, name, description, type, status,
    allow_no_credit, allow_commercial_use, allow_derivatives, allow_different_license, created_at, updated_at,
    published_at)
SELECT 'bench-m-' || m, 1, 'bench-owner-' || (m % 100), 'owner ' || (m % 100), 'Bench model ' || m, '', 'LORA',
    'Published', true, ARRAY['Image'], true, true, now(), now(), now()
FROM generate_series(0, {MODELS - 1}) AS m;

INSERT INTO model_versions (model_version_id, model_id, position, name, base_model, trained_words, changelog,
    early_access_days, status, created_at, updated_at, published_at)
SELECT 'bench-v-' || m || '-' || v, 'bench-m-' || m, v + 1, 'v' || v, 'SDXL 1.0', ARRAY[]::text[], '', 0,
    'Published', now(), now(), now()
FROM generate_series(0, {MODELS - 1}) AS m, generate_series(0, {VERSIONS_PER_MODEL - 1}) AS v;

INSERT INTO model_files (file_id, model_version_id, model_id, position, name, type, format, size_bytes, precision,
    size_kind, blob_sha256, scan_result, scan_message, safetensors_metadata, tensor_count, created_at)
SELECT 'bench-f-' || n,
    'bench-v-' || (n / {FILES_PER_MODEL}) || '-' || ((n / {FILES_PER_VERSION}) % {VERSIONS_PER_MODEL}),
    'bench-m-' || (n / {FILES_PER_MODEL}), (n % {FILES_PER_VERSION}) + 1,
    'file-' || n || '.safetensors', 'Model', 'SafeTensor', 1000000 + n, 'fp16', '',
    upper(encode(sha256(convert_to('f' || n, 'UTF8')), 'hex')), 'Success', '', '{{}}'::jsonb, 1, now()
FROM generate_series(0, {FILES - 1}) AS n;

INSERT INTO file_hashes (file_id, kind, value, position)
SELECT 'bench-f-' || n, k.kind,
    CASE k.kind
        WHEN 'SHA256' THEN upper(encode(sha256(convert_to('f' || n, 'UTF8')), 'hex'))
        WHEN 'AutoV1' THEN upper(left(encode(sha256(convert_to('a' || n, 'UTF8')), 'hex'), 8))
        WHEN 'AutoV2' THEN upper(left(encode(sha256(convert_to('f' || n, 'UTF8')), 'hex'), 10))
        WHEN 'CRC32' THEN upper(left(md5('c' || n), 8))
        ELSE upper(encode(sha256(convert_to('b' || n, 'UTF8')), 'hex'))
    END,
    k.position
FROM generate_series(0, {FILES - 1}) AS n,
    (VALUES ('SHA256', 0), ('AutoV1', 1), ('AutoV2', 2), ('CRC32', 3), ('BLAKE3', 4)) AS k(kind, position);

ANALYZE models; ANALYZE model_versions; ANALYZE model_files; ANALYZE file_hashes;
"""


def seed(database_url: str) -> None:
    """Fill the read models with FILES published files (5 hashes each)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(_SEED.encode())  # a fixed script of several statements (no parameters)


def file_id(n: int) -> str:
    return f"bench-f-{n}"


def hash_of(n: int, kind: str) -> str:
    """The `kind` hash the seed gave file number `n` (upper-case hex)."""
    if kind in ("SHA256", "AutoV2"):
        digest = hashlib.sha256(f"f{n}".encode()).hexdigest().upper()
        return digest if kind == "SHA256" else digest[:10]
    if kind == "AutoV1":
        return hashlib.sha256(f"a{n}".encode()).hexdigest()[:8].upper()
    if kind == "CRC32":
        return hashlib.md5(f"c{n}".encode(), usedforsecurity=False).hexdigest()[:8].upper()
    return hashlib.sha256(f"b{n}".encode()).hexdigest().upper()
