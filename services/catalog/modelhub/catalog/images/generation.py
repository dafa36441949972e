"""The generation metadata of a gallery image: the prompt, the settings and the resources that made it.

Values are checked when an instance is built (whoever builds it: a file parser or a person typing it in), so a
`GenerationMetadata` that exists is within the limits below; a bad value raises `InvalidArgument` naming every
offending field. Parsers never raise for odd files: a value they cannot fit is kept as text in `extra` or
dropped, and they say which.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from modelhub.core.errors import FieldViolation, InvalidArgument

# Limits: generous for real images (long prompts, a dozen LoRAs, ADetailer/ControlNet keys in `extra`), small
# enough that one image's metadata stays a modest row and a hostile file cannot make it large.
MAX_PROMPT_CHARS = 65_536
MAX_NAME_CHARS = 512
MAX_RESOURCES = 64
MAX_EXTRA_ENTRIES = 100
MAX_EXTRA_KEY_CHARS = 128
MAX_EXTRA_VALUE_CHARS = 4_096
MAX_RAW_JSON_CHARS = 2_000_000
MAX_STEPS = 10_000
MAX_CFG_SCALE = 100.0
MAX_SEED = 2**64 - 1
MAX_CLIP_SKIP = 24
MAX_SIDE = 65_535
MAX_WEIGHT = 100.0

# An `extra` key must survive the "Key: value, Key: value" settings line, so it may not hold its separators.
EXTRA_KEY = re.compile(r'[^,:"\n\r]+')


class ResourceKind(StrEnum):
    """What a resource used for an image is."""

    CHECKPOINT = "checkpoint"
    LORA = "lora"
    LYCORIS = "lycoris"
    EMBEDDING = "embedding"
    VAE = "vae"
    OTHER = "other"


class HashKind(StrEnum):
    """Which of the catalog's file hashes a resource hash is, decided by its length (see `classify_hash`)."""

    AUTOV1 = "AutoV1"  # 8 hex: old A1111 "Model hash" (SHA256 of 64 KiB at offset 1 MiB)
    AUTOV2 = "AutoV2"  # 10 hex: A1111 "Model hash", "VAE hash", Civitai extension "Hashes"
    # 12 hex: A1111 "Lora hashes" and "TI hashes". For a safetensors LoRA it starts the SHA256 of the tensor
    # data without the header (the "addnet" hash; AutoV3 in Civitai's terms); for other files the file's SHA256.
    AUTOV3 = "AutoV3"
    SHA256 = "SHA256"  # 64 hex: the whole file's SHA256


_HASH_KIND_BY_LENGTH = {8: HashKind.AUTOV1, 10: HashKind.AUTOV2, 12: HashKind.AUTOV3, 64: HashKind.SHA256}
_HEX = re.compile(r"[0-9A-Fa-f]+")


def classify_hash(value: str) -> tuple[str, HashKind] | None:
    """The hash in the catalog's form (upper-case hex) and its kind, or None if it is not a hash we know."""
    value = value.strip()
    kind = _HASH_KIND_BY_LENGTH.get(len(value))
    if kind is None or not _HEX.fullmatch(value):
        return None
    return value.upper(), kind


class MetadataSource(StrEnum):
    """Where the metadata came from: which parser read it from the file, or a person who entered it."""

    A1111 = "a1111"  # AUTOMATIC1111 / Forge "parameters" text
    COMFYUI = "comfyui"  # ComfyUI "prompt" graph (and "workflow")
    USER = "user"


class _Violations:
    """Collects field violations, then raises them all at once."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field_name: str, description: str) -> None:
        self.items.append(FieldViolation(field_name, description))

    def text(self, field_name: str, value: str | None, max_chars: int) -> None:
        if value is not None and not isinstance(value, str):
            self.add(field_name, f"must be text, not {type(value).__name__}")
        elif value is not None and len(value) > max_chars:
            self.add(field_name, f"is {len(value)} characters long; at most {max_chars} are allowed")

    def number(self, field_name: str, value: float | None, low: float, high: float) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(field_name, f"must be a number, not {type(value).__name__}")
        elif (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
            self.add(field_name, f"is {value}; it must be between {low} and {high}")

    def raise_if_any(self, what: str) -> None:
        if self.items:
            fields = ", ".join(v.field for v in self.items)
            raise InvalidArgument(f"invalid {what}: check {fields}", violations=self.items)


@dataclass(frozen=True)
class Resource:
    """A model file used to make an image: the checkpoint, a LoRA with its weight, an embedding, a VAE.

    `hash` is upper-case hex as the catalog stores it, with `hash_kind` saying which hash it is; files written
    by ComfyUI rarely carry hashes, and then the resource has a name only (the caller matches names when it
    can). `name` is as the file wrote it (A1111: the model's title; ComfyUI: the file name, maybe with folders).
    """

    kind: ResourceKind
    name: str
    weight: float | None = None
    hash: str | None = None
    hash_kind: HashKind | None = None

    def __post_init__(self) -> None:
        violations = _Violations()
        try:
            object.__setattr__(self, "kind", ResourceKind(self.kind))
        except ValueError:
            kinds = ", ".join(k.value for k in ResourceKind)
            violations.add("resource.kind", f"{self.kind!r} is not one of {kinds}")
        if not self.name and self.hash is None:
            violations.add("resource.name", "a resource needs a name or a hash")
        violations.text("resource.name", self.name, MAX_NAME_CHARS)
        violations.number("resource.weight", self.weight, -MAX_WEIGHT, MAX_WEIGHT)
        if (self.hash is None) != (self.hash_kind is None):
            violations.add("resource.hash_kind", "a hash and its kind go together: give both or neither")
        elif self.hash is not None:
            classified = classify_hash(self.hash) if isinstance(self.hash, str) else None
            if classified is None or classified != (self.hash, self.hash_kind):
                violations.add(
                    "resource.hash",
                    f"{self.hash!r} is not an upper-case hex {self.hash_kind} hash "
                    "(AutoV1: 8, AutoV2: 10, AutoV3: 12, SHA256: 64 characters)",
                )
        violations.raise_if_any("resource")


@dataclass(frozen=True)
class GenerationMetadata:
    """How an image was generated. Every field is optional: files carry what their tool wrote.

    `extra` keeps settings without a field of their own (e.g. "Hires upscale", "Version") as text; treat it as
    read-only. `comfyui_prompt` and `comfyui_workflow` keep ComfyUI's JSON exactly as found in the file, so
    the gallery can store it and people can load the workflow again.
    """

    prompt: str | None = None
    negative_prompt: str | None = None
    sampler: str | None = None
    scheduler: str | None = None
    cfg_scale: float | None = None
    steps: int | None = None
    seed: int | None = None
    clip_skip: int | None = None
    width: int | None = None
    height: int | None = None
    denoising_strength: float | None = None
    resources: tuple[Resource, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict, hash=False)
    source: MetadataSource = MetadataSource.USER
    comfyui_prompt: str | None = None
    comfyui_workflow: str | None = None

    def __post_init__(self) -> None:
        # Defensive copies: a caller's list or dict changing later must not change this value.
        object.__setattr__(self, "resources", tuple(self.resources))
        object.__setattr__(self, "extra", dict(self.extra))
        violations = _Violations()
        try:
            object.__setattr__(self, "source", MetadataSource(self.source))
        except ValueError:
            violations.add("source", f"{self.source!r} is not one of a1111, comfyui, user")
        violations.text("prompt", self.prompt, MAX_PROMPT_CHARS)
        violations.text("negative_prompt", self.negative_prompt, MAX_PROMPT_CHARS)
        violations.text("sampler", self.sampler, MAX_NAME_CHARS)
        violations.text("scheduler", self.scheduler, MAX_NAME_CHARS)
        violations.number("cfg_scale", self.cfg_scale, 0, MAX_CFG_SCALE)
        self._integer(violations, "steps", self.steps, 1, MAX_STEPS)
        self._integer(violations, "seed", self.seed, 0, MAX_SEED)
        self._integer(violations, "clip_skip", self.clip_skip, 1, MAX_CLIP_SKIP)
        self._integer(violations, "width", self.width, 1, MAX_SIDE)
        self._integer(violations, "height", self.height, 1, MAX_SIDE)
        violations.number("denoising_strength", self.denoising_strength, 0, 1)
        if len(self.resources) > MAX_RESOURCES:
            violations.add("resources", f"has {len(self.resources)} entries; at most {MAX_RESOURCES} are allowed")
        for index, resource in enumerate(self.resources):
            if not isinstance(resource, Resource):
                violations.add(f"resources[{index}]", "must be a Resource")
        if len(self.extra) > MAX_EXTRA_ENTRIES:
            violations.add("extra", f"has {len(self.extra)} entries; at most {MAX_EXTRA_ENTRIES} are allowed")
        for key, value in self.extra.items():
            if not isinstance(key, str) or not EXTRA_KEY.fullmatch(key) or key != key.strip():
                violations.add("extra", f'key {key!r} must be non-empty text without , : " or line breaks')
                continue
            violations.text(f"extra[{key}]", key, MAX_EXTRA_KEY_CHARS)
            if not isinstance(value, str):
                violations.add(f"extra[{key}]", "must be text")
            else:
                violations.text(f"extra[{key}]", value, MAX_EXTRA_VALUE_CHARS)
        violations.text("comfyui_prompt", self.comfyui_prompt, MAX_RAW_JSON_CHARS)
        violations.text("comfyui_workflow", self.comfyui_workflow, MAX_RAW_JSON_CHARS)
        violations.raise_if_any("generation metadata")

    @staticmethod
    def _integer(violations: _Violations, name: str, value: int | None, low: int, high: int) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            violations.add(name, f"must be a whole number, not {type(value).__name__}")
        else:
            violations.number(name, value, low, high)

    @property
    def checkpoint(self) -> Resource | None:
        """The first checkpoint among the resources, if any."""
        return next((r for r in self.resources if r.kind is ResourceKind.CHECKPOINT), None)
