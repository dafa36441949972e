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

COMMUTING_EVENTS: frozenset[type[ModelEvent]] = frozenset({FileScanned, FileHashesAdded})
"""Background facts that commute with editors' changes: they do not make a client's `expected_version` stale
(Model.require_current; docs/adr/0010-background-changes-do-not-conflict.md). Each is recorded by the catalog
itself, about stored bytes, on fields that no editor command sets, and an editor's command still runs its rules
on the state that includes it:

- FileScanned (the pickle scanner's verdict): sets a file's scan result, which only the scanner sets; the rules
  that read it (publishing needs every file clean, removing the last clean file of a public version is
  refused) are checked on the fresh state, so an edit decided before the verdict cannot bypass them.
- FileHashesAdded (AutoV3, computed after the upload): adds hash kinds the file did not have; no editor command
  sets or reads hashes, and their values are functions of the bytes.

Everything else counts as an edit, including the scheduler's due publication (ModelPublished, VersionPublished
or PublicationCancelled): it changes a status, hence who sees the model and what an edit does (a description
edited on a Scheduled model goes public at once on a Published one), which the editor's view was based on.
A wrongly commuting event could lose an update, a wrongly conflicting one costs a re-read: only facts that
clearly commute are listed.
"""
