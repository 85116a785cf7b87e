"""ChangeNOW sandbox: exchanges and how they move, driven by what the dev chain shows.

An exchange goes new -> waiting -> confirming -> exchanging -> sending -> finished, one step each
time it is looked at (and no faster than `step_seconds`), the way a poller meets a real one:

* waiting -> confirming needs a deposit to the pay-in address on the dev chain (ETH, or USDT as
  an ERC-20 transfer; other coins via `ChangeNowSandbox.deposit`);
* confirming -> exchanging needs `confirmations` blocks on top of the deposit;
* exchanging -> sending pays the payout on the dev chain when the target is ETH or USDT on
  Ethereum (the owner's address really is credited); other targets get a made-up hash;
* what arrived decides what is sent: a deposit other than the expected amount is converted at
  the exchange's rate; one below the minimum is sent back to `refundAddress` (refunded) or the
  exchange fails; a fixed-rate exchange with no deposit within 20 minutes expires.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any

from telepay_sandbox.changenow_market import Asset

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from telepay_sandbox.chain import DevChain

logger = logging.getLogger(__name__)

STEPS = ("new", "waiting", "confirming", "exchanging", "sending", "finished")
TERMINAL = {"finished", "failed", "refunded", "expired"}
DEPOSIT_WINDOW = timedelta(minutes=20)


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class ExchangeState:
    id: str
    api_key: str
    src: Asset
    dst: Asset
    flow: str
    type: str
    expected_from: Decimal
    expected_to: Decimal
    payin_address: str
    payout_address: str
    payout_extra_id: str | None
    refund_address: str | None
    refund_extra_id: str | None
    user_id: str | None
    payload: Any
    created_at: datetime
    valid_until: datetime | None  # the fixed-rate deposit deadline
    status: str = "new"
    amount_from: Decimal | None = None
    amount_to: Decimal | None = None
    payin_hash: str | None = None
    payout_hash: str | None = None
    refund_hash: str | None = None
    refund_amount: Decimal | None = None
    deposit_block: int | None = None
    deposit_received_at: datetime | None = None
    updated_at: datetime | None = None
    history: list[str] = field(default_factory=lambda: ["new"])
    # The list's second id (a UUID there); `by-id` answers to `id`, which the list calls requestId.
    internal_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def creation_body(self) -> dict[str, Any]:
        return {
            "fromAmount": self.expected_from, "toAmount": self.expected_to, "flow": self.flow,
            "type": self.type, "payinAddress": self.payin_address, "payoutAddress": self.payout_address,
            "payinExtraId": None, "payoutExtraId": self.payout_extra_id, "fromCurrency": self.src.ticker,
            "fromNetwork": self.src.network, "toCurrency": self.dst.ticker, "toNetwork": self.dst.network,
            "refundAddress": self.refund_address or "", "refundExtraId": self.refund_extra_id or "",
            "id": self.id,
        }

    def status_body(self) -> dict[str, Any]:
        return {
            "id": self.id, "status": self.status, "actionsAvailable": False,
            "fromCurrency": self.src.ticker, "fromNetwork": self.src.network,
            "toCurrency": self.dst.ticker, "toNetwork": self.dst.network,
            "expectedAmountFrom": self.expected_from, "expectedAmountTo": self.expected_to,
            "amountFrom": self.amount_from, "amountTo": self.amount_to,
            "payinAddress": self.payin_address, "payoutAddress": self.payout_address,
            "payinExtraId": None, "payoutExtraId": self.payout_extra_id,
            "refundAddress": self.refund_address, "refundExtraId": self.refund_extra_id,
            "createdAt": iso(self.created_at), "updatedAt": iso(self.updated_at or self.created_at),
            "validUntil": iso(self.valid_until), "depositReceivedAt": iso(self.deposit_received_at),
            "payinHash": self.payin_hash, "payoutHash": self.payout_hash, "refundHash": self.refund_hash,
            "refundAmount": self.refund_amount, "fromLegacyTicker": self.src.ticker,
            "toLegacyTicker": self.dst.ticker, "userId": self.user_id,
            "relatedExchangesInfo": [], "repeatedExchangesInfo": [], "originalExchangeInfo": None,
        }


    def list_item(self) -> dict[str, Any]:
        """The exchange as `GET /v2/exchanges` shows it: its own documented shape, not by-id's."""
        def side(currency: str, address: str | None, extra_id: str | None, amount: Decimal | None,
                 expected: Decimal | None, tx_hash: str | None) -> dict[str, Any]:
            return {"currency": currency, "address": address, "extraId": extra_id, "amount": amount,
                    "expectedAmount": expected, "hash": tx_hash}

        return {
            "createdAt": iso(self.created_at), "updatedAt": iso(self.updated_at or self.created_at),
            "exchangeId": self.internal_id, "requestId": self.id, "status": self.status,
            "validUntil": iso(self.valid_until), "flow": self.flow,
            "payin": side(self.src.ticker, self.payin_address, None, self.amount_from, self.expected_from,
                          self.payin_hash),
            "payout": side(self.dst.ticker, self.payout_address, self.payout_extra_id, self.amount_to,
                           self.expected_to, self.payout_hash),
            "refund": side(self.src.ticker, self.refund_address, self.refund_extra_id, self.refund_amount, None,
                           self.refund_hash),
            "partnerInfo": {"commission": None, "userId": self.user_id, "payload": self.payload},
        }


class Settlement:
    """Moves exchanges along; the sandbox calls it under its lock."""

    def __init__(self, chain: DevChain | None, hot_wallet: LocalAccount | None, *, confirmations: int,
                 step_seconds: float) -> None:
        self.chain = chain
        self.hot_wallet = hot_wallet
        self.confirmations = confirmations
        self.step_seconds = step_seconds
        self.offchain_deposits: dict[str, list[Decimal]] = {}

    def step(self, exchange: ExchangeState, now: datetime, minimum: Decimal) -> bool:
        """Advance one step if the world allows it; True when the status changed."""
        if exchange.status in TERMINAL:
            return False
        last = exchange.updated_at or exchange.created_at
        if self.step_seconds and (now - last).total_seconds() < self.step_seconds:
            return False
        before = exchange.status
        if before == "new":
            exchange.status = "waiting"
        elif before == "waiting":
            self._look_for_deposit(exchange, now)
        elif before == "confirming" and self._confirmed(exchange):
            self._convert(exchange, minimum)
        elif before == "exchanging":
            self._pay_out(exchange)
        elif before == "sending":
            exchange.status = "finished"  # auto-mining: the payout is in a block already
        if exchange.status == before:
            return False
        exchange.updated_at = now
        exchange.history.append(exchange.status)
        return True

    def _look_for_deposit(self, exchange: ExchangeState, now: datetime) -> None:
        total, first_hash, block = self._deposits(exchange)
        if total > 0:
            exchange.status = "confirming"
            exchange.amount_from = total
            exchange.payin_hash = first_hash
            exchange.deposit_block = block
            exchange.deposit_received_at = now
        elif exchange.valid_until is not None and now > exchange.valid_until:
            exchange.status = "expired"

    def _deposits(self, exchange: ExchangeState) -> tuple[Decimal, str | None, int | None]:
        offchain = self.offchain_deposits.get(exchange.id, [])
        if offchain:
            return sum(offchain, Decimal(0)), "sandbox-" + secrets.token_hex(16), None
        asset = _chain_asset(exchange.src)
        if asset is None or self.chain is None:
            return Decimal(0), None, None
        transfers = self.chain.transfers_to(exchange.payin_address, asset)
        if not transfers:
            return Decimal(0), None, None
        return sum((t.amount for t in transfers), Decimal(0)), transfers[0].tx_hash, transfers[-1].block_number

    def _confirmed(self, exchange: ExchangeState) -> bool:
        if exchange.deposit_block is None or self.chain is None:
            return True
        return self.chain.block_number - exchange.deposit_block + 1 >= self.confirmations

    def _convert(self, exchange: ExchangeState, minimum: Decimal) -> None:
        received = exchange.amount_from or Decimal(0)
        if received < minimum:
            self._refund(exchange, received)
            return
        if received == exchange.expected_from:
            exchange.amount_to = exchange.expected_to
        else:  # pro rata at the exchange's own rate, fee included in that rate
            exchange.amount_to = (exchange.expected_to * received / exchange.expected_from).quantize(
                exchange.dst.step, rounding=ROUND_DOWN)
        exchange.status = "exchanging"

    def _refund(self, exchange: ExchangeState, received: Decimal) -> None:
        asset = _chain_asset(exchange.src)
        if not exchange.refund_address:
            exchange.status = "failed"
            return
        if asset is not None and self.chain is not None and self.hot_wallet is not None:
            exchange.refund_hash = self._send(asset, exchange.refund_address, received)
        else:
            exchange.refund_hash = "sandbox-" + secrets.token_hex(16)
        exchange.refund_amount = received
        exchange.status = "refunded"

    def _pay_out(self, exchange: ExchangeState) -> None:
        asset = _chain_asset(exchange.dst)
        amount = exchange.amount_to or Decimal(0)
        if asset is not None and self.chain is not None and self.hot_wallet is not None:
            try:
                exchange.payout_hash = self._send(asset, exchange.payout_address, amount)
            except Exception:  # noqa: BLE001 - a payout the chain refused is a failed exchange
                logger.warning("sandbox exchange %s: the dev chain refused the payout", exchange.id, exc_info=True)
                exchange.status = "failed"
                return
        else:
            exchange.payout_hash = secrets.token_hex(32)
        exchange.status = "sending"

    def _send(self, asset: str, to: str, amount: Decimal) -> str:
        assert self.chain is not None and self.hot_wallet is not None
        if asset == "eth":
            return self.chain.send_eth(self.hot_wallet, to, amount)
        return self.chain.send_usdt(self.hot_wallet, to, amount)


def _chain_asset(asset: Asset) -> str | None:
    """Which dev-chain asset this ChangeNOW asset is, if any."""
    if asset.network == "eth" and asset.ticker in ("eth", "usdt"):
        return asset.ticker
    return None
