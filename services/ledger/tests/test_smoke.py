from modelhub.ledger.domain.model import Currency
from modelhub.ledger.handlers import Ledger

from .helpers import MINT, balance, fund, leg, transfer, user


async def test_fund_and_tip(ledger: Ledger) -> None:
    await fund(ledger, "alice", 100)
    records = await ledger.transfer(
        __import__("modelhub.ledger.domain.commands", fromlist=["Actor"]).Actor("alice"),
        transfer("tip-1", leg(user("alice"), user("bob"), 30)),
    )
    assert len(records) == 1
    assert await balance(ledger, user("alice")) == 70
    assert await balance(ledger, user("bob")) == 30
    assert await balance(ledger, MINT, Currency.YELLOW) == -100
