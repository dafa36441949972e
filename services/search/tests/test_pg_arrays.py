"""Array literals of the mirror's set-based statements, read back by PostgreSQL itself."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.search.adapters.pg_arrays import bool_array, bytea_array, int_array, text_array, uuid_array

AWKWARD = [
    "",
    "NULL",
    "null",
    "a,b",
    "{x}",
    'say "hi"',
    "back\\slash",
    "\\",
    '"',
    " padded ",
    "tab\tnew\nline",
    "ünï 😀",
]


async def test_every_literal_reads_back_as_the_values_it_was_built_from(db: AsyncEngine) -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    payloads = [b"", b'\x00\xff\\"{},', bytes(range(256))]
    async with db.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT CAST(:texts AS text[]), CAST(:payloads AS bytea[]), CAST(:ints AS bigint[]), "
                    "CAST(:bools AS boolean[]), CAST(:ids AS uuid[]), CAST(:none AS text[])"
                ),
                {
                    "texts": text_array(AWKWARD),
                    "payloads": bytea_array(payloads),
                    "ints": int_array([0, -1, 2**62]),
                    "bools": bool_array([True, False]),
                    "ids": uuid_array(ids),
                    "none": text_array([]),
                },
            )
        ).one()
    assert list(row) == [AWKWARD, payloads, [0, -1, 2**62], [True, False], ids, []]
