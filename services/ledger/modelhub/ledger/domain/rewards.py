"""Reward rules: what a platform event earns in blue Buzz, and the per-user daily caps. Pure, no I/O.

A rule pays `amount` blue Buzz per unit (a review written, a version published, a download counted) to
one user, and at most `daily_cap` per user per UTC day. The day is that of the source event's
`occurred_at`, never the wall clock, so a redelivery or a replay days later counts against the same day
as the first delivery would have. A grant that would pass the cap is cut to what is left of it; at zero
it is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum

from modelhub.ledger.domain import commands
from modelhub.ledger.domain.commands import RawLeg, TransferCommand
from modelhub.ledger.domain.model import INT64_MAX, Currency, Owner, SystemAccount, TransferType

KEY_PREFIX = "reward:"


class RewardRule(StrEnum):
    REVIEW_WRITTEN = "review-written"
    """The reviewer earns per review."""
    VERSION_PUBLISHED = "version-published"
    """The creator earns per model version published."""
    DOWNLOADS = "downloads"
    """The creator earns per download of their model versions."""


@dataclass(frozen=True)
class RuleTerms:
    amount: int
    """Blue Buzz per unit; 0 turns the rule off."""
    daily_cap: int
    """The most blue Buzz one user earns from the rule per UTC day; 0 turns the rule off."""

    def __post_init__(self) -> None:
        if not 0 <= self.amount <= INT64_MAX or not 0 <= self.daily_cap <= INT64_MAX:
            raise ValueError("reward amounts and caps must be between 0 and 2^63-1")


@dataclass(frozen=True)
class RewardPolicy:
    terms: Mapping[RewardRule, RuleTerms]

    def terms_of(self, rule: RewardRule) -> RuleTerms:
        return self.terms.get(rule, RuleTerms(0, 0))


@dataclass(frozen=True)
class Reward:
    """What one source event claims, before the cap: `units` of `rule` for `user_id` on `day` (UTC)."""

    rule: RewardRule
    user_id: str
    units: int
    day: date
    source_event_id: str
    source_event_type: str
    subject: Mapping[str, str]
    """Ids of what is rewarded (review_id, model_version_id, ...), kept in the transfer's metadata."""


def reward_day(occurred_at: datetime) -> date:
    """The UTC day an event counts against."""
    if occurred_at.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    return occurred_at.astimezone(UTC).date()


def requested_amount(terms: RuleTerms, units: int) -> int:
    """What `units` earn before the cap (saturating at int64: a huge count only reaches the cap)."""
    if units <= 0 or terms.amount == 0:
        return 0
    return min(units * terms.amount, INT64_MAX)


def capped_grant(requested: int, granted_today: int, daily_cap: int) -> int:
    """The part of `requested` still under the cap, given what the user already got from the rule today.

    Never negative; `granted_today` may exceed the cap (the cap was lowered, or a grant was caught up
    after a crash, see entrypoints/consumers.py): then nothing is left.
    """
    if requested <= 0:
        return 0
    return max(0, min(requested, daily_cap - granted_today))


def reward_key(source_event_id: str) -> str:
    """The idempotency key of the grant for a source event: one grant per event, whatever is redelivered."""
    return f"{KEY_PREFIX}{source_event_id}"


def reward_command(reward: Reward, amount: int) -> TransferCommand:
    """The REWARD transfer of `amount` blue Buzz from the mint to the user, keyed by the source event.

    Memo and metadata depend only on the event, so a retry of the same grant has the same fingerprint.
    """
    metadata = {
        "rule": reward.rule.value,
        "day": reward.day.isoformat(),
        "source_event_id": reward.source_event_id,
        "source_event_type": reward.source_event_type,
        **reward.subject,
    }
    return commands.transfer_command(
        reward_key(reward.source_event_id),
        [
            RawLeg(
                TransferType.REWARD,
                Currency.BLUE,
                Owner.system(SystemAccount.MINT),
                Owner.user(reward.user_id),
                amount,
            )
        ],
        memo=f"reward: {reward.rule.value}",
        metadata=metadata,
    )
