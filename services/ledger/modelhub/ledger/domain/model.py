"""The ledger's vocabulary: currencies, accounts, transfer types, legs. Pure values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

INT64_MAX = 2**63 - 1


class Currency(StrEnum):
    YELLOW = "yellow"
    """Bought or earned; transferable."""
    BLUE = "blue"
    """Generation only; never tippable."""


class OwnerKind(StrEnum):
    USER = "user"
    SYSTEM = "system"


class SystemAccount(StrEnum):
    MINT = "mint"
    PLATFORM_FEES = "platform-fees"
    BOUNTY_ESCROW = "bounty-escrow"
    GENERATION_ESCROW = "generation-escrow"


class TransferType(StrEnum):
    TIP = "TIP"
    GENERATION = "GENERATION"
    REWARD = "REWARD"
    PURCHASE = "PURCHASE"
    REFUND = "REFUND"
    BOUNTY = "BOUNTY"
    BOUNTY_ENTRY = "BOUNTY_ENTRY"
    FEE = "FEE"
    COMPENSATION = "COMPENSATION"
    BOUNTY_AWARD = "BOUNTY_AWARD"
    CHARGEBACK = "CHARGEBACK"


@dataclass(frozen=True, order=True)
class Owner:
    """Who owns an account: a user (by id) or the platform (a system account name)."""

    kind: OwnerKind
    name: str

    @classmethod
    def user(cls, user_id: str) -> Owner:
        return cls(OwnerKind.USER, user_id)

    @classmethod
    def system(cls, account: SystemAccount) -> Owner:
        return cls(OwnerKind.SYSTEM, account.value)

    @classmethod
    def parse(cls, text: str) -> Owner:
        kind, _, name = text.partition(":")
        return cls(OwnerKind(kind), name)

    @property
    def is_user(self) -> bool:
        return self.kind is OwnerKind.USER

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}"


@dataclass(frozen=True, order=True)
class AccountKey:
    """One account: an owner's balance in one currency."""

    owner: Owner
    currency: Currency

    def __str__(self) -> str:
        return f"{self.owner}/{self.currency.value}"


def floor_of(owner: Owner) -> int | None:
    """The lowest balance an account may reach (posted - pending); None = no limit (the mint only)."""
    if owner == Owner.system(SystemAccount.MINT):
        return None
    return 0


@dataclass(frozen=True)
class Leg:
    """One movement of `amount` of `currency` from `debit` to `credit`."""

    type: TransferType
    currency: Currency
    debit: Owner
    credit: Owner
    amount: int

    @property
    def debit_key(self) -> AccountKey:
        return AccountKey(self.debit, self.currency)

    @property
    def credit_key(self) -> AccountKey:
        return AccountKey(self.credit, self.currency)


@dataclass(frozen=True)
class BalanceState:
    """An account's balance as locked in the current transaction."""

    account_id: int
    key: AccountKey
    posted: int
    pending: int
    floor: int | None

    @property
    def available(self) -> int:
        return self.posted - self.pending
