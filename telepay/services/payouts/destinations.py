"""Where a payout's funding transfer goes: the owner's address for a direct payout, else the
pay-in address of its exchange, looked up at ChangeNOW. `payouts reconcile` matches transfers
the records lost against these.

A payout whose exchange was not recorded (the database was restored from before it) is matched
with the exchanges created since its intent: by our tag, or, where ChangeNOW dropped the tag,
by its payout address and currencies. That is looser than the runner's own lookup, which also
compares the quoted amount: a restored `pending` payout has no quote recorded.

A payout made again after the restore (its payment re-learned from NOWPayments) is younger than
the exchange its first incarnation funded, so the lookup also runs backwards: from a lost
transfer to the exchange whose pay-in address it paid (`paid_exchange`), whose payout address
and currency then name the payout.

A transfer is a payout's only if its amount is too (`amount_doubt`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from telepay.models import Payout
from telepay.clients.changenow import ListedExchange
from telepay.services.payouts.exchanges import (
    CLOCK_SKEW, FUNDING, PayoutExchanges, base_units, same_address, user_id,
)
from telepay.services.payouts.runner import is_direct
from telepay.services.payouts.wallet import ETH


@dataclass(frozen=True)
class Destination:
    """Where a transfer for a payout would have gone, and the exchange behind it, if any."""

    asset: str
    address: str
    exchange_id: str | None = None
    exchange_status: str | None = None
    expected_to: Decimal | None = None


def destinations(payout: Payout, exchanges: PayoutExchanges) -> list[Destination]:
    asset = payout.funding_asset
    if is_direct(payout):
        return [Destination(asset, payout.to_address)]
    if payout.exchange_id:
        state = exchanges.status(payout.exchange_id)
        return [Destination(asset, state.payin_address or payout.payin_address or "", payout.exchange_id,
                            state.status, state.expected_amount_to)]
    if payout.from_amount is not None:
        return [Destination(asset, f.payin_address, f.exchange_id, f.status, f.expected_to)
                for f in exchanges.find(payout)]
    since = (payout.exchange_requested_at or payout.created_at) - CLOCK_SKEW
    currency = FUNDING[asset][0]
    found = []
    for item in exchanges._window(since):
        tagged = item.user_id == user_id(payout.id)
        alike = item.user_id is None and same_address(item.payout_address, payout.to_address) and \
            item.payin_currency == currency and (item.payout_currency or "") == payout.to_currency.lower()
        if (tagged or alike) and item.created_at is not None and item.created_at >= since and item.payin_address:
            exchange_id = exchanges._by_id_name(item)
            if exchange_id is not None:
                found.append(Destination(asset, item.payin_address, exchange_id, item.status,
                                         item.payout_expected_amount))
    return found


# A direct ETH transfer found on the chain is a payout's only if it is worth about its USD amount
# at today's price (the price it was sent at is recorded nowhere).
ETH_PRICE_DRIFT = Decimal("0.25")
# How long before the transfer its exchange may have been created (ChangeNOW's fixed-rate
# exchanges wait for a deposit for minutes to hours, never a day).
EXCHANGE_LEAD = timedelta(days=1)


@dataclass(frozen=True)
class PaidExchange:
    destination: Destination
    payout_address: str | None
    payout_currency: str | None


def paid_exchange(exchanges: PayoutExchanges, payin_address: str, asset: str, mined_at: datetime | None,
                  ) -> PaidExchange | None:
    """The exchange whose pay-in address a transfer paid, if ChangeNOW lists one."""
    if mined_at is None:
        return None
    item: ListedExchange
    for item in exchanges._window(mined_at - EXCHANGE_LEAD):
        if same_address(item.payin_address, payin_address) and item.payin_currency == FUNDING[asset][0]:
            exchange_id = exchanges._by_id_name(item)
            if exchange_id is not None:
                return PaidExchange(Destination(asset, payin_address, exchange_id, item.status,
                                                item.payout_expected_amount), item.payout_address,
                                    item.payout_currency)
    return None


def pays(paid: PaidExchange, payout: Payout) -> bool:
    """The exchange pays what the payout pays: its address, its currency, from its asset."""
    return not payout.exchange_id and paid.destination.asset == payout.funding_asset and same_address(
        paid.payout_address, payout.to_address) and (paid.payout_currency or "") == payout.to_currency.lower()


def amount_doubt(payout: Payout, amount_base_units: int, exchanges: PayoutExchanges) -> str | None:
    """Why a transfer of this amount is not the payout's (None: it is, or as near as can be told)."""
    if is_direct(payout) and payout.funding_asset == ETH:
        worth = Decimal(amount_base_units).scaleb(-18) * exchanges.eth_price_usd()
        if abs(worth - payout.amount_usd) <= payout.amount_usd * ETH_PRICE_DRIFT:
            return None
        return f"it is worth {worth:.2f} USD now and the payout is {payout.amount_usd} USD"
    # What the runner sends: a direct USDT payout its micro-dollars, an exchange its quoted amount.
    expected = payout.amount_usd.quantize(Decimal("1e-6")) if is_direct(payout) else payout.from_amount
    if expected is None:
        return None  # not quoted yet in the records: the exchange it paid vouches for it
    if base_units(expected, payout.funding_asset) != amount_base_units:
        return f"it sent {amount_base_units} base units and the payout's amount is {expected} {payout.funding_asset}"
    return None
