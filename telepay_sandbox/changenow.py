"""A loopback emulator of ChangeNOW's v2 exchange API, settling on the dev chain.

`ChangeNowSandbox` serves what the payout flow calls (see `changenow_api`; `base_url` is what
CHANGENOW_BASE_URL should be) and settles exchanges for real on a `DevChain`: each pay-in
address is a fresh dev-chain account, a deposit to it moves the exchange along, and a finished
exchange to ETH or USDT on Ethereum credits the payout address from the sandbox's own hot
wallet (see `changenow_exchanges` for the steps).

    with DevChain() as chain, ChangeNowSandbox("cn-key", chain) as changenow:
        ...  # the product quotes, creates, funds the pay-in address, polls by-id
        changenow.settle(exchange_id)            # or let polling move it step by step
        assert chain.balance_usdt(owner) == ...

The awkward parts are on by default: 30 calls/s and 1800/min per key (429 beyond), minimum
amounts, fixed-rate quotes that expire (`quote_ttl`) and deposits due within 20 minutes; and
tests can inject failures with `fail_next`; `partner_fields=False` is an account whose
`userId` ChangeNOW never enabled. Time comes from `clock`, so tests can move it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from eth_account import Account

from telepay.clock import Clock, SystemClock
from telepay_sandbox.changenow_api import ChangeNowApi
from telepay_sandbox.changenow_exchanges import TERMINAL, ExchangeState, Settlement
from telepay_sandbox.changenow_market import EVM_NETWORKS, Asset, Market, Quote, default_assets
from telepay_sandbox.loopback import LoopbackServer
from telepay_sandbox.provider import Call, Faults

if TYPE_CHECKING:
    from telepay_sandbox.chain import DevChain

__all__ = ["ChangeNowSandbox", "ExchangeState", "Quote"]


class ChangeNowSandbox:
    """The emulator and its test-side controls (it is the `ChangeNowState` its API reads)."""

    def __init__(self, api_key: str, chain: DevChain | None, *, confirmations: int = 1,
                 step_seconds: float = 0.0, quote_ttl: timedelta = timedelta(minutes=1),
                 rate_limits: tuple[int, int] | None = (30, 1800), clock: Clock | None = None,
                 min_usd: Decimal = Decimal("10"), max_fixed_usd: Decimal = Decimal("50000"),
                 spread: dict[str, Decimal] | None = None, hot_wallet_eth: Decimal = Decimal("1000"),
                 hot_wallet_usdt: Decimal = Decimal("1000000"), partner_fields: bool = True,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        if not api_key:
            raise ValueError("the sandbox needs an API key")
        self.api_keys = {api_key}
        # ChangeNOW enables `userId`/`payload` per partner; False acts as an account without
        # them: the tag sent on create is dropped and the list's userId filter is ignored.
        self.partner_fields = partner_fields
        self.chain = chain
        self.clock = clock or SystemClock()
        # Unconfirmed how long ChangeNOW honours a rateId; a minute keeps tests honest about it.
        self.quote_ttl = quote_ttl
        self.market = Market(default_assets(), spread or {"standard": Decimal("0.005"), "fixed-rate": Decimal("0.015")},
                             min_usd, max_fixed_usd)
        self.lock = threading.RLock()
        self.exchanges: dict[str, ExchangeState] = {}
        self.calls: list[Call] = []
        self.faults = Faults()
        self.payin_keys: dict[str, str] = {}  # pay-in address -> private key, should a test want to sweep
        self._quotes: dict[str, Quote] = {}
        self._rate_limits = rate_limits
        self._recent: dict[str, deque[float]] = {}
        self.hot_wallet = chain.new_account(eth=hot_wallet_eth, usdt=hot_wallet_usdt) if chain else None
        self._settlement = Settlement(chain, self.hot_wallet, confirmations=confirmations, step_seconds=step_seconds)
        self._server = LoopbackServer(ChangeNowApi(self), "changenow", host, port)

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ChangeNowSandbox:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> ChangeNowSandbox:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """What CHANGENOW_BASE_URL should be: `http://127.0.0.1:PORT` (paths start at /v2)."""
        return self._server.origin

    # ---- set-up ------------------------------------------------------------------------------

    def add_api_key(self, api_key: str) -> None:
        with self.lock:
            self.api_keys.add(api_key)

    def set_price(self, ticker: str, network: str, usd: Decimal) -> None:
        with self.lock:
            key = (ticker.lower(), network.lower())
            old = self.market.assets[key]
            self.market.assets[key] = Asset(old.ticker, old.network, Decimal(usd), old.decimals, old.withdrawal_fee)

    def fail_next(self, route: str, *, method: str | None = None, status: int | None = None, count: int = 1,
                  delay: float = 0.0, retry_after: int | None = None) -> None:
        """Fail the next `count` requests to `route` or below it, of `method` if given (e.g. POST
        "/v2/exchange" for creation only; GET "/v2/exchange" also covers estimates and by-id).

        With `status` they are refused (`{"error":..., "message":...}`) and nothing happens;
        without it they are served, but the answer is held back `delay` seconds: an exchange is
        created that the client never hears about."""
        self.faults.add(route, method, status, count, delay, retry_after)

    # ---- driving exchanges -----------------------------------------------------------------------

    def exchange(self, exchange_id: str) -> ExchangeState:
        with self.lock:
            return self.exchanges[exchange_id]

    def deposit(self, exchange_id: str, amount: Decimal) -> None:
        """A deposit of a coin that is not on the dev chain (BTC, TRX, ...), as if seen."""
        with self.lock:
            self._settlement.offchain_deposits.setdefault(exchange_id, []).append(Decimal(amount))

    def advance(self, exchange: ExchangeState) -> bool:
        """One step, if due (what a status request does). Callers hold `lock`."""
        minimum = self.market.min_amount(exchange.src, exchange.dst)
        return self._settlement.step(exchange, self.clock.now(), minimum)

    def settle(self, exchange_id: str, max_steps: int = 10) -> str:
        """Run the exchange as far as the chain allows, ignoring `step_seconds`; its status."""
        with self.lock:
            exchange = self.exchanges[exchange_id]
            saved, self._settlement.step_seconds = self._settlement.step_seconds, 0.0
            try:
                for _ in range(max_steps):
                    if exchange.status in TERMINAL or not self.advance(exchange):
                        break
            finally:
                self._settlement.step_seconds = saved
            return exchange.status

    # ---- used by the API -------------------------------------------------------------------------

    def admit(self, api_key: str) -> bool:
        """The rate limiter: False when this call would go over 30/s or 1800/min for the key."""
        if self._rate_limits is None:
            return True
        per_second, per_minute = self._rate_limits
        now = time.monotonic()
        with self.lock:
            recent = self._recent.setdefault(api_key, deque())
            while recent and now - recent[0] > 60:
                recent.popleft()
            last_second = sum(1 for t in recent if now - t <= 1)
            if last_second >= per_second or len(recent) >= per_minute:
                return False
            recent.append(now)
            return True

    def remember_quote(self, rate_id: str, api_key: str, src: Asset, dst: Asset, type_: str,
                       from_amount: Decimal, to_amount: Decimal, valid_until: datetime) -> None:
        with self.lock:
            self._quotes[rate_id] = Quote(api_key, src, dst, type_, from_amount, to_amount, valid_until)

    def quote(self, rate_id: str) -> Quote | None:
        with self.lock:
            return self._quotes.get(rate_id)

    def payin_address(self, asset: Asset) -> str:
        if asset.network in EVM_NETWORKS:
            account = Account.create()
            with self.lock:
                self.payin_keys[account.address] = account.key.to_0x_hex()
            return account.address
        prefix = {"btc": "bc1q", "ltc": "ltc1q", "trx": "T"}.get(asset.network, "")
        alphabet = "023456789acdefghjklmnpqrstuvwxyz" if prefix.endswith("1q") else \
            "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
        length = {"trx": 33, "ton": 48}.get(asset.network, 38)
        return prefix + "".join(secrets.choice(alphabet) for _ in range(length))
