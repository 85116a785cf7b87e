"""ChangeNOW for payouts: what the host's ETH is worth, fixed-rate quotes, and finding an
exchange again after a creation whose answer was lost.

Assets are named as ChangeNOW names them: (currency, network), e.g. ("eth", "eth") for ETH and
("usdt", "eth") for Tether as an ERC-20. Amounts are quantised to what ChangeNOW quotes with
(ETH 8 places, USDT 6) and always rounded down, so the host never sends more than it priced.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from telepay.clients.changenow import ChangeNowClient, Estimate, ExchangeStatus, ProviderError

FUNDING = {"ETH": ("eth", "eth", 8, 18), "USDT": ("usdt", "eth", 6, 6)}  # currency, network, quoted, decimals


class BelowMinimum(Exception):
    """The amount is under ChangeNOW's minimum for the pair: the payout is carried over."""


@dataclass(frozen=True)
class Quote:
    from_amount: Decimal  # funding asset, whole units
    to_amount: Decimal
    rate_id: str


def user_id(payout_id: int) -> str:
    """The tag every exchange of a payout carries, so a lost creation can be found again."""
    return f"telepay-payout-{payout_id}"


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

    def find(self, payout_id: int) -> list[ExchangeStatus]:
        """Exchanges created for this payout (normally none or one)."""
        return self.client.list_exchanges(user_id=user_id(payout_id))

    def status(self, exchange_id: str) -> ExchangeStatus:
        return self.client.exchange_status(exchange_id)
