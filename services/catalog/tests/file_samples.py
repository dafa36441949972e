"""Builders of small sample files for the file pipeline's tests: valid ones and hostile ones."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "I64": 8, "U8": 1, "F64": 8}


def safetensors_file(
    tensors: Mapping[str, tuple[str, Sequence[int]]],
    metadata: Mapping[str, str] | None = None,
    *,
    pad_to: int = 8,
) -> bytes:
    """A valid safetensors file: tensors laid out one after the other in the given order, zero-filled."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, (dtype, shape) in tensors.items():
        length = math.prod(shape) * DTYPE_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + length]}
        offset += length
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % pad_to)  # the format allows padding the header with spaces
    return struct.pack("<Q", len(text)) + text + bytes(offset)


def raw_safetensors(header: bytes, data_size: int, *, declared_length: int | None = None) -> bytes:
    """A safetensors file with a header given byte for byte (and optionally a false declared length)."""
    length = len(header) if declared_length is None else declared_length
    return struct.pack("<Q", length) + header + bytes(data_size)


def header_json(entries: Mapping[str, Any]) -> bytes:
    return json.dumps(entries).encode()


class RunsCommand:
    """Pickles into a call of os.system: loading the pickle would run a shell command. Never unpickled here."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("echo hi",))


class CallsEval:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (eval, ("1 + 1",))


def dangerous_pickle(protocol: int = 2) -> bytes:
    return pickle.dumps({"state_dict": {"weight": [0.5, 1.5]}, "payload": RunsCommand()}, protocol=protocol)


def clean_pickle(protocol: int = 4) -> bytes:
    return pickle.dumps({"state_dict": {"layer.weight": [0.25] * 16, "layer.bias": [0.0] * 4}, "epoch": 3}, protocol)


def torch_like_zip(data_pkl: bytes, *, first: str = "archive/data.pkl", extra: Sequence[str] = ()) -> bytes:
    """A zip laid out like torch.save's: data.pkl (first unless told otherwise), a version and a storage."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        names = [first, *extra] if first == "archive/data.pkl" else [first, "archive/data.pkl", *extra]
        for name in names:
            if name == "archive/data.pkl":
                archive.writestr(name, data_pkl)
            elif name.endswith("version"):
                archive.writestr(name, "3\n")
            else:
                archive.writestr(name, bytes(64))
    return buffer.getvalue()


def gguf_file(*, version: int = 3, tensors: int = 1, entries: int = 1, size: int = 4096) -> bytes:
    """A GGUF fixed header declaring counts, padded with zeros to `size` bytes."""
    header = b"GGUF" + struct.pack("<IQQ", version, tensors, entries)
    return header + bytes(size - len(header))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def onnx_file(graph_size: int = 2048) -> bytes:
    """A ModelProto serialized as onnx.save writes it: ir_version, producer, graph, opset_import."""
    graph = _field(1, b"\x12\x04Relu") + bytes(graph_size)  # content is opaque to detection
    return _field(1, 9) + _field(2, b"modelhub-tests") + _field(3, b"1.0") + _field(7, graph) + _field(8, _field(2, 17))
