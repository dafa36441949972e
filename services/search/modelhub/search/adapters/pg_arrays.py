"""PostgreSQL array literals for the mirror's set-based statements (`CAST(:param AS text[])` and the like).

The mirror writes a consumer batch (thousands of rows) with one statement per table, passing each column as an
array. psycopg adapts a Python list element by element in Python (a bytea element costs most: its text escaping);
one literal string built here is parsed by PostgreSQL's array input instead, several times cheaper for this
process. Every element is quoted, so no value can read as NULL or split an element.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def text_array(values: Iterable[str]) -> str:
    """The literal of a text[] holding `values`, any characters included."""
    return "{" + ",".join(map(_quoted, values)) + "}"


def bytea_array(values: Iterable[bytes]) -> str:
    """The literal of a bytea[] (each element in bytea's hex input form)."""
    return "{" + ",".join('"\\\\x' + v.hex() + '"' for v in values) + "}"


def int_array(values: Iterable[int]) -> str:
    """The literal of an integer[] / bigint[]."""
    return "{" + ",".join(str(int(v)) for v in values) + "}"


def bool_array(values: Iterable[bool]) -> str:
    """The literal of a boolean[]."""
    return "{" + ",".join("t" if v else "f" for v in values) + "}"


def uuid_array(values: Iterable[uuid.UUID]) -> str:
    """The literal of a uuid[] (32 hex digits each; only UUID objects are accepted)."""
    return "{" + ",".join(v.hex for v in values) + "}"
