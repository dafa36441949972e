"""FileHasher: every hash kind, checked against hashlib/zlib/blake3 over the whole bytes, whatever the chunking."""

from __future__ import annotations

import hashlib
import random
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import pytest

from modelhub.catalog.domain.vocabulary import HashKind
from modelhub.catalog.files.hashing import FileHasher, FileHashes, hash_file

MIB = 1 << 20


def a1111_model_hash(path: Path) -> str:
    """A1111's legacy `model_hash`, written out: SHA256 of the 64 KiB at offset 1 MiB, first 8 hex digits."""
    with path.open("rb") as file:
        digest = hashlib.sha256()
        file.seek(0x100000)
        digest.update(file.read(0x10000))
        return digest.hexdigest()[0:8]


def expected(data: bytes, path: Path) -> FileHashes:
    """The hashes computed independently of FileHasher, over the whole bytes at once."""
    path.write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest().upper()
    return FileHashes(
        sha256=sha256,
        auto_v1=a1111_model_hash(path).upper() if len(data) >= 2 * MIB else None,
        auto_v2=sha256[:10],
        crc32=f"{zlib.crc32(data):08X}",
        blake3=blake3.blake3(data).hexdigest().upper(),
        size=len(data),
    )


def pieces(data: bytes, sizes: Iterator[int]) -> Iterator[bytes]:
    position = 0
    while position < len(data):
        size = next(sizes)
        yield data[position : position + size]
        position += size


def repeat(*sizes: int) -> Iterator[int]:
    while True:
        yield from sizes


def ones_then(head: int, then: int) -> Iterator[int]:
    """1-byte chunks for the first `head` bytes, then chunks of `then`."""
    yield from [1] * head
    yield from repeat(then)


def across_window() -> Iterator[int]:
    """Chunks that end just before, on and just after the AutoV1 window's edges, then byte by byte over them."""
    yield 0x100000 - 3
    yield from [1] * 6
    yield 0x10000 - 9
    yield from [1] * 6
    yield from repeat(777_777)


def seeded(seed: int) -> Iterator[int]:
    rng = random.Random(seed)
    while True:
        yield rng.choice([1, 7, 4095, 65536, MIB - 1, MIB + 1, 3 * MIB])


SIZES = [0, 1, 4095, MIB, 2 * MIB - 1, 2 * MIB, 2 * MIB + 1, 3 * MIB + 12345]
CHUNKINGS: dict[str, Callable[[], Iterator[int]]] = {
    "whole": lambda: repeat(1 << 30),
    "ones-then-4095": lambda: ones_then(5000, 4095),
    "4095": lambda: repeat(4095),
    "1MiB+1": lambda: repeat(MIB + 1),
    "64KiB": lambda: repeat(65536),
    "across-window": across_window,
    "seeded": lambda: seeded(7),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("chunking", list(CHUNKINGS))
def test_hashes_match_independent_computation(tmp_path: Path, size: int, chunking: str) -> None:
    data = random.Random(size).randbytes(size)
    hasher = FileHasher()
    for piece in pieces(data, CHUNKINGS[chunking]()):
        hasher.update(piece)

    assert hasher.result() == expected(data, tmp_path / "file")
    assert hasher.size == size


def test_auto_v1_is_absent_below_2_mib_and_present_from_2_mib(tmp_path: Path) -> None:
    below = FileHasher()
    below.update(bytes(2 * MIB - 1))
    exactly = FileHasher()
    exactly.update(bytes(2 * MIB))

    assert below.result().auto_v1 is None
    assert exactly.result().auto_v1 == a1111_model_hash(_write(tmp_path / "f", bytes(2 * MIB))).upper()


def test_literal_vectors_pin_the_format() -> None:
    empty = FileHasher().result()
    assert empty == FileHashes(
        sha256="E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        auto_v1=None,
        auto_v2="E3B0C44298",
        crc32="00000000",
        blake3="AF1349B9F5F9A1A6A0404DEA36DCC9499BCB25C9ADC112B7CC9A93CAE41F3262",
        size=0,
    )

    pattern = FileHasher()
    pattern.update(bytes(range(256)) * (3 * MIB // 256))
    assert pattern.result() == FileHashes(
        sha256="F6DD7FEC8584AD00219A447071C1FA368A1CAEE4D9C146083D233713DDCCD2C0",
        auto_v1="7DACA209",
        auto_v2="F6DD7FEC85",
        crc32="4F44B456",
        blake3="3882EE192C02D2B2886B5EE82ECED39F1A739B32D08A770A3CE4DC85CA573484",
        size=3 * MIB,
    )


def test_result_can_be_read_midway_and_feeding_goes_on(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(2 * MIB + 100)
    hasher = FileHasher()
    hasher.update(data[:1000])
    assert hasher.result() == expected(data[:1000], tmp_path / "head")

    hasher.update(data[1000:])

    assert hasher.result() == expected(data, tmp_path / "all")


def test_caller_may_reuse_its_buffer_after_update(tmp_path: Path) -> None:
    data = random.Random(2).randbytes(MIB + 500)
    buffer = bytearray(4096)
    hasher = FileHasher()
    for start in range(0, len(data), len(buffer)):
        piece = data[start : start + len(buffer)]
        buffer[: len(piece)] = piece
        hasher.update(memoryview(buffer)[: len(piece)])
        buffer[:] = bytes(len(buffer))  # scribble over it: the hasher must not have kept a reference

    assert hasher.result() == expected(data, tmp_path / "f")


def test_hash_file_reads_a_file_in_one_pass(tmp_path: Path) -> None:
    data = random.Random(3).randbytes(2 * MIB + 4321)
    path = _write(tmp_path / "model.bin", data)

    assert hash_file(path) == expected(data, tmp_path / "copy")
    assert hash_file(path, chunk_size=4095) == expected(data, tmp_path / "copy")


def test_by_kind_lists_each_hash_under_its_civitai_name() -> None:
    small = FileHasher().result()
    assert set(small.by_kind()) == {HashKind.SHA256, HashKind.AUTO_V2, HashKind.CRC32, HashKind.BLAKE3}

    large = FileHasher()
    large.update(bytes(2 * MIB))
    hashes = large.result()
    assert hashes.by_kind()[HashKind.AUTO_V1] == hashes.auto_v1
    assert hashes.by_kind()[HashKind.SHA256] == hashes.sha256


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
