"""Tolerant readers for values found in files: a value that does not fit its field becomes None, never an error.

The bounds are those `GenerationMetadata` checks, so whatever these return can be stored in it.
"""

from __future__ import annotations

import math
import re

from modelhub.catalog.images import generation as g

_INTEGER = re.compile(r"[+-]?\d{1,30}")
_DECIMAL = re.compile(r"[+-]?(\d{1,30}(\.\d{0,30})?|\.\d{1,30})([eE][+-]?\d{1,3})?")


def parse_int(text: str, low: int, high: int) -> int | None:
    """`text` as a whole number within [low, high], else None."""
    text = text.strip()
    if not _INTEGER.fullmatch(text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def parse_float(text: str, low: float, high: float) -> float | None:
    """`text` as a finite number within [low, high], else None."""
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) and low <= value <= high else None


def as_int(value: object, low: int, high: int) -> int | None:
    """A JSON value as a whole number within [low, high] (integral floats and numeric strings count), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return value if low <= value <= high else None
    if isinstance(value, str):
        return parse_int(value, low, high)
    return None


def as_float(value: object, low: float, high: float) -> float | None:
    """A JSON value as a finite number within [low, high], else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value) if abs(value) < 1e300 else math.inf
        return number if math.isfinite(number) and low <= number <= high else None
    if isinstance(value, str):
        return parse_float(value, low, high)
    return None


def as_text(value: object, max_chars: int) -> str | None:
    """A non-blank string of at most `max_chars` characters, stripped, else None."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if value and len(value) <= max_chars else None


def as_name(value: object) -> str | None:
    """A resource, sampler or scheduler name, else None."""
    return as_text(value, g.MAX_NAME_CHARS)


def as_prompt(value: object) -> str | None:
    """A prompt, else None."""
    return as_text(value, g.MAX_PROMPT_CHARS)


def as_weight(value: object) -> float | None:
    """A resource weight (LoRA strength), else None."""
    return as_float(value, -g.MAX_WEIGHT, g.MAX_WEIGHT)
