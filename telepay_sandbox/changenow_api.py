"""ChangeNOW sandbox: the v2 HTTP API (estimate, range, address check, create, by-id, list).

Errors look like ChangeNOW's: `{"error":"<code>","message":"..."}` with 400 for bad input
(`not_valid_params`, `not_valid_address`, `pair_is_inactive`, `out_of_range`,
`rate_id_not_found_or_expired`), 401 without a valid `x-changenow-api-key`, 404 for an unknown
exchange, 429 over the rate limit. Amounts are JSON numbers written from Decimals.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from telepay.clients import jsontext
from telepay_sandbox.changenow_exchanges import DEPOSIT_WINDOW, ExchangeState, iso
from telepay_sandbox.changenow_market import Asset, validate_address
from telepay_sandbox.changenow_state import ChangeNowState
from telepay_sandbox.loopback import Request, Response
from telepay_sandbox.provider import ProviderApi, ProviderError


class ApiError(ProviderError):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message

    def response(self) -> Response:
        return Response(self.status, jsontext.dumps({"error": self.error, "message": self.message}).encode())


def _bad(message: str, error: str = "not_valid_params") -> ApiError:
    return ApiError(400, error, message)


def _amount(value: Any, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        amount = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise _bad(f"{name} must be a number") from None
    if isinstance(value, bool) or not amount.is_finite() or amount <= 0:
        raise _bad(f"{name} must be a positive number")
    return amount


class ChangeNowApi(ProviderApi):
    def __init__(self, sandbox: ChangeNowState) -> None:
        super().__init__(sandbox)
        self.sandbox = sandbox

    def injected(self, status: int) -> Response:
        error = "too_many_requests" if status == 429 else "internal_error"
        return ApiError(status, error, "Injected failure").response()

    def route(self, request: Request) -> Response:
        path, method = request.path.rstrip("/"), request.method
        if method == "GET" and path == "/v2/validate/address":
            return self._validate(request.query)  # open to anyone, as on ChangeNOW
        routes = {
            ("GET", "/v2/exchange/estimated-amount"): self._estimate,
            ("GET", "/v2/exchange/range"): self._range,
            ("POST", "/v2/exchange"): self._create,
            ("GET", "/v2/exchange/by-id"): self._by_id,
            ("GET", "/v2/exchanges"): self._list,
        }
        handler = routes.get((method, path))
        if handler is None:
            raise ApiError(404, "not_found", f"Cannot {method} {request.path}")
        api_key = request.headers.get("x-changenow-api-key") or ""
        if api_key not in self.sandbox.api_keys:
            raise ApiError(401, "unauthorized", "Unauthorized")
        if not self.sandbox.admit(api_key):
            raise ApiError(429, "too_many_requests", "Too many requests")
        return handler(request, api_key)

    @staticmethod
    def _json(body: Any, status: int = 200) -> Response:
        return Response(status, jsontext.dumps(body, "js").encode())

    # ---- pairs and quotes ----------------------------------------------------------------------

    def _pair(self, params: dict[str, Any]) -> tuple[Asset, Asset]:
        return self._asset(params, "from"), self._asset(params, "to")

    def _asset(self, params: dict[str, Any], side: str) -> Asset:
        ticker = params.get(f"{side}Currency")
        if not isinstance(ticker, str) or not ticker:
            raise _bad(f"{side}Currency is required")
        ticker = ticker.lower()
        network = params.get(f"{side}Network")
        assets = self.sandbox.market.assets
        if not network:  # ChangeNOW picks the coin's main network when none is given
            network = next((n for (t, n) in assets if t == ticker), "")
        asset = assets.get((ticker, str(network).lower()))
        if asset is None:
            raise _bad(f"Pair is inactive: {ticker} on {network or '?'}", "pair_is_inactive")
        return asset

    def _flow(self, params: dict[str, Any]) -> tuple[str, str]:
        flow, type_ = params.get("flow") or "standard", params.get("type") or "direct"
        if flow not in ("standard", "fixed-rate"):
            raise _bad("flow must be standard or fixed-rate")
        if type_ not in ("direct", "reverse"):
            raise _bad("type must be direct or reverse")
        if type_ == "reverse" and flow != "fixed-rate":
            raise _bad("Reverse type is available only for the fixed-rate flow")
        return flow, type_

    def _amounts(self, params: dict[str, Any], src: Asset, dst: Asset, flow: str,
                 type_: str) -> tuple[Decimal, Decimal]:
        market = self.sandbox.market
        if src == dst:
            raise _bad("Pair is inactive: the same asset on both sides", "pair_is_inactive")
        if type_ == "direct":
            from_amount = _amount(params.get("fromAmount"), "fromAmount")
            if from_amount is None:
                raise _bad("fromAmount is required for the direct type")
            to_amount = market.to_amount(src, dst, from_amount, flow)
        else:
            to_amount = _amount(params.get("toAmount"), "toAmount")
            if to_amount is None:
                raise _bad("toAmount is required for the reverse type")
            from_amount = market.from_amount(src, dst, to_amount, flow)
        minimum, maximum = market.min_amount(src, dst), market.max_amount(src, flow)
        # Unconfirmed which code ChangeNOW uses below the minimum; both sides say out_of_range here.
        if from_amount < minimum:
            raise _bad(f"Amount is less than minimal: {minimum} {src.ticker}", "out_of_range")
        if maximum is not None and from_amount > maximum:
            raise _bad(f"Amount is more than maximal: {maximum} {src.ticker}", "out_of_range")
        return from_amount, to_amount

    def _estimate(self, request: Request, api_key: str) -> Response:
        params = request.query
        src, dst = self._pair(params)
        flow, type_ = self._flow(params)
        from_amount, to_amount = self._amounts(params, src, dst, flow, type_)
        now = self.sandbox.clock.now()
        rate_id = valid_until = None
        if flow == "fixed-rate":
            valid_until = now + self.sandbox.quote_ttl
            if params.get("useRateId") == "true":
                rate_id = secrets.token_hex(16)
                self.sandbox.remember_quote(rate_id, api_key, src, dst, type_, from_amount, to_amount, valid_until)
        return self._json({
            "fromCurrency": src.ticker, "fromNetwork": src.network, "toCurrency": dst.ticker,
            "toNetwork": dst.network, "flow": flow, "type": type_, "rateId": rate_id,
            "validUntil": iso(valid_until), "transactionSpeedForecast": "10-60", "warningMessage": None,
            "depositFee": Decimal(0), "withdrawalFee": dst.withdrawal_fee, "userId": None,
            "fromAmount": from_amount, "toAmount": to_amount,
        })

    def _range(self, request: Request, api_key: str) -> Response:
        src, dst = self._pair(request.query)
        flow, _ = self._flow({"flow": request.query.get("flow")})
        market = self.sandbox.market
        return self._json({
            "fromCurrency": src.ticker, "fromNetwork": src.network, "toCurrency": dst.ticker,
            "toNetwork": dst.network, "flow": flow, "minAmount": market.min_amount(src, dst),
            "maxAmount": market.max_amount(src, flow),
        })

    def _validate(self, params: dict[str, str]) -> Response:
        network, address = (params.get("currency") or "").lower(), params.get("address") or ""
        if not network or not address:
            raise _bad("currency and address are required")
        try:
            valid, message = validate_address(network, address)
        except KeyError:
            raise _bad(f"Currency {network} is not supported") from None
        return self._json({"result": valid, "message": message})

    # ---- exchanges -------------------------------------------------------------------------------

    def _create(self, request: Request, api_key: str) -> Response:
        try:
            body = request.json_body()
        except ValueError:
            raise _bad("Body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _bad("Body must be an object")
        src, dst = self._pair(body)
        flow, type_ = self._flow(body)
        address = body.get("address")
        if not isinstance(address, str) or not address:
            raise _bad("address is required")
        if not validate_address(dst.network, address)[0]:
            raise _bad(f"Invalid {dst.label} address", "not_valid_address")
        refund = body.get("refundAddress") or None
        if refund is not None and not (isinstance(refund, str) and validate_address(src.network, refund)[0]):
            raise _bad(f"Invalid {src.label} refund address", "not_valid_refund_address")
        sandbox = self.sandbox
        now = sandbox.clock.now()
        if flow == "fixed-rate":
            from_amount, to_amount = self._quoted(body, api_key, src, dst, type_, now)
        else:
            from_amount, to_amount = self._amounts(body, src, dst, flow, type_)
        exchange = ExchangeState(
            id=secrets.token_hex(7), api_key=api_key, src=src, dst=dst, flow=flow, type=type_,
            expected_from=from_amount, expected_to=to_amount, payin_address=sandbox.payin_address(src),
            payout_address=address, payout_extra_id=body.get("extraId") or None, refund_address=refund,
            refund_extra_id=body.get("refundExtraId") or None,
            # Without partner fields enabled, ChangeNOW may drop the partner's tag (unconfirmed).
            user_id=body.get("userId") if sandbox.partner_fields else None,
            payload=body.get("payload") if sandbox.partner_fields else None, created_at=now,
            valid_until=now + DEPOSIT_WINDOW if flow == "fixed-rate" else None)
        with sandbox.lock:
            sandbox.exchanges[exchange.id] = exchange
        return self._json(exchange.creation_body())

    def _quoted(self, body: dict[str, Any], api_key: str, src: Asset, dst: Asset, type_: str,
                now: datetime) -> tuple[Decimal, Decimal]:
        rate_id = body.get("rateId")
        if not rate_id:
            raise _bad("rateId is required for the fixed-rate flow")
        quote = self.sandbox.quote(rate_id)
        if quote is None or quote.api_key != api_key or quote.valid_until < now:
            raise _bad("Rate id not found or expired", "rate_id_not_found_or_expired")
        asked = _amount(body.get("fromAmount" if type_ == "direct" else "toAmount"), "amount")
        quoted = quote.from_amount if type_ == "direct" else quote.to_amount
        if (quote.src, quote.dst, quote.type) != (src, dst, type_) or asked != quoted:
            raise _bad("rateId was issued for another pair, type or amount")
        return quote.from_amount, quote.to_amount

    def _by_id(self, request: Request, api_key: str) -> Response:
        exchange_id = request.query.get("id")
        if not exchange_id:
            raise _bad("id is required")
        with self.sandbox.lock:
            exchange = self.sandbox.exchanges.get(exchange_id)
            if exchange is None or exchange.api_key != api_key:
                raise ApiError(404, "not_found", "Exchange not found")
            self.sandbox.advance(exchange)
            return self._json(exchange.status_body())

    def _list(self, request: Request, api_key: str) -> Response:
        """Items in the list's documented shape; `limit` must be bigger than 0 and less than 100."""
        query = request.query
        try:
            limit = int(query.get("limit") or 10)
            offset = max(int(query.get("offset") or 0), 0)
        except ValueError:
            raise _bad("limit and offset must be integers") from None
        if not 0 < limit < 100:
            raise _bad("limit must be bigger than 0 and less than 100")
        date_from, date_to = query.get("dateFrom"), query.get("dateTo")
        # Without partner fields the userId filter is ignored (one of the unconfirmed readings).
        user_id = query.get("userId") if self.sandbox.partner_fields else None
        with self.sandbox.lock:
            found = [e for e in self.sandbox.exchanges.values() if e.api_key == api_key
                     and (not user_id or e.user_id == user_id)
                     and (not date_from or (iso(e.created_at) or "") >= date_from)
                     and (not date_to or (iso(e.created_at) or "") <= date_to)]
            for exchange in found:
                self.sandbox.advance(exchange)
            page = [e.list_item() for e in sorted(found, key=lambda e: e.created_at, reverse=True)]
        return self._json({"count": len(found), "exchanges": page[offset:offset + limit]})
