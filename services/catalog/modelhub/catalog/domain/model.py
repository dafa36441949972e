"""The model aggregate: a model, its versions, their files and declared parents (one consistency boundary).

State is the fold of the model's events (`apply`); command methods check visibility, permission and state,
then record new events (`_record`). Nothing here does I/O: the handlers load, call, and save.

Visibility and permission, in this order (so that a refusal never reveals a hidden model):
1. a model that is not Published is visible only to its owner and to privileged users (moderators, admins,
   the catalog itself); anyone else gets NotFound, with the same message as for an id that never existed;
2. a visible model is changed only by its owner or a privileged user; anyone else gets PermissionDenied;
3. a stale `expected_version` (checked by the handler after 1 and 2, `require_current`) gets a conflict naming
   the current one. Stale means an edit came after it: background facts (COMMUTING_EVENTS: scan verdicts,
   hashes added after upload) do not make a client's version stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from modelhub.catalog.domain.commands import Actor, ModelChanges, ModelFields, VersionChanges, VersionFields
from modelhub.catalog.domain.events import (
    COMMUTING_EVENTS,
    FileAdded,
    FileHash,
    FileHashesAdded,
    FileRemoved,
    FileScanned,
    License,
    ModelCreated,
    ModelDeleted,
    ModelEvent,
    ModelFile,
    ModelPublicationScheduled,
    ModelPublished,
    ModelUnpublished,
    ModelUpdated,
    Parent,
    ParentsDeclared,
    PublicationCancelled,
    VersionCreated,
    VersionDeleted,
    VersionPublicationScheduled,
    VersionPublished,
    VersionUpdated,
)
from modelhub.catalog.domain.vocabulary import ModelStatus, ScanResult, VersionStatus
from modelhub.core.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied, StreamVersionConflict

MAX_VERSIONS = 100
MAX_FILES_PER_VERSION = 50


def can_see(actor: Actor | None, owner_id: str, model_status: str, version_status: str | None = None) -> bool:
    """The visibility rule: public items to everyone, everything else to the owner and privileged users only."""
    if actor is not None and (actor.privileged or actor.id == owner_id):
        return True
    public = model_status == ModelStatus.PUBLISHED
    return public and (version_status is None or version_status == VersionStatus.PUBLISHED)


def stream_id(model_id: str) -> str:
    """The event stream of one model."""
    return f"model-{model_id}"


def model_not_found(model_id: str) -> NotFound:
    return NotFound(f"model {model_id} not found", reason="MODEL_NOT_FOUND", metadata={"model_id": model_id})


def version_not_found(version_id: str) -> NotFound:
    return NotFound(
        f"model version {version_id} not found",
        reason="MODEL_VERSION_NOT_FOUND",
        metadata={"model_version_id": version_id},
    )


class StaleVersion(StreamVersionConflict):
    """A client's `expected_version` is stale (an edit came after it) or ahead of the stream. Final: running the
    command again cannot change it (the handlers re-run only when a writer won the race to append)."""


@dataclass
class Version:
    id: str
    name: str
    base_model: str
    trained_words: tuple[str, ...]
    changelog: str
    early_access_days: int
    created_at: datetime
    updated_at: datetime
    status: VersionStatus = VersionStatus.DRAFT
    published_at: datetime | None = None
    scheduled_at: datetime | None = None
    files: dict[str, ModelFile] = field(default_factory=dict)
    parents: tuple[Parent, ...] = ()

    @property
    def unready_reason(self) -> str | None:
        """Why the version cannot be published yet, or None when it can."""
        if not self.files:
            return f"version {self.id} has no file yet: upload one"
        unclean = [f for f in self.files.values() if f.scan_result != ScanResult.SUCCESS]
        if unclean:
            f = unclean[0]
            return f"file {f.name!r} of version {self.id} is not scanned clean (scan result {f.scan_result})"
        return None

    @property
    def early_access_ends_at(self) -> datetime | None:
        if self.published_at is None or self.early_access_days == 0:
            return None
        return self.published_at + timedelta(days=self.early_access_days)


class Model:
    """The model aggregate (stream "model-<id>")."""

    def __init__(self, model_id: str) -> None:
        self.id = model_id
        self.version = 0
        """The stream version loaded or last saved."""
        self.last_edit_version = 0
        """The stream version of the last event that is not one of COMMUTING_EVENTS (snapshots are no events
        here): a client's `expected_version` from it on is current (`require_current`). Known for a model folded
        from its stream or built by commands, not for one read back from the read models."""
        self.pending: list[ModelEvent] = []
        self.exists = False
        self.owner_id = ""
        self.owner_name = ""
        self.name = ""
        self.description = ""
        self.type = ""
        self.tags: tuple[str, ...] = ()
        self.license = License()
        self.status = ModelStatus.DRAFT
        self.status_before_schedule = ModelStatus.DRAFT
        self.nsfw_level = 0
        self.unpublished_reason = ""
        self.request_id = ""
        self.created_at: datetime | None = None
        self.updated_at: datetime | None = None
        self.published_at: datetime | None = None
        self.scheduled_at: datetime | None = None
        self.versions: dict[str, Version] = {}
        """In creation order."""

    @property
    def stream_id(self) -> str:
        return stream_id(self.id)

    # -- folding ------------------------------------------------------------------------------------------

    def apply(self, event: ModelEvent) -> None:
        """Change state by one event (facts: no validation here)."""
        self.updated_at = event.at
        if type(event) not in COMMUTING_EVENTS:
            # The event's own stream version: stored events are folded in order, `version` set after each
            # (snapshots included), and a command's new events are appended after the loaded version in the
            # order recorded (`_record` applies an event before adding it to `pending`).
            self.last_edit_version = self.version + len(self.pending) + 1
        match event:
            case ModelCreated():
                self.exists = True
                self.owner_id, self.owner_name = event.owner_id, event.owner_name
                self.name, self.description, self.type = event.name, event.description, event.type
                self.tags, self.license, self.request_id = event.tags, event.license, event.request_id
                self.created_at = event.at
            case ModelUpdated():
                self.name, self.description, self.type = event.name, event.description, event.type
                self.tags, self.license = event.tags, event.license
            case ModelPublished():
                self.status = ModelStatus.PUBLISHED
                self.scheduled_at = None
                self.unpublished_reason = ""
                self.published_at = self.published_at or event.at
            case ModelPublicationScheduled():
                if self.status != ModelStatus.SCHEDULED:
                    self.status_before_schedule = self.status
                self.status = ModelStatus.SCHEDULED
                self.scheduled_at = event.publish_at
            case PublicationCancelled():
                if event.version_id:
                    cancelled = self.versions[event.version_id]
                    cancelled.status, cancelled.scheduled_at = VersionStatus.DRAFT, None
                else:
                    self.status, self.scheduled_at = ModelStatus(event.status), None
            case ModelUnpublished():
                self.status = ModelStatus.UNPUBLISHED_VIOLATION if event.violation else ModelStatus.UNPUBLISHED
                self.unpublished_reason = event.reason
                self.scheduled_at = None
            case ModelDeleted():
                self.status = ModelStatus.DELETED
                self.scheduled_at = None
            case VersionCreated():
                self.versions[event.version_id] = Version(
                    id=event.version_id,
                    name=event.name,
                    base_model=event.base_model,
                    trained_words=event.trained_words,
                    changelog=event.changelog,
                    early_access_days=event.early_access_days,
                    created_at=event.at,
                    updated_at=event.at,
                )
            case VersionUpdated():
                v = self.versions[event.version_id]
                v.name, v.base_model, v.trained_words = event.name, event.base_model, event.trained_words
                v.changelog, v.early_access_days, v.updated_at = event.changelog, event.early_access_days, event.at
            case VersionPublished():
                v = self.versions[event.version_id]
                v.status, v.published_at, v.scheduled_at, v.updated_at = (
                    VersionStatus.PUBLISHED,
                    event.at,
                    None,
                    event.at,
                )
            case VersionPublicationScheduled():
                v = self.versions[event.version_id]
                v.status, v.scheduled_at, v.updated_at = VersionStatus.SCHEDULED, event.publish_at, event.at
            case VersionDeleted():
                v = self.versions[event.version_id]
                v.status, v.scheduled_at, v.updated_at = VersionStatus.DELETED, None, event.at
            case ParentsDeclared():
                v = self.versions[event.version_id]
                v.parents, v.updated_at = event.parents, event.at
            case FileAdded():
                v = self.versions[event.version_id]
                v.files[event.file.file_id] = event.file
                v.updated_at = event.at
            case FileScanned():
                v = self.versions[event.version_id]
                f = v.files[event.file_id]
                v.files[event.file_id] = replace(f, scan_result=event.scan_result, scan_message=event.scan_message)
                v.updated_at = event.at
            case FileHashesAdded():
                v = self.versions[event.version_id]
                f = v.files[event.file_id]
                v.files[event.file_id] = replace(f, hashes=f.hashes + event.hashes)
                v.updated_at = event.at
            case FileRemoved():
                v = self.versions[event.version_id]
                del v.files[event.file_id]
                v.updated_at = event.at

    def _record(self, event: ModelEvent) -> None:
        self.apply(event)
        self.pending.append(event)

    # -- visibility and permission ------------------------------------------------------------------------

    def is_editor(self, actor: Actor | None) -> bool:
        """The owner, a moderator or admin, or the catalog itself."""
        return actor is not None and (actor.privileged or actor.id == self.owner_id)

    def visible_to(self, actor: Actor | None) -> bool:
        return self.exists and can_see(actor, self.owner_id, self.status)

    def version_visible_to(self, version: Version, actor: Actor | None) -> bool:
        return self.exists and can_see(actor, self.owner_id, self.status, version.status)

    def require_visible(self, actor: Actor | None) -> None:
        if not self.visible_to(actor):
            raise model_not_found(self.id)

    def require_editor(self, actor: Actor) -> None:
        """NotFound if the actor cannot see the model, PermissionDenied if it may see but not change it."""
        self.require_visible(actor)
        if not self.is_editor(actor):
            raise PermissionDenied(
                f"only the owner of model {self.id}, a moderator or an admin may change it",
                reason="NOT_MODEL_OWNER",
                metadata={"model_id": self.id},
            )

    def require_current(self, expected_version: int) -> None:
        """Refuse a client's `expected_version` (StaleVersion, naming the current version) unless no edit came
        after it: `last_edit_version <= expected_version <= version`. A version ahead of the stream is refused.
        The events appended then follow the current version, and the command's rules run on the current state."""
        if not self.last_edit_version <= expected_version <= self.version:
            raise StaleVersion(self.stream_id, expected_version, self.version)

    def visible_version(self, version_id: str, actor: Actor | None) -> Version:
        version = self.versions.get(version_id)
        if version is None or not self.version_visible_to(version, actor):
            raise version_not_found(version_id)
        return version

    def _live_version(self, version_id: str) -> Version:
        """A version to change: it must exist and not be deleted (editors only reach this)."""
        version = self.versions.get(version_id)
        if version is None:
            raise version_not_found(version_id)
        if version.status == VersionStatus.DELETED:
            raise FailedPrecondition(
                f"model version {version_id} is deleted",
                reason="VERSION_DELETED",
                metadata={"model_version_id": version_id},
            )
        return version

    def _require_not_deleted(self) -> None:
        if self.status == ModelStatus.DELETED:
            raise FailedPrecondition(
                f"model {self.id} is deleted", reason="MODEL_DELETED", metadata={"model_id": self.id}
            )

    # -- model commands -----------------------------------------------------------------------------------

    @classmethod
    def create(cls, model_id: str, actor: Actor, fields: ModelFields, request_id: str, now: datetime) -> Model:
        model = cls(model_id)
        model._record(
            ModelCreated(
                model_id=model_id,
                owner_id=actor.id,
                owner_name=actor.name or actor.id,
                name=fields.name,
                description=fields.description,
                type=fields.type,
                tags=fields.tags,
                license=fields.license,
                request_id=request_id,
                at=now,
            )
        )
        return model

    def update(self, actor: Actor, changes: ModelChanges, now: datetime) -> None:
        self._require_not_deleted()
        updated = ModelUpdated(
            model_id=self.id,
            name=self.name if changes.name is None else changes.name,
            description=self.description if changes.description is None else changes.description,
            type=self.type if changes.type is None else changes.type,
            tags=self.tags if changes.tags is None else changes.tags,
            license=self.license if changes.license is None else changes.license,
            by=actor.id,
            at=now,
        )
        current = (self.name, self.description, self.type, self.tags, self.license)
        if (updated.name, updated.description, updated.type, updated.tags, updated.license) != current:
            self._record(updated)

    def _publishable(self) -> tuple[list[Version], str | None]:
        """Draft versions ready to publish with the model, and why nothing can be published (or None)."""
        ready = [v for v in self.versions.values() if v.status == VersionStatus.DRAFT and v.unready_reason is None]
        if ready or any(v.status == VersionStatus.PUBLISHED for v in self.versions.values()):
            return ready, None
        drafts = [v for v in self.versions.values() if v.status == VersionStatus.DRAFT]
        if not drafts:
            return [], f"model {self.id} has no version to publish: create one and upload its file"
        return [], f"model {self.id} has no version ready to publish: {drafts[-1].unready_reason}"

    def publish(self, actor: Actor, now: datetime, publish_at: datetime | None = None) -> None:
        """Publish now (with every ready draft version), or schedule for `publish_at` if it is later."""
        self._require_not_deleted()
        if self.status == ModelStatus.UNPUBLISHED_VIOLATION and not actor.privileged:
            raise PermissionDenied(
                f"model {self.id} was unpublished by a moderator for a rules violation: only a moderator can "
                "publish it again",
                reason="UNPUBLISHED_FOR_VIOLATION",
                metadata={"model_id": self.id},
            )
        ready, unready = self._publishable()
        if publish_at is not None and publish_at > now:
            if self.status == ModelStatus.PUBLISHED:
                raise FailedPrecondition(
                    f"model {self.id} is published already: unpublish it before scheduling a publication",
                    reason="MODEL_PUBLISHED",
                )
            if unready:
                raise FailedPrecondition(unready, reason="NOTHING_TO_PUBLISH")
            if self.scheduled_at != publish_at:
                self._record(ModelPublicationScheduled(self.id, publish_at, actor.id, now))
            return
        if self.status == ModelStatus.PUBLISHED:
            return  # published already: a retry changes nothing
        if unready:
            raise FailedPrecondition(unready, reason="NOTHING_TO_PUBLISH")
        self._publish_now(actor, ready, now)

    def _publish_now(self, actor: Actor, ready: list[Version], now: datetime) -> None:
        self._record(ModelPublished(self.id, actor.id, now))
        for version in ready:
            self._record(VersionPublished(self.id, version.id, self.owner_id, now))

    def publish_due(self, now: datetime) -> None:
        """The scheduler's command: publish what came due (the model, then its versions); no-op otherwise.

        A due publication that cannot happen (nothing ready) is cancelled with the reason, so it is never
        retried forever."""
        system = Actor.system()
        if self.status == ModelStatus.SCHEDULED and self.scheduled_at is not None and self.scheduled_at <= now:
            ready, unready = self._publishable()
            if unready:
                self._record(PublicationCancelled(self.id, "", unready, self.status_before_schedule.value, now))
            else:
                self._publish_now(system, ready, now)
        for version in list(self.versions.values()):
            if version.status != VersionStatus.SCHEDULED or version.scheduled_at is None or version.scheduled_at > now:
                continue
            reason = version.unready_reason
            if self.status != ModelStatus.PUBLISHED:
                reason = f"model {self.id} is {self.status.value}, not Published"
            if reason:
                self._record(PublicationCancelled(self.id, version.id, reason, "", now))
            else:
                self._record(VersionPublished(self.id, version.id, self.owner_id, now))

    def unpublish(self, actor: Actor, reason: str, violation: bool, now: datetime) -> None:
        if violation and not actor.privileged:
            raise PermissionDenied(
                "only a moderator or an admin may unpublish a model for a violation", reason="MODERATOR_REQUIRED"
            )
        self._require_not_deleted()
        target = ModelStatus.UNPUBLISHED_VIOLATION if violation else ModelStatus.UNPUBLISHED
        if self.status == target or (self.status == ModelStatus.UNPUBLISHED_VIOLATION and not violation):
            return  # already down (a moderator's violation is not softened by a plain unpublish)
        if self.status not in (ModelStatus.PUBLISHED, ModelStatus.SCHEDULED, ModelStatus.UNPUBLISHED):
            raise FailedPrecondition(
                f"model {self.id} is {self.status.value}: only a published or scheduled model can be unpublished",
                reason="MODEL_NOT_PUBLISHED",
            )
        self._record(ModelUnpublished(self.id, actor.id, reason, violation, now))

    def delete(self, actor: Actor, now: datetime) -> None:
        if self.status != ModelStatus.DELETED:
            self._record(ModelDeleted(self.id, actor.id, now))

    # -- version commands ---------------------------------------------------------------------------------

    def create_version(self, actor: Actor, version_id: str, fields: VersionFields, now: datetime) -> None:
        self._require_not_deleted()
        live = [v for v in self.versions.values() if v.status != VersionStatus.DELETED]
        if len(live) >= MAX_VERSIONS:
            raise FailedPrecondition(
                f"model {self.id} has {MAX_VERSIONS} versions, the most a model may have: delete one first",
                reason="TOO_MANY_VERSIONS",
            )
        self._record(
            VersionCreated(
                self.id,
                version_id,
                fields.name,
                fields.base_model,
                fields.trained_words,
                fields.changelog,
                fields.early_access_days,
                actor.id,
                now,
            )
        )

    def update_version(self, actor: Actor, version_id: str, changes: VersionChanges, now: datetime) -> None:
        self._require_not_deleted()
        v = self._live_version(version_id)
        updated = VersionUpdated(
            self.id,
            version_id,
            v.name if changes.name is None else changes.name,
            v.base_model if changes.base_model is None else changes.base_model,
            v.trained_words if changes.trained_words is None else changes.trained_words,
            v.changelog if changes.changelog is None else changes.changelog,
            v.early_access_days if changes.early_access_days is None else changes.early_access_days,
            actor.id,
            now,
        )
        current = (v.name, v.base_model, v.trained_words, v.changelog, v.early_access_days)
        new = (updated.name, updated.base_model, updated.trained_words, updated.changelog, updated.early_access_days)
        if new != current:
            self._record(updated)

    def publish_version(self, actor: Actor, version_id: str, now: datetime, publish_at: datetime | None = None) -> None:
        self._require_not_deleted()
        v = self._live_version(version_id)
        if v.status == VersionStatus.PUBLISHED:
            return  # a retry changes nothing; catalog.ModelVersionPublished stays once per version
        if self.status != ModelStatus.PUBLISHED:
            raise FailedPrecondition(
                f"model {self.id} is {self.status.value}: publish the model (PublishModel), which publishes its "
                "ready versions with it",
                reason="MODEL_NOT_PUBLISHED",
            )
        if (reason := v.unready_reason) is not None:
            raise FailedPrecondition(reason, reason="VERSION_NOT_READY", metadata={"model_version_id": version_id})
        if publish_at is not None and publish_at > now:
            if v.scheduled_at != publish_at:
                self._record(VersionPublicationScheduled(self.id, version_id, publish_at, actor.id, now))
            return
        self._record(VersionPublished(self.id, version_id, self.owner_id, now))

    def delete_version(self, actor: Actor, version_id: str, now: datetime) -> None:
        v = self.versions.get(version_id)
        if v is None:
            raise version_not_found(version_id)
        if v.status == VersionStatus.DELETED:
            return
        if (
            v.status == VersionStatus.PUBLISHED
            and self.status in (ModelStatus.PUBLISHED, ModelStatus.SCHEDULED)
            and not any(o.status == VersionStatus.PUBLISHED for o in self.versions.values() if o.id != version_id)
        ):
            raise FailedPrecondition(
                f"version {version_id} is the last published version of model {self.id}: unpublish or delete the "
                "model instead",
                reason="LAST_PUBLISHED_VERSION",
            )
        self._record(VersionDeleted(self.id, version_id, actor.id, now))

    def declare_parents(self, actor: Actor, version_id: str, parents: tuple[Parent, ...], now: datetime) -> None:
        """Replace the version's parents. Cross-model rules (visibility of parents, licenses, cycles) are the
        handler's, which sees the lineage graph; this checks what the aggregate knows."""
        self._require_not_deleted()
        v = self._live_version(version_id)
        if v.parents != parents:
            self._record(ParentsDeclared(self.id, version_id, parents, actor.id, now))

    # -- file commands (called by the upload pipeline) ----------------------------------------------------

    def add_file(self, actor: Actor, version_id: str, file: ModelFile, now: datetime) -> None:
        """Attach a stored file to a version. Adding the same file id again with the same facts is a no-op
        (a retried upload); a different file under a taken id or name is refused."""
        self._require_not_deleted()
        v = self._live_version(version_id)
        for other in self.versions.values():
            existing = other.files.get(file.file_id)
            if existing is not None:
                if existing == file and other.id == version_id:
                    return
                raise AlreadyExists(f"file id {file.file_id} is taken", reason="FILE_EXISTS")
        if any(f.name == file.name for f in v.files.values()):
            raise AlreadyExists(
                f"version {version_id} has a file named {file.name!r} already: remove it or choose another name",
                reason="FILE_NAME_TAKEN",
            )
        if len(v.files) >= MAX_FILES_PER_VERSION:
            raise FailedPrecondition(
                f"version {version_id} has {MAX_FILES_PER_VERSION} files, the most a version may have",
                reason="TOO_MANY_FILES",
            )
        self._record(FileAdded(self.id, version_id, file, actor.id, now))

    def record_scan(self, version_id: str, file_id: str, result: ScanResult, message: str, now: datetime) -> None:
        """Record a scan verdict. A verdict for a file removed since, or the same verdict again, is a no-op."""
        v = self.versions.get(version_id)
        f = v.files.get(file_id) if v is not None else None
        if f is None or (f.scan_result == result.value and f.scan_message == message):
            return
        self._record(FileScanned(self.id, version_id, file_id, result.value, message, now))

    def add_file_hashes(self, version_id: str, file_id: str, hashes: tuple[FileHash, ...], now: datetime) -> None:
        """Record hashes computed after the file was added (the catalog itself). Hashes the file has already are
        dropped, so recording the same hashes again is a no-op, as is recording them for a file removed since.
        Allowed whatever the model's or version's status: they are facts about stored bytes, which publication
        never waits for. A kind the file has with another value is refused: the hashes are functions of the
        bytes, so the stored bytes would have changed (FailedPrecondition)."""
        v = self.versions.get(version_id)
        f = v.files.get(file_id) if v is not None else None
        if f is None:
            return
        known = {h.kind: h.value for h in f.hashes}
        new: list[FileHash] = []
        for h in hashes:
            have = known.get(h.kind)
            if have is None:
                known[h.kind] = h.value
                new.append(h)
            elif have != h.value:
                raise FailedPrecondition(
                    f"file {file_id} has {h.kind} {have}, not {h.value}: its stored bytes changed",
                    reason="FILE_HASH_MISMATCH",
                    metadata={"file_id": file_id, "kind": h.kind},
                )
        if new:
            self._record(FileHashesAdded(self.id, version_id, file_id, tuple(new), now))

    def remove_file(self, actor: Actor, version_id: str, file_id: str, now: datetime) -> None:
        self._require_not_deleted()
        v = self._live_version(version_id)
        if file_id not in v.files:
            raise NotFound(f"file {file_id} not found in version {version_id}", reason="FILE_NOT_FOUND")
        if v.status in (VersionStatus.PUBLISHED, VersionStatus.SCHEDULED):
            clean_left = [f for f in v.files.values() if f.file_id != file_id and f.scan_result == ScanResult.SUCCESS]
            if not clean_left:
                raise FailedPrecondition(
                    f"file {file_id} is the last clean file of {v.status.value.lower()} version {version_id}: "
                    "upload its replacement first",
                    reason="LAST_CLEAN_FILE",
                )
        self._record(FileRemoved(self.id, version_id, file_id, actor.id, now))

    # -- reads --------------------------------------------------------------------------------------------

    def file_downloadable(self, version: Version, file: ModelFile, actor: Actor | None) -> bool:
        """A file is downloadable only when scanned clean and its version is visible to the caller."""
        return file.scan_result == ScanResult.SUCCESS and self.version_visible_to(version, actor)
