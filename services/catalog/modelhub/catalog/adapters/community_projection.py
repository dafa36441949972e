"""The gallery and community read models (tables of catalog_0003) as a projection of their events.

`CommunityProjection.apply_event` is called inline by the repository for every event it appends, in the same
transaction (readers see their own writes at once), and by `modelhub.core.events.projection.rebuild`, which
replays the whole log into emptied tables: the two give the same tables (tested).

Applying an event that changes a count also marks the model (stats_dirty) or image (image_stats_dirty) for
the stats job, with an upsert that takes the mark's row lock (see community_queries.take_dirty_model). A
rebuild therefore marks everything once: the job recomputes and appends only what differs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

from google.protobuf.message import Message
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.catalog.adapters.community_events import from_payload
from modelhub.catalog.domain import community_events as ev
from modelhub.catalog.domain.community_base import SubjectKind, fingerprint
from modelhub.catalog.domain.gallery import ImageStatus, VersionRef
from modelhub.catalog.domain.stats import Period
from modelhub.core.events.model import RecordedEvent

TABLES: Final = (
    "image_versions",
    "image_resources",
    "images",
    "reviews",
    "comments",
    "favorites",
    "follows",
    "collection_items",
    "collections",
    "community_requests",
    "model_stats",
)
"""Every table of the projection, children first (the order `reset` empties them in)."""


def image_fingerprint(blob_sha256: str, model_version_id: str, tags: Iterable[str]) -> str:
    """What makes a retried PostImage the same post: the same file, gallery and tags."""
    return fingerprint("image", blob_sha256, model_version_id, list(tags))


def comment_fingerprint(subject_kind: str, subject_id: str, parent_id: str, body: str) -> str:
    return fingerprint("comment", subject_kind, subject_id, parent_id, body)


def collection_fingerprint(name: str, description: str, visibility: str, item_kind: str) -> str:
    return fingerprint("collection", name, description, visibility, item_kind)


class CommunityProjection:
    """Images, reviews, comments, favourites, follows, collections, creation requests and emitted stats."""

    name = "catalog-community"

    async def reset(self, conn: AsyncConnection) -> None:
        for table in TABLES:
            await conn.execute(text(f"DELETE FROM {table}"))

    async def apply(self, conn: AsyncConnection, event: RecordedEvent, payload: Message) -> None:
        domain = from_payload(payload)
        if domain is not None:
            await self.apply_event(conn, domain, event.stream_version)

    async def apply_event(self, conn: AsyncConnection, event: ev.CommunityEvent, stream_version: int) -> None:
        version = {"v": stream_version}
        match event:
            case ev.ImagePosted():
                await _insert_image(conn, event, stream_version)
            case ev.ImageUpdated():
                status = ImageStatus.HIDDEN if event.hidden else ImageStatus.PUBLISHED
                await _exec(
                    conn,
                    "UPDATE images SET tags = :tags, status = :status, updated_at = :at, stream_version = :v "
                    "WHERE image_id = :i",
                    {"tags": list(event.tags), "status": status.value, "at": event.at, "i": event.image_id, **version},
                )
                await _mark_image_models(conn, event.image_id, event.at)
            case ev.ImageDeleted():
                await _exec(
                    conn,
                    "UPDATE images SET status = 'Deleted', updated_at = :at, stream_version = :v WHERE image_id = :i",
                    {"at": event.at, "i": event.image_id, **version},
                )
                await _mark_image_models(conn, event.image_id, event.at)
            case ev.ImageResourcesLinked():
                await _link_resources(conn, event, stream_version)
            case ev.ImageCountsPublished():
                await _exec(
                    conn, "UPDATE images SET stream_version = :v WHERE image_id = :i", {"i": event.image_id, **version}
                )
            case ev.ReviewCreated():
                await _exec(
                    conn,
                    "INSERT INTO reviews (review_id, stream_version, model_id, model_version_id, author_id, "
                    "author_name, recommended, text, status, created_at, updated_at) "
                    "VALUES (:r, :v, :m, :mv, :a, '', :rec, '', 'Active', :at, :at)",
                    {
                        "r": event.review_id,
                        "m": event.model_id,
                        "mv": event.model_version_id,
                        "a": event.author_user_id,
                        "rec": event.recommended,
                        "at": event.created_at,
                        **version,
                    },
                )
            case ev.ReviewWritten():
                await _exec(
                    conn,
                    "UPDATE reviews SET author_name = :name, recommended = :rec, text = :text, status = 'Active', "
                    "updated_at = :at, stream_version = :v WHERE review_id = :r",
                    {
                        "name": event.author_username,
                        "rec": event.recommended,
                        "text": event.text,
                        "at": event.at,
                        "r": event.review_id,
                        **version,
                    },
                )
                await _mark_models(conn, [event.model_id], event.at)
            case ev.ReviewDeleted():
                await _exec(
                    conn,
                    "UPDATE reviews SET status = 'Deleted', updated_at = :at, stream_version = :v WHERE review_id = :r",
                    {"at": event.at, "r": event.review_id, **version},
                )
                await _mark_models(conn, [event.model_id], event.at)
            case ev.CommentPosted():
                await _exec(
                    conn,
                    "INSERT INTO comments (comment_id, stream_version, subject_kind, subject_id, parent_comment_id, "
                    "author_id, author_name, body, status, created_at, updated_at) VALUES (:c, :v, :kind, :subject, "
                    ":parent, :a, :name, :body, 'Active', :at, :at)",
                    {
                        "c": event.comment_id,
                        "kind": event.subject_kind,
                        "subject": event.subject_id,
                        "parent": event.parent_comment_id,
                        "a": event.author_user_id,
                        "name": event.author_username,
                        "body": event.body,
                        "at": event.at,
                        **version,
                    },
                )
                if event.request_id:
                    await _request(
                        conn,
                        event.author_user_id,
                        "comment",
                        event.request_id,
                        event.comment_id,
                        comment_fingerprint(event.subject_kind, event.subject_id, event.parent_comment_id, event.body),
                    )
                await _mark_subject(conn, event.subject_kind, event.subject_id, event.at)
            case ev.CommentEdited():
                await _exec(
                    conn,
                    "UPDATE comments SET body = :body, updated_at = :at, stream_version = :v WHERE comment_id = :c",
                    {"body": event.body, "at": event.at, "c": event.comment_id, **version},
                )
            case ev.CommentDeleted():
                row = (
                    await conn.execute(
                        text(
                            "UPDATE comments SET body = '', status = 'Deleted', updated_at = :at, stream_version = :v "
                            "WHERE comment_id = :c RETURNING subject_kind, subject_id"
                        ),
                        {"at": event.at, "c": event.comment_id, **version},
                    )
                ).one()
                await _mark_subject(conn, row.subject_kind, row.subject_id, event.at)
            case ev.FavoriteAdded():
                await _exec(
                    conn,
                    "INSERT INTO favorites (target_kind, target_id, user_id, created_at) VALUES (:k, :t, :u, :at)",
                    {"k": event.target_kind, "t": event.target_id, "u": event.user_id, "at": event.at},
                )
                await _mark_subject(conn, event.target_kind, event.target_id, event.at)
            case ev.FavoriteRemoved():
                await _exec(
                    conn,
                    "DELETE FROM favorites WHERE target_kind = :k AND target_id = :t AND user_id = :u",
                    {"k": event.target_kind, "t": event.target_id, "u": event.user_id},
                )
                await _mark_subject(conn, event.target_kind, event.target_id, event.at)
            case ev.UserFollowed():
                await _exec(
                    conn,
                    "INSERT INTO follows (follower_id, followee_id, created_at) VALUES (:a, :b, :at)",
                    {"a": event.follower_user_id, "b": event.followee_user_id, "at": event.at},
                )
            case ev.UserUnfollowed():
                await _exec(
                    conn,
                    "DELETE FROM follows WHERE follower_id = :a AND followee_id = :b",
                    {"a": event.follower_user_id, "b": event.followee_user_id},
                )
            case ev.CollectionCreated():
                await _exec(
                    conn,
                    "INSERT INTO collections (collection_id, stream_version, owner_id, owner_name, name, description, "
                    "visibility, item_kind, status, created_at, updated_at) VALUES (:c, :v, :o, :on, :name, :d, :vis, "
                    ":kind, 'Active', :at, :at)",
                    {
                        "c": event.collection_id,
                        "o": event.owner_user_id,
                        "on": event.owner_username,
                        "name": event.name,
                        "d": event.description,
                        "vis": event.visibility,
                        "kind": event.item_kind,
                        "at": event.at,
                        **version,
                    },
                )
                if event.request_id:
                    await _request(
                        conn,
                        event.owner_user_id,
                        "collection",
                        event.request_id,
                        event.collection_id,
                        collection_fingerprint(event.name, event.description, event.visibility, event.item_kind),
                    )
            case ev.CollectionUpdated():
                await _exec(
                    conn,
                    "UPDATE collections SET name = :name, description = :d, visibility = :vis, updated_at = :at, "
                    "stream_version = :v WHERE collection_id = :c",
                    {
                        "name": event.name,
                        "d": event.description,
                        "vis": event.visibility,
                        "at": event.at,
                        "c": event.collection_id,
                        **version,
                    },
                )
            case ev.CollectionItemAdded():
                await _exec(
                    conn,
                    "INSERT INTO collection_items (collection_id, item_kind, item_id, added_at) "
                    "VALUES (:c, :k, :i, :at)",
                    {"c": event.collection_id, "k": event.item_kind, "i": event.item_id, "at": event.at},
                )
                await _touch_collection(conn, event.collection_id, event.at, stream_version)
                await _mark_subject(conn, event.item_kind, event.item_id, event.at)
            case ev.CollectionItemRemoved():
                await _exec(
                    conn,
                    "DELETE FROM collection_items WHERE collection_id = :c AND item_id = :i",
                    {"c": event.collection_id, "i": event.item_id},
                )
                await _touch_collection(conn, event.collection_id, event.at, stream_version)
                await _mark_subject(conn, event.item_kind, event.item_id, event.at)
            case ev.CollectionDeleted():
                await _exec(
                    conn,
                    "UPDATE collections SET status = 'Deleted', updated_at = :at, stream_version = :v "
                    "WHERE collection_id = :c",
                    {"at": event.at, "c": event.collection_id, **version},
                )
                items = await conn.execute(
                    text("SELECT item_kind, item_id FROM collection_items WHERE collection_id = :c"),
                    {"c": event.collection_id},
                )
                for kind, item_id in items.all():
                    await _mark_subject(conn, kind, item_id, event.at)
            case ev.ModelStatsUpdated():
                periods = {p.period: _counts(p) for p in event.periods}
                rolling = any(any(c.values()) for period, c in periods.items() if period != Period.ALL_TIME)
                await _exec(
                    conn,
                    "INSERT INTO model_stats (model_id, stream_version, computed_at, periods, rolling_nonzero) "
                    "VALUES (:m, :v, :at, CAST(:periods AS jsonb), :rolling) ON CONFLICT (model_id) DO UPDATE SET "
                    "stream_version = excluded.stream_version, computed_at = excluded.computed_at, "
                    "periods = excluded.periods, rolling_nonzero = excluded.rolling_nonzero",
                    {
                        "m": event.model_id,
                        "at": event.computed_at,
                        "periods": json.dumps(periods, sort_keys=True),
                        "rolling": rolling,
                        **version,
                    },
                )


def stats_json(periods: Iterable[ev.PeriodStats]) -> dict[str, dict[str, int]]:
    """Counts per period as model_stats.periods stores them (what the stats job compares against)."""
    return {p.period: _counts(p) for p in periods}


def _counts(stats: ev.PeriodStats) -> dict[str, int]:
    return {k: v for k, v in dataclasses.asdict(stats).items() if k != "period"}


async def _exec(conn: AsyncConnection, sql: str, params: dict[str, Any]) -> None:
    await conn.execute(text(sql), params)


async def _insert_image(conn: AsyncConnection, event: ev.ImagePosted, stream_version: int) -> None:
    await _exec(
        conn,
        "INSERT INTO images (image_id, stream_version, owner_id, owner_name, status, gallery_version_id, "
        "gallery_model_id, blob_sha256, mime_type, size_bytes, width, height, phash, blurhash, tags, generation, "
        "created_at, updated_at) VALUES (:i, :v, :o, :on, 'Published', :gv, :gm, :sha, :mime, :size, :w, :h, "
        ":phash, :blurhash, :tags, CAST(:generation AS jsonb), :at, :at)",
        {
            "i": event.image_id,
            "v": stream_version,
            "o": event.owner_user_id,
            "on": event.owner_username,
            "gv": event.model_version_id or None,
            "gm": event.model_id or None,
            "sha": event.blob_sha256,
            "mime": event.mime_type,
            "size": event.size_bytes,
            "w": event.width,
            "h": event.height,
            "phash": event.phash,
            "blurhash": event.blurhash,
            "tags": list(event.tags),
            "generation": json.dumps(dataclasses.asdict(event.generation), sort_keys=True),
            "at": event.at,
        },
    )
    if event.resources:
        await conn.execute(
            text(
                "INSERT INTO image_resources (image_id, position, kind, name, weight, hash, hash_kind, "
                "model_version_id, model_id) VALUES (:i, :p, :kind, :name, :weight, :hash, :hash_kind, :mv, :m)"
            ),
            [
                {
                    "i": event.image_id,
                    "p": position,
                    "kind": r.kind,
                    "name": r.name,
                    "weight": r.weight,
                    "hash": r.hash,
                    "hash_kind": r.hash_kind,
                    "mv": r.model_version_id,
                    "m": r.model_id,
                }
                for position, r in enumerate(event.resources)
            ],
        )
    linked = [VersionRef(event.model_version_id, event.model_id)] if event.model_version_id else []
    linked += [VersionRef(r.model_version_id, r.model_id) for r in event.resources if r.model_version_id]
    linked = list(dict.fromkeys(linked))
    if linked:
        await conn.execute(
            text("INSERT INTO image_versions (image_id, model_version_id, model_id) VALUES (:i, :mv, :m)"),
            [{"i": event.image_id, "mv": ref.model_version_id, "m": ref.model_id} for ref in linked],
        )
    if event.request_id:
        await _request(
            conn,
            event.owner_user_id,
            "image",
            event.request_id,
            event.image_id,
            image_fingerprint(event.blob_sha256, event.model_version_id, event.tags),
        )
    await _mark_models(conn, sorted({ref.model_id for ref in linked}), event.at)


async def _link_resources(conn: AsyncConnection, event: ev.ImageResourcesLinked, stream_version: int) -> None:
    """The resources' links as the event lists them, the image's versions completed, their models' stats marked."""
    linked = [r for r in event.resources if r.model_version_id]
    await _exec(
        conn, "UPDATE images SET stream_version = :v WHERE image_id = :i", {"i": event.image_id, "v": stream_version}
    )
    if not linked:
        return
    await conn.execute(
        text(
            "UPDATE image_resources SET model_version_id = :mv, model_id = :m "
            "WHERE image_id = :i AND position = :p AND model_version_id <> :mv"
        ),
        [
            {"i": event.image_id, "p": position, "mv": r.model_version_id, "m": r.model_id}
            for position, r in enumerate(event.resources)
            if r.model_version_id
        ],
    )
    refs = list(dict.fromkeys(VersionRef(r.model_version_id, r.model_id) for r in linked))
    await conn.execute(
        text(
            "INSERT INTO image_versions (image_id, model_version_id, model_id) VALUES (:i, :mv, :m) "
            "ON CONFLICT (image_id, model_version_id) DO NOTHING"
        ),
        [{"i": event.image_id, "mv": ref.model_version_id, "m": ref.model_id} for ref in refs],
    )
    await _mark_models(conn, sorted({ref.model_id for ref in refs}), event.at)


async def _request(conn: AsyncConnection, owner: str, kind: str, request_id: str, item_id: str, digest: str) -> None:
    await _exec(
        conn,
        "INSERT INTO community_requests (owner_id, kind, request_id, item_id, fingerprint) VALUES (:o, :k, :r, :i, :f)",
        {"o": owner, "k": kind, "r": request_id, "i": item_id, "f": digest},
    )


async def _touch_collection(conn: AsyncConnection, collection_id: str, at: datetime, stream_version: int) -> None:
    await _exec(
        conn,
        "UPDATE collections SET updated_at = :at, stream_version = :v WHERE collection_id = :c",
        {"at": at, "v": stream_version, "c": collection_id},
    )


async def _mark_models(conn: AsyncConnection, model_ids: Iterable[str], at: datetime) -> None:
    rows = [{"m": m, "at": at} for m in model_ids]
    if rows:
        await conn.execute(
            text(
                "INSERT INTO stats_dirty (model_id, marked_at) VALUES (:m, :at) "
                "ON CONFLICT (model_id) DO UPDATE SET marked_at = excluded.marked_at"
            ),
            rows,
        )


async def _mark_image(conn: AsyncConnection, image_id: str, at: datetime) -> None:
    await _exec(
        conn,
        "INSERT INTO image_stats_dirty (image_id, marked_at) VALUES (:i, :at) "
        "ON CONFLICT (image_id) DO UPDATE SET marked_at = excluded.marked_at",
        {"i": image_id, "at": at},
    )


async def _mark_image_models(conn: AsyncConnection, image_id: str, at: datetime) -> None:
    result = await conn.execute(
        text("SELECT DISTINCT model_id FROM image_versions WHERE image_id = :i ORDER BY model_id"), {"i": image_id}
    )
    await _mark_models(conn, list(result.scalars()), at)


async def _mark_subject(conn: AsyncConnection, kind: str, subject_id: str, at: datetime) -> None:
    if kind == SubjectKind.MODEL:
        await _mark_models(conn, [subject_id], at)
    else:
        await _mark_image(conn, subject_id, at)
