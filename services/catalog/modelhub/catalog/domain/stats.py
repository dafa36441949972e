"""Counting periods of the model stats (Civitai's names): each period is the window that ends at the time the
counts are computed; AllTime has no start."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final


class Period(StrEnum):
    DAY = "Day"
    WEEK = "Week"
    MONTH = "Month"
    YEAR = "Year"
    ALL_TIME = "AllTime"


LENGTHS: Final[dict[Period, timedelta | None]] = {
    Period.DAY: timedelta(days=1),
    Period.WEEK: timedelta(days=7),
    Period.MONTH: timedelta(days=30),
    Period.YEAR: timedelta(days=365),
    Period.ALL_TIME: None,
}


def window_start(period: Period, now: datetime) -> datetime | None:
    """Where the period's window starts when it ends at `now` (None: the beginning of time)."""
    length = LENGTHS[period]
    return None if length is None else now - length


def stats_stream(model_id: str) -> str:
    return f"model-stats-{model_id}"
