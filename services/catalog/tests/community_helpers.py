"""Builders shared by the gallery and community tests: published models whose files carry given hashes and
names, images posted through the use cases, and event counting."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from modelhub.catalog.bootstrap import Catalog
from modelhub.catalog.domain import commands
from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.community_base import check_tags
from modelhub.catalog.domain.events import FileHash, License, ModelFile
from modelhub.catalog.domain.vocabulary import ScanResult
from modelhub.catalog.handlers.gallery import Gallery, ImageView, NewImage
from modelhub.catalog.images import GenerationMetadata

from .image_samples import picture, png

CAROL = Actor("carol", "Carol")


def model_file(name: str, *, sha256: str | None = None, autov2: str | None = None) -> ModelFile:
    """A clean file named `name`; its SHA256 is `sha256` (or derived from the name), AutoV2 its first 10 digits
    unless given."""
    digest = (sha256 or hashlib.sha256(name.encode()).hexdigest()).upper()
    return ModelFile(
        file_id=f"file-{uuid.uuid4().hex}",
        name=name,
        type="Model",
        format="SafeTensor",
        size_bytes=1024,
        blob_sha256=digest,
        hashes=(FileHash("SHA256", digest), FileHash("AutoV2", (autov2 or digest[:10]).upper())),
        scan_result=ScanResult.PENDING.value,
    )


async def model_with(
    catalog: Catalog,
    owner: Actor,
    name: str,
    files: Sequence[ModelFile] = (),
    *,
    publish: bool = True,
    model_type: str = "Checkpoint",
) -> tuple[str, str]:
    """A model with one version holding `files` (scanned clean), published unless told; (model id, version id)."""
    models = catalog.models
    model = await models.create_model(owner, commands.model_fields(name, "", model_type, [], License()))
    model, version_id = await models.create_version(
        owner, model.id, model.version, commands.version_fields("v1", "SD 1.5", [], "", 0)
    )
    for file in files or [model_file(f"{name}.safetensors")]:
        await models.add_file(owner, version_id, file)
        model = await models.record_scan(version_id, file.file_id, ScanResult.SUCCESS)
    if publish:
        model = await models.publish_model(owner, model.id, model.version)
    return model.id, version_id


async def post(
    gallery: Gallery,
    actor: Actor,
    data: bytes | None = None,
    *,
    version_id: str = "",
    tags: Sequence[str] = (),
    stated: GenerationMetadata | None = None,
    request_id: str = "",
) -> ImageView:
    """Post as PostImage does: tags normalized first."""
    v = commands.Violations()
    normalized = check_tags(v, "tags", tags)
    v.raise_if_any("image")
    return await gallery.post_image(
        actor, NewImage(data or png(image=picture(size=(32, 24))), version_id, normalized, stated, request_id)
    )


async def event_types(engine: AsyncEngine, stream: str | None = None, event_type: str | None = None) -> list[str]:
    """Event types in the log, in global order, of one stream and/or one type."""
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT event_type FROM events WHERE (CAST(:s AS text) IS NULL OR stream_id = :s) "
                "AND (CAST(:t AS text) IS NULL OR event_type = :t) ORDER BY transaction_id, position"
            ),
            {"s": stream, "t": event_type},
        )
        return list(result.scalars())


async def count_events(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM events"))).scalar_one())


async def last_payload(catalog: Catalog, stream: str, event_type: str) -> Any:
    """The decoded payload of the stream's last event of `event_type`."""
    async with catalog.engine.connect() as conn:
        events = await catalog.store.read_stream(conn, stream)
    found = [e for e in events if e.event_type == event_type]
    assert found, f"no {event_type} on {stream}"
    return catalog.store.registry.decode(found[-1].event_type, found[-1].schema_version, found[-1].payload)
