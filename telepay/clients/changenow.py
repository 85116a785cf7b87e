"""ChangeNOW v2 client: quotes, limits, address checks, fixed-rate exchanges and their status.

Synchronous over httpx, pointed at the real API (`https://api.changenow.io`) or the sandbox by
`base_url` alone. Failures follow `telepay.clients.http`: 4xx -> `ProviderError`, 5xx/429/timeouts
retried then `ProviderUnavailable`. Amounts are Decimal both ways.

Creating an exchange is NOT idempotent: ChangeNOW makes a new exchange (a new pay-in address)
for every request it processes. So `create_exchange` is retried only when the request provably
never arrived (connection refused) or was rate-limited (429). When it may have arrived but the
answer was lost (a read timeout, a dropped connection, a 5xx), it raises `OutcomeUnknown` and
never retries. The caller records its intent *before* calling (with a `user_id` naming the
payout), and after `OutcomeUnknown` looks for the exchange with `list_exchanges` before it
creates another; funding two pay-in addresses would pay the owner twice.

The list (`GET /v2/exchanges`) answers in its own documented shape, not `by-id`'s: nested
`payin`/`payout`/`partnerInfo`, `exchangeId` and `requestId`, no top-level `id` (see
`ListedExchange`). Its `userId` is a "special partner field" ChangeNOW enables per partner;
without it the tag may be dropped on create and the filter ignored, so callers must match
what they find themselves (address, amount, creation time), never trust the filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import httpx

from telepay.clients.http import (
    JsonHttp, OutcomeUnknown, ProviderError, ProviderFailure, ProviderUnavailable, to_decimal,
)

__all__ = ["ChangeNowClient", "Estimate", "Exchange", "ExchangeStatus", "ListedExchange", "OutcomeUnknown",
           "ProviderError", "ProviderFailure", "ProviderUnavailable", "Range"]

PROVIDER = "ChangeNOW"
# The documented bound on the list's `limit` is "bigger than 0 and less than 100".
LIST_LIMIT = 99
TERMINAL_STATUSES = frozenset({"finished", "failed", "refunded", "expired"})


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z") if moment else None


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(frozen=True)
class Estimate:
    from_currency: str
    to_currency: str
    from_network: str
    to_network: str
    flow: str
    type: str
    from_amount: Decimal
    to_amount: Decimal
    rate_id: str | None  # fixed-rate only: pass it to create_exchange before valid_until
    valid_until: datetime | None
    deposit_fee: Decimal | None
    withdrawal_fee: Decimal | None
    warning_message: str | None


@dataclass(frozen=True)
class Range:
    min_amount: Decimal | None
    max_amount: Decimal | None  # None: no upper limit


@dataclass(frozen=True)
class Exchange:
    id: str
    payin_address: str
    payout_address: str
    from_amount: Decimal
    to_amount: Decimal
    payin_extra_id: str | None


@dataclass(frozen=True)
class ExchangeStatus:
    id: str
    status: str  # new, waiting, confirming, exchanging, sending, finished, failed, refunded, verifying, expired
    payin_address: str | None
    payout_address: str | None
    expected_amount_from: Decimal | None
    expected_amount_to: Decimal | None
    amount_from: Decimal | None
    amount_to: Decimal | None
    payin_hash: str | None
    payout_hash: str | None
    refund_hash: str | None
    refund_amount: Decimal | None
    user_id: str | None
    updated_at: datetime | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> ExchangeStatus:
        return cls(
            id=str(answer["id"]), status=str(answer["status"]), payin_address=answer.get("payinAddress"),
            payout_address=answer.get("payoutAddress"),
            expected_amount_from=to_decimal(answer.get("expectedAmountFrom")),
            expected_amount_to=to_decimal(answer.get("expectedAmountTo")),
            amount_from=to_decimal(answer.get("amountFrom")), amount_to=to_decimal(answer.get("amountTo")),
            payin_hash=answer.get("payinHash"), payout_hash=answer.get("payoutHash"),
            refund_hash=answer.get("refundHash"), refund_amount=to_decimal(answer.get("refundAmount")),
            user_id=answer.get("userId"), updated_at=_time(answer.get("updatedAt")))


@dataclass(frozen=True)
class ListedExchange:
    """One item of `GET /v2/exchanges`, in the list's own documented shape.

    `ids` are the item's `requestId` and `exchangeId`, in that order, whichever are present:
    which of them `by-id` takes is unconfirmed, so callers confirm with `by-id` before
    recording one. `user_id` is None when ChangeNOW has no partner fields for us."""

    ids: tuple[str, ...]
    status: str
    created_at: datetime | None
    payin_currency: str | None
    payin_address: str | None
    payin_expected_amount: Decimal | None
    payin_amount: Decimal | None
    payout_currency: str | None
    payout_address: str | None
    payout_expected_amount: Decimal | None
    payout_amount: Decimal | None
    user_id: str | None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ListedExchange:
        payin, payout = item.get("payin") or {}, item.get("payout") or {}
        partner = item.get("partnerInfo") or {}
        ids = tuple(dict.fromkeys(str(item[k]) for k in ("requestId", "exchangeId") if item.get(k)))
        if not ids or not isinstance(payin, dict) or not isinstance(payout, dict):
            raise ValueError("list item lacks requestId/exchangeId or its payin/payout")
        return cls(
            ids=ids, status=str(item["status"]), created_at=_time(item.get("createdAt")),
            payin_currency=_lower(payin.get("currency")), payin_address=payin.get("address") or None,
            payin_expected_amount=to_decimal(payin.get("expectedAmount")), payin_amount=to_decimal(payin.get("amount")),
            payout_currency=_lower(payout.get("currency")), payout_address=payout.get("address") or None,
            payout_expected_amount=to_decimal(payout.get("expectedAmount")),
            payout_amount=to_decimal(payout.get("amount")),
            user_id=(partner.get("userId") or None) if isinstance(partner, dict) else None)


def _lower(value: Any) -> str | None:
    return str(value).lower() if value else None


def _one_amount(from_amount: Decimal | None, to_amount: Decimal | None, type_: str) -> dict[str, Decimal]:
    for value in (from_amount, to_amount):
        if value is not None and not isinstance(value, Decimal):
            raise TypeError(f"money is Decimal, not {type(value).__name__}")
    if (from_amount is None) == (to_amount is None):
        raise ValueError("give exactly one of from_amount and to_amount")
    if (to_amount is not None) != (type_ == "reverse"):
        raise ValueError("to_amount goes with type_='reverse', from_amount with 'direct'")
    return {"fromAmount": from_amount} if from_amount is not None else {"toAmount": to_amount}


class ChangeNowClient:
    def __init__(self, base_url: str, api_key: str, timeout: float = 10.0, retries: int = 3,
                 transport: httpx.BaseTransport | None = None, *, backoff: float = 0.5) -> None:
        self._http = JsonHttp(PROVIDER, base_url, "x-changenow-api-key", api_key, timeout=timeout,
                              retries=retries, backoff=backoff, transport=transport)

    def __repr__(self) -> str:
        return f"ChangeNowClient({self._http!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChangeNowClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def estimate(self, from_currency: str, to_currency: str, from_network: str, to_network: str,
                 from_amount: Decimal | None = None, to_amount: Decimal | None = None,
                 flow: str = "fixed-rate", type_: str = "direct") -> Estimate:
        """A quote; for the fixed-rate flow it carries a `rate_id` to create the exchange with."""
        params: dict[str, Any] = {
            "fromCurrency": from_currency, "toCurrency": to_currency, "fromNetwork": from_network,
            "toNetwork": to_network, "flow": flow, "type": type_,
            **_one_amount(from_amount, to_amount, type_),
        }
        if flow == "fixed-rate":
            params["useRateId"] = True
        a = self._object(self._http.request("GET", "/v2/exchange/estimated-amount", params=params))
        try:
            return Estimate(
                from_currency=a.get("fromCurrency", from_currency), to_currency=a.get("toCurrency", to_currency),
                from_network=a.get("fromNetwork", from_network), to_network=a.get("toNetwork", to_network),
                flow=a.get("flow", flow), type=a.get("type", type_), from_amount=to_decimal(a["fromAmount"]),
                to_amount=to_decimal(a["toAmount"]), rate_id=a.get("rateId"), valid_until=_time(a.get("validUntil")),
                deposit_fee=to_decimal(a.get("depositFee")), withdrawal_fee=to_decimal(a.get("withdrawalFee")),
                warning_message=a.get("warningMessage"))
        except (KeyError, TypeError, ValueError, ArithmeticError):
            raise ProviderUnavailable(PROVIDER, "estimate answer lacks amounts") from None

    def range(self, from_currency: str, to_currency: str, from_network: str, to_network: str,
              flow: str = "fixed-rate") -> Range:
        a = self._object(self._http.request("GET", "/v2/exchange/range", params={
            "fromCurrency": from_currency, "toCurrency": to_currency, "fromNetwork": from_network,
            "toNetwork": to_network, "flow": flow}))
        return Range(min_amount=to_decimal(a.get("minAmount")), max_amount=to_decimal(a.get("maxAmount")))

    def create_exchange(self, *, from_currency: str, to_currency: str, from_network: str, to_network: str,
                        address: str, from_amount: Decimal | None = None, to_amount: Decimal | None = None,
                        flow: str = "fixed-rate", type_: str = "direct", rate_id: str | None = None,
                        refund_address: str | None = None, extra_id: str | None = None,
                        user_id: str | None = None) -> Exchange:
        """Create an exchange. Raises `OutcomeUnknown` when it may exist anyway (module docstring)."""
        if flow == "fixed-rate" and not rate_id:
            raise ValueError("a fixed-rate exchange needs the rate_id of a fresh estimate")
        body: dict[str, Any] = {
            "fromCurrency": from_currency, "fromNetwork": from_network, "toCurrency": to_currency,
            "toNetwork": to_network, **_one_amount(from_amount, to_amount, type_), "address": address,
            "flow": flow, "type": type_,
        }
        optional = {"rateId": rate_id, "refundAddress": refund_address, "extraId": extra_id, "userId": user_id}
        body.update({k: v for k, v in optional.items() if v is not None})
        a = self._object(self._http.request("POST", "/v2/exchange", body=body, idempotent=False))
        try:
            return Exchange(id=str(a["id"]), payin_address=str(a["payinAddress"]),
                            payout_address=str(a.get("payoutAddress") or address),
                            from_amount=to_decimal(a["fromAmount"]), to_amount=to_decimal(a["toAmount"]),
                            payin_extra_id=a.get("payinExtraId") or None)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            # It was created, but we cannot tell where to pay: the same situation as no answer.
            raise OutcomeUnknown(PROVIDER, "exchange answer lacks id, payinAddress or amounts") from None

    def exchange_status(self, exchange_id: str) -> ExchangeStatus:
        a = self._object(self._http.request("GET", "/v2/exchange/by-id", params={"id": exchange_id}))
        try:
            return ExchangeStatus.from_answer(a)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            raise ProviderUnavailable(PROVIDER, "status answer lacks id or status") from None

    def list_exchanges(self, *, date_from: datetime | None = None, date_to: datetime | None = None,
                       user_id: str | None = None, limit: int = LIST_LIMIT, offset: int = 0) -> list[ListedExchange]:
        """One page of the exchanges made with this key (`GET /v2/exchanges`).

        `user_id` narrows the list only if ChangeNOW enabled partner fields for us (see the module
        docstring); callers match the items themselves either way."""
        if not 0 < limit < 100:
            raise ValueError("ChangeNOW's list takes a limit bigger than 0 and less than 100")
        params = {"limit": limit, "offset": offset, "userId": user_id, "dateFrom": _iso(date_from),
                  "dateTo": _iso(date_to)}
        answer = self._http.request("GET", "/v2/exchanges", params={k: v for k, v in params.items() if v is not None})
        # Unconfirmed whether the page is a bare array or wrapped as {"exchanges": [...]}: take either.
        items = answer.get("exchanges") if isinstance(answer, dict) else answer
        if not isinstance(items, list):
            raise ProviderUnavailable(PROVIDER, "list answer lacks exchanges")
        try:
            return [ListedExchange.from_item(item) for item in items]
        except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as bad:
            raise ProviderUnavailable(PROVIDER, f"list item not in the documented shape: {bad}") from None

    def validate_address(self, currency_network: str, address: str) -> tuple[bool, str | None]:
        """Ask ChangeNOW whether `address` can receive on `currency_network` (e.g. "eth")."""
        a = self._object(self._http.request("GET", "/v2/validate/address",
                                            params={"currency": currency_network, "address": address}))
        return bool(a.get("result")), a.get("message")

    @staticmethod
    def _object(answer: Any) -> dict[str, Any]:
        if not isinstance(answer, dict):
            raise ProviderUnavailable(PROVIDER, "answer is not a JSON object")
        return answer
