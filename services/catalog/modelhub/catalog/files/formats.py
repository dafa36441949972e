"""What format a file is in, judged from its first bytes, never from its name.

The rules are conservative: a file is given a named format only when its bytes carry that format's
signature; everything else is Other.

- SafeTensor: an 8-byte little-endian header length N (2 <= N <= 100 MB and N <= size - 8) followed by a
  JSON header whose first byte is '{'. Full validation is `parse_safetensors_header`'s job.
- GGUF: the magic "GGUF" and a known version (1, 2 or 3).
- PickleTensor: a pickle stream opened by the PROTO opcode of protocol 2 to 5 (0x80 0x02..0x05; torch's
  legacy format starts so too), or a zip archive whose first entry is `data.pkl` or `<dir>/data.pkl` (the
  zip format `torch.save` writes since PyTorch 1.6, and writes `data.pkl` first).
- ONNX: a protobuf `ModelProto` as `onnx.save` writes it: field 1 (ir_version, a small varint) first, then
  only ModelProto's fields with their wire types, lengths that fit in the file, up to the graph.
- Diffusers is a folder layout (model_index.json beside subfolders of weights), never a property of one
  file's bytes, so `detect_format` never answers Diffusers; the caller sets it for a folder upload.
"""

from __future__ import annotations

import struct
from typing import Final

from modelhub.catalog.domain.vocabulary import FileFormat

HEAD_SIZE: Final = 64 << 10
"""How many leading bytes `detect_format` wants (fewer when the file is smaller)."""

SAFETENSORS_MAX_HEADER: Final = 100_000_000
"""The safetensors reference implementation refuses headers above 100 MB; so does modelhub."""

_GGUF_MAGIC: Final = b"GGUF"
_GGUF_VERSIONS: Final = frozenset({1, 2, 3})
_ZIP_LOCAL_HEADER: Final = b"PK\x03\x04"
NUMPY_MAGIC: Final = b"\x93NUMPY"
_ZIP_LOCAL_HEADER_SIZE: Final = 30

# ModelProto (onnx.proto3): field number -> protobuf wire type (0 varint, 2 length-delimited).
_ONNX_MODEL_FIELDS: Final = {
    1: 0,  # ir_version
    2: 2,  # producer_name
    3: 2,  # producer_version
    4: 2,  # domain
    5: 0,  # model_version
    6: 2,  # doc_string
    7: 2,  # graph
    8: 2,  # opset_import
    14: 2,  # metadata_props
    20: 2,  # training_info
    25: 2,  # functions
}
_ONNX_GRAPH_FIELD: Final = 7
_ONNX_MAX_IR_VERSION: Final = 15  # 10 in 2024; some headroom for new releases, none for arbitrary numbers


def detect_format(head: bytes, size: int) -> FileFormat:
    """The format of a file of `size` bytes whose first bytes are `head` (see HEAD_SIZE)."""
    if _is_safetensors(head, size):
        return FileFormat.SAFE_TENSOR
    if _is_gguf(head):
        return FileFormat.GGUF
    if is_pickle_stream(head) or _is_torch_zip(head):
        return FileFormat.PICKLE_TENSOR
    if _is_onnx(head, size):
        return FileFormat.ONNX
    return FileFormat.OTHER


def is_pickle_stream(head: bytes) -> bool:
    """Whether the bytes open with the PROTO opcode of pickle protocol 2 to 5."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def is_numpy(head: bytes) -> bool:
    """Whether the bytes open with numpy's .npy magic."""
    return head.startswith(NUMPY_MAGIC)


def is_zip(head: bytes) -> bool:
    """Whether the bytes open with a zip local file header."""
    return head.startswith(_ZIP_LOCAL_HEADER)


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (header_length,) = struct.unpack_from("<Q", head)
    return 2 <= header_length <= min(SAFETENSORS_MAX_HEADER, size - 8) and head[8:9] == b"{"


def _is_gguf(head: bytes) -> bool:
    if len(head) < 8 or not head.startswith(_GGUF_MAGIC):
        return False
    (version,) = struct.unpack_from("<I", head, 4)
    return version in _GGUF_VERSIONS


def _is_torch_zip(head: bytes) -> bool:
    if not is_zip(head) or len(head) < _ZIP_LOCAL_HEADER_SIZE:
        return False
    (name_length,) = struct.unpack_from("<H", head, 26)
    name = head[_ZIP_LOCAL_HEADER_SIZE : _ZIP_LOCAL_HEADER_SIZE + name_length]
    return len(name) == name_length and (name == b"data.pkl" or name.endswith(b"/data.pkl"))


def _read_varint(data: bytes, position: int) -> tuple[int, int] | None:
    """A protobuf varint at `position`: (value, next position), or None when malformed or cut off."""
    value = 0
    for shift in range(0, 64, 7):
        if position >= len(data):
            return None
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
    return None


def _is_onnx(head: bytes, size: int) -> bool:
    """A conservative check that the bytes are a serialized ONNX ModelProto (see the module docstring)."""
    position = 0
    first = True
    while position < len(head):
        tag = _read_varint(head, position)
        if tag is None:
            return False
        key, position = tag
        field, wire_type = key >> 3, key & 7
        if _ONNX_MODEL_FIELDS.get(field) != wire_type or (first and field != 1):
            return False
        value = _read_varint(head, position)
        if value is None:
            return False
        number, position = value
        if first and not 1 <= number <= _ONNX_MAX_IR_VERSION:
            return False
        first = False
        if wire_type == 2:
            if position + number > size:
                return False
            if field == _ONNX_GRAPH_FIELD:
                return True  # the graph holds the rest; the fields before it were well-formed
            position += number
    return False
