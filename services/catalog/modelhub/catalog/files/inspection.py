"""What a stored file is: its format, its safetensors header, whether it is safe to load, its precision.

The policy, per format (detected from the bytes, see formats.py):

- SafeTensor: the header is parsed and validated; an invalid file is rejected (InvalidFile). Loading a
  safetensors file runs no code, so its scan result is Success.
- PickleTensor: scanned with picklescan (Success, Danger or Error, see scanning.py). Also a zip whose
  `data.pkl` is not the first entry, which torch.load still loads.
- GGUF: a structural check of the fixed header (version, and tensor and metadata counts the file can hold);
  a file failing it is rejected. GGUF holds no code: Success.
- ONNX: detected conservatively; ONNX loaders run no embedded code: Success.
- Other: Success only when the file is not pickle-based. A zip archive is scanned for pickles inside it, a
  numpy .npy file for a pickled object array; any other file is scanned when it opens with pickle programs
  that import something (a loader would run them
  whatever the file's name). Finding dangerous imports gives Danger; a pickle too large to scan, Error.

Precision comes from the safetensors header, or from the storage classes a torch pickle names; None when
the format does not say.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from modelhub.catalog.domain.vocabulary import FileFormat, Precision, ScanResult
from modelhub.catalog.files.errors import InvalidFile
from modelhub.catalog.files.formats import HEAD_SIZE, detect_format, is_numpy, is_zip
from modelhub.catalog.files.safetensors import SafetensorsHeader, parse_safetensors_header
from modelhub.catalog.files.scanning import ScanOutcome, opens_with_pickle_import, scan_pickle

_GGUF_HEADER: Final = struct.Struct("<4sIQQ")
_GGUF_V1_HEADER: Final = struct.Struct("<4sIII")
_GGUF_MIN_TENSOR_INFO: Final = 8 + 4 + 4 + 8
"""A tensor description takes at least: name length, dimension count, type, offset."""
_GGUF_MIN_KEY_VALUE: Final = 8 + 4 + 1
"""A metadata entry takes at least: key length, value type, a one-byte value."""


@dataclass(frozen=True)
class FileInspection:
    format: FileFormat
    safetensors: SafetensorsHeader | None
    scan: ScanOutcome
    precision: Precision | None


def inspect_blob(path: Path, size: int) -> FileInspection:
    """Inspect the complete file at `path` (`size` bytes). Raises InvalidFile when its format's rules are
    broken; reads the header and, for pickle-based files, the pickles (never the whole of a safetensors file).

    Sync and CPU/IO-bound: async callers run it in a thread (asyncio.to_thread).
    """
    with path.open("rb") as file:
        head = file.read(HEAD_SIZE)
        file_format = detect_format(head, size)
        if file_format is FileFormat.OTHER and is_zip(head) and _zip_holds_torch_pickle(path):
            file_format = FileFormat.PICKLE_TENSOR
        if file_format is FileFormat.SAFE_TENSOR:
            header = parse_safetensors_header(file, size)
            return FileInspection(file_format, header, _clean("safetensors holds no code"), header.precision)
    if file_format is FileFormat.PICKLE_TENSOR:
        outcome = scan_pickle(path)
        return FileInspection(file_format, None, outcome, outcome.precision)
    if file_format is FileFormat.GGUF:
        _check_gguf(head, size)
        return FileInspection(file_format, None, _clean("GGUF holds no code"), None)
    if file_format is FileFormat.ONNX:
        return FileInspection(file_format, None, _clean("ONNX holds no code"), None)
    if is_zip(head) or is_numpy(head) or opens_with_pickle_import(path):
        outcome = scan_pickle(path, must_be_pickle=False)
        return FileInspection(file_format, None, outcome, outcome.precision)
    return FileInspection(file_format, None, _clean("not pickle-based: nothing to scan"), None)


def _clean(message: str) -> ScanOutcome:
    return ScanOutcome(ScanResult.SUCCESS, message)


def _zip_holds_torch_pickle(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name == "data.pkl" or name.endswith("/data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _check_gguf(head: bytes, size: int) -> None:
    (version,) = struct.unpack_from("<I", head, 4)
    layout = _GGUF_V1_HEADER if version == 1 else _GGUF_HEADER
    if len(head) < layout.size:
        raise InvalidFile(f"GGUF file is {size} bytes, too short for its {layout.size}-byte header")
    _magic, _version, tensors, entries = layout.unpack_from(head)
    needed = layout.size + tensors * _GGUF_MIN_TENSOR_INFO + entries * _GGUF_MIN_KEY_VALUE
    if needed > size:
        raise InvalidFile(
            f"GGUF header declares {tensors} tensors and {entries} metadata entries, which cannot fit in "
            f"{size} bytes: the file is truncated or corrupt"
        )
