"""parse_safetensors_header: valid files parse, every hostile header is refused with the reason."""

from __future__ import annotations

import io
import struct
from typing import Any

import grpc
import pytest

from modelhub.catalog.domain.vocabulary import Precision
from modelhub.catalog.files.errors import InvalidFile
from modelhub.catalog.files.safetensors import SafetensorsHeader, TensorInfo, parse_safetensors_header
from modelhub.core.grpc.errors import status_code_for

from .file_samples import header_json, raw_safetensors, safetensors_file


def parse(data: bytes) -> SafetensorsHeader:
    return parse_safetensors_header(io.BytesIO(data), len(data))


def rejection(data: bytes) -> str:
    with pytest.raises(InvalidFile) as caught:
        parse(data)
    assert status_code_for(caught.value) is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.reason == "INVALID_FILE"
    return caught.value.message


def tensor(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def test_a_valid_file_gives_metadata_and_tensors() -> None:
    data = safetensors_file(
        {"a.weight": ("F16", [2, 3]), "b.bias": ("F32", [4]), "pos": ("I64", [1, 2]), "scalar": ("F32", [])},
        metadata={"format": "pt", "ss_network_dim": "16"},
    )

    header = parse(data)

    assert header.metadata == {"format": "pt", "ss_network_dim": "16"}
    assert header.tensors["a.weight"] == TensorInfo("F16", (2, 3), (0, 12))
    assert header.tensors["b.bias"] == TensorInfo("F32", (4,), (12, 28))
    assert header.tensors["scalar"] == TensorInfo("F32", (), (44, 48))
    assert set(header.tensors) == {"a.weight", "b.bias", "pos", "scalar"}
    assert header.header_size == struct.unpack_from("<Q", data)[0]


def test_tensors_may_be_listed_in_any_order_and_be_empty() -> None:
    entries = {
        "second": tensor("F16", [2], 4, 8),
        "empty": tensor("F32", [0, 3], 4, 4),
        "first": tensor("U8", [4], 0, 4),
    }

    header = parse(raw_safetensors(header_json(entries), 8))

    assert header.tensors["empty"].data_offsets == (4, 4)


def test_a_file_without_tensors_is_valid_when_nothing_follows_the_header() -> None:
    assert parse(raw_safetensors(b"{}", 0)).tensors == {}
    assert parse(raw_safetensors(b'{"__metadata__": null}', 0)).metadata == {}


def test_sub_byte_dtypes_must_fill_whole_bytes() -> None:
    assert parse(raw_safetensors(header_json({"q": tensor("F4", [2, 3], 0, 3)}), 3)).tensors["q"].dtype == "F4"
    message = rejection(raw_safetensors(header_json({"q": tensor("F4", [3], 0, 2)}), 2))
    assert "whole number of bytes" in message


# -- hostile headers ------------------------------------------------------------------------------------


def test_zero_byte_file() -> None:
    assert "too short" in rejection(b"")


def test_truncated_length_prefix() -> None:
    assert "too short" in rejection(b"\x10\x00\x00")


def test_zero_header_length() -> None:
    assert "header length is 0" in rejection(struct.pack("<Q", 0) + b"{}")


def test_header_length_larger_than_the_file() -> None:
    data = struct.pack("<Q", 4294967296) + b"{}" + bytes(1014)
    assert rejection(data) == "safetensors header length 4294967296 exceeds the file size (1024 bytes)"


def test_header_length_over_the_100_mb_bound() -> None:
    # The length is checked before anything is read: a small stream claiming a huge size is enough.
    stream = io.BytesIO(struct.pack("<Q", 100_000_001) + b"{}")
    with pytest.raises(InvalidFile, match="exceeds the limit of 100000000 bytes"):
        parse_safetensors_header(stream, 200_000_000)


def test_truncated_header_whose_file_claims_more_bytes() -> None:
    # The caller's size says the header fits, but the stream ends early (a file cut off while copying).
    data = struct.pack("<Q", 64) + b'{"a": '
    with pytest.raises(InvalidFile, match="truncated"):
        parse_safetensors_header(io.BytesIO(data), 200)


def test_header_not_utf8() -> None:
    assert "not valid UTF-8" in rejection(raw_safetensors(b'{"\xff\xfe": 1}', 0))


def test_header_not_json() -> None:
    assert "not valid JSON" in rejection(raw_safetensors(b'{"a": [1, 2,}', 0))


def test_header_not_an_object() -> None:
    assert "JSON object" in rejection(raw_safetensors(b"[1, 2]  ", 0))


def test_header_with_nan() -> None:
    assert "not valid JSON" in rejection(raw_safetensors(b'{"__metadata__": {"a": NaN}}', 0))


def test_duplicate_tensor_names() -> None:
    header = b'{"w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}, "w": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}}'  # noqa: E501
    assert "'w' more than once" in rejection(raw_safetensors(header, 4))


def test_unknown_dtype() -> None:
    message = rejection(raw_safetensors(header_json({"w": tensor("F12", [2], 0, 4)}), 4))
    assert "unknown dtype 'F12'" in message
    assert "BF16" in message  # the message lists what is known


@pytest.mark.parametrize("shape", [[-1, 2], [2.0], ["2"], [True], "2x2"], ids=repr)
def test_shapes_must_be_lists_of_non_negative_integers(shape: Any) -> None:
    entries = {"w": {"dtype": "U8", "shape": shape, "data_offsets": [0, 2]}}
    assert "expected a list of integers >= 0" in rejection(raw_safetensors(header_json(entries), 2))


@pytest.mark.parametrize("offsets", [[0], [0, 2, 4], [-2, 0], [0, "2"], None], ids=repr)
def test_offsets_must_be_a_begin_end_pair(offsets: Any) -> None:
    entries = {"w": {"dtype": "U8", "shape": [2], "data_offsets": offsets}}
    assert "expected [begin, end]" in rejection(raw_safetensors(header_json(entries), 2))


def test_missing_keys() -> None:
    assert "lacks shape" in rejection(raw_safetensors(header_json({"w": {"dtype": "U8", "data_offsets": [0, 1]}}), 1))


def test_offsets_past_the_end_of_the_file() -> None:
    message = rejection(raw_safetensors(header_json({"w": tensor("F32", [4], 0, 16)}), 8))
    assert "past its end (8 bytes)" in message


def test_length_not_matching_dtype_and_shape() -> None:
    message = rejection(raw_safetensors(header_json({"w": tensor("F32", [4], 0, 12)}), 12))
    assert "spans 12 bytes but its dtype F32 and shape [4] need 16" in message


def test_end_before_begin() -> None:
    assert "before it begins" in rejection(raw_safetensors(header_json({"w": tensor("U8", [0], 4, 2)}), 4))


def test_overlapping_tensors() -> None:
    entries = {"a": tensor("U8", [4], 0, 4), "b": tensor("U8", [4], 2, 6)}
    assert "'a' and 'b' overlap" in rejection(raw_safetensors(header_json(entries), 6))


def test_gap_between_tensors() -> None:
    entries = {"a": tensor("U8", [4], 0, 4), "b": tensor("U8", [4], 6, 10)}
    assert "bytes 4..6 belong to no tensor" in rejection(raw_safetensors(header_json(entries), 10))


def test_data_not_starting_at_zero() -> None:
    assert "bytes 0..2 belong to no tensor" in rejection(
        raw_safetensors(header_json({"a": tensor("U8", [2], 2, 4)}), 4)
    )


def test_trailing_bytes_after_the_last_tensor() -> None:
    # Bytes that belong to no tensor could carry another file (a polyglot): refused.
    message = rejection(raw_safetensors(header_json({"a": tensor("U8", [4], 0, 4)}), 4 + 100))
    assert "100 bytes after the last tensor" in message


def test_huge_shapes_cost_nothing_and_are_refused() -> None:
    entries = {"w": tensor("F32", [2**62] * 50_000, 0, 4)}
    assert "spans 4 bytes but its dtype F32 and shape need more" in rejection(raw_safetensors(header_json(entries), 4))


def test_metadata_must_map_strings_to_strings() -> None:
    message = rejection(raw_safetensors(header_json({"__metadata__": {"epochs": 10}}), 0))
    assert "'epochs' holds int" in message
    assert "must be an object" in rejection(raw_safetensors(header_json({"__metadata__": ["a"]}), 0))


def test_a_tensor_entry_must_be_an_object() -> None:
    assert "must be an object" in rejection(raw_safetensors(header_json({"w": [0, 1]}), 0))


# -- precision ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tensors", "precision"),
    [
        ({"a": ("F16", [100]), "ids": ("I64", [77])}, Precision.FP16),
        ({"a": ("BF16", [100])}, Precision.BF16),
        ({"a": ("F32", [100])}, Precision.FP32),
        ({"a": ("F8_E4M3", [1000]), "scale": ("F32", [10])}, Precision.FP8),  # scales are a small share
        ({"a": ("F16", [60]), "b": ("F32", [40])}, Precision.MIXED),
        ({"a": ("F64", [10])}, Precision.OTHER),
        ({"ids": ("I64", [10]), "mask": ("U8", [3])}, None),
        ({"w": ("U8", [64]), "w.quant_state.bitsandbytes__nf4": ("U8", [8])}, Precision.NF4),
    ],
    ids=["fp16", "bf16", "fp32", "fp8", "mixed", "fp64-other", "no-floats", "nf4"],
)
def test_precision_summary(tensors: dict[str, tuple[str, list[int]]], precision: Precision | None) -> None:
    assert parse(safetensors_file(tensors)).precision == precision


def test_parsing_reads_only_the_header() -> None:
    data = safetensors_file({"w": ("F32", [1024, 256])})  # 1 MiB of tensor data
    stream = _CountingReader(data)

    parse_safetensors_header(stream, len(data))

    assert stream.read_bytes == 8 + struct.unpack_from("<Q", data)[0]


class _CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.read_bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.read_bytes += len(chunk)
        return chunk
