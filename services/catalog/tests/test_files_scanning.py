"""scan_pickle with picklescan: pickles written by the tests themselves, never unpickled."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelhub.catalog.domain.vocabulary import Precision, ScanResult
from modelhub.catalog.files import scanning
from modelhub.catalog.files.scanning import opens_with_pickle_import, scan_pickle

from .file_samples import CallsEval, clean_pickle, dangerous_pickle, torch_like_zip

TORCH_MAGIC = 0x1950A86A20F9469CFC6C
SYSTEM = f"{os.system.__module__}.system"  # "posix.system" on Linux: how os.system pickles


class RunsSubprocess:
    def __reduce__(self) -> tuple[Any, tuple[list[str]]]:
        return (subprocess.call, (["echo", "hi"],))


def storage_pickle(*storages: str) -> bytes:
    """A protocol-2 pickle naming torch storage classes (as torch.save's data.pkl does), written by hand."""
    body = b"".join(f"ctorch\n{name}\n".encode() + b"0" for name in storages)  # push the class, pop it
    return b"\x80\x02" + body + b"}."


def write(tmp_path: Path, data: bytes, name: str = "file") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_importing_os_system_is_danger_and_named(tmp_path: Path, protocol: int) -> None:
    outcome = scan_pickle(write(tmp_path, dangerous_pickle(protocol)))

    assert outcome.result is ScanResult.DANGER
    assert outcome.dangerous_globals == [SYSTEM]
    assert SYSTEM in outcome.message


def test_pickle_calling_eval_is_danger(tmp_path: Path) -> None:
    outcome = scan_pickle(write(tmp_path, pickle.dumps([1, CallsEval()], protocol=3)))

    assert outcome.result is ScanResult.DANGER
    assert outcome.dangerous_globals == ["builtins.eval"]


def test_pickle_calling_subprocess_is_danger(tmp_path: Path) -> None:
    outcome = scan_pickle(write(tmp_path, pickle.dumps(RunsSubprocess(), protocol=4)))

    assert outcome.result is ScanResult.DANGER
    assert outcome.dangerous_globals == ["subprocess.call"]


def test_clean_pickle_of_dicts_and_lists_is_success(tmp_path: Path) -> None:
    outcome = scan_pickle(write(tmp_path, clean_pickle()))

    assert outcome.result is ScanResult.SUCCESS
    assert outcome.dangerous_globals == []


def test_torch_zip_with_dangerous_data_pkl_is_danger(tmp_path: Path) -> None:
    outcome = scan_pickle(write(tmp_path, torch_like_zip(dangerous_pickle(), extra=["archive/data/0"])))

    assert outcome.result is ScanResult.DANGER
    assert outcome.dangerous_globals == [SYSTEM]


def test_torch_zip_with_clean_data_pkl_is_success_and_tells_the_precision(tmp_path: Path) -> None:
    data = torch_like_zip(storage_pickle("HalfStorage", "LongStorage"), extra=["archive/data/0", "archive/version"])

    outcome = scan_pickle(write(tmp_path, data))

    assert outcome.result is ScanResult.SUCCESS
    assert outcome.imported_globals == ["torch.HalfStorage", "torch.LongStorage"]
    assert outcome.precision is Precision.FP16


def test_several_float_storages_are_mixed_precision(tmp_path: Path) -> None:
    outcome = scan_pickle(write(tmp_path, torch_like_zip(storage_pickle("HalfStorage", "FloatStorage"))))

    assert outcome.precision is Precision.MIXED


def test_unrecognised_imports_are_success_but_reported(tmp_path: Path) -> None:
    data = b"\x80\x02cmypackage.layers\nCustomLayer\nq\x00."

    outcome = scan_pickle(write(tmp_path, data))

    assert outcome.result is ScanResult.SUCCESS
    assert "mypackage.layers.CustomLayer" in outcome.message


def legacy_torch_file(model: bytes) -> bytes:
    """torch's pre-1.6 layout: magic, protocol version and sys info pickles, the model, storage keys, raw data."""
    parts = [pickle.dumps(TORCH_MAGIC, protocol=2), pickle.dumps(1001, protocol=2)]
    parts += [pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2), model]
    parts += [pickle.dumps(["0"], protocol=2), bytes(range(256)) * 8]
    return b"".join(parts)


def test_legacy_torch_layout_is_scanned_past_its_header_pickles(tmp_path: Path) -> None:
    assert scan_pickle(write(tmp_path, legacy_torch_file(dangerous_pickle()), "bad")).result is ScanResult.DANGER
    clean = scan_pickle(write(tmp_path, legacy_torch_file(storage_pickle("BFloat16Storage")), "ok"))
    assert clean.result is ScanResult.SUCCESS
    assert clean.precision is Precision.BF16


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x02" + bytes(range(200, 256)) * 8,  # not pickle opcodes after the header
        clean_pickle()[:-7],  # cut off
        b"\x80\x04",  # nothing after the PROTO opcode
    ],
    ids=["garbage", "truncated", "only-proto"],
)
def test_a_pickle_that_does_not_parse_is_error(tmp_path: Path, data: bytes) -> None:
    outcome = scan_pickle(write(tmp_path, data))

    assert outcome.result is ScanResult.ERROR
    assert "malformed" in outcome.message


def test_a_truncated_data_pkl_in_a_zip_is_error(tmp_path: Path) -> None:
    outcome = scan_pickle(write(tmp_path, torch_like_zip(clean_pickle()[:-5])))

    assert outcome.result is ScanResult.ERROR
    assert "archive/data.pkl is malformed" in outcome.message


def test_a_corrupt_zip_is_error(tmp_path: Path) -> None:
    data = torch_like_zip(clean_pickle())
    outcome = scan_pickle(write(tmp_path, data[: len(data) // 2]))  # the central directory is gone

    assert outcome.result is ScanResult.ERROR


def test_a_value_too_large_to_read_safely_is_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scanning, "MAX_PICKLE_READ", 1024)
    # A 4 KiB byte string before the import: scanning it would mean reading more than the bound at once.
    data = b"\x80\x04\x8e" + (4096).to_bytes(8, "little") + bytes(4096) + b"0" + dangerous_pickle(2)[2:]

    outcome = scan_pickle(write(tmp_path, data))

    assert outcome.result is ScanResult.ERROR
    assert "larger than 1024 bytes" in outcome.message


def test_danger_wins_over_a_malformed_rest(tmp_path: Path) -> None:
    # A loader runs the import before it reaches the broken bytes: still Danger.
    outcome = scan_pickle(write(tmp_path, dangerous_pickle(2)[:-1] + b"\xff\xff"))

    assert outcome.result is ScanResult.DANGER


def test_files_that_may_hold_no_pickle_are_success_when_none_is_found(tmp_path: Path) -> None:
    assert scan_pickle(write(tmp_path, b"\x80\x02\xff\xff"), must_be_pickle=False).result is ScanResult.SUCCESS


def test_numpy_object_arrays_are_scanned(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([RunsSubprocess()], dtype=object), allow_pickle=True)
    plain = io.BytesIO()
    np.save(plain, np.arange(10, dtype=np.float32))

    assert scan_pickle(write(tmp_path, buffer.getvalue(), "a"), must_be_pickle=False).result is ScanResult.DANGER
    assert scan_pickle(write(tmp_path, plain.getvalue(), "b"), must_be_pickle=False).result is ScanResult.SUCCESS


# -- opens_with_pickle_import: which files of other formats need a scan ----------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"cos\nsystem\n(S'echo hi'\ntR.",  # protocol 0
        pickle.dumps(RunsSubprocess(), protocol=1),
        b"S'" + b"x" * 200_000 + b"'\n0cos\nsystem\n(S'echo hi'\ntR.",  # a long value first
        b"X" + (300_000).to_bytes(4, "little") + b"y" * 300_000 + b"0cos\nsystem\n.",  # a long binary value first
        b"N.cos\nsystem\n.",  # a harmless pickle, then another
    ],
    ids=["protocol-0", "protocol-1", "long-line-first", "long-value-first", "second-pickle"],
)
def test_pickles_with_imports_are_found_in_any_file(tmp_path: Path, data: bytes) -> None:
    assert opens_with_pickle_import(write(tmp_path, data))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"a prompt, masterpiece\n",
        b'{"last_node_id": 9, "nodes": []}',
        b"(lp0\nI1\naI2\na.",  # a pickle without imports
        b"\x93NUMPY\x01\x00",  # a stack import with nothing on the stack
        b"X" + (1 << 31).to_bytes(4, "little") + b"cos\nsystem\n",  # a value longer than the file
    ],
    ids=["empty", "text", "json", "pickle-without-imports", "stack-import-first", "value-past-end"],
)
def test_files_without_pickle_imports_need_no_scan(tmp_path: Path, data: bytes) -> None:
    assert not opens_with_pickle_import(write(tmp_path, data))
