"""What the gallery stores about an image's pixels: size, format, a perceptual hash, a blurhash placeholder.

`fingerprint_image` decodes the file once, so it is also the check that an upload is a whole, supported image
of an acceptable size; it raises an `ImageRejected` (an `InvalidArgument`: the client must send another file)
otherwise. It is pure: the same bytes always give the same fingerprint.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

import blurhash
import imagehash
from PIL import Image, ImageOps

from modelhub.core.errors import FieldViolation, InvalidArgument

SUPPORTED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
# 50 megapixels: above any generator's output (an 8K frame is 33 MP) and below Pillow's own bomb limit (89 MP);
# decoding one costs up to ~200 MB of memory (RGBA), which bounds a worker's peak.
DEFAULT_MAX_PIXELS = 50_000_000
# Pixels are hashed from a working copy of about this many pixels per side (JPEGs decode straight to it by DCT
# scaling; others are box-reduced after decoding): far more than the 32x32 the perceptual hash and the 64x64
# the blurhash are computed from, and it spares resampling a 12-megapixel image (~0.4 s) for each hash.
_WORKING_SIDE = 512
_BLURHASH_THUMBNAIL = (64, 64)
_PHASH = re.compile(r"[0-9A-Fa-f]{16}")
_SWAPPED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that turn the picture a quarter turn
_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageFingerprint:
    """`width` and `height` as displayed (after the EXIF orientation); `format` is Pillow's name (PNG, JPEG, WEBP,
    GIF; for GIF and animated WebP the first frame counts); `phash` is the 64-bit DCT perceptual hash as 16 hex
    digits (imagehash's form; compare with `hamming_distance`); `blurhash` a short placeholder string (4x3 or
    3x4 components, following the aspect); `sha256` the upper-case hex SHA256 of the file's bytes."""

    width: int
    height: int
    format: str
    mime_type: str
    phash: str
    blurhash: str
    sha256: str


class ImageRejected(InvalidArgument):
    """The uploaded bytes cannot be accepted as an image; the message says what to send instead."""

    def __init__(self, message: str, *, reason: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message, violations=[FieldViolation("image", message)], reason=reason, metadata=metadata)


class NotAnImage(ImageRejected):
    def __init__(self) -> None:
        kinds = ", ".join(f"{name} ({mime})" for name, mime in SUPPORTED_FORMATS.items())
        super().__init__(
            f"the file is not an image modelhub accepts; upload one of: {kinds}", reason="IMAGE_FORMAT_UNSUPPORTED"
        )


class CorruptImage(ImageRejected):
    def __init__(self, detail: str) -> None:
        super().__init__(
            f"the image data is truncated or corrupt ({detail}); upload the complete file again",
            reason="IMAGE_CORRUPT",
        )


class ImageTooLarge(ImageRejected):
    def __init__(self, max_pixels: int, width: int | None = None, height: int | None = None) -> None:
        size = f"is {width}x{height} ({width * height:,} pixels), more" if width and height else "has more pixels"
        super().__init__(
            f"the image {size} than modelhub's limit of {max_pixels:,} pixels; downscale it and upload again",
            reason="IMAGE_TOO_LARGE",
            metadata={"max_pixels": str(max_pixels), "width": str(width or ""), "height": str(height or "")},
        )


def fingerprint_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageFingerprint:
    """Decode `data` (PNG, JPEG, WebP or GIF) and fingerprint it.

    Raises NotAnImage (not one of those formats), ImageTooLarge (over `max_pixels`, checked from the header
    before any pixel is decoded; Pillow's decompression-bomb guard catches the rest), CorruptImage (truncated
    or undecodable data).
    """
    try:
        image = Image.open(io.BytesIO(data), formats=list(SUPPORTED_FORMATS))
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(max_pixels) from exc
    # Pillow raises many unrelated types for bytes no plugin accepts or a header it cannot parse.
    except Exception as exc:
        if _looks_supported(data):
            raise CorruptImage("its header is cut short or damaged") from exc
        raise NotAnImage() from exc
    with image:
        width, height = image.size
        if width < 1 or height < 1:
            raise CorruptImage("it has no pixels")
        if width * height > max_pixels:
            raise ImageTooLarge(max_pixels, width, height)
        image_format = image.format or ""
        try:
            if image_format == "JPEG":
                image.draft("RGB", (_WORKING_SIDE, _WORKING_SIDE))
            image.load()
            if image.getexif().get(_ORIENTATION) in _SWAPPED_ORIENTATIONS:
                width, height = height, width
            picture = _flatten(ImageOps.exif_transpose(image))
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(max_pixels, width, height) from exc
        # As above: a failing decoder may raise OSError ("image file is truncated"), SyntaxError, ValueError, ...
        except Exception as exc:
            raise CorruptImage(str(exc) or type(exc).__name__) from exc
    if (factor := max(picture.size) // _WORKING_SIDE) >= 2:
        picture = picture.reduce(factor)
    phash = str(imagehash.phash(picture))
    thumbnail = picture.copy()
    thumbnail.thumbnail(_BLURHASH_THUMBNAIL)
    components = (4, 3) if thumbnail.width >= thumbnail.height else (3, 4)
    placeholder = blurhash.encode(thumbnail, *components)
    return ImageFingerprint(
        width=width,
        height=height,
        format=image_format,
        mime_type=SUPPORTED_FORMATS[image_format],
        phash=phash,
        blurhash=placeholder,
        sha256=hashlib.sha256(data).hexdigest().upper(),
    )


def hamming_distance(phash_a: str, phash_b: str) -> int:
    """How many of the 64 bits two perceptual hashes differ in: 0 for the same picture, ~32 for unrelated ones.

    Re-encoding or resizing a picture typically changes a handful of bits. Raises InvalidArgument unless both
    are 16 hex digits (either case).
    """
    bad = [
        FieldViolation(name, f"{value!r} is not a 64-bit perceptual hash (16 hex digits)")
        for name, value in (("phash_a", phash_a), ("phash_b", phash_b))
        if not _PHASH.fullmatch(value)
    ]
    if bad:
        raise InvalidArgument("perceptual hashes must be 16 hex digits", violations=bad)
    return (int(phash_a, 16) ^ int(phash_b, 16)).bit_count()


def _looks_supported(data: bytes) -> bool:
    """Whether the bytes start like a supported format (so a failure to open them means damage)."""
    return data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")) or (
        data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    )


def _flatten(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white, so transparent pixels (whose colour is arbitrary) hash
    the same whatever a tool left in them."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # 16-bit and float greyscale: scale to 8 bits first (a plain convert would clip everything above 255).
        return image.point(lambda value: value / 256).convert("RGB")
    return image.convert("RGB")
