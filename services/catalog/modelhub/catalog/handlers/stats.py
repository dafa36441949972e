"""Counts: live model stats for GetModelStats, and the job that emits them as events.

The job (`run_once`, every `stats_interval_seconds`) turns many small changes into few events: writes only
mark a model or image as changed (stats_dirty, image_stats_dirty; downloads by a trigger); each run recounts
the marked ones, plus models whose shrinking windows (Day, Week, ...) were last counted over `refresh_after`
ago, and appends catalog.ModelStatsUpdated (stream "model-stats-<id>") or a new catalog.ImageSnapshot only
when the absolute counts differ from the last ones emitted. A favourite storm on one model is one event per
interval.

Crash and concurrency: each model is one transaction that clears its mark, recounts, and appends; a crash
rolls all three back, so the mark stays and the next run does it again. Counts are absolute, so recounting is
idempotent. A writer marking the model meanwhile holds the mark's row lock until it commits; clearing the
mark waits for it, so its change is counted now or its mark survives for the next run (never lost). Two jobs
on one model: the second's append conflicts, it recounts, finds the counts emitted, and appends nothing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modelhub.catalog.adapters import community_queries as q
from modelhub.catalog.adapters.community_events import to_payload
from modelhub.catalog.adapters.community_projection import stats_json
from modelhub.catalog.adapters.community_repository import CommunityRepository
from modelhub.catalog.domain.commands import Actor
from modelhub.catalog.domain.community_events import ModelStatsUpdated, PeriodStats
from modelhub.catalog.domain.gallery import ImageStatus
from modelhub.catalog.domain.model import can_see
from modelhub.catalog.domain.stats import Period, stats_stream
from modelhub.catalog.handlers import Clock, utcnow
from modelhub.catalog.handlers.community_support import UseCases, visible_model
from modelhub.core.events.store import EventStore

log = logging.getLogger(__name__)

DEFAULT_REFRESH: Final = timedelta(hours=1)
DEFAULT_BATCH: Final = 200


@dataclass(frozen=True)
class ModelStatsView:
    model_id: str
    periods: tuple[PeriodStats, ...]
    versions: list[q.VersionCounts]
    """Versions the caller may see, newest first."""
    computed_at: datetime


def period_stats(counts: dict[str, dict[Period, int]]) -> tuple[PeriodStats, ...]:
    """Counts per period as the event carries them; tipped_amount stays 0 until the ledger feeds tips."""
    return tuple(
        PeriodStats(
            period=period.value,
            downloads=counts["downloads"][period],
            favorites=counts["favorites"][period],
            thumbs_up=counts["thumbs_up"][period],
            thumbs_down=counts["thumbs_down"][period],
            comments=counts["comments"][period],
            images=counts["images"][period],
            collected=counts["collected"][period],
        )
        for period in Period
    )


class Stats(UseCases):
    def __init__(
        self,
        engine: AsyncEngine,
        store: EventStore,
        *,
        clock: Clock = utcnow,
        refresh_after: timedelta = DEFAULT_REFRESH,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        super().__init__(engine, store, clock=clock)
        self.refresh_after = refresh_after
        self.batch = batch

    async def model_stats(self, actor: Actor | None, model_id: str) -> ModelStatsView:
        """Live counts of a model the actor may see."""
        now = self.clock()

        async def read(conn: AsyncConnection) -> ModelStatsView:
            model = await visible_model(conn, actor, model_id)
            periods = period_stats(await q.model_period_counts(conn, model_id, now))
            versions = [
                v
                for v, status in await q.model_versions(conn, model_id)
                if can_see(actor, model.owner_id, model.status, status)
            ]
            by_version = await q.version_counts(conn, versions)
            return ModelStatsView(model_id, periods, [by_version[v] for v in versions], now)

        return await self.read(read)

    async def run_once(self) -> int:
        """One round of the job; returns how many models and images it recounted (the service's loop runs it
        again at once while there were any: each one recounted leaves the queue, so the loop ends; one that
        fails is counted out, so a poison item cannot keep the loop spinning)."""
        now = self.clock()
        async with self.engine.connect() as conn:
            models = await q.stats_candidates(conn, now - self.refresh_after, self.batch)
            images = await q.dirty_images(conn, self.batch)
        done = 0
        for model_id in models:
            done += await self._attempt(functools.partial(self._emit_model, model_id=model_id, now=now), model_id)
        for image_id in images:
            done += await self._attempt(functools.partial(self._emit_image, image_id=image_id), image_id)
        return done

    async def _attempt(self, work: Callable[[CommunityRepository, datetime], Awaitable[int]], item: str) -> int:
        """1 when `work` committed; 0 when it failed (logged; its mark stays for the next round, and the items
        after it are not held up)."""
        try:
            await self.run(None, work)
        except Exception:
            log.exception("recounting %s failed; it stays marked for the next round", item)
            return 0
        return 1

    async def _emit_model(self, repo: CommunityRepository, _at: datetime, *, model_id: str, now: datetime) -> int:
        await q.take_dirty_model(repo.conn, model_id)
        model = await q.model_access(repo.conn, model_id)
        if model is None or model.status == "Deleted":
            await q.record_check(repo.conn, model_id, now)
            return 0
        periods = period_stats(await q.model_period_counts(repo.conn, model_id, now))
        last = await q.emitted_stats(repo.conn, model_id)
        if last is not None and last.periods == stats_json(periods):
            await q.record_check(repo.conn, model_id, now)
            return 0
        event = ModelStatsUpdated(model_id, periods, now)
        await repo.append(stats_stream(model_id), [(to_payload(event), event)], last.version if last else 0)
        return 1

    async def _emit_image(self, repo: CommunityRepository, _at: datetime, *, image_id: str) -> int:
        await q.take_dirty_image(repo.conn, image_id)
        image = await repo.load_image(image_id)
        if not image.exists or image.status == ImageStatus.DELETED:
            return 0
        return 1 if await repo.save_image(image) else 0
