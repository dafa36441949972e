"""Parse and validate a safetensors header, following the format's specification and reference reader.

Layout: an 8-byte little-endian length N, N bytes of UTF-8 JSON (an object; spaces may pad it), then the data
section. The JSON maps each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to
the data section) and may hold "__metadata__", a string-to-string map. The rules modelhub enforces, each
rejection naming what is wrong:

- 0 < N <= 100 MB and N <= file size - 8; the header is valid UTF-8 JSON, an object, without duplicate keys
  or NaN/Infinity;
- known dtypes only (the specification's list below); shapes are lists of non-negative integers;
- each tensor's byte length equals prod(shape) * dtype bits / 8 (a whole number of bytes);
- the tensors tile the data section exactly: sorted by offsets, each begins where the previous ended (no
  overlap, no gap), and the last ends at the end of the file (no trailing bytes, so no polyglot files).
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from modelhub.catalog.domain.vocabulary import Precision
from modelhub.catalog.files.errors import InvalidFile
from modelhub.catalog.files.formats import SAFETENSORS_MAX_HEADER

DTYPE_BITS: Final[Mapping[str, int]] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
"""Every dtype of the safetensors specification, with its size in bits."""

_FLOAT_PRECISION: Final[Mapping[str, Precision]] = {
    "F32": Precision.FP32,
    "F16": Precision.FP16,
    "BF16": Precision.BF16,
    "F8_E5M2": Precision.FP8,
    "F8_E4M3": Precision.FP8,
    "F8_E8M0": Precision.FP8,
    "F64": Precision.OTHER,
    "F6_E2M3": Precision.OTHER,
    "F6_E3M2": Precision.OTHER,
    "F4": Precision.OTHER,
    "C64": Precision.OTHER,
}
_DOMINANT_SHARE: Final = 0.9
"""A file whose float parameters are at least 90% of one precision has that precision; else it is mixed."""
_NF4_MARKER: Final = "bitsandbytes__nf4"
"""bitsandbytes stores NF4 weights as U8 beside quant-state tensors whose names carry this marker."""

_METADATA_KEY: Final = "__metadata__"


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    data_offsets: tuple[int, int]

    @property
    def parameters(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated header: the free-form metadata and every tensor's description."""

    metadata: Mapping[str, str]
    tensors: Mapping[str, TensorInfo]
    header_size: int
    """N, the JSON header's length in bytes (the data section starts at 8 + N)."""

    @property
    def precision(self) -> Precision | None:
        """The file's precision: NF4 for bitsandbytes NF4 files; else the precision of at least 90% of the
        floating-point parameters, or mixed; None when the file holds no floating-point tensor."""
        if any(_NF4_MARKER in name for name in self.tensors):
            return Precision.NF4
        parameters: Counter[Precision] = Counter()
        for info in self.tensors.values():
            if info.dtype in _FLOAT_PRECISION:
                parameters[_FLOAT_PRECISION[info.dtype]] += info.parameters
        if not parameters:
            return None
        precision, count = parameters.most_common(1)[0]
        return precision if count >= _DOMINANT_SHARE * parameters.total() else Precision.MIXED


def read_safetensors_header(path: Path) -> SafetensorsHeader:
    """`parse_safetensors_header` over a file on disk."""
    with path.open("rb") as file:
        return parse_safetensors_header(file, path.stat().st_size)


def parse_safetensors_header(file: BinaryIO, size: int) -> SafetensorsHeader:
    """Read and validate the header of the safetensors file `file` (seekable) of `size` bytes.

    Raises InvalidFile naming the first rule the file breaks. Reads at most 8 + 100 MB bytes.
    """
    if size < 8:
        raise InvalidFile(f"safetensors file is {size} bytes, too short to hold the 8-byte header length")
    file.seek(0)
    (length,) = struct.unpack("<Q", _read(file, 8))
    if length == 0:
        raise InvalidFile("safetensors header length is 0: the file has no header")
    if length > size - 8:
        raise InvalidFile(f"safetensors header length {length} exceeds the file size ({size} bytes)")
    if length > SAFETENSORS_MAX_HEADER:
        raise InvalidFile(f"safetensors header length {length} exceeds the limit of {SAFETENSORS_MAX_HEADER} bytes")
    raw = _read(file, length)
    if len(raw) < length:
        raise InvalidFile(f"safetensors file is truncated: its header needs {length} bytes, {len(raw)} remain")
    document = _decode(raw)
    metadata = _metadata(document.pop(_METADATA_KEY, None))
    tensors = {name: _tensor(name, value) for name, value in document.items()}
    _check_layout(tensors, data_size=size - 8 - length)
    return SafetensorsHeader(metadata=metadata, tensors=tensors, header_size=length)


def _read(file: BinaryIO, count: int) -> bytes:
    chunks = []
    while count > 0 and (chunk := file.read(count)):
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidFile(f"safetensors header is not valid UTF-8 (byte {error.start} of the header)") from None
    if not text.startswith("{"):
        raise InvalidFile("safetensors header must be a JSON object, starting with '{'")
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except _DuplicateKey as error:
        raise InvalidFile(f"safetensors header has the key {error.args[0]!r} more than once") from None
    except json.JSONDecodeError as error:
        raise InvalidFile(f"safetensors header is not valid JSON: {error.msg} at byte {error.pos}") from None
    except ValueError as error:
        raise InvalidFile(f"safetensors header is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidFile("safetensors header must be a JSON object")
    return document


def _metadata(value: Any) -> dict[str, str]:
    if value is None:  # absent, or null as the reference reader allows
        return {}
    if not isinstance(value, dict):
        raise InvalidFile("safetensors __metadata__ must be an object mapping strings to strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise InvalidFile(
                f"safetensors __metadata__ must map strings to strings; {key!r} holds {type(item).__name__}"
            )
    return value


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor(name: str, value: Any) -> TensorInfo:
    if not isinstance(value, dict):
        raise InvalidFile(f"safetensors tensor {name!r} must be an object with dtype, shape and data_offsets")
    missing = [key for key in ("dtype", "shape", "data_offsets") if key not in value]
    if missing:
        raise InvalidFile(f"safetensors tensor {name!r} lacks {', '.join(missing)}")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if dtype not in DTYPE_BITS:
        raise InvalidFile(f"safetensors tensor {name!r} has unknown dtype {dtype!r} (known: {', '.join(DTYPE_BITS)})")
    if not isinstance(shape, list) or not all(_is_count(dim) for dim in shape):
        raise InvalidFile(f"safetensors tensor {name!r} has shape {shape!r}: expected a list of integers >= 0")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
        raise InvalidFile(
            f"safetensors tensor {name!r} has data_offsets {offsets!r}: expected [begin, end], integers >= 0"
        )
    begin, end = offsets
    if end < begin:
        raise InvalidFile(f"safetensors tensor {name!r} ends (byte {end}) before it begins (byte {begin})")
    return TensorInfo(dtype=dtype, shape=tuple(shape), data_offsets=(begin, end))


def _bits(info: TensorInfo, limit: int) -> int | None:
    """The tensor's size in bits, or None above `limit` (a hostile shape must not cost a product of giant
    integers)."""
    if 0 in info.shape:
        return 0
    bits = DTYPE_BITS[info.dtype]
    for dim in info.shape:
        bits *= dim
        if bits > limit:
            return None
    return bits


def _check_layout(tensors: Mapping[str, TensorInfo], data_size: int) -> None:
    position = 0
    previous = ""
    for name, info in sorted(tensors.items(), key=lambda item: item[1].data_offsets):
        begin, end = info.data_offsets
        bits = _bits(info, limit=max(8 * (end - begin), 1 << 64))
        if bits is None:
            raise InvalidFile(
                f"safetensors tensor {name!r} spans {end - begin} bytes but its dtype {info.dtype} and shape need more"
            )
        if bits % 8:
            raise InvalidFile(
                f"safetensors tensor {name!r} ({info.dtype}, shape {list(info.shape)}) does not fill a whole "
                "number of bytes"
            )
        if end - begin != bits // 8:
            raise InvalidFile(
                f"safetensors tensor {name!r} spans {end - begin} bytes but its dtype {info.dtype} and shape "
                f"{list(info.shape)} need {bits // 8}"
            )
        if end > data_size:
            raise InvalidFile(
                f"safetensors tensor {name!r} ends at byte {end} of the data section, past its end "
                f"({data_size} bytes): the file is truncated or the offsets are wrong"
            )
        if begin < position:
            raise InvalidFile(f"safetensors tensors {previous!r} and {name!r} overlap (at byte {begin})")
        if begin > position:
            raise InvalidFile(f"safetensors data bytes {position}..{begin} belong to no tensor (a gap before {name!r})")
        position, previous = end, name
    if position != data_size:
        raise InvalidFile(
            f"safetensors data section has {data_size - position} bytes after the last tensor that belong to no tensor"
        )
