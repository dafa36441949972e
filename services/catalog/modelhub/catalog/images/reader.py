"""Generation metadata straight from an image file's bytes."""

from __future__ import annotations

from dataclasses import replace

from modelhub.catalog.images.a1111 import parse_a1111_parameters
from modelhub.catalog.images.comfyui import parse_comfyui
from modelhub.catalog.images.embedded import read_embedded_text
from modelhub.catalog.images.generation import GenerationMetadata


def read_generation_metadata(data: bytes) -> GenerationMetadata | None:
    """The generation metadata embedded in a PNG, JPEG or WebP file, or None when there is none we can read.

    Best effort by design: metadata is optional, so bytes that are not an image, unreadable chunks and invalid
    JSON all give None (or the part that was readable) and never raise. Whether the bytes are an acceptable
    image is `fingerprint_image`'s decision. When a file carries both A1111 parameters and a ComfyUI graph (some
    ComfyUI saver nodes write both), the fields come from the parameters (they name hashes), and the ComfyUI
    JSON is kept alongside.
    """
    texts = read_embedded_text(data)
    if texts is None:
        return None
    a1111 = parse_a1111_parameters(texts.parameters) if texts.parameters else None
    comfyui = None
    if texts.comfyui_prompt or texts.comfyui_workflow:
        comfyui = parse_comfyui(texts.comfyui_prompt, texts.comfyui_workflow)
    if a1111 is not None and comfyui is not None:
        return replace(a1111, comfyui_prompt=comfyui.comfyui_prompt, comfyui_workflow=comfyui.comfyui_workflow)
    return a1111 or comfyui
