"""inspect_blob: the format of a stored file, its header, its scan result and its precision, per policy."""

from __future__ import annotations

import io
import pickle
import random
import struct
import zipfile
from pathlib import Path

import pytest

from modelhub.catalog.domain.vocabulary import FileFormat, Precision, ScanResult
from modelhub.catalog.files.errors import InvalidFile
from modelhub.catalog.files.inspection import FileInspection, inspect_blob

from .file_samples import (
    clean_pickle,
    dangerous_pickle,
    gguf_file,
    header_json,
    onnx_file,
    raw_safetensors,
    safetensors_file,
    torch_like_zip,
)


def inspect(tmp_path: Path, data: bytes) -> FileInspection:
    path = tmp_path / "blob"
    path.write_bytes(data)
    return inspect_blob(path, len(data))


def test_safetensors_are_parsed_and_clean(tmp_path: Path) -> None:
    data = safetensors_file({"w": ("BF16", [8, 8])}, metadata={"modelspec.architecture": "stable-diffusion-xl"})

    inspection = inspect(tmp_path, data)

    assert inspection.format is FileFormat.SAFE_TENSOR
    assert inspection.safetensors is not None
    assert inspection.safetensors.metadata == {"modelspec.architecture": "stable-diffusion-xl"}
    assert inspection.scan.result is ScanResult.SUCCESS
    assert inspection.precision is Precision.BF16


def test_invalid_safetensors_are_rejected_with_the_reason(tmp_path: Path) -> None:
    data = raw_safetensors(header_json({"w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}), 2)

    with pytest.raises(InvalidFile, match="past its end"):
        inspect(tmp_path, data)


def test_pickle_tensors_are_scanned(tmp_path: Path) -> None:
    danger = inspect(tmp_path, torch_like_zip(dangerous_pickle()))
    clean = inspect(tmp_path, clean_pickle())

    assert (danger.format, danger.scan.result) == (FileFormat.PICKLE_TENSOR, ScanResult.DANGER)
    assert (clean.format, clean.scan.result) == (FileFormat.PICKLE_TENSOR, ScanResult.SUCCESS)
    assert danger.safetensors is None


def test_a_torch_zip_whose_data_pkl_is_not_first_is_still_a_scanned_pickle_tensor(tmp_path: Path) -> None:
    inspection = inspect(tmp_path, torch_like_zip(dangerous_pickle(), first="archive/version"))

    assert inspection.format is FileFormat.PICKLE_TENSOR
    assert inspection.scan.result is ScanResult.DANGER


def test_gguf_passes_a_structural_check(tmp_path: Path) -> None:
    inspection = inspect(tmp_path, gguf_file(tensors=3, entries=5))

    assert (inspection.format, inspection.scan.result) == (FileFormat.GGUF, ScanResult.SUCCESS)


def test_gguf_declaring_more_than_the_file_can_hold_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidFile, match="cannot fit in 4096 bytes"):
        inspect(tmp_path, gguf_file(tensors=1 << 40, entries=1))


def test_gguf_v1_uses_32_bit_counts(tmp_path: Path) -> None:
    data = b"GGUF" + struct.pack("<III", 1, 2, 3) + bytes(200)

    assert inspect(tmp_path, data).format is FileFormat.GGUF


def test_onnx_is_clean(tmp_path: Path) -> None:
    inspection = inspect(tmp_path, onnx_file())

    assert (inspection.format, inspection.scan.result) == (FileFormat.ONNX, ScanResult.SUCCESS)


def test_other_files_that_are_not_pickle_based_are_clean(tmp_path: Path) -> None:
    for data in (b"a prompt, masterpiece, best quality\n", b'{"nodes": []}', random.Random(5).randbytes(100_000)):
        inspection = inspect(tmp_path, data)
        assert (inspection.format, inspection.scan.result) == (FileFormat.OTHER, ScanResult.SUCCESS)
        assert inspection.scan.message == "not pickle-based: nothing to scan"


def test_an_old_protocol_pickle_is_other_but_still_scanned(tmp_path: Path) -> None:
    inspection = inspect(tmp_path, dangerous_pickle(protocol=0))

    assert inspection.format is FileFormat.OTHER
    assert inspection.scan.result is ScanResult.DANGER


def test_a_zip_holding_a_pickle_is_scanned(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("poses/readme.txt", "poses")
        archive.writestr("poses/extra.pkl", pickle.dumps(["ok"], protocol=4))
        archive.writestr("poses/evil.pkl", dangerous_pickle(4))

    inspection = inspect(tmp_path, buffer.getvalue())

    assert (inspection.format, inspection.scan.result) == (FileFormat.OTHER, ScanResult.DANGER)


def test_a_zip_without_pickles_is_clean(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("wildcards/colors.txt", "red\ngreen\n")

    inspection = inspect(tmp_path, buffer.getvalue())

    assert (inspection.format, inspection.scan.result) == (FileFormat.OTHER, ScanResult.SUCCESS)


def test_a_zero_byte_file_is_other_and_clean(tmp_path: Path) -> None:
    # The store refuses empty uploads before they get here; on its own, an empty file holds nothing to run.
    inspection = inspect(tmp_path, b"")

    assert (inspection.format, inspection.scan.result) == (FileFormat.OTHER, ScanResult.SUCCESS)
