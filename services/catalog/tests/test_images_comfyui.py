"""ComfyUI graphs: every field of a realistic graph, the shapes real graphs take, and hostile graphs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelhub.catalog.images import GenerationMetadata, MetadataSource, Resource, ResourceKind, comfyui, parse_comfyui
from modelhub.catalog.images.comfyui import MAX_LINK_DEPTH, MAX_NODES, MAX_WALK_STEPS
from modelhub.catalog.images.generation import MAX_RAW_JSON_CHARS

from .image_samples import comfyui_graph, comfyui_workflow


def parse(graph: dict[str, Any], workflow: dict[str, Any] | None = None) -> GenerationMetadata:
    meta = parse_comfyui(json.dumps(graph), json.dumps(workflow) if workflow is not None else None)
    assert meta is not None
    return meta


def test_every_field_of_a_realistic_graph() -> None:
    prompt_json, workflow_json = json.dumps(comfyui_graph()), json.dumps(comfyui_workflow())

    meta = parse_comfyui(prompt_json, workflow_json)

    assert meta is not None
    assert meta.source is MetadataSource.COMFYUI
    assert meta.prompt == "pixel art, a lighthouse at dusk, embedding:goodPixels"
    assert meta.negative_prompt == "blurry, watermark"
    assert meta.seed == 156680208700286
    assert meta.steps == 30
    assert meta.cfg_scale == 5.5
    assert meta.sampler == "dpmpp_2m_sde"
    assert meta.scheduler == "karras"
    assert meta.denoising_strength == 1.0
    assert meta.clip_skip == 2
    assert (meta.width, meta.height) == (1024, 768)
    # Names only: ComfyUI files carry no hashes. LoRAs in the order they are applied; weight = strength_model.
    assert meta.resources == (
        Resource(ResourceKind.CHECKPOINT, "SDXL/juggernautXL_v9.safetensors"),
        Resource(ResourceKind.LORA, "add-detail-xl.safetensors", 0.8),
        Resource(ResourceKind.LORA, "styles/pixel-art-xl.safetensors", 1.2),
        Resource(ResourceKind.EMBEDDING, "goodPixels"),
    )
    assert meta.extra == {}
    # The JSON is kept exactly as found, so the gallery can store it and people can load the workflow again.
    assert meta.comfyui_prompt == prompt_json
    assert meta.comfyui_workflow == workflow_json


def test_conditioning_and_values_reached_through_other_nodes() -> None:
    graph = comfyui_graph()
    # positive: ControlNet (which also carries the negative) <- ConditioningCombine <- two text encoders
    graph["20"] = {
        "class_type": "ControlNetApplyAdvanced",
        "inputs": {"positive": ["21", 0], "negative": ["7", 0], "control_net": ["22", 0], "strength": 0.7},
    }
    graph["21"] = {
        "class_type": "ConditioningCombine",
        "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["23", 0]},
    }
    graph["23"] = {"class_type": "CLIPTextEncode", "inputs": {"text": ["24", 0], "clip": ["12", 0]}}
    graph["24"] = {"class_type": "PrimitiveString", "inputs": {"value": "golden hour"}}
    graph["25"] = {"class_type": "Seed (rgthree)", "inputs": {"seed": 77}}
    graph["3"]["inputs"] |= {"positive": ["20", 0], "negative": ["20", 1], "seed": ["25", 0]}
    # model: the sampler's model passes through a patch node on its way to the LoRAs
    graph["26"] = {"class_type": "FreeU_V2", "inputs": {"model": ["11", 0], "b1": 1.3}}
    graph["3"]["inputs"]["model"] = ["26", 0]

    meta = parse(graph)

    assert meta.prompt == "pixel art, a lighthouse at dusk, embedding:goodPixels\ngolden hour"
    assert meta.negative_prompt == "blurry, watermark"
    assert meta.seed == 77
    assert [r.name for r in meta.resources if r.kind is ResourceKind.LORA] == [
        "add-detail-xl.safetensors",
        "styles/pixel-art-xl.safetensors",
    ]


def test_a_hires_fix_graph_reports_the_first_pass() -> None:
    graph = comfyui_graph()
    graph["13"] = {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["3", 0], "scale_by": 1.5}}
    graph["2"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "noise_seed": 5,
            "steps": 12,
            "cfg": 4.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "model": ["11", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["13", 0],
        },
    }
    meta = parse(graph)
    assert (meta.steps, meta.seed, meta.sampler, meta.width) == (30, 156680208700286, "dpmpp_2m_sde", 1024)


def test_ksampler_advanced_with_a_noise_seed_and_no_denoise() -> None:
    graph = comfyui_graph()
    inputs = graph["3"]["inputs"]
    graph["3"] = {"class_type": "KSamplerAdvanced", "inputs": inputs | {"noise_seed": inputs.pop("seed")}}
    del graph["3"]["inputs"]["denoise"]
    meta = parse(graph)
    assert (meta.seed, meta.steps, meta.denoising_strength) == (156680208700286, 30, None)


def test_a_graph_without_a_known_sampler_lists_its_loaders() -> None:
    graph = comfyui_graph()
    graph["3"]["class_type"] = "SamplerCustomAdvanced"
    meta = parse(graph)
    assert (meta.prompt, meta.steps) == (None, None)
    assert meta.clip_skip == 2
    assert (meta.width, meta.height) == (1024, 768)
    # in node id order, read as numbers: "4" before "10"
    assert [r.kind for r in meta.resources] == [ResourceKind.CHECKPOINT, ResourceKind.LORA, ResourceKind.LORA]
    assert meta.resources[0].name == "SDXL/juggernautXL_v9.safetensors"


def test_a_vae_loader_and_a_model_only_lora() -> None:
    graph = comfyui_graph()
    graph["14"] = {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}}
    graph["11"] = {
        "class_type": "LoraLoaderModelOnly",
        "inputs": {"lora_name": "turbo.safetensors", "strength_model": 1, "model": ["10", 0]},
    }
    graph["12"]["inputs"]["clip"] = ["10", 1]
    meta = parse(graph)
    assert Resource(ResourceKind.LORA, "turbo.safetensors", 1.0) in meta.resources
    assert Resource(ResourceKind.VAE, "sdxl_vae.safetensors") in meta.resources


def test_values_that_do_not_fit_are_left_out() -> None:
    graph = comfyui_graph()
    graph["3"]["inputs"] |= {"seed": -1, "steps": "many", "cfg": True, "denoise": 2.0, "sampler_name": ["99", 0]}
    graph["10"]["inputs"]["strength_model"] = 1e308 * 10  # json.dumps writes Infinity
    graph["5"]["inputs"]["width"] = 10**30
    meta = parse(graph)
    assert (meta.seed, meta.steps, meta.cfg_scale, meta.denoising_strength, meta.sampler) == (None,) * 5
    assert meta.width is None
    assert meta.resources[1] == Resource(ResourceKind.LORA, "add-detail-xl.safetensors", None)


def test_only_a_workflow_is_still_kept() -> None:
    workflow_json = json.dumps(comfyui_workflow())
    meta = parse_comfyui("{not json", workflow_json)
    assert meta is not None
    assert meta.comfyui_workflow == workflow_json
    assert meta.comfyui_prompt is None
    assert (meta.prompt, meta.resources) == (None, ())


@pytest.mark.parametrize(
    ("prompt_json", "workflow_json"),
    [
        (None, None),
        ("{not json", "[1, 2"),
        ("[1, 2, 3]", '"a string"'),  # JSON, but not objects
        ("[" * 100_000 + "]" * 100_000, None),  # nested deeper than the JSON reader's recursion
        ("{" + " " * MAX_RAW_JSON_CHARS + "}", None),  # over the size limit
    ],
)
def test_unreadable_json_gives_none(prompt_json: str | None, workflow_json: str | None) -> None:
    assert parse_comfyui(prompt_json, workflow_json) is None


def test_cycles_end() -> None:
    graph = comfyui_graph()
    graph["10"]["inputs"]["model"] = ["11", 0]  # LoRA 10 <-> LoRA 11: no checkpoint on the chain any more
    graph["6"] = {
        "class_type": "ConditioningCombine",
        "inputs": {"conditioning_1": ["30", 0], "conditioning_2": ["6", 0]},
    }
    graph["30"] = {"class_type": "ConditioningSetArea", "inputs": {"conditioning": ["6", 0]}}
    graph["24"] = {"class_type": "PrimitiveString", "inputs": {"value": ["24", 0]}}
    graph["7"]["inputs"]["text"] = ["24", 0]
    meta = parse(graph)
    assert (meta.prompt, meta.negative_prompt) == (None, None)
    assert [r.name for r in meta.resources] == ["add-detail-xl.safetensors", "styles/pixel-art-xl.safetensors"]


def test_a_chain_longer_than_the_depth_limit_is_cut() -> None:
    graph = comfyui_graph()
    previous = "4"
    for index in range(100, 100 + MAX_LINK_DEPTH + 10):
        graph[str(index)] = {"class_type": "ModelPatch", "inputs": {"model": [previous, 0]}}
        previous = str(index)
    graph["10"]["inputs"]["model"] = [previous, 0]
    meta = parse(graph)
    assert ResourceKind.CHECKPOINT not in {r.kind for r in meta.resources}
    assert meta.steps == 30


def test_links_to_missing_nodes_and_malformed_nodes_are_ignored() -> None:
    graph: dict[str, Any] = comfyui_graph()
    graph["3"]["inputs"]["positive"] = ["404", 0]
    graph["3"]["inputs"]["negative"] = [True, 0]
    graph["40"] = "not a node"
    graph["41"] = {"class_type": 5, "inputs": {}}
    graph["42"] = {"class_type": "KSampler", "inputs": []}
    meta = parse(graph)
    assert (meta.prompt, meta.negative_prompt, meta.steps) == (None, None, 30)


def test_many_walks_over_a_large_graph_share_one_budget() -> None:
    # 900 samplers all reaching one node with 55,000 inputs: ~100 million steps (a minute) without the budget.
    hub_inputs = {f"latent_{i}": [f"n{i % 3_000}", 0] for i in range(55_000)}
    graph: dict[str, Any] = {"hub": {"class_type": "LatentBatch", "inputs": hub_inputs}}
    graph |= {f"n{i}": {"class_type": "Note", "inputs": {}} for i in range(3_000)}
    sampler = {"class_type": "KSampler", "inputs": {"latent_image": ["hub", 0], "model": ["hub", 0], "steps": 3}}
    graph |= {str(i): sampler for i in range(900)}

    walk = comfyui._Walk(comfyui._graph(graph))
    fields = walk.metadata_fields()

    assert fields["steps"] == 3
    assert walk.steps <= MAX_WALK_STEPS + len(hub_inputs)  # the budget, overrun by at most one node's inputs
    assert parse_comfyui(json.dumps(graph), None) is not None


def test_a_graph_over_the_node_limit_is_not_walked() -> None:
    graph = comfyui_graph() | {str(i): {"class_type": "Note", "inputs": {}} for i in range(1_000, 1_000 + MAX_NODES)}
    meta = parse(graph)
    assert (meta.steps, meta.resources) == (None, ())
    assert meta.comfyui_prompt is not None


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=25,
)
_node_ids = st.sampled_from(["1", "2", "3", "4", "5"])
_inputs = st.dictionaries(
    st.sampled_from(["model", "positive", "negative", "latent_image", "text", "seed", "steps", "conditioning"]),
    st.one_of(st.tuples(_node_ids, st.integers(0, 2)).map(list), _json),
    max_size=6,
)
_class_types = st.sampled_from(
    [
        *("KSampler", "KSamplerAdvanced", "CLIPTextEncode", "LoraLoader", "CheckpointLoaderSimple"),
        *("EmptyLatentImage", "CLIPSetLastLayer", "ConditioningCombine", "Other"),
    ]
)


@given(st.dictionaries(_node_ids, st.fixed_dictionaries({"class_type": _class_types, "inputs": _inputs})))
def test_any_small_graph_parses(graph: dict[str, Any]) -> None:
    meta = parse_comfyui(json.dumps(graph), None)
    assert meta is not None and meta.comfyui_prompt is not None


@given(_json)
def test_any_json_parses_or_gives_none(value: object) -> None:
    text = json.dumps(value)
    meta = parse_comfyui(text, text)
    assert (meta is None) == (not isinstance(value, dict))
