"""The generation texts a file carries, found without decoding its pixels.

- PNG: the text chunks before the image data (tEXt, zTXt, iTXt; Pillow reads them when it opens the file and
  bounds decompressed text): `parameters` (A1111/Forge), `prompt` and `workflow` (ComfyUI). Chunks after the
  image data are not read (that would decode the whole image); the tools above write theirs before it.
- JPEG / WebP: the EXIF UserComment (A1111 writes its parameters there), the JPEG comment segment, and the
  EXIF strings `prompt:{...}` / `workflow:{...}` that ComfyUI's WebP saver writes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from modelhub.catalog.images import generation as g

FORMATS = ("PNG", "JPEG", "WEBP")
MAX_TEXT_CHARS = g.MAX_RAW_JSON_CHARS

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286


@dataclass(frozen=True)
class EmbeddedText:
    """Texts found in a file; each None when absent, unreadable or over `MAX_TEXT_CHARS`."""

    parameters: str | None = None
    comfyui_prompt: str | None = None
    comfyui_workflow: str | None = None


def read_embedded_text(data: bytes) -> EmbeddedText | None:
    """The generation texts of a PNG, JPEG or WebP file; None when `data` is not one that Pillow can open."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            if image.format == "PNG":
                return _png_text(image.info)
            return _exif_text(image)
    # Pillow's format plugins raise many unrelated types (OSError, SyntaxError, ValueError, struct.error,
    # DecompressionBombError, ...) on malformed files; for metadata they all mean "nothing readable here".
    except Exception:
        return None


def _png_text(info: dict[str | tuple[int, int], object]) -> EmbeddedText:
    return EmbeddedText(
        parameters=_text(info.get("parameters")),
        comfyui_prompt=_text(info.get("prompt")),
        comfyui_workflow=_text(info.get("workflow")),
    )


def _text(value: object) -> str | None:
    """A chunk's text. Pillow decodes tEXt as Latin-1 (the PNG rule), but some tools write UTF-8 there: text
    that is valid UTF-8 once turned back into bytes was meant as UTF-8."""
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT_CHARS:
        return None
    if not value.isascii():
        try:
            return value.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return value


def _exif_text(image: Image.Image) -> EmbeddedText:
    exif = image.getexif()
    parameters = _user_comment(exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT))
    comment = image.info.get("comment")
    if parameters is None and isinstance(comment, bytes):
        parameters = _text(comment.decode("utf-8", "replace"))
    prompt = workflow = None
    for value in exif.values():
        if isinstance(value, str):
            prefix, _, rest = value.partition(":")
            if prefix == "prompt":
                prompt = prompt or _text(rest)
            elif prefix == "workflow":
                workflow = workflow or _text(rest)
    return EmbeddedText(parameters=parameters, comfyui_prompt=prompt, comfyui_workflow=workflow)


def _user_comment(value: object) -> str | None:
    """Decode an EXIF UserComment: an 8-byte character code ("UNICODE\\0", "ASCII\\0\\0\\0", or none) and text."""
    if isinstance(value, str):
        return _text(value)
    if not isinstance(value, bytes) or len(value) > 2 * MAX_TEXT_CHARS + 8:
        return None
    code, body = value[:8], value[8:]
    if code == b"UNICODE\0":
        return _text(_utf16(body).rstrip("\0"))
    return _text(body.decode("utf-8", "replace").rstrip("\0"))


def _utf16(body: bytes) -> str:
    """UTF-16 of either byte order: A1111 (through piexif) writes big-endian without a BOM, others little-endian.
    Without a BOM, the order whose high bytes are mostly zero is the one (generation text is mostly ASCII)."""
    if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return body.decode("utf-16", "replace")
    even_zeros = body[0::2].count(0)
    odd_zeros = body[1::2].count(0)
    return body.decode("utf-16-be" if even_zeros >= odd_zeros else "utf-16-le", "replace")
