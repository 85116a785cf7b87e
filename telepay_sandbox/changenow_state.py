"""What the ChangeNOW sandbox's HTTP side (`changenow_api`) needs of the sandbox itself
(`changenow.ChangeNowSandbox`), stated apart so neither module imports the other."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from telepay.clock import Clock
from telepay_sandbox.changenow_exchanges import ExchangeState
from telepay_sandbox.changenow_market import Asset, Market, Quote
from telepay_sandbox.provider import CallLog


class ChangeNowState(CallLog, Protocol):
    """What the API reads and changes of its sandbox (`changenow.ChangeNowSandbox`)."""

    api_keys: set[str]
    partner_fields: bool
    market: Market
    clock: Clock
    quote_ttl: timedelta
    exchanges: dict[str, ExchangeState]

    def admit(self, api_key: str) -> bool: ...

    def remember_quote(self, rate_id: str, api_key: str, src: Asset, dst: Asset, type_: str,
                       from_amount: Decimal, to_amount: Decimal, valid_until: datetime) -> None: ...

    def quote(self, rate_id: str) -> Quote | None: ...

    def payin_address(self, asset: Asset) -> str: ...

    def advance(self, exchange: ExchangeState) -> bool: ...
