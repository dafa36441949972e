"""Use cases of models, versions, their files and lineage: one transaction per command.

The shape of every change of an existing model:

1. validate the request (pure: domain/commands.py; nothing is read or written when it fails);
2. in one transaction: load the model from its stream, check visibility (NotFound), permission
   (PermissionDenied) and `expected_version` (StreamVersionConflict naming the current version, when an edit
   came after it: Model.require_current), run the aggregate's command, append its events plus a
   catalog.ModelSnapshot at the loaded (current) version, and update the read models; commit.

A client's `expected_version` is stale only when an edit came after it: the catalog's background facts (scan
verdicts, hashes computed after upload: domain/events.py COMMUTING_EVENTS) do not make it stale, so an editor
is not refused because a scan finished after its read. The scheduler's publication does (it changes status).

Crash, retry, redelivery: a crash before the commit leaves nothing (no event, no read-model row); after it,
everything (events, snapshot, read models) is there and the outbox relay publishes the events. A client
that retries a change it sent with `expected_version` gets ABORTED if the first attempt committed (its edit
came after that version): it reads the model again and sees its change there. When another writer appends
between the load and the append, the event store's unique (stream, version) key refuses ours and the
command is run again on the fresh state (up to RACE_ATTEMPTS times): a client's version is checked anew
there, so a background fact that won the race is no conflict and an edit that won it is. Internal callers
(the scheduler, the upload pipeline) pass `expected_version=None`; their commands are no-ops when their
effect is there already (publishing a published version, recording the same scan verdict or the same hashes
again, adding the same file again), so re-running them is harmless.
CreateModel with a request id is idempotent: the (owner, request id) row commits with the model.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from psycopg import errors as pg_errors
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from uuid_utils.compat import uuid7

from modelhub.catalog.adapters import hot_reads, queries
from modelhub.catalog.adapters.repository import ModelRepository
from modelhub.catalog.domain.base_models import BASE_MODELS
from modelhub.catalog.domain.commands import (
    Actor,
    ModelChanges,
    ModelFields,
    ParentRequest,
    VersionChanges,
    VersionFields,
    create_fingerprint,
)
from modelhub.catalog.domain.events import FileHash, License, ModelFile, Parent
from modelhub.catalog.domain.model import Model, StaleVersion, can_see, model_not_found, version_not_found
from modelhub.catalog.domain.vocabulary import DERIVATIVE_RELATIONS, ScanResult
from modelhub.catalog.handlers import Clock, utcnow
from modelhub.core import locks
from modelhub.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    StreamVersionConflict,
)
from modelhub.core.events.store import EventStore

log = logging.getLogger(__name__)

RACE_ATTEMPTS: Final = 5
"""Attempts of a change when concurrent writers keep appending between its load and its append."""
LINEAGE_LOCK: Final = "catalog:lineage"
DEFAULT_LINEAGE_DEPTH: Final = 3
MAX_LINEAGE_DEPTH: Final = 10
DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_SIZE: Final = 100


@dataclass(frozen=True)
class LineageNode:
    version_id: str
    model_id: str
    model_name: str
    version_name: str
    base_model: str
    owner_id: str
    depth: int
    """Negative for ancestors, positive for descendants, 0 for the start."""


@dataclass(frozen=True)
class Lineage:
    nodes: list[LineageNode]
    edges: list[queries.Edge]
    truncated: bool


def _require_same_license(parent: queries.VersionNode, license_: License, relation: str) -> None:
    """A derivative of a model whose license does not allow a different one (Civitai's "use different
    permissions on merges" off) keeps that model's permissions, unless both have the same owner."""
    if parent.license.allow_different_license or license_ == parent.license:
        return
    required = parent.license
    raise PermissionDenied(
        f"the license of model {parent.model_id} ({parent.model_name!r}) does not allow its derivatives a different "
        f"license: a {relation} of its version {parent.version_id} must have the same permissions (allow_no_credit="
        f"{required.allow_no_credit}, allow_commercial_use={list(required.allow_commercial_use)}, "
        f"allow_derivatives={required.allow_derivatives}, allow_different_license=False)",
        reason="DIFFERENT_LICENSE_NOT_ALLOWED",
        metadata={"parent_model_id": parent.model_id, "parent_version_id": parent.version_id},
    )


class ModelCatalog:
    """Models, versions, files and lineage over one database (engine) and its event store."""

    def __init__(
        self, engine: AsyncEngine, store: EventStore, *, clock: Clock = utcnow, hot_reads: AsyncEngine | None = None
    ) -> None:
        self.engine = engine
        # Single-statement reads (GetModel) run outside a transaction: no BEGIN and ROLLBACK round trips, and
        # one statement sees one snapshot either way.
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.hot_reads = hot_reads or self.reads
        """GetModel's pool (adapters/hot_reads.py; `reads` when none is given)."""
        self.store = store
        self.clock = clock

    # -- plumbing -----------------------------------------------------------------------------------------

    async def _change(
        self,
        model_id: str,
        actor: Actor,
        expected_version: int | None,
        command: Callable[[Model, datetime], None],
        *,
        version_id: str | None = None,
        prepare: Callable[[AsyncConnection], Awaitable[None]] | None = None,
    ) -> Model:
        """Load, authorize, check the version, run `prepare` (reads beyond the aggregate) and `command`, save:
        one transaction, run again when another writer wins the race to append (see the module doc)."""
        for attempt in range(1, RACE_ATTEMPTS + 1):
            try:
                async with self.engine.begin() as conn:
                    repo = ModelRepository(conn, self.store)
                    model = await repo.load(model_id)
                    if version_id is not None:
                        model.require_visible(actor)
                        model.visible_version(version_id, actor)
                    model.require_editor(actor)
                    if expected_version is not None:
                        model.require_current(expected_version)
                    if prepare is not None:
                        await prepare(conn)
                    command(model, self.clock())
                    await repo.save(model)
                    return model
            except StaleVersion:
                raise  # an edit came after the client's version: final, a fresh load only moves further on
            except StreamVersionConflict:
                if attempt == RACE_ATTEMPTS:
                    raise
                log.info("model %s changed concurrently; running the command again", model_id)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _model_of_version(self, version_id: str) -> str:
        async with self.engine.connect() as conn:
            return await ModelRepository(conn, self.store).model_of_version(version_id)

    # -- models -------------------------------------------------------------------------------------------

    async def create_model(self, actor: Actor, fields: ModelFields, request_id: str = "") -> Model:
        """Create a Draft model owned by `actor`. With a request id, a retry returns the first attempt's model
        (also when the two race: the second waits on the request row's key, then reads the winner's)."""
        fingerprint = create_fingerprint(fields)
        if request_id:
            existing = await self._created_by(actor, request_id, fingerprint)
            if existing is not None:
                return existing
        model = Model.create(str(uuid7()), actor, fields, request_id, self.clock())
        try:
            async with self.engine.begin() as conn:
                await ModelRepository(conn, self.store).save(model)
        except exc.IntegrityError as error:
            if not (request_id and isinstance(error.orig, pg_errors.UniqueViolation)):
                raise
            existing = await self._created_by(actor, request_id, fingerprint)
            if existing is None:  # pragma: no cover - the row that clashed is committed
                raise
            return existing
        return model

    async def _created_by(self, actor: Actor, request_id: str, fingerprint: str) -> Model | None:
        async with self.engine.connect() as conn:
            found = await queries.model_create_request(conn, actor.id, request_id)
            if found is None:
                return None
            model_id, stored = found
            if stored != fingerprint:
                raise AlreadyExists(
                    f"request id {request_id!r} was used for another model ({model_id}) with different fields: "
                    "use a new request id for a new model",
                    reason="REQUEST_ID_REUSED",
                    metadata={"model_id": model_id},
                )
            return await ModelRepository(conn, self.store).load(model_id)

    async def update_model(self, actor: Actor, model_id: str, expected_version: int, changes: ModelChanges) -> Model:
        new_license = changes.license

        async def parents_allow(conn: AsyncConnection) -> None:
            """A new license must keep the permissions of every parent that allows no other (see
            `_require_same_license`)."""
            if new_license is None:
                return
            for node in await queries.foreign_parents(conn, model_id, [r.value for r in DERIVATIVE_RELATIONS]):
                _require_same_license(node, new_license, "derivative")

        return await self._change(
            model_id, actor, expected_version, lambda m, now: m.update(actor, changes, now), prepare=parents_allow
        )

    async def publish_model(
        self, actor: Actor, model_id: str, expected_version: int, publish_at: datetime | None = None
    ) -> Model:
        return await self._change(model_id, actor, expected_version, lambda m, now: m.publish(actor, now, publish_at))

    async def unpublish_model(
        self, actor: Actor, model_id: str, expected_version: int, reason: str, violation: bool
    ) -> Model:
        return await self._change(
            model_id, actor, expected_version, lambda m, now: m.unpublish(actor, reason, violation, now)
        )

    async def delete_model(self, actor: Actor, model_id: str, expected_version: int) -> Model:
        return await self._change(model_id, actor, expected_version, lambda m, now: m.delete(actor, now))

    async def get_model(self, actor: Actor | None, model_id: str) -> Model:
        """The model as the read models hold it (one statement); NotFound unless visible to `actor`."""
        model = await hot_reads.read(self.hot_reads, self.reads, lambda conn: queries.load_model(conn, model_id))
        if model is None or not model.visible_to(actor):
            raise model_not_found(model_id)
        return model

    async def list_models(self, actor: Actor | None, owner_id: str, *, after: str | None, limit: int) -> list[Model]:
        """Up to `limit` of the owner's models after `after`; private ones only for the owner or privileged."""
        include_private = actor is not None and (actor.privileged or actor.id == owner_id)
        async with self.engine.connect() as conn:
            return await queries.list_models(conn, owner_id, include_private=include_private, after=after, limit=limit)

    # -- versions -----------------------------------------------------------------------------------------

    async def create_version(
        self, actor: Actor, model_id: str, expected_version: int, fields: VersionFields
    ) -> tuple[Model, str]:
        version_id = str(uuid7())
        model = await self._change(
            model_id, actor, expected_version, lambda m, now: m.create_version(actor, version_id, fields, now)
        )
        return model, version_id

    async def update_version(
        self, actor: Actor, version_id: str, expected_version: int, changes: VersionChanges
    ) -> Model:
        model_id = await self._model_of_version(version_id)
        return await self._change(
            model_id,
            actor,
            expected_version,
            lambda m, now: m.update_version(actor, version_id, changes, now),
            version_id=version_id,
        )

    async def publish_version(
        self, actor: Actor, version_id: str, expected_version: int, publish_at: datetime | None = None
    ) -> Model:
        model_id = await self._model_of_version(version_id)
        return await self._change(
            model_id,
            actor,
            expected_version,
            lambda m, now: m.publish_version(actor, version_id, now, publish_at),
            version_id=version_id,
        )

    async def delete_version(self, actor: Actor, version_id: str, expected_version: int) -> Model:
        model_id = await self._model_of_version(version_id)
        return await self._change(
            model_id,
            actor,
            expected_version,
            lambda m, now: m.delete_version(actor, version_id, now),
            version_id=version_id,
        )

    # -- scheduled publication ----------------------------------------------------------------------------

    async def publish_due(self, *, limit: int = 100) -> int:
        """Publish models and versions whose scheduled time has come (up to `limit` models); returns how many
        models it handled.

        Each model is its own transaction. Crash or retry: what was published stays published (its events
        committed), and the next run finds only what is still due; re-running a model that is no longer due
        records nothing. Several schedulers may run at once: a model changed by two gets a conflict in one,
        which re-runs the command on the fresh state and finds nothing left to do."""
        now = self.clock()
        async with self.engine.connect() as conn:
            due = await queries.due_models(conn, now, limit)
        system = Actor.system()
        for model_id in due:
            await self._change(model_id, system, None, lambda m, at: m.publish_due(now))
        return len(due)

    # -- files (called by the upload pipeline) ------------------------------------------------------------

    async def add_file(
        self, actor: Actor, version_id: str, file: ModelFile, expected_version: int | None = None
    ) -> Model:
        """Attach a stored file to a version (owner, moderator, admin or the catalog itself). Adding the same
        file again is a no-op, so an upload handler may retry after a crash."""
        model_id = await self._model_of_version(version_id)
        return await self._change(
            model_id,
            actor,
            expected_version,
            lambda m, now: m.add_file(actor, version_id, file, now),
            version_id=version_id,
        )

    async def record_scan(self, version_id: str, file_id: str, result: ScanResult, message: str = "") -> Model:
        """Record a file's scan verdict (the catalog itself; idempotent)."""
        model_id = await self._model_of_version(version_id)
        return await self._change(
            model_id, Actor.system(), None, lambda m, now: m.record_scan(version_id, file_id, result, message, now)
        )

    async def add_file_hashes(self, version_id: str, file_id: str, hashes: tuple[FileHash, ...]) -> Model:
        """Record hashes computed after the file was added (the catalog itself; idempotent: hashes the file has
        already record nothing)."""
        model_id = await self._model_of_version(version_id)
        return await self._change(
            model_id, Actor.system(), None, lambda m, now: m.add_file_hashes(version_id, file_id, hashes, now)
        )

    async def remove_file(
        self, actor: Actor, version_id: str, file_id: str, expected_version: int | None = None
    ) -> Model:
        model_id = await self._model_of_version(version_id)
        return await self._change(
            model_id,
            actor,
            expected_version,
            lambda m, now: m.remove_file(actor, version_id, file_id, now),
            version_id=version_id,
        )

    async def find_by_hash(self, actor: Actor | None, value: str, kind: str | None = None) -> list[queries.HashMatch]:
        """Files whose hash is `value` (any case), limited to versions the caller may see."""
        async with self.engine.connect() as conn:
            matches = await queries.files_by_hash(conn, value, kind)
            nodes = await queries.version_nodes(conn, [m.version_id for m in matches])
        return [
            m
            for m in matches
            if (n := nodes.get(m.version_id)) is not None
            and can_see(actor, n.owner_id, n.model_status, n.version_status)
        ]

    # -- lineage ------------------------------------------------------------------------------------------

    async def declare_parents(
        self, actor: Actor, version_id: str, expected_version: int, requests: Sequence[ParentRequest]
    ) -> Model:
        """Replace a version's parents.

        Lineage writes are serialized by one transaction-scoped advisory lock, taken before the graph is
        read and held until commit. Without it, two declarations on different models' streams (A's version
        takes B's as parent while B's takes A's) would each check the graph without the other's uncommitted
        edge, both commit, and form a cycle: stream versions only order writes within one stream."""
        model_id = await self._model_of_version(version_id)
        resolved: list[Parent] = []

        async def lock_and_resolve(conn: AsyncConnection) -> None:
            await locks.lock(conn, LINEAGE_LOCK)
            resolved.clear()
            resolved.extend(await self._resolve_parents(conn, actor, model_id, version_id, requests))

        return await self._change(
            model_id,
            actor,
            expected_version,
            lambda m, now: m.declare_parents(actor, version_id, tuple(resolved), now),
            version_id=version_id,
            prepare=lock_and_resolve,
        )

    async def _resolve_parents(
        self,
        conn: AsyncConnection,
        actor: Actor,
        child_model_id: str,
        version_id: str,
        requests: Sequence[ParentRequest],
    ) -> list[Parent]:
        """Look the parents up (visible to the caller), apply the license rule, refuse cycles."""
        for index, request in enumerate(requests):
            if request.parent_version_id == version_id:
                raise InvalidArgument(
                    "a version cannot be its own parent",
                    violations=[FieldViolation(f"parents[{index}].parent_version_id", "is the version itself")],
                )
        ids = [r.parent_version_id for r in requests]
        nodes = await queries.version_nodes(conn, [version_id, *ids])
        child = nodes.get(version_id)
        if child is None:  # pragma: no cover - looked up before
            raise version_not_found(version_id)
        parents: list[Parent] = []
        for request in requests:
            node = nodes.get(request.parent_version_id)
            if (
                node is None
                or node.version_status == "Deleted"
                or not can_see(actor, node.owner_id, node.model_status, node.version_status)
            ):
                raise version_not_found(request.parent_version_id)
            if request.relation in DERIVATIVE_RELATIONS and node.owner_id != child.owner_id:
                if not node.license.allow_derivatives:
                    raise PermissionDenied(
                        f"the license of model {node.model_id} ({node.model_name!r}) does not allow derivatives: a "
                        f"{request.relation.value} of its version {node.version_id} is refused (adapter-of is "
                        "allowed)",
                        reason="DERIVATIVES_NOT_ALLOWED",
                        metadata={"parent_model_id": node.model_id, "parent_version_id": node.version_id},
                    )
                _require_same_license(node, child.license, request.relation.value)
            parents.append(
                Parent(node.model_id, node.version_id, request.relation, request.weight, request.attribution)
            )
        cyclic = await queries.descendants_among(conn, version_id, ids)
        if cyclic:
            raise FailedPrecondition(
                f"declaring {cyclic[0]} a parent of {version_id} would make a cycle: {cyclic[0]} derives from "
                f"{version_id} already",
                reason="LINEAGE_CYCLE",
                metadata={"model_version_id": version_id, "parent_version_id": cyclic[0]},
            )
        return parents

    async def get_lineage(
        self, actor: Actor | None, version_id: str, *, ancestors: bool, descendants: bool, max_depth: int
    ) -> Lineage:
        """Walk the graph from a visible version; versions the caller may not see are left out, and the walk
        does not go through them."""
        async with self.engine.connect() as conn:
            start = (await queries.version_nodes(conn, [version_id])).get(version_id)
            if start is None or not can_see(actor, start.owner_id, start.model_status, start.version_status):
                raise version_not_found(version_id)
            walks: list[tuple[int, list[queries.Edge]]] = []
            if ancestors:
                walks.append((-1, await queries.walk_edges(conn, version_id, "ancestors", max_depth + 1)))
            if descendants:
                walks.append((1, await queries.walk_edges(conn, version_id, "descendants", max_depth + 1)))
            ids = {e.child_version_id for _, w in walks for e in w} | {e.parent_version_id for _, w in walks for e in w}
            nodes = await queries.version_nodes(conn, sorted(ids | {version_id}))

        def visible(vid: str) -> bool:
            n = nodes.get(vid)
            return n is not None and can_see(actor, n.owner_id, n.model_status, n.version_status)

        depth_of: dict[str, int] = {version_id: 0}
        kept: list[queries.Edge] = []
        truncated = False
        for sign, edges in walks:
            frontier = {version_id}
            for depth in range(1, max_depth + 2):
                step = [
                    e
                    for e in edges
                    if (e.child_version_id if sign < 0 else e.parent_version_id) in frontier
                    and visible(e.parent_version_id if sign < 0 else e.child_version_id)
                ]
                if not step:
                    break
                if depth > max_depth:
                    truncated = True
                    break
                frontier = set()
                for e in step:
                    reached = e.parent_version_id if sign < 0 else e.child_version_id
                    if e not in kept:
                        kept.append(e)
                    if reached not in depth_of:
                        depth_of[reached] = sign * depth
                        frontier.add(reached)
        result_nodes = [
            LineageNode(
                vid,
                nodes[vid].model_id,
                nodes[vid].model_name,
                nodes[vid].version_name,
                nodes[vid].base_model,
                nodes[vid].owner_id,
                depth,
            )
            for vid, depth in sorted(depth_of.items(), key=lambda item: (item[1], item[0]))
        ]
        return Lineage(result_nodes, kept, truncated)

    @staticmethod
    def base_models() -> tuple[str, ...]:
        return BASE_MODELS
