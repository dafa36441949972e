"""Reads of the gallery and community read models (catalog_0003), and of the model read models they depend
on (visibility of models and versions, files by hash or name for resource linking, download counts).

Visibility is decided in SQL where lists are paged (so a page is never short because items were dropped
after the query), with the rules of domain/model.py and domain/community_base.py. `viewer` is the caller's
id ("" for anonymous callers: no item has an empty owner) and `privileged` whether it is a moderator/admin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection

from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.community_events import GenerationSettings, ImageResource
from modelhub.catalog.domain.gallery import ImageCounts, VersionRef
from modelhub.catalog.domain.stats import LENGTHS, Period

NAME_KEY_SQL: Final = r"lower(regexp_replace({column}, '^.*/|\.[A-Za-z0-9]{{1,12}}$', '', 'g'))"
"""domain.gallery.name_key in SQL, exactly as the index model_files_by_name_key (catalog_0003) has it."""

VERSION_VISIBLE: Final = """EXISTS (SELECT 1 FROM model_versions vv JOIN models vm ON vm.model_id = vv.model_id
    WHERE vv.model_version_id = {column}
      AND (:privileged OR vm.owner_id = :viewer OR (vm.status = 'Published' AND vv.status = 'Published')))"""
MODEL_VISIBLE: Final = """EXISTS (SELECT 1 FROM models mm WHERE mm.model_id = {column}
    AND (:privileged OR mm.owner_id = :viewer OR mm.status = 'Published'))"""
IMAGE_VISIBLE: Final = (
    "({alias}.owner_id = :viewer OR :privileged OR ({alias}.status = 'Published' AND "
    "({alias}.gallery_version_id IS NULL OR " + VERSION_VISIBLE.format(column="{alias}.gallery_version_id") + ")))"
)
COLLECTION_VISIBLE: Final = (
    "({alias}.owner_id = :viewer OR :privileged OR ({alias}.status = 'Active' AND {alias}.visibility <> 'Private'))"
)


def viewer_params(actor: Actor | None) -> dict[str, Any]:
    return {"viewer": actor.id if actor else "", "privileged": bool(actor and actor.privileged)}


# -- rows -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRow:
    image_id: str
    version: int
    owner_id: str
    owner_name: str
    status: str
    gallery_version_id: str
    gallery_model_id: str
    blob_sha256: str
    mime_type: str
    size_bytes: int
    width: int
    height: int
    phash: str
    blurhash: str
    nsfw_level: int
    tags: tuple[str, ...]
    generation: GenerationSettings
    resources: tuple[ImageResource, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ReviewRow:
    review_id: str
    version: int
    model_id: str
    model_version_id: str
    author_id: str
    author_name: str
    recommended: bool
    text: str
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class CommentRow:
    comment_id: str
    version: int
    subject_kind: str
    subject_id: str
    parent_comment_id: str
    author_id: str
    author_name: str
    body: str
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class CollectionRow:
    collection_id: str
    version: int
    owner_id: str
    owner_name: str
    name: str
    description: str
    visibility: str
    item_kind: str
    status: str
    item_count: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Edge:
    """A favourite (kind, id of the target) or a follow (follower, followee), with when it was made."""

    first: str
    second: str
    created_at: datetime


def _image(row: RowMapping, resources: Sequence[RowMapping]) -> ImageRow:
    return ImageRow(
        image_id=row["image_id"],
        version=row["stream_version"],
        owner_id=row["owner_id"],
        owner_name=row["owner_name"],
        status=row["status"],
        gallery_version_id=row["gallery_version_id"] or "",
        gallery_model_id=row["gallery_model_id"] or "",
        blob_sha256=row["blob_sha256"],
        mime_type=row["mime_type"],
        size_bytes=row["size_bytes"],
        width=row["width"],
        height=row["height"],
        phash=row["phash"],
        blurhash=row["blurhash"],
        nsfw_level=row["nsfw_level"],
        tags=tuple(row["tags"]),
        generation=GenerationSettings(**row["generation"]),
        resources=tuple(
            ImageResource(
                r["kind"], r["name"], r["weight"], r["hash"], r["hash_kind"], r["model_version_id"], r["model_id"]
            )
            for r in resources
        ),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def _images(conn: AsyncConnection, where: str, params: dict[str, Any], limit: int = 1) -> list[ImageRow]:
    rows = list(
        (
            await conn.execute(
                text(f"SELECT i.* FROM images i WHERE {where} ORDER BY i.image_id DESC LIMIT :limit"),
                {**params, "limit": limit},
            )
        ).mappings()
    )
    if not rows:
        return []
    resources: dict[str, list[RowMapping]] = {}
    result = await conn.execute(
        text("SELECT * FROM image_resources WHERE image_id = ANY(:ids) ORDER BY image_id, position"),
        {"ids": [r["image_id"] for r in rows]},
    )
    for r in result.mappings():
        resources.setdefault(r["image_id"], []).append(r)
    return [_image(r, resources.get(r["image_id"], [])) for r in rows]


async def image(conn: AsyncConnection, image_id: str) -> ImageRow | None:
    """An image whatever its visibility (the caller decides with `image_visible`)."""
    found = await _images(conn, "i.image_id = :id", {"id": image_id})
    return found[0] if found else None


async def image_visible(conn: AsyncConnection, image_id: str, actor: Actor | None) -> bool:
    sql = f"SELECT {IMAGE_VISIBLE.format(alias='i')} FROM images i WHERE i.image_id = :id"
    return bool((await conn.execute(text(sql), {"id": image_id, **viewer_params(actor)})).scalar())


async def visible_versions(conn: AsyncConnection, version_ids: Sequence[str], actor: Actor | None) -> set[str]:
    """Which of `version_ids` the actor may see."""
    sql = f"SELECT v FROM unnest(CAST(:ids AS text[])) AS v WHERE {VERSION_VISIBLE.format(column='v')}"
    result = await conn.execute(text(sql), {"ids": list(version_ids), **viewer_params(actor)})
    return {str(v) for v in result.scalars()}


async def list_images(
    conn: AsyncConnection, by: str, key: str, actor: Actor | None, after: str | None, limit: int
) -> list[ImageRow]:
    """Visible, not deleted images of a version ("version"), a model ("model") or a user ("user"), newest first."""
    scope = {
        "version": "i.image_id IN (SELECT image_id FROM image_versions WHERE model_version_id = :key)",
        "model": "i.image_id IN (SELECT image_id FROM image_versions WHERE model_id = :key)",
        "user": "i.owner_id = :key",
    }[by]
    where = (
        f"{scope} AND i.status <> 'Deleted' AND {IMAGE_VISIBLE.format(alias='i')} "
        "AND (CAST(:after AS text) IS NULL OR i.image_id < :after)"
    )
    return await _images(conn, where, {"key": key, "after": after, **viewer_params(actor)}, limit)


async def referenced_image_blobs(conn: AsyncConnection, candidates: Sequence[str]) -> set[str]:
    """Which of `candidates` (SHA256, upper case) an image that is not Deleted still uses: as its file, or as its
    ComfyUI prompt or workflow JSON. Hidden images keep theirs (their owner may show them again).

    One probe per candidate of the partial indexes of catalog_0005, which leave Deleted images out. Written as
    EXISTS per candidate: with `column = ANY(:c)` the planner read the whole table for the jsonb columns (220 ms
    instead of 6 ms for 1,000 candidates among 200,000 images)."""
    result = await conn.execute(
        text(
            """
            SELECT c.sha FROM unnest(CAST(:c AS text[])) AS c(sha)
            WHERE EXISTS (SELECT 1 FROM images i WHERE i.status <> 'Deleted' AND i.blob_sha256 = c.sha)
               OR EXISTS (SELECT 1 FROM images i WHERE i.status <> 'Deleted'
                          AND i.generation->>'comfyui_prompt_sha256' <> ''
                          AND i.generation->>'comfyui_prompt_sha256' = c.sha)
               OR EXISTS (SELECT 1 FROM images i WHERE i.status <> 'Deleted'
                          AND i.generation->>'comfyui_workflow_sha256' <> ''
                          AND i.generation->>'comfyui_workflow_sha256' = c.sha)
            """
        ),
        {"c": list(candidates)},
    )
    return {str(s) for s in result.scalars()}


# -- linking resources ------------------------------------------------------------------------------------

_LINKABLE: Final = """JOIN model_versions v ON v.model_version_id = f.model_version_id
    JOIN models m ON m.model_id = f.model_id
    WHERE v.status <> 'Deleted' AND m.status <> 'Deleted'
      AND (:privileged OR m.owner_id = :viewer OR (m.status = 'Published' AND v.status = 'Published'))"""


async def versions_by_hash(conn: AsyncConnection, value: str, kind: str, actor: Actor) -> list[VersionRef]:
    """Visible, live versions with a file whose hash of `kind` is `value` (upper-case hex). A 12-digit "AutoV3"
    (A1111's "Lora hashes", "TI hashes") matches the first 12 digits of a file's AutoV3 (a safetensors LoRA) or
    of its SHA256 (other LoRAs; embeddings of any format), on the prefix indexes of catalog_0003 and 0004."""
    if kind == "AutoV3":
        match = (
            "f.file_id IN (SELECT file_id FROM file_hashes WHERE kind = 'AutoV3' AND left(upper(value), 12) = :value "
            "UNION SELECT file_id FROM file_hashes WHERE kind = 'SHA256' AND left(upper(value), 12) = :value)"
        )
    else:
        match = "f.file_id IN (SELECT file_id FROM file_hashes WHERE upper(value) = :value AND kind = :kind)"
    sql = f"SELECT DISTINCT f.model_version_id, f.model_id FROM model_files f {_LINKABLE} AND {match}"
    result = await conn.execute(text(sql), {"value": value, "kind": kind, **viewer_params(actor)})
    return [VersionRef(r.model_version_id, r.model_id) for r in result]


async def versions_by_name(conn: AsyncConnection, key: str, actor: Actor) -> list[VersionRef]:
    """Visible, live versions with a file whose name key (domain.gallery.name_key) is `key`."""
    sql = (
        f"SELECT DISTINCT f.model_version_id, f.model_id FROM model_files f {_LINKABLE} "
        f"AND {NAME_KEY_SQL.format(column='f.name')} = :key LIMIT 2"
    )
    result = await conn.execute(text(sql), {"key": key, **viewer_params(actor)})
    return [VersionRef(r.model_version_id, r.model_id) for r in result]


# -- models and versions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelAccess:
    model_id: str
    owner_id: str
    status: str


async def model_access(conn: AsyncConnection, model_id: str) -> ModelAccess | None:
    row = (
        await conn.execute(text("SELECT model_id, owner_id, status FROM models WHERE model_id = :m"), {"m": model_id})
    ).first()
    return None if row is None else ModelAccess(row.model_id, row.owner_id, row.status)


async def model_versions(conn: AsyncConnection, model_id: str) -> list[tuple[str, str]]:
    """(version id, status) of a model's versions, newest first."""
    result = await conn.execute(
        text("SELECT model_version_id, status FROM model_versions WHERE model_id = :m ORDER BY position DESC"),
        {"m": model_id},
    )
    return [(r.model_version_id, r.status) for r in result]


# -- reviews, comments ------------------------------------------------------------------------------------


def _review(row: RowMapping) -> ReviewRow:
    return ReviewRow(
        row["review_id"],
        row["stream_version"],
        row["model_id"],
        row["model_version_id"],
        row["author_id"],
        row["author_name"],
        row["recommended"],
        row["text"],
        row["status"],
        row["created_at"],
        row["updated_at"],
    )


async def review(conn: AsyncConnection, review_id: str) -> ReviewRow | None:
    row = (await conn.execute(text("SELECT * FROM reviews WHERE review_id = :r"), {"r": review_id})).mappings().first()
    return None if row is None else _review(row)


async def list_reviews(conn: AsyncConnection, column: str, key: str, after: str | None, limit: int) -> list[ReviewRow]:
    """Active reviews of a version (column model_version_id) or a model (model_id), newest first."""
    assert column in ("model_version_id", "model_id")
    result = await conn.execute(
        text(
            f"SELECT * FROM reviews WHERE {column} = :key AND status = 'Active' "
            "AND (CAST(:after AS text) IS NULL OR review_id < :after) ORDER BY review_id DESC LIMIT :limit"
        ),
        {"key": key, "after": after, "limit": limit},
    )
    return [_review(r) for r in result.mappings()]


def _comment(row: RowMapping) -> CommentRow:
    return CommentRow(
        row["comment_id"],
        row["stream_version"],
        row["subject_kind"],
        row["subject_id"],
        row["parent_comment_id"],
        row["author_id"],
        row["author_name"],
        row["body"],
        row["status"],
        row["created_at"],
        row["updated_at"],
    )


async def comment(conn: AsyncConnection, comment_id: str) -> CommentRow | None:
    row = (
        (await conn.execute(text("SELECT * FROM comments WHERE comment_id = :c"), {"c": comment_id})).mappings().first()
    )
    return None if row is None else _comment(row)


async def list_comments(
    conn: AsyncConnection, kind: str, subject_id: str, after: str | None, limit: int
) -> list[CommentRow]:
    """A subject's comments (deleted ones as placeholders), oldest first."""
    result = await conn.execute(
        text(
            "SELECT * FROM comments WHERE subject_kind = :kind AND subject_id = :id "
            "AND (CAST(:after AS text) IS NULL OR comment_id > :after) ORDER BY comment_id LIMIT :limit"
        ),
        {"kind": kind, "id": subject_id, "after": after, "limit": limit},
    )
    return [_comment(r) for r in result.mappings()]


# -- favourites and follows -------------------------------------------------------------------------------


async def list_favorites(
    conn: AsyncConnection, actor: Actor, kind: str | None, after: tuple[datetime, str] | None, limit: int
) -> list[Edge]:
    """The actor's favourites of items it may still see, newest first; `after` is (created_at, target id)."""
    sql = f"""
        SELECT f.target_kind, f.target_id, f.created_at FROM favorites f
        WHERE f.user_id = :viewer AND (CAST(:kind AS text) IS NULL OR f.target_kind = :kind)
          AND (CAST(:at AS timestamptz) IS NULL OR (f.created_at, f.target_id) < (:at, :id))
          AND CASE f.target_kind
              WHEN 'model' THEN {MODEL_VISIBLE.format(column="f.target_id")}
              ELSE EXISTS (SELECT 1 FROM images i WHERE i.image_id = f.target_id
                           AND {IMAGE_VISIBLE.format(alias="i")} AND i.status <> 'Deleted') END
        ORDER BY f.created_at DESC, f.target_id DESC LIMIT :limit
    """
    at, item = after or (None, None)
    result = await conn.execute(text(sql), {"kind": kind, "at": at, "id": item, "limit": limit, **viewer_params(actor)})
    return [Edge(r.target_kind, r.target_id, r.created_at) for r in result]


async def list_follows(
    conn: AsyncConnection, user_id: str, followers: bool, after: tuple[datetime, str] | None, limit: int
) -> list[Edge]:
    """Whom `user_id` follows (or who follows them), newest first; `after` is (created_at, the other id)."""
    mine, other = ("followee_id", "follower_id") if followers else ("follower_id", "followee_id")
    at, item = after or (None, None)
    result = await conn.execute(
        text(
            f"SELECT follower_id, followee_id, created_at FROM follows WHERE {mine} = :user "
            f"AND (CAST(:at AS timestamptz) IS NULL OR (created_at, {other}) < (:at, :id)) "
            f"ORDER BY created_at DESC, {other} DESC LIMIT :limit"
        ),
        {"user": user_id, "at": at, "id": item, "limit": limit},
    )
    return [Edge(r.follower_id, r.followee_id, r.created_at) for r in result]


# -- collections ------------------------------------------------------------------------------------------

_COLLECTION_COLUMNS: Final = (
    "c.*, (SELECT count(*) FROM collection_items ci WHERE ci.collection_id = c.collection_id) AS item_count"
)


def _collection(row: RowMapping) -> CollectionRow:
    return CollectionRow(
        row["collection_id"],
        row["stream_version"],
        row["owner_id"],
        row["owner_name"],
        row["name"],
        row["description"],
        row["visibility"],
        row["item_kind"],
        row["status"],
        row["item_count"],
        row["created_at"],
        row["updated_at"],
    )


async def collection(conn: AsyncConnection, collection_id: str) -> CollectionRow | None:
    row = (
        (
            await conn.execute(
                text(f"SELECT {_COLLECTION_COLUMNS} FROM collections c WHERE c.collection_id = :c"),
                {"c": collection_id},
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _collection(row)


async def list_collections(
    conn: AsyncConnection, owner_id: str, actor: Actor | None, after: str | None, limit: int
) -> list[CollectionRow]:
    """A user's collections: all but deleted ones for the owner and privileged users, Public ones for others."""
    mine = actor is not None and (actor.privileged or actor.id == owner_id)
    shown = "c.status = 'Active'" if mine else "c.status = 'Active' AND c.visibility = 'Public'"
    result = await conn.execute(
        text(
            f"SELECT {_COLLECTION_COLUMNS} FROM collections c WHERE c.owner_id = :o AND {shown} "
            "AND (CAST(:after AS text) IS NULL OR c.collection_id < :after) ORDER BY c.collection_id DESC LIMIT :limit"
        ),
        {"o": owner_id, "after": after, "limit": limit},
    )
    return [_collection(r) for r in result.mappings()]


async def list_collection_items(
    conn: AsyncConnection, collection_id: str, actor: Actor | None, after: tuple[datetime, str] | None, limit: int
) -> list[Edge]:
    """Items of a collection the actor may see, newest first: Edge(kind, item id, added at)."""
    sql = f"""
        SELECT ci.item_kind, ci.item_id, ci.added_at FROM collection_items ci
        WHERE ci.collection_id = :c
          AND (CAST(:at AS timestamptz) IS NULL OR (ci.added_at, ci.item_id) < (:at, :id))
          AND CASE ci.item_kind
              WHEN 'model' THEN {MODEL_VISIBLE.format(column="ci.item_id")}
              ELSE EXISTS (SELECT 1 FROM images i WHERE i.image_id = ci.item_id
                           AND {IMAGE_VISIBLE.format(alias="i")} AND i.status <> 'Deleted') END
        ORDER BY ci.added_at DESC, ci.item_id DESC LIMIT :limit
    """
    at, item = after or (None, None)
    result = await conn.execute(
        text(sql), {"c": collection_id, "at": at, "id": item, "limit": limit, **viewer_params(actor)}
    )
    return [Edge(r.item_kind, r.item_id, r.added_at) for r in result]


# -- idempotent creation ----------------------------------------------------------------------------------


async def created_by_request(
    conn: AsyncConnection, owner_id: str, kind: str, request_id: str
) -> tuple[str, str] | None:
    """(item id, fingerprint) of an earlier creation with this request id, if any."""
    row = (
        await conn.execute(
            text(
                "SELECT item_id, fingerprint FROM community_requests "
                "WHERE owner_id = :o AND kind = :k AND request_id = :r"
            ),
            {"o": owner_id, "k": kind, "r": request_id},
        )
    ).first()
    return None if row is None else (row.item_id, row.fingerprint)


# -- counts -----------------------------------------------------------------------------------------------


async def image_counts(conn: AsyncConnection, image_id: str) -> ImageCounts:
    """Favourites, live comments, and live collections holding the image."""
    row = (
        await conn.execute(
            text(
                """
                SELECT
                  (SELECT count(*) FROM favorites WHERE target_kind = 'image' AND target_id = :i) AS reactions,
                  (SELECT count(*) FROM comments WHERE subject_kind = 'image' AND subject_id = :i
                     AND status = 'Active') AS comments,
                  (SELECT count(*) FROM collection_items ci JOIN collections c USING (collection_id)
                     WHERE ci.item_kind = 'image' AND ci.item_id = :i AND c.status = 'Active') AS collected
                """
            ),
            {"i": image_id},
        )
    ).one()
    return ImageCounts(row.reactions, row.comments, row.collected)


_WINDOWS: Final = [(p, p.value.lower()) for p in Period]


def _per_period(aggregate: str, time_column: str) -> str:
    """One column per period: `aggregate` over the rows inside the period's window (0 when there are none)."""
    columns = []
    for period, name in _WINDOWS:
        condition = "true" if LENGTHS[period] is None else f"{time_column} >= :start_{name}"
        columns.append(f"CAST(coalesce({aggregate} FILTER (WHERE {condition}), 0) AS bigint) AS {name}")
    return ", ".join(columns)


async def model_period_counts(conn: AsyncConnection, model_id: str, now: datetime) -> dict[str, dict[Period, int]]:
    """Each count of a model per period ending at `now`: {count name: {period: value}}."""
    params: dict[str, Any] = {"m": model_id}
    for period, name in _WINDOWS:
        length = LENGTHS[period]
        if length is not None:
            params[f"start_{name}"] = now - length
    queries = {
        "downloads": (f"SELECT {_per_period('sum(count)', 'window_start')} FROM download_counts WHERE model_id = :m"),
        "favorites": (
            f"SELECT {_per_period('count(*)', 'created_at')} FROM favorites "
            "WHERE target_kind = 'model' AND target_id = :m"
        ),
        "thumbs_up": (
            f"SELECT {_per_period('count(*)', 'created_at')} FROM reviews "
            "WHERE model_id = :m AND status = 'Active' AND recommended"
        ),
        "thumbs_down": (
            f"SELECT {_per_period('count(*)', 'created_at')} FROM reviews "
            "WHERE model_id = :m AND status = 'Active' AND NOT recommended"
        ),
        "comments": (
            f"SELECT {_per_period('count(*)', 'created_at')} FROM comments "
            "WHERE subject_kind = 'model' AND subject_id = :m AND status = 'Active'"
        ),
        "images": (
            f"SELECT {_per_period('count(*)', 'i.created_at')} FROM images i WHERE i.status = 'Published' "
            "AND i.image_id IN (SELECT image_id FROM image_versions WHERE model_id = :m)"
        ),
        "collected": (
            f"SELECT {_per_period('count(DISTINCT ci.collection_id)', 'ci.added_at')} FROM collection_items ci "
            "JOIN collections c USING (collection_id) WHERE ci.item_kind = 'model' AND ci.item_id = :m "
            "AND c.status = 'Active'"
        ),
    }
    counts: dict[str, dict[Period, int]] = {}
    for count, sql in queries.items():
        row = (await conn.execute(text(sql), params)).mappings().one()
        counts[count] = {period: int(row[name]) for period, name in _WINDOWS}
    return counts


@dataclass(frozen=True)
class VersionCounts:
    model_version_id: str
    downloads: int
    thumbs_up: int
    thumbs_down: int
    images: int


async def version_counts(conn: AsyncConnection, version_ids: Sequence[str]) -> dict[str, VersionCounts]:
    """All-time counts per version."""
    result = await conn.execute(
        text(
            """
            SELECT v AS model_version_id,
              (SELECT CAST(coalesce(sum(count), 0) AS bigint) FROM download_counts d
                 WHERE d.model_version_id = v) AS downloads,
              (SELECT count(*) FROM reviews r WHERE r.model_version_id = v AND r.status = 'Active'
                 AND r.recommended) AS thumbs_up,
              (SELECT count(*) FROM reviews r WHERE r.model_version_id = v AND r.status = 'Active'
                 AND NOT r.recommended) AS thumbs_down,
              (SELECT count(*) FROM image_versions iv JOIN images i USING (image_id)
                 WHERE iv.model_version_id = v AND i.status = 'Published') AS images
            FROM unnest(CAST(:ids AS text[])) AS v
            """
        ),
        {"ids": list(version_ids)},
    )
    return {
        r.model_version_id: VersionCounts(r.model_version_id, r.downloads, r.thumbs_up, r.thumbs_down, r.images)
        for r in result
    }


# -- the stats job's queues -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmittedStats:
    """The model's last catalog.ModelStatsUpdated (its stream version and counts)."""

    version: int
    periods: dict[str, dict[str, int]]


async def emitted_stats(conn: AsyncConnection, model_id: str) -> EmittedStats | None:
    row = (
        await conn.execute(text("SELECT stream_version, periods FROM model_stats WHERE model_id = :m"), {"m": model_id})
    ).first()
    return None if row is None else EmittedStats(row.stream_version, row.periods)


async def stats_candidates(conn: AsyncConnection, refresh_before: datetime, limit: int) -> list[str]:
    """Models marked dirty, and models whose shrinking windows (Day, ...) were last counted (emitted or checked)
    before `refresh_before`."""
    result = await conn.execute(
        text(
            """
            (SELECT model_id FROM stats_dirty ORDER BY marked_at LIMIT :limit)
            UNION
            (SELECT s.model_id FROM model_stats s LEFT JOIN model_stats_checks c USING (model_id)
             WHERE s.rolling_nonzero AND s.computed_at < :before AND coalesce(c.checked_at, s.computed_at) < :before
             ORDER BY s.computed_at LIMIT :limit)
            """
        ),
        {"before": refresh_before, "limit": limit},
    )
    return sorted(str(m) for m in result.scalars())


async def take_dirty_model(conn: AsyncConnection, model_id: str) -> None:
    """Clear the model's mark inside the job's transaction: a writer marking it meanwhile holds the mark's row
    lock until it commits, so this waits for it and the counts read after it include that write."""
    await conn.execute(text("DELETE FROM stats_dirty WHERE model_id = :m"), {"m": model_id})


async def record_check(conn: AsyncConnection, model_id: str, at: datetime) -> None:
    """The job recounted the model at `at` and found its emitted counts still right."""
    await conn.execute(
        text(
            "INSERT INTO model_stats_checks (model_id, checked_at) VALUES (:m, :at) "
            "ON CONFLICT (model_id) DO UPDATE SET checked_at = excluded.checked_at"
        ),
        {"m": model_id, "at": at},
    )


async def dirty_images(conn: AsyncConnection, limit: int) -> list[str]:
    result = await conn.execute(
        text("SELECT image_id FROM image_stats_dirty ORDER BY marked_at LIMIT :limit"), {"limit": limit}
    )
    return [str(i) for i in result.scalars()]


async def take_dirty_image(conn: AsyncConnection, image_id: str) -> None:
    await conn.execute(text("DELETE FROM image_stats_dirty WHERE image_id = :i"), {"i": image_id})
