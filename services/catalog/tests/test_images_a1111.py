"""A1111 / Forge parameters text: every field, the odd shapes real files have, hostile text, and a round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelhub.catalog.images import (
    GenerationMetadata,
    HashKind,
    MetadataSource,
    Resource,
    ResourceKind,
    classify_hash,
    format_a1111_parameters,
    parse_a1111_parameters,
)
from modelhub.catalog.images.a1111 import MAX_PARAMETERS_CHARS

from .image_samples import A1111_PARAMETERS

LORA, LYCORIS, EMBEDDING = ResourceKind.LORA, ResourceKind.LYCORIS, ResourceKind.EMBEDDING


def parse(text: str) -> GenerationMetadata:
    meta = parse_a1111_parameters(text)
    assert meta is not None
    return meta


def test_every_field_of_a_realistic_file() -> None:
    meta = parse(A1111_PARAMETERS)

    assert meta.source is MetadataSource.A1111
    assert meta.prompt == (
        "masterpiece, best quality, portrait of a knight, <lora:add_detail:0.6>, (city lights:1.2),\n"
        "night sky, <lora:FlatStyle:-0.5> <lora:GlowingEyes>"
    )
    assert meta.negative_prompt == "(worst quality:1.4), lowres,\nbad hands, easynegative"
    assert meta.steps == 28
    assert meta.sampler == "DPM++ 2M"
    assert meta.scheduler == "Karras"
    assert meta.cfg_scale == 6.5
    assert meta.seed == 3861521436
    assert (meta.width, meta.height) == (512, 768)
    assert meta.denoising_strength == 0.45
    assert meta.clip_skip == 2
    assert meta.resources == (
        Resource(ResourceKind.CHECKPOINT, "dreamshaper_8", None, "6CE0161689", HashKind.AUTOV2),
        Resource(ResourceKind.VAE, "vae-ft-mse-840000-ema-pruned.safetensors", None, "735E4C3A44", HashKind.AUTOV2),
        Resource(LORA, "add_detail", 0.6, "7C6BAD76EB54", HashKind.AUTOV3),
        Resource(LORA, "FlatStyle", -0.5, "0123456789AB", HashKind.AUTOV3),
        Resource(LORA, "GlowingEyes", 1.0, "1A2B3C4D5E6F", HashKind.AUTOV3),  # a tag without a weight means 1
        # TI hashes give a 12-hex prefix, Civitai's Hashes an AutoV2: the AutoV2 is kept (the catalog has it).
        Resource(EMBEDDING, "easynegative", None, "C74B4E810B", HashKind.AUTOV2),
    )
    assert meta.checkpoint == meta.resources[0]
    assert meta.extra == {
        "ADetailer prompt": "face, detailed eyes: sharp",
        "Hires upscale": "2",
        "Hires upscaler": "4x-UltraSharp",
        "Version": "v1.10.1",
    }
    assert meta.comfyui_prompt is None
    assert meta.comfyui_workflow is None


def test_no_negative_prompt_and_a_one_line_prompt() -> None:
    meta = parse("a red fox in snow\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512")
    assert meta.prompt == "a red fox in snow"
    assert meta.negative_prompt is None
    assert (meta.steps, meta.sampler, meta.cfg_scale, meta.seed) == (20, "Euler a", 7.0, 1)
    assert meta.resources == ()


def test_no_prompt_at_all() -> None:
    meta = parse("Negative prompt: ugly\nSteps: 20, Sampler: Euler, Seed: 7")
    assert (meta.prompt, meta.negative_prompt, meta.seed) == (None, "ugly", 7)


def test_windows_line_ends_and_a_negative_prompt_over_several_lines() -> None:
    meta = parse("line one\r\nline two\r\nNegative prompt: bad\r\nworse\r\nSteps: 5, Sampler: Euler, Seed: 3")
    assert meta.prompt == "line one\nline two"
    assert meta.negative_prompt == "bad\nworse"


def test_quoted_values_keep_commas_colons_quotes_and_line_breaks() -> None:
    meta = parse(
        'cat\nSteps: 20, Seed: 5, Hires prompt: "a, b: \\"c\\"\\nd", Wildcard: "x,y", '
        'Broken quote: "never closed, Version: f2.0'
    )
    assert meta.extra == {
        "Hires prompt": 'a, b: "c"\nd',
        "Wildcard": "x,y",
        "Broken quote": '"never closed',
        "Version": "f2.0",
    }


def test_values_that_do_not_fit_their_field_are_kept_as_text() -> None:
    meta = parse(
        "cat\nSteps: lots, Sampler: Euler, CFG scale: 1e999, Seed: -1, Size: 512 by 512, Clip skip: 0, "
        "Denoising strength: 1.5, Model hash: not-a-hash, Model: sd15"
    )
    assert (meta.steps, meta.cfg_scale, meta.seed, meta.width, meta.clip_skip, meta.denoising_strength) == (
        None,
        None,
        None,
        None,
        None,
        None,
    )
    assert meta.extra == {
        "Steps": "lots",
        "CFG scale": "1e999",
        "Seed": "-1",
        "Size": "512 by 512",
        "Clip skip": "0",
        "Denoising strength": "1.5",
        "Model hash": "not-a-hash",
    }
    assert meta.resources == (Resource(ResourceKind.CHECKPOINT, "sd15"),)


def test_an_old_8_hex_model_hash_is_autov1_and_a_hash_needs_no_name() -> None:
    meta = parse("cat\nSteps: 20, Sampler: Euler, Model hash: 7460a6fa")
    assert meta.resources == (Resource(ResourceKind.CHECKPOINT, "", None, "7460A6FA", HashKind.AUTOV1),)


def test_lora_tags_join_lora_hashes_by_name() -> None:
    meta = parse(
        "a <lora:Detail:0.5> b <lyco:soft_light:te=0.7:unet=0.9> <hypernet:anime:0.3> <lora:Detail:0.9>"
        " <lora:odd:heavy>\n"
        'Steps: 20, Sampler: Euler, Lora hashes: "detail: aaaaaaaaaaaa, soft_light: bbbbbbbbbbbb, '
        'unused: cccccccccccc"'
    )
    assert meta.resources == (
        # joined case-insensitively; a repeated tag counts once, with its first weight
        Resource(LORA, "Detail", 0.5, "AAAAAAAAAAAA", HashKind.AUTOV3),
        Resource(LYCORIS, "soft_light", 0.7, "BBBBBBBBBBBB", HashKind.AUTOV3),  # the text-encoder weight
        Resource(LORA, "odd", None),  # a weight that is not a number is unknown
        Resource(LORA, "unused", None, "CCCCCCCCCCCC", HashKind.AUTOV3),  # a hash without a tag
        Resource(ResourceKind.OTHER, "anime", 0.3),
    )


def test_unreadable_hash_lists_are_kept_as_text() -> None:
    meta = parse('cat\nSteps: 20, Sampler: Euler, Lora hashes: "good: aaaaaaaaaaaa, bad: zz, worse"')
    assert meta.resources == (Resource(LORA, "good", None, "AAAAAAAAAAAA", HashKind.AUTOV3),)
    assert meta.extra == {"Lora hashes": "good: aaaaaaaaaaaa, bad: zz, worse"}


def test_civitai_extension_hashes_fill_what_is_missing() -> None:
    meta = parse(
        "cat <lora:style:0.8>\n"
        'Steps: 20, Sampler: Euler, Hashes: {"model": "1111111111", "vae": "2222222222", '
        '"lora:style": "3333333333", "embed:bad_hands": "4444444444", "weird": "5555555555", "lora:x": 7}, '
        'Civitai resources: [{"type": "checkpoint", "modelVersionId": 128713}], Version: v1.9.4'
    )
    assert meta.resources == (
        Resource(ResourceKind.CHECKPOINT, "", None, "1111111111", HashKind.AUTOV2),
        Resource(ResourceKind.VAE, "", None, "2222222222", HashKind.AUTOV2),
        Resource(LORA, "style", 0.8, "3333333333", HashKind.AUTOV2),
        Resource(EMBEDDING, "bad_hands", None, "4444444444", HashKind.AUTOV2),
    )
    assert meta.extra == {
        "Civitai resources": '[{"type": "checkpoint", "modelVersionId": 128713}]',
        "Version": "v1.9.4",
    }


def test_lines_after_the_settings_line_are_kept() -> None:
    meta = parse(
        "a {red|blue} cat\nSteps: 20, Sampler: Euler, Seed: 9\nTemplate: a {red|blue}\ncat\nNegative Template: ugly"
    )
    assert meta.prompt == "a {red|blue} cat"
    assert meta.seed == 9
    assert meta.extra == {"Template": "a {red|blue}\ncat", "Negative Template": "ugly"}


def test_a_settings_line_without_steps_counts_when_it_has_three_pairs() -> None:
    meta = parse("cat\nSampler: Euler, CFG scale: 7, Seed: 3")
    assert (meta.prompt, meta.sampler, meta.cfg_scale, meta.seed) == ("cat", "Euler", 7.0, 3)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "just a prompt, no settings",
        "a prompt\nNegative prompt: and a negative one",
        "cat\nSampler: Euler, Seed: 3",  # two pairs and no Steps: not a settings line
        "x" * (MAX_PARAMETERS_CHARS + 1),
    ],
)
def test_text_that_is_not_a1111_parameters_gives_none(text: str) -> None:
    assert parse_a1111_parameters(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "Steps: 1, " + " " * 150_000,
        "Steps: 1, " + "key" * 50_000,
        "Steps: 1, " + '"' * 150_000,
        "Steps: 1, " + "a: " * 50_000,
        "Steps: 1, " + ", " * 75_000,
        "Steps: 1, " + 'k: "\\' * 35_000,
        "Steps: 1, Hashes: " + "{" * 150_000,
        "Steps: 1, Hashes: " + "[" * 150_000,
        "<lora:" * 30_000 + "\nSteps: 1",
        "<lora:x" + ":1" * 60_000 + ">\nSteps: 1",
        "\n" * 150_000 + "Steps: 1",
        'cat\nSteps: 20, Lora hashes: "' + "a: b, " * 30_000 + '"',
    ],
    ids=lambda text: repr(text[:24]),
)
def test_hostile_text_is_parsed_in_linear_time_without_error(text: str) -> None:
    # Quadratic backtracking on these would take minutes (the suite's timeout), not milliseconds.
    meta = parse_a1111_parameters(text)
    assert meta is None or meta.source is MetadataSource.A1111


@given(st.text(max_size=400))
def test_any_text_parses_or_gives_none(text: str) -> None:
    meta = parse_a1111_parameters(text)
    assert meta is None or isinstance(meta, GenerationMetadata)


@given(st.lists(st.sampled_from(["Steps: 3", ", ", ": ", '"', "\\", "\n", "<lora:a:1>", "Negative prompt:", "x"])))
def test_any_mix_of_the_formats_punctuation_parses_or_gives_none(parts: list[str]) -> None:
    meta = parse_a1111_parameters("".join(parts))
    assert meta is None or isinstance(meta, GenerationMetadata)


# --- writing the format, and reading it back ---

_line_chars = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85")
_text = st.text(_line_chars, min_size=1, max_size=30).map(str.strip).filter(bool)
_lines = st.lists(_text.filter(lambda line: not line.startswith("Negative prompt:")), min_size=1, max_size=3)
_tag_name = st.text("abcdefXYZ_-. 0189", min_size=1, max_size=12).map(str.strip).filter(bool)
_hash = st.sampled_from([8, 10, 12, 64]).flatmap(lambda n: st.text("0123456789ABCDEF", min_size=n, max_size=n))
_weight = st.floats(-5, 5, allow_nan=False)
_known_keys = {"Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash", "Model", "VAE hash"}
_known_keys |= {"VAE", "Denoising strength", "Clip skip", "Lora hashes", "TI hashes", "Hashes", "Civitai resources"}
_extra_key = st.text("abcdefghij ABC-_/0123", min_size=1, max_size=16).map(str.strip).filter(bool)


@st.composite
def a1111_metadata(draw: st.DrawFn) -> GenerationMetadata:
    """Metadata A1111 can express: every LoRA appears as a tag in the prompt, hashed names are tag-safe."""
    names = draw(st.lists(_tag_name, max_size=4, unique_by=str.casefold))
    loras = [(name, draw(_weight), draw(st.none() | _hash)) for name in names]
    prompt = "\n".join(draw(_lines)).replace("<", "(") + "".join(f" <lora:{n}:{w!r}>" for n, w, _ in loras)
    embeddings = draw(st.lists(st.tuples(_tag_name, _hash), max_size=2, unique_by=lambda e: e[0].casefold()))
    resources = []
    for kind in (ResourceKind.CHECKPOINT, ResourceKind.VAE):
        name, raw_hash = draw(st.one_of(st.none(), st.tuples(_text, st.none() | _hash)) | st.none()) or (None, None)
        if name is not None:
            resources.append(_resource(kind, name, None, raw_hash))
    resources += [_resource(LORA, name, weight, raw_hash) for name, weight, raw_hash in loras]
    resources += [_resource(EMBEDDING, name, None, raw_hash) for name, raw_hash in embeddings]
    size = draw(st.none() | st.tuples(st.integers(1, 65_535), st.integers(1, 65_535)))
    return GenerationMetadata(
        prompt=prompt.strip(),
        negative_prompt=draw(st.none() | _lines.map("\n".join)),
        sampler=draw(st.none() | _text),
        scheduler=draw(st.none() | _text),
        cfg_scale=draw(st.none() | st.floats(0, 100, allow_nan=False)),
        steps=draw(st.integers(1, 10_000)),
        seed=draw(st.none() | st.integers(0, 2**64 - 1)),
        clip_skip=draw(st.none() | st.integers(1, 24)),
        width=size[0] if size else None,
        height=size[1] if size else None,
        denoising_strength=draw(st.none() | st.floats(0, 1, allow_nan=False)),
        resources=tuple(resources),
        extra=draw(st.dictionaries(_extra_key.filter(lambda k: k not in _known_keys), _text, max_size=4)),
        source=MetadataSource.A1111,
    )


def _resource(kind: ResourceKind, name: str, weight: float | None, raw_hash: str | None) -> Resource:
    hashed = classify_hash(raw_hash) if raw_hash else None
    return Resource(kind, name, weight, hashed[0] if hashed else None, hashed[1] if hashed else None)


@given(a1111_metadata())
def test_written_parameters_read_back_equal(meta: GenerationMetadata) -> None:
    assert parse_a1111_parameters(format_a1111_parameters(meta)) == meta


def test_the_realistic_file_survives_a_round_trip() -> None:
    meta = parse(A1111_PARAMETERS)
    assert parse(format_a1111_parameters(meta)) == meta
