"""Domain events of the model aggregate (published as catalog.* events; payloads in adapters/events.py).

Every event is a fact about one model and lives on its stream "model-<model_id>". `at` is when the catalog
decided the change (its injected clock), `by` the user id of who asked ("system" for the scheduler).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from modelhub.catalog.domain.vocabulary import Relation


@dataclass(frozen=True)
class License:
    """What a creator grants. The defaults are Civitai's: everything allowed."""

    allow_no_credit: bool = True
    allow_commercial_use: tuple[str, ...] = ("Image", "RentCivit", "Rent", "Sell")
    allow_derivatives: bool = True
    allow_different_license: bool = True


@dataclass(frozen=True)
class FileHash:
    kind: str
    value: str


@dataclass(frozen=True)
class ModelFile:
    """A file of a version, as the files pipeline described it."""

    file_id: str
    name: str
    type: str
    format: str
    size_bytes: int
    blob_sha256: str
    hashes: tuple[FileHash, ...]
    scan_result: str
    scan_message: str = ""
    precision: str = ""
    size_kind: str = ""
    safetensors_metadata: Mapping[str, str] = field(default_factory=dict)
    tensor_count: int = 0


@dataclass(frozen=True)
class Parent:
    """One declared parent of a version."""

    parent_model_id: str
    parent_version_id: str
    relation: Relation
    weight: float = 0.0
    attribution: str = ""


@dataclass(frozen=True)
class ModelCreated:
    model_id: str
    owner_id: str
    owner_name: str
    name: str
    description: str
    type: str
    tags: tuple[str, ...]
    license: License
    request_id: str
    at: datetime


@dataclass(frozen=True)
class ModelUpdated:
    model_id: str
    name: str
    description: str
    type: str
    tags: tuple[str, ...]
    license: License
    by: str
    at: datetime


@dataclass(frozen=True)
class ModelPublished:
    model_id: str
    by: str
    at: datetime


@dataclass(frozen=True)
class ModelPublicationScheduled:
    model_id: str
    publish_at: datetime
    by: str
    at: datetime


@dataclass(frozen=True)
class PublicationCancelled:
    """A due publication that could not happen; version_id is empty for the model's own."""

    model_id: str
    version_id: str
    reason: str
    status: str
    """The model's status after it (empty for a version's)."""
    at: datetime


@dataclass(frozen=True)
class ModelUnpublished:
    model_id: str
    by: str
    reason: str
    violation: bool
    at: datetime


@dataclass(frozen=True)
class ModelDeleted:
    model_id: str
    by: str
    at: datetime


@dataclass(frozen=True)
class VersionCreated:
    model_id: str
    version_id: str
    name: str
    base_model: str
    trained_words: tuple[str, ...]
    changelog: str
    early_access_days: int
    by: str
    at: datetime


@dataclass(frozen=True)
class VersionUpdated:
    model_id: str
    version_id: str
    name: str
    base_model: str
    trained_words: tuple[str, ...]
    changelog: str
    early_access_days: int
    by: str
    at: datetime


@dataclass(frozen=True)
class VersionPublished:
    """The version became public: catalog.ModelVersionPublished, once per version (the ledger rewards it)."""

    model_id: str
    version_id: str
    creator_id: str
    at: datetime


@dataclass(frozen=True)
class VersionPublicationScheduled:
    model_id: str
    version_id: str
    publish_at: datetime
    by: str
    at: datetime


@dataclass(frozen=True)
class VersionDeleted:
    model_id: str
    version_id: str
    by: str
    at: datetime


@dataclass(frozen=True)
class ParentsDeclared:
    model_id: str
    version_id: str
    parents: tuple[Parent, ...]
    by: str
    at: datetime


@dataclass(frozen=True)
class FileAdded:
    model_id: str
    version_id: str
    file: ModelFile
    by: str
    at: datetime


@dataclass(frozen=True)
class FileScanned:
    model_id: str
    version_id: str
    file_id: str
    scan_result: str
    scan_message: str
    at: datetime


@dataclass(frozen=True)
class FileHashesAdded:
    """Hashes computed after the file was added (AutoV3, by a background job), added to the file's hashes."""

    model_id: str
    version_id: str
    file_id: str
    hashes: tuple[FileHash, ...]
    at: datetime


@dataclass(frozen=True)
class FileRemoved:
    model_id: str
    version_id: str
    file_id: str
    by: str
    at: datetime


ModelEvent = (
    ModelCreated
    | ModelUpdated
    | ModelPublished
    | ModelPublicationScheduled
    | PublicationCancelled
    | ModelUnpublished
    | ModelDeleted
    | VersionCreated
    | VersionUpdated
    | VersionPublished
    | VersionPublicationScheduled
    | VersionDeleted
    | ParentsDeclared
    | FileAdded
    | FileScanned
    | FileHashesAdded
    | FileRemoved
)
