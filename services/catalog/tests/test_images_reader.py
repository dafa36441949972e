"""Reading generation metadata from image files: PNG text chunks of each kind, JPEG/WebP EXIF, hostile bytes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelhub.catalog.images import (
    MetadataSource,
    parse_a1111_parameters,
    parse_comfyui,
    read_generation_metadata,
)
from modelhub.catalog.images.embedded import MAX_TEXT_CHARS

from .image_samples import (
    A1111_PARAMETERS,
    comfyui_graph,
    comfyui_webp,
    comfyui_workflow,
    encode,
    picture,
    png,
    png_with_raw_text,
    with_user_comment,
)

EXPECTED_A1111 = parse_a1111_parameters(A1111_PARAMETERS)


@pytest.mark.parametrize("compressed", [False, True], ids=["tEXt", "zTXt"])
def test_a1111_parameters_from_a_png(compressed: bool) -> None:
    assert read_generation_metadata(png({"parameters": A1111_PARAMETERS}, compressed=compressed)) == EXPECTED_A1111


@pytest.mark.parametrize("compressed", [False, True], ids=["iTXt", "compressed iTXt"])
def test_text_beyond_latin1_is_read_from_itxt(compressed: bool) -> None:
    text = "一只猫, café, 🐈\nNegative prompt: ぼやけた\nSteps: 20, Sampler: Euler, Seed: 1"
    meta = read_generation_metadata(png({"parameters": text}, compressed=compressed))
    assert meta is not None
    assert (meta.prompt, meta.negative_prompt) == ("一只猫, café, 🐈", "ぼやけた")


def test_utf8_written_into_a_latin1_text_chunk_is_read_as_utf8() -> None:
    text = "café, 一只猫\nSteps: 20, Sampler: Euler"
    meta = read_generation_metadata(png_with_raw_text("parameters", text.encode("utf-8")))
    assert meta is not None
    assert meta.prompt == "café, 一只猫"


def test_latin1_text_stays_latin1() -> None:
    meta = read_generation_metadata(
        png_with_raw_text("parameters", "café\nSteps: 20, Sampler: Euler".encode("latin-1"))
    )
    assert meta is not None
    assert meta.prompt == "café"


def test_comfyui_prompt_and_workflow_from_a_png() -> None:
    prompt_json, workflow_json = json.dumps(comfyui_graph()), json.dumps(comfyui_workflow())
    meta = read_generation_metadata(png({"prompt": prompt_json, "workflow": workflow_json}))
    assert meta == parse_comfyui(prompt_json, workflow_json)
    assert meta is not None
    assert meta.source is MetadataSource.COMFYUI
    assert meta.steps == 30
    assert meta.comfyui_workflow == workflow_json


def test_a_png_with_both_takes_fields_from_the_parameters_and_keeps_the_workflow() -> None:
    prompt_json, workflow_json = json.dumps(comfyui_graph()), json.dumps(comfyui_workflow())
    meta = read_generation_metadata(
        png({"parameters": A1111_PARAMETERS, "prompt": prompt_json, "workflow": workflow_json})
    )
    assert meta is not None
    assert meta.source is MetadataSource.A1111
    assert meta.steps == 28
    assert (meta.comfyui_prompt, meta.comfyui_workflow) == (prompt_json, workflow_json)


def test_a_png_whose_parameters_are_not_a1111_falls_back_to_comfyui() -> None:
    prompt_json = json.dumps(comfyui_graph())
    meta = read_generation_metadata(png({"parameters": "just words", "prompt": prompt_json}))
    assert meta is not None
    assert (meta.source, meta.steps) == (MetadataSource.COMFYUI, 30)


@pytest.mark.parametrize(
    ("image_format", "encoding"),
    [("JPEG", "utf-16-be"), ("JPEG", "utf-16-le"), ("WEBP", "utf-16-be"), ("JPEG", "utf-16")],
)
def test_a1111_parameters_from_exif_user_comment(image_format: str, encoding: str) -> None:
    assert read_generation_metadata(with_user_comment(A1111_PARAMETERS, image_format, encoding=encoding)) == (
        EXPECTED_A1111
    )


def test_comfyui_graph_from_webp_exif() -> None:
    meta = read_generation_metadata(comfyui_webp(comfyui_graph(), comfyui_workflow()))
    assert meta is not None
    assert (meta.source, meta.steps, meta.seed) == (MetadataSource.COMFYUI, 30, 156680208700286)
    assert meta.comfyui_workflow == json.dumps(comfyui_workflow())


def test_a1111_parameters_from_a_jpeg_comment() -> None:
    data = encode(picture(size=(32, 24)), "JPEG", comment=A1111_PARAMETERS.encode("utf-8"))
    assert read_generation_metadata(data) == EXPECTED_A1111


@pytest.mark.parametrize(
    "data",
    [
        png(),  # no text chunks
        png({"Software": "an editor", "Comment": "hello"}),  # text, but not generation metadata
        encode(picture(size=(32, 24)), "JPEG"),
        encode(picture(size=(32, 24)), "GIF"),  # not a format that carries generation metadata
        b"",
        b"not an image at all",
        b"\x89PNG\r\n\x1a\n" + b"\0" * 40,  # a PNG signature and garbage
        png({"parameters": "x" * 2_000_000}, compressed=True),  # inflates past Pillow's limit (a zip bomb)
    ],
    ids=["png", "other text", "jpeg", "gif", "empty", "text", "garbage png", "zip bomb"],
)
def test_files_without_readable_metadata_give_none(data: bytes) -> None:
    assert read_generation_metadata(data) is None


def test_text_over_the_limit_is_not_read() -> None:
    prompt_json = json.dumps(comfyui_graph())
    workflow_json = json.dumps({"pad": "x" * MAX_TEXT_CHARS})
    meta = read_generation_metadata(png({"prompt": prompt_json, "workflow": workflow_json}))
    assert meta is not None
    assert (meta.steps, meta.comfyui_prompt, meta.comfyui_workflow) == (30, prompt_json, None)


def test_a_truncated_png_still_gives_the_metadata_before_its_pixels() -> None:
    data = png({"parameters": A1111_PARAMETERS})
    assert read_generation_metadata(data[: len(data) - 40]) == EXPECTED_A1111


@given(st.binary(max_size=300))
def test_any_bytes_give_metadata_or_none(data: bytes) -> None:
    read_generation_metadata(data)


@given(st.data())
def test_any_damage_to_a_png_gives_metadata_or_none(data: st.DataObject) -> None:
    original = bytearray(png({"parameters": A1111_PARAMETERS, "prompt": json.dumps(comfyui_graph())}, compressed=True))
    for _ in range(data.draw(st.integers(1, 8))):
        original[data.draw(st.integers(0, len(original) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(original)))
    read_generation_metadata(bytes(original[:cut]))
