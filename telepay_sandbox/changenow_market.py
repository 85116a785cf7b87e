"""ChangeNOW sandbox: the market it trades in (assets, prices, fees, limits, address formats).

Prices are a settable USD table, amounts are Decimal quantised to each asset's precision, and
the arithmetic is the one a test can check by hand: `to = from * price_from / price_to *
(1 - spread) - withdrawal fee`, rounded down (reverse quotes solve for `from`, rounded up).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from eth_utils import is_checksum_address, to_checksum_address

_EVM = re.compile(r"0x[0-9a-fA-F]{40}")
_FORMATS = {
    "eth": _EVM,
    "bsc": _EVM,
    "trx": re.compile(r"T[1-9A-HJ-NP-Za-km-z]{33}"),
    "btc": re.compile(r"(bc1[02-9ac-hj-np-z]{11,71}|[13][1-9A-HJ-NP-Za-km-z]{25,34})"),
    "ltc": re.compile(r"(ltc1[02-9ac-hj-np-z]{11,71}|[LM3][1-9A-HJ-NP-Za-km-z]{26,33})"),
    "sol": re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,44}"),
    "ton": re.compile(r"[A-Za-z0-9_-]{48}"),
}
EVM_NETWORKS = {"eth", "bsc"}


@dataclass(frozen=True)
class Asset:
    ticker: str
    network: str
    usd: Decimal  # price of one unit
    decimals: int  # digits ChangeNOW quotes it with
    withdrawal_fee: Decimal  # taken from what is sent out, in this asset

    @property
    def step(self) -> Decimal:
        return Decimal(1).scaleb(-self.decimals)

    @property
    def label(self) -> str:
        return self.ticker.upper() if self.ticker == self.network else f"{self.ticker.upper()} ({self.network})"


def default_assets() -> dict[tuple[str, str], Asset]:
    rows = [
        ("eth", "eth", "2500", 8, "0.0005"), ("usdt", "eth", "1", 6, "1.5"), ("usdc", "eth", "1", 6, "1.5"),
        ("usdt", "trx", "1", 6, "1"), ("trx", "trx", "0.12", 6, "1"), ("btc", "btc", "60000", 8, "0.00005"),
        ("ltc", "ltc", "80", 8, "0.001"), ("sol", "sol", "150", 8, "0.001"), ("ton", "ton", "5", 8, "0.01"),
        ("bnb", "bsc", "600", 8, "0.0005"),
    ]
    return {(t, n): Asset(t, n, Decimal(usd), d, Decimal(fee)) for t, n, usd, d, fee in rows}


def validate_address(network: str, address: str) -> tuple[bool, str | None]:
    """(valid, why not) for an address on a network; raises KeyError for an unknown network."""
    pattern = _FORMATS[network]
    if not isinstance(address, str) or not pattern.fullmatch(address):
        return False, f"Invalid {network} address"
    if network in EVM_NETWORKS:
        body = address[2:]
        # All-lower or all-upper hex carries no checksum; mixed case must be the EIP-55 one.
        if body != body.lower() and body != body.upper() and not is_checksum_address(address):
            return False, "Invalid checksum"
    return True, None


def same_evm_address(a: str, b: str) -> bool:
    return to_checksum_address(a) == to_checksum_address(b)


@dataclass(frozen=True)
class Market:
    assets: dict[tuple[str, str], Asset]
    spread: dict[str, Decimal]  # per flow
    min_usd: Decimal
    max_fixed_usd: Decimal

    def rate(self, src: Asset, dst: Asset, flow: str) -> Decimal:
        """Units of `dst` per unit of `src`, before the withdrawal fee."""
        return src.usd / dst.usd * (1 - self.spread[flow])

    def to_amount(self, src: Asset, dst: Asset, from_amount: Decimal, flow: str) -> Decimal:
        gross = from_amount * self.rate(src, dst, flow) - dst.withdrawal_fee
        return max(gross, Decimal(0)).quantize(dst.step, rounding=ROUND_DOWN)

    def from_amount(self, src: Asset, dst: Asset, to_amount: Decimal, flow: str) -> Decimal:
        needed = (to_amount + dst.withdrawal_fee) / self.rate(src, dst, flow)
        return needed.quantize(src.step, rounding=ROUND_UP)

    def min_amount(self, src: Asset, dst: Asset) -> Decimal:
        # At least min_usd, and enough that the withdrawal fee leaves something to send.
        floor_usd = max(self.min_usd, dst.withdrawal_fee * dst.usd * 2)
        return (floor_usd / src.usd).quantize(src.step, rounding=ROUND_UP)

    def max_amount(self, src: Asset, flow: str) -> Decimal | None:
        if flow != "fixed-rate":
            return None  # ChangeNOW sends null: no upper limit for the standard flow
        return (self.max_fixed_usd / src.usd).quantize(src.step, rounding=ROUND_DOWN)


@dataclass(frozen=True)
class Quote:
    """A fixed-rate estimate made with useRateId=true: what the rateId promises, until when."""

    api_key: str
    src: Asset
    dst: Asset
    type: str
    from_amount: Decimal
    to_amount: Decimal
    valid_until: datetime
