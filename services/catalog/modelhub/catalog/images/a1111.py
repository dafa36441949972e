"""AUTOMATIC1111 / Forge generation parameters (the PNG `parameters` text; the EXIF UserComment of JPEG/WebP).

The text looks like this:

    a cat in a hat, <lora:hatStyle:0.8>            the prompt: one or more lines
    Negative prompt: blurry, lowres                 optional; may run over several lines
    Steps: 30, Sampler: DPM++ 2M, CFG scale: 7, Seed: 42, Size: 512x768, Model hash: 0123456789,
        Model: dreamshaper_8, Lora hashes: "hatStyle: 0123456789ab", Version: v1.10.1     (one line)
    Template: ...                                   optional lines some extensions add after it

Values holding a comma, colon or line break are JSON-quoted. Keys without a field of their own go to `extra`.
Parsing is linear in the text (no backtracking regular expression runs over unbounded input), and text longer
than `MAX_PARAMETERS_CHARS` is not parsed at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from modelhub.catalog.images import generation as g
from modelhub.catalog.images import values as v
from modelhub.catalog.images.generation import GenerationMetadata, MetadataSource, Resource, ResourceKind

MAX_PARAMETERS_CHARS = 2 * g.MAX_PROMPT_CHARS + 65_536

_NEGATIVE = "Negative prompt:"
_STEPS = "Steps: "
# One "Key: value" pair, anchored where the previous one ended. A quoted value is a JSON string.
_PAIR = re.compile(r'([^,:"\r\n]+):\s*(?:(?P<quoted>"(?:[^"\\\n]|\\.)*")\s*(?:,|$)|(?P<plain>[^,]*)(?:,|$))')
# Values that are JSON objects/arrays written without quotes (Civitai's extension and generator add them).
_JSON_KEYS = re.compile(r"(?:^|,)\s*(Hashes|Civitai resources|Civitai metadata):\s*(?=[\[{])")
# <lora:name:weight>, <lyco:name:te=0.5:unet=0.8>, <hypernet:name:1>: bounded so a hostile prompt stays linear.
_EXTRA_NETWORK = re.compile(r"<(lora|lyco|hypernet):([^:<>\n]{1,256})((?::[^:<>\n]{0,64}){0,6})>")
_SIZE = re.compile(r"(\d{1,6})\s*x\s*(\d{1,6})")
_TRAILING_KEY = re.compile(r"([A-Za-z][\w ]{0,63}):\s?(.*)")
_TAG_KINDS = {"lora": ResourceKind.LORA, "lyco": ResourceKind.LYCORIS, "hypernet": ResourceKind.OTHER}
_KIND_ORDER = {
    ResourceKind.CHECKPOINT: 0,
    ResourceKind.VAE: 1,
    ResourceKind.LORA: 2,
    ResourceKind.LYCORIS: 2,
    ResourceKind.EMBEDDING: 3,
    ResourceKind.OTHER: 4,
}
# A full SHA256 or an AutoV2 the catalog looks up directly; an AutoV3 prefix it may not have computed.
_HASH_PREFERENCE = {g.HashKind.SHA256: 0, g.HashKind.AUTOV2: 1, g.HashKind.AUTOV3: 2, g.HashKind.AUTOV1: 3}

T = TypeVar("T")


def parse_a1111_parameters(text: str) -> GenerationMetadata | None:
    """Parse A1111/Forge parameters text; None when it is not that shape (no settings line) or is too long.

    Never raises for any input text: values that do not fit their field are kept as text in `extra` (or
    dropped when they do not fit there either, e.g. over `MAX_EXTRA_VALUE_CHARS`).
    """
    if len(text) > MAX_PARAMETERS_CHARS:
        return None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").strip().split("\n")
    settings_at = _settings_line_index(lines)
    if settings_at is None:
        return None
    settings_line, json_values = _cut_json_values(lines[settings_at])
    fields: dict[str, str] = {}
    for key, value in _pairs(settings_line):
        fields.setdefault(key, value)
    extra: dict[str, str] = {}
    prompt, negative = _prompts(lines[:settings_at])

    steps = _take(fields, extra, "Steps", lambda s: v.parse_int(s, 1, g.MAX_STEPS))
    sampler = _take(fields, extra, "Sampler", v.as_name)
    scheduler = _take(fields, extra, "Schedule type", v.as_name)
    cfg_scale = _take(fields, extra, "CFG scale", lambda s: v.parse_float(s, 0, g.MAX_CFG_SCALE))
    seed = _take(fields, extra, "Seed", lambda s: v.parse_int(s, 0, g.MAX_SEED))
    size = _take(fields, extra, "Size", _size)
    clip_skip = _take(fields, extra, "Clip skip", lambda s: v.parse_int(s, 1, g.MAX_CLIP_SKIP))
    denoising = _take(fields, extra, "Denoising strength", lambda s: v.parse_float(s, 0, 1))

    resources = _Resources(extra)
    resources.named(ResourceKind.CHECKPOINT, fields.pop("Model", None), fields.pop("Model hash", None), "Model hash")
    resources.named(ResourceKind.VAE, fields.pop("VAE", None), fields.pop("VAE hash", None), "VAE hash")
    for kind, name, weight in _extra_network_tags(prompt or ""):
        resources.tag(kind, name, weight)
    resources.hash_list(ResourceKind.LORA, fields.pop("Lora hashes", None), "Lora hashes")
    resources.hash_list(ResourceKind.EMBEDDING, fields.pop("TI hashes", None), "TI hashes")
    hashes = json_values.pop("Hashes", None)
    if hashes is not None:
        resources.civitai_hashes(hashes)
    for key, raw in json_values.items():
        _put_extra(extra, key, raw)
    for key, value in fields.items():
        _put_extra(extra, key, value)
    for key, value in _trailing(lines[settings_at + 1 :]):
        _put_extra(extra, key, value)

    return GenerationMetadata(
        prompt=prompt,
        negative_prompt=negative,
        sampler=sampler,
        scheduler=scheduler,
        cfg_scale=cfg_scale,
        steps=steps,
        seed=seed,
        clip_skip=clip_skip,
        width=size[0] if size else None,
        height=size[1] if size else None,
        denoising_strength=denoising,
        resources=resources.all(),
        extra=extra,
        source=MetadataSource.A1111,
    )


def format_a1111_parameters(meta: GenerationMetadata) -> str:
    """Write metadata as A1111 parameters text (what modelhub embeds in the images it generates).

    `parse_a1111_parameters` reads it back to equal metadata when `steps` is set and every LoRA weight is
    also written as a `<lora:name:weight>` tag in the prompt (the format has no other place for weights).
    """
    lines = [meta.prompt or ""]
    if meta.negative_prompt:
        lines.append(f"{_NEGATIVE} {meta.negative_prompt}")
    pairs: list[tuple[str, object]] = [
        ("Steps", meta.steps),
        ("Sampler", meta.sampler),
        ("Schedule type", meta.scheduler),
        ("CFG scale", meta.cfg_scale),
        ("Seed", meta.seed),
        ("Size", f"{meta.width}x{meta.height}" if meta.width and meta.height else None),
    ]
    for kind, name_key, hash_key in (
        (ResourceKind.CHECKPOINT, "Model", "Model hash"),
        (ResourceKind.VAE, "VAE", "VAE hash"),
    ):
        resource = next((r for r in meta.resources if r.kind is kind), None)
        if resource is not None:
            pairs += [(hash_key, resource.hash), (name_key, resource.name or None)]
    pairs += [("Denoising strength", meta.denoising_strength), ("Clip skip", meta.clip_skip)]
    for kinds, key in (
        ((ResourceKind.LORA, ResourceKind.LYCORIS), "Lora hashes"),
        ((ResourceKind.EMBEDDING,), "TI hashes"),
    ):
        hashed = [f"{r.name}: {r.hash}" for r in meta.resources if r.kind in kinds and r.hash]
        pairs.append((key, ", ".join(hashed) or None))
    pairs += list(meta.extra.items())
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in pairs if value is not None))
    return "\n".join(lines)


def _quote(value: object) -> str:
    text = repr(value) if isinstance(value, float) else str(value)
    if any(c in text for c in ',:\n"') or text != text.strip():
        return json.dumps(text, ensure_ascii=False)
    return text


def _settings_line_index(lines: list[str]) -> int | None:
    """The settings line: the last one starting "Steps: " (A1111 always starts with it), else A1111's own rule:
    the last line, when it holds at least three pairs."""
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith(_STEPS):
            return index
    last = len(lines) - 1
    if sum(1 for _ in zip(range(3), _pairs(lines[last]), strict=False)) == 3:
        return last
    return None


def _pairs(line: str) -> Iterator[tuple[str, str]]:
    """The "Key: value" pairs of a settings line; text that is not a pair is skipped up to the next comma."""
    position = 0
    while position < len(line):
        match = _PAIR.match(line, position)
        if match is None:
            comma = line.find(",", position)
            if comma == -1:
                return
            position = comma + 1
            continue
        position = match.end() if match.end() > position else position + 1
        key, quoted = match.group(1).strip(), match.group("quoted")
        value = match.group("plain") or ""
        if quoted is not None:
            try:
                value = json.loads(quoted)
            except ValueError:
                value = quoted  # A1111 keeps a value it cannot unquote as written
        if key:
            yield key, value


def _cut_json_values(line: str) -> tuple[str, dict[str, str]]:
    """Cut unquoted JSON values (e.g. `Hashes: {"model": "..."}`) out of the line, which they would garble."""
    decoder = json.JSONDecoder()
    found: dict[str, str] = {}
    kept: list[str] = []
    position = 0
    for match in _JSON_KEYS.finditer(line):
        if match.start() < position:
            continue
        try:
            _, end = decoder.raw_decode(line, match.end())
        except (ValueError, RecursionError):
            continue
        found.setdefault(match.group(1), line[match.end() : end])
        kept.append(line[position : match.start()])
        position = end
    kept.append(line[position:])
    return "".join(kept), found


def _prompts(lines: list[str]) -> tuple[str | None, str | None]:
    negative_at = next((i for i, line in enumerate(lines) if line.startswith(_NEGATIVE)), len(lines))
    prompt = "\n".join(lines[:negative_at])
    negative = (
        "\n".join([lines[negative_at][len(_NEGATIVE) :], *lines[negative_at + 1 :]]) if lines[negative_at:] else ""
    )
    return v.as_prompt(prompt), v.as_prompt(negative)


def _extra_network_tags(prompt: str) -> Iterator[tuple[ResourceKind, str, float | None]]:
    """(kind, name, weight) of each `<lora:name:weight>`-style tag; a tag without a weight means 1.0 in A1111."""
    for match in _EXTRA_NETWORK.finditer(prompt):
        name = match.group(2).strip()
        parts = [p.strip() for p in match.group(3).split(":")[1:]]
        positional = [p for p in parts if "=" not in p]
        named = dict(p.split("=", 1) for p in parts if "=" in p)
        raw = positional[0] if positional else named.get("te")
        if name:
            yield _TAG_KINDS[match.group(1)], name, 1.0 if raw is None else v.as_weight(raw)


def _size(text: str) -> tuple[int, int] | None:
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        return None
    width, height = int(match.group(1)), int(match.group(2))
    return (width, height) if 1 <= width <= g.MAX_SIDE and 1 <= height <= g.MAX_SIDE else None


def _trailing(lines: list[str]) -> Iterator[tuple[str, str]]:
    """Lines after the settings line ("Template: ..."): a "Key: value" line starts an entry, others continue it."""
    key: str | None = None
    value: list[str] = []
    for line in lines:
        match = _TRAILING_KEY.fullmatch(line)
        if match is not None:
            if key is not None:
                yield key, "\n".join(value).strip()
            key, value = match.group(1).strip(), [match.group(2)]
        elif key is not None:
            value.append(line)
    if key is not None:
        yield key, "\n".join(value).strip()


def _take(fields: dict[str, str], extra: dict[str, str], key: str, convert: Callable[[str], T | None]) -> T | None:
    """Pop `key` and convert it; a value that does not convert is kept as text in `extra`."""
    raw = fields.pop(key, None)
    if raw is None:
        return None
    value = convert(raw)
    if value is None:
        _put_extra(extra, key, raw)
    return value


def _put_extra(extra: dict[str, str], key: str, value: str) -> None:
    """Keep a setting as text, when it fits `extra`'s limits (see `GenerationMetadata`); drop it otherwise."""
    key, value = key.strip(), value.strip()
    if (
        key
        and value
        and key not in extra
        and len(extra) < g.MAX_EXTRA_ENTRIES
        and len(key) <= g.MAX_EXTRA_KEY_CHARS
        and len(value) <= g.MAX_EXTRA_VALUE_CHARS
        and g.EXTRA_KEY.fullmatch(key)
    ):
        extra[key] = value


@dataclass
class _Draft:
    kind: ResourceKind
    name: str
    weight: float | None = None
    hash: tuple[str, g.HashKind] | None = None

    def offer_hash(self, hashed: tuple[str, g.HashKind]) -> None:
        """Keep the hash the catalog finds most directly when a resource is named with two of them."""
        if self.hash is None or _HASH_PREFERENCE[hashed[1]] < _HASH_PREFERENCE[self.hash[1]]:
            self.hash = hashed


class _Resources:
    """Gathers resources from the places A1111 mentions them, joining LoRA tags (weights) to hashes by name."""

    def __init__(self, extra: dict[str, str]) -> None:
        self._drafts: list[_Draft] = []
        self._extra = extra

    def _find(self, kinds: tuple[ResourceKind, ...], name: str) -> _Draft | None:
        exact = next((d for d in self._drafts if d.kind in kinds and d.name == name), None)
        if exact is not None:
            return exact
        folded = name.casefold()
        return next((d for d in self._drafts if d.kind in kinds and d.name.casefold() == folded), None)

    def named(self, kind: ResourceKind, name: str | None, raw_hash: str | None, hash_key: str) -> None:
        """The checkpoint or VAE: a name ("Model") and a hash ("Model hash"), either may be missing."""
        hashed = None
        if raw_hash is not None:
            hashed = g.classify_hash(raw_hash)
            if hashed is None:
                _put_extra(self._extra, hash_key, raw_hash)
        clean_name = v.as_name(name) or ""
        if clean_name or hashed:
            self._drafts.append(_Draft(kind, clean_name, None, hashed))

    def tag(self, kind: ResourceKind, name: str, weight: float | None) -> None:
        if self._find((kind,), name) is None:
            self._drafts.append(_Draft(kind, name, weight))

    def hash_list(self, kind: ResourceKind, raw: str | None, key: str) -> None:
        """`name: hash, name: hash` (Lora hashes, TI hashes): fills the hash of the tag of that name, or adds one."""
        if raw is None:
            return
        unreadable = False
        for entry in raw.split(","):
            name, colon, raw_hash = entry.rpartition(":")
            hashed = g.classify_hash(raw_hash)
            clean_name = v.as_name(name)
            if not colon or hashed is None or clean_name is None:
                unreadable = unreadable or bool(entry.strip())
                continue
            self._set_hash(kind, clean_name, hashed)
        if unreadable:
            _put_extra(self._extra, key, raw)

    def civitai_hashes(self, raw_json: str) -> None:
        """Civitai's A1111 extension: `Hashes: {"model": h, "vae": h, "lora:name": h, "embed:name": h}`.
        Adds to the hashes named elsewhere (see `_Draft.offer_hash`); keys it does not know are ignored."""
        try:
            hashes = json.loads(raw_json)
        except (ValueError, RecursionError):
            return
        if not isinstance(hashes, dict):
            return
        prefixes = {"lora": ResourceKind.LORA, "lyco": ResourceKind.LYCORIS, "embed": ResourceKind.EMBEDDING}
        prefixes["hypernet"] = ResourceKind.OTHER
        for key, raw_hash in hashes.items():
            hashed = g.classify_hash(raw_hash) if isinstance(raw_hash, str) else None
            if hashed is None:
                continue
            if key in ("model", "vae"):
                kind = ResourceKind.CHECKPOINT if key == "model" else ResourceKind.VAE
                draft = next((d for d in self._drafts if d.kind is kind), None)
                if draft is None:
                    self._drafts.append(_Draft(kind, "", None, hashed))
                else:
                    draft.offer_hash(hashed)
                continue
            prefix, _, name = key.partition(":")
            clean_name = v.as_name(name)
            if prefix in prefixes and clean_name is not None:
                self._set_hash(prefixes[prefix], clean_name, hashed)

    def _set_hash(self, kind: ResourceKind, name: str, hashed: tuple[str, g.HashKind]) -> None:
        kinds = (
            (ResourceKind.LORA, ResourceKind.LYCORIS) if kind in (ResourceKind.LORA, ResourceKind.LYCORIS) else (kind,)
        )
        draft = self._find(kinds, name)
        if draft is None:
            self._drafts.append(_Draft(kind, name, None, hashed))
        else:
            draft.offer_hash(hashed)

    def all(self) -> tuple[Resource, ...]:
        """The resources: checkpoint, VAE, LoRAs (prompt order, then hash-only ones), embeddings, others;
        beyond `MAX_RESOURCES` the rest are dropped."""
        drafts = sorted(self._drafts, key=lambda d: _KIND_ORDER[d.kind])[: g.MAX_RESOURCES]
        return tuple(
            Resource(d.kind, d.name, d.weight, d.hash[0] if d.hash else None, d.hash[1] if d.hash else None)
            for d in drafts
        )
