"""Builders for the image pipeline's tests: small pictures, and files carrying what A1111 and ComfyUI write."""

from __future__ import annotations

import io
import json
import struct
import zlib
from typing import Any

from PIL import Image, ImageDraw, PngImagePlugin

# What AUTOMATIC1111 1.10 writes, with the usual extensions' keys: a prompt over two lines with LoRA tags (one
# without a weight, one negative), a two-line negative prompt, quoted values holding commas and colons, and
# Civitai's extension's `Hashes` JSON.
A1111_PARAMETERS = (
    "masterpiece, best quality, portrait of a knight, <lora:add_detail:0.6>, (city lights:1.2),\n"
    "night sky, <lora:FlatStyle:-0.5> <lora:GlowingEyes>\n"
    "Negative prompt: (worst quality:1.4), lowres,\n"
    "bad hands, easynegative\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3861521436, "
    "Size: 512x768, Model hash: 6ce0161689, Model: dreamshaper_8, VAE hash: 735e4c3a44, "
    "VAE: vae-ft-mse-840000-ema-pruned.safetensors, Denoising strength: 0.45, Clip skip: 2, "
    'ADetailer prompt: "face, detailed eyes: sharp", Hires upscale: 2, Hires upscaler: 4x-UltraSharp, '
    'Lora hashes: "add_detail: 7c6bad76eb54, FlatStyle: 0123456789ab, GlowingEyes: 1a2b3c4d5e6f", '
    'TI hashes: "easynegative: c74b4e810b03", '
    'Hashes: {"model": "6ce0161689", "embed:easynegative": "c74b4e810b"}, Version: v1.10.1'
)


def comfyui_graph() -> dict[str, Any]:
    """The API-format graph ComfyUI saves as `prompt`: checkpoint -> LoRA -> LoRA -> two CLIPTextEncode ->
    KSampler -> VAEDecode -> SaveImage, with CLIPSetLastLayer between the LoRAs' clip and the text encoders."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SDXL/juggernautXL_v9.safetensors"}},
        "10": {
            "class_type": "LoraLoader",
            "inputs": {
                "lora_name": "add-detail-xl.safetensors",
                "strength_model": 0.8,
                "strength_clip": 1.0,
                "model": ["4", 0],
                "clip": ["4", 1],
            },
        },
        "11": {
            "class_type": "LoraLoader",
            "inputs": {
                "lora_name": "styles/pixel-art-xl.safetensors",
                "strength_model": 1.2,
                "strength_clip": 1.0,
                "model": ["10", 0],
                "clip": ["10", 1],
            },
        },
        "12": {"class_type": "CLIPSetLastLayer", "inputs": {"stop_at_clip_layer": -2, "clip": ["11", 1]}},
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "pixel art, a lighthouse at dusk, embedding:goodPixels", "clip": ["12", 0]},
        },
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, watermark", "clip": ["12", 0]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 768, "batch_size": 1}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 156680208700286,
                "steps": 30,
                "cfg": 5.5,
                "sampler_name": "dpmpp_2m_sde",
                "scheduler": "karras",
                "denoise": 1.0,
                "model": ["11", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def comfyui_workflow() -> dict[str, Any]:
    """A (shortened) editor-format workflow, as ComfyUI saves it as `workflow`."""
    return {
        "last_node_id": 12,
        "last_link_id": 20,
        "nodes": [
            {"id": 4, "type": "CheckpointLoaderSimple", "widgets_values": ["SDXL/juggernautXL_v9.safetensors"]},
            {"id": 3, "type": "KSampler", "widgets_values": [156680208700286, "fixed", 30, 5.5, "dpmpp_2m_sde"]},
        ],
        "links": [[1, 4, 0, 10, 0, "MODEL"]],
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
        "version": 0.4,
    }


def picture(kind: str = "scene", size: tuple[int, int] = (256, 192)) -> Image.Image:
    """A small deterministic picture with broad shapes, as generated images have (so perceptual hashes mean
    something). "scene": day sky, sun and a hill; "room": a wall, a window and a table; "night": a dark sky,
    a moon on the left and a lake."""
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    if kind == "scene":
        for y in range(height):
            draw.line([(0, y), (width, y)], fill=(40 + y * 100 // height, 90 + y * 80 // height, 200))
        draw.ellipse([width * 0.6, height * 0.1, width * 0.85, height * 0.45], fill=(250, 220, 90))
        draw.polygon(
            [(0, height), (0, height * 0.6), (width * 0.4, height * 0.45), (width, height)], fill=(40, 120, 50)
        )
    elif kind == "room":
        for x in range(width):
            draw.line([(x, 0), (x, height)], fill=(200 - x * 80 // width, 170, 140))
        draw.rectangle([width * 0.1, height * 0.15, width * 0.4, height * 0.55], fill=(160, 210, 250))
        draw.rectangle([width * 0.5, height * 0.65, width * 0.95, height * 0.8], fill=(90, 50, 20))
    elif kind == "night":
        for y in range(height):
            draw.line([(0, y), (width, y)], fill=(10, 10 + y * 30 // height, 40 + y * 40 // height))
        draw.ellipse([width * 0.08, height * 0.08, width * 0.28, height * 0.35], fill=(235, 235, 220))
        draw.rectangle([0, height * 0.7, width, height], fill=(20, 40, 90))
    else:
        raise ValueError(kind)
    return image


def encode(image: Image.Image, image_format: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def png(chunks: dict[str, str] | None = None, *, compressed: bool = False, image: Image.Image | None = None) -> bytes:
    """A PNG carrying `chunks` as text chunks (tEXt, or iTXt for non-Latin-1 text; zTXt/compressed iTXt when
    `compressed`), the way Pillow-based tools (A1111, ComfyUI) write them."""
    info = PngImagePlugin.PngInfo()
    for key, value in (chunks or {}).items():
        info.add_text(key, value, zip=compressed)
    return encode(image or picture(size=(64, 48)), "PNG", pnginfo=info)


def png_with_raw_text(key: str, value: bytes) -> bytes:
    """A PNG with a tEXt chunk holding raw bytes (e.g. UTF-8, which the PNG rules say should be Latin-1)."""
    info = PngImagePlugin.PngInfo()
    info.add(b"tEXt", key.encode("latin-1") + b"\0" + value)
    return encode(picture(size=(32, 24)), "PNG", pnginfo=info)


def with_user_comment(text: str, image_format: str = "JPEG", *, encoding: str = "utf-16-be") -> bytes:
    """A JPEG or WebP whose EXIF UserComment holds `text` as A1111 writes it (piexif's "UNICODE" code)."""
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + text.encode(encoding)
    return encode(picture(size=(64, 48)), image_format, exif=exif.tobytes())


def comfyui_webp(prompt: dict[str, Any], workflow: dict[str, Any]) -> bytes:
    """A WebP as ComfyUI's WebP saver writes it: `prompt:` and `workflow:` strings in EXIF IFD0 tags."""
    exif = Image.Exif()
    exif[0x0110] = "prompt:" + json.dumps(prompt)
    exif[0x010F] = "workflow:" + json.dumps(workflow)
    return encode(picture(size=(64, 48)), "WEBP", exif=exif.tobytes())


def png_header_only(width: int, height: int) -> bytes:
    """The start of a PNG declaring `width` x `height` (a decompression bomb's header), with one empty IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
