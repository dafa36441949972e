"""The generation metadata model: hash kinds by length, and values checked when built (e.g. typed by a person)."""

from __future__ import annotations

import pytest

from modelhub.catalog.images import GenerationMetadata, HashKind, MetadataSource, Resource, ResourceKind, classify_hash
from modelhub.core.errors import InvalidArgument


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("6ce01616", ("6CE01616", HashKind.AUTOV1)),
        (" 6ce0161689 ", ("6CE0161689", HashKind.AUTOV2)),
        ("7c6bad76eb54", ("7C6BAD76EB54", HashKind.AUTOV3)),
        ("A" * 64, ("A" * 64, HashKind.SHA256)),
        ("6ce016168", None),  # 9 hex: no hash kind has that length
        ("6ce016168g", None),  # not hex
        ("", None),
    ],
)
def test_hash_kind_is_decided_by_length(raw: str, expected: tuple[str, HashKind] | None) -> None:
    assert classify_hash(raw) == expected


def test_a_resource_takes_its_kind_as_text_and_keeps_the_enum() -> None:
    resource = Resource("lora", "add_detail", 0.6, "7C6BAD76EB54", HashKind.AUTOV3)  # type: ignore[arg-type]
    assert resource.kind is ResourceKind.LORA


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "sampler", "name": "x"}, "resource.kind"),
        ({"kind": "lora", "name": ""}, "resource.name"),
        ({"kind": "lora", "name": "x" * 513}, "resource.name"),
        ({"kind": "lora", "name": 5}, "resource.name"),
        ({"kind": "lora", "name": "x", "hash": 5, "hash_kind": HashKind.AUTOV3}, "resource.hash"),
        ({"kind": "lora", "name": "x", "weight": float("nan")}, "resource.weight"),
        ({"kind": "lora", "name": "x", "hash": "7C6BAD76EB54"}, "resource.hash_kind"),
        ({"kind": "lora", "name": "x", "hash": "7c6bad76eb54", "hash_kind": HashKind.AUTOV3}, "resource.hash"),
        ({"kind": "lora", "name": "x", "hash": "7C6BAD76EB54", "hash_kind": HashKind.AUTOV2}, "resource.hash"),
    ],
)
def test_a_bad_resource_is_refused_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        Resource(**kwargs)  # type: ignore[arg-type]
    assert [v.field for v in caught.value.violations] == [field]


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(InvalidArgument) as caught:
        GenerationMetadata(
            prompt="x" * 70_000,
            steps=0,
            cfg_scale=-1.0,
            seed=-5,
            clip_skip=99,
            width=0,
            denoising_strength=1.5,
            extra={"Lora, hashes": "x", "Version": "v" * 5_000},
            source="midjourney",  # type: ignore[arg-type]
        )
    fields = {v.field for v in caught.value.violations}
    assert fields == {
        "prompt",
        "steps",
        "cfg_scale",
        "seed",
        "clip_skip",
        "width",
        "denoising_strength",
        "extra",
        "extra[Version]",
        "source",
    }
    assert "70000 characters" in next(v.description for v in caught.value.violations if v.field == "prompt")


def test_values_must_have_their_type() -> None:
    with pytest.raises(InvalidArgument) as caught:
        GenerationMetadata(steps=20.5, seed=True, cfg_scale="7", prompt=b"cat", extra={"Version": 1})  # type: ignore[arg-type]
    assert {v.field for v in caught.value.violations} == {"steps", "seed", "cfg_scale", "prompt", "extra[Version]"}


def test_metadata_copies_what_it_is_given() -> None:
    resources = [Resource(ResourceKind.CHECKPOINT, "dreamshaper_8")]
    extra = {"Version": "v1.10.1"}
    meta = GenerationMetadata(resources=resources, extra=extra)  # type: ignore[arg-type]
    resources.append(Resource(ResourceKind.LORA, "later"))
    extra["Version"] = "changed"
    assert meta.resources == (Resource(ResourceKind.CHECKPOINT, "dreamshaper_8"),)
    assert meta.extra == {"Version": "v1.10.1"}
    assert meta.source is MetadataSource.USER
    assert meta.checkpoint == Resource(ResourceKind.CHECKPOINT, "dreamshaper_8")
    assert meta in {meta}  # hashable although `extra` is a dict
