"""Builders shared by the model tests: actors, validated fields, clean files, and ready-to-publish models."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.catalog.domain import commands
from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.events import FileHash, License, ModelFile
from modelhub.catalog.domain.model import Model
from modelhub.catalog.domain.vocabulary import ScanResult
from modelhub.catalog.handlers.models import ModelCatalog

ALICE = Actor("alice", "Alice")
BOB = Actor("bob", "Bob")
MOD = Actor("mod", "Mod", privileged=True)


def fields(
    name: str = "Dreamy", license: License | None = None, tags: Sequence[str] = ("anime",)
) -> commands.ModelFields:
    return commands.model_fields(name, "a model", "Checkpoint", tags, license or License())


def version(name: str = "v1", base_model: str = "SDXL 1.0") -> commands.VersionFields:
    return commands.version_fields(name, base_model, ["dreamy"], "first", 0)


def a_file(file_id: str, scan: ScanResult = ScanResult.PENDING, name: str | None = None) -> ModelFile:
    digest = hashlib.sha256(file_id.encode()).hexdigest().upper()
    return ModelFile(
        file_id=file_id,
        name=name or f"{file_id}.safetensors",
        type="Model",
        format="SafeTensor",
        size_bytes=1234,
        blob_sha256=digest,
        hashes=(FileHash("SHA256", digest), FileHash("AutoV2", digest[:10]), FileHash("BLAKE3", digest[::-1])),
        scan_result=scan.value,
        precision="fp16",
        size_kind="pruned",
        safetensors_metadata={"ss_base_model_version": "sdxl_base_v1-0"},
        tensor_count=3,
    )


async def ready_version(models: ModelCatalog, owner: Actor, model: Model, name: str = "v1") -> tuple[Model, str]:
    """Add a version with one clean file to `model`."""
    model, version_id = await models.create_version(owner, model.id, model.version, version(name))
    await models.add_file(owner, version_id, a_file(f"file-{version_id}"))
    model = await models.record_scan(version_id, f"file-{version_id}", ScanResult.SUCCESS)
    return model, version_id


async def published_model(
    models: ModelCatalog, owner: Actor = ALICE, *, name: str = "Dreamy", license: License | None = None
) -> tuple[Model, str]:
    """A published model with one published version; returns it and the version's id."""
    model = await models.create_model(owner, fields(name, license))
    model, version_id = await ready_version(models, owner, model)
    model = await models.publish_model(owner, model.id, model.version)
    return model, version_id


async def event_types(engine: AsyncEngine, stream: str) -> list[str]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT event_type FROM events WHERE stream_id = :s ORDER BY stream_version"), {"s": stream}
        )
        return list(result.scalars())
