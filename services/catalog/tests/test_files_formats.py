"""detect_format: from the bytes only, conservatively."""

from __future__ import annotations

import random
import struct

import pytest

from modelhub.catalog.domain.vocabulary import FileFormat
from modelhub.catalog.files.formats import HEAD_SIZE, detect_format

from .file_samples import (
    clean_pickle,
    dangerous_pickle,
    gguf_file,
    onnx_file,
    safetensors_file,
    torch_like_zip,
)


def detect(data: bytes) -> FileFormat:
    return detect_format(data[:HEAD_SIZE], len(data))


def test_safetensors_is_recognised_by_its_length_prefix_and_brace() -> None:
    assert detect(safetensors_file({"w": ("F16", [4, 4])})) is FileFormat.SAFE_TENSOR
    assert detect(safetensors_file({})) is FileFormat.SAFE_TENSOR


@pytest.mark.parametrize(
    "data",
    [
        struct.pack("<Q", 1 << 40) + b'{"a": 1}',  # length beyond the file
        struct.pack("<Q", 8) + b"[1, 2, 3]",  # not an object
        struct.pack("<Q", 0) + b"{}",  # empty header
        b"{}",  # too short
    ],
    ids=["length-beyond-file", "not-an-object", "zero-length", "too-short"],
)
def test_safetensors_look_alikes_are_not_safetensors(data: bytes) -> None:
    assert detect(data) is not FileFormat.SAFE_TENSOR


def test_gguf_needs_magic_and_a_known_version() -> None:
    assert detect(gguf_file(version=3)) is FileFormat.GGUF
    assert detect(gguf_file(version=1)) is FileFormat.GGUF
    assert detect(gguf_file(version=99)) is FileFormat.OTHER


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_raw_pickles_of_protocol_2_to_5_are_pickle_tensors(protocol: int) -> None:
    assert detect(clean_pickle(protocol)) is FileFormat.PICKLE_TENSOR
    assert detect(dangerous_pickle(protocol)) is FileFormat.PICKLE_TENSOR


def test_torch_zip_with_data_pkl_first_is_a_pickle_tensor() -> None:
    assert detect(torch_like_zip(clean_pickle())) is FileFormat.PICKLE_TENSOR


def test_other_zips_are_other_by_their_bytes_alone() -> None:
    # torch.load would still find a data.pkl that is not the first entry: inspect_blob looks deeper.
    assert detect(torch_like_zip(clean_pickle(), first="archive/version")) is FileFormat.OTHER


def test_onnx_model_proto_is_recognised() -> None:
    assert detect(onnx_file()) is FileFormat.ONNX


@pytest.mark.parametrize(
    "data",
    [
        b"\x08\x09\x12\x04abcd",  # ir_version then a string, but no graph
        b"\x08\x63\x3a\x02ab",  # ir_version 99
        b"\x08\x09\x3a\xff\xff\xff\x0f",  # graph longer than the file
        b"\x08\x09\x48\x01\x3a\x00",  # field 9 is not ModelProto's
        b"\x12\x02ab\x08\x09\x3a\x00",  # ir_version not first
    ],
    ids=["no-graph", "unknown-ir-version", "graph-past-end", "unknown-field", "ir-version-not-first"],
)
def test_onnx_look_alikes_are_other(data: bytes) -> None:
    assert detect(data) is FileFormat.OTHER


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world\n", b'{"nodes": []}', b"PK\x05\x06" + bytes(18), random.Random(0).randbytes(4096)],
    ids=["empty", "text", "json", "empty-zip", "random"],
)
def test_everything_else_is_other(data: bytes) -> None:
    assert detect(data) is FileFormat.OTHER


def test_diffusers_is_never_detected_from_one_file() -> None:
    samples = [safetensors_file({"w": ("F32", [2])}), clean_pickle(), gguf_file(), onnx_file(), b'{"_class_name": 1}']
    assert FileFormat.DIFFUSERS not in {detect(sample) for sample in samples}
