"""ComfyUI generation metadata: the `prompt` chunk (the API-format graph that ran) and the `workflow` chunk (the
editor's graph, kept as found so people can load it again; it is not interpreted).

The API graph maps node ids to `{"class_type": ..., "inputs": {...}}`; an input is a literal or a link
`[node_id, output_slot]`. From the sampler (KSampler / KSamplerAdvanced) the parser follows links: `model` back
through LoRA loaders to the checkpoint, `positive` / `negative` back through conditioning nodes to the
CLIPTextEncode texts, `latent_image` back to the empty latent's size. CLIPSetLastLayer gives clip skip.
ComfyUI files carry file names, not hashes: resources have names only (the catalog matches names where it can).

Bounded work on hostile graphs: JSON over `MAX_RAW_JSON_CHARS` is not read, graphs over `MAX_NODES` nodes are
not walked, every walk visits a node at most once (so cycles end) and stops `MAX_LINK_DEPTH` links away, and
all walks together stop after `MAX_WALK_STEPS` inputs (what they found so far is kept).
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from modelhub.catalog.images import generation as g
from modelhub.catalog.images import values as v
from modelhub.catalog.images.generation import GenerationMetadata, MetadataSource, Resource, ResourceKind

MAX_NODES = 5_000
MAX_LINK_DEPTH = 64
# Inputs looked at over all the walks of one graph. A real graph needs a few hundred; a hostile one (thousands
# of samplers all reaching one node with thousands of inputs) would need hundreds of millions without a cap.
MAX_WALK_STEPS = 100_000

SAMPLERS = frozenset({"KSampler", "KSamplerAdvanced"})
TEXT_ENCODERS = frozenset({"CLIPTextEncode"})
# class_type -> the input naming the file. "LoraLoader|pysssss" and similar variants match by the part before "|".
CHECKPOINT_LOADERS = {
    "CheckpointLoaderSimple": "ckpt_name",
    "CheckpointLoader": "ckpt_name",
    "ImageOnlyCheckpointLoader": "ckpt_name",
    "UNETLoader": "unet_name",
}
LORA_LOADERS = frozenset({"LoraLoader", "LoraLoaderModelOnly"})
_EMBEDDING = re.compile(r"embedding:([^\s,()<>\[\]{}:]{1,256})")
# Literal inputs worth reading when a value links to a helper node (a string or number "primitive").
_LITERAL_INPUTS = ("text", "string", "value", "seed", "noise_seed", "int", "float", "number")


@dataclass(frozen=True)
class _Node:
    class_type: str
    inputs: dict[str, Any]

    @property
    def base_type(self) -> str:
        return self.class_type.split("|", 1)[0]


def parse_comfyui(prompt_json: str | None, workflow_json: str | None) -> GenerationMetadata | None:
    """Read ComfyUI's `prompt` (API graph) and `workflow` (editor graph) texts; None when neither is a JSON object.

    Never raises for any input text. A readable workflow without a readable prompt still gives metadata (with
    only `comfyui_workflow` set), so the workflow is not lost.
    """
    raw_graph = _json_object(prompt_json)
    workflow = workflow_json if _json_object(workflow_json) is not None else None
    if raw_graph is None and workflow is None:
        return None
    graph = _graph(raw_graph) if raw_graph is not None else {}
    fields = _Walk(graph).metadata_fields() if graph else {}
    return GenerationMetadata(
        **fields,
        source=MetadataSource.COMFYUI,
        comfyui_prompt=prompt_json if raw_graph is not None else None,
        comfyui_workflow=workflow,
    )


def _json_object(text: str | None) -> dict[str, Any] | None:
    if text is None or len(text) > g.MAX_RAW_JSON_CHARS:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None
    return value if isinstance(value, dict) else None


def _graph(raw: dict[str, Any]) -> dict[str, _Node]:
    """The well-formed nodes of an API graph; an empty graph when it has more than `MAX_NODES` entries."""
    if len(raw) > MAX_NODES:
        return {}
    nodes: dict[str, _Node] = {}
    for node_id, node in raw.items():
        if isinstance(node, dict) and isinstance(node.get("class_type"), str) and isinstance(node.get("inputs"), dict):
            nodes[str(node_id)] = _Node(node["class_type"], node["inputs"])
    return nodes


def _link(value: object) -> str | None:
    """The node id a `[node_id, slot]` input links to, else None."""
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
    ):
        return str(value[0])
    return None


def _id_order(node_id: str) -> tuple[int, int | str]:
    """Sort node ids numerically when they are numbers ("9" before "10"), else as text after them."""
    return (0, int(node_id)) if node_id.isdigit() and len(node_id) < 19 else (1, node_id)


class _Walk:
    """Reads one graph. Each walk keeps a visited set and a depth limit, so cycles and long chains end; all
    walks share one budget of steps, so many walks over a large graph end too."""

    def __init__(self, graph: dict[str, _Node]) -> None:
        self.graph = graph
        self.ordered = sorted(graph, key=_id_order)
        self.steps = 0

    def of_type(self, types: frozenset[str] | dict[str, str]) -> Iterator[tuple[str, _Node]]:
        for node_id in self.ordered:
            node = self.graph[node_id]
            if node.base_type in types:
                yield node_id, node

    def upstream(
        self, start: object, follow: tuple[str, ...], stop: frozenset[str] = frozenset()
    ) -> Iterator[tuple[str, _Node]]:
        """Nodes reached from the link `start`, breadth first, through inputs whose name starts with one of
        `follow` (the first that a node has: a ControlNet node's `positive` is followed, not its `negative`).
        Nodes of a `stop` type are reached but not gone through."""
        first = _link(start)
        if first is None:
            return
        queue = deque([(first, 0)])
        seen: set[str] = set()
        while queue and self.steps < MAX_WALK_STEPS:
            node_id, depth = queue.popleft()
            self.steps += 1
            node = self.graph.get(node_id)
            if node_id in seen or node is None or depth > MAX_LINK_DEPTH:
                continue
            seen.add(node_id)
            yield node_id, node
            if node.base_type in stop:
                continue
            self.steps += len(node.inputs)
            for prefix in follow:
                links = [_link(value) for name, value in node.inputs.items() if name.startswith(prefix)]
                if any(links):
                    queue.extend((link, depth + 1) for link in links if link is not None)
                    break

    def literal(self, value: object) -> object:
        """A literal input, following links to helper nodes (a seed or text node) until one gives a literal."""
        seen: set[str] = set()
        for _ in range(MAX_LINK_DEPTH):
            node_id = _link(value)
            if node_id is None:
                return value
            node = self.graph.get(node_id)
            if node is None or node_id in seen:
                return None
            seen.add(node_id)
            value = next((node.inputs[k] for k in _LITERAL_INPUTS if k in node.inputs), None)
        return None

    def primary_sampler(self) -> _Node | None:
        """The sampler that starts from an empty latent (the first pass of a hires-fix graph), else the first."""
        samplers = [node for _, node in self.of_type(SAMPLERS)]
        for sampler in samplers:
            if self.empty_latent(sampler) is not None:
                return sampler
        return samplers[0] if samplers else None

    def empty_latent(self, sampler: _Node) -> _Node | None:
        """The empty latent a sampler starts from, unless another sampler's output comes first (a later pass)."""
        for _, node in self.upstream(sampler.inputs.get("latent_image"), ("samples", "latent"), stop=SAMPLERS):
            if _is_empty_latent(node):
                return node
        return None

    def texts(self, sampler: _Node, polarity: str) -> str | None:
        found = [
            text
            for _, node in self.upstream(sampler.inputs.get(polarity), (polarity, "conditioning"))
            if node.base_type in TEXT_ENCODERS and (text := v.as_prompt(self.literal(node.inputs.get("text"))))
        ]
        return v.as_prompt("\n".join(found))

    def model_resources(self) -> list[Resource]:
        """Checkpoints and LoRAs on every sampler's model chain, checkpoint first, LoRAs in the order applied.
        A graph without a known sampler lists every loader node instead."""
        samplers = [node for _, node in self.of_type(SAMPLERS)]
        if samplers:
            chain: list[tuple[str, _Node]] = []
            for sampler in samplers:
                chain.extend(reversed(list(self.upstream(sampler.inputs.get("model"), ("model",)))))
        else:
            chain = list(self.of_type(CHECKPOINT_LOADERS | dict.fromkeys(LORA_LOADERS, "")))
        resources: list[Resource] = []
        for _, node in chain:
            if node.base_type in CHECKPOINT_LOADERS:
                name = v.as_name(self.literal(node.inputs.get(CHECKPOINT_LOADERS[node.base_type])))
                if name:
                    resources.append(Resource(ResourceKind.CHECKPOINT, name))
            elif node.base_type in LORA_LOADERS:
                name = v.as_name(self.literal(node.inputs.get("lora_name")))
                if name:
                    weight = v.as_weight(self.literal(node.inputs.get("strength_model")))
                    resources.append(Resource(ResourceKind.LORA, name, weight))
        return resources

    def metadata_fields(self) -> dict[str, Any]:
        sampler = self.primary_sampler()
        fields: dict[str, Any] = {}
        resources = self.model_resources()
        for _, node in self.of_type(frozenset({"VAELoader"})):
            if name := v.as_name(self.literal(node.inputs.get("vae_name"))):
                resources.append(Resource(ResourceKind.VAE, name))
        for _, node in self.of_type(frozenset({"CLIPSetLastLayer"})):
            layer = v.as_int(self.literal(node.inputs.get("stop_at_clip_layer")), -g.MAX_CLIP_SKIP, -1)
            if layer is not None:
                fields["clip_skip"] = -layer
                break
        latent = self.empty_latent(sampler) if sampler else None
        latent = latent or next((node for node in self.graph.values() if _is_empty_latent(node)), None)
        if latent is not None:
            fields["width"] = v.as_int(self.literal(latent.inputs.get("width")), 1, g.MAX_SIDE)
            fields["height"] = v.as_int(self.literal(latent.inputs.get("height")), 1, g.MAX_SIDE)
        if sampler is not None:
            inputs = sampler.inputs
            seed = inputs.get("seed", inputs.get("noise_seed"))
            fields["seed"] = v.as_int(self.literal(seed), 0, g.MAX_SEED)
            fields["steps"] = v.as_int(self.literal(inputs.get("steps")), 1, g.MAX_STEPS)
            fields["cfg_scale"] = v.as_float(self.literal(inputs.get("cfg")), 0, g.MAX_CFG_SCALE)
            fields["sampler"] = v.as_name(self.literal(inputs.get("sampler_name")))
            fields["scheduler"] = v.as_name(self.literal(inputs.get("scheduler")))
            fields["denoising_strength"] = v.as_float(self.literal(inputs.get("denoise")), 0, 1)
            fields["prompt"] = self.texts(sampler, "positive")
            fields["negative_prompt"] = self.texts(sampler, "negative")
        resources.extend(_embeddings(fields.get("prompt"), fields.get("negative_prompt")))
        fields["resources"] = _unique(resources)[: g.MAX_RESOURCES]
        return fields


def _is_empty_latent(node: _Node) -> bool:
    """EmptyLatentImage and its model-specific siblings (EmptySD3LatentImage, EmptyHunyuanLatentVideo, ...)."""
    return node.base_type.startswith("Empty") and "Latent" in node.base_type


def _embeddings(*texts: str | None) -> Iterator[Resource]:
    """`embedding:name` mentions in the prompts (ComfyUI's textual-inversion syntax)."""
    for text in texts:
        for match in _EMBEDDING.finditer(text or ""):
            yield Resource(ResourceKind.EMBEDDING, match.group(1))


def _unique(resources: list[Resource]) -> list[Resource]:
    """The first resource of each (kind, name): a LoRA on two samplers' chains is one resource."""
    seen: set[tuple[ResourceKind, str]] = set()
    unique: list[Resource] = []
    for resource in resources:
        if (resource.kind, resource.name) not in seen:
            seen.add((resource.kind, resource.name))
            unique.append(resource)
    return unique
