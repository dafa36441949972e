"""Scan pickle-based files for imports that run code when the file is loaded, with picklescan.

Loading a pickle (torch.load of a .ckpt/.pt/.bin, pickle.load) calls whatever callables the pickle imports.
picklescan lists those imports without executing anything and sorts them into dangerous (os.system,
builtins.eval, subprocess, ...), innocuous (torch storages, OrderedDict, ...) and suspicious (the rest).

Results (Civitai's): Danger when any import is dangerous (even if the rest of the file is malformed, since
a loader runs the imports it reaches before it fails); else Error when the file could not be scanned in
full (picklescan failed or reported a parse error, a value too large to read safely, or, for a file that
must be a pickle, a main pickle program that does not parse to its end); else Success, whose message lists
the suspicious imports, if any, for a person to judge.

Both layouts torch writes are handled: the zip format (every pickle member is scanned, `data.pkl` must
parse) and the legacy format (a sequence of pickles followed by raw storage bytes); so are numpy .npy files
(an array of Python objects is a pickle). One value inside a pickle may be at most MAX_PICKLE_READ bytes: a
longer one is refused (Error) rather than read into memory.
"""

from __future__ import annotations

import io
import logging
import pickletools
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, Final

from picklescan import scanner

from modelhub.catalog.domain.vocabulary import Precision, ScanResult
from modelhub.catalog.files.formats import NUMPY_MAGIC, is_numpy, is_zip

logger = logging.getLogger(__name__)

MAX_PICKLE_READ: Final = 128 << 20
"""The largest single read a scan makes: bounds the memory a hostile length field can claim."""

_IMPORT_OPCODES: Final = frozenset({"GLOBAL", "STACK_GLOBAL", "INST", "EXT1", "EXT2", "EXT4"})
"""Opcodes that bring a callable into a pickle (the extension registry maps codes to imports too)."""

_OPCODES: Final = {opcode.code.encode("latin-1"): opcode for opcode in pickletools.opcodes}
"""Every pickle opcode, by its byte."""
_LENGTH_PREFIXES: Final = {
    pickletools.TAKEN_FROM_ARGUMENT1: ("<B", 1),
    pickletools.TAKEN_FROM_ARGUMENT4: ("<i", 4),
    pickletools.TAKEN_FROM_ARGUMENT4U: ("<I", 4),
    pickletools.TAKEN_FROM_ARGUMENT8U: ("<Q", 8),
}
"""Arguments that carry their own length: the layout and width of that length."""
_LINE_CHUNK: Final = 64 << 10

_STORAGE_PRECISION: Final = {
    "torch.FloatStorage": Precision.FP32,
    "torch.HalfStorage": Precision.FP16,
    "torch.BFloat16Storage": Precision.BF16,
    "torch.Float8_e4m3fnStorage": Precision.FP8,
    "torch.Float8_e5m2Storage": Precision.FP8,
}
"""The storage classes torch pickles name, by the precision of their elements."""


@dataclass(frozen=True)
class ScanOutcome:
    result: ScanResult
    message: str
    dangerous_globals: list[str] = field(default_factory=list)
    """Dangerous imports as "module.name", sorted."""
    imported_globals: list[str] = field(default_factory=list)
    """Every import found, as "module.name", sorted."""

    @property
    def precision(self) -> Precision | None:
        """The precision of a torch pickle, from the storage classes it imports (mixed when several)."""
        found = {_STORAGE_PRECISION[name] for name in self.imported_globals if name in _STORAGE_PRECISION}
        if not found:
            return None
        return found.pop() if len(found) == 1 else Precision.MIXED


class _ReadTooLarge(Exception):
    """A single read beyond MAX_PICKLE_READ: a value the scan will not load into memory."""


class _BoundedReader(io.BufferedReader):
    """A file whose single reads are bounded; remembers whether a read was refused."""

    def __init__(self, raw: io.FileIO, size: int) -> None:
        super().__init__(raw)
        self.file_size = size
        self.refused = False

    def _check(self, wanted: int) -> None:
        if wanted > MAX_PICKLE_READ:
            self.refused = True
            raise _ReadTooLarge(f"a read of {wanted} bytes exceeds {MAX_PICKLE_READ}")

    def read(self, size: int | None = -1) -> bytes:
        remaining = max(self.file_size - self.tell(), 0)
        self._check(remaining if size is None or size < 0 else min(size, remaining))
        return super().read(size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = MAX_PICKLE_READ + 1 if size is None or size < 0 else min(size, MAX_PICKLE_READ + 1)
        line = super().readline(limit)
        self._check(len(line))
        return line


@contextmanager
def _open_bounded(path: Path) -> Iterator[_BoundedReader]:
    raw = io.FileIO(path, "r")
    reader = _BoundedReader(raw, raw.seek(0, io.SEEK_END))
    raw.seek(0)
    try:
        yield reader
    finally:
        reader.close()


def _name(module: str, name: str) -> str:
    return f"{module}.{name}"


def scan_pickle(path: Path, *, must_be_pickle: bool = True) -> ScanOutcome:
    """Scan the file at `path` (a raw pickle stream or a zip holding pickles).

    `must_be_pickle=False` is for files of another format that might still hide a pickle: finding no pickle
    there, or one that does not parse, is then Success rather than Error.
    """
    with _open_bounded(path) as file:
        try:
            # ".npy" has picklescan read numpy's header (object arrays hold a pickle); ".pt" has it try torch's
            # legacy layout first, then zip, then a plain pickle stream.
            extension = ".npy" if is_numpy(file.read(len(NUMPY_MAGIC))) else ".pt"
            file.seek(0)
            report = scanner.scan_bytes(file, path.name, extension)
        except Exception as error:  # picklescan raises many kinds on hostile input; any of them means "unscanned"
            logger.info("picklescan could not scan %s: %s", path, error, exc_info=True)
            if file.refused:
                return _too_large()
            return ScanOutcome(ScanResult.ERROR, f"the file could not be scanned for pickle imports: {error}")
        imported = sorted({_name(g.module, g.name) for g in report.globals})
        dangerous = sorted(
            {_name(g.module, g.name) for g in report.globals if g.safety is scanner.SafetyLevel.Dangerous}
        )
        if dangerous:
            return ScanOutcome(
                ScanResult.DANGER,
                f"the file imports code that runs when it is loaded: {', '.join(dangerous)}",
                dangerous,
                imported,
            )
        problem = _pickle_problem(file, report) if must_be_pickle and not file.refused else ""
        if file.refused:  # during picklescan's reading, or during the check of the main pickle
            return _too_large()
        if problem:
            return ScanOutcome(ScanResult.ERROR, problem, [], imported)
    suspicious = sorted({_name(g.module, g.name) for g in report.globals if g.safety is scanner.SafetyLevel.Suspicious})
    message = f"no dangerous imports; unrecognised imports: {', '.join(suspicious)}" if suspicious else ""
    return ScanOutcome(ScanResult.SUCCESS, message or "no dangerous imports", [], imported)


def _too_large() -> ScanOutcome:
    return ScanOutcome(
        ScanResult.ERROR,
        f"the file holds a pickle value larger than {MAX_PICKLE_READ} bytes, which modelhub does not scan: "
        "convert the model to safetensors",
    )


def _pickle_problem(file: _BoundedReader, report: scanner.ScanResult) -> str:
    """Why a file that must be a pickle was not scanned in full, or "" when it was."""
    if report.scan_err:
        return "the pickle stream is malformed: it could only be scanned in part"
    if report.scanned_files == 0:
        return "the file holds no pickle to scan"
    file.seek(0)
    starts_as_zip = is_zip(file.read(4))
    file.seek(0)
    return _zip_pickle_problem(file) if starts_as_zip else _program_problem(file, "the pickle stream")


def _zip_pickle_problem(file: _BoundedReader) -> str:
    try:
        with zipfile.ZipFile(file) as archive:
            members = [name for name in archive.namelist() if name == "data.pkl" or name.endswith("/data.pkl")]
            if not members:
                return "the zip archive holds no data.pkl to scan"
            for name in members:
                with archive.open(name) as member:
                    problem = _program_problem(member, name)
                    if problem:
                        return problem
    except Exception as error:  # a malformed archive fails in many ways; _ReadTooLarge marks the reader
        return f"the zip archive cannot be read: {error}"
    return ""


def _program_problem(stream: IO[bytes], label: str) -> str:
    """Whether the first pickle program of `stream` parses up to its STOP opcode."""
    try:
        for _ in pickletools.genops(stream):
            pass
    except Exception as error:  # ValueError and friends for malformed input; _ReadTooLarge marks the reader
        return f"{label} is malformed: {error}"
    return ""


def opens_with_pickle_import(path: Path) -> bool:
    """Whether the file starts with pickle programs that import something before they stop being pickle.

    For files of other formats: a loader that unpickles one runs what it imports, whatever the file's name.
    Only opcodes are walked, values are skipped (a long value cannot hide what follows it, and costs no
    memory); the walk ends at the first byte that is not an opcode, or at the end of the file.
    """
    with path.open("rb") as file:
        size = file.seek(0, io.SEEK_END)
        file.seek(0)
        in_program = 0  # opcodes read since the current pickle program began
        while code := file.read(1):
            opcode = _OPCODES.get(code)
            if opcode is None:
                return False
            if opcode.name == "STACK_GLOBAL" and in_program < 2:
                return False  # it pops module and name pushed before: without them no loader gets further
            if opcode.name in _IMPORT_OPCODES:
                return True
            if opcode.arg is not None and not _skip_argument(file, opcode.arg, size):
                return False
            in_program = 0 if opcode.name == "STOP" else in_program + 1
    return False


def _skip_argument(file: BinaryIO, argument: pickletools.ArgumentDescriptor, size: int) -> bool:
    """Move past one opcode's argument; False when the file cannot hold it."""
    if argument.n >= 0:
        return len(file.read(argument.n)) == argument.n
    if argument.n == pickletools.UP_TO_NEWLINE:
        return _skip_line(file)
    layout, width = _LENGTH_PREFIXES[argument.n]
    prefix = file.read(width)
    if len(prefix) < width:
        return False
    (length,) = struct.unpack(layout, prefix)
    if length < 0 or file.tell() + length > size:
        return False
    file.seek(length, io.SEEK_CUR)
    return True


def _skip_line(file: BinaryIO) -> bool:
    while chunk := file.read(_LINE_CHUNK):
        newline = chunk.find(b"\n")
        if newline >= 0:
            file.seek(newline + 1 - len(chunk), io.SEEK_CUR)
            return True
    return False
