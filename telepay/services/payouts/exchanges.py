"""ChangeNOW for payouts: what the host's ETH is worth, fixed-rate quotes, and finding an
exchange again after a creation whose answer was lost.

Finding it again must not depend on ChangeNOW's partner fields: `userId` may be dropped on
create and its list filter ignored or matching nothing when ChangeNOW has not enabled them for
us. So the lookup lists every exchange created since the intent was recorded (by date, never
by tag) and keeps only those provably this payout's: our tag where one is shown (a different
tag rules it out), the payout address, the expected amount, the assets, and a creation time
after the intent (less a little clock skew). Two payouts with the same address and amount are
told apart by the runner, which never records an exchange another payout already holds.

Assets are named as ChangeNOW names them: (currency, network), e.g. ("eth", "eth") for ETH and
("usdt", "eth") for Tether as an ERC-20. Amounts are quantised to what ChangeNOW quotes with
(ETH 8 places, USDT 6) and always rounded down, so the host never sends more than it priced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from telepay.clients.changenow import (
    LIST_LIMIT, ChangeNowClient, Estimate, ExchangeStatus, ListedExchange, ProviderError, ProviderUnavailable,
)
from telepay.models import Payout, PayoutKind

logger = logging.getLogger(__name__)

FUNDING = {"ETH": ("eth", "eth", 8, 18), "USDT": ("usdt", "eth", 6, 6)}  # currency, network, quoted, decimals
# Our clock and ChangeNOW's may disagree a little; an exchange stamped this much before the
# intent still counts as created after it.
CLOCK_SKEW = timedelta(minutes=2)
# Pages of the creation window read before giving up: a window this full cannot be trusted to
# have been seen whole, and creating another exchange on a partial view could pay twice.
MAX_PAGES = 20


class BelowMinimum(Exception):
    """The amount is under ChangeNOW's minimum for the pair: the payout is carried over."""


@dataclass(frozen=True)
class Found:
    """A listed exchange that is provably this payout's, with the id `by-id` answers to."""

    exchange_id: str
    status: str
    payin_address: str
    expected_from: Decimal | None
    expected_to: Decimal | None
    created_at: datetime
    tagged: bool  # it carries our userId (ChangeNOW kept the partner field)


@dataclass(frozen=True)
class Quote:
    from_amount: Decimal  # funding asset, whole units
    to_amount: Decimal
    rate_id: str


def user_id(payout_id: int) -> str:
    """The tag every exchange of a payout carries, so a lost creation can be found again."""
    return f"telepay-payout-{payout_id}"


def same_address(a: str | None, b: str | None) -> bool:
    """EVM addresses compare without their checksum case; others exactly."""
    if not a or not b:
        return False
    if a.startswith("0x") and b.startswith("0x"):
        return a.lower() == b.lower()
    return a == b


def base_units(amount: Decimal, asset: str) -> int:
    decimals = FUNDING[asset][3]
    scaled = amount.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {asset} has more than {decimals} places")
    return int(scaled)


class PayoutExchanges:
    def __init__(self, client: ChangeNowClient):
        self.client = client

    def eth_price_usd(self) -> Decimal:
        """USD (as USDT) one ETH sells for at ChangeNOW now: what the host's ETH is worth."""
        estimate = self.client.estimate("eth", "usdt", "eth", "eth", from_amount=Decimal(1), flow="standard")
        if estimate.to_amount <= 0:
            raise ValueError("ChangeNOW priced ETH at nothing")
        return estimate.to_amount

    def eth_worth(self, usd: Decimal, price: Decimal | None = None) -> Decimal:
        """The ETH worth `usd`, rounded down to ChangeNOW's 8 places."""
        price = price or self.eth_price_usd()
        return (usd / price).quantize(Decimal("1e-8"), rounding=ROUND_DOWN)

    def quote(self, funding_asset: str, to_currency: str, to_network: str, *, from_amount: Decimal | None = None,
              to_amount: Decimal | None = None) -> Quote:
        """A fixed-rate quote with a rateId (direct from `from_amount`, or reverse to `to_amount`)."""
        currency, network, places, _ = FUNDING[funding_asset]
        if from_amount is not None:
            from_amount = from_amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
        limits = self.client.range(currency, to_currency, network, to_network)
        if from_amount is not None and limits.min_amount is not None and from_amount < limits.min_amount:
            raise BelowMinimum(f"{from_amount} {currency} is below the minimum {limits.min_amount}")
        try:
            estimate: Estimate = self.client.estimate(
                currency, to_currency, network, to_network, from_amount=from_amount, to_amount=to_amount,
                flow="fixed-rate", type_="direct" if from_amount is not None else "reverse")
        except ProviderError as refused:
            if refused.code == "out_of_range" and "less" in refused.provider_message.lower():
                raise BelowMinimum(refused.provider_message) from None
            raise
        if not estimate.rate_id:
            raise ValueError("ChangeNOW gave a fixed-rate estimate without a rateId")
        return Quote(estimate.from_amount, estimate.to_amount, estimate.rate_id)

    def find(self, payout: Payout) -> list[Found]:
        """Exchanges created for the payout's current intent (normally none or one), oldest first."""
        since = (payout.exchange_requested_at or payout.created_at) - CLOCK_SKEW
        found = []
        for item in self._window(since):
            if self.is_this_payouts(item, payout, since):
                exchange_id = self._by_id_name(item)
                if exchange_id is not None:
                    found.append(Found(exchange_id, item.status, item.payin_address, item.payin_expected_amount,
                                       item.payout_expected_amount, item.created_at,
                                       item.user_id == user_id(payout.id)))
        return sorted(found, key=lambda f: f.created_at)

    @staticmethod
    def is_this_payouts(item: ListedExchange, payout: Payout, since: datetime) -> bool:
        if item.user_id is not None and item.user_id != user_id(payout.id):
            return False  # another payout's tag (or someone else's)
        if item.created_at is None or item.created_at < since or not item.payin_address:
            return False
        if not same_address(item.payout_address, payout.to_address):
            return False
        currency = FUNDING[payout.funding_asset][0]
        if item.payin_currency != currency or (item.payout_currency or "") != payout.to_currency.lower():
            return False
        if payout.kind == PayoutKind.SWEEP:  # created reverse: the amount to receive is the fixed one
            return item.payout_expected_amount is not None and item.payout_expected_amount == payout.to_amount
        return item.payin_expected_amount is not None and item.payin_expected_amount == payout.from_amount

    def _window(self, since: datetime) -> list[ListedExchange]:
        items: list[ListedExchange] = []
        for page in range(MAX_PAGES):
            batch = self.client.list_exchanges(date_from=since, limit=LIST_LIMIT, offset=page * LIST_LIMIT)
            items.extend(batch)
            if len(batch) < LIST_LIMIT:
                return items
        raise ProviderUnavailable("ChangeNOW", f"more than {MAX_PAGES * LIST_LIMIT} exchanges since {since}: "
                                  "cannot tell whether this payout's exists")

    def _by_id_name(self, item: ListedExchange) -> str | None:
        """Which of the item's ids `by-id` knows it by (unconfirmed: requestId or exchangeId)."""
        for candidate in item.ids:
            try:
                state = self.client.exchange_status(candidate)
            except ProviderError as refused:
                if refused.status == 404:
                    continue
                raise
            if same_address(state.payin_address, item.payin_address):
                return candidate
        logger.warning("listed exchange %s: by-id knows none of its ids; not adopted", item.ids)
        return None

    def status(self, exchange_id: str) -> ExchangeStatus:
        return self.client.exchange_status(exchange_id)
