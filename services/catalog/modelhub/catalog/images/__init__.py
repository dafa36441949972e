"""The catalog's image pipeline: generation metadata read from image files, and image fingerprints.

Pure functions over bytes and values (no database, no network):

- `read_generation_metadata(data)`: the prompt, settings and resources that A1111/Forge or ComfyUI embedded in a
  PNG (or JPEG/WebP EXIF); best effort, never raises, None when there is nothing readable.
- `parse_a1111_parameters(text)`, `parse_comfyui(prompt_json, workflow_json)`: the same, from the texts.
- `format_a1111_parameters(meta)`: metadata as A1111 parameters text, to embed in generated images.
- `fingerprint_image(data)`: size, format, perceptual hash, blurhash and SHA256; raises `ImageRejected`
  subclasses for files that are not whole, supported, reasonably sized images.
"""

from modelhub.catalog.images.a1111 import format_a1111_parameters, parse_a1111_parameters
from modelhub.catalog.images.comfyui import parse_comfyui
from modelhub.catalog.images.fingerprint import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_FORMATS,
    CorruptImage,
    ImageFingerprint,
    ImageRejected,
    ImageTooLarge,
    NotAnImage,
    fingerprint_image,
    hamming_distance,
)
from modelhub.catalog.images.generation import (
    GenerationMetadata,
    HashKind,
    MetadataSource,
    Resource,
    ResourceKind,
    classify_hash,
)
from modelhub.catalog.images.reader import read_generation_metadata

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_FORMATS",
    "CorruptImage",
    "GenerationMetadata",
    "HashKind",
    "ImageFingerprint",
    "ImageRejected",
    "ImageTooLarge",
    "MetadataSource",
    "NotAnImage",
    "Resource",
    "ResourceKind",
    "classify_hash",
    "fingerprint_image",
    "format_a1111_parameters",
    "hamming_distance",
    "parse_a1111_parameters",
    "parse_comfyui",
    "read_generation_metadata",
]
